"""The shared base: one request description (`Call`), retries with backoff, and the sync and async senders.

Operations are written once, without I/O, as generators that yield a `Call` and receive its `httpx.Response`
(a "sans-IO" protocol, as h11 and httpcore do it); the sync and the async client only differ in how they send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import httpx

from ._auth import TokenProvider, bearer_auth
from ._errors import BrokerUnavailable, FiwareError

log = logging.getLogger("fiware_client")

T = TypeVar("T")
Op = Generator["Call", httpx.Response, T]  # an operation: yields requests, gets their answers, returns a result

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Failures where the request cannot have reached the server: safe to send again whatever the method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after sending: only idempotent requests are sent again.
_MAYBE_SENT = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError,
               httpx.WriteError)


@dataclass(frozen=True)
class Call:
    """One HTTP request an operation wants sent, and which answers it can read itself."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes | None = None
    expect: frozenset[int] = frozenset({200})  # answers the operation reads; any other status is raised
    temporal: bool = False  # a temporal API path: a 404 without ProblemDetails means "no temporal API"

    @classmethod
    def json(cls, method: str, path: str, body: Any, media_type: str = "application/json",
             **kwargs: Any) -> Call:
        headers = {"Content-Type": media_type, **kwargs.pop("headers", {})}
        return cls(method, path, content=json.dumps(body).encode(), headers=headers, **kwargs)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to send a request again after a connection failure or a 503.

    `attempts` counts every try (1 = never retry). The wait doubles from `backoff_s` up to `max_backoff_s`;
    a 503's `Retry-After` (seconds) is honoured up to the same cap.
    """

    attempts: int = 3
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def delay_s(self, attempt: int, response: httpx.Response | None = None) -> float:
        wait = self.backoff_s * 2 ** attempt
        if response is not None:
            try:
                wait = float(response.headers.get("Retry-After", wait))
            except ValueError:
                pass
        return min(max(wait, 0.0), self.max_backoff_s)

    def again(self, call: Call, attempt: int, *, error: Exception | None = None,
              response: httpx.Response | None = None) -> float | None:
        """Seconds to wait before sending `call` again, or None to give up (and raise/return)."""
        if attempt + 1 >= self.attempts:
            return None
        if error is not None:
            if isinstance(error, _NOT_SENT) or (isinstance(error, _MAYBE_SENT) and call.method in _IDEMPOTENT):
                return self.delay_s(attempt)
            return None
        if response is not None and response.status_code == 503:
            return self.delay_s(attempt, response)
        return None


ErrorFactory = Callable[[httpx.Response, Call], FiwareError]


class _Base:
    """What both faces share: where the service is, its fixed headers, timeouts, retries, how errors look.

    `_program` wraps an operation with the retry policy into one plan of steps: a `Call` to send (the face
    sends it and passes back the response, or the httpx exception) or a number of seconds to sleep. Each face
    has one loop that carries the steps out (`_run`), so retries and error mapping exist once.
    """

    _session: Any  # httpx.Client or httpx.AsyncClient

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float, retry: RetryPolicy,
                 error: ErrorFactory, transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
                 token: str | TokenProvider | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._retry = retry
        self._error = error
        # A bearer token (fiware_client/_auth.py): the one given, else the environment's for this origin, else none.
        self._http = self._session(base_url=self.base_url, headers={"Accept": "application/json", **headers},
                                   timeout=httpx.Timeout(timeout), transport=transport,
                                   auth=bearer_auth(self.base_url, token))

    def _program(self, op: Op[T]) -> Generator[Call | float, Any, T]:
        """The operation's calls, each sent until it is answered or the retries are spent."""
        try:
            call = next(op)
            while True:
                try:
                    response = yield from self._attempts(call)
                except FiwareError as exc:  # the operation may handle it (a 404 that means "absent")
                    call = op.throw(exc)
                else:
                    call = op.send(response)
        except StopIteration as done:
            return done.value

    def _attempts(self, call: Call) -> Generator[Call | float, Any, httpx.Response]:
        attempt = 0
        while True:
            outcome = yield call
            if isinstance(outcome, httpx.HTTPError):
                wait = self._retry.again(call, attempt, error=outcome)
                if wait is None:
                    raise BrokerUnavailable(
                        f"{call.method} {self.base_url}{call.path}: no answer after {attempt + 1} attempt(s): "
                        f"{type(outcome).__name__}: {outcome}", request=getattr(outcome, "request", None)
                    ) from outcome
                reason = str(outcome) or type(outcome).__name__
            else:
                wait = self._retry.again(call, attempt, response=outcome)
                if wait is None:
                    if outcome.status_code in call.expect:
                        return outcome
                    raise self._error(outcome, call)
                reason = f"HTTP {outcome.status_code}"
            log.warning("%s %s%s: %s; sending again in %.1f s", call.method, self.base_url, call.path, reason, wait)
            yield wait
            attempt += 1

    @staticmethod
    def _request_args(call: Call) -> dict[str, Any]:
        return {"method": call.method, "url": call.path, "params": call.params, "headers": call.headers,
                "content": call.content}


class SyncBase(_Base):
    """Sends calls with one `httpx.Client` (the session: connection pool, fixed headers)."""

    _session = httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, op: Op[T]) -> T:
        """Carry out an operation: send what it asks, sleep between retries, return its result."""
        program = self._program(op)
        try:
            step = next(program)
            while True:
                if isinstance(step, Call):
                    try:
                        step = program.send(self._http.request(**self._request_args(step)))
                    except httpx.HTTPError as exc:
                        step = program.send(exc)
                else:
                    time.sleep(step)
                    step = next(program)
        except StopIteration as done:
            return done.value


class AsyncBase(_Base):
    """Sends calls with one `httpx.AsyncClient`."""

    _session = httpx.AsyncClient

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, op: Op[T]) -> T:
        """Carry out an operation: send what it asks, sleep between retries, return its result."""
        program = self._program(op)
        try:
            step = next(program)
            while True:
                if not isinstance(step, Call):
                    await asyncio.sleep(step)
                    step = next(program)
                    continue
                try:
                    response = await self._http.request(**self._request_args(step))
                except httpx.HTTPError as exc:
                    step = program.send(exc)
                else:
                    step = program.send(response)
        except StopIteration as done:
            return done.value


DEFAULT_RETRY = RetryPolicy()
