"""The demo's simulated homes: a hybrid PV inverter + battery per home, read and commanded by the SunSpec bridge.

Each home is a SunSpec device served by pymodbus (bridges/sunspec/simulator.py): one Modbus TCP server, unit ids
1..N, as homes behind one Modbus gateway. The bridge polls them exactly as it would real inverters, from a
site.yaml written under the data directory (so the operator can read it, or run `energytwin inverter run -c` on
it against the same stack), publishes through MQTT to the agent, and takes commands on `/cmd`.

Hook for other demo parts (the fleet controller starts when there are 2 homes or more): the running part is
`running.part("homes")`; `battery_entity_ids` lists the BatteryStatus entities the bridge keeps current and
accepts `batteryPowerSetpoint` on, `site_path` is the bridge's site.yaml.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bridges.sunspec.bridge import Bridge, BridgeThread
from bridges.sunspec.simulator import HomeConfig, RunningServer, SimulatedHome, free_port, start_in_thread
from bridges.sunspec.site import SiteConfig
from datamodels.context import BATTERY_CONTEXT
from datamodels.der import BATTERY_TYPE, PV_TYPE, agent_device_id, battery_entity_id, pv_entity_id
from fiware_client import FiwareError, NgsiLdClient, NotFound, RetryPolicy

log = logging.getLogger(__name__)

SUNSPEC_APIKEY = "energytwin-sunspec"
GATEWAY_USER = "energytwin-sunspec-bridge"


def home_id(index: int) -> str:
    """home-001, home-002, ..."""
    return f"home-{index:03d}"


@dataclass
class SimulatedHomes:
    """A demo part: N simulated SunSpec homes and the bridge that brings them into the twin."""

    count: int = 1
    poll_interval_s: float = 1.0
    name: str = "homes"
    server: RunningServer | None = None
    bridge: BridgeThread | None = None
    site_path: Path | None = None
    home_ids: list[str] = field(default_factory=list)

    @property
    def battery_entity_ids(self) -> list[str]:
        return [battery_entity_id(h) for h in self.home_ids]

    @property
    def pv_entity_ids(self) -> list[str]:
        return [pv_entity_id(h) for h in self.home_ids]

    def site(self, ctx, modbus_port: int) -> SiteConfig:
        stack = ctx.options.stack
        pairs = [(SUNSPEC_APIKEY, agent_device_id(h, t)) for h in self.home_ids for t in (PV_TYPE, BATTERY_TYPE)]
        login = ctx.mqtt_gateway_login(GATEWAY_USER, pairs) if hasattr(ctx, "mqtt_gateway_login") else None
        mqtt = {"host": stack.host, "port": stack.mqtt_port}
        if login is not None:
            mqtt.update(username=login[0], password=login[1])
        return SiteConfig.model_validate({
            "mqtt": mqtt,
            "agent": {"url": ctx.agent_url, "service": ctx.site.service, "service_path": ctx.site.service_path},
            "broker": {"url": ctx.broker_url},
            "apikey": SUNSPEC_APIKEY,
            "poll_interval_s": self.poll_interval_s,
            "buffer": {"path": str(stack.data_dir / "inverters" / "buffer.json")},
            "devices": [{"id": h, "host": "127.0.0.1", "port": modbus_port, "unit": i + 1}
                        for i, h in enumerate(self.home_ids)],
        })

    def start(self, ctx) -> list[str]:
        self.home_ids = [home_id(i + 1) for i in range(self.count)]
        homes = [SimulatedHome(HomeConfig(unit_id=i + 1, serial=f"SIM{i + 1:04d}", soc_pct=30.0 + (i * 37) % 60,
                                          pv_rated_w=3000.0 + 500 * (i % 5)))
                 for i in range(self.count)]
        port = free_port()
        self.server = start_in_thread(homes, "127.0.0.1", port)
        site = self.site(ctx, port)
        self.site_path = ctx.options.stack.data_dir / "inverters" / "site.yaml"
        self.site_path.parent.mkdir(parents=True, exist_ok=True)
        data = site.model_dump(mode="json", exclude_none=True)
        if data["mqtt"].get("password"):
            data["mqtt"]["password"] = "(the bridge's MQTT secret: energytwin access mqtt)"
        self.site_path.write_text("# written by energytwin demo: the simulated homes' bridge\n"
                                  + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        self.bridge = BridgeThread(Bridge(site, client_id="energytwin-demo-sunspec")).start()
        return [(f"simulated homes: {self.count} (PV inverter + battery, SunSpec) on Modbus TCP 127.0.0.1:{port}, "
                f"unit ids 1..{self.count}; bridge config {self.site_path}"),
                f"  try: energytwin inverter scan --host 127.0.0.1 --port {port} --unit 1",
                f"  batteries: {', '.join(self.battery_entity_ids[:3])}{' ...' if self.count > 3 else ''}"]

    def wait_for_batteries(self, broker_url: str, tenant: str, timeout_s: float = 30.0) -> bool:
        """True once every home's BatteryStatus is in the twin."""
        deadline = time.monotonic() + timeout_s
        missing = set(self.battery_entity_ids)
        with NgsiLdClient(broker_url, tenant, context=BATTERY_CONTEXT, timeout=2,
                          retry=RetryPolicy(attempts=1)) as broker:
            while missing and time.monotonic() < deadline:
                for entity_id in list(missing):
                    try:
                        broker.get_entity(entity_id)
                        missing.discard(entity_id)
                    except (NotFound, FiwareError):
                        pass
                time.sleep(0.2)
        return not missing

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        if self.server is not None:
            self.server.stop()
