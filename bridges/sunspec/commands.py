"""`energytwin inverter ...`: scan a SunSpec device, run the bridge for a site, serve a simulated home."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from .discovery import DeviceMap, NotSunSpec, discover
from .models import ScaleFactorMissing, parse_model, point_defs, scaled
from .reader import decode, read_models, roles
from .transport import Endpoint, ModbusFault, ModbusLink

log = logging.getLogger(__name__)

EXIT_NO_RESPONSE = 2
EXIT_NOT_SUNSPEC = 3

# The main values `scan` shows per model (in the model's own units).
SCAN_POINTS: dict[int, tuple[str, ...]] = {
    1: ("Mn", "Md", "SN", "Vr"),
    101: ("W", "WH", "A", "PhVphA", "Hz", "DCW", "TmpCab", "St"),
    102: ("W", "WH", "A", "PhVphA", "Hz", "DCW", "TmpCab", "St"),
    103: ("W", "WH", "A", "PhVphA", "PhVphB", "PhVphC", "Hz", "DCW", "TmpCab", "St"),
    120: ("DERTyp", "WRtg", "WHRtg"),
    121: ("WMax",),
    123: ("WMaxLimPct", "WMaxLim_Ena", "WMaxLimPct_RvrtTms"),
    124: ("WChaMax", "ChaState", "ChaSt", "StorCtl_Mod", "InWRte", "OutWRte", "InOutWRte_RvrtTms"),
    701: ("W", "TotWhInj", "TotWhAbs", "Hz", "St"),
    702: ("WMaxRtg", "WMax"),
    704: ("WMaxLimPctEna", "WMaxLimPct", "WSetEna", "WSet"),
    713: ("WHRtg", "WHAvail", "SoC", "SoH"),
    714: ("DCW", "DCWhInj"),
    802: ("SoC", "WHRtg", "W", "SoH", "ChaSt", "State"),
}
_UNITS = {"Pct": "%", "% WMax": "%", "%WHRtg": "%", "% AhrRtg": "%", "% WChaMax": "%", " % WChaMax": "%", "% WDisChaMax": "%",
          "WH": "Wh", "Secs": "s", "Tmp": "C"}


def _unit(model_id: int, point: str) -> str:
    units = point_defs(model_id)[point].get("units", "")
    return _UNITS.get(units, units)


def model_values(model_id: int, registers: list[int]) -> list[tuple[str, Any, str]]:
    """(point, value, unit) of the main points of a model, implemented ones only."""
    model = parse_model(model_id, registers)
    shown = []
    for point in SCAN_POINTS.get(model_id, ()):
        if point not in model.points:
            continue
        definition = point_defs(model_id)[point]
        raw = model.points[point].value
        if raw is None:
            continue
        symbols = {s["value"]: s["name"] for s in definition.get("symbols", [])}
        if symbols and definition["type"].startswith("enum"):
            shown.append((point, symbols.get(raw, raw), ""))
            continue
        try:
            value = scaled(model, point)
        except ScaleFactorMissing:
            shown.append((point, "scale factor 0x8000", ""))
            continue
        if isinstance(value, str):
            value = value.strip("\x00 ")
        shown.append((point, value, _unit(model_id, point)))
    return shown


async def scan_device(endpoint: Endpoint, unit: int) -> dict[str, Any]:
    """Discover a device and read its main values; raises ModbusFault / NotSunSpec."""
    link = ModbusLink(endpoint)
    try:
        device_map: DeviceMap = await discover(link, unit)
        models = []
        for found in device_map.models:
            entry: dict[str, Any] = {"id": found.model_id, "name": found.name, "address": found.address,
                                     "length": found.length}
            if found.problem:
                entry["problem"] = found.problem
            else:
                registers = await link.read(found.address, found.length + 2, unit)
                entry["values"] = [{"point": p, "value": v, "unit": u} for p, v, u in model_values(found.model_id,
                                                                                                 registers)]
            models.append(entry)
        decoded = decode(device_map, await read_models(link, device_map))
        return {"endpoint": endpoint.describe(), "unit": unit, "base": device_map.base, "models": models,
                "entities": roles(device_map), "values": decoded.values,
                "problems": [f"{p.kind}: {p.detail}" for p in decoded.problems]}
    finally:
        link.close()


def _format_value(value: Any, unit: str) -> str:
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{value} {unit}".strip()


@click.group()
def inverter() -> None:
    """Inverters and home batteries over Modbus/SunSpec (docs/inverters.md).

    \b
      energytwin inverter simulate --port 5020          a simulated PV + battery home to try things on
      energytwin inverter scan --host 127.0.0.1 --port 5020
      energytwin inverter run -c site.yaml              poll the site's devices into the twin, take commands
    """


@inverter.command()
@click.option("--host", required=True, help="The inverter's (or Modbus gateway's) address.")
@click.option("--port", type=click.IntRange(1, 65535), default=502, show_default=True)
@click.option("--unit", type=click.IntRange(0, 247), default=1, show_default=True, help="Modbus unit id.")
@click.option("--rtu-over-tcp", is_flag=True, help="RTU framing over the TCP socket (serial gateways).")
@click.option("--timeout-s", type=click.FloatRange(0.1, 30), default=2.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the scan as JSON.")
def scan(host: str, port: int, unit: int, rtu_over_tcp: bool, timeout_s: float, as_json: bool) -> None:
    """List every SunSpec model a device has, with its main values in units.

    Exits 2 when nothing answers, 3 when the device answers but is not SunSpec.

    \b
    Example:
      energytwin inverter scan --host 192.168.1.50 --port 502 --unit 1
    """
    endpoint = Endpoint("rtu-over-tcp" if rtu_over_tcp else "tcp", host, port, timeout_s=timeout_s)
    try:
        result = asyncio.run(scan_device(endpoint, unit))
    except ModbusFault as fault:
        click.echo(f"error: nothing answered at {endpoint.describe()} unit {unit} ({fault.detail}).\n"
                   "Check the address and port, the unit id (--unit), that Modbus TCP is enabled on the device, "
                   "and that no other client holds its only connection.", err=True)
        sys.exit(EXIT_NO_RESPONSE)
    except NotSunSpec as exc:
        click.echo(f"error: {endpoint.describe()} unit {unit} answers Modbus but is not a SunSpec device: {exc}.\n"
                   "Enable SunSpec in the inverter's settings, or check the unit id (--unit).", err=True)
        sys.exit(EXIT_NOT_SUNSPEC)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"SunSpec device at {result['endpoint']} unit {unit}, map at {result['base']}, "
               f"{len(result['models'])} models:")
    for model in result["models"]:
        head = f"  {model['id']:>4} {model['name']:<24}"
        if "problem" in model:
            click.echo(f"{head} NOT READ: {model['problem']}")
            continue
        values = " | ".join(f"{v['point']} {_format_value(v['value'], v['unit'])}" for v in model["values"])
        click.echo(f"{head} {values}")
    click.echo(f"entities: {', '.join(result['entities']) or 'none (no inverter or storage model)'}")
    for problem in result["problems"]:
        click.echo(f"problem: {problem}")


@inverter.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="site.yaml: devices, MQTT, agent (docs/inverters.md).")
@click.option("--duration-s", type=float, default=None, help="Stop by itself after this many seconds.")
def run(config_path: Path, duration_s: float | None) -> None:
    """Poll the site's inverters and batteries, publish them to the IoT Agent, execute commands.

    Provisions the devices on the agent when site.yaml has an `agent:` section. Ctrl-C stops it (the offline
    buffer is saved when it has a path).
    """
    from .bridge import Bridge
    from .site import SiteError, load_site

    try:
        site = load_site(config_path)
    except SiteError as exc:
        click.echo(f"error: {config_path} is not a valid site file:\n{exc}", err=True)
        sys.exit(1)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bridges").setLevel(logging.INFO)
    bridge = Bridge(site)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (ValueError, RuntimeError):  # not the main thread (embedded, tests): the caller stops it
                break
        if duration_s is not None:
            loop.call_later(duration_s, stop.set)
        await bridge.run(stop)

    click.echo(f"bridge: {len(site.devices)} device(s), MQTT {site.mqtt.host}:{site.mqtt.port}, "
               f"apikey {site.apikey}, every {site.poll_interval_s:g} s", err=True)
    asyncio.run(main())
    totals: dict[str, int] = {}
    for (name, _device, kind), value in bridge.counters.items():
        key = f"{name}{'{' + kind + '}' if kind else ''}"
        totals[key] = totals.get(key, 0) + value
    click.echo("stopped: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())), err=True)


@inverter.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=5020, show_default=True)
@click.option("--homes", type=click.IntRange(1, 247), default=1, show_default=True,
              help="Homes on the line, unit ids 1..N.")
@click.option("--pv-w", type=float, default=4000.0, show_default=True, help="PV rating per home.")
@click.option("--battery-wh", type=float, default=10000.0, show_default=True)
@click.option("--revert-s", type=int, default=3600, show_default=True,
              help="The simulated inverter's revert timeout for setpoints.")
@click.option("--single-client", is_flag=True, help="Drop a second TCP client, as many inverters do.")
@click.option("--duration-s", type=float, default=None, help="Stop by itself after this many seconds.")
def simulate(host: str, port: int, homes: int, pv_w: float, battery_wh: float, revert_s: int, single_client: bool,
             duration_s: float | None) -> None:
    """Serve simulated SunSpec homes (hybrid PV inverter + battery) on a Modbus TCP port."""
    from .simulator import HomeConfig, SimulatedHome, start_in_thread

    sims = [SimulatedHome(HomeConfig(unit_id=i + 1, pv_rated_w=pv_w, battery_wh=battery_wh, revert_s=revert_s,
                                     single_client=single_client, serial=f"SIM{i + 1:04d}")) for i in range(homes)]
    server = start_in_thread(sims, host, port)
    click.echo(f"{homes} simulated SunSpec home(s) on {host}:{port}, unit ids 1..{homes}; try:\n"
               f"  energytwin inverter scan --host {host} --port {port} --unit 1", err=True)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
