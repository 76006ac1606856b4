"""Benchmark: N meters x R Hz through the real embedded stack (Mosquitto -> agent -> broker, + quality and web).

The load generator publishes the firmware's exact live payload (captured from the firmware under MicroPython,
TimeInstant = publish time in ms, frequency varied) over 4 connections at QoS 1 to the stack's Mosquitto
(hand-framed MQTT packets, bench/_mqtt_publisher.py, or paho clients with --generator paho); the stack is `EmbeddedStack` with every child process (broker, agent, quality analytics, web page)
serving the demo tenant, so the analytics and the page's subscriptions load the broker as in production.

Per point of the sweep (N x R messages/s) it reports:
- sustained throughput: messages landed / (last modifiedAt - first observedAt), from the broker's own history;
- publish -> entity updated, p50/p95/p99: modifiedAt (when the broker accepted the write) - observedAt (the
  publish time the message carried), for every message, read back through the temporal API with sysAttrs;
- publish -> subscriber notified, p50/p95/p99: an NGSI-LD subscription on `frequency` to an HTTP receiver here;
- CPU (% of one core) and RSS of each process, and what the rest of the machine used meanwhile;
- the count: every published message must be in the history (missing and duplicate instances are reported).
A point "breaks" when throughput < 95 % of the offered rate, a message is missing, or p99 > 1 s; the backlog
guard stops publishing once 5 s worth of messages wait; past the first broken point only the target point
(1,000 x 1 Hz) still runs.

Usage: python bench/e2e_ingest.py [--quick] [--points 100x1,1000x1,...] [--seconds S] [--baseline REV] [--code REV]
`--baseline REV` runs the same points first with the services of git revision REV and prints the ratios.
Writes bench/results/e2e_ingest.json. Targets (issue 10, reported, not asserted): >= 5,000 msg/s with no loss,
p99 publish -> twin < 50 ms at 1,000 meters x 1 Hz, RSS of the whole stack < 500 MB at 1,000 meters.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._e2e import (
    MEASUREMENT_TYPE,
    REPO,
    RESULTS,
    LoadGenerator,
    NotifyReceiver,
    ProcSampler,
    agent_upserted,
    landed,
    meter_payload_template,
    percentile,
    provision,
)
from bench._mqtt_publisher import RawLoadGenerator
from bench._pyspy import Profiler, render
from energytwin.demo import DEMO_APIKEY, DEMO_SITE, twin_headers
from energytwin.stack import EmbeddedStack, StackConfig
from provisioning.agent_bodies import meter_device, service_group
from twin_service.mqtt_server import free_port

FULL_POINTS = "100x1,500x1,1000x1,1000x2,1000x5,1000x10"
QUICK_POINTS = "20x5"


def subscribe(broker_url: str, receiver_url: str) -> None:
    """An NGSI-LD subscription on every meter's frequency, notified to the receiver."""
    answer = httpx.post(f"{broker_url}/ngsi-ld/v1/subscriptions", headers=twin_headers(), json={
        "type": "Subscription", "id": "urn:ngsi-ld:Subscription:e2e-bench",
        "entities": [{"type": MEASUREMENT_TYPE}], "watchedAttributes": ["frequency"],
        "notification": {"attributes": ["frequency"], "format": "normalized",
                         "endpoint": {"uri": receiver_url, "accept": "application/json"}}}, timeout=10)
    answer.raise_for_status()


def wait_upserted(agent_url: str, target: float, timeout_s: float) -> float:
    """Wait until the agent counted `target` upserted messages; returns the counter."""
    deadline = time.monotonic() + timeout_s
    count = agent_upserted(agent_url)
    while count < target and time.monotonic() < deadline:
        time.sleep(0.1)
        count = agent_upserted(agent_url)
    return count


def run_point(stack: EmbeddedStack, gen: LoadGenerator, receiver: NotifyReceiver, pids: dict[str, int],
              meters: int, rate: float, seconds: float, drain_s: float, spy_dir: Path | None = None) -> dict[str, Any]:
    cfg = stack.config
    offered = meters * rate
    base = agent_upserted(cfg.agent_url)
    stop = threading.Event()
    guard = {"tripped": False}
    result: dict[str, Any] = {}

    def publish() -> None:
        result["sent"], result["t0"], result["t1"] = gen.run(meters, rate, seconds, stop)

    sampler = ProcSampler(pids)
    sampler.start()
    profiler = None
    if spy_dir is not None:
        profiler = Profiler({k: v for k, v in pids.items() if k in ("agent", "broker", "quality", "web")},
                            spy_dir, f"{meters}x{rate:g}")
        profiler.start(seconds)
    publisher = threading.Thread(target=publish, name="load-generator")
    publisher.start()
    backlog_limit = max(5 * offered, 1000)
    while publisher.is_alive():
        publisher.join(0.5)
        done = agent_upserted(cfg.agent_url) - base
        if gen.current - done > backlog_limit and not stop.is_set():
            guard["tripped"] = True
            stop.set()
    usage = sampler.stop()
    profile = profiler.stop() if profiler is not None else None
    sent, t0, t1 = result["sent"], result["t0"], result["t1"]
    drained = wait_upserted(cfg.agent_url, base + sent, drain_s) - base
    time.sleep(1.0)  # the last notifications
    rows = landed(cfg.broker_url, twin_headers(), t0 - 0.001, t1 + 0.001)
    unique = {(entity, round(observed, 3)) for entity, observed, _ in rows}
    latencies = [(modified - observed) * 1000 for _, observed, modified in rows]
    notified = receiver.latencies_ms(t0 - 0.001, t1 + 0.001)
    span = (max(m for _, _, m in rows) - t0) if rows else float("nan")
    throughput = len(unique) / span if rows else 0.0
    point = {
        "meters": meters, "rate_hz": rate, "offered_msg_s": offered, "seconds_planned": seconds,
        "published": sent, "publish_seconds": round(t1 - t0, 2), "published_msg_s": round(sent / max(t1 - t0, 1e-9), 1),
        "landed": len(unique), "missing": sent - len(unique), "duplicates": len(rows) - len(unique),
        "agent_upserted": int(drained), "backlog_guard_tripped": guard["tripped"],
        "throughput_msg_s": round(throughput, 1),
        "twin_latency_ms": {q: round(percentile(latencies, v), 1) for q, v in (("p50", 50), ("p95", 95), ("p99", 99))}
        | {"max": round(max(latencies), 1) if latencies else None},
        "notify_latency_ms": {q: round(percentile(notified, v), 1) for q, v in (("p50", 50), ("p95", 95), ("p99", 99))},
        "notifications": len(notified),
        **usage,
    }
    if profile is not None:
        point["profile"] = profile
    point["stack_rss_mb"] = round(sum(p["rss_mb"] for name, p in usage["processes"].items() if name != "bench"), 1)
    point["broken"] = bool(point["missing"] > 0 or guard["tripped"] or throughput < 0.95 * min(offered, point["published_msg_s"])
                           or not latencies or point["twin_latency_ms"]["p99"] > 1000)
    return point


def table(points: list[dict[str, Any]]) -> str:
    head = (f"{'N x R':>10} {'offered':>8} {'sent':>7} {'landed':>7} {'miss':>5} {'msg/s':>8} {'twin p50/p95/p99 ms':>22} "
            f"{'notify p50/p99 ms':>18} {'stack RSS':>9}  CPU% mosq/agent/broker/quality/web/bench  others%  ok")
    lines = [head]
    for p in points:
        t, n, c = p["twin_latency_ms"], p["notify_latency_ms"], p["processes"]
        cpu = "/".join(f"{c[k]['cpu_pct']:.0f}" for k in ("mosquitto", "agent", "broker", "quality", "web", "bench"))
        lines.append(
            f"{p['meters']:>5}x{p['rate_hz']:<4g} {p['offered_msg_s']:>8,.0f} {p['published']:>7,} {p['landed']:>7,} "
            f"{p['missing']:>5} {p['throughput_msg_s']:>8,.0f} {t['p50']:>6.1f}/{t['p95']:>6.1f}/{t['p99']:>7.1f} "
            f"{n['p50']:>8.1f}/{n['p99']:>8.1f} {p['stack_rss_mb']:>6.0f} MB  {cpu:<40} {p['others_cpu_pct']:>6.0f}  "
            f"{'BROKEN' if p['broken'] else 'ok'}")
    return "\n".join(lines)


def mosquitto_pid(launched: int) -> int:
    """Mosquitto's own pid: the stack launches it through a guard process that stays its parent."""
    try:
        children = psutil.Process(launched).children()
    except psutil.Error:
        return launched
    return children[0].pid if children else launched


def export_tree(rev: str, into: Path) -> Path:
    """The project's files at git revision `rev`, unpacked under `into` (`git archive`: the work tree and the
    index are not touched, so a baseline can be measured while others work in the same tree)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


@contextlib.contextmanager
def services_from(tree: Path | None) -> Iterator[None]:
    """Start the stack's child processes from another tree's code: they run `python -m twin_service...` with
    the working directory first on sys.path, then PYTHONPATH (both before the venv's editable install)."""
    if tree is None:
        yield
        return
    before_cwd, before_path = os.getcwd(), os.environ.get("PYTHONPATH")
    os.chdir(tree)
    os.environ["PYTHONPATH"] = str(tree)
    try:
        yield
    finally:
        os.chdir(before_cwd)
        if before_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before_path


def run_stack(points: list[tuple[float, float]], args: argparse.Namespace, tree: Path | None, label: str,
              template: str) -> tuple[list[dict[str, Any]], int]:
    """Start one stack (its services from `tree`, else this tree), provision, run every point, stop it."""
    seconds = args.seconds or (2.0 if args.quick else 20.0)
    drain_s = 20.0 if args.quick else 60.0
    max_meters = int(max(m for m, _ in points))
    device_ids = [f"bench-{n:04d}" for n in range(max_meters)]
    generator = RawLoadGenerator if args.generator == "raw" else LoadGenerator
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp, services_from(tree):
        cfg = StackConfig(data_dir=Path(tmp) / "var", mqtt_port=free_port(), broker_port=free_port(),
                          agent_port=free_port(), quality_port=0, web_port=0, mqtt_prefer="mosquitto")
        stack = EmbeddedStack(cfg)
        started = time.monotonic()
        stack.start()
        receiver = NotifyReceiver()
        gen = generator(cfg.host, cfg.mqtt_port, DEMO_APIKEY, device_ids, template)
        try:
            provision(cfg.agent_url, DEMO_SITE.headers, service_group(DEMO_APIKEY),
                      [meter_device(d, DEMO_APIKEY) for d in device_ids])
            subscribe(cfg.broker_url, receiver.url)
            print(f"[{label}] stack up and {max_meters} meters provisioned in {time.monotonic() - started:.1f} s; "
                  f"{args.generator} generator", flush=True)
            gen.connect()
            time.sleep(1.0)
            # every meter once, so entities exist and caches are warm before measuring
            sent, _, _ = gen.run(max_meters, 1.0, 1.0)
            wait_upserted(cfg.agent_url, sent, 60)
            assert stack.mqtt is not None
            pids = {"mosquitto": mosquitto_pid(stack.mqtt.process.pid),
                    **{c.name: c.process.pid for c in stack.children}, "bench": os.getpid()}
            broken = False
            for meters, rate in points:
                # past the breaking point only the target point (1,000 meters x 1 Hz) still runs, for its figures
                if broken and not args.keep_going and (meters, rate) != (1000, 1):
                    continue
                spy = None if args.py_spy is None else args.py_spy / label
                point = run_point(stack, gen, receiver, pids, int(meters), rate, seconds, drain_s, spy)
                point["code"] = label
                point["generator"] = args.generator
                results.append(point)
                print(f"[{label}] " + table([point]).splitlines()[1], flush=True)
                if "profile" in point:
                    print(render(point["profile"]), flush=True)
                broken = broken or point["broken"]
            entities = httpx.get(f"{cfg.broker_url}/ngsi-ld/v1/entities", headers=twin_headers(),
                                 params={"type": MEASUREMENT_TYPE, "count": "true", "limit": "0"}, timeout=30)
            entity_count = int(entities.headers.get("NGSILD-Results-Count", "-1"))
        finally:
            gen.close()
            stack.stop()
    return results, entity_count


def ratios(baseline: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point run by both: current / baseline throughput, baseline / current p99 and CPU per message."""
    out = []
    for new in current:
        old = next((p for p in baseline if (p["meters"], p["rate_hz"]) == (new["meters"], new["rate_hz"])), None)
        if old is None:
            continue

        def cpu_ms(p: dict[str, Any], name: str) -> float:
            return p["processes"][name]["cpu_pct"] * 10 / max(p["throughput_msg_s"], 1e-9)

        out.append({
            "meters": new["meters"], "rate_hz": new["rate_hz"],
            "throughput_msg_s": [old["throughput_msg_s"], new["throughput_msg_s"]],
            "throughput_ratio": round(new["throughput_msg_s"] / max(old["throughput_msg_s"], 1e-9), 2),
            "p99_twin_ms": [old["twin_latency_ms"]["p99"], new["twin_latency_ms"]["p99"]],
            "p99_ratio": round(old["twin_latency_ms"]["p99"] / max(new["twin_latency_ms"]["p99"], 1e-9), 2),
            "cpu_ms_per_msg": {name: [round(cpu_ms(old, name), 3), round(cpu_ms(new, name), 3)]
                               for name in ("agent", "broker", "mosquitto", "bench")},
            "others_cpu_pct": [old["others_cpu_pct"], new["others_cpu_pct"]],
        })
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small point (CI smoke run)")
    parser.add_argument("--points", help=f"NxR list (default {FULL_POINTS}; quick {QUICK_POINTS})")
    parser.add_argument("--seconds", type=float, help="publishing time per point (default 20; quick 2)")
    parser.add_argument("--py-spy", metavar="DIR", type=Path,
                        help="sample agent, broker, quality and web with py-spy during each point (raw files in DIR)")
    parser.add_argument("--keep-going", action="store_true", help="run every point after the first broken one too")
    parser.add_argument("--generator", choices=("raw", "paho"), default="raw",
                        help="the simulated meters: raw MQTT packets on sockets (cheap, default) or paho clients")
    parser.add_argument("--baseline", metavar="REV",
                        help="first run the same points with the services of git revision REV (same generator, same "
                             "machine minutes) and print current/baseline ratios")
    parser.add_argument("--code", metavar="REV",
                        help="run the services of git revision REV instead of the work tree (e.g. to leave out "
                             "uncommitted changes of others working in the same tree)")
    args = parser.parse_args(argv)
    points = [tuple(float(v) for v in p.split("x")) for p in (args.points or (QUICK_POINTS if args.quick else FULL_POINTS)).split(",")]
    template, payload_bytes = meter_payload_template()
    max_meters = int(max(m for m, _ in points))
    baseline: list[dict[str, Any]] = []
    compared: list[dict[str, Any]] = []
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="bench-e2e-baseline-") as tree:
            export_tree(args.baseline, Path(tree))
            baseline, _ = run_stack(points, args, Path(tree), f"baseline {args.baseline}", template)
    if args.code:
        with tempfile.TemporaryDirectory(prefix="bench-e2e-code-") as tree:
            export_tree(args.code, Path(tree))
            results, entity_count = run_stack(points, args, Path(tree), f"current {args.code}", template)
    else:
        results, entity_count = run_stack(points, args, None, "current", template)
    if baseline:
        compared = ratios(baseline, results)
    ok = [p for p in results if not p["broken"]]
    broke = next((p for p in results if p["broken"]), None)
    at_1000 = next((p for p in results if p["meters"] == 1000 and p["rate_hz"] == 1), None)
    summary = {
        "payload_bytes": payload_bytes, "meters_provisioned": max_meters, "measurement_entities": entity_count,
        "generator": args.generator, "baseline": args.baseline, "code": args.code or "work tree",
        "max_sustained_msg_s": max((p["throughput_msg_s"] for p in ok), default=0.0),
        "breaking_point": None if broke is None else {"offered_msg_s": broke["offered_msg_s"],
                                                      "throughput_msg_s": broke["throughput_msg_s"],
                                                      "missing": broke["missing"]},
        "total_published": sum(p["published"] for p in results), "total_missing": sum(p["missing"] for p in results),
        "p99_twin_ms_at_1000x1": at_1000["twin_latency_ms"]["p99"] if at_1000 else None,
        "stack_rss_mb_at_1000": at_1000["stack_rss_mb"] if at_1000 else None,
        "cores": os.cpu_count(),
    }
    print()
    if baseline:
        print(f"baseline {args.baseline}:")
        print(table(baseline))
        print("current:")
    print(table(results))
    for row in compared:
        cpu = ", ".join(f"{k} {a:.2f}->{b:.2f}" for k, (a, b) in row["cpu_ms_per_msg"].items())
        print(f"{row['meters']}x{row['rate_hz']:g}: throughput x{row['throughput_ratio']} "
              f"({row['throughput_msg_s'][0]:,.0f} -> {row['throughput_msg_s'][1]:,.0f} msg/s), p99 x{row['p99_ratio']} "
              f"shorter ({row['p99_twin_ms'][0]:,.0f} -> {row['p99_twin_ms'][1]:,.0f} ms); CPU ms/msg {cpu}")
    print(f"\nmax sustained without loss: {summary['max_sustained_msg_s']:,.0f} msg/s (target >= 5,000); "
          f"breaking point: {summary['breaking_point']}; p99 publish->twin at 1,000 x 1 Hz: "
          f"{summary['p99_twin_ms_at_1000x1']} ms (target < 50); stack RSS at 1,000 meters: "
          f"{summary['stack_rss_mb_at_1000']} MB (target < 500); measurement entities: {entity_count}; "
          f"missing in total: {summary['total_missing']} of {summary['total_published']:,}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "e2e_ingest_profile.json" if args.py_spy else "e2e_ingest.json"  # a profiled run is not the figures
    document: dict[str, Any] = {"summary": summary, "points": results}
    if baseline:
        document |= {"baseline_points": baseline, "ratios": compared}
    (RESULTS / name).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
