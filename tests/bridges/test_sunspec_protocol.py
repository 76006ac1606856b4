"""The Modbus/SunSpec side over real sockets: discovery, decoding, scale factors, faults (pymodbus both ends)."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus import FramerType

from bridges.sunspec.discovery import NotSunSpec, discover
from bridges.sunspec.models import model_info, point_offset
from bridges.sunspec.reader import decode, read_models, roles
from bridges.sunspec.simulator import HomeConfig
from bridges.sunspec.transport import Endpoint, ModbusFault, ModbusLink
from datamodels.der import BATTERY_TYPE, PV_TYPE


def run(coro):
    return asyncio.run(coro)


async def _scan(endpoint: Endpoint, unit: int = 1):
    link = ModbusLink(endpoint)
    try:
        device_map = await discover(link, unit)
        return device_map, decode(device_map, await read_models(link, device_map))
    finally:
        link.close()


def test_discovery_walks_the_whole_map_and_decodes_pv_and_battery(sunspec_server) -> None:
    server = sunspec_server(HomeConfig(soc_pct=62.5, battery_wh=9600))
    device_map, decoded = run(_scan(Endpoint(port=server.port)))
    assert [m.model_id for m in device_map.models] == [1, 101, 120, 121, 123, 124, 802]
    assert device_map.base == 40000 and all(m.usable for m in device_map.models)
    assert [m.name for m in device_map.models][:2] == ["common", "inverter_single_phase"]
    assert roles(device_map) == [PV_TYPE, BATTERY_TYPE]
    battery = decoded.values[BATTERY_TYPE]
    assert battery["statusPercent"] == pytest.approx(0.625, abs=0.002)  # ChaState 62.5 % with SF -1 -> fraction
    assert battery["energyCapacity"] == 9600
    pv = decoded.values[PV_TYPE]
    home = server.homes[0]
    assert pv["activePower"] == pytest.approx((home.pv_w - home.battery_w) / 1000, abs=0.002)  # W -> kW
    assert pv["totalActiveEnergyExport"] == pytest.approx(home.energy_wh / 1000, abs=0.002)
    assert decoded.problems == []


def test_rtu_framing_over_a_socket(sunspec_server) -> None:
    server = sunspec_server(HomeConfig(unit_id=3, phases=3), framer=FramerType.RTU)
    device_map, decoded = run(_scan(Endpoint("rtu-over-tcp", port=server.port), unit=3))
    assert device_map.find(103) is not None and decoded.values[PV_TYPE]["inverterOperatingState"]


def test_two_units_on_one_line_and_a_wrong_unit_id(sunspec_server) -> None:
    server = sunspec_server(HomeConfig(unit_id=1, battery=False), HomeConfig(unit_id=2))
    first, _ = run(_scan(Endpoint(port=server.port, timeout_s=0.5), unit=1))
    second, _ = run(_scan(Endpoint(port=server.port, timeout_s=0.5), unit=2))
    assert roles(first) == [PV_TYPE] and roles(second) == [PV_TYPE, BATTERY_TYPE]
    with pytest.raises(ModbusFault) as fault:
        run(_scan(Endpoint(port=server.port, timeout_s=0.3), unit=9))
    assert fault.value.kind == "no-response"


def test_nothing_listening_is_no_response() -> None:
    with pytest.raises(ModbusFault, match="no-response"):
        run(_scan(Endpoint(port=1, timeout_s=0.3)))


def test_a_device_without_the_suns_marker_is_not_sunspec(sunspec_server) -> None:
    server = sunspec_server(HomeConfig(sunspec=False))
    with pytest.raises(NotSunSpec, match="no 'SunS' marker"):
        run(_scan(Endpoint(port=server.port)))


def test_scale_factor_0x8000_drops_the_value_and_says_why(sunspec_server) -> None:
    server = sunspec_server(HomeConfig(sf_not_implemented=("W_SF",)))
    _, decoded = run(_scan(Endpoint(port=server.port)))
    assert "activePower" not in decoded.values[PV_TYPE]
    assert "current" in decoded.values[PV_TYPE]  # the rest of the model still reads
    assert {p.kind for p in decoded.problems} == {"sf-not-implemented"}
    assert any("W_SF is 0x8000" in p.detail for p in decoded.problems)


def test_a_model_longer_than_its_definition_is_reported_and_skipped(sunspec_server) -> None:
    server = sunspec_server(HomeConfig(declared_length={123: 30}))
    device_map, decoded = run(_scan(Endpoint(port=server.port)))
    bad = device_map.mismatches()
    assert [m.model_id for m in bad] == [123] and "length 30, the definition has 24" in bad[0].problem
    assert [m.model_id for m in device_map.models][-2:] == [124, 802]  # the walk went on by the declared length
    assert "pvPowerLimitActive" not in decoded.values[PV_TYPE]
    assert decoded.problems[0].kind == "map-mismatch"


def test_writes_to_read_only_points_and_out_of_range_values_are_refused(sunspec_server) -> None:
    server = sunspec_server(HomeConfig())
    home = server.homes[0]

    async def attempt() -> list[str]:
        link = ModbusLink(Endpoint(port=server.port))
        kinds = []
        storage = home.addresses[124]
        for address, value in ((storage + point_offset(124, "ChaState"), 10),  # read-only
                               (storage + point_offset(124, "InWRte"), 5000)):  # 500 % with SF -1
            try:
                await link.write(address, [value], 1)
            except ModbusFault as fault:
                kinds.append(fault.kind)
        link.close()
        return kinds

    assert run(attempt()) == ["exception-2", "exception-3"]
    assert home.writes == 0 and model_info(124).fixed_length == 24


def test_a_der_device_with_models_701_and_713_maps_too(sunspec_server) -> None:
    server = sunspec_server(HomeConfig(flavour="der", soc_pct=80.0, battery_wh=5000))
    device_map, decoded = run(_scan(Endpoint(port=server.port)))
    assert [m.model_id for m in device_map.models] == [1, 701, 702, 704, 713]  # 701: 155 registers, two reads
    assert all(m.usable for m in device_map.models)  # 704's fixed groups (PFWInj ...) are in its length
    assert roles(device_map) == [PV_TYPE, BATTERY_TYPE]
    home = server.homes[0]
    assert decoded.values[PV_TYPE]["activePower"] == pytest.approx((home.pv_w - home.battery_w) / 1000, abs=0.002)
    assert decoded.values[PV_TYPE]["totalActiveEnergyExport"] == pytest.approx(home.energy_wh / 1000, abs=0.002)
    assert decoded.values[BATTERY_TYPE]["statusPercent"] == pytest.approx(0.8, abs=0.01)
    assert decoded.values[BATTERY_TYPE]["energyCapacity"] == 5000
