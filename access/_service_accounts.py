"""Service accounts: the stack's own services reach the broker through the access layer with a token each.

Each service has an account `service:<name>` with a role of access/policy.yaml: `analytics` for the
power-quality analytics (writes Anomaly entities only), `page` for the page (writes batteries and inverters
only: the control centre's commands), `service` for others (writes any entity); all read everything and keep
their subscriptions, none provisions, rewrites history or @contexts, or reads the PEP's counters. Its token is a short-lived JWT from the local issuer, written to
`<data_dir>/access/service-tokens/<name>.jwt` (mode 0600) and rewritten well before it expires by the process
that started the service (the stack), which holds the issuer's key; the service itself never sees the key.
The service reads the file through fiware_client's `TokenFile` (`FIWARE_CLIENT_TOKEN_FILE`, sent only to the
origins in `FIWARE_CLIENT_TOKEN_ORIGINS`), which picks up the new token before the old one expires: a service
that leaks its token leaks at most an hour of `service` rights, and no way to mint more.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from access._tokens import DEFAULT_AUDIENCE, LocalIssuer

log = logging.getLogger("access.service_accounts")

SERVICE_ROLE = "service"
TOKEN_DIR = "service-tokens"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


@dataclass
class ServiceTokens:
    """Issues and keeps fresh the token files of a stack's service accounts."""

    data_dir: Path
    lifetime_s: float = 3600.0
    refresh_every_s: float | None = None  # default: a third of the lifetime
    audience: str = DEFAULT_AUDIENCE
    _accounts: dict[str, str] = field(default_factory=dict)  # account -> role
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def directory(self) -> Path:
        return Path(self.data_dir) / "access" / TOKEN_DIR

    def path(self, account: str) -> Path:
        if not _NAME.match(account):
            raise ValueError(f"service account name {account!r}: lower-case letters, digits and '-', "
                             f"starting with a letter")
        return self.directory / f"{account}.jwt"

    def issue(self, account: str, role: str | None = None) -> Path:
        """Write a fresh token for `account` (atomically: a reader sees the old file or the new one, never half).

        `role`: the account's role (default: the one it was issued with before, else `service`)."""
        path = self.path(account)
        role = role or self._accounts.get(account, SERVICE_ROLE)
        token = LocalIssuer(self.data_dir, audience=self.audience).token(
            f"service:{account}", role, lifetime_s=self.lifetime_s)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
        tmp.replace(path)
        self._accounts[account] = role
        return path

    def env(self, account: str, origins: Iterable[str], role: str = SERVICE_ROLE) -> dict[str, str]:
        """The environment giving a service process its account, sent only to `origins` (the access layers)."""
        return {"FIWARE_CLIENT_TOKEN_FILE": str(self.issue(account, role)),
                "FIWARE_CLIENT_TOKEN_ORIGINS": ",".join(origins)}

    def refresh(self) -> None:
        for account in sorted(self._accounts):
            try:
                self.issue(account)
            except OSError as exc:  # the old token stays until it expires; the next round tries again
                log.error("cannot refresh the token of service account %s: %s", account, exc)

    def start(self) -> None:
        """Rewrite every issued account's token every `refresh_every_s` (a third of its lifetime), until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.refresh_every_s or self.lifetime_s / 3):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="service-tokens", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
