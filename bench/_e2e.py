"""Shared parts of the end-to-end benchmarks (e2e_ingest.py, peer_baseline.py); run_all skips `_` files.

- `meter_payload_template()`: the firmware's exact live payload (captured once from `SimulatedMeter.step()`), with
  `TimeInstant` (the publish time, ms) and `f` varied per message;
- `LoadGenerator`: N meters at R Hz over a few paho connections (QoS 1), spread evenly over each period;
- `NotifyReceiver`: a keep-alive HTTP/1.1 server recording (receipt time, body) of NGSI-LD notifications;
- `ProcSampler`: CPU seconds and RSS of processes from /proc, plus what the rest of the machine used;
- `start_broker_cli()`: the broker CLI of a source tree (the work tree or a `git archive` of a revision) on a port,
  once `/version` answers;
- `landed()`: every instance of `frequency` the broker recorded in a time window, with observedAt and modifiedAt
  (= when the broker accepted it), read through the temporal API: the count and the latencies.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MEASUREMENT_TYPE = "ThreePhaseAcMeasurement"
_F_SENTINEL = 98765.4321
_TS_SENTINEL = "@@TIME_INSTANT@@"


def iso_ms(t: float) -> str:
    """Epoch seconds -> `YYYY-MM-DDTHH:MM:SS.sssZ` (what the firmware sends)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def epoch(text: str) -> float:
    """`...Z` ISO 8601 -> epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


def meter_payload_template() -> tuple[str, int]:
    """The firmware's live payload as a %-template (TimeInstant, frequency) and its real size in bytes."""
    from firmware.emulator.simulated_meter import SimulatedMeter

    meter = SimulatedMeter("bench-template", mqtt_host=None)
    try:
        meter.step()
        meter.step()
        _topic, payload = meter.published[-1]
    finally:
        meter.stop()
    size = len(json.dumps(payload, separators=(",", ":")))
    payload = dict(payload, TimeInstant=_TS_SENTINEL, f=_F_SENTINEL)
    text = json.dumps(payload, separators=(",", ":")).replace("%", "%%")
    template = text.replace(_TS_SENTINEL, "%s").replace(repr(_F_SENTINEL), "%s")
    return template, size


@dataclass
class LoadGenerator:
    """Publishes the firmware payload for `meters` devices over `connections` paho clients at QoS 1."""

    host: str
    port: int
    apikey: str
    device_ids: list[str]
    template: str
    connections: int = 4
    qos: int = 1
    clients: list[mqtt.Client] = field(default_factory=list)
    published: int = 0
    current: int = 0  # published so far in the run in progress

    def connect(self) -> None:
        for n in range(self.connections):
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-meters-{os.getpid()}-{n}")
            client.max_inflight_messages_set(1000)
            client.max_queued_messages_set(0)
            client.connect(self.host, self.port)
            client.loop_start()
            self.clients.append(client)
        self.topics = [f"/json/{self.apikey}/{d}/attrs" for d in self.device_ids]

    def close(self) -> None:
        for client in self.clients:
            client.loop_stop()
            client.disconnect()

    def run(self, meters: int, rate_hz: float, seconds: float, stop: threading.Event | None = None) -> tuple[int, float, float]:
        """`meters` x `rate_hz` for `seconds`, each meter once per period at its own offset.

        Returns (messages published, first publish time, last publish time). Stops early when `stop` is set.
        """
        total_rate = meters * rate_hz
        total = int(total_rate * seconds)
        clients, topics, template, qos = self.clients, self.topics, self.template, self.qos
        infos = []
        t0 = time.time()
        sent = 0
        self.current = 0
        while sent < total:
            if stop is not None and stop.is_set():
                break
            now = time.time()
            due = min(total, int((now - t0) * total_rate) + 1)
            while sent < due:
                meter = sent % meters
                stamp = time.time()
                body = template % (iso_ms(stamp), f"{49.9 + (sent % 2000) / 10000:.4f}")
                infos.append(clients[meter % len(clients)].publish(topics[meter], body, qos=qos))
                sent += 1
            self.current = sent
            time.sleep(0.002)
        last = time.time()
        for info in infos[-2000:]:
            info.wait_for_publish(30)
        self.published += sent
        return sent, t0, last


class NotifyReceiver:
    """A minimal HTTP/1.1 server (keep-alive) for NGSI-LD notifications; keeps (receipt time, body)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.port = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
                self.port = server.sockets[0].getsockname()[1]
                ready.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True, name="notify-receiver").start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                body = await read_request_body(reader)
                self.received.append((time.time(), body))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def latencies_ms(self, since: float, until: float, attr: str = "frequency") -> list[float]:
        """publish -> notified for every entity in the notifications about readings stamped in [since, until]."""
        out = []
        for received, body in self.received:
            try:
                data = json.loads(body)["data"]
            except (ValueError, KeyError):
                continue
            for entity in data:
                prop = entity.get(attr)
                if isinstance(prop, dict) and "observedAt" in prop:
                    observed = epoch(prop["observedAt"])
                    if since - 0.001 <= observed <= until + 0.001:
                        out.append((received - observed) * 1000)
        return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_broker_cli(tree: Path, data_dir: Path, port: int, log_level: str = "warning",
                     poll_s: float = 0.1) -> subprocess.Popen[bytes]:
    """Start `python -m twin_service.broker` of `tree` (its directory first on sys.path, so two revisions can be
    measured in one run) on `port` and wait for `/version`; SystemExit when it does not answer within 30 s."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                                str(data_dir), "--log-level", log_level], cwd=tree, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/version", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            process.wait(5)
            raise SystemExit(f"broker of {tree} did not start on port {port}")
        time.sleep(poll_s)


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM = peak RSS) in MB."""
    rss = hwm = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, hwm


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    parts = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


class ProcSampler:
    """CPU use between `start()` and `stop()` of named processes, their RSS at the end, and the machine's load."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def start(self) -> None:
        self._t = time.monotonic()
        self._ticks = {name: _cpu_ticks(pid) for name, pid in self.pids.items()}
        self._machine = _machine_ticks()

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t
        ticks = {name: _cpu_ticks(pid) - self._ticks[name] for name, pid in self.pids.items()}
        busy, total = _machine_ticks()
        busy -= self._machine[0]
        total -= self._machine[1]
        cores = os.cpu_count() or 1
        ours = sum(ticks.values())
        procs = {}
        for name, pid in self.pids.items():
            rss, hwm = rss_mb(pid)
            procs[name] = {"cpu_pct": round(ticks[name] / CLK_TCK / wall * 100, 1), "rss_mb": round(rss, 1),
                           "peak_rss_mb": round(hwm, 1)}
        return {
            "processes": procs,
            "machine_busy_pct_of_all_cores": round(busy / total * 100, 1) if total else 0.0,
            "others_cpu_pct": round(max(0, busy - ours) / total * cores * 100, 1) if total else 0.0,
            "loadavg_1m": float(Path("/proc/loadavg").read_text().split()[0]),
        }


def provision(agent_url: str, site_headers: dict[str, str], group: dict, devices: list[dict]) -> None:
    """The service group and the devices through the agent's north API, 250 devices per request."""
    with httpx.Client(base_url=agent_url, headers=site_headers, timeout=60) as http:
        answer = http.post("/iot/services", json={"services": [group]})
        if answer.status_code not in (201, 409):
            raise RuntimeError(f"group: {answer.status_code} {answer.text}")
        for start in range(0, len(devices), 250):
            answer = http.post("/iot/devices", json={"devices": devices[start:start + 250]})
            if answer.status_code not in (201, 409):
                raise RuntimeError(f"devices: {answer.status_code} {answer.text}")


def landed(broker_url: str, headers: dict[str, str], since: float, until: float,
           attr: str = "frequency") -> list[tuple[str, float, float]]:
    """(entity id, observedAt, modifiedAt) of every `attr` instance observed in [since, until], all meters."""
    out: list[tuple[str, float, float]] = []
    params = {"type": MEASUREMENT_TYPE, "attrs": attr, "options": "sysAttrs", "timerel": "between",
              "timeAt": iso_ms(since - 0.001), "endTimeAt": iso_ms(until + 0.002), "limit": "100"}
    with httpx.Client(timeout=120) as http:
        offset = 0
        while True:
            answer = http.get(f"{broker_url}/ngsi-ld/v1/temporal/entities", headers=headers,
                              params={**params, "offset": str(offset)})
            if answer.status_code == 404 and "NonexistentTenant" in answer.text:
                return out  # nothing has landed yet: the tenant is created by its first write (a busy machine)
            answer.raise_for_status()
            page = answer.json()
            for entity in page:
                instances = entity.get(attr, [])
                if isinstance(instances, dict):
                    instances = [instances]
                for instance in instances:
                    out.append((entity["id"], epoch(instance["observedAt"]), epoch(instance["modifiedAt"])))
            if len(page) < 100:
                return out
            offset += 100


async def read_request_body(reader: asyncio.StreamReader) -> bytes:
    """The body of the next HTTP/1.1 request on a kept-alive connection (the receivers only need the body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..100 (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def agent_upserted(agent_url: str) -> float:
    """The agent's `upserted_messages_total` counter (messages the broker accepted)."""
    try:
        text = httpx.get(f"{agent_url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return -1
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("energytwin_agent_upserted_messages_total"))
