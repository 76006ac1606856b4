"""Each home's grid meter tied to its battery (refMeter), and the live controller storing the metered surplus."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridges.sunspec.provision import device_body
from bridges.sunspec.site import GeoPoint, parse_site
from fleet.controller import FleetState

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def battery(home: str, soc: float, power_w: float = 0.0, meter: str | None = None) -> dict:
    entity = {"id": f"urn:ngsi-ld:BatteryStatus:{home}", "type": "BatteryStatus",
              "statusPercent": {"type": "Property", "value": soc, "observedAt": iso(NOW)},
              "energyCapacity": {"type": "Property", "value": 10_000},
              "maxChargePower": {"type": "Property", "value": 5_000},
              "batteryPower": {"type": "Property", "value": power_w, "observedAt": iso(NOW)}}
    if meter:
        entity["refMeter"] = {"type": "Relationship", "object": f"urn:ngsi-ld:ThreePhaseAcMeasurement:{meter}"}
    return entity


def meter(device: str, net_w: float, at: float = NOW) -> dict:
    return {"id": f"urn:ngsi-ld:ThreePhaseAcMeasurement:{device}", "type": "ThreePhaseAcMeasurement",
            "totalActivePower": {"type": "Property", "value": net_w, "unitCode": "WTT", "observedAt": iso(at)}}


def test_site_meter_becomes_the_battery_entitys_refmeter():
    site = parse_site("agent: {url: http://127.0.0.1:4041}\nbroker: {url: http://127.0.0.1:1026}\n"
                      "devices:\n  - {id: home-001, meter: meter-001}\n  - {id: home-002}\n")
    assert [d.meter for d in site.devices] == ["meter-001", None]
    here = GeoPoint(type="Point", coordinates=[-3.7, 40.4])
    body = device_body("home-001", "BatteryStatus", "k", here, meter=site.devices[0].meter)
    ref = [a for a in body["static_attributes"] if a["name"] == "refMeter"]
    assert ref == [{"name": "refMeter", "type": "Relationship",
                    "value": "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"}]
    assert not [a for a in device_body("home-002", "BatteryStatus", "k", here)["static_attributes"]
                if a["name"] == "refMeter"]
    assert not [a for a in device_body("home-001", "PhotovoltaicMeasurement", "k", here, meter="m")
                ["static_attributes"] if a["name"] == "refMeter"]


def test_metered_surplus_is_stored_by_the_fleet_and_stale_or_untied_meters_are_ignored():
    state = FleetState(period_s=900, deadband=0.0)
    # Two equal batteries at the same SoC: home a exports 3 kW while its battery charges 1 kW (load - PV =
    # -4 kW), home b imports 1 kW with an idle battery (+1 kW): the community's surplus is 3 kW.
    for entity in (battery("a", 0.5, 1000, "m-a"), battery("b", 0.5, 0, "m-b"), meter("m-a", -3000),
                   meter("m-b", 1000)):
        assert state.take(entity) is None
    assert state.meter_ids == ["urn:ngsi-ld:ThreePhaseAcMeasurement:m-a", "urn:ngsi-ld:ThreePhaseAcMeasurement:m-b"]
    cycle = state.cycle(NOW)
    assert cycle.metered_homes == 2 and cycle.fleet_power_w == pytest.approx(3000)
    assert {c.entity_id[-1]: c.power_w for c in cycle.commands} == {"a": 1500, "b": 1500}  # shared by capacity

    # A deficit is covered: both homes import.
    state.take(meter("m-a", 2500, NOW + 1))
    state.take(meter("m-b", 500, NOW + 1))
    cycle = state.cycle(NOW + 1)
    assert cycle.fleet_power_w == pytest.approx(1000 - 3000) and sum(c.power_w for c in cycle.commands) == -2000

    # An old meter reading (an offline replay) never rewinds; a meter silent past stale_periods drops out.
    state.take(meter("m-b", -9000, NOW - 60))
    assert state.meters["urn:ngsi-ld:ThreePhaseAcMeasurement:m-b"][0] == 500
    later = NOW + 3 * 900 + 10
    state.take(battery("a", 0.5, 1000, "m-a") | {"statusPercent": {"type": "Property", "value": 0.5,
                                                                   "observedAt": iso(later)}})
    state.take(battery("b", 0.5, 0, "m-b") | {"statusPercent": {"type": "Property", "value": 0.5,
                                                                "observedAt": iso(later)}})
    state.take(meter("m-a", -1000, later))
    cycle = state.cycle(later)
    assert cycle.metered_homes == 1 and cycle.fleet_power_w == pytest.approx(1000 + 1000)

    # A meter without observedAt is refused with the reason; batteries without refMeter add nothing.
    assert "no totalActivePower" in state.take({"id": "urn:ngsi-ld:ThreePhaseAcMeasurement:x",
                                                "type": "ThreePhaseAcMeasurement",
                                                "totalActivePower": {"type": "Property", "value": 5}})
    plain = FleetState(period_s=900, deadband=0.0)
    plain.take(battery("c", 0.5))
    plain.take(meter("m-a", -3000))
    assert plain.cycle(NOW).fleet_power_w == 0 and plain.cycle(NOW).metered_homes == 0
    off = FleetState(period_s=900, deadband=0.0, use_meters=False)
    off.take(battery("a", 0.5, 0, "m-a"))
    off.take(meter("m-a", -3000))
    assert off.cycle(NOW).fleet_power_w == 0


def test_live_controller_reads_the_tied_meters_from_the_twin(tmp_path):
    import time

    from fiware_client import NgsiLdClient
    from fleet.service import ControllerConfig, FleetController
    from tests.fleet.test_service import start_broker
    from tests.polling import wait_until
    from twin_service.mqtt_server import free_port

    port = free_port()
    proc = start_broker(port, tmp_path / "broker")
    url, now = f"http://127.0.0.1:{port}", time.time()
    try:
        with NgsiLdClient(url, tenant="fleet-meters") as client:
            entities = [battery("a", 0.5, 0, "m-a"), battery("b", 0.5, 0, "m-b")]
            for entity in entities:
                entity["statusPercent"]["observedAt"] = iso(now)
                entity["batteryPowerSetpoint"] = {"type": "Property", "value": 0}
            client.upsert_entities(entities)
            client.upsert_entities([meter("m-a", -2000, now), meter("m-b", 0, now)])
            controller = FleetController(ControllerConfig(url, "fleet-meters", period_s=0.5, publish=False,
                                                          release_on_exit=False)).start()
            try:
                def stored() -> bool:
                    values = [client.get_entity(e["id"])["batteryPowerSetpoint"]["value"] for e in entities]
                    return values == [1000, 1000]  # the 2 kW exported by home a, shared by capacity

                wait_until(stored, 10, "the metered surplus stored by both batteries")
                assert controller.health()["meteredHomes"] == 2
            finally:
                controller.stop()
    finally:
        proc.terminate()
        proc.wait(10)
