"""The MQTT side: subscribe to measure topics at QoS 1, map each message, acknowledge once it is safe on disk.

Every message is handled on its own: nothing a meter sends (bad topic, oversize, invalid JSON, unknown device,
bad values, bad TimeInstant, a flood) can stop the loop or touch another device's messages; it is counted and
logged. Acknowledgements are manual (paho `manual_ack=True`): the `Intake` sends the PUBACK only after the mapped
message is committed to the durable queue (northbound_writer.py), so a QoS 1 message the agent acknowledged is
never lost, and one it did not acknowledge is redelivered by the MQTT broker (persistent session).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from datamodels.measures import MEASURES

from .continuity import CounterContinuity
from .device_entity import DeviceEntities
from .mapping import map_payload, map_single_attribute
from .metrics import Metrics
from .northbound_writer import Intake, Upsert
from .registry import Registry, UnknownSender
from .rejections import RejectionReporter
from .timestamps import observed_at
from .topics import SUBSCRIBE_QOS, SUBSCRIPTIONS, parse_topic

# The attribute in which a meter reports its own health (`ds` on the wire), from the measure table.
DEVICE_STATE_ATTRIBUTE = next(m.attribute for m in MEASURES if m.device_state)

log = logging.getLogger("twin_service.agent.south")
# a run of 19 digits, found as 19 zeros once every digit is a zero (bytes.translate: ~1 us, a regex ~16 us)
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
_LONG_DIGITS = b"0" * 19


class FloodLimit:
    """A token bucket per (apikey, device): a meter stuck in a publish loop cannot starve the others.

    The default (20 messages/s sustained, bursts of 200) is 20x a meter's 1 Hz rate; an offline replay arrives as
    arrays of readings, so it costs one token per message, not per reading.
    """

    def __init__(
        self, rate_per_s: float = 20.0, burst: int = 200, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def allow(self, apikey: str, device_id: str) -> bool:
        """Take a token for this device; False when its bucket is empty (the message is a flood)."""
        if self._rate <= 0:
            return True
        now = self._clock()
        key = (apikey, device_id)
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if len(self._buckets) > 200_000:  # random device ids must not grow memory without end
            self._buckets.clear()
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


class MeasureHandler:
    """Payload bytes + topic -> rejections or the one upsert to queue. Independent of MQTT for tests."""

    def __init__(
        self,
        registry: Registry,
        metrics: Metrics,
        reporter: RejectionReporter,
        max_payload_bytes: int,
        timestamp_default: bool = True,
        flood: FloodLimit | None = None,
        devices: DeviceEntities | None = None,
        continuity: CounterContinuity | None = None,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._reporter = reporter
        self._max_payload_bytes = max_payload_bytes
        self._timestamp_default = timestamp_default
        self._flood = flood or FloodLimit()
        self._devices = devices
        self._continuity = continuity

    def handle(self, topic: str, payload: bytes, received_at: datetime | None = None) -> Upsert | None:
        """Map one message to the upsert to queue, or None when it is rejected; never raises."""
        self._metrics.inc("messages_total")
        try:
            return self._handle(topic, payload, received_at or datetime.now(UTC))
        except Exception as exc:
            log.exception("bug while handling a message on %s; message dropped, agent continues", topic)
            self._reporter.report("internal_error", repr(exc), topic)
            return None

    def _handle(self, topic: str, payload: bytes, received_at: datetime) -> Upsert | None:
        parsed = parse_topic(topic)
        if parsed is None:
            self._reporter.report("bad_topic", "not a measure topic", topic)
            return None
        who = {"topic": topic, "apikey": parsed.apikey, "device_id": parsed.device_id}
        if not self._flood.allow(parsed.apikey, parsed.device_id):
            self._reporter.report("flood", "more messages than the per-device limit allows", **who)
            return None
        if len(payload) > self._max_payload_bytes:
            self._reporter.report("oversize", f"{len(payload)} bytes, limit {self._max_payload_bytes}", **who)
            return None
        if parsed.object_id is not None:
            value: Any = _bare_value(payload)
        else:
            try:
                value = decode_json(payload)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                detail = "empty payload" if not payload.strip() else f"invalid JSON: {exc}"
                self._reporter.report("invalid_json", detail, **who)
                return None
            except RecursionError:  # '[' * 10000: deeper than the parser goes; no meter sends that
                self._reporter.report("invalid_json", "JSON nested too deeply", **who)
                return None
        try:
            device = self._registry.resolve(parsed.apikey, parsed.device_id)
        except UnknownSender as exc:
            self._reporter.report(exc.reason, str(exc), **who)
            return None
        if device.autoprovisioned:
            self._metrics.inc("autoprovisioned_total")
            log.info("autoprovisioned device %s (apikey %s) as %s", device.device_id, parsed.apikey,
                     device.entity_id)
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
            return None
        fragments = mapped.fragments
        if self._continuity is not None:
            for reset in self._continuity.apply(device.service, fragments):
                self._metrics.inc("counter_resets_total")
                log.warning(
                    "meter %s (%s): %s%s went back from %s to %s at %s: counter reset, the twin continues from "
                    "%s (marked counterReset)", device.device_id, reset.entity_id, reset.attribute,
                    f" {reset.key}" if reset.key else "", reset.before, reset.after, reset.observed_at,
                    reset.before,
                )
        if self._devices is not None:
            last = _latest_observed_at(fragments) or _observed(received_at)
            twin = self._devices.fragment(device, last, bool(mapped.rejections), time.monotonic(),
                                          meter_state=_meter_state(fragments))
            if twin is not None:
                fragments = [*fragments, twin]
        self._metrics.inc("measures_total", mapped.measures)
        return Upsert(device.service, device.subservice, device.device_id, fragments)

    def report_queue_full(self, topic: str) -> None:
        """The durable queue had no room for this message (called by the Intake)."""
        parsed = parse_topic(topic)
        who = {"apikey": parsed.apikey, "device_id": parsed.device_id} if parsed else {}
        self._reporter.report("queue_full", "the on-disk queue to the broker is full", topic, **who)


def _meter_state(fragments: list[dict[str, Any]]) -> str | None:
    """The state the meter reported about itself in its newest fragment (`deviceState`, wire key `ds`)."""
    attribute = fragments[-1].get(DEVICE_STATE_ATTRIBUTE)
    if isinstance(attribute, dict) and isinstance(attribute.get("value"), str):
        return attribute["value"]
    return None


def _latest_observed_at(fragments: list[dict[str, Any]]) -> str | None:
    """The newest observedAt in the fragments (replays are sorted, so the last fragment's)."""
    for value in fragments[-1].values():
        if isinstance(value, dict) and "observedAt" in value:
            return value["observedAt"]
    return None


def _observed(moment: datetime) -> str:
    return observed_at(moment)


def decode_json(payload: bytes) -> Any:
    """A message's JSON: orjson (6-8 us for the firmware's 991-byte message against 23-30 us for json.loads,
    digit check included, measured in-process 2026-12-07), and json.loads whenever orjson refuses, so what the
    agent accepts and the errors it reports are json.loads's: NaN/Infinity, numbers overflowing to inf, lone
    surrogates, a UTF-8 BOM or UTF-16/32 text parse as before, and invalid JSON gets the standard library's
    message (`invalid_json` rejections quote it). orjson reads an integer of 20 digits or more as a float, so a
    payload with a run of 19+ digits goes to json.loads directly (tests/agent/test_decode_json.py)."""
    if _LONG_DIGITS in payload.translate(_DIGITS_AS_ZERO):
        return json.loads(payload)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


def _bare_value(payload: bytes) -> Any:
    """A single-attribute payload: JSON when it parses, else the bytes as a hex string (iotagent-json does so)."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return payload.hex()


@dataclass(frozen=True)
class MqttSettings:
    """How the agent reaches the MQTT broker; env var names are the IoT Agent's (`IOTA_MQTT_*`)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None  # IOTA_MQTT_USERNAME
    password: str | None = None  # IOTA_MQTT_PASSWORD
    protocol: str = "mqtt"  # IOTA_MQTT_PROTOCOL: mqtt | mqtts (tls) ; mqtts needs no certificate with a public CA
    ca_file: str | None = None  # IOTA_MQTT_CA
    cert_file: str | None = None  # IOTA_MQTT_CERT (client certificate, optional)
    key_file: str | None = None  # IOTA_MQTT_KEY
    reject_unauthorized: bool = True  # IOTA_MQTT_REJECT_UNAUTHORIZED
    keepalive_s: int = 60  # IOTA_MQTT_KEEPALIVE
    client_id: str | None = None  # IOTA_MQTT_CLIENT_ID; default derived from the data directory
    clean_session: bool = False  # persistent session: unacknowledged messages are redelivered after a restart

    @property
    def tls(self) -> bool:
        return self.protocol.lower() in ("mqtts", "tls", "ssl", "wss")


def mqtt_client(settings: MqttSettings, client_id: str, clean_session: bool, manual_ack: bool = False
                ) -> mqtt.Client:
    """A paho client with the settings' credentials and TLS (the measure side and the command relay share it)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                         manual_ack=manual_ack)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(
            ca_certs=settings.ca_file,
            certfile=settings.cert_file,
            keyfile=settings.key_file,
            cert_reqs=ssl.CERT_REQUIRED if settings.reject_unauthorized else ssl.CERT_NONE,
        )
        if not settings.reject_unauthorized:
            client.tls_insecure_set(True)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


class MqttSouth:
    """A paho-mqtt client subscribed to every measure topic at QoS 1, acknowledging through the Intake."""

    def __init__(
        self, settings: MqttSettings, handler: MeasureHandler, intake: Intake, client_id: str
    ) -> None:
        self._settings = settings
        self._host = settings.host
        self._port = settings.port
        self._handler = handler
        self._intake = intake
        self._subscribed = threading.Event()
        self._client = mqtt_client(settings, settings.client_id or client_id, settings.clean_session,
                                   manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background (retrying until the MQTT broker is up) and start the network loop."""
        self._client.connect_async(self._host, self._port, keepalive=self._settings.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network loop (after the Intake acknowledged what it holds)."""
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
        upsert = self._handler.handle(message.topic, message.payload)
        mid, qos, topic = message.mid, message.qos, message.topic
        ack = (lambda: client.ack(mid, qos)) if qos > 0 else None
        self._intake.submit(upsert, ack, lambda: self._handler.report_queue_full(topic))
