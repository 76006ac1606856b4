"""`energytwin inverter scan` against a simulated device over TCP; site.yaml errors name the line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bridges.sunspec.commands import EXIT_NO_RESPONSE, EXIT_NOT_SUNSPEC
from bridges.sunspec.simulator import HomeConfig
from bridges.sunspec.site import SiteError, parse_site
from energytwin.cli import cli


def test_scan_lists_models_by_number_and_name_with_values_in_units(sunspec_server) -> None:
    server = sunspec_server(HomeConfig(soc_pct=75.0))
    result = CliRunner().invoke(cli, ["inverter", "scan", "--host", "127.0.0.1", "--port", str(server.port)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:2] == ["101", "inverter_single_phase"] for line in lines)
    storage = next(line for line in lines if line.split()[:2] == ["124", "storage_basic"])
    assert "ChaState 75 %" in storage and "WChaMax 5000 W" in storage
    inverter = next(line for line in lines if line.split()[:1] == ["101"])
    assert " W |" in inverter and "Wh" in inverter
    assert "entities: PhotovoltaicMeasurement, BatteryStatus" in result.output
    as_json = CliRunner().invoke(cli, ["inverter", "scan", "--host", "127.0.0.1", "--port", str(server.port),
                                       "--json"])
    assert [m["id"] for m in json.loads(as_json.output)["models"]] == [1, 101, 120, 121, 123, 124, 802]


def test_scan_exits_non_zero_with_a_reason(sunspec_server) -> None:
    plain = sunspec_server(HomeConfig(sunspec=False))
    result = CliRunner().invoke(cli, ["inverter", "scan", "--host", "127.0.0.1", "--port", str(plain.port)])
    assert result.exit_code == EXIT_NOT_SUNSPEC and "not a SunSpec device" in result.output
    result = CliRunner().invoke(cli, ["inverter", "scan", "--host", "127.0.0.1", "--port", str(plain.port),
                                      "--unit", "9", "--timeout-s", "0.3"])
    assert result.exit_code == EXIT_NO_RESPONSE and "nothing answered" in result.output and "--unit" in result.output


def test_site_errors_name_file_line_and_field() -> None:
    text = ("poll_interval_s: 5\ndevices:\n  - id: home/1\n    port: 502\n  - id: b\n    transport: rtu\n"
            "  - id: off\n")
    with pytest.raises(SiteError) as error:
        parse_site(text, "site.yaml")
    problems = error.value.problems
    assert any(p.startswith("site.yaml:3: devices[0].id") and "MQTT topic" in p for p in problems)
    assert any(p.startswith("site.yaml:5: devices[1]") and "serial_port" in p for p in problems)
    assert any(p.startswith("site.yaml:7: devices[2].id") and "quotes" in p for p in problems)
