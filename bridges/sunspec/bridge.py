"""The bridge service: polls every device of a site, publishes to the IoT Agent, executes commands, watchdog.

One asyncio task per device, so a device that does not answer (timeouts), is not SunSpec, or sends broken data
only ever delays itself. Each fault is logged once when the device's state changes (with the reason and what
the operator can check), counted every time (`counters`), and written to the twin as the entities'
`deviceState` (`ok`, `degraded:<problem>`, `fault:<kind>`) and, with a broker configured, on the SDM Device.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from datamodels.anomaly import Anomaly, ThresholdBreach
from datamodels.der import (
    BATTERY_TYPE,
    COMMANDS_BY_NAME,
    PV_TYPE,
    agent_device_id,
    battery_entity_id,
    commands_of,
    der_device_entity_id,
    measures_of,
    pv_entity_id,
)
from datamodels.entities import Device

from .buffer import OfflineBuffer
from .controls import DeviceControls
from .discovery import DeviceMap, NotSunSpec, discover
from .holds_store import load_holds, save_holds
from .models import parse_model
from .provision import device_body, ensure_provisioned
from .reader import decode, read_models, roles
from .reserve import RegisterMirror
from .site import DeviceConfig, SiteConfig
from .transport import ModbusFault, ModbusLink
from .uplink import Uplink

log = logging.getLogger(__name__)

PROVISION_RETRY_S = 30.0
STATE_KEYS = {PV_TYPE: ("ds", "cs", "do"), BATTERY_TYPE: ("bds", "bcs", "bdo")}


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DeviceWorker:
    """Polls one device, publishes its entities, runs its commands."""

    def __init__(self, bridge: Bridge, config: DeviceConfig) -> None:
        self.bridge = bridge
        self.config = config
        self.name = config.id
        self.link = ModbusLink(config.endpoint)
        site = bridge.site
        self.controls = DeviceControls(self.name, self.link, bridge.clock, site.watchdog.margin,
                                       site.watchdog.minimum_s)
        self.device_map: DeviceMap | None = None
        self.roles: list[str] = []
        self.state = "starting"
        self.info: dict[str, str] = {}
        self.provisioned = False
        self._provision_tried = -PROVISION_RETRY_S
        self.polls = 0
        self.commands: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.mirror = (RegisterMirror(config.unit, config.reserve_host, config.reserve_port)
                       if config.reserve_port else None)
        self._reverted_now: list[str] = []
        self.controls.on_change = bridge.save_holds
        self.restore: dict[str, float] = dict(bridge.saved_holds.get(config.id, {}))  # written once discovered

    def where(self) -> str:
        return f"{self.name} ({self.config.endpoint.describe()} unit {self.config.unit})"

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.bridge.site.poll_interval_s
        if self.mirror is not None:
            try:
                await self.mirror.start()
            except (OSError, RuntimeError) as exc:
                log.error("%s: cannot re-serve on %s:%s (%s); polling without the mirror", self.where(),
                          self.config.reserve_host, self.config.reserve_port, exc)
                self.mirror = None
        try:
            await self._loop(stop, interval)
        finally:
            if self.mirror is not None:
                await self.mirror.stop()
            self.link.close()

    async def _loop(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            started = time.monotonic()
            await self.poll_once()
            while not stop.is_set():
                wait = interval - (time.monotonic() - started)
                due = self.controls.next_due_in()
                if due is not None:
                    wait = min(wait, due / self.bridge.speed)
                if wait <= 0:
                    break
                try:
                    agent_id, payload = await asyncio.wait_for(self.commands.get(), timeout=wait)
                except TimeoutError:
                    break
                await self.run_command(agent_id, payload)
                await self.poll_once()  # the twin shows the new state right away

    def _set_state(self, state: str, detail: str = "") -> None:
        if state != self.state:
            if state == "ok":
                log.info("%s: ok%s", self.where(), f" (was {self.state})" if self.state != "starting" else "")
            elif state.startswith("fault:"):
                log.error("%s: %s: %s; other devices keep polling, retrying every %.0f s", self.where(), state,
                          detail, self.bridge.site.poll_interval_s)
            else:
                log.warning("%s: %s: %s", self.where(), state, detail)
            self.state = state
            self.bridge.device_entity_due(self)

    async def poll_once(self) -> None:
        self.polls += 1
        self.bridge.count("polls_total", self.name)
        now = self.bridge.clock()
        try:
            if self.device_map is None:
                await self._discover()
            assert self.device_map is not None
            raw: dict[int, list[int]] | None = {} if self.mirror is not None else None
            parsed = await read_models(self.link, self.device_map, raw=raw)
            if self.mirror is not None and raw is not None:
                self.mirror.update(self.device_map, raw)
            decoded = decode(self.device_map, parsed)
            reverted = self.controls.reverted(decoded.values)
            if reverted:
                self.bridge.count("reverts_total", self.name, len(reverted))
                for name in reverted:
                    self.bridge.revert_event(self, name, self.controls.holds[name].value,
                                             self.controls.read_back(name, decoded.values))
                await self.controls.handle_reverts(reverted)
                self._reverted_now = reverted
            else:
                self.bridge.count("reasserts_total", self.name, await self.controls.reassert_due())
            for problem in decoded.problems:
                self.bridge.count("problems_total", self.name, kind=problem.kind)
            if decoded.problems:
                kinds = sorted({p.kind for p in decoded.problems})
                self._set_state(f"degraded:{','.join(kinds)}", "; ".join(p.detail for p in decoded.problems))
            else:
                self._set_state("ok")
            self._publish(decoded.values, now)
            await self._provision()
        except ModbusFault as fault:
            self.bridge.count("faults_total", self.name, kind=fault.kind)
            hint = {"no-response": "check the address, the port, the unit id and that no other client holds "
                                   "the device's single Modbus TCP connection"}.get(fault.kind, "")
            self._set_state(f"fault:{fault.kind}", f"{fault.detail}{'; ' + hint if hint else ''}")
            self._fault_published(now)
            if self.mirror is not None:
                self.mirror.invalidate()
            self.device_map = None  # re-discover: the map may have changed (firmware update, other unit)
            self.link.close()
        except NotSunSpec as exc:
            self.bridge.count("faults_total", self.name, kind="not-sunspec")
            self._set_state("fault:not-sunspec", f"{exc}; is this a SunSpec device, and the right unit id?")
            self._fault_published(now)
            self.device_map = None
        except Exception as exc:
            self.bridge.count("faults_total", self.name, kind="internal")
            log.exception("%s: unexpected error while polling", self.where())
            self._set_state("fault:internal", repr(exc))
            self.device_map = None

    async def _discover(self) -> None:
        device_map = await discover(self.link, self.config.unit)
        self.device_map = device_map
        self.controls.device_map = device_map
        found = roles(device_map)
        if not found:
            raise NotSunSpec("SunSpec map without an inverter (101-103, 701) or storage (124, 802, 713) model: "
                             f"models {[m.model_id for m in device_map.models]}")
        self.roles = found
        common = device_map.find(1)
        if common is not None:
            model = parse_model(1, await self.link.read(common.address, common.length + 2, device_map.unit))
            self.info = {key: str(model.points[point].value or "").strip("\x00 ")
                         for key, point in (("manufacturer", "Mn"), ("model", "Md"), ("serial", "SN"),
                                            ("version", "Vr"))}
        log.info("%s: SunSpec models %s -> %s", self.where(),
                 ", ".join(f"{m.model_id} {m.name}" for m in device_map.models), ", ".join(found))
        await self._restore_holds()
        for entity_type in found:
            self.bridge.uplink.subscribe_commands(self.bridge.site.apikey, agent_device_id(self.name, entity_type))
            self.bridge.workers_by_agent_id[agent_device_id(self.name, entity_type)] = (self, entity_type)
        await self._provision()

    async def _restore_holds(self) -> None:
        """Write the holds saved before the bridge restarted, read back and verified like any command."""
        restore, self.restore = self.restore, {}
        for name in sorted(restore, key=lambda n: n != "batteryPowerSetpoint"):
            result = await self.controls.execute(name, restore[name])
            if result.get("ok"):
                log.info("%s: %s = %g restored from the saved holds", self.where(), name, restore[name])
                self.bridge.count("holds_restored_total", self.name)
            else:
                log.error("%s: saved hold %s = %g not restored: %s", self.where(), name, restore[name],
                          result.get("error"))
                self.bridge.count("commands_failed_total", self.name)
                self.bridge.save_holds()

    async def _provision(self) -> None:
        """Provision on the agent once; a failed attempt is retried every PROVISION_RETRY_S while polling."""
        if self.provisioned or time.monotonic() - self._provision_tried < PROVISION_RETRY_S:
            return
        self._provision_tried = time.monotonic()
        self.provisioned = await asyncio.to_thread(self.bridge.provision, self)

    def _control_state(self, entity_type: str) -> str:
        names = {c.name for c in commands_of(entity_type)}
        reverted = [name for name in self._reverted_now if name in names]
        if reverted:
            return f"reverted:{','.join(reverted)}"
        held = sorted(name for name in self.controls.holds if name in names)
        return f"holding:{','.join(held)}" if held else "auto"

    def _publish(self, values: dict[str, dict[str, Any]], now: float) -> None:
        for entity_type in self.roles:
            keys = {m.attribute: m.object_id for m in measures_of(entity_type)}
            state_key, control_key, date_key = STATE_KEYS[entity_type]
            payload: dict[str, Any] = {"TimeInstant": iso(now), date_key: iso(now), state_key: self.state,
                                       control_key: self._control_state(entity_type)}
            for attribute, value in values.get(entity_type, {}).items():
                payload[keys[attribute]] = value
            self.bridge.uplink.publish_measures(self.bridge.site.apikey, agent_device_id(self.name, entity_type),
                                                payload)
        self._reverted_now = []

    def _fault_published(self, now: float) -> None:
        """A fault reaches the twin on the entities already known (a never-seen device: the Device only)."""
        for entity_type in self.roles:
            state_key, _, _ = STATE_KEYS[entity_type]
            self.bridge.uplink.publish_measures(self.bridge.site.apikey, agent_device_id(self.name, entity_type),
                                                {"TimeInstant": iso(now), state_key: self.state})

    async def run_command(self, agent_id: str, payload: dict[str, Any]) -> None:
        entity_type = self.bridge.workers_by_agent_id[agent_id][1]
        allowed = {c.name for c in commands_of(entity_type)}
        for name, value in payload.items():
            self.bridge.count("commands_total", self.name)
            if name not in allowed:
                result = {"ok": False, "error": f"{entity_type} takes {', '.join(sorted(allowed))}, not {name!r}"}
            else:
                result = await self.controls.execute(name, value)
            if not result.get("ok"):
                self.bridge.count("commands_failed_total", self.name)
            self.bridge.uplink.reply(self.bridge.site.apikey, agent_id, {name: result})


class Bridge:
    """All devices of one site."""

    def __init__(self, site: SiteConfig, clock: Callable[[], float] = time.time, speed: float = 1.0,
                 client_id: str | None = None) -> None:
        self.site = site
        self.clock = clock
        self.speed = speed  # how much faster `clock` runs than real time (benches); 1 in service
        self.counters: Counter[tuple[str, str, str]] = Counter()
        buffer = OfflineBuffer(site.buffer.max_messages, site.buffer.path)
        self.uplink = Uplink(site.mqtt.host, site.mqtt.port, buffer, client_id or f"energytwin-sunspec-{id(self)}",
                             site.mqtt.username, site.mqtt.password)
        self.saved_holds = load_holds(site.holds_path)  # before the workers: each takes its own to restore
        self.workers = [DeviceWorker(self, device) for device in site.devices]
        self.workers_by_agent_id: dict[str, tuple[DeviceWorker, str]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._device_entities_due: set[str] = set()
        self._events: list[dict[str, Any]] = []  # revert Anomaly entities waiting for the broker
        self._provision_lock = threading.Lock()
        self.uplink.on_command(self._command_arrived)

    def save_holds(self) -> None:
        """Save every device's held commands (when the site has a state path); a saved hold not yet restored
        (its device not discovered since the start) is kept."""
        path = self.site.holds_path
        if path is None:
            return
        holds = {w.name: {**w.restore, **{n: h.value for n, h in w.controls.holds.items()}} for w in self.workers}
        try:
            save_holds(path, holds)
        except OSError as exc:
            log.error("held commands not saved to %s (%s): a restart of the bridge would lose them", path, exc)

    def count(self, name: str, device: str, amount: int = 1, kind: str = "") -> None:
        if amount:
            self.counters[(name, device, kind)] += amount

    def total(self, name: str, device: str | None = None, kind: str | None = None) -> int:
        return sum(value for (n, d, k), value in self.counters.items()
                   if n == name and (device is None or d == device) and (kind is None or k == kind))

    def worker(self, device_id: str) -> DeviceWorker:
        return next(w for w in self.workers if w.name == device_id)

    # ---- commands from MQTT (paho thread) -------------------------------------------------------------------
    def _command_arrived(self, apikey: str, agent_id: str, payload: dict[str, Any]) -> None:
        entry = self.workers_by_agent_id.get(agent_id)
        if apikey != self.site.apikey or entry is None or self.loop is None:
            log.warning("command for unknown device %s/%s ignored", apikey, agent_id)
            return
        self.loop.call_soon_threadsafe(entry[0].commands.put_nowait, (agent_id, payload))

    # ---- the twin's side ------------------------------------------------------------------------------------
    def provision(self, worker: DeviceWorker) -> bool:
        """Provision the worker's entities on the agent (when configured); True once done."""
        agent = self.site.agent
        if agent is None:
            return True
        from fiware_client import FiwareError, IotAgentClient

        bodies = [device_body(worker.name, entity_type, self.site.apikey, self.site.location_of(worker.config),
                              meter=worker.config.meter)
                  for entity_type in worker.roles]
        try:
            with self._provision_lock, IotAgentClient(agent.url, agent.service, agent.service_path,
                                                       timeout=10) as client:
                for line in ensure_provisioned(client, self.site.apikey, bodies):
                    log.info("%s: %s on the agent", worker.name, line)
        except (FiwareError, OSError) as exc:
            log.error("%s: provisioning on the agent %s failed (%s); readings are published anyway and "
                      "provisioning is retried in %.0f s", worker.name, agent.url, exc, PROVISION_RETRY_S)
            return False
        return True

    def revert_event(self, worker: DeviceWorker, command: str, held: float, read_back: float | None) -> None:
        """A revert the watchdog could not prevent, as an SDM Anomaly (written with a broker configured)."""
        if self.site.broker is None:
            return
        now = iso(self.clock())
        unit = COMMANDS_BY_NAME[command].unit_code
        breach = [] if read_back is None else [ThresholdBreach(
            dateObserved=now, measuredValue=read_back, thresholdValue=held,
            thresholdType="UPPER" if read_back > held else "LOWER")]
        anomaly = Anomaly(
            id=f"urn:ngsi-ld:Anomaly:{worker.name}:revert:{command}:{int(self.clock() * 1000)}",
            anomalousProperty=command, dateDetected=now, detectedBy=der_device_entity_id(worker.name),
            thresholdBreach=breach, severity="medium", phase="all", status="closed", validFrom=now, validTo=now,
            name=f"{command} reverted",
            description=(f"{worker.name}: {command} = {held:g} {unit} was found at "
                         f"{'unknown' if read_back is None else f'{read_back:g}'} {unit} (reverted by the device "
                         "or another client before the watchdog re-asserted it); re-asserted"),
            source=(battery_entity_id if command == "batteryPowerSetpoint" else pv_entity_id)(worker.name))
        if len(self._events) < 1000:
            self._events.append(anomaly.to_normalized())

    def device_entity_due(self, worker: DeviceWorker) -> None:
        self._device_entities_due.add(worker.name)

    def device_entity(self, worker: DeviceWorker) -> dict[str, Any]:
        """The SDM Device of a physical inverter, normalized."""
        device = Device(
            id=der_device_entity_id(worker.name),
            controlledProperty=["energy", "power"],
            deviceCategory=["meter", "actuator"],
            supportedProtocol=[],  # Modbus is not in the SDM supportedProtocol enum
            name=worker.name,
            description="inverter / battery read over Modbus SunSpec by energytwin's bridge",
            serialNumber=worker.info.get("serial") or None,
            firmwareVersion=worker.info.get("version") or None,
            provider=worker.info.get("manufacturer") or None,
            softwareVersion=worker.info.get("model") or None,
            deviceState=worker.state,
            location=self.site.location_of(worker.config).model_dump(mode="json"),
            dateLastValueReported=iso(self.clock()),
        )
        return device.to_normalized(observed_at=iso(self.clock()))

    async def _write_device_entities(self) -> None:
        if self.site.broker is None or not (self._device_entities_due or self._events):
            return
        names, self._device_entities_due = self._device_entities_due, set()
        events, self._events = self._events, []
        entities = [self.device_entity(self.worker(name)) for name in names] + events
        tenant = self.site.agent.service if self.site.agent else None
        from fiware_client import FiwareError, NgsiLdClient

        def write() -> None:
            with NgsiLdClient(self.site.broker.url, tenant=tenant, timeout=10) as broker:  # type: ignore[union-attr]
                broker.upsert_entities(entities)

        try:
            await asyncio.to_thread(write)
        except (FiwareError, OSError) as exc:
            log.warning("Device entities not written to %s (%s); retrying", self.site.broker.url, exc)
            self._device_entities_due |= names
            self._events = events + self._events

    # ---- running --------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = stop or asyncio.Event()
        # Devices are polled from the start; readings taken before MQTT connects wait in the offline buffer.
        tasks = [asyncio.create_task(worker.run(self._stop), name=f"sunspec-{worker.name}")
                 for worker in self.workers]
        await asyncio.to_thread(self.uplink.start)
        try:
            while not self._stop.is_set():
                await self._write_device_entities()
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            self._stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._write_device_entities()
            await asyncio.to_thread(self.uplink.stop)

    def request_stop(self) -> None:
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():  # stopped: nothing to do
            self.loop.call_soon_threadsafe(self._stop.set)


class BridgeThread:
    """A bridge running in a background thread (tests, the demo, benches)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._thread = threading.Thread(target=self._run, name="sunspec-bridge", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.bridge.run())
        except BaseException as exc:
            self.error = exc
            log.exception("bridge stopped with an error")

    def start(self) -> BridgeThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.bridge.loop is None and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.bridge.request_stop()
        self._thread.join(timeout=15)


__all__ = ["Bridge", "BridgeThread", "DeviceWorker", "OfflineBuffer"]
