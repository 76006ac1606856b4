"""Delivering notifications: one queue and one sender task per subscription, fed after every commit.

Ingestion only appends committed changes to an in-memory queue (`publish`), so a slow or dead subscriber can
never hold up a write. A dispatcher task matches changes against the tenant's subscriptions and appends the
entity to each matching subscription's outbox; each subscription has its own sender task, so a failing receiver
(retried with exponential backoff) delays only its own notifications. An outbox is FIFO and sent by one task,
so notifications about one entity arrive in the order of the writes; when a receiver falls behind, queued
entities are coalesced into one notification (`data` is an array) rather than dropped, up to a bound.
A notification that keeps failing is retried at the longest backoff for as long as the subscription is active
(an unreachable receiver misses nothing until its outbox overflows), and an outbox holds only the attributes
its notifications carry, so a backlog of snapshots costs little memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from datamodels.context import CORE_CONTEXT

from ._context import ContextResolver, is_core_context
from ._errors import NgsiLdError
from ._http import JSON, JSON_LD, LINK_REL
from ._json import dumps_bytes
from ._model import Entity, RenderOptions, now_iso, render_entity
from ._notify_backlog import DurableQueue, NotifyBacklog
from ._notify_http import Connection, NotifyError
from ._operations import Change
from ._outbox import Outbox
from ._store import EntityQuery, Store
from ._subscriptions import Status, Subscription, parse_subscription

log = logging.getLogger(__name__)

MAX_ENTITIES_PER_NOTIFICATION = 100
MAX_QUEUED_PER_SUBSCRIPTION = 10_000  # beyond this the oldest queued entities are dropped (and logged)
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
SEND_TIMEOUT_S = 5.0
STATUS_FLUSH_S = 1.0
STOP_TIMEOUT_S = 2.0


@dataclass
class _Outbox:
    """A subscription's pending entities and the event waking its sender."""

    pending: deque[Entity] | DurableQueue = field(default_factory=deque)  # durable: _notify_backlog.py
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    ticker: asyncio.Task[None] | None = None
    dropped: int = 0
    connection: Connection | None = None


class SubscriptionManager:
    """Subscriptions of every tenant, their delivery tasks, and their persisted status."""

    def __init__(self, store: Store, contexts: ContextResolver,
                 retry_delays_s: Iterable[float] = RETRY_DELAYS_S) -> None:
        self._store = store
        self._contexts = contexts
        self._retry_delays_s = tuple(retry_delays_s)
        self._subs: dict[tuple[str, str], Subscription] = {}
        self._by_tenant: dict[str, list[Subscription]] = {}
        self._outboxes: dict[tuple[str, str], _Outbox] = {}
        self._changes: asyncio.Queue[tuple[list[Change], int | None]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty: set[tuple[str, str]] = set()
        self._running = False
        self._backlog: NotifyBacklog | None = None
        self.outbox = Outbox(store)  # what a write owes, kept in its own transaction (_outbox.py)

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load stored subscriptions and start the dispatcher, senders and the status flusher."""
        self._changes = asyncio.Queue()
        self._running = True
        self._backlog = NotifyBacklog.beside(self._store.path)
        for tenant, sub_id, body, status in self._store.subscriptions():
            try:
                ctx = await self._contexts.activate(body.get("context"))
                sub = parse_subscription(body["raw"], tenant, body.get("context"), ctx, Status.from_json(status),
                                         check_expiry=False)
            except NgsiLdError as exc:
                log.error("stored subscription %s of tenant %r cannot be loaded (%s); it stays stored but "
                          "inactive", sub_id, tenant, exc)
                continue
            self._add(sub)
        self._backlog.on_journaled = self.outbox.set_done
        for owed in self.outbox.open(self._backlog.outbox_journaled()):  # committed, not journaled at a crash
            self._changes.put_nowait((owed[1], owed[0]))
        self._tasks.append(asyncio.create_task(self._dispatch(), name="ngsi-ld-dispatch"))
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="ngsi-ld-status-flush"))
        log.info("%d subscriptions loaded", len(self._subs))

    async def stop(self) -> None:
        """Stop every task and persist the latest status (pending notifications stay owed on disk)."""
        self._running = False
        tasks = list(self._tasks)
        for outbox in self._outboxes.values():
            tasks += [t for t in (outbox.task, outbox.ticker) if t is not None]
        for _ in range(3):  # again if a cancellation was lost (cancelled exactly as an await completed)
            pending = [task for task in tasks if not task.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)
        for task in tasks:
            if not task.done():
                log.warning("notifier task %s did not stop; leaving it", task.get_name())
        self.flush_status()
        if self._backlog is not None:
            self._backlog.close()
        for outbox in self._outboxes.values():
            if outbox.connection is not None:
                await outbox.connection.close()

    # -- CRUD (called by the API handlers on the event loop) -------------------------------------------
    def get(self, tenant: str, sub_id: str) -> Subscription | None:
        """One subscription of a tenant."""
        return self._subs.get((tenant, sub_id))

    def list(self, tenant: str) -> list[Subscription]:
        """A tenant's subscriptions in creation order."""
        return list(self._by_tenant.get(tenant, []))

    async def create(self, sub: Subscription) -> None:
        """Store and start a new subscription (409 when the id exists in the tenant)."""
        if (sub.tenant, sub.id) in self._subs:
            raise NgsiLdError("AlreadyExists", "Subscription already exists", sub.id)

        def persist() -> None:
            with self._store.transaction() as store:
                store.ensure_tenant(sub.tenant)
                store.put_subscription(sub.tenant, sub.id, self._stored(sub), sub.status.to_json())

        await asyncio.to_thread(persist)
        if (sub.tenant, sub.id) in self._subs:  # created concurrently while this one was being stored
            raise NgsiLdError("AlreadyExists", "Subscription already exists", sub.id)
        self._add(sub)
        log.info("subscription %s created in tenant %r -> %s", sub.id, sub.tenant, sub.uri)

    async def replace(self, sub: Subscription) -> None:
        """Store a PATCHed subscription, keeping its status and queued notifications."""
        key = (sub.tenant, sub.id)
        old = self._subs[key]
        sub.status = old.status
        sub.last_accepted = old.last_accepted

        def persist() -> None:
            with self._store.transaction() as store:
                store.put_subscription(sub.tenant, sub.id, self._stored(sub), sub.status.to_json())

        await asyncio.to_thread(persist)
        if key not in self._subs:
            return  # deleted while the patch was being stored
        outbox = self._outboxes[key]
        self._subs[key] = sub
        self._by_tenant[sub.tenant] = [sub if s.id == sub.id else s for s in self._by_tenant[sub.tenant]]
        if old.uri != sub.uri and outbox.connection is not None:
            connection, outbox.connection = outbox.connection, None
            await connection.close()  # the next notification connects to the new endpoint
        self._restart_ticker(sub, outbox)
        outbox.wake.set()

    async def delete(self, tenant: str, sub_id: str) -> bool:
        """Remove a subscription and stop its tasks; False when it did not exist."""
        sub = self._subs.pop((tenant, sub_id), None)
        if sub is None:
            return False

        def persist() -> None:
            with self._store.transaction() as store:
                store.delete_subscription(tenant, sub_id)

        await asyncio.to_thread(persist)
        self._by_tenant[tenant] = [s for s in self._by_tenant[tenant] if s.id != sub_id]
        outbox = self._outboxes.pop((tenant, sub_id))
        for task in (outbox.task, outbox.ticker):
            if task is not None:
                task.cancel()
        self._dirty.discard((tenant, sub_id))
        if self._backlog is not None:
            self._backlog.forget((tenant, sub_id))
        return True

    @staticmethod
    def _stored(sub: Subscription) -> dict[str, Any]:
        return {"raw": sub.raw, "context": sub.context}

    def _add(self, sub: Subscription) -> None:
        key = (sub.tenant, sub.id)
        self._subs[key] = sub
        self._by_tenant.setdefault(sub.tenant, []).append(sub)
        outbox = self._outboxes[key] = _Outbox() if self._backlog is None else _Outbox(self._backlog.queue(key))
        if isinstance(outbox.pending, DurableQueue):
            outbox.pending.keep_count(sub.status)  # its dropped count, shown on the subscription
        if outbox.pending:
            outbox.wake.set()  # owed from before a restart
        if self._running:
            outbox.task = asyncio.create_task(self._sender(key, outbox), name=f"ngsi-ld-notify {sub.id}")
            self._restart_ticker(sub, outbox)

    def _restart_ticker(self, sub: Subscription, outbox: _Outbox) -> None:
        if outbox.ticker is not None:
            outbox.ticker.cancel()
            outbox.ticker = None
        if sub.time_interval is not None and self._running:
            outbox.ticker = asyncio.create_task(self._periodic((sub.tenant, sub.id), outbox),
                                                name=f"ngsi-ld-periodic {sub.id}")

    # -- ingestion side ----------------------------------------------------------------------------------
    def owe(self, store: Store, changes: list[Change]) -> int | None:
        """Inside a write's transaction: keep what it owes the subscriptions in the outbox; its seq."""
        return self.outbox.record(store, changes, self._by_tenant.get(changes[0].tenant, [])) if changes else None

    def publish(self, changes: list[Change], outbox_seq: int | None = None) -> None:
        """Hand committed changes to the dispatcher; never blocks (called right after a write commits)."""
        if self._changes is not None and (outbox_seq is not None or self._by_tenant.get(changes[0].tenant)):
            self._changes.put_nowait((changes, outbox_seq))

    async def _dispatch(self) -> None:
        assert self._changes is not None
        while True:
            changes, outbox_seq = await self._changes.get()
            if outbox_seq is not None and self._backlog is not None:
                self._backlog.journaled(outbox_seq)  # with what this loop enqueues, in the same flush
            now = now_iso()
            for change in changes:
                for sub in self._by_tenant.get(change.tenant, ()):
                    if sub.state(now) != "active" or not sub.triggered_by(change):
                        continue
                    if sub.throttling:
                        moment = time.monotonic()
                        if moment - sub.last_accepted < sub.throttling:
                            continue  # within the throttling period: not notified, as in Orion-LD
                        sub.last_accepted = moment
                    entity = change.notified(sub.show_changes)
                    if sub.attributes is not None:  # what the notification carries (render_entity's rule)
                        entity = dataclasses.replace(
                            entity, attrs={n: a for n, a in entity.attrs.items() if n in sub.attributes})
                    self._enqueue((sub.tenant, sub.id), [entity])

    def _enqueue(self, key: tuple[str, str], entities: list[Entity]) -> None:
        outbox = self._outboxes.get(key)
        if outbox is None:
            return
        outbox.pending.extend(entities)
        overflow = len(outbox.pending) - getattr(outbox.pending, "limit", MAX_QUEUED_PER_SUBSCRIPTION)
        if overflow > 0:
            for _ in range(overflow):
                outbox.pending.popleft()
            if outbox.dropped == 0:
                log.warning("subscription %s: receiver is %d notifications behind; dropping the oldest",
                            key[1], MAX_QUEUED_PER_SUBSCRIPTION)
            outbox.dropped += overflow
        outbox.wake.set()

    async def _periodic(self, key: tuple[str, str], outbox: _Outbox) -> None:
        while True:
            sub = self._subs.get(key)
            if sub is None or sub.time_interval is None:
                return
            await asyncio.sleep(sub.time_interval)
            if sub.state() != "active":
                continue
            entities = await asyncio.to_thread(self._in_scope, sub)
            if entities:
                self._enqueue(key, entities)

    def _in_scope(self, sub: Subscription) -> list[Entity]:
        """Every current entity a periodic subscription covers (run on a worker thread)."""
        if any(s.type is None for s in sub.selectors):
            types = None  # a selector without a type: any type
        else:
            types = tuple(sorted({t for s in sub.selectors for t in (s.types if s.types is not None else {s.type})}))
        if types == ():
            return []  # type expressions that select no type
        return [e for e in self._store.entities_of(sub.tenant, EntityQuery(types=types)) if sub.selects(e)]

    # -- delivery -------------------------------------------------------------------------------------------
    async def _sender(self, key: tuple[str, str], outbox: _Outbox) -> None:
        while self._running:
            await outbox.wake.wait()
            outbox.wake.clear()
            while outbox.pending:
                sub = self._subs.get(key)
                if sub is None:
                    return
                count = min(len(outbox.pending), MAX_ENTITIES_PER_NOTIFICATION)
                batch = [outbox.pending.popleft() for _ in range(count)]
                await self._deliver(key, batch)

    def _notification(self, sub: Subscription, entities: list[Entity]) -> tuple[dict[str, Any], dict[str, str]]:
        options = RenderOptions(key_values=sub.format == "keyValues", concise=sub.format == "concise",
                                sys_attrs=sub.sys_attrs, attrs=sub.attributes, lang=sub.lang, pick=sub.pick,
                                omit=sub.omit)
        body: dict[str, Any] = {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "Notification",
                                "subscriptionId": sub.id, "notifiedAt": now_iso(),
                                "data": [render_entity(e, sub.ctx, options) for e in entities]}
        headers = {name: value for name, value in sub.receiver_info}
        if sub.tenant:
            headers["NGSILD-Tenant"] = sub.tenant
        if sub.accept == JSON_LD:
            headers["Content-Type"] = JSON_LD
            body["@context"] = sub.context if sub.context is not None else sub.ctx.echo
        else:
            headers["Content-Type"] = JSON
            # §6.3.x / §5.3: a JSON receiver finds the @context in a Link header, the core context when the
            # subscription named none (or only an inline one, which a header cannot carry)
            link = quote(_link_url(sub.context) or CORE_CONTEXT, safe="/:@!$&'()*+,;=~-._?#[]%")
            headers["Link"] = f'<{link}>; rel="{LINK_REL}"; type="{JSON_LD}"'
        return body, headers

    async def _deliver(self, key: tuple[str, str], entities: list[Entity]) -> None:
        """Send one notification, retrying with backoff, then at the longest delay until it is delivered or the
        subscription is gone or expired (status failed meanwhile). Giving up after the schedule would
        drop the batch while the outbox still has room: a receiver away for a minute lost its first batches."""
        outbox = self._outboxes.get(key)
        delays = itertools.chain((0.0,), self._retry_delays_s, itertools.repeat(self._retry_delays_s[-1]
                                                                                 if self._retry_delays_s else 1.0))
        for attempt, delay in enumerate(delays):
            if delay:
                await asyncio.sleep(delay)
            sub = self._subs.get(key)
            if sub is None or outbox is None or sub.state() == "expired" or not self._running:
                return
            body, headers = self._notification(sub, entities)
            error: str | None = None
            try:
                if outbox.connection is None:
                    outbox.connection = Connection(sub.uri, SEND_TIMEOUT_S)
                status_code = await outbox.connection.post(dumps_bytes(body), headers)
                if not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
            except NotifyError as exc:
                error = str(exc)
                outbox.connection = None
            sent_at = now_iso()
            status = sub.status
            status.times_sent += 1
            status.last_notification = sent_at
            self._dirty.add(key)
            if error is None:
                status.last_success = sent_at
                status.failed = False
                if isinstance(outbox.pending, DurableQueue):
                    outbox.pending.delivered()
                return
            status.last_failure = sent_at
            status.times_failed += 1
            status.failed = True
            if attempt < len(self._retry_delays_s):
                log.info("notification for subscription %s to %s failed (%s); retry %d in %.1f s", sub.id,
                         sub.uri, error, attempt + 1, self._retry_delays_s[attempt])
            elif attempt == len(self._retry_delays_s):
                log.warning("notification for subscription %s to %s failed %d times (%s); retrying until it is "
                            "delivered (%d queued, at most %d kept)", sub.id, sub.uri, attempt + 1, error,
                            len(outbox.pending) + len(entities), MAX_QUEUED_PER_SUBSCRIPTION)

    # -- status persistence ------------------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_FLUSH_S)
            if self._dirty:
                await asyncio.to_thread(self.flush_status)

    def flush_status(self) -> None:
        """Write changed notification status to SQLite (at most STATUS_FLUSH_S late; all of it on stop)."""
        dirty, self._dirty = self._dirty, set()
        rows = [(tenant, sub_id, self._subs[(tenant, sub_id)].status.to_json())
                for tenant, sub_id in dirty if (tenant, sub_id) in self._subs]
        if rows:
            with self._store.transaction() as store:
                store.save_subscription_status(rows)


def _link_url(context: Any) -> str | None:
    """The URL a `Link` header can name for a subscription's context (the first non-core URL of a list)."""
    if isinstance(context, str):
        return context
    if isinstance(context, list):
        urls = [c for c in context if isinstance(c, str) and not is_core_context(c)]
        return urls[0] if urls else None
    return None
