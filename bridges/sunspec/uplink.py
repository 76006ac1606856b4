"""MQTT to the IoT Agent, as a meter talks to it: IoT Agent JSON measures up, commands down.

- Measures: `/json/<apikey>/<device_id>/attrs`, QoS 1, one JSON object per reading with `TimeInstant`; a
  replay from the offline buffer is a JSON array of such objects (the agent's shape for several measures).
- Commands: the agent publishes `{"<command>": <value>}` on `/<apikey>/<device_id>/cmd` (iotagent-json's
  command topic; `/json/<apikey>/<device_id>/cmd` is subscribed too); the bridge answers on
  `/<apikey>/<device_id>/cmdexe` with `{"<command>": <result>}`.
A publish while disconnected, or one the client refuses, goes to the offline buffer instead.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from .buffer import OfflineBuffer

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, str, dict[str, Any]], None]  # (apikey, device_id, payload)


def attrs_topic(apikey: str, device_id: str) -> str:
    return f"/json/{apikey}/{device_id}/attrs"


def cmdexe_topic(apikey: str, device_id: str) -> str:
    return f"/{apikey}/{device_id}/cmdexe"


class Uplink:
    """One MQTT connection for the whole bridge."""

    def __init__(self, host: str, port: int, buffer: OfflineBuffer, client_id: str = "energytwin-sunspec",
                 username: str | None = None, password: str | None = None) -> None:
        self.host, self.port = host, port
        self.buffer = buffer
        self.published = 0
        self.buffered = 0
        self.bad_commands = 0
        self._handler: CommandHandler | None = None
        self._stopping = False
        self._subscriptions: set[tuple[str, str]] = set()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if username:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, wait_s: float = 5.0) -> None:
        """Connect in the background (paho's network thread); returns once connected or after `wait_s`."""
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(wait_s):
            log.warning("MQTT %s:%d not reachable yet: readings go to the offline buffer until it is",
                        self.host, self.port)

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self.buffer.save()

    def on_command(self, handler: CommandHandler) -> None:
        self._handler = handler

    def subscribe_commands(self, apikey: str, device_id: str) -> None:
        with self._lock:
            self._subscriptions.add((apikey, device_id))
        if self.connected:
            self._subscribe(apikey, device_id)

    def _subscribe(self, apikey: str, device_id: str) -> None:
        for topic in (f"/{apikey}/{device_id}/cmd", f"/json/{apikey}/{device_id}/cmd"):
            self._client.subscribe(topic, qos=1)

    def publish_measures(self, apikey: str, device_id: str, measures: dict[str, Any]) -> None:
        """Publish one reading, or keep it in the offline buffer while MQTT is down."""
        topic = attrs_topic(apikey, device_id)
        if not self.connected or len(self.buffer):
            # Keep order: while anything waits in the buffer, new readings queue behind it.
            self.buffer.put(topic, measures)
            self.buffered += 1
            if self.connected:
                self.flush()
            return
        if not self._send(topic, measures):
            self.buffer.put(topic, measures)
            self.buffered += 1

    def reply(self, apikey: str, device_id: str, result: dict[str, Any]) -> None:
        """A command result on `/cmdexe` (not buffered: a late result would be misread as a new one)."""
        self._client.publish(cmdexe_topic(apikey, device_id), json.dumps(result), qos=1)

    def flush(self, limit: int = 500) -> int:
        """Replay buffered readings (arrays per device topic); returns how many were sent.

        One replay at a time (the reconnect thread and the polling thread may both ask): a second caller returns
        at once, so two replays never interleave one device's readings out of order.
        """
        if not self._flush_lock.acquire(blocking=False):
            return 0
        try:
            return self._flush(limit)
        finally:
            self._flush_lock.release()

    def _flush(self, limit: int) -> int:
        sent = 0
        while self.connected and len(self.buffer):
            batches = self.buffer.take(limit)
            for index, (topic, items) in enumerate(batches):
                if not self._send(topic, items):
                    self.buffer.give_back(batches[index:])
                    return sent
                sent += len(items)
        if sent:
            log.info("replayed %d buffered readings", sent)
        return sent

    def _send(self, topic: str, payload: Any) -> bool:
        info = self._client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self.published += len(payload) if isinstance(payload, list) else 1
        return True

    # paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.error("MQTT %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        log.info("MQTT connected to %s:%d", self.host, self.port)
        self._connected.set()
        with self._lock:
            subscriptions = list(self._subscriptions)
        for apikey, device_id in subscriptions:
            self._subscribe(apikey, device_id)
        threading.Thread(target=self.flush, name="sunspec-replay", daemon=True).start()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("MQTT %s:%d lost (%s): buffering readings", self.host, self.port, reason_code)
        self._connected.clear()

    def _on_message(self, client, userdata, message) -> None:
        parts = message.topic.strip("/").split("/")
        if parts[0] == "json":
            parts = parts[1:]
        if len(parts) != 3 or parts[2] != "cmd":
            return
        apikey, device_id = parts[0], parts[1]
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not payload:
            self.bad_commands += 1
            log.warning("command on %s ignored: not a JSON object of {command: value}: %r", message.topic,
                        message.payload[:200])
            return
        if self._handler is not None:
            self._handler(apikey, device_id, payload)
