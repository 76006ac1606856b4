"""Benchmark: meter messages (~30 measures each) from MQTT into the twin through the embedded agent and broker.

Prints two figures (targets in issue 6, not test assertions):
  1. throughput: messages/s from first publish until the broker accepted the last upsert (a burst of N messages
     from 1,000 meters, QoS 1, as fast as one publisher can send them);
  2. latency at 1,000 meters x 1 Hz: publish -> the broker's answer to the upsert that carried the message
     (= entity updated), p50/p95/p99, measured with an ASGI wrapper around the embedded broker in this process.

Usage: python bench/agent_ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _e2e import percentile

from provisioning.inventory import parse_inventory
from provisioning.sync import Provisioner
from twin_service.broker import create_app
from twin_service.mqtt_server import free_port, start_mqtt_server, wait_for_port


class LatencyProbe:
    """ASGI wrapper: for each upsert the broker answered 2xx, the age of every `bench_t` it carried."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.latencies_s: list[float] = []
        self.messages = 0
        self.last_at = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "entityOperations/upsert" not in scope["path"]:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recv() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        status = 0

        async def snd(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, recv, snd)
        now = time.time()
        if 200 <= status < 300:
            for fragment in json.loads(b"".join(chunks)):
                stamp = fragment.get("bench_t")
                if stamp is not None:
                    self.latencies_s.append(now - stamp["value"])
                    self.messages += 1
            self.last_at = now


def payload(n: int, stamp: float) -> bytes:
    """A meter message of ~30 measures: every per-phase quantity of the firmware plus totals and the stamp."""
    ph = {"L1": 230.1 + n % 3, "L2": 229.8, "L3": 231.0}
    return json.dumps({
        "v": ph, "vll": {"L12": 400.1, "L23": 399.5, "L31": 400.9}, "i": {"L1": 5.1, "L2": 4.9, "L3": 5.0, "N": 0.2},
        "p": {"L1": 1100.0, "L2": 1050.0, "L3": 1120.0}, "q": {"L1": 120.0, "L2": 110.0, "L3": 130.0},
        "s": {"L1": 1110.0, "L2": 1060.0, "L3": 1130.0}, "pt": 3270.0, "qt": 360.0, "st": 3300.0,
        "pf": {"L1": 0.99, "L2": 0.99, "L3": 0.98}, "pft": 0.99, "thdv": {"L1": 0.02, "L2": 0.02, "L3": 0.03},
        "thdi": {"L1": 0.05, "L2": 0.04, "L3": 0.06}, "f": 50.01,
        "eai": {"L1": 10.5, "L2": 10.2, "L3": 10.8}, "eait": 31.5, "eaet": 0.0,
        "avv": {"L12": 120.0, "L23": 120.1, "L31": 119.9}, "avi": {"L1": 5.0, "L2": 6.0, "L3": 4.0},
        "bench_t": stamp, "TimeInstant": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + "Z",
    }).encode()


def inventory(meters: int) -> str:
    rows = "".join(f"          - device_id: b{n:04d}\n            nominal_voltage_v: 230\n"
                   f"            nominal_frequency_hz: 50\n            ct_primary_a: 100\n" for n in range(meters))
    return ("tenants:\n  - service: bench\n    groups:\n      - apikey: benchkey\n    sites:\n      - id: s\n"
            "        meters:\n" + rows)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller run (CI smoke)")
    args = parser.parse_args()
    meters = 200 if args.quick else 1000
    burst = 1000 if args.quick else 20000
    latency_s = 2 if args.quick else 20
    work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    mqtt_server = start_mqtt_server(work / "mqtt", port=free_port())
    probe = LatencyProbe(create_app(work / "broker"))
    broker_port = free_port()
    server = uvicorn.Server(uvicorn.Config(probe, host="127.0.0.1", port=broker_port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_for_port("127.0.0.1", broker_port)
    broker_url = f"http://127.0.0.1:{broker_port}"
    north = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "twin_service.agent", "--north-port", str(north), "--mqtt-host", mqtt_server.host,
         "--mqtt-port", str(mqtt_server.port), "--broker-url", broker_url, "--data-dir", str(work / "agent"),
         "--flood-rate", "0", "--log-level", "WARNING"],
    )
    try:
        wait_for_port("127.0.0.1", north, 15, agent)
        with Provisioner(f"http://127.0.0.1:{north}", broker_url) as provisioner:
            for action in provisioner.plan(parse_inventory(inventory(meters))).changes():
                assert action.run is not None
                action.run()
        time.sleep(1.0)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.connect(mqtt_server.host, mqtt_server.port)
        client.loop_start()

        # 1. throughput: a burst
        start = time.time()
        infos = [client.publish(f"/json/benchkey/b{n % meters:04d}/attrs", payload(n, time.time()), qos=1)
                 for n in range(burst)]
        for info in infos:
            info.wait_for_publish(60)
        published = time.time()
        deadline = time.time() + 300
        while probe.messages < burst and time.time() < deadline:
            time.sleep(0.05)
        rate = probe.messages / (probe.last_at - start)
        burst_delivered = probe.messages
        print(f"throughput: {probe.messages}/{burst} messages (~30 measures each) in {probe.last_at - start:.2f} s "
              f"= {rate:,.0f} msg/s ({rate * 30:,.0f} measures/s); publishing alone took {published - start:.2f} s")

        # 2. latency at meters x 1 Hz
        probe.latencies_s.clear()
        probe.messages = 0
        sent = 0
        t0 = time.time()
        while time.time() - t0 < latency_s:
            second = time.time()
            for n in range(meters):
                client.publish(f"/json/benchkey/b{n:04d}/attrs", payload(n, time.time()), qos=1)
                sent += 1
                target = second + (n + 1) / meters  # spread the meters over the second
                delay = target - time.time()
                if delay > 0:
                    time.sleep(delay)
        deadline = time.time() + 30
        while probe.messages < sent and time.time() < deadline:
            time.sleep(0.05)
        lat_ms = [v * 1000 for v in probe.latencies_s]
        print(f"latency at {meters} meters x 1 Hz over {latency_s} s ({probe.messages}/{sent} delivered): "
              f"p50 {percentile(lat_ms, 50):.1f} ms, p95 {percentile(lat_ms, 95):.1f} ms, "
              f"p99 {percentile(lat_ms, 99):.1f} ms, mean {statistics.fmean(lat_ms):.1f} ms")
        metrics = httpx.get(f"http://127.0.0.1:{north}/metrics").text
        upserts = sum(float(line.split()[-1]) for line in metrics.splitlines()
                      if line.startswith("energytwin_agent_upserts_total"))
        statuses = [line for line in metrics.splitlines() if line.startswith("energytwin_agent_upserts_total")]
        out = Path(__file__).resolve().parent / "results" / "agent_ingest.json"
        out.write_text(json.dumps({
            "meters": meters, "burst_messages": burst, "burst_delivered": burst_delivered,
            "throughput_msg_s": round(rate, 1), "latency_seconds": latency_s, "latency_sent": sent,
            "latency_delivered": probe.messages, "latency_ms": {
                "p50": round(percentile(lat_ms, 50), 1), "p95": round(percentile(lat_ms, 95), 1),
                "p99": round(percentile(lat_ms, 99), 1), "mean": round(statistics.fmean(lat_ms), 1)},
            "batch_upserts": upserts}, indent=2) + "\n")
        print(f"batch upserts sent in total: {upserts:,.0f} for {burst + sent:,} messages ({statuses})")
        client.loop_stop()
        client.disconnect()
    finally:
        agent.terminate()
        agent.wait(15)
        server.should_exit = True
        mqtt_server.stop()


if __name__ == "__main__":
    main()
