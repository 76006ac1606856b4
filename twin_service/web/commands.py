"""`energytwin web`: serve the live twin page for one tenant of an NGSI-LD broker."""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from kernel.ports import WEB_PORT

log = logging.getLogger(__name__)


@click.command()
@click.option("--broker-url", default="http://127.0.0.1:1026", show_default=True,
              help="NGSI-LD broker (Orion-LD or the embedded one), e.g. http://orion:1026")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 to reach the page from other machines).")
@click.option("--port", type=int, default=WEB_PORT, show_default=True)
@click.option("--tenant", default=lambda: os.environ.get("ENERGYTWIN_TENANT", "energytwin"),
              show_default="energytwin, or env ENERGYTWIN_TENANT",
              help="NGSILD-Tenant whose meters the page shows (the IoT Agent's fiware-service).")
@click.option("--notify-url", default=lambda: os.environ.get("ENERGYTWIN_WEB_NOTIFY_URL"),
              help="URL the broker posts notifications to [env ENERGYTWIN_WEB_NOTIFY_URL; default "
                   "http://<host, or this host's name for 0.0.0.0>:<port>/notify].")
@click.option("--history", "history", type=click.Choice(["ngsi-ld", "mintaka", "quantumleap"]),
              default="ngsi-ld", show_default=True, envvar="ENERGYTWIN_HISTORY",
              help="Where the last hour and today's energy are read: the broker's own NGSI-LD temporal API "
                   "(embedded broker), Mintaka (Orion-LD's TRoE history, NGSI-LD temporal API) or QuantumLeap "
                   "[env ENERGYTWIN_HISTORY]. docs/production.md compares them.")
@click.option("--history-url", "--quantumleap-url", "history_url",
              envvar=["ENERGYTWIN_HISTORY_URL", "ENERGYTWIN_QUANTUMLEAP_URL"], default=None,
              help="The history server for --history mintaka|quantumleap, e.g. http://mintaka:8080 or "
                   "http://quantumleap:8668 [env ENERGYTWIN_HISTORY_URL].")
@click.option("--no-notify-key", is_flag=True,
              help="Accept notifications without the per-start secret in the page's endpoint (only for a broker "
                   "that drops query strings from notification endpoints; anyone reaching the port could then "
                   "post readings to every viewer). docs/access.md.")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def web(broker_url: str, host: str, port: int, tenant: str, notify_url: str | None, history: str,
        history_url: str | None, no_notify_key: bool, log_level: str, auth: Any | None = None,
        accounts: Any | None = None, public_guard: Any | None = None) -> None:
    """Serve the live twin page (overview, meters, phasors, events).

    \b
    Example (production compose):
      energytwin web --broker-url http://orion:1026 --host 0.0.0.0 --port 8080
      energytwin web --broker-url http://orion:1026 --history quantumleap --history-url http://quantumleap:8668
      energytwin web --broker-url http://orion:1026 --history mintaka --history-url http://mintaka:8080
    Then open http://<host>:8080/ ; health: GET /health

    This command alone serves the page WITHOUT LOGIN (every visitor sees every meter). `energytwin up`/`demo`
    serve it with the access layer's login (energytwin/page_login.py, docs/web.md "Login"), and with the community's
    accounts on the member, manager and public views when given --community (env ENERGYTWIN_COMMUNITY).
    """
    import uvicorn

    from ._app import WebConfig, create_app
    from ._notify_key import NotifyKeyMiddleware, keyed_endpoint, new_key

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per broker request is noise, not news
    if history != "ngsi-ld" and not history_url:
        example = "http://quantumleap:8668" if history == "quantumleap" else "http://mintaka:8080"
        raise click.UsageError(f"--history {history} needs --history-url (e.g. {example})")
    config = WebConfig(broker_url=broker_url, tenant=tenant or None, history=history,
                       history_url=history_url, host=host, port=port, notify_url=notify_url, auth=auth,
                       accounts=accounts, public_guard=public_guard)
    app: Any = create_app(config)
    shown = config.endpoint()
    if no_notify_key:
        log.warning("notifications accepted WITHOUT a key (--no-notify-key): anyone who reaches port %d can post "
                    "readings that every viewer's live stream shows", port)
    else:
        # A fresh secret each start in the endpoint the page subscribes with (twin_service/web/_notify_key.py).
        key = new_key()
        config.notify_url = keyed_endpoint(config.endpoint(), key)
        app = NotifyKeyMiddleware(app, key)
        shown += "?key=<secret of this start>"
    log.info("live twin page on http://%s:%d/ for tenant %s of %s (notifications at %s)", host, port, tenant,
             broker_url, shown)
    # Open event streams never end by themselves: give them one second to close on Ctrl-C / SIGTERM.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=1)
