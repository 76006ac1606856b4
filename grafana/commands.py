"""`energytwin dashboards`: build the Grafana JSON, layout PNGs and CrateDB init statements from their definitions."""

from __future__ import annotations

import sys
from pathlib import Path

import click

GRAFANA_DIR = Path(__file__).resolve().parent
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
CRATE_INIT = GRAFANA_DIR / "quantumleap" / "crate-tables.jsonl"


def generated_files() -> dict[Path, str]:
    """Every committed file the generator owns, with the text it must have."""
    from grafana import dashboards, quantumleap

    files = {
        DASHBOARD_DIR / f"{spec.file_stem}.json": dashboards.render_json(spec) for spec in dashboards.specs()
    }
    files[CRATE_INIT] = quantumleap.crate_init_jsonl()
    return files


@click.group("dashboards")
def dashboards() -> None:
    """Build the Grafana dashboards (JSON) from their Python definitions.

    \b
    energytwin dashboards build            rewrite grafana/dashboards/*.json and the CrateDB init statements
    energytwin dashboards build --check    exit 1 if a committed file differs from the generator
    energytwin dashboards build --png      also draw each dashboard's layout to grafana/dashboards/*.png
    """


@dashboards.command("build")
@click.option(
    "--check", is_flag=True, help="Compare instead of writing; exit 1 when something is out of date."
)
@click.option("--png", is_flag=True, help="Also render each dashboard's panel layout as a PNG (matplotlib).")
def build(check: bool, png: bool) -> None:
    """Write the dashboards and CrateDB init statements (or check them with --check)."""
    stale = []
    for path, text in generated_files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            click.echo(f"wrote {path.relative_to(GRAFANA_DIR.parent)}")
    if check and stale:
        for path in stale:
            click.echo(
                f"out of date: {path.relative_to(GRAFANA_DIR.parent)} (run: energytwin dashboards build)"
            )
        sys.exit(1)
    if png and not check:
        from grafana import dashboards as definitions
        from grafana.render import render_layout

        for spec in definitions.specs():
            target = DASHBOARD_DIR / f"{spec.file_stem}.png"
            render_layout(definitions.build(spec), target)
            click.echo(f"wrote {target.relative_to(GRAFANA_DIR.parent)}")
    if not stale:
        click.echo("dashboards up to date")
