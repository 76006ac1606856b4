"""Every command kind through the whole stack: NGSI-LD PATCH of the command attribute on the twin -> embedded broker
-> IoT Agent (PENDING, `{"<cmd>": value}` on MQTT `/<apikey>/<id>/cmd`) -> bridge -> Modbus write -> read back ->
`/cmdexe` -> agent -> `<cmd>_status` OK / ERROR and `<cmd>_info` on the entity, and the simulated inverter's
register holding the value. A refused write ends ERROR with the device's reason in the twin.

All parts are the real ones on sockets (pymodbus SunSpec simulator, Mosquitto or amqtt, agent, broker, bridge).
"""

from __future__ import annotations

from typing import Any

import pytest

from bridges.sunspec.bridge import Bridge, BridgeThread
from bridges.sunspec.models import scaled
from bridges.sunspec.simulator import HomeConfig
from bridges.sunspec.site import parse_site
from datamodels.context import context_for
from datamodels.der import battery_entity_id, pv_entity_id
from fiware_client import NgsiLdClient
from tests.bridges.conftest import wait
from tests.bridges.test_bridge_twin import site_yaml, twin  # noqa: F401  (fixture)

TENANT = "energytwin"


def _command(client: NgsiLdClient, entity_id: str, name: str, value: Any) -> dict[str, Any]:
    """PATCH the command attribute as any NGSI-LD client would; the entity once the agent wrote the result."""
    entity_type = entity_id.split(":")[2]
    context = context_for(entity_type)[0]
    before = client.get_entity(entity_id, context=context).get(f"{name}_info", {}).get("value")
    client.update_attrs(entity_id, {name: {"type": "Property", "value": value}}, context=context)

    def answered() -> dict[str, Any] | None:
        got = client.get_entity(entity_id, context=context)
        status = got.get(f"{name}_status", {}).get("value")
        info = got.get(f"{name}_info", {}).get("value")
        return got if status in ("OK", "ERROR", "EXPIRED") and info not in (None, "", before) else None

    return wait(answered, 5)


def test_each_command_kind_patched_on_the_twin_reaches_the_register_and_its_result_the_twin(
        twin: dict[str, Any], sunspec_server: Any) -> None:  # noqa: F811
    server = sunspec_server(HomeConfig(unit_id=1), HomeConfig(unit_id=2, refuse_writes=True, serial="SIMREF"))
    home = server.homes[0]
    site = parse_site(site_yaml(twin, [("home-c", server.port, 1), ("home-r", server.port, 2)], "key-c"))
    running = BridgeThread(Bridge(site)).start()
    battery, pv, refusing = battery_entity_id("home-c"), pv_entity_id("home-c"), battery_entity_id("home-r")
    try:
        with NgsiLdClient(twin["broker"], tenant=TENANT) as client:
            def commandable(entity_id: str, name: str) -> bool:
                try:
                    got = client.get_entity(entity_id, context=context_for(entity_id.split(":")[2])[0])
                except Exception:  # noqa: BLE001 (not there yet)
                    return False
                return got.get(f"{name}_status", {}).get("value") == "UNKNOWN" and "dateObserved" in got

            wait(lambda: commandable(battery, "batteryPowerSetpoint") and commandable(pv, "exportLimit")
                 and commandable(refusing, "batteryPowerSetpoint"), 10)

            got = _command(client, battery, "batteryPowerSetpoint", -2500)
            assert got["batteryPowerSetpoint_status"]["value"] == "OK", got
            assert got["batteryPowerSetpoint_info"]["value"] == {"ok": True, "written": -2500.0,
                                                                 "readBack": -2500.0, "unitCode": "WTT"}
            storage = home.models[124]
            assert storage.points["StorCtl_Mod"].value == 2 and scaled(storage, "OutWRte") == pytest.approx(50.0)

            got = _command(client, pv, "pvPowerLimit", 60)
            assert got["pvPowerLimit_status"]["value"] == "OK", got
            assert got["pvPowerLimit_info"]["value"]["readBack"] == 60
            controls = home.models[123]
            assert controls.points["WMaxLim_Ena"].value == 1 and scaled(controls, "WMaxLimPct") == 60

            got = _command(client, pv, "exportLimit", 1000)  # 1 kW of a 4 kW inverter: the lower cap, 25 %
            assert got["exportLimit_status"]["value"] == "OK", got
            assert got["exportLimit_info"]["value"] == {"ok": True, "written": 1000.0, "readBack": 1000.0,
                                                        "unitCode": "WTT"}
            assert controls.points["WMaxLim_Ena"].value == 1 and scaled(controls, "WMaxLimPct") == 25

            got = _command(client, refusing, "batteryPowerSetpoint", 1000)
            assert got["batteryPowerSetpoint_status"]["value"] == "ERROR", got
            info = got["batteryPowerSetpoint_info"]["value"]
            assert info["ok"] is False and "exception-4" in info["error"], info
            assert server.homes[1].models[124].points["StorCtl_Mod"].value == 0  # nothing changed on the device

            got = _command(client, battery, "batteryPowerSetpoint", 99_000)  # beyond WChaMax: refused, not clamped
            assert got["batteryPowerSetpoint_status"]["value"] == "ERROR"
            assert "outside the battery's limits" in got["batteryPowerSetpoint_info"]["value"]["error"]
            assert scaled(storage, "OutWRte") == pytest.approx(50.0)
        assert running.bridge.total("commands_failed_total") == 2
        assert running.bridge.total("commands_total") == 5
    finally:
        running.stop()
