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
    """What both faces share: where the service is, its fixed headers, timeouts, retries, how errors look."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float, retry: RetryPolicy,
                 error: ErrorFactory) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json", **headers}
        self._timeout = httpx.Timeout(timeout)
        self._retry = retry
        self._error = error

    def _unreachable(self, call: Call, exc: Exception, attempts: int) -> BrokerUnavailable:
        return BrokerUnavailable(f"{call.method} {self.base_url}{call.path}: no answer after {attempts} "
                                 f"attempt(s): {type(exc).__name__}: {exc}", request=getattr(exc, "request", None))

    def _checked(self, call: Call, response: httpx.Response) -> httpx.Response:
        if response.status_code in call.expect:
            return response
        raise self._error(response, call)

    def _log_retry(self, call: Call, wait_s: float, reason: str) -> None:
        log.warning("%s %s%s: %s; sending again in %.1f s", call.method, self.base_url, call.path, reason, wait_s)


class SyncBase(_Base):
    """Sends calls with one `httpx.Client` (the session: connection pool, fixed headers)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float, retry: RetryPolicy,
                 error: ErrorFactory, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, headers, timeout=timeout, retry=retry, error=error)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, params=call.params, headers=call.headers,
                                              content=call.content)
            except httpx.HTTPError as exc:
                wait = self._retry.again(call, attempt, error=exc)
                if wait is None:
                    raise self._unreachable(call, exc, attempt + 1) from exc
                self._log_retry(call, wait, str(exc) or type(exc).__name__)
            else:
                wait = self._retry.again(call, attempt, response=response)
                if wait is None:
                    return self._checked(call, response)
                self._log_retry(call, wait, "HTTP 503")
            time.sleep(wait)
            attempt += 1

    def _run(self, op: Op[T]) -> T:
        """Drive an operation to its result, sending each call it yields."""
        try:
            call = next(op)
            while True:
                try:
                    response = self._send(call)
                except FiwareError as exc:  # the operation may handle it (a 404 that means "absent")
                    call = op.throw(exc)
                else:
                    call = op.send(response)
        except StopIteration as done:
            return done.value


class AsyncBase(_Base):
    """Sends calls with one `httpx.AsyncClient`."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float, retry: RetryPolicy,
                 error: ErrorFactory, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, headers, timeout=timeout, retry=retry, error=error)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout,
                                       transport=transport)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, params=call.params,
                                                    headers=call.headers, content=call.content)
            except httpx.HTTPError as exc:
                wait = self._retry.again(call, attempt, error=exc)
                if wait is None:
                    raise self._unreachable(call, exc, attempt + 1) from exc
                self._log_retry(call, wait, str(exc) or type(exc).__name__)
            else:
                wait = self._retry.again(call, attempt, response=response)
                if wait is None:
                    return self._checked(call, response)
                self._log_retry(call, wait, "HTTP 503")
            await asyncio.sleep(wait)
            attempt += 1

    async def _run(self, op: Op[T]) -> T:
        """Drive an operation to its result, sending each call it yields."""
        try:
            call = next(op)
            while True:
                try:
                    response = await self._send(call)
                except FiwareError as exc:  # the operation may handle it (a 404 that means "absent")
                    call = op.throw(exc)
                else:
                    call = op.send(response)
        except StopIteration as done:
            return done.value


DEFAULT_RETRY = RetryPolicy()
