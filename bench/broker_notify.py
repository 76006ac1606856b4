"""Benchmark: notification latency from an update to its receipt, with 10 subscribers.

The broker runs as its CLI (own process); 10 subscribers are minimal HTTP servers in this process (one asyncio
loop). Each update PATCHes one attribute of a ThreePhaseAcMeasurement with the wall-clock send time as its value;
every receiver records receipt time - send time. Prints p50/p95/p99/max (target p99 < 20 ms, not an assertion).

Usage: python bench/broker_notify.py [--quick] [--rate HZ]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _e2e import percentile, read_request_body

from datamodels.context import ENERGY_CONTEXT, link_header
from twin_service.mqtt_server import free_port

BASE = "/ngsi-ld/v1"
HEADERS = {"Link": link_header(ENERGY_CONTEXT), "NGSILD-Tenant": "bench"}
METER = "urn:ngsi-ld:ThreePhaseAcMeasurement:notify-bench"
SUBSCRIBERS = 10


class Receivers:
    """SUBSCRIBERS tiny HTTP/1.1 servers (keep-alive) recording notification latencies in ms."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.ports: list[int] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            for _ in range(SUBSCRIBERS):
                server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
                self.ports.append(server.sockets[0].getsockname()[1])
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                body = await read_request_body(reader)
                received = time.time()
                for entity in json.loads(body)["data"]:
                    self.latencies_ms.append((received - entity["benchSentAt"]["value"]) * 1000)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s instead of 30 s")
    parser.add_argument("--rate", type=float, default=20.0, help="updates per second (default: %(default)s)")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 30.0
    receivers = Receivers()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                                    str(Path(tmp) / "var"), "--log-level", "warning"], cwd=REPO)
        url = f"http://127.0.0.1:{port}{BASE}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/version", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("broker did not start") from None
                    time.sleep(0.1)
            with httpx.Client(timeout=10) as client:
                client.post(f"{url}/entities", headers=HEADERS, json={
                    "id": METER, "type": "ThreePhaseAcMeasurement",
                    "benchSentAt": {"type": "Property", "value": time.time()},
                    "frequency": {"type": "Property", "value": 50.0, "unitCode": "HTZ"}}).raise_for_status()
                for n, receiver_port in enumerate(receivers.ports):
                    client.post(f"{url}/subscriptions", headers=HEADERS, json={
                        "type": "Subscription", "id": f"urn:ngsi-ld:Subscription:bench-{n}",
                        "entities": [{"type": "ThreePhaseAcMeasurement"}], "watchedAttributes": ["benchSentAt"],
                        "notification": {"endpoint": {"uri": f"http://127.0.0.1:{receiver_port}/notify",
                                                      "accept": "application/json"}}}).raise_for_status()
                time.sleep(0.5)
                receivers.latencies_ms.clear()
                updates = int(seconds * args.rate)
                started = time.monotonic()
                for n in range(updates):
                    target = started + n / args.rate
                    time.sleep(max(0.0, target - time.monotonic()))
                    client.patch(f"{url}/entities/{METER}/attrs/benchSentAt", headers=HEADERS,
                                 json={"value": time.time()}).raise_for_status()
                deadline = time.monotonic() + 10
                while len(receivers.latencies_ms) < updates * SUBSCRIBERS and time.monotonic() < deadline:
                    time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(timeout=30)
    latencies = list(receivers.latencies_ms)
    results = {"updates": updates, "subscribers": SUBSCRIBERS, "notifications": len(latencies),
               "expected": updates * SUBSCRIBERS,
               "latency_ms": {"p50": round(statistics.median(latencies), 2), "p95": round(percentile(latencies, 95), 2),
                              "p99": round(percentile(latencies, 99), 2), "max": round(max(latencies), 2)}}
    print(json.dumps(results, indent=2))
    print(f"\nnotification latency with {SUBSCRIBERS} subscribers at {args.rate:g} updates/s: "
          f"p50 {results['latency_ms']['p50']} ms, p99 {results['latency_ms']['p99']} ms (target p99 < 20 ms)")
    (REPO / "bench" / "results" / "broker_notify.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
