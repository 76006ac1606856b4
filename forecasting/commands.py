"""`energytwin forecast ...`: score the forecasters on held-out data."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("forecast")
def forecast() -> None:
    """24-hour forecasts of PV, load and price, scored against persistence and seasonal-naive baselines.

    \b
    energytwin forecast score                     # table on the held-out data the project ships or simulates
    energytwin forecast score --json scores.json --chart scores.png
    energytwin forecast score --quick             # statistical models only (no gradient boosting), ~10 s
    energytwin forecast run --community community.yaml --weather-csv weather.csv --keep-days 30
    energytwin forecast purge --keep-days 7       # delete archived forecasts older than 7 days
    """


@forecast.command("score")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the scores here.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("forecast-scores.png"), show_default=True, help="Monthly MAE chart (PNG).")
@click.option("--quick", is_flag=True, help="Skip the gradient-boosting candidate for load and price.")
def score(json_path: Path | None, chart_path: Path, quick: bool) -> None:
    """Walk-forward day-ahead scores on held-out data; a model that does not beat both baselines is not used.

    Data (all offline, see docs/forecasts.md): PV on pvlib's Greensboro TMY3 year, load on the project's
    simulated households (2026 held out), price on a SYNTHETIC series (no market data ships here).
    """
    from rich.console import Console
    from rich.table import Table

    from forecasting.scoring import chart, score_all

    scores = score_all(quick=quick)
    table = Table(title="Day-ahead forecasts on held-out data (walk-forward, issued 00:00 standard time)")
    for col in ("target", "held out", "MAE", "RMSE", "MAE pers.", "MAE s-naive", "skill vs pers.",
                "skill vs s-naive", "used"):
        table.add_column(col)
    for name, s in scores.items():
        table.add_row(name, s.held_out, f"{s.mae:.3f} {s.unit}", f"{s.rmse:.3f}", f"{s.mae_persistence:.3f}",
                      f"{s.mae_seasonal_naive:.3f}", f"{s.verdict.skill_vs_persistence:+.1%}",
                      f"{s.verdict.skill_vs_seasonal_naive:+.1%}", s.verdict.use)
    console = Console()
    console.print(table)
    for name, s in scores.items():
        console.print(f"  {s.verdict.describe(name)} -- {s.model}")
        if s.comparison:
            console.print(f"    model choice on validation: {s.comparison}")
    chart(scores, chart_path)
    console.print(f"chart: {chart_path}")
    if json_path:
        json_path.write_text(json.dumps({k: v.as_json() for k, v in scores.items()}, indent=2) + "\n")
        console.print(f"scores: {json_path}")
