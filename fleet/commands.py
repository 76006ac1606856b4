"""`energytwin fleet …`: steer home batteries toward the fleet's mean state of charge, and compare strategies."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

console = Console()
if not console.is_terminal:
    console = Console(width=132)  # logs and CI: the table is wider than the default 80 columns


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def fleet() -> None:
    """Home batteries as one community store: every battery steers toward the fleet's mean state of charge.

    \b
    Examples:
      energytwin fleet simulate --homes 20 --days 365 --json fleet.json --chart fleet.png
      energytwin fleet run --broker http://127.0.0.1:1026 --tenant energytwin

    `simulate` compares, on the same simulated year, no batteries, each battery alone (greedy
    self-consumption), the mean-SoC rule and the LP optimum with perfect foresight (HiGHS).
    `run` is the live controller: it subscribes to the batteries' twin entities and sends setpoint
    commands through the twin. docs/batteries.md explains the rule, the metrics and the limits of the model.
    """


@fleet.command()
@click.option("--homes", "n_homes", type=click.IntRange(1, 500), default=20, show_default=True,
              help="Number of simulated homes, each with a battery (some without PV).")
@click.option("--days", type=click.IntRange(1, 365), default=365, show_default=True,
              help="Days simulated from 1 January, hourly.")
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the homes, loads and weather.")
@click.option("--strategies", default="none,greedy,mean_soc,lp", show_default=True,
              help="Comma-separated subset of none, greedy, mean_soc, lp.")
@click.option("--export-limit-kw", type=click.FloatRange(min=0), default=None,
              help="Per-home feed-in limit; PV above it is curtailed (0 = zero export: a full battery stops PV).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write {\"strategies\": {name: metrics}} here.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the comparison chart (PNG) here.")
def simulate(n_homes: int, days: int, seed: int, strategies: str, export_limit_kw: float | None,
             json_path: Path | None, chart_path: Path | None) -> None:
    """Compare battery strategies on one simulated year of N homes (PV from pvlib, loads simulated)."""
    from fleet.homes import simulated_homes
    from fleet.simulate import STRATEGIES, simulate_fleet

    chosen = tuple(s.strip() for s in strategies.split(",") if s.strip())
    bad = [s for s in chosen if s not in STRATEGIES]
    if bad or not chosen:
        raise click.BadParameter(f"unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(STRATEGIES)}",
                                 param_hint="--strategies")
    with console.status(f"simulating {n_homes} homes x {days} days ({', '.join(chosen)}) …"):
        homes = simulated_homes(n_homes, days, seed=seed)
        try:
            results = simulate_fleet(homes, chosen, export_limit_kw=export_limit_kw)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
    table = Table(title=f"{n_homes} homes, {days} days, hourly (seed {seed})", title_justify="left")
    for header in ("strategy", "self-cons.", "self-suff.", "peak import kW", "peak export kW", "SoC spread",
                   "cycles", "curtailed kWh", "tax base kWh", "time s"):
        table.add_column(header, justify="left" if header == "strategy" else "right")
    for name, r in results.items():
        table.add_row(name, f"{r.self_consumption:.1%}", f"{r.self_sufficiency:.1%}", f"{r.peak_import_kw:.1f}",
                      f"{r.peak_export_kw:.1f}", f"{r.soc_spread:.1%}", f"{r.cycles:.0f}",
                      f"{r.curtailed_kwh:.0f}", f"{r.energy_tax_base_kwh:.0f}", f"{r.seconds:.1f}")
    console.print(table)
    if "none" in results:
        base = results["none"].self_consumption
        for name in ("greedy", "mean_soc", "lp"):
            if name in results:
                console.print(f"  {name:9s} self-consumption gain over no batteries: "
                              f"{(results[name].self_consumption - base) * 100:+.1f} points")
    if json_path is not None:
        payload = {"homes": n_homes, "days": days, "seed": seed, "export_limit_kw": export_limit_kw,
                   "strategies": {name: r.as_dict() for name, r in results.items()}}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {json_path}")
    if chart_path is not None:
        from fleet.chart import draw_strategies

        draw_strategies(results, chart_path, f"{n_homes} homes, {days} days")
        console.print(f"wrote {chart_path}")


@fleet.command(context_settings={"show_default": True})
@click.option("--broker", "broker_url", default="http://127.0.0.1:1026", envvar="ENERGYTWIN_BROKER_URL",
              help="The NGSI-LD broker (or the access layer in front of it: add --token / --token-file).")
@click.option("--tenant", default="energytwin", help="NGSILD-Tenant (the IoT Agent's fiware-service).")
@click.option("--period", "period_s", type=click.FloatRange(min=0.1), default=60.0,
              help="Seconds between cycles; each cycle sends every live battery its setpoint.")
@click.option("--stale-periods", type=click.IntRange(min=1), default=3,
              help="A battery whose last state of charge is older than this many periods leaves the mean.")
@click.option("--resync-periods", type=click.IntRange(min=1), default=5,
              help="Query every battery again every this many periods (covers lost notifications).")
@click.option("--reserve", type=click.FloatRange(0, 0.9), default=0.05,
              help="State-of-charge fraction the fleet never uses (setpoints never discharge below it).")
@click.option("--fleet-power-w", type=float, default=0.0,
              help="What the fleet as a whole should do, W (+ store, - deliver); 0: only balance toward the mean.")
@click.option("--gain-per-h", type=click.FloatRange(min=0), default=0.5,
              help="Share of a battery's distance to the mean closed per hour (before its power limits).")
@click.option("--deadband", type=click.FloatRange(0, 0.5), default=0.02,
              help="SoC fraction around the mean within which a battery is not balanced.")
@click.option("--listen", "listen", default="127.0.0.1:0",
              help="HOST:PORT for the notification endpoint (POST /notify, GET /health, GET /metrics); port 0: free.")
@click.option("--notify-url", default=None,
              help="The URL the broker notifies, when it is not http://<listen>/notify (containers, NAT).")
@click.option("--token", envvar="ENERGYTWIN_TOKEN", default=None, show_default=False,
              help="Bearer token for the access layer (a control-centre role: it writes commands).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding the token on its last line (re-read when it changes: a rotated token).")
@click.option("--send-concurrency", type=click.IntRange(1, 64), default=8,
              help="Commands in flight at once (one PATCH per battery; a large fleet needs several).")
@click.option("--no-meters", is_flag=True,
              help="Do not read the batteries' tied grid meters (refMeter) to store the community's surplus.")
@click.option("--dry-run", is_flag=True, help="Compute and log each cycle's setpoints; send nothing.")
@click.option("--no-publish", is_flag=True,
              help="Do not write fleetMeanStatusPercent / fleetControlState on the battery entities.")
@click.option("--no-release", is_flag=True,
              help="On stop, leave the last setpoints held (default: release every battery back to auto).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info")
def run(broker_url: str, tenant: str, period_s: float, stale_periods: int, resync_periods: int, reserve: float,
        fleet_power_w: float, gain_per_h: float, deadband: float, listen: str, notify_url: str | None,
        token: str | None, token_file: Path | None, send_concurrency: int, no_meters: bool,
        dry_run: bool, no_publish: bool, no_release: bool, log_level: str) -> None:
    """The live controller: steer every battery in the twin toward the fleet's mean state of charge.

    \b
    It subscribes to the tenant's BatteryStatus entities (state of charge `statusPercent` 0-1, `energyCapacity`
    Wh, `maxChargePower` W) and PhotovoltaicMeasurement entities, notified on its own HTTP endpoint, and queries
    them at start and every --resync-periods. Each --period it runs the mean-SoC rule and sends every live
    battery `batteryPowerSetpoint` (W, + charge / - discharge) as an NGSI-LD PATCH on its entity; the IoT Agent
    that registered the command takes it to the battery (the SunSpec bridge: energytwin inverter run).
    \b
    Safe by construction: a setpoint never leaves the battery's reported limits, a battery without them gets no
    command, a battery silent for --stale-periods leaves the mean (logged, counted in /metrics), the broker
    down means no commands and retries with backoff, a restart reuses its subscriptions.
    \b
    Examples:
      energytwin fleet run --period 60
      energytwin fleet run --broker http://127.0.0.1:1027 \\
          --token "$(energytwin users token --role control-centre | tail -1)"
      energytwin fleet run --dry-run --period 10 --log-level debug
    """
    import logging
    import signal
    import threading

    from fleet.service import ControllerConfig, FleetController

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {listen!r}", param_hint="--listen")
    if token and token_file:
        raise click.BadParameter("give --token or --token-file, not both", param_hint="--token")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = ControllerConfig(broker_url, tenant or None, period_s=period_s, stale_periods=stale_periods,
                              resync_periods=resync_periods, reserve=reserve, fleet_power_w=fleet_power_w,
                              gain_per_h=gain_per_h, deadband=deadband,
                              listen_host=host, listen_port=int(port), notify_url=notify_url, token=token,
                              token_file=token_file, publish=not no_publish, release_on_exit=not no_release,
                              dry_run=dry_run, send_concurrency=send_concurrency,
                              use_meters=not no_meters)
    try:
        controller = FleetController(config).start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc}") from None
    console.print(f"fleet controller: {broker_url} tenant {tenant}, every {period_s:g} s; "
                  f"health http://{host}:{controller.port}/health (Ctrl-C stops)")
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()
    m = controller.metrics
    console.print(f"stopped: {m.cycles} cycles, {m.commands_sent} commands sent, {m.commands_refused} refused, "
                  f"{m.cycles_skipped} cycles skipped")
