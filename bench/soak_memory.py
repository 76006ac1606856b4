"""Where the context broker's memory goes under the soak's kind of load: RSS split into Python objects (tracemalloc),
SQLite's own allocations (sqlite3_memory_used) and the rest (allocator slack, thread stacks), sampled over time.

Why: the soak (bench/soak.py) saw the broker's RSS climb for the whole run; a figure that keeps rising is a leak
or a cache without bound, and only a split tells which. The broker runs in this process (the same app
`python -m twin_service.broker` serves, on a real uvicorn server) so tracemalloc sees its objects; the load is
batch upserts of full ThreePhaseAcMeasurement entities (bench/broker_ingest.py's) with one subscription notifying
a local receiver, as in the soak.

Usage: python bench/soak_memory.py [--seconds S] [--meters N] [--rate HZ]
Prints one line per sample and the 15 source lines whose Python allocations grew most between the first sample
after warm-up and the last; writes bench/results/soak_memory.json.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import http.server
import json
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from broker_ingest import HEADERS, meter_entity

from twin_service.broker import create_app
from twin_service.mqtt_server import free_port

RESULTS = REPO / "bench" / "results"
BASE = "/ngsi-ld/v1"


def sqlite_memory_used() -> int | None:
    """Bytes SQLite holds right now (every connection of this process: page caches, statements, schema)."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    lib = ctypes.CDLL(name)  # the library the sqlite3 module already loaded: same soname, same handle
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


class Receiver(http.server.ThreadingHTTPServer):
    """Answers every notification 200 and counts them."""

    def __init__(self) -> None:
        self.count = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240.0, help="load time (default 240)")
    parser.add_argument("--meters", type=int, default=200, help="meters, one entity each (default 200)")
    parser.add_argument("--rate", type=float, default=1.0, help="readings per meter per second (default 1)")
    parser.add_argument("--sample-s", type=float, default=20.0, help="seconds between samples (default 20)")
    parser.add_argument("--no-trace", action="store_true",
                        help="without tracemalloc (its bookkeeping is itself memory): RSS and SQLite only")
    parser.add_argument("--quick", action="store_true", help="12 s, 50 meters, a sample every 4 s (a smoke run: make test)")
    parser.add_argument("--writer-cache-mib", type=int,
                        help="set the broker writer's SQLite page cache to this size (compare with the default)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.meters, args.sample_s = 12.0, 50, 4.0
    if not args.no_trace:
        tracemalloc.start(8)
    proc = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="bench-soak-memory-") as tmp:
        port = free_port()
        app = create_app(Path(tmp) / "var")
        if args.writer_cache_mib is not None:
            app.state.broker.store._db.execute(f"PRAGMA cache_size=-{args.writer_cache_mib * 1024}")
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        receiver = Receiver()
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        http = httpx.Client(timeout=60)
        http.post(f"{url}{BASE}/subscriptions", headers=HEADERS, json={
            "type": "Subscription", "entities": [{"type": "ThreePhaseAcMeasurement"}],
            "watchedAttributes": ["frequency"], "notification": {"attributes": ["frequency"], "endpoint": {
                "uri": f"http://127.0.0.1:{receiver.server_address[1]}/notify", "accept": "application/json"}}}
                  ).raise_for_status()
        start = datetime(2026, 11, 24, tzinfo=UTC)
        samples: list[dict[str, Any]] = []
        baseline: tracemalloc.Snapshot | None = None  # at the second sample (after warm-up); only two are kept
        began = time.time()
        next_sample = began
        written = 0
        second = 0
        while time.time() - began < args.seconds:
            observed = (start + timedelta(seconds=second / args.rate)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            entities = [meter_entity(n, observed, second % 7) for n in range(args.meters)]
            for i in range(0, len(entities), 100):
                http.post(f"{url}{BASE}/entityOperations/upsert", params={"options": "update"}, headers=HEADERS,
                          content=json.dumps(entities[i:i + 100])).raise_for_status()
            written += len(entities)
            second += 1
            pause = began + second / args.rate - time.time()
            if pause > 0:
                time.sleep(pause)
            if time.time() >= next_sample:
                next_sample += args.sample_s
                traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
                sample = {"at_s": round(time.time() - began), "written": written,
                          "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                          "python_mb": round(traced / 2**20, 1),
                          "sqlite_mb": round((sqlite_memory_used() or 0) / 2**20, 1),
                          "threads": proc.num_threads(), "notifications": receiver.count}
                samples.append(sample)
                if len(samples) == 2 and tracemalloc.is_tracing():
                    baseline = tracemalloc.take_snapshot()
                print("  ".join(f"{k} {v}" for k, v in sample.items()), flush=True)
        last = tracemalloc.take_snapshot() if baseline is not None else None
        server.should_exit = True
        time.sleep(1)
    grown = []
    top = last.compare_to(baseline, "lineno")[:15] if last is not None and baseline is not None else []
    if top:
        print("\nPython allocations that grew most (second sample -> end):")
    for stat in top:
        frame = stat.traceback[0]
        grown.append({"where": f"{frame.filename}:{frame.lineno}", "size_diff_kb": round(stat.size_diff / 1024),
                      "count_diff": stat.count_diff})
        print(f"  {stat.size_diff / 1024:>9.0f} KiB  {stat.count_diff:>+8d}  {frame.filename}:{frame.lineno}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak_memory.json").write_text(json.dumps(
        {"meters": args.meters, "rate_hz": args.rate, "seconds": args.seconds, "samples": samples,
         "python_growth": grown}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
