"""`energytwin quality run` (the analytics service) and `energytwin quality report` (weekly EN 50160 report)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from . import QUALITY_PORT
from ._limits import SiteConfigError, load_site_limits

log = logging.getLogger(__name__)


def _limits(site_config: Path | None):
    try:
        return load_site_limits(site_config)
    except SiteConfigError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group()
def quality() -> None:
    """Power-quality analytics: EN 50160 compliance, events, weekly report."""


@quality.command()
@click.option("--broker-url", required=True, help="NGSI-LD broker, e.g. http://orion:1026")
@click.option("--tenant", default=None, help="NGSILD-Tenant to watch and write to.")
@click.option("--listen-host", default="127.0.0.1", show_default=True)
@click.option("--listen-port", type=int, default=QUALITY_PORT, show_default=True)
@click.option("--notify-url", default=lambda: os.environ.get("ENERGYTWIN_QUALITY_NOTIFY_URL"),
              help="URL the broker posts notifications to [env ENERGYTWIN_QUALITY_NOTIFY_URL; default "
                   "http://<listen host, or this host's name for 0.0.0.0>:<port>/notify].")
@click.option("--site-config", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="TOML file with a [quality] table overriding EN 50160 defaults (docs/quality.md).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keeps a copy of the open records, used if the broker cannot answer at start.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def run(broker_url: str, tenant: str | None, listen_host: str, listen_port: int, notify_url: str | None,
        site_config: Path | None, data_dir: Path | None, log_level: str) -> None:
    """Subscribe to the meters' measurements and write an Anomaly for every EN 50160 breach.

    \b
    Example (production compose):
      energytwin quality run --broker-url http://orion:1026 --tenant energytwin \\
          --listen-host 0.0.0.0 --listen-port 8070
    Health: GET http://<host>:8070/health
    """
    import uvicorn

    from kernel.gc_tuning import tune_for_service

    from ._service import ServiceConfig, create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServiceConfig(broker_url=broker_url, tenant=tenant, listen_host=listen_host, listen_port=listen_port,
                           notify_url=notify_url, limits=_limits(site_config), data_dir=data_dir)
    log.info("power-quality analytics on http://%s:%d (notifications at %s), broker %s, tenant %s",
             listen_host, listen_port, config.endpoint(), broker_url, tenant)
    app = create_app(config)
    tune_for_service()  # a notification per meter and second: the cyclic collector out of the way (kernel/gc_tuning.py)
    uvicorn.run(app, host=listen_host, port=listen_port, log_level=log_level, access_log=False)


@quality.command()
@click.option("--meter", "device_id", required=True, help="Device id, e.g. meter-001.")
@click.option("--week", required=True, help="ISO week (2026-W05) or the start date of a 7-day window.")
@click.option("--broker-url", default="http://127.0.0.1:1026", show_default=True)
@click.option("--tenant", default="energytwin", show_default=True)
@click.option("--site-config", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--history", type=click.Choice(["ngsi-ld", "mintaka", "quantumleap"]), default="ngsi-ld",
              show_default=True, envvar="ENERGYTWIN_HISTORY",
              help="Where the week's readings are read: the broker's own temporal API (embedded stack), Mintaka "
                   "(Orion-LD's TRoE) or QuantumLeap [env ENERGYTWIN_HISTORY]; docs/production.md.")
@click.option("--history-url", default=None, envvar="ENERGYTWIN_HISTORY_URL",
              help="The history server for --history mintaka|quantumleap, e.g. http://127.0.0.1:9090 (Mintaka) "
                   "or http://127.0.0.1:8668 (QuantumLeap) [env ENERGYTWIN_HISTORY_URL].")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write [default: quality-<meter>-<week>.png].")
def report(device_id: str, week: str, broker_url: str, tenant: str, site_config: Path | None, history: str,
           history_url: str | None, chart: Path | None) -> None:
    """Print the EN 50160 compliance table of one meter for one week and write a PNG chart.

    \b
    Examples:
      energytwin quality report --meter meter-001 --week 2026-W05
      energytwin quality report --meter meter-001 --week 2026-W05 --history quantumleap \\
          --history-url http://127.0.0.1:8668
    """
    if history != "ngsi-ld" and not history_url:
        raise click.UsageError(f"--history {history} needs --history-url (docs/production.md, History)")
    from fiware_client import BrokerError

    from ._report import build_report, draw_chart, fetch_readings, parse_week

    try:
        start, end = parse_week(week)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--week") from exc
    limits = _limits(site_config)
    try:
        readings = fetch_readings(broker_url, tenant, device_id, start, end, history, history_url)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    weekly = build_report(readings, device_id, start, end, limits)
    click.echo(weekly.text())
    path = chart or Path(f"quality-{device_id}-{start:%Y-%m-%d}.png")
    draw_chart(weekly, path)
    click.echo(f"Chart: {path}")
