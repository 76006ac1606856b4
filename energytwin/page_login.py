"""The live twin page with the access layer's login: `python -m energytwin.page_login --data-dir DIR <web options>`.

The page (twin_service.web) and the access layer (access/) are parts of one layer and do not import each other;
the CLI wires them: the page gets a `PageAuth` whose `verify` is the local issuer's token verifier and whose
`login` checks a user of `energytwin users add` (Argon2id) and issues that user's token. The embedded stack
runs the page this way whenever access control is on.
"""

from __future__ import annotations

from pathlib import Path

import click

from access import LocalIssuer
from access._disclosure import PUBLIC_LEDGER, PublicRelease
from access._users import UserStore
from twin_service.web import PageAuth
from twin_service.web.commands import web

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def page_auth(data_dir: Path, *, secure_cookie: bool = True) -> PageAuth:
    issuer = LocalIssuer(Path(data_dir))
    users = UserStore(Path(data_dir))

    def login(name: str, secret: str) -> str:
        user = users.check(name, secret)
        return issuer.token(user.name, user.role, member=user.member, devices=user.devices, cups=user.cups)

    return PageAuth(verify=issuer.verifier().verify, login=login, secure_cookie=secure_cookie)


def _serve(data_dir: Path, community: Path | None = None, community_month: str | None = None,
           **options: object) -> None:
    # Secure cookies need https; on loopback the page is plain http (a browser still sends the cookie only to it).
    auth = page_auth(data_dir, secure_cookie=options.get("host") not in LOOPBACK)
    accounts = None
    if community is not None:  # the views' kWh, EUR, CO2 and coefficients (energytwin/page_views.py)
        from energytwin.page_views import CommunityAccounts

        accounts = CommunityAccounts(community, month=community_month)
    # The public view's differencing defence; its ledger beside the issuer's keys (docs/access.md).
    guard = PublicRelease(Path(data_dir) / "access" / PUBLIC_LEDGER)
    web.callback(auth=auth, accounts=accounts, public_guard=guard, **options)  # type: ignore[misc]


main = click.Command(
    "page-login", callback=_serve, help="Serve the live twin page with login (the access layer's local issuer).",
    params=[click.Option(["--data-dir"], type=click.Path(path_type=Path), required=True,
                         help="The stack's data dir (its access/ holds the issuer's key and users.json)."),
            click.Option(["--community"], type=click.Path(exists=True, dir_okay=False, path_type=Path),
                         envvar="ENERGYTWIN_COMMUNITY", default=None,
                         help="community.yaml whose accounts the member, manager and public views show "
                              "[env ENERGYTWIN_COMMUNITY]."),
            click.Option(["--community-month"], envvar="ENERGYTWIN_COMMUNITY_MONTH", default=None,
                         help="YYYY-MM: show that month's accounts (default: this month so far) "
                              "[env ENERGYTWIN_COMMUNITY_MONTH]."),
            *web.params])

if __name__ == "__main__":
    main()
