"""IoT Agent commands: an NGSI-LD attribute update of a command becomes an MQTT `/cmd`, its `/cmdexe` the result.

The FIWARE command pattern (iotagent-node-lib `lib/services/commands/`, iotagent-json's MQTT binding):

1. A device provisioned with `commands: [{"name": "batteryPowerSetpoint", "type": "command"}]` gets its command
   attributes on its entity: `<cmd>` (value "" while no command is held), `<cmd>_status` ("UNKNOWN") and
   `<cmd>_info` (""), so any NGSI-LD client sends a command with a plain attribute update
   (`PATCH /ngsi-ld/v1/entities/{id}/attrs`).
2. The agent learns of the update, writes `<cmd>_status` = "PENDING" and publishes `{"<cmd>": <value>}` on
   `/<apikey>/<device_id>/cmd` (QoS 1). An attribute deleted with the NGSI-LD null (`urn:ngsi-ld:null`, what
   "release" means for a setpoint) is sent as `{"<cmd>": null}` and the empty command attribute is put back.
3. The device answers on `/<apikey>/<device_id>/cmdexe` (or `/json/...`) with `{"<cmd>": <result>}`; the agent
   writes `<cmd>_status` "OK" (or "ERROR" when the result is `{"ok": false, ...}`, has an `"error"`, or is a
   string starting with "ERROR") and `<cmd>_info` = the result. No answer within `timeout_s`: "EXPIRED".

How step 2 learns of the update differs from the FIWARE agent, and docs/provisioning.md says so: node-lib
registers the command attributes as a context source (ETSI GS CIM 009 §5.9) and Orion-LD forwards the update to
it; the embedded broker has no forwarding, so this relay holds an NGSI-LD subscription per tenant whose
`watchedAttributes` are the command names, with notifications to the agent's own `POST /notify/commands`.
For the client sending the command both are the same request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import paho.mqtt.client as mqtt

from fiware_client import BrokerError, NgsiLdClient, NotFound

from .metrics import Metrics
from .registry import Registry, ResolvedDevice, UnknownSender
from .rejections import RejectionReporter
from .south import MqttSettings, mqtt_client

log = logging.getLogger("twin_service.agent.commands")

EMPTY = ""  # the value of a command attribute that holds no command (node-lib writes "" as well)
NGSI_LD_NULL = "urn:ngsi-ld:null"  # an attribute deleted by a partial update (ETSI GS CIM 009 §4.5.x)
CMDEXE_TOPICS = ("/+/+/cmdexe", "/json/+/+/cmdexe")
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CommandTarget:
    """A device that takes commands: where its commands go (MQTT) and whose entity carries them (NGSI-LD)."""

    apikey: str
    device: ResolvedDevice
    commands: tuple[str, ...]

    @property
    def tenant(self) -> str:
        return self.device.service


def cmd_topic(apikey: str, device_id: str) -> str:
    """iotagent-json's command topic."""
    return f"/{apikey}/{device_id}/cmd"


def parse_cmdexe_topic(topic: str) -> tuple[str, str] | None:
    """(apikey, device_id) of `/<apikey>/<id>/cmdexe` or `/json/<apikey>/<id>/cmdexe`, else None."""
    parts = topic.removeprefix("/").split("/")
    if parts and parts[0] == "json":
        parts = parts[1:]
    if len(parts) != 3 or parts[2] != "cmdexe" or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def result_status(result: Any) -> str:
    """OK or ERROR for a device's `/cmdexe` result (the contract in docs/provisioning.md, Commands)."""
    if isinstance(result, dict) and (result.get("ok") is False or result.get("error")):
        return "ERROR"
    if isinstance(result, str) and result.upper().startswith("ERROR"):
        return "ERROR"
    return "OK"


def subscription_id(tenant: str, notify_url: str, entity_type: str | None = None, command: str | None = None) -> str:
    """One subscription per tenant, agent endpoint, entity type and command, stable across restarts
    (ensure_subscription keeps it). Per type, because each is sent with its type's @context: one subscription
    naming types of two Smart Data Models (BatteryStatus, PhotovoltaicMeasurement) would expand all of them with
    one model's context, and the broker would never match the others. Per command, because a notification
    carries every attribute it lists: watching two commands of one entity in one subscription, updating one
    would send the other's held value again. Without type and command: the id of the former per-tenant one."""
    key = f"{tenant}\n{notify_url}" + ("" if entity_type is None else f"\n{entity_type}\n{command}")
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return f"urn:ngsi-ld:Subscription:energytwin-agent-commands-{digest}"


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


class CommandRelay:
    """Watches command attributes in the twin, publishes them to devices, writes their results back."""

    def __init__(self, registry: Registry, metrics: Metrics, reporter: RejectionReporter, settings: MqttSettings,
                 client_id: str, broker_url: str, notify_url: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 resync_s: float = 30.0) -> None:
        self._registry = registry
        self._metrics = metrics
        self._reporter = reporter
        self._broker_url = broker_url
        self.notify_url = notify_url
        self._timeout_s = timeout_s
        self._resync_s = resync_s
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, str], CommandTarget] = {}  # (tenant, entity id) -> target
        self._prepared: set[str] = set()  # entity ids whose command attributes exist
        self._pending: dict[tuple[str, str, str], float] = {}  # (tenant, entity id, command) -> deadline
        self._clients: dict[str, NgsiLdClient] = {}
        self._synced_generation = -1
        self._last_sync = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._client = mqtt_client(settings, f"{client_id}-cmd", clean_session=True)
        self._settings = settings
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._client.connect_async(self._settings.host, self._settings.port, keepalive=self._settings.keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="agent-commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """True once `/cmdexe` is subscribed and the first sync with the broker succeeded (tests)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._subscribed.is_set() and self._synced_generation == self._registry.generation:
                return True
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            if self._synced_generation != self._registry.generation or now - self._last_sync > self._resync_s:
                self._sync()
            self._expire(now)

    # -- twin side ----------------------------------------------------------------------------------------------

    def _broker(self, tenant: str) -> NgsiLdClient:
        with self._lock:
            client = self._clients.get(tenant)
            if client is None:
                client = self._clients[tenant] = NgsiLdClient(self._broker_url, tenant or None, timeout=10.0)
            return client

    def _sync(self) -> None:
        """Command attributes on every commanded entity, and one subscription per tenant, entity type and command watching them."""
        generation = self._registry.generation
        self._last_sync = time.monotonic()
        targets = {}
        for apikey, device, names in self._registry.command_devices():
            target = CommandTarget(apikey, device, names)
            targets[(target.tenant, device.entity_id)] = target
        with self._lock:
            self._targets = targets
        try:
            for target in targets.values():
                if target.device.entity_id not in self._prepared:
                    self._prepare(target)
                    self._prepared.add(target.device.entity_id)
            for tenant in sorted({t.tenant for t in targets.values()}):
                self._subscribe(tenant, [t for t in targets.values() if t.tenant == tenant])
        except BrokerError as exc:
            log.warning("cannot set up commands in the broker %s (%s); retrying", self._broker_url, exc)
            return
        self._synced_generation = generation

    def _prepare(self, target: CommandTarget) -> None:
        """Create the command attributes the entity lacks (never overwrite a held command or its status)."""
        client = self._broker(target.tenant)
        entity_id = target.device.entity_id
        try:
            present = set(client.get_entity(entity_id))
        except NotFound:
            present = set()
        missing: dict[str, Any] = {}
        for name in target.commands:
            for attr, value in ((name, EMPTY), (f"{name}_status", "UNKNOWN"), (f"{name}_info", EMPTY)):
                if attr not in present:
                    missing[attr] = _prop(value)
        if missing:
            client.upsert_entities([{"id": entity_id, "type": target.device.entity_type, **missing}], update=True)

    def _subscribe(self, tenant: str, targets: list[CommandTarget]) -> None:
        uri = f"{self.notify_url}?service={quote(tenant, safe='')}"
        client = self._broker(tenant)
        for entity_type, name in sorted({(t.device.entity_type, name) for t in targets for name in t.commands}):
            body = {
                "id": subscription_id(tenant, self.notify_url, entity_type, name),
                "type": "Subscription",
                "description": f"energytwin IoT Agent: command {name} of provisioned {entity_type} devices "
                               "-> MQTT /cmd",
                "entities": [{"type": entity_type}],
                "watchedAttributes": [name],
                "notificationTrigger": ["attributeCreated", "attributeUpdated", "attributeDeleted"],
                "notification": {"attributes": [name], "format": "normalized",
                                 "endpoint": {"uri": uri, "accept": "application/json"}},
            }
            client.ensure_subscription(body)
        client.delete_subscription(subscription_id(tenant, self.notify_url), missing_ok=True)  # the per-tenant one

    def handle_notification(self, tenant: str, body: Any) -> int:
        """A notification from the subscription: send every command it carries; returns how many were sent.

        Raises ValueError for a body that is not an NGSI-LD notification (the route answers 400)."""
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ValueError("not an NGSI-LD notification (an object with a data array)")  # noqa: TRY004
        sent = 0
        for entity in body["data"]:
            if not isinstance(entity, dict):
                continue
            with self._lock:
                target = self._targets.get((tenant, entity.get("id")))
            if target is None:
                log.warning("notification for %s (tenant %r), which no provisioned device commands; ignored",
                            entity.get("id"), tenant)
                continue
            for name in target.commands:
                attr = entity.get(name)
                if not isinstance(attr, dict) or "value" not in attr:
                    continue
                value = attr["value"]
                if value == EMPTY:
                    continue  # the empty command attribute (created by this relay): no command
                if value == NGSI_LD_NULL:
                    self._send(target, name, None)
                    self._restore(target, name)
                else:
                    self._send(target, name, value)
                sent += 1
        return sent

    def _write(self, target: CommandTarget, attrs: dict[str, Any]) -> None:
        try:
            self._broker(target.tenant).upsert_entities(
                [{"id": target.device.entity_id, "type": target.device.entity_type,
                  **{k: _prop(v) for k, v in attrs.items()}}], update=True)
        except BrokerError as exc:
            log.warning("could not write %s on %s: %s", ", ".join(attrs), target.device.entity_id, exc)

    def _restore(self, target: CommandTarget, name: str) -> None:
        """After a release (the attribute was deleted), the empty command attribute, so the next update works."""
        self._write(target, {name: EMPTY})

    def _send(self, target: CommandTarget, name: str, value: Any) -> None:
        device = target.device
        self._write(target, {f"{name}_status": "PENDING"})
        payload = json.dumps({name: value})
        info = self._client.publish(cmd_topic(target.apikey, device.device_id), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._metrics.inc("commands_total", result="not_published")
            log.error("command %s=%s for %s not published (MQTT %s); status ERROR", name, payload,
                      device.device_id, mqtt.error_string(info.rc))
            self._write(target, {f"{name}_status": "ERROR", f"{name}_info": "MQTT broker unreachable"})
            return
        with self._lock:
            self._pending[(target.tenant, device.entity_id, name)] = time.monotonic() + self._timeout_s
        self._metrics.inc("commands_total", result="sent")
        log.info("command %s=%s sent to %s on %s", name, json.dumps(value), device.device_id,
                 cmd_topic(target.apikey, device.device_id))

    def _expire(self, now: float) -> None:
        with self._lock:
            late = [key for key, deadline in self._pending.items() if deadline <= now]
            for key in late:
                del self._pending[key]
            targets = {key: self._targets.get(key[:2]) for key in late}
        for (tenant, entity_id, name), target in targets.items():
            self._metrics.inc("commands_total", result="expired")
            log.warning("command %s for %s got no /cmdexe answer within %.0f s: EXPIRED", name, entity_id,
                        self._timeout_s)
            if target is not None:
                self._write(target, {f"{name}_status": "EXPIRED"})

    # -- MQTT side ----------------------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the command relay's connection: %s; retrying", reason)
            return
        client.subscribe([(topic, 1) for topic in CMDEXE_TOPICS])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self.handle_cmdexe(message.topic, message.payload)
        except Exception as exc:  # a bug must not stop the MQTT loop
            log.exception("bug while handling %s; result dropped, agent continues", message.topic)
            self._reporter.report("internal_error", repr(exc), message.topic)

    def handle_cmdexe(self, topic: str, payload: bytes) -> None:
        """A device's command result: status and info on its entity; bad input reported with a reason."""
        parsed = parse_cmdexe_topic(topic)
        if parsed is None:
            self._reporter.report("bad_topic", "not a /<apikey>/<device_id>/cmdexe topic", topic)
            return
        apikey, device_id = parsed
        who = {"topic": topic, "apikey": apikey, "device_id": device_id, "dropped": "command result"}
        try:
            results = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            self._reporter.report("invalid_json", f"command result is not JSON: {exc}", **who)
            return
        if not isinstance(results, dict) or not results:
            self._reporter.report("not_an_object", "a command result is an object {\"<command>\": <result>}",
                                  **who)
            return
        try:
            device = self._registry.resolve(apikey, device_id)
        except UnknownSender as exc:
            self._reporter.report(exc.reason, str(exc), **who)
            return
        with self._lock:
            target = self._targets.get((device.service, device.entity_id))
        for name, result in results.items():
            if target is None or name not in target.commands:
                self._reporter.report("unknown_command", f"{device_id} was not provisioned with command {name!r}",
                                      **who)
                continue
            status = result_status(result)
            with self._lock:
                was_pending = self._pending.pop((target.tenant, device.entity_id, name), None) is not None
            self._metrics.inc("commands_total", result=status.lower())
            if not was_pending:
                log.info("result of %s for %s arrived with no command pending (late or repeated); recorded",
                         name, device_id)
            log.info("command %s on %s: %s %s", name, device_id, status, json.dumps(result))
            self._write(target, {f"{name}_status": status, f"{name}_info": result})
