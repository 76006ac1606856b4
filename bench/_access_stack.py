"""The issue's figure: the embedded stack's ingest with access control on against off (`access_overhead.py --stack`).

Two embedded stacks run side by side, each started by `EmbeddedStack` exactly as `energytwin up`/`demo` start it:

- **on** (`access=True, mqtt_auth=True`, the default of `up` and `demo`): Mosquitto refuses anonymous clients
  and checks every publish against the device's ACL; each simulated meter logs in with its own credentials
  (access/_mqtt_auth.py); the analytics and the page reach the broker through the PEP with their service
  tokens; the agent's north API is behind its own PEP; the page asks for a token (energytwin/page_login.py) and
  filters each viewer's live stream: two viewers are connected, a manager (every meter) and a member (one meter).
- **off** (`--no-access-control`): anonymous MQTT, the analytics and the page straight at the broker, the page
  without login; the same two viewers, anonymous (both see every meter).

The agent writes to the broker's own port in both (docs/access.md: the meters' ingest does not cross the PEP).
Same meters, same firmware payload (`_e2e.meter_payload_template()`), same generator: one MQTT connection per
meter, as real meters have, raw QoS 1 PUBLISH packets (the framing of bench/_mqtt_publisher.py, plus the CONNECT
login). Rounds alternate on/off, the order flipping each round, so the machine's noise hits both alike; the
stack not being measured idles meanwhile. Per round and stack:

- **steady**: `meters` x `rate` Hz for `seconds`: CPU seconds of every process of the stack (/proc/<pid>/stat)
  from the first publish until the agent counted every message upserted (+0.5 s for the last notifications),
  per landed message; publish -> twin p50/p99 (the broker's modifiedAt - the payload's TimeInstant);
- **idle**: 3 s with no message: % of a core each process uses anyway (timers, pollers, token refresh);
- **burst**: `burst` messages written as fast as the generator can: throughput = messages landed / (last
  modifiedAt - first publish): the stack's ingest capacity on this machine at that moment.

Every message is read back from the broker's history (missing ones are reported) and the member viewer's stream
must carry only its meter (a leak fails the run).
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench._e2e import (
    CLK_TCK,
    ProcSampler,
    _cpu_ticks,
    agent_upserted,
    landed,
    meter_payload_template,
    percentile,
    provision,
)
from bench._mqtt_publisher import CONNACK, CONNECT, PUBLISH_QOS1, _string, remaining_length
from energytwin.demo import DEMO_APIKEY, DEMO_SITE, twin_headers
from energytwin.stack import EmbeddedStack, StackConfig
from provisioning.agent_bodies import meter_device, service_group
from twin_service.mqtt_server import free_port

MODES = ("on", "off")


def connect_packet(client_id: str, login: tuple[str, str] | None) -> bytes:
    """CONNECT (MQTT 3.1.1 §3.1), clean session, keep alive 0, with the username and password flags when given."""
    flags = 0x02 | (0xC0 if login else 0)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 0) + _string(client_id)
    if login:
        body += _string(login[0]) + _string(login[1])
    return bytes([CONNECT]) + remaining_length(len(body)) + body


class MeterConnections:
    """One MQTT connection per meter (logged in as that meter when `logins`); one thread counts the PUBACKs."""

    def __init__(self, host: str, port: int, apikey: str, device_ids: list[str],
                 logins: dict[str, tuple[str, str]] | None) -> None:
        self.socks: list[socket.socket] = []
        for device in device_ids:
            sock = socket.create_connection((host, port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(connect_packet(device, logins[device] if logins else None))
            ack = b""
            while len(ack) < 4:
                part = sock.recv(4 - len(ack))
                if not part:
                    raise ConnectionError(f"MQTT broker closed {device}'s connection")
                ack += part
            if ack[0] != CONNACK or ack[3] != 0:
                raise ConnectionError(f"MQTT broker refused {device}: CONNACK {ack.hex()}")
            sock.settimeout(None)
            self.socks.append(sock)
        self.topics = [_string(f"/json/{apikey}/{d}/attrs") for d in device_ids]
        self.sent = 0
        self._ack_bytes = 0  # a client that subscribed to nothing receives only PUBACKs: 4 bytes each (§3.4)
        self._mids = [0] * len(device_ids)
        self._closed = False
        self._selector = selectors.DefaultSelector()
        for sock in self.socks:
            self._selector.register(sock, selectors.EVENT_READ)
        self._reader = threading.Thread(target=self._read_acks, name="meter-acks", daemon=True)
        self._reader.start()

    def _read_acks(self) -> None:
        while not self._closed:
            for key, _ in self._selector.select(0.2):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(key.fileobj)
                    continue
                self._ack_bytes += len(data)

    @property
    def unacked(self) -> int:
        return self.sent - self._ack_bytes // 4

    def run(self, template: bytes, meters: int, total: int, rate: float | None) -> tuple[int, float, float]:
        """`total` messages over the first `meters` meters in turn, `rate` msg/s (None: as fast as possible);
        returns (sent, first publish time, last publish time) once the broker acknowledged them all."""
        stamps = [0.0] * meters  # TimeInstant strictly increasing per meter (ms), also in a burst
        t0 = time.time()
        sent = 0
        while sent < total:
            due = total if rate is None else min(total, int((time.time() - t0) * rate) + 1)
            while sent < due:
                meter = sent % meters
                now = max(time.time(), stamps[meter] + 0.001)
                stamps[meter] = now
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)).encode() + b".%03dZ" % (
                    int(now * 1000) % 1000)
                payload = template % (stamp, b"%.4f" % (49.9 + (sent % 2000) / 10000))
                self._mids[meter] = self._mids[meter] % 65535 + 1
                topic = self.topics[meter]
                self.socks[meter].sendall(b"%c%s%s%s%s" % (
                    PUBLISH_QOS1, remaining_length(len(topic) + 2 + len(payload)), topic,
                    struct.pack("!H", self._mids[meter]), payload))
                sent += 1
                self.sent += 1
            if rate is not None:
                time.sleep(0.002)
        last = time.time()
        deadline = time.monotonic() + 30
        while self.unacked > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        return sent, t0, last

    def close(self) -> None:
        self._closed = True
        for sock in self.socks:
            try:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
                sock.close()
            except OSError:
                pass


class Viewer(threading.Thread):
    """A browser's live stream of the page (`GET /api/stream`): counts the readings and the devices they name."""

    def __init__(self, url: str, token: str | None, name: str) -> None:
        super().__init__(daemon=True, name=f"viewer-{name}")
        self.url, self.token = url, token
        self.readings = 0
        self.devices: set[str] = set()
        self.error: str | None = None
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            with httpx.stream("GET", self.url, headers=headers, timeout=httpx.Timeout(10, read=60)) as answer:
                if answer.status_code != 200:
                    self.error = f"{answer.status_code} {answer.read()[:200]!r}"
                    return
                event = None
                for line in answer.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith("event: "):
                        event = line[7:]
                        if event == "hello":
                            self.ready.set()
                    elif line.startswith("data: ") and event == "reading":
                        self.readings += 1
                        self.devices.add(json.loads(line[6:]).get("device", "?"))
        except httpx.HTTPError as exc:
            if not self.stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()


def _mosquitto_pid(launched: int) -> int:
    """Mosquitto's own pid: the stack launches it through a guard process that stays its parent."""
    try:
        children = psutil.Process(launched).children()
    except psutil.Error:
        return launched
    return children[0].pid if children else launched


class StackUnderTest:
    """One embedded stack (access on or off), its meters provisioned and connected, its page's two viewers."""

    def __init__(self, mode: str, root: Path, device_ids: list[str], template: bytes) -> None:
        self.mode, self.template, self.device_ids = mode, template, device_ids
        on = mode == "on"
        self.config = StackConfig(data_dir=root / mode, mqtt_port=free_port(), broker_port=free_port(),
                                  agent_port=free_port(), quality_port=0, web_port=0, mqtt_prefer="mosquitto",
                                  access=on, mqtt_auth=on)
        self.stack = EmbeddedStack(self.config)
        self.stack.start()
        cfg = self.config
        provision(cfg.agent_url, DEMO_SITE.headers, service_group(DEMO_APIKEY),
                  [meter_device(d, DEMO_APIKEY) for d in device_ids])
        logins = None
        if on:
            from access._mqtt_auth import MqttCredentials

            creds = MqttCredentials(cfg.data_dir)
            creds.ensure([(DEMO_APIKEY, d) for d in device_ids])  # one write and one reload for every meter
            assert self.stack.mqtt is not None
            self.stack.mqtt.reload_credentials()
            logins = {d: creds.login(d) for d in device_ids}  # type: ignore[misc]
            time.sleep(0.5)  # Mosquitto re-reads its files on the SIGHUP
        self.meters = MeterConnections(cfg.host, cfg.mqtt_port, DEMO_APIKEY, device_ids, logins)
        assert self.stack.mqtt is not None
        self.pids = {"mosquitto": _mosquitto_pid(self.stack.mqtt.process.pid),
                     **{c.name: c.process.pid for c in self.stack.children if c.process is not None}}
        self.member_device = device_ids[0]
        tokens: dict[str, str | None] = {"manager": None, "member": None}
        if on:
            from access import LocalIssuer

            issuer = LocalIssuer(cfg.data_dir)
            tokens = {"manager": issuer.token("bench-manager", "manager"),
                      "member": issuer.token(f"member-{self.member_device}", "member",
                                             member=f"member-{self.member_device}", devices=[self.member_device])}
        self.viewers = {name: Viewer(f"{self.stack.web_url}/api/stream", token, f"{mode}-{name}")
                        for name, token in tokens.items()}
        for viewer in self.viewers.values():
            viewer.start()
        for viewer in self.viewers.values():
            viewer.ready.wait(20)
            if viewer.error:
                raise RuntimeError(f"{mode}: the page's stream refused the {viewer.name}: {viewer.error}")

    def warm(self) -> None:
        """Every meter once, so entities exist and caches are warm before measuring."""
        base = agent_upserted(self.config.agent_url)
        sent, _, _ = self.meters.run(self.template, len(self.device_ids), len(self.device_ids),
                                     rate=len(self.device_ids))
        self._drain(base + sent, 60)

    def _drain(self, target: float, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        count = agent_upserted(self.config.agent_url)
        while count < target and time.monotonic() < deadline:
            time.sleep(0.05)
            count = agent_upserted(self.config.agent_url)
        return count

    def phase(self, total: int, rate: float | None) -> dict[str, Any]:
        """`total` messages at `rate` msg/s (None: a burst); CPU of every process per landed message."""
        cfg = self.config
        base = agent_upserted(cfg.agent_url)
        sampler = ProcSampler({**self.pids, "bench": os.getpid()})
        ticks0 = {name: _cpu_ticks(pid) for name, pid in self.pids.items()}
        sampler.start()
        sent, t0, t1 = self.meters.run(self.template, len(self.device_ids), total, rate)
        drained = self._drain(base + sent, 120) - base
        time.sleep(0.5)  # the analytics' and the page's last notifications
        usage = sampler.stop()
        cpu_s = {name: (_cpu_ticks(pid) - ticks0[name]) / CLK_TCK for name, pid in self.pids.items()}
        rows = landed(cfg.broker_url, twin_headers(), t0 - 0.001, t1 + 0.2)
        unique = {(entity, round(observed, 3)) for entity, observed, _ in rows}
        latencies = [(modified - observed) * 1000 for _, observed, modified in rows]
        span = max(m for _, _, m in rows) - t0 if rows else float("nan")
        return {"sent": sent, "landed": len(unique), "missing": sent - len(unique), "agent_upserted": int(drained),
                "throughput_msg_s": round(len(unique) / span, 1) if rows else 0.0,
                "twin_latency_ms": {"p50": round(percentile(latencies, 50), 1),
                                    "p99": round(percentile(latencies, 99), 1)},
                "cpu_s": {k: round(v, 3) for k, v in cpu_s.items()},
                "others_cpu_pct": usage["others_cpu_pct"], "loadavg_1m": usage["loadavg_1m"],
                "bench_cpu_pct": usage["processes"]["bench"]["cpu_pct"]}

    def idle(self, seconds: float) -> dict[str, float]:
        """% of one core each process uses with no message flowing (timers, pollers, token refresh)."""
        ticks0 = {name: _cpu_ticks(pid) for name, pid in self.pids.items()}
        start = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - start
        return {name: round((_cpu_ticks(pid) - ticks0[name]) / CLK_TCK / wall * 100, 2)
                for name, pid in self.pids.items()}

    def stop(self) -> None:
        for viewer in self.viewers.values():
            viewer.stop.set()
        self.meters.close()
        self.stack.stop()


def _summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU per landed message per process (totals over rounds), medians of throughput and latency."""
    landed_total = sum(p["landed"] for p in phases)
    names = list(phases[0]["cpu_s"])
    per_msg = {n: sum(p["cpu_s"][n] for p in phases) / max(landed_total, 1) for n in names}
    return {"messages": landed_total, "missing": sum(p["missing"] for p in phases),
            "cpu_ms_per_msg": {n: round(1000 * v, 4) for n, v in per_msg.items()},
            "stack_cpu_ms_per_msg": round(1000 * sum(per_msg.values()), 4),
            "throughput_msg_s_median": statistics.median(p["throughput_msg_s"] for p in phases),
            "throughput_msg_s_per_round": [p["throughput_msg_s"] for p in phases],
            "twin_p50_ms_median": statistics.median(p["twin_latency_ms"]["p50"] for p in phases),
            "twin_p99_ms_median": statistics.median(p["twin_latency_ms"]["p99"] for p in phases),
            "others_cpu_pct_median": statistics.median(p["others_cpu_pct"] for p in phases)}


def _control(on: dict[str, Any], off: dict[str, Any], phase: str) -> float:
    """(broker + agent CPU per message, on) / (the same, off): 1 when the run is quiet enough to trust."""
    def same(side: dict[str, Any]) -> float:
        return side[phase]["cpu_ms_per_msg"]["broker"] + side[phase]["cpu_ms_per_msg"]["agent"]
    return round(same(on) / same(off), 3)


# The processes whose work differs between the modes: Mosquitto (logins, ACL checks), the analytics and the page
# (reads through the PEP, the page's token checks and per-viewer filtering), and the two PEPs, which only "on" runs.
PEP_PROCESSES = ("access", "agent-access")
DIFFERING_PROCESSES = ("mosquitto", "quality", "web", *PEP_PROCESSES)


def _process_shares(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    """Per phase: the PEPs' CPU per message over the whole stack's (on, what only access control runs), and the
    differing processes' CPU per message on minus off (ms), each and summed as a share of the stack's off."""
    shares: dict[str, Any] = {"pep_processes_share_of_stack_cpu": {}, "differing_processes_delta_ms_per_msg": {},
                              "differing_processes_delta_share": {}}
    for phase in ("steady", "burst"):
        cpu_on, cpu_off = on[phase]["cpu_ms_per_msg"], off[phase]["cpu_ms_per_msg"]
        delta = {n: cpu_on.get(n, 0.0) - cpu_off.get(n, 0.0) for n in DIFFERING_PROCESSES}
        shares["pep_processes_share_of_stack_cpu"][phase] = round(
            sum(cpu_on.get(n, 0.0) for n in PEP_PROCESSES) / on[phase]["stack_cpu_ms_per_msg"], 4)
        shares["differing_processes_delta_ms_per_msg"][phase] = {n: round(v, 4) for n, v in delta.items()}
        shares["differing_processes_delta_share"][phase] = round(
            sum(delta.values()) / off[phase]["stack_cpu_ms_per_msg"], 4)
    return shares


def run(rounds: int, meters: int, rate_hz: float, seconds: float, burst: int,
        machine: Any) -> dict[str, Any]:
    """Both stacks, `rounds` interleaved rounds; returns the document written to access_overhead_stack.json."""
    started = time.perf_counter()
    template_text, payload_bytes = meter_payload_template()
    template = template_text.encode()
    device_ids = [f"bench-{n:04d}" for n in range(meters)]
    machine_before = machine()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {m: {"steady": [], "burst": []} for m in MODES}
    idle: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-access-stack-") as tmp:
        stacks: dict[str, StackUnderTest] = {}
        try:
            for mode in MODES:
                stacks[mode] = StackUnderTest(mode, Path(tmp), device_ids, template)
                stacks[mode].warm()
                print(f"[{mode}] stack up, {meters} meters connected, processes {sorted(stacks[mode].pids)}",
                      flush=True)
            for rnd in range(rounds):
                order = list(MODES) if rnd % 2 == 0 else list(reversed(MODES))
                for mode in order:
                    steady = stacks[mode].phase(int(meters * rate_hz * seconds), meters * rate_hz)
                    time.sleep(1.0)
                    bursty = stacks[mode].phase(burst, None)
                    results[mode]["steady"].append(steady)
                    results[mode]["burst"].append(bursty)
                    idle[mode].append(stacks[mode].idle(3.0))
                    cpu = sum(steady["cpu_s"].values()) * 1000 / max(steady["landed"], 1)
                    print(f"round {rnd + 1} {mode:>3}: steady {steady['landed']}/{steady['sent']} landed, "
                          f"{cpu:.3f} ms CPU/msg, p99 {steady['twin_latency_ms']['p99']} ms; burst "
                          f"{bursty['throughput_msg_s']:.0f} msg/s ({bursty['landed']}/{bursty['sent']}); "
                          f"load {steady['loadavg_1m']}", flush=True)
                    time.sleep(1.0)
            leaks = {mode: sorted(s.viewers["member"].devices - {s.member_device}) for mode, s in stacks.items()
                     if mode == "on"}
            viewers = {mode: {name: {"readings": v.readings, "devices": len(v.devices), "error": v.error}
                              for name, v in s.viewers.items()} for mode, s in stacks.items()}
        finally:
            for s in stacks.values():
                s.stop()
    summary = {mode: {phase: _summary(results[mode][phase]) for phase in ("steady", "burst")} for mode in MODES}
    on, off = summary["on"], summary["off"]
    burst_ratios = [round(a["throughput_msg_s"] / b["throughput_msg_s"], 3)
                    for a, b in zip(results["on"]["burst"], results["off"]["burst"], strict=True)
                    if b["throughput_msg_s"]]
    steady_cpu_ratios = [round((sum(a["cpu_s"].values()) / max(a["landed"], 1))
                               / (sum(b["cpu_s"].values()) / max(b["landed"], 1)), 3)
                         for a, b in zip(results["on"]["steady"], results["off"]["steady"], strict=True)]
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rounds": rounds, "meters": meters, "rate_hz": rate_hz, "seconds": seconds, "burst": burst,
        "payload_bytes": payload_bytes, "wall_s": round(time.perf_counter() - started, 1),
        "machine_before": machine_before, "machine_after": machine(),
        "summary": summary,
        "idle_cpu_pct": {mode: {name: round(statistics.median(r[name] for r in rows), 2) for name in rows[0]}
                         for mode, rows in idle.items()},
        "idle_cpu_pct_stack": {mode: round(statistics.median(sum(r.values()) for r in rows), 2)
                               for mode, rows in idle.items()},
        "ratios_on_to_off": {
            "stack_cpu_per_msg_steady": round(on["steady"]["stack_cpu_ms_per_msg"]
                                              / off["steady"]["stack_cpu_ms_per_msg"], 3),
            "stack_cpu_per_msg_steady_per_round": steady_cpu_ratios,
            "stack_cpu_per_msg_burst": round(on["burst"]["stack_cpu_ms_per_msg"]
                                             / off["burst"]["stack_cpu_ms_per_msg"], 3),
            "burst_throughput_median": round(on["burst"]["throughput_msg_s_median"]
                                             / off["burst"]["throughput_msg_s_median"], 3),
            "burst_throughput_per_round": burst_ratios,
            "burst_throughput_median_of_round_ratios": round(statistics.median(burst_ratios), 3)
            if burst_ratios else None,
            # The broker and the agent do the same work in both modes (the agent writes to the broker's own
            # port either way): how far their CPU per message moves between the modes is this run's noise.
            "same_work_control_broker_agent_steady": _control(on, off, "steady"),
            "same_work_control_broker_agent_burst": _control(on, off, "burst"),
        },
        **_process_shares(on, off),
        "member_viewer_foreign_devices": leaks,
        "viewers": viewers,
        "rounds_detail": results,
        "note": "on = access control as `energytwin up`/`demo` run it (per-device MQTT logins and ACL, PEP in "
                "front of the analytics and the page, page login, filtered SSE viewers), off = "
                "--no-access-control; the agent writes to the broker's own port in both. CPU per landed "
                "message from /proc/<pid>/stat over the phase (publishing until drained + 0.5 s). Rounds "
                "interleaved, order flipped each round, the other stack idle meanwhile. Shared 2-core machine.",
    }
    if any(leaks.values()):
        raise SystemExit(f"the member viewer's stream carried foreign meters: {leaks}")
    return doc
