"""Bearer tokens for the clients: `Authorization: Bearer <token>` on every request (RFC 6750 §2.1).

A client is given a token (a string, sent as is) or a token *provider* (a callable returning the current token).
A provider's token is kept until shortly before the `exp` its JWT payload carries (RFC 7519 §4.1.4; read without
checking the signature, only to know when to ask again: the server verifies), then asked again; a 401 answer
asks once more and sends the request again, so a token revoked or rotated early costs one round trip, not an
outage. `TokenFile` is the usual provider: a file an issuer rewrites before each token expires (as Kubernetes
projects service-account tokens), re-read when it changes.

Without an explicit token a client looks at the environment: `FIWARE_CLIENT_TOKEN_FILE` names a token file and
`FIWARE_CLIENT_TOKEN_ORIGINS` the origins (`http://127.0.0.1:1027,...`) it is sent to. A token is a credential,
so it goes only to those origins, never to whatever URL a client is pointed at. That is how the embedded stack
gives its services their accounts without every service growing a --token option (docs/access.md).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ._errors import FiwareError

TokenProvider = Callable[[], str]
TOKEN_FILE_ENV = "FIWARE_CLIENT_TOKEN_FILE"
TOKEN_ORIGINS_ENV = "FIWARE_CLIENT_TOKEN_ORIGINS"


class TokenUnavailable(FiwareError):
    """The token provider could not give a token (a missing or empty token file): nothing was sent."""


def token_expiry(token: str) -> float | None:
    """The `exp` of a JWT (seconds since the epoch), unverified; None for a token that is no JWT or has none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class TokenFile:
    """A provider reading the token from a file (whitespace stripped), again whenever the file changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None
        self._token = ""

    def __call__(self) -> str:
        try:
            stat = self.path.stat()
            if (stat.st_mtime_ns, stat.st_size) != self._seen:
                self._token = self.path.read_text(encoding="utf-8").strip()
                self._seen = (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            raise TokenUnavailable(f"token file {self.path}: {exc.strerror or exc}") from exc
        if not self._token:
            raise TokenUnavailable(f"token file {self.path} is empty")
        return self._token

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"


class BearerAuth(httpx.Auth):
    """httpx auth sending a bearer token; a provider's token is refreshed `refresh_before_s` before its `exp`."""

    def __init__(self, token: str | TokenProvider, *, refresh_before_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(token, str):
            if not token.strip():
                raise ValueError("an empty bearer token")
            self._provider: TokenProvider | None = None
            self._token: str | None = token.strip()
        else:
            self._provider, self._token = token, None
        self._refresh_before_s = refresh_before_s
        self._clock = clock
        self._expires_at: float | None = None
        self._lock = threading.Lock()  # one client may be shared by threads (the agent's tenant clients)

    def _current(self, *, again: bool = False) -> str:
        with self._lock:
            if self._provider is not None and (
                    again or self._token is None
                    or (self._expires_at is not None
                        and self._clock() >= self._expires_at - self._refresh_before_s)):
                token = self._provider().strip()
                if not token:
                    raise TokenUnavailable(f"the token provider {self._provider!r} gave an empty token")
                self._token, self._expires_at = token, token_expiry(token)
            assert self._token is not None
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent = self._current()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code == 401 and self._provider is not None:
            token = self._current(again=True)
            if token != sent:  # a new token: the request once more; the same one would be refused again
                request.headers["Authorization"] = f"Bearer {token}"
                yield request


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def bearer_auth(base_url: str, token: str | TokenProvider | None) -> BearerAuth | None:
    """The auth a client of `base_url` uses: its explicit token, else the environment's for that origin, else none."""
    if token is not None:
        return BearerAuth(token)
    path = os.environ.get(TOKEN_FILE_ENV)
    if not path:
        return None
    origins = {_origin(o.strip()) for o in os.environ.get(TOKEN_ORIGINS_ENV, "").split(",") if o.strip()}
    if _origin(base_url) not in origins:
        return None
    return BearerAuth(TokenFile(path))


__all__ = ["TOKEN_FILE_ENV", "TOKEN_ORIGINS_ENV", "BearerAuth", "TokenFile", "TokenProvider", "TokenUnavailable",
           "bearer_auth", "token_expiry"]
