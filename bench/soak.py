"""Soak with faults: N meters x R Hz through the embedded stack for a long time while a chaos loop breaks things.

The stack is `EmbeddedStack` (Mosquitto, agent, broker, quality analytics, web page, supervised: a child that dies
is restarted), loaded by the firmware's exact payload at QoS 1 (bench/_e2e.py LoadGenerator), with one NGSI-LD
subscription on every meter's `frequency` notifying an HTTP receiver here. Loopback only, bounded in time.

The chaos loop injects, spread over the run, one after the other:
- kill -9 of each service in turn (broker, agent, quality, web): the supervisor restarts it;
- a restart of the MQTT broker (SIGTERM; the supervisor starts it again);
- the subscriber away for 60 s (the receiver drops every connection), then back;
- the context broker and the MQTT broker each paused (SIGSTOP) for 10 s, then SIGCONT.
After each fault it measures the recovery (fault over -> a reading published after it is in the twin; for the
subscriber: -> the next notification arrives) and runs PRAGMA quick_check on the broker's SQLite file.

At the end (after the queue drained) every published message is looked up in the broker's history: lost =
published but not there, duplicated = there more than once (the same meter and TimeInstant), notifications lost =
landed readings no notification carried; each of the three is also split by the fault it followed
(`by_fault`). RSS is measured per service, each its own process tree (Mosquitto runs under the stack's guard
process: its child is the broker), after warm-up, every minute, and at the end of publishing; growth compares
warm-up with the end (a service restarted by a fault starts small, so its own figure then says little). After
the stack stopped, PRAGMA integrity_check runs on every SQLite file.

Usage: python bench/soak.py [--quick | --smoke] [--seconds S] [--meters N] [--rate HZ] [--out PATH]
  full: 1,000 meters x 1 Hz for 1,800 s; --quick: 20 meters for 25 s, the eight faults shortened (~40 s);
  --smoke: 10 meters for 10 s with kill -9 of the broker and the agent and an MQTT restart (~25 s, a check by hand;
  make test runs --quick through tests/bench/test_bench_smoke.py and checks its figures), written to bench/results/soak_smoke.json.
Writes bench/results/soak.json (a long run also bench/results/soak-<UTC start, YYYY-MM-DDTHHMM>.json, which a
later smoke run cannot overwrite) with published, landed, lost, duplicated, notifications_lost, faults_injected,
max_recovery_s, rss_growth_pct, the machine's load and the details. Goal (reported, not asserted): zero lost, zero duplicated, RSS
growth < 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._e2e import (
    MEASUREMENT_TYPE,
    RESULTS,
    LoadGenerator,
    NotifyReceiver,
    agent_upserted,
    epoch,
    iso_ms,
    meter_payload_template,
    provision,
    read_request_body,
    rss_mb,
)
from energytwin.demo import DEMO_APIKEY, DEMO_SITE, twin_headers
from energytwin.stack import EmbeddedStack, StackConfig
from provisioning.agent_bodies import meter_device, service_group
from twin_service.mqtt_server import free_port

SUBSCRIPTION_ID = "urn:ngsi-ld:Subscription:soak"
FAULTS = ("kill -9 broker", "kill -9 agent", "kill -9 quality", "kill -9 web", "restart mqtt broker",
          "subscriber away", "SIGSTOP broker", "SIGSTOP mqtt broker")
SMOKE_FAULTS = ("kill -9 broker", "kill -9 agent", "restart mqtt broker")  # the faults that redeliver


class AwayReceiver(NotifyReceiver):
    """The notification receiver, which can go away (every connection dropped unanswered) and come back."""

    def __init__(self) -> None:
        self.away = False
        super().__init__()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                body = await read_request_body(reader)
                if self.away:
                    break
                self.received.append((time.time(), body))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def keys(self) -> dict[tuple[str, float], int]:
        """(entity id, observedAt) of every frequency value notified -> how many times it was (more than once:
        the broker's backlog is at-least-once across a crash)."""
        out: dict[tuple[str, float], int] = {}
        for _, body in self.received:
            try:
                data = json.loads(body)["data"]
            except (ValueError, KeyError):
                continue
            for entity in data:
                prop = entity.get("frequency")
                if isinstance(prop, dict) and "observedAt" in prop:
                    key = (entity["id"], round(epoch(prop["observedAt"]), 3))
                    out[key] = out.get(key, 0) + 1
        return out


def subscribe(broker_url: str, receiver_url: str) -> None:
    answer = httpx.post(f"{broker_url}/ngsi-ld/v1/subscriptions", headers=twin_headers(), json={
        "type": "Subscription", "id": SUBSCRIPTION_ID, "entities": [{"type": MEASUREMENT_TYPE}],
        "watchedAttributes": ["frequency"],
        "notification": {"attributes": ["frequency"], "format": "normalized",
                         "endpoint": {"uri": receiver_url, "accept": "application/json"}}}, timeout=10)
    answer.raise_for_status()


def stack_pids(stack: EmbeddedStack) -> dict[str, int]:
    """The pid of each service. Mosquitto, which drops to its own user, runs under the stack's guard process
    (energytwin/_child_guard.py --stay): its pid is the guard's child, not the guard."""
    pids = {c.name: c.process.pid for c in stack.children if c.process is not None}
    if stack.mqtt is not None:
        pids["mosquitto"] = mosquitto_pid(stack.mqtt.process.pid)
    return pids


def mosquitto_pid(launched: int) -> int:
    """The MQTT broker's own pid: the launched process, or its child when the launched one is the guard."""
    try:
        children = psutil.Process(launched).children()
    except psutil.Error:
        return launched
    return children[0].pid if children else launched


def service_rss_mb(stack: EmbeddedStack) -> dict[str, float]:
    """RSS of each service's own process tree, MB."""
    out = {}
    for name, pid in stack_pids(stack).items():
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            continue
        out[name] = round(sum(rss_mb(p.pid)[0] for p in procs), 1)
    return out


def queue_depth(http: httpx.Client, agent_url: str) -> float | None:
    """Messages in the agent's durable queue, waiting for the broker (None: the agent did not answer)."""
    try:
        text = http.get(f"{agent_url}/metrics").text
    except httpx.HTTPError:
        return None
    return next((float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("energytwin_agent_upsert_queue_depth")), None)


def fresh_in_twin(broker_url: str, entity_id: str, since: float, timeout_s: float, agent_url: str | None = None,
                  peak: list[float] | None = None) -> float | None:
    """Seconds until the meter's frequency in the twin was observed at or after `since` (None: not in time).

    With `agent_url` and `peak`, the largest agent queue depth seen meanwhile is appended to `peak`: the backlog
    the recovery had to work off (readings of every meter are upserted in arrival order)."""
    deadline = time.time() + timeout_s
    largest = 0.0
    with httpx.Client(timeout=2) as http:
        while time.time() < deadline:
            if agent_url is not None:
                largest = max(largest, queue_depth(http, agent_url) or 0.0)
            try:
                answer = http.get(f"{broker_url}/ngsi-ld/v1/entities/{entity_id}", headers=twin_headers(),
                                  params={"attrs": "frequency"})
                if answer.status_code == 200:
                    observed = answer.json().get("frequency", {}).get("observedAt")
                    if observed and epoch(observed) >= since:
                        if peak is not None:
                            peak.append(largest)
                        return round(time.time() - since, 2)
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    return None


def quick_check(path: Path) -> str:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        return f"error: {exc}"


class Chaos:
    """The fault schedule, run in its own thread; records what it did and how long recovery took."""

    def __init__(self, stack: EmbeddedStack, receiver: AwayReceiver, probe_id: str, start_at: float,
                 slot_s: float, away_s: float, pause_s: float, t0: float, schedule: tuple[str, ...] = FAULTS) -> None:
        self.stack, self.receiver, self.probe_id, self.schedule = stack, receiver, probe_id, schedule
        self.start_at, self.slot_s, self.away_s, self.pause_s = start_at, slot_s, away_s, pause_s
        self.faults: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.t0 = t0  # publishing began: `at_s` is on the same clock as the *_by_second figures
        self._peak: list[float] = []

    def _child(self, name: str) -> Any:
        return next(c for c in self.stack.children if c.name == name)

    def _record(self, name: str, started: float, ended: float, recovery_s: float | None) -> None:
        check = quick_check(self.stack.config.data_dir / "twin.sqlite")
        entry = {"fault": name, "at_s": round(started - self.t0, 1), "duration_s": round(ended - started, 1),
                 "recovery_s": recovery_s, "agent_queue_peak": self._peak.pop() if self._peak else None,
                 "broker_db_quick_check": check}
        self.faults.append(entry)
        print(f"  fault {name:<22} at {entry['at_s']:>7.1f} s  lasted {entry['duration_s']:>5.1f} s  "
              f"recovered in {recovery_s} s  quick_check {check}", flush=True)

    def _recover(self, ended: float) -> float | None:
        return fresh_in_twin(self.stack.config.broker_url, self.probe_id, ended, 180, self.stack.config.agent_url,
                             self._peak)

    def kill(self, name: str) -> None:
        started = time.time()
        os.kill(self._child(name).process.pid, signal.SIGKILL)
        self._record(f"kill -9 {name}", started, started, self._recover(started))

    def restart_mqtt(self) -> None:
        started = time.time()
        assert self.stack.mqtt is not None
        self.stack.mqtt.process.send_signal(signal.SIGTERM)  # the supervisor starts it again
        self._record("restart mqtt broker", started, started, self._recover(started))

    def pause(self, name: str) -> None:
        pid = mosquitto_pid(self.stack.mqtt.process.pid) if name == "mqtt broker" else self._child(name).process.pid
        started = time.time()
        os.kill(pid, signal.SIGSTOP)
        time.sleep(self.pause_s)
        os.kill(pid, signal.SIGCONT)
        ended = time.time()
        self._record(f"SIGSTOP {name} {self.pause_s:g} s", started, ended, self._recover(ended))

    def subscriber_away(self) -> None:
        started = time.time()
        self.receiver.away = True
        time.sleep(self.away_s)
        self.receiver.away = False
        ended = time.time()
        count = len(self.receiver.received)
        deadline = ended + 180
        while len(self.receiver.received) == count and time.time() < deadline:
            time.sleep(0.1)
        recovery = round(time.time() - ended, 2) if len(self.receiver.received) > count else None
        self._record(f"subscriber away {self.away_s:g} s", started, ended, recovery)

    def run(self) -> None:
        steps = {"kill -9 broker": lambda: self.kill("broker"), "kill -9 agent": lambda: self.kill("agent"),
                 "kill -9 quality": lambda: self.kill("quality"), "kill -9 web": lambda: self.kill("web"),
                 "restart mqtt broker": self.restart_mqtt, "subscriber away": self.subscriber_away,
                 "SIGSTOP broker": lambda: self.pause("broker"), "SIGSTOP mqtt broker": lambda: self.pause("mqtt broker")}
        try:
            for index, name in enumerate(self.schedule):
                wait = self.start_at + index * self.slot_s - time.time()
                if wait > 0:
                    time.sleep(wait)
                steps[name]()
        finally:
            self.done.set()


def publish_until(gen: LoadGenerator, meters: int, rate_hz: float, stop: threading.Event,
                  per_second: dict[int, int]) -> tuple[int, float, float]:
    """Each meter once per period until `stop`; like LoadGenerator.run, but a publish made while the MQTT broker
    is away is not an error: paho keeps the QoS 1 message and sends it after reconnecting."""
    total_rate = meters * rate_hz
    clients, topics, template = gen.clients, gen.topics, gen.template
    t0 = time.time()
    sent = 0
    while not stop.is_set():
        due = int((time.time() - t0) * total_rate) + 1
        while sent < due:
            meter = sent % meters
            stamp = time.time()
            body = template % (iso_ms(stamp), f"{49.9 + (sent % 2000) / 10000:.4f}")
            per_second[int(stamp)] = per_second.get(int(stamp), 0) + 1
            clients[meter % len(clients)].publish(topics[meter], body, qos=1)
            sent += 1
        time.sleep(0.002)
    last = time.time()
    deadline = time.time() + 60
    while time.time() < deadline and any(c._out_messages for c in clients):  # paho's unacknowledged QoS 1
        time.sleep(0.2)
    return sent, t0, last


def wait_drained(agent_url: str, timeout_s: float) -> float:
    """Wait until the agent's upserted count stops moving and its queue is empty; returns the count."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = -2.0, time.monotonic()
    while time.monotonic() < deadline:
        count = agent_upserted(agent_url)
        try:
            depth = next((float(line.split()[-1]) for line in httpx.get(f"{agent_url}/metrics", timeout=5).text
                          .splitlines() if line.startswith("energytwin_agent_upsert_queue_depth")), 0.0)
        except httpx.HTTPError:
            depth = 1.0
        if count != last:
            last, stable_since = count, time.monotonic()
        elif depth == 0 and time.monotonic() - stable_since > 3:
            return count
        time.sleep(0.5)
    return last


def count_landed(broker_url: str, t0: float, t1: float, window_s: float = 120.0
                 ) -> tuple[set[tuple[str, float]], dict[tuple[str, float], int]]:
    """Every frequency instance observed in [t0, t1]: the set of (entity, observedAt) and the extra copies of
    each key held more than once."""
    keys: set[tuple[str, float]] = set()
    duplicates: dict[tuple[str, float], int] = {}
    start = t0 - 0.001
    with httpx.Client(timeout=300) as http:
        while start < t1 + 0.002:
            end = min(start + window_s, t1 + 0.002)
            seen: dict[tuple[str, float], int] = {}
            offset = 0
            while True:
                answer = http.get(f"{broker_url}/ngsi-ld/v1/temporal/entities", headers=twin_headers(), params={
                    "type": MEASUREMENT_TYPE, "attrs": "frequency", "timerel": "between", "timeAt": iso_ms(start),
                    "endTimeAt": iso_ms(end), "limit": "100", "offset": str(offset)})
                answer.raise_for_status()
                page = answer.json()
                for entity in page:
                    instances = entity.get("frequency", [])
                    for instance in [instances] if isinstance(instances, dict) else instances:
                        key = (entity["id"], round(epoch(instance["observedAt"]), 3))
                        seen[key] = seen.get(key, 0) + 1
                if len(page) < 100:
                    break
                offset += 100
            duplicates.update({key: n - 1 for key, n in seen.items() if n > 1})
            keys.update(seen)
            start = end
    return keys, duplicates


def per_second(counts: dict[tuple[str, float], int], t0: float) -> dict[int, int]:
    """Counts per (entity, observedAt) summed by the second of publishing (seconds after `t0`) they were taken."""
    out: dict[int, int] = {}
    for (_, observed), n in counts.items():
        second = round(int(observed) - t0)
        out[second] = out.get(second, 0) + n
    return dict(sorted(out.items()))


def by_fault(faults: list[dict[str, Any]], figures: dict[str, dict[int, int]]) -> dict[str, dict[str, int]]:
    """Each figure's seconds attributed to the latest fault that began at or before them ("before any fault"
    for earlier seconds): which fault cost what."""
    starts = sorted((f["at_s"], f["fault"]) for f in faults)
    out: dict[str, dict[str, int]] = {}
    for figure, seconds in figures.items():
        for second, n in seconds.items():
            name = next((fault for at, fault in reversed(starts) if at <= second + 1), "before any fault")
            out.setdefault(name, {}).setdefault(figure, 0)
            out[name][figure] += n
    return out


def machine_load(since: dict[int, tuple[str, float]] | None = None) -> dict[str, Any]:
    """Load average, and with `since` (a previous call's `_cpu`) the processes outside the soak's own tree that
    used the most CPU meanwhile: what else was running on the shared machine."""
    own = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    cpu: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None or proc.info["pid"] in own:
            continue
        line = " ".join(proc.info["cmdline"] or [proc.info["name"] or "?"])
        cpu[proc.info["pid"]] = (line[:100], times.user + times.system)
    out: dict[str, Any] = {"load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count(),
                           "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"), "_cpu": cpu}
    if since is not None:
        used = sorted(((cpu_s - since.get(pid, (line, 0.0))[1], line) for pid, (line, cpu_s) in cpu.items()),
                      reverse=True)
        out["others_cpu_s"] = [{"cpu_s": round(s, 1), "cmd": line} for s, line in used[:8] if s >= 1.0]
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 meters for 25 s, all eight faults shortened")
    parser.add_argument("--smoke", action="store_true",
                        help="10 meters for 10 s, kill -9 of broker and agent and an MQTT restart (~30 s in all: "
                             "the run tests/reliability makes); writes soak_smoke.json")
    parser.add_argument("--seconds", type=float, help="publishing time (default 1800; quick 25; smoke 10)")
    parser.add_argument("--meters", type=int, help="meters (default 1000; quick 20; smoke 10)")
    parser.add_argument("--out", type=Path, help="result file (default bench/results/soak.json, smoke "
                                                 "soak_smoke.json)")
    parser.add_argument("--rate", type=float, default=1.0, help="readings per meter per second (default 1)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (10.0 if args.smoke else 25.0 if args.quick else 1800.0)
    meters = args.meters or (10 if args.smoke else 20 if args.quick else 1000)
    away_s, pause_s = (3.0, 2.0) if args.quick or args.smoke else (60.0, 10.0)
    schedule = SMOKE_FAULTS if args.smoke else FAULTS
    out_path = args.out or RESULTS / ("soak_smoke.json" if args.smoke else "soak.json")
    template, payload_bytes = meter_payload_template()
    device_ids = [f"soak-{n:04d}" for n in range(meters)]
    probe_id = f"urn:ngsi-ld:{MEASUREMENT_TYPE}:{device_ids[0]}"
    started_wall = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_start = machine_load()
    # SIGTERM (timeout, an operator) ends the run through the same cleanup as Ctrl-C: the stack is stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        cfg = StackConfig(data_dir=Path(tmp) / "var", mqtt_port=free_port(), broker_port=free_port(),
                          agent_port=free_port(), quality_port=0, web_port=0, mqtt_prefer="mosquitto")
        stack = EmbeddedStack(cfg)
        stack.start()
        receiver = AwayReceiver()
        gen = LoadGenerator(cfg.host, cfg.mqtt_port, DEMO_APIKEY, device_ids, template)
        integrity: dict[str, str] = {}
        try:
            provision(cfg.agent_url, DEMO_SITE.headers, service_group(DEMO_APIKEY),
                      [meter_device(d, DEMO_APIKEY) for d in device_ids])
            subscribe(cfg.broker_url, receiver.url)
            gen.connect()
            for client in gen.clients:
                client.reconnect_delay_set(min_delay=0.2, max_delay=2)
            time.sleep(1.0)
            stop = threading.Event()
            out: dict[str, Any] = {}
            published_per_s: dict[int, int] = {}

            def publish() -> None:
                out["sent"], out["t0"], out["t1"] = publish_until(gen, meters, args.rate, stop, published_per_s)

            publisher = threading.Thread(target=publish, name="soak-load", daemon=True)  # an interrupt ends the run
            publisher.start()
            begin = time.time()
            warm_s = min(60.0, 0.1 * seconds)
            time.sleep(warm_s)
            rss_samples = [(round(time.time() - begin), service_rss_mb(stack))]
            load_samples = [(rss_samples[0][0], round(os.getloadavg()[0], 2))]
            chaos_window = seconds - warm_s
            slot_s = chaos_window / (len(schedule) + 0.5)
            chaos = Chaos(stack, receiver, probe_id, begin + warm_s + 0.25 * slot_s, slot_s, away_s, pause_s, begin,
                          schedule)
            chaos_thread = threading.Thread(target=chaos.run, name="soak-chaos", daemon=True)
            chaos_thread.start()
            print(f"soak: {meters} meters x {args.rate:g} Hz for {seconds:.0f} s, payload {payload_bytes} bytes, "
                  f"faults every {slot_s:.0f} s; RSS after warm-up {rss_samples[0][1]} MB", flush=True)
            while time.time() < begin + seconds or not chaos.done.is_set():
                time.sleep(0.5)
                if time.time() - begin - rss_samples[-1][0] >= 60:
                    rss_samples.append((round(time.time() - begin), service_rss_mb(stack)))
                    load_samples.append((rss_samples[-1][0], round(os.getloadavg()[0], 2)))
            rss_samples.append((round(time.time() - begin), service_rss_mb(stack)))
            stop.set()
            publisher.join()
            chaos_thread.join()
            sent, t0, t1 = out["sent"], out["t0"], out["t1"]
            upserted = wait_drained(cfg.agent_url, 300.0)
            time.sleep(1.0 if args.smoke else 2.0)  # the last notifications
            keys, duplicates = count_landed(cfg.broker_url, t0, t1)
            notified = receiver.keys()
            restarts = {c.name: c.restarts for c in stack.children}
        finally:
            gen.close()
            stack.stop()
        for path in sorted(cfg.data_dir.rglob("*.sqlite")):
            with contextlib.closing(sqlite3.connect(path)) as db:
                integrity[str(path.relative_to(cfg.data_dir))] = db.execute("PRAGMA integrity_check").fetchone()[0]
    landed_n = len(keys)
    landed_per_s: dict[int, int] = {}
    for _, observed in keys:
        landed_per_s[int(observed)] = landed_per_s.get(int(observed), 0) + 1
    lost_per_s = {round(sec - t0): n - landed_per_s.get(sec, 0) for sec, n in sorted(published_per_s.items())
                  if n > landed_per_s.get(sec, 0)}
    duplicated_per_s = per_second({key: n for key, n in duplicates.items()}, t0)
    notified_lost_per_s = per_second({key: 1 for key in keys - notified.keys()}, t0)
    notified_twice_per_s = per_second({key: n - 1 for key, n in notified.items() if n > 1}, t0)
    load_end = machine_load(load_start.pop("_cpu"))
    load_end.pop("_cpu")
    recoveries = [f["recovery_s"] for f in chaos.faults]
    rss_start, rss_end = (round(sum(rss_samples[i][1].values()), 1) for i in (0, -1))
    result = {
        "run_started_utc": started_wall, "meters": meters, "rate_hz": args.rate, "seconds": seconds,
        "quick": args.quick, "smoke": args.smoke, "payload_bytes": payload_bytes, "cores": os.cpu_count(),
        "published": sent, "landed": landed_n, "lost": sent - landed_n, "duplicated": sum(duplicates.values()),
        "agent_upserted_messages": int(upserted),
        "notifications_lost": len(keys - notified.keys()), "notifications_received": len(receiver.received),
        "notifications_duplicated": sum(n - 1 for n in notified.values()),
        "faults_injected": chaos.faults,
        "max_recovery_s": max((r for r in recoveries if r is not None), default=None),
        "faults_not_recovered": sum(1 for r in recoveries if r is None),
        "rss_start_mb": rss_start, "rss_end_mb": rss_end,
        "rss_growth_pct": round(100.0 * (rss_end - rss_start) / rss_start, 1) if rss_start else None,
        "rss_by_service_mb": {name: [samples.get(name) for _, samples in (rss_samples[0], rss_samples[-1])]
                              for name in rss_samples[-1][1]},
        "rss_samples_mb": [{"at_s": at, **samples} for at, samples in rss_samples],
        "by_fault": by_fault(chaos.faults, {"lost": lost_per_s, "duplicated": duplicated_per_s,
                                            "notifications_lost": notified_lost_per_s,
                                            "notifications_duplicated": notified_twice_per_s}),
        "restarts": restarts, "integrity_check": integrity,
        "machine": {"start": load_start, "end": load_end,
                    "load_1m_samples": [{"at_s": at, "load_1m": load} for at, load in load_samples]},
        "lost_by_second": lost_per_s,  # seconds after the first publish -> readings of that second not landed
        "duplicated_by_second": duplicated_per_s,
        "notifications_lost_by_second": notified_lost_per_s,
    }
    print(f"\npublished {sent:,}  landed {landed_n:,}  lost {result['lost']}  duplicated {result['duplicated']}  "
          f"notifications lost {result['notifications_lost']} (repeated {result['notifications_duplicated']})  "
          f"max recovery {result['max_recovery_s']} s  "
          f"RSS {rss_start} -> {rss_end} MB ({result['rss_growth_pct']} %)  integrity {set(integrity.values())}  "
          f"load {load_start['load_avg_1_5_15']} -> {load_end['load_avg_1_5_15']}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    if not (args.quick or args.smoke):  # a long run also keeps its own file, which no later run overwrites
        dated = RESULTS / f"soak-{started_wall[:16].replace(':', '')}.json"
        dated.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {out_path} and {dated}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
