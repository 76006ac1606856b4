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
