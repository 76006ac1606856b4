"""Benchmark: our batching agent vs one NGSI-LD request per message (how the FIWARE IoT Agent writes), same load.

Both arms get the same workload on a fresh Mosquitto and a fresh broker (the broker CLI, its own process): the
firmware's live payload from N meters (paho, QoS 1), offered faster than either path drains it, so each arm's
figure is its capacity:
  - "batched": the embedded agent (`python -m twin_service.agent`): durable queue, group commit, one batch upsert
    per up-to-500 messages;
  - "per-message": bench/_peer_bridge.py, the FIWARE IoT Agent's write pattern: QoS 0 subscription, the same
    mapping, one `POST /ngsi-ld/v1/entityOperations/upsert/?options=update` per message, 4 requests in flight.
Landed messages, throughput and publish -> twin latency come from the broker's history (observedAt = publish
time, modifiedAt = accepted); the ratio is batched / per-message throughput.

Usage: python bench/peer_baseline.py [--quick]; writes bench/results/peer_baseline.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._e2e import (
    REPO,
    RESULTS,
    LoadGenerator,
    ProcSampler,
    landed,
    meter_payload_template,
    percentile,
    provision,
)
from energytwin.demo import DEMO_APIKEY, DEMO_SITE, twin_headers
from provisioning.agent_bodies import meter_device, service_group
from twin_service.mqtt_server import free_port, start_mqtt_server, wait_for_port


def wait_landed(broker_url: str, since: float, until: float, expected: int, timeout_s: float) -> list:
    """Poll the history until `expected` readings landed, nothing new came for 10 s, or the timeout."""
    deadline = time.monotonic() + timeout_s
    rows: list = []
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        now_rows = landed(broker_url, twin_headers(), since, until)
        if len(now_rows) != len(rows):
            last_change = time.monotonic()
        rows = now_rows
        if len(rows) >= expected or time.monotonic() - last_change > 10:
            break
        time.sleep(1.0)
    return rows


def run_arm(kind: str, template: str, meters: int, rate: float, seconds: float, drain_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-peer-{kind}-") as tmp:
        work = Path(tmp)
        mqtt_server = start_mqtt_server(work / "mqtt", port=free_port(), prefer="mosquitto")
        broker_port = free_port()
        broker_url = f"http://127.0.0.1:{broker_port}"
        broker = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(broker_port),
                                   "--data-dir", str(work / "broker"), "--log-level", "warning"], cwd=REPO)
        device_ids = [f"bench-{n:04d}" for n in range(meters)]
        writer: subprocess.Popen | None = None
        gen = LoadGenerator(mqtt_server.host, mqtt_server.port, DEMO_APIKEY, device_ids, template)
        try:
            wait_for_port("127.0.0.1", broker_port, 30, broker)
            if kind == "batched":
                north = free_port()
                writer = subprocess.Popen(
                    [sys.executable, "-m", "twin_service.agent", "--north-port", str(north), "--mqtt-port",
                     str(mqtt_server.port), "--broker-url", broker_url, "--data-dir", str(work / "agent"),
                     "--flood-rate", "0", "--log-level", "WARNING"], cwd=REPO)
                wait_for_port("127.0.0.1", north, 30, writer)
                provision(f"http://127.0.0.1:{north}", DEMO_SITE.headers, service_group(DEMO_APIKEY),
                          [meter_device(d, DEMO_APIKEY) for d in device_ids])
                time.sleep(1.0)
            else:
                writer = subprocess.Popen(
                    [sys.executable, str(REPO / "bench" / "_peer_bridge.py"), "--mqtt-port", str(mqtt_server.port),
                     "--broker-url", broker_url, "--data-dir", str(work / "peer"), "--apikey", DEMO_APIKEY,
                     "--service", DEMO_SITE.service, "--devices", str(meters)],
                    cwd=REPO, stdout=subprocess.PIPE, text=True)
                assert writer.stdout is not None
                if writer.stdout.readline().strip() != "ready":
                    raise RuntimeError("peer bridge did not start")
            gen.connect()
            time.sleep(0.5)
            sent, t0, t1 = gen.run(meters, 1.0, 1.0)  # warm-up: every entity created
            wait_landed(broker_url, t0, t1, sent, 60)
            sampler = ProcSampler({"broker": broker.pid, "writer": writer.pid})
            sampler.start()
            sent, t0, t1 = gen.run(meters, rate, seconds)
            rows = wait_landed(broker_url, t0, t1, sent, drain_s)
            usage = sampler.stop()
        finally:
            gen.close()
            if writer is not None:
                writer.terminate()
                writer.wait(15)
            broker.terminate()
            broker.wait(30)
            mqtt_server.stop()
    unique = {(entity, round(observed, 3)) for entity, observed, _ in rows}
    latencies = [(modified - observed) * 1000 for _, observed, modified in rows]
    span = max(m for _, _, m in rows) - t0 if rows else float("nan")
    return {
        "writer": kind, "meters": meters, "offered_msg_s": meters * rate, "published": sent,
        "published_msg_s": round(sent / max(t1 - t0, 1e-9), 1), "landed": len(unique), "missing": sent - len(unique),
        "duplicates": len(rows) - len(unique), "throughput_msg_s": round(len(unique) / span, 1) if rows else 0.0,
        "twin_latency_ms": {"p50": round(percentile(latencies, 50), 1), "p99": round(percentile(latencies, 99), 1)},
        "cpu_pct": {name: p["cpu_pct"] for name, p in usage["processes"].items()},
        "rss_mb": {name: p["rss_mb"] for name, p in usage["processes"].items()},
        "others_cpu_pct": usage["others_cpu_pct"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 meters, 0.5 s per writer (CI smoke run)")
    args = parser.parse_args(argv)
    meters, rate, seconds, drain_s = (20, 10.0, 0.5, 30.0) if args.quick else (1000, 1.0, 6.0, 150.0)
    template, payload_bytes = meter_payload_template()
    arms = [run_arm(kind, template, meters, rate, seconds, drain_s) for kind in ("batched", "per-message")]
    ratio = arms[0]["throughput_msg_s"] / arms[1]["throughput_msg_s"] if arms[1]["throughput_msg_s"] else None
    print(f"\n{'writer':<12} {'published':>9} {'landed':>7} {'miss':>5} {'msg/s':>8} {'twin p50/p99 ms':>18} "
          f"{'CPU% broker/writer':>19} {'others%':>8}")
    for arm in arms:
        lat = arm["twin_latency_ms"]
        print(f"{arm['writer']:<12} {arm['published']:>9,} {arm['landed']:>7,} {arm['missing']:>5} "
              f"{arm['throughput_msg_s']:>8,.0f} {lat['p50']:>8.0f}/{lat['p99']:>8.0f} "
              f"{arm['cpu_pct']['broker']:>9.0f}/{arm['cpu_pct']['writer']:<9.0f} {arm['others_cpu_pct']:>8.0f}")
    print(f"\nbatched / per-message throughput: {ratio:.1f}x" if ratio else "\nratio: n/a")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peer_baseline.json").write_text(json.dumps(
        {"payload_bytes": payload_bytes, "ratio_batched_over_per_message": round(ratio, 2) if ratio else None,
         "arms": arms}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
