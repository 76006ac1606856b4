"""The MQTT side: subscribe to measure topics and turn each message into one queued upsert.

Every message is handled on its own: nothing a meter sends (bad topic, oversize, invalid JSON, unknown device,
bad values, bad TimeInstant) can stop the loop or touch another device's messages; it is counted and logged.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from .mapping import map_payload, map_single_attribute
from .metrics import Metrics
from .northbound_writer import NorthboundWriter, Upsert
from .registry import Registry, UnknownSender
from .rejections import RejectionReporter
from .topics import SUBSCRIBE_QOS, SUBSCRIPTIONS, parse_topic

log = logging.getLogger("twin_service.agent.south")


class MeasureHandler:
    """Payload bytes + topic -> rejections or one upsert on the writer's queue. Independent of MQTT for tests."""

    def __init__(
        self,
        registry: Registry,
        writer: NorthboundWriter,
        metrics: Metrics,
        reporter: RejectionReporter,
        max_payload_bytes: int,
        timestamp_default: bool = True,
    ) -> None:
        self._registry = registry
        self._writer = writer
        self._metrics = metrics
        self._reporter = reporter
        self._max_payload_bytes = max_payload_bytes
        self._timestamp_default = timestamp_default

    def handle(self, topic: str, payload: bytes, received_at: datetime | None = None) -> None:
        """Process one message; never raises."""
        self._metrics.inc("messages_total")
        try:
            self._handle(topic, payload, received_at or datetime.now(UTC))
        except Exception as exc:
            log.exception("bug while handling a message on %s; message dropped, agent continues", topic)
            self._reporter.report("internal_error", repr(exc), topic)

    def _handle(self, topic: str, payload: bytes, received_at: datetime) -> None:
        parsed = parse_topic(topic)
        if parsed is None:
            self._reporter.report("bad_topic", "not a measure topic", topic)
            return
        who = {"topic": topic, "apikey": parsed.apikey, "device_id": parsed.device_id}
        if len(payload) > self._max_payload_bytes:
            self._reporter.report("oversize", f"{len(payload)} bytes, limit {self._max_payload_bytes}", **who)
            return
        if parsed.object_id is not None:
            value: Any = _bare_value(payload)
        else:
            try:
                value = json.loads(payload)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                detail = "empty payload" if not payload.strip() else f"invalid JSON: {exc}"
                self._reporter.report("invalid_json", detail, **who)
                return
        try:
            device = self._registry.resolve(parsed.apikey, parsed.device_id)
        except UnknownSender as exc:
            self._reporter.report(exc.reason, str(exc), **who)
            return
        if parsed.object_id is not None:
            mapped = map_single_attribute(
                device, parsed.object_id, value, received_at, self._timestamp_default
            )
        else:
            mapped = map_payload(device, value, received_at, self._timestamp_default)
        for rejection in mapped.rejections:
            dropped = "measure" if rejection.reason == "bad_value" else "measure object"
            if not mapped.fragments:
                dropped = "message"
            self._reporter.report(rejection.reason, rejection.detail, dropped=dropped, **who)
        if not mapped.fragments:
            return
        upsert = Upsert(device.service, device.subservice, device.device_id, mapped.fragments)
        if not self._writer.submit(upsert):
            self._reporter.report("queue_full", "broker too slow or down", **who)
            return
        self._metrics.inc("measures_total", mapped.measures)


def _bare_value(payload: bytes) -> Any:
    """A single-attribute payload: JSON when it parses, else the bytes as a hex string (iotagent-json does so)."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return payload.hex()


class MqttSouth:
    """A paho-mqtt client subscribed to every measure topic at QoS 1, feeding a MeasureHandler."""

    def __init__(self, host: str, port: int, handler: MeasureHandler, client_id: str | None = None) -> None:
        self._host = host
        self._port = port
        self._handler = handler
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"energytwin-agent-{uuid.uuid4().hex[:8]}",
            clean_session=True,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)

    def start(self) -> None:
        """Connect in the background (retrying until the MQTT broker is up) and start the network loop."""
        self._client.connect_async(self._host, self._port, keepalive=60)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network loop."""
        self._client.disconnect()
        self._client.loop_stop()

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        """True once the broker has acknowledged the subscriptions (tests publish only after that)."""
        return self._subscribed.wait(timeout_s)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error(
                "MQTT broker %s:%d refused the connection: %s; retrying", self._host, self._port, reason
            )
            return
        log.info("connected to MQTT broker %s:%d; subscribing to %s", self._host, self._port, SUBSCRIPTIONS)
        client.subscribe([(topic, SUBSCRIBE_QOS) for topic in SUBSCRIPTIONS])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        refused = [str(code) for code in reasons if code.is_failure]
        if refused:
            log.error("MQTT broker refused some subscriptions: %s", refused)
        self._subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._subscribed.clear()
        if reason.is_failure:
            log.warning("lost MQTT broker %s:%d (%s); reconnecting", self._host, self._port, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._handler.handle(message.topic, message.payload)
