"""The peer baseline's bridge: MQTT -> one NGSI-LD upsert request per message, the way the FIWARE IoT Agent writes.

Subscribes like the FIWARE IoT Agent JSON (QoS 0, clean session; iotagent-json docs/usermanual.md, docs/compatibility.md), maps each message with
the embedded agent's own mapping (so the entities written are identical), and sends every message as its own
`POST /ngsi-ld/v1/entityOperations/upsert/?options=update` over keep-alive connections, `--senders` requests in
flight (node's event loop keeps several requests open). No durable queue, no batching.

Run by bench/peer_baseline.py: python bench/_peer_bridge.py --mqtt-port P --broker-url U --data-dir D
    --apikey K --service S --devices N --device-prefix bench-
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioning.agent_bodies import meter_device, service_group
from twin_service.agent.device_entity import DeviceEntities
from twin_service.agent.metrics import Metrics
from twin_service.agent.models import Device, ServiceGroup
from twin_service.agent.northbound_writer import UPSERT_PATH, upsert_headers
from twin_service.agent.registry import Registry
from twin_service.agent.rejections import RejectionReporter
from twin_service.agent.south import FloodLimit, MeasureHandler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--apikey", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--device-prefix", default="bench-")
    parser.add_argument("--senders", type=int, default=4)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry(args.data_dir / "peer-registry.sqlite")
    registry.create_groups(args.service, "/", [ServiceGroup.model_validate(service_group(args.apikey))])
    registry.create_devices(args.service, "/", [
        Device.model_validate(meter_device(f"{args.device_prefix}{n:04d}", args.apikey)) for n in range(args.devices)])
    metrics = Metrics()
    handler = MeasureHandler(registry, metrics, RejectionReporter(metrics, 60.0), 64 * 1024, True,
                             FloodLimit(0.0), DeviceEntities(10.0))
    work: queue.Queue = queue.Queue()
    stats = {"ok": 0, "failed": 0, "received": 0}
    lock = threading.Lock()
    url = args.broker_url.rstrip("/") + UPSERT_PATH

    def sender() -> None:
        with httpx.Client(timeout=30) as http:
            while True:
                upsert = work.get()
                if upsert is None:
                    return
                try:
                    answer = http.post(url, params={"options": "update"},
                                       content=json.dumps(upsert.entities, separators=(",", ":")).encode(),
                                       headers=upsert_headers(upsert.service, upsert.subservice))
                    good = answer.status_code in (200, 201, 204)
                except httpx.HTTPError:
                    good = False
                with lock:
                    stats["ok" if good else "failed"] += 1

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(args.senders)]
    for thread in threads:
        thread.start()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        stats["received"] += 1
        upsert = handler.handle(message.topic, message.payload)
        if upsert is not None:
            work.put(upsert)

    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="peer-bridge", clean_session=True)
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe([("/json/+/+/attrs", 0), ("json/+/+/attrs", 0)])
    client.on_subscribe = lambda *a: ready.set()
    client.connect(args.mqtt_host, args.mqtt_port, keepalive=60)
    client.loop_start()
    ready.wait(10)
    print("ready", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    client.loop_stop()
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
