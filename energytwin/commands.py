"""`energytwin up` and `energytwin demo`: the whole product from the command line.

Both install the stop-signal handling (energytwin/shutdown.py) before anything is spawned, so SIGTERM, Ctrl-C or a
closed terminal at any moment, start-up included, stops every service they started; a second start on a busy data
dir or port refuses with the process to stop.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from energytwin.demo import (
    DEFAULT_LOADS,
    DEMO_SITE,
    DemoOptions,
    curl_command,
    demo_device_id,
    fetch_measurement,
    start_demo,
    wait_for_first_update,
)
from energytwin.shutdown import Shutdown, StopRequested, wait
from energytwin.stack import EmbeddedStack, StackBusy, StackConfig
from firmware.emulator.simulated_meter import PhaseLoad
from kernel import ports

console = Console(stderr=True)


def _stack_options(func):
    """Options shared by `up` and `demo`: where state lives and which ports to listen on."""
    options = [
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var"),
                     show_default=True, help="Where the twin's SQLite file, the registry and the logs live."),
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Interface to listen on (0.0.0.0 to let real meters on the LAN connect)."),
        click.option("--mqtt-port", type=int, default=ports.MQTT_PORT, show_default=True),
        click.option("--broker-port", type=int, default=ports.BROKER_PORT, show_default=True,
                     help="NGSI-LD API port (Orion-LD's)."),
        click.option("--agent-port", type=int, default=ports.AGENT_NORTH_PORT, show_default=True,
                     help="IoT Agent provisioning API port."),
        click.option("--quality-port", type=int, default=ports.QUALITY_PORT, show_default=True,
                     help="Power-quality analytics (notifications from the broker, /health); 0 picks a free port."),
        click.option("--web-port", type=int, default=ports.WEB_PORT, show_default=True,
                     help="The live twin page; 0 picks a free port."),
        click.option("--access-port", type=int, default=0, show_default=True,
                     help=f"The access layer (bearer tokens, docs/access.md) in front of the broker; 0 picks a free "
                          f"port (printed); {ports.ACCESS_PORT} is the usual one."),
        click.option("--no-access-control", "no_access", is_flag=True,
                     help="Development only: run without the access layer (logged loudly)."),
        click.option("--mqtt", "mqtt_prefer", type=click.Choice(["auto", "mosquitto", "amqtt"]), default="auto",
                     show_default=True, help="MQTT broker: Mosquitto when installed, else the amqtt fallback."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _config(data_dir: Path, host: str, mqtt_port: int, broker_port: int, agent_port: int, quality_port: int,
            web_port: int, access_port: int, no_access: bool, mqtt_prefer: str) -> StackConfig:
    if no_access:
        console.print("[bold red]ACCESS CONTROL IS OFF (--no-access-control): development only; anyone who "
                      "reaches the broker sees and changes every entity[/bold red]")
    return StackConfig(data_dir=data_dir, host=host, mqtt_port=mqtt_port, broker_port=broker_port,
                       agent_port=agent_port, quality_port=quality_port, web_port=web_port,
                       access=not no_access, access_port=access_port, mqtt_prefer=mqtt_prefer,
                       mqtt_auth=not no_access)


def _serve(shutdown: Shutdown, data_dir: Path, what: str, start, run) -> None:  # type: ignore[no-untyped-def]
    """Start (stopping everything if a signal arrives meanwhile), run until stopped, then stop in order."""
    try:
        with console.status(f"starting {what}…"):
            started = start()
    except StackBusy as exc:
        raise click.ClickException(f"not starting: {exc}") from None
    except StopRequested as stop:
        console.print(f"{stop} during start-up: every service started so far was stopped")
        return
    try:
        run(started)
    except StopRequested:
        pass
    finally:
        with console.status("stopping…"):
            shutdown.complete(started.stop)
        by = f" ({shutdown.signal_name})" if shutdown.signal_name else ""
        console.print(f"stopped{by}; state kept in", str(data_dir.resolve()))


def _page_url(stack: EmbeddedStack) -> str:
    """The live twin page's address as a browser on this machine reaches it (its port may be chosen at start)."""
    cfg = stack.config
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
    return f"http://{host}:{stack.web_url.rsplit(':', 1)[1]}/"


def _print_endpoints(stack: EmbeddedStack) -> None:
    cfg = stack.config
    mqtt_kind = stack.mqtt.kind if stack.mqtt else "?"
    table = Table(title="energytwin embedded stack", show_header=True)
    table.add_column("service")
    table.add_column("address")
    table.add_row(f"MQTT ({mqtt_kind})", f"mqtt://{cfg.host}:{cfg.mqtt_port}  topics /json/<apikey>/<device>/attrs")
    if cfg.mqtt_auth:
        table.add_row("MQTT logins (per device)", f"{cfg.data_dir.resolve()}/access/mqtt/devices.json  "
                      "(energytwin access mqtt --help)")
    broker_note = "  (the IoT Agent's writes; every other client: the access layer)" if stack.access_url else ""
    table.add_row("NGSI-LD broker", f"{cfg.broker_url}/ngsi-ld/v1{broker_note}")
    if stack.access_url:
        table.add_row("access layer (bearer tokens)", f"{stack.access_url}/ngsi-ld/v1  (docs/access.md)")
    else:
        table.add_row("access layer", "[bold red]OFF (--no-access-control)[/bold red]")
    table.add_row("IoT Agent north API", f"{cfg.agent_url}/iot/services, /iot/devices, /metrics")
    if stack.agent_access_url:
        table.add_row("IoT Agent north API (bearer tokens)",
                      f"{stack.agent_access_url}/iot/services, /iot/devices  (control-centre, admin)")
    table.add_row("live twin page", _page_url(stack))
    table.add_row("data and logs", f"{cfg.data_dir.resolve()}  (logs/)")
    console.print(table)


@click.command()
@_stack_options
@click.option("--duration-s", type=float, default=None, help="Stop by itself after this many seconds.")
@click.option("--community", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="ENERGYTWIN_COMMUNITY", help="community.yaml whose accounts the page's views show "
              "(passed to the page, kept across its restarts) [env ENERGYTWIN_COMMUNITY].")
@click.option("--community-month", default=None, metavar="YYYY-MM", envvar="ENERGYTWIN_COMMUNITY_MONTH",
              help="The month the page's accounts show (default: this month so far).")
def up(data_dir, host, mqtt_port, broker_port, agent_port, quality_port, web_port, access_port, no_access,
       mqtt_prefer, duration_s, community, community_month):
    """Run the embedded stack (MQTT, IoT Agent, NGSI-LD broker) on the production ports.

    Meters and provisioning scripts talk to it exactly as to the FIWARE Docker stack. Ctrl-C stops it cleanly;
    running it again with the same --data-dir continues from the same twin.
    """
    shutdown = Shutdown().install()
    cfg = replace(_config(data_dir, host, mqtt_port, broker_port, agent_port, quality_port, web_port, access_port,
                          no_access, mqtt_prefer), community=community, community_month=community_month)

    def start() -> EmbeddedStack:
        stack = EmbeddedStack(cfg, shutdown=shutdown)
        stack.start()
        return stack

    def run(stack: EmbeddedStack) -> None:
        _print_endpoints(stack)
        console.print("Ctrl-C to stop.")
        wait(shutdown, duration_s)

    _serve(shutdown, cfg.data_dir, "the embedded stack", start, run)


def _parse_phase_list(value: str, name: str) -> tuple[float, float, float]:
    try:
        numbers = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{name} must be three numbers separated by commas, e.g. 10,5,8") from None
    if len(numbers) != 3:
        raise click.BadParameter(f"{name} needs one value per phase L1,L2,L3 (got {len(numbers)})")
    return numbers  # type: ignore[return-value]


@click.command()
@_stack_options
@click.option("--meters", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="How many simulated meters (meter-001, meter-002, …).")
@click.option("--homes", type=click.IntRange(0, 247), default=1, show_default=True,
              help="Simulated homes (SunSpec PV inverter + battery, home-001, ...) through the Modbus bridge.")
@click.option("--period-s", type=click.FloatRange(0.1, 3600), default=1.0, show_default=True,
              help="How often each meter publishes.")
@click.option("--voltage-v", default="230,230,230", show_default=True, help="Phase voltages L1,L2,L3.")
@click.option("--current-a", default=",".join(f"{p.current_a:g}" for p in DEFAULT_LOADS), show_default=True,
              help="Phase currents L1,L2,L3.")
@click.option("--angle-deg", default=",".join(f"{p.angle_deg:g}" for p in DEFAULT_LOADS), show_default=True,
              help="Angle from voltage to current per phase: 0 resistive, 30 a lagging motor, 180 exporting PV.")
@click.option("--frequency-hz", type=float, default=50.0, show_default=True)
@click.option("--duration-s", type=float, default=None, help="Stop by itself after this many seconds.")
def demo(data_dir, host, mqtt_port, broker_port, agent_port, quality_port, web_port, access_port, no_access,
         mqtt_prefer, meters, homes, period_s, voltage_v,
         current_a, angle_deg, frequency_hz, duration_s):
    """Run the embedded stack with simulated meters running the real firmware.

    Each meter is the device code from firmware/ade9000_esp32 under MicroPython, reading a register-level ADE9000
    model over SPI and publishing IoT Agent JSON over MQTT. The demo provisions the site, waits for the first
    twin update and prints the curl that shows the live entity. Example, a meter exporting on all phases:

        energytwin demo --current-a 6,6,6 --angle-deg 180,180,180
    """
    volts = _parse_phase_list(voltage_v, "--voltage-v")
    amps = _parse_phase_list(current_a, "--current-a")
    angles = _parse_phase_list(angle_deg, "--angle-deg")
    loads = tuple(PhaseLoad(voltage_v=v, current_a=a, angle_deg=g) for v, a, g in zip(volts, amps, angles))
    shutdown = Shutdown().install()
    cfg = _config(data_dir, host, mqtt_port, broker_port, agent_port, quality_port, web_port, access_port,
                  no_access, mqtt_prefer)
    community = _demo_community(cfg, meters)
    # The page gets it as its --community, with or without access control (one in ENERGYTWIN_COMMUNITY wins).
    cfg = replace(cfg, community=community.page_file())
    options = DemoOptions(stack=cfg, meters=meters, homes=homes, period_s=period_s, frequency_hz=frequency_hz,
                          loads=loads, community=community)

    def run(running) -> None:  # type: ignore[no-untyped-def]
        _print_endpoints(running.stack)
        for line in running.messages:
            console.print(line)
        first = demo_device_id(1)
        with console.status(f"waiting for the first twin update of {first}…"):
            wait_for_first_update(cfg.broker_url, first)
        elapsed = time.monotonic() - running.started_at
        console.print(f"[green]first twin update of {first} {elapsed:.1f} s after start[/green]")
        console.print(f"\nTenant: NGSILD-Tenant: {DEMO_SITE.service}. Look at the live twin with:\n")
        print(curl_command(cfg.broker_url, first), flush=True)
        console.print(f"\nor open the live twin page: [bold]{_page_url(running.stack)}meters/{first}[/bold]")
        _print_credentials(running.stack, meters)
        console.print("\nCtrl-C to stop.")

        def show() -> None:
            entity = fetch_measurement(cfg.broker_url, first)
            if entity is not None:
                console.print(_summary(first, entity))

        wait(shutdown, duration_s, tick=_every(5.0, show))

    _serve(shutdown, cfg.data_dir, f"the stack and {meters} simulated meter(s)",
           lambda: start_demo(options, shutdown=shutdown), run)


def _demo_community(cfg: StackConfig, meters: int):  # type: ignore[no-untyped-def]
    """The demo's community file (energytwin/demo_community.py), written before the page starts so its member and
    manager views have accounts."""
    from energytwin.demo_community import FOLDER, write_demo_community

    with console.status("writing the demo community…"):
        return write_demo_community(cfg.data_dir / FOLDER, [demo_device_id(n + 1) for n in range(meters)],
                                    cfg.broker_url, DEMO_SITE.service)


def _print_credentials(stack: EmbeddedStack, meters: int) -> None:
    """The demo's credentials: a token command per role (one member per meter) and a curl through the PEP."""
    if not stack.access_url:
        return
    data_dir = stack.config.data_dir
    console.print("\nAccess control is on. Bearer tokens (the token is the last line of each command):")
    for role in ("manager", "control-centre", "public"):
        console.print(f"  {role:15s} energytwin users token --data-dir {data_dir} --role {role} | tail -1")
    for n in range(1, min(meters, 5) + 1):
        device = demo_device_id(n)
        console.print(f"  member of {device} energytwin users token --data-dir {data_dir} --role member "
                      f"--member {device} | tail -1")
    console.print(f"  e.g. curl -H \"Authorization: Bearer $(energytwin users token --data-dir {data_dir} --role "
                  f"member --member {demo_device_id(1)} | tail -1)\" -H 'NGSILD-Tenant: {DEMO_SITE.service}' "
                  f"'{stack.access_url}/ngsi-ld/v1/entities?type=ThreePhaseAcMeasurement'")
    _print_page_logins(stack, meters)


def _print_page_logins(stack: EmbeddedStack, meters: int) -> None:
    """One page login per role (fresh secrets at each demo start: only their Argon2id hashes are kept)."""
    from access._users import UserStore

    users = UserStore(stack.config.data_dir)
    logins = [("manager", "manager", None), ("control-centre", "control-centre", None), ("public", "public", None)]
    logins += [(f"member-{demo_device_id(n)}", "member", demo_device_id(n)) for n in range(1, min(meters, 5) + 1)]
    console.print(f"\nThe page asks for a login: {stack.web_url}/login (user / secret)")
    for name, role, device in logins:
        secret = users.add(name, role, devices=[device] if device else None, replace=True)
        console.print(f"  {name:22s} {secret}")


def _every(period_s: float, func):
    last = [0.0]

    def tick() -> None:
        now = time.monotonic()
        if now - last[0] >= period_s:
            last[0] = now
            func()

    return tick


def _summary(device_id: str, entity: dict) -> str:
    """One line an operator can read: voltages, currents, power, frequency, energy."""

    def value(attr: str) -> object:
        prop = entity.get(attr)
        return prop.get("value") if isinstance(prop, dict) else None

    def phases(attr: str, fmt: str) -> str:
        v = value(attr)
        if not isinstance(v, dict):
            return "-"
        return "/".join(format(v[k], fmt) for k in ("L1", "L2", "L3") if k in v)

    observed = (entity.get("phaseVoltage") or {}).get("observedAt", "?")
    return (
        f"{device_id} @ {observed}: V {phases('phaseVoltage', '.1f')} V · I {phases('current', '.2f')} A · "
        f"P {phases('activePower', '.0f')} W · f {value('frequency')} Hz · "
        f"E+ {phases('activeEnergyImport', '.4f')} kWh · E- {phases('activeEnergyExport', '.4f')} kWh"
    )
