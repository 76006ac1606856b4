"""`energytwin web`: the live twin page (twin_service.web) with the community's accounts on its views.

The page may not import the community part (same layer, tests/test_layers.py), so this CLI-layer command adds
`--community FILE` (and `--community-month`) to the page's own options and hands the page a
`CommunityAccounts` (energytwin/page_views.py) built from the file. Without a login: this is what
`energytwin web` serves standalone and what the embedded stack runs with `--no-access-control`; with access
control the stack runs energytwin/page_login.py, which takes the same two options.

Where the file comes from, first found wins: `--community FILE` on the command line (the embedded stack passes
its `StackConfig.community` this way, so a page its supervisor restarts keeps it), else the environment variable
`ENERGYTWIN_COMMUNITY` (`ENERGYTWIN_COMMUNITY_MONTH` for the month), else none (the views say so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from twin_service.web.commands import web as page_command

COMMUNITY_ENV = "ENERGYTWIN_COMMUNITY"
COMMUNITY_MONTH_ENV = "ENERGYTWIN_COMMUNITY_MONTH"


def community_options() -> list[click.Option]:
    """--community and --community-month, as the page commands take them (new objects per command)."""
    return [
        click.Option(["--community"], type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     envvar=COMMUNITY_ENV, default=None,
                     help=f"community.yaml (docs/community.md) whose accounts the member, manager and public views "
                          f"show [env {COMMUNITY_ENV}; the option wins]."),
        click.Option(["--community-month"], envvar=COMMUNITY_MONTH_ENV, default=None, metavar="YYYY-MM",
                     help=f"Show that month's accounts (default: this month to the last complete hour) "
                          f"[env {COMMUNITY_MONTH_ENV}]."),
    ]


def community_accounts(community: Path | None, month: str | None) -> Any | None:
    """The page's AccountsSource for the file, or None without one. A malformed month is a usage error here,
    at start, rather than a failure on every view later."""
    if community is None:
        if month is not None:
            raise click.UsageError("--community-month needs --community (or ENERGYTWIN_COMMUNITY)")
        return None
    from energytwin.page_views import CommunityAccounts, month_bounds

    if month is not None:
        try:
            month_bounds(month, "UTC")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--community-month") from None
    return CommunityAccounts(community, month=month)


def _serve(community: Path | None = None, community_month: str | None = None, **options: Any) -> None:
    page_command.callback(accounts=community_accounts(community, community_month), **options)  # type: ignore[misc]


web = click.Command(
    "web", callback=_serve, params=[*community_options(), *page_command.params], help=page_command.help,
    short_help="Serve the live twin page (overview, meters, phasors, events).")


if __name__ == "__main__":
    web.main(prog_name="python -m energytwin.page_web")
