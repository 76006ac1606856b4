"""Benchmark: notifications across repeated kill -9 of the broker under write load, two git revisions.

The soak kills the broker once per run, so a loss in the instant between a write's COMMIT and the journaling of
its notifications (what the outbox, `twin_service/broker/_outbox.py`, closes) shows only now and then. This aims
at that instant: writers post batch upserts (50 meters, each batch a new observedAt) as fast as the broker takes
them, with one subscription notifying a receiver in this process, while the broker is killed with SIGKILL at a
random moment 0.2-1.0 s after each restart. At the end every (meter, observedAt) in the broker's history (what
was committed, answered or not) is looked up in the notifications received: `notifications_lost` counts those
never notified. Run for the revision before the outbox and for the current one (`git archive`), one after the
other; writes bench/results/soak_kill.json.

Usage: python bench/soak_kill.py [--baseline REV] [--code REV] [--kills 20] [--code-only] [--quick]
(the default baseline is the parent of the commit that added the outbox; --quick: the code revision only, 3 kills)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _e2e import NotifyReceiver, start_broker_cli
from broker_ingest import BASE, HEADERS, meter_entity
from e2e_ingest import export_tree
from soak import machine_load

from twin_service.mqtt_server import free_port

METERS = 50
WRITERS = 2
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def outbox_parent() -> str:
    added = subprocess.run(["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--",
                            "twin_service/broker/_outbox.py"], check=True, capture_output=True, text=True).stdout.split()
    if not added:
        raise SystemExit("no commit adds twin_service/broker/_outbox.py here: pass --baseline REV")
    return f"{added[-1]}~1"


class Broker:
    """The broker CLI of one tree on a fixed port and data directory, killed and restarted at will."""

    def __init__(self, tree: Path, data_dir: Path) -> None:
        self.tree, self.data_dir = tree, data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_broker_cli(self.tree, self.data_dir, self.port, log_level="error", poll_s=0.05)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def observed(batch_no: int) -> str:
    return (T0 + timedelta(seconds=batch_no)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def writer(broker: Broker, numbers: list[int], lock: threading.Lock, stop: threading.Event, acked: list[int]) -> None:
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            with lock:
                numbers[0] += 1
                batch_no = numbers[0]
            body = json.dumps([meter_entity(n, observed(batch_no), batch_no % 7) for n in range(METERS)])
            try:
                answer = client.post(f"{broker.url}{BASE}/entityOperations/upsert", params={"options": "update"},
                                     content=body, headers=HEADERS)
                if answer.status_code in (201, 204):
                    acked.append(batch_no)
            except httpx.TransportError:
                time.sleep(0.05)  # killed: the batch may or may not have committed; the history tells


def notified(receiver: NotifyReceiver) -> set[tuple[str, str]]:
    out = set()
    for _, body in list(receiver.received):
        for entity in json.loads(body)["data"]:
            out.add((entity["id"], entity["frequency"]["observedAt"]))
    return out


def committed(broker: Broker, last_batch: int) -> set[tuple[str, str]]:
    """Every (meter, observedAt) of `frequency` in the broker's history."""
    out = set()
    with httpx.Client(timeout=60) as client:
        for n in range(METERS):
            entity_id = f"urn:ngsi-ld:ThreePhaseAcMeasurement:bench-{n:04d}"
            answer = client.get(f"{broker.url}{BASE}/temporal/entities/{entity_id}", headers=HEADERS,
                                params={"attrs": "frequency", "lastN": str(last_batch + 10)})
            answer.raise_for_status()
            instances = answer.json().get("frequency", [])
            for instance in instances if isinstance(instances, list) else [instances]:
                out.add((entity_id, instance["observedAt"]))
    return out


def run(tree: Path, label: str, kills: int, rng: random.Random) -> dict[str, Any]:
    receiver = NotifyReceiver()
    with tempfile.TemporaryDirectory(prefix="kill-bench-") as tmp:
        broker = Broker(tree, Path(tmp) / "data")
        broker.start()
        try:
            httpx.post(f"{broker.url}{BASE}/subscriptions", headers=HEADERS, json={
                "type": "Subscription", "id": "urn:ngsi-ld:Subscription:kill-bench",
                "entities": [{"type": "ThreePhaseAcMeasurement"}],
                "notification": {"attributes": ["frequency"],
                                 "endpoint": {"uri": receiver.url, "accept": "application/json"}}}
                       ).raise_for_status()
            numbers, lock, stop, acked = [0], threading.Lock(), threading.Event(), []
            threads = [threading.Thread(target=writer, args=(broker, numbers, lock, stop, acked), daemon=True)
                       for _ in range(WRITERS)]
            for thread in threads:
                thread.start()
            for _ in range(kills):
                time.sleep(rng.uniform(0.2, 1.0))
                broker.kill()
                broker.start()
            time.sleep(1.0)
            stop.set()
            for thread in threads:
                thread.join(30)
            stored = committed(broker, numbers[0])
            deadline = time.monotonic() + 60  # the backlog drains; at-least-once: wait until all or time out
            while not stored <= notified(receiver) and time.monotonic() < deadline:
                time.sleep(0.5)
            got = notified(receiver)
        finally:
            broker.stop()
    receiver.loop.call_soon_threadsafe(receiver.loop.stop)
    missing = stored - got
    acked_missing = {(e, t) for e, t in missing if any(t == observed(b) for b in acked)}
    result = {"label": label, "kills": kills, "batches_attempted": numbers[0], "batches_acknowledged": len(acked),
              "instances_committed": len(stored), "notifications_lost": len(missing),
              "of_them_acknowledged_writes": len(acked_missing),
              "batches_with_lost_notifications": len({t for _, t in missing})}
    print(f"  {label:9} {kills} kills, {len(stored)} readings committed, {result['notifications_lost']} never "
          f"notified ({result['batches_with_lost_notifications']} batches)", flush=True)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="revision before the outbox (default: the parent of the commit that "
                        "added twin_service/broker/_outbox.py)")
    parser.add_argument("--code", default="HEAD", help="revision measured (default HEAD)")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 of the broker per revision")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--code-only", action="store_true", help="run the code revision only")
    parser.add_argument("--quick", action="store_true", help="the code revision only, 3 kills (the smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.kills = 3
    names = [("code", args.code)] if args.quick or args.code_only else [("baseline", args.baseline or outbox_parent()),
                                                       ("code", args.code)]
    revs = {name: subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], check=True,
                                 capture_output=True, text=True).stdout.strip() for name, rev in names}
    load_start = machine_load()
    results = []
    with tempfile.TemporaryDirectory(prefix="kill-trees-") as trees:
        for name, rev in revs.items():
            tree = export_tree(rev, Path(trees) / name)
            results.append({"revision": rev, **run(tree, name, args.kills, random.Random(args.seed))})
    summary = {"date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "revisions": revs,
               "meters_per_batch": METERS, "writers": WRITERS, "runs": results,
               "machine": {"start": {k: v for k, v in load_start.items() if k != "_cpu"},
                           "end": {k: v for k, v in machine_load(load_start["_cpu"]).items() if k != "_cpu"}}}
    out = REPO / "bench" / "results" / "soak_kill.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
