"""What every handler module shares: the broker state on the app, the error guard, tenant checks, writes.

Kept out of `_app.py` so the entity, temporal and subscription handlers can live in their own modules without
importing each other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ._context import ContextResolver
from ._errors import NgsiLdError, nonexistent_tenant
from ._http import tenant_of
from ._operations import Change, Tx
from ._storage_faults import storage_fault, unavailable
from ._store import Store

if TYPE_CHECKING:
    from ._subscriptions import SubscriptionManager

log = logging.getLogger(__name__)

BASE = "/ngsi-ld/v1"
Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


@dataclass
class Broker:
    """What handlers share: the store, the context resolver, subscriptions (on `app.state.broker`)."""

    store: Store
    contexts: ContextResolver
    started_at: float
    subscriptions: SubscriptionManager | None = None
    retention_s: float | None = None


def broker_of(request: Request) -> Broker:
    """The broker serving this request."""
    return request.app.state.broker


def endpoint(handler: Handler) -> Handler:
    """Turn any unexpected exception in a handler into InternalError for the one exception handler.

    Starlette sends unhandled exceptions to ServerErrorMiddleware, which answers and then re-raises them;
    converting them here keeps one code path (and one log line) for every failure.
    """

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except (NgsiLdError, HTTPException):
            raise
        except Exception as exc:
            reason = storage_fault(exc)
            if reason is not None:
                log.error("%s %s refused with 503: %s (%s); nothing of it was stored; writes resume by themselves "
                          "once the data directory is writable with free space", request.method, request.url.path,
                          reason, exc)
                raise unavailable(reason, exc) from exc
            log.exception("%s %s failed with an internal error; the request was not applied, the broker "
                          "keeps serving", request.method, request.url.path)
            raise NgsiLdError("InternalError", "Internal Error", f"{type(exc).__name__}: {exc}") from exc

    return guarded


def existing_tenant(request: Request, broker: Broker) -> str:
    """The request's tenant, which must exist (404 NonexistentTenant otherwise)."""
    tenant = tenant_of(request)
    if not broker.store.tenant_exists(tenant):
        raise nonexistent_tenant(tenant)
    return tenant


async def write(broker: Broker, operation: Callable[..., T], *args: Any) -> T:
    """Run one write operation in its own transaction on a worker thread.

    Commits fsync (synchronous=FULL), which must not stall the event loop serving other clients. The changes
    go to the subscription manager only after COMMIT: a notification never announces a write that was undone.
    """
    loop = asyncio.get_running_loop()
    manager = broker.subscriptions

    def run() -> T:
        changes: list[Change] = []
        owed: list[int] = []  # the outbox row of this write's changes: kept across a crash (_outbox.py)

        def announce() -> None:  # inside the write lock: publications follow commit order
            if changes and manager is not None:
                loop.call_soon_threadsafe(manager.publish, changes, *owed)

        with broker.store.transaction(after_commit=announce) as store:
            result = operation(Tx(store, changes), *args)
            if manager is not None and (seq := manager.owe(store, changes)) is not None:
                owed.append(seq)
            return result

    return await run_in_threadpool(run)


async def read(function: Callable[..., T], *args: Any) -> T:
    """Run a read that may take long (history, q over many entities) off the event loop."""
    return await run_in_threadpool(function, *args)
