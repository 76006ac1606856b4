"""Benchmark: what the notification outbox costs ingest (broker CPU per entity, two git revisions, same run).

The outbox (`twin_service/broker/_outbox.py`) writes each write's changes into the broker's database in the
write's own transaction, so a kill -9 between COMMIT and the notification journal loses no notification (the
soak's one known gap). Its price is paid on every write of a tenant with a subscription. This runs the broker CLI
of two revisions (`git archive`: the shared work tree is not measured), one after the other, alternating, each on a
fresh data directory with one subscription notifying a receiver in this process, and posts the same batch upserts
of full meter entities (~30 attributes, as the agent writes them) from one client. Per run: the broker's CPU
(utime + stime from /proc) from the first measured batch until every notification arrived, divided by the
entities written; entities/s. Prints the per-pair ratio code/baseline and writes bench/results/soak_outbox.json.

Usage: python bench/soak_outbox.py [--baseline REV] [--code REV] [--meters 300] [--rounds 20] [--pairs 3]
                                  [--notify frequency|all] [--quick]
(the default baseline is the parent of the commit that added the outbox; --quick: 100 meters, 2 rounds, 1 pair)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _e2e import NotifyReceiver, _cpu_ticks, start_broker_cli
from broker_ingest import BASE, HEADERS, meter_entity
from e2e_ingest import export_tree
from soak import machine_load

from twin_service.mqtt_server import free_port

BATCH = 100
WARMUP_ROUNDS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_broker(tree: Path, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The broker CLI of `tree` on a free port, once /version answers, and its URL."""
    port = free_port()
    return start_broker_cli(tree, data_dir, port), f"http://127.0.0.1:{port}"


def bodies(meters: int, round_no: int) -> list[bytes]:
    observed = (datetime(2026, 11, 24, tzinfo=UTC) + timedelta(seconds=round_no)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    entities = [meter_entity(n, observed, round_no % 7) for n in range(meters)]
    return [json.dumps(entities[i:i + BATCH]).encode() for i in range(0, meters, BATCH)]


def notified(receiver: NotifyReceiver) -> int:
    return sum(len(json.loads(body)["data"]) for _, body in list(receiver.received))


def run_once(tree: Path, label: str, args: argparse.Namespace, payloads: list[list[bytes]]) -> dict[str, Any]:
    receiver = NotifyReceiver()
    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as tmp:
        process, url = start_broker(tree, Path(tmp) / "data")
        try:
            with httpx.Client(timeout=60) as client:
                client.post(f"{url}{BASE}/subscriptions", headers=HEADERS, json={
                    "type": "Subscription", "id": "urn:ngsi-ld:Subscription:outbox-bench",
                    "entities": [{"type": "ThreePhaseAcMeasurement"}],
                    "notification": {**({"attributes": ["frequency"]} if args.notify == "frequency" else {}),
                                     "endpoint": {"uri": receiver.url, "accept": "application/json"}}}
                            ).raise_for_status()

                def post(round_bodies: list[bytes]) -> None:
                    for body in round_bodies:
                        client.post(f"{url}{BASE}/entityOperations/upsert", params={"options": "update"},
                                    content=body, headers=HEADERS).raise_for_status()

                for round_bodies in payloads[:WARMUP_ROUNDS]:
                    post(round_bodies)
                expected = args.meters * WARMUP_ROUNDS
                wait_notified(receiver, expected)
                ticks, started = _cpu_ticks(process.pid), time.monotonic()
                for round_bodies in payloads[WARMUP_ROUNDS:]:
                    post(round_bodies)
                written = args.meters * (len(payloads) - WARMUP_ROUNDS)
                wait_notified(receiver, expected + written)
                cpu_s = (_cpu_ticks(process.pid) - ticks) / CLK_TCK
                elapsed = time.monotonic() - started
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    receiver.loop.call_soon_threadsafe(receiver.loop.stop)
    result = {"label": label, "entities": written, "broker_cpu_s": round(cpu_s, 2),
              "broker_cpu_ms_per_entity": round(cpu_s * 1000 / written, 4),
              "entities_per_s": round(written / elapsed, 1)}
    print(f"  {label:9} {result['broker_cpu_ms_per_entity']:.4f} ms CPU/entity, {result['entities_per_s']:.0f} "
          f"entities/s ({written} entities, {cpu_s:.2f} s CPU)", flush=True)
    return result


def wait_notified(receiver: NotifyReceiver, count: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while notified(receiver) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {notified(receiver)} of {count} notifications arrived")
        time.sleep(0.05)


def _short(rev: str | None) -> str | None:
    """The short hash of `rev`, or None when this clone does not hold it."""
    if rev is None:
        return None
    answer = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "--verify", "--quiet",
                             f"{rev}^{{commit}}"], capture_output=True, text=True, check=False)
    return answer.stdout.strip() or None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="git revision without the outbox (default: the parent of the commit "
                        "that added twin_service/broker/_outbox.py)")
    parser.add_argument("--code", default="HEAD", help="git revision measured against it (default HEAD)")
    parser.add_argument("--meters", type=int, default=300, help="entities per round (batches of 100)")
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (one reading per meter each)")
    parser.add_argument("--pairs", type=int, default=3, help="baseline/code runs, alternated")
    parser.add_argument("--notify", choices=("frequency", "all"), default="frequency",
                        help="what the subscription notifies: one attribute (the soak's; the outbox then keeps only "
                        "it) or the whole entity (kept whole)")
    parser.add_argument("--quick", action="store_true", help="100 meters, 2 rounds, 1 pair (the smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.meters, args.rounds, args.pairs = 100, 2, 1
    if args.baseline is None:
        added = subprocess.run(["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--",
                                "twin_service/broker/_outbox.py"], check=True, capture_output=True,
                               text=True).stdout.split()
        args.baseline = f"{added[-1]}~1" if added else None
    revs = {name: _short(rev) for name, rev in (("baseline", args.baseline), ("code", args.code))}
    baseline_in_clone = revs["baseline"] is not None
    if not baseline_in_clone:
        if not args.quick:
            raise SystemExit(f"baseline {args.baseline or '(the outbox commit parent)'} is not in this clone "
                             "(shallow?): pass --baseline REV")
        # a shallow clone (CI) holds only HEAD: the smoke run then checks that the code's broker runs, no ratio
        print("no baseline revision in this clone: measuring the code revision only (no ratio)")
        revs["baseline"] = revs["code"]
    payloads = [bodies(args.meters, r) for r in range(WARMUP_ROUNDS + args.rounds)]
    load_start = machine_load()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="outbox-trees-") as trees:
        paths = {name: export_tree(rev, Path(trees) / name) for name, rev in revs.items()}
        for pair in range(args.pairs):
            order = ("baseline", "code") if pair % 2 == 0 else ("code", "baseline")
            print(f"pair {pair + 1}/{args.pairs}", flush=True)
            for name in order:
                runs.append({"pair": pair, **run_once(paths[name], name, args, payloads)})
    ratios = []
    for pair in range(args.pairs):
        by = {r["label"]: r for r in runs if r["pair"] == pair}
        ratios.append({"cpu_per_entity": round(by["code"]["broker_cpu_ms_per_entity"]
                                               / by["baseline"]["broker_cpu_ms_per_entity"], 3),
                       "entities_per_s": round(by["code"]["entities_per_s"] / by["baseline"]["entities_per_s"], 3)})
    summary = {"date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "revisions": revs,
               "meters": args.meters, "rounds": args.rounds, "notify": args.notify, "batch": BATCH, "runs": runs, "ratios": ratios,
               "baseline_in_clone": baseline_in_clone,
               "median_cpu_ratio": statistics.median(r["cpu_per_entity"] for r in ratios),
               "median_throughput_ratio": statistics.median(r["entities_per_s"] for r in ratios),
               "machine": {"start": {k: v for k, v in load_start.items() if k != "_cpu"},
                           "end": {k: v for k, v in machine_load(load_start["_cpu"]).items() if k != "_cpu"}}}
    print(f"code {revs['code']} / baseline {revs['baseline']}: CPU per entity x{summary['median_cpu_ratio']:.3f} "
          f"(pairs {[r['cpu_per_entity'] for r in ratios]}), entities/s x{summary['median_throughput_ratio']:.3f}")
    out = REPO / "bench" / "results" / "soak_outbox.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
