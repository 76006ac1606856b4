"""Notifications owed, made durable in the write's own transaction: the broker's outbox.

Why: the notification backlog (`_notify_backlog.py`) journals what each subscription is owed only once the
dispatcher has matched a committed change against the subscriptions, a few event-loop turns after the COMMIT.
A broker killed with SIGKILL in that instant had stored the write (and answered it) but had not yet journaled its
notifications: a subscriber such as QuantumLeap never heard of it (the soak lost one notification there on a
clean clone). This is the transactional-outbox pattern: the work owed is written in the same SQLite transaction as
the entity change, so it commits or rolls back with it.

How:
- `record` (inside the write transaction, write lock held) appends one row per transaction to the `notify_outbox`
  table of the broker's own database, holding the transaction's changes (the entity state each notification
  carries, the attributes written, created/deleted flags; previous values only when a subscription of the tenant
  asks for `showChanges`). Written only when the tenant has a subscription: without one nothing is owed. When
  every subscription of the tenant names its notification attributes and has no q or geoQ, only those
  attributes of the entity are kept (`needed_attributes`).
- The row's `seq` travels with the changes to the dispatcher. Once they are matched, the backlog journals the
  matched entities and `seq` as its watermark in one transaction of `notify-backlog.sqlite`; after that commit the
  rows up to the watermark are deleted from the outbox, piggybacked on the next write transaction (no extra
  COMMIT, hence no extra fsync, on the writer).
- At start, outbox rows above the backlog's watermark (committed, never journaled: the process died in between)
  are matched again against the subscriptions, before any new change.

Guarantees and limits: every committed change of a tenant that had a subscription when it was written is matched
at least once, across a SIGKILL at any moment (and across a power cut: the main database commits with
synchronous=FULL). A change matched and journaled whose watermark write was lost is matched again: a repeated
notification, as the backlog's at-least-once delivery already allows. A subscription created in the milliseconds
between a write of a tenant without subscriptions and the dispatch of that write is matched from memory only.
Replayed changes are matched against the subscriptions as they are at the restart, with the attributes kept when
they were written (a subscription PATCHed in between to notify more attributes gets only those kept).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from ._json import dumps_bytes, loads
from ._model import Entity
from ._operations import Change

if TYPE_CHECKING:
    from ._store import Store
    from ._subscriptions import Subscription

log = logging.getLogger(__name__)

TABLE = "notify_outbox"
# AUTOINCREMENT: a seq is never reused once its rows were deleted (the backlog's watermark must stay below every
# new row, also when the table was emptied).
_SCHEMA = f"CREATE TABLE IF NOT EXISTS {TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, changes BLOB NOT NULL)"


def needed_attributes(subscriptions: list[Subscription]) -> frozenset[str] | None:
    """The attributes the tenant's subscriptions can notify or match on; None: all of them.

    A subscription with `notification.attributes` and neither `q` nor `geoQ` notifies only those attributes and
    selects by id and type alone, so the rest of the entity need not be kept (the soak's subscription notifies
    `frequency`: ~150 bytes an entity instead of ~4 KB)."""
    needed: set[str] = set()
    for sub in subscriptions:
        if sub.attributes is None or sub.q is not None or sub.geo is not None:
            return None
        needed |= sub.attributes
    return frozenset(needed)


def encode(changes: list[Change], with_previous: bool, attributes: frozenset[str] | None = None) -> bytes:
    """The changes of one transaction as JSON (what matching and the notification need, nothing more): the
    names written in full, the entity state and previous values narrowed to `attributes` when given."""
    rows = []
    for c in changes:
        attrs, previous = c.entity.attrs, c.previous if with_previous else {}
        if attributes is not None:
            attrs = {name: value for name, value in attrs.items() if name in attributes}
            previous = {name: value for name, value in previous.items() if name in attributes}
        rows.append([c.tenant, c.entity.id, c.entity.type, attrs, c.entity.created_at, c.entity.modified_at,
                     c.entity.deleted_at, sorted(c.attrs), c.created, sorted(c.new_attrs), sorted(c.deleted_attrs),
                     c.deleted, c.at, previous])
    return dumps_bytes(rows)


def decode(blob: bytes) -> list[Change]:
    """The changes `encode` wrote."""
    changes = []
    for (tenant, id_, type_, attrs, created_at, modified_at, deleted_at, written, created, new_attrs,
         deleted_attrs, deleted, at, previous) in loads(blob):
        changes.append(Change(tenant, Entity(id_, type_, attrs, created_at, modified_at, deleted_at),
                              frozenset(written), created=created, new_attrs=frozenset(new_attrs),
                              deleted_attrs=frozenset(deleted_attrs), deleted=deleted, at=at, previous=previous))
    return changes


class Outbox:
    """The outbox of one broker's store. `record` runs on the writer's thread inside a transaction; `done` is set
    on the event loop once the backlog has journaled up to a seq (a plain int: read under the GIL)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.done = 0  # the backlog has journaled everything up to this seq
        self._deleted = 0  # rows up to here were deleted by a transaction that committed or is running
        self._open = False

    def open(self, journaled: int) -> list[tuple[int, list[Change]]]:
        """Create the table if needed and return the rows above the backlog's watermark `journaled`, oldest
        first: committed, never journaled (at start, before any write is served)."""
        try:
            with self._store.transaction() as store:
                db = store._db
                db.execute(_SCHEMA)
                rows = db.execute(f"SELECT seq, changes FROM {TABLE} WHERE seq > ? ORDER BY seq",
                                  (journaled,)).fetchall()
        except sqlite3.Error as exc:  # a read-only or full data directory: the broker still serves reads
            log.error("notification outbox in %s unavailable (%s): notifications of new writes are journaled "
                      "only once matched (a crash in between loses them) until the broker restarts",
                      self._store.path, exc)
            return []
        self.done, self._deleted, self._open = journaled, 0, True
        return [(row[0], decode(row[1])) for row in rows]

    def set_done(self, seq: int) -> None:
        """The backlog has journaled everything up to `seq` (its watermark is on disk)."""
        self.done = seq

    def record(self, store: Store, changes: list[Change], subscriptions: list[Subscription]) -> int | None:
        """Append this transaction's changes (call inside `store.transaction()`, after the operation); their
        seq, or None when the tenant has no subscription (nothing owed) or the notifier is not running."""
        if not (changes and subscriptions and self._open):
            return None
        db = store._db  # the writer connection, inside the transaction
        done = self.done
        if done > self._deleted:  # what the backlog journaled since: gone with this transaction
            db.execute(f"DELETE FROM {TABLE} WHERE seq <= ?", (done,))
            self._deleted = done  # a rollback keeps those rows: they wait for the next restart's DELETE
        with_previous = any(sub.show_changes for sub in subscriptions)
        blob = encode(changes, with_previous, needed_attributes(subscriptions))
        return db.execute(f"INSERT INTO {TABLE} (changes) VALUES (?)", (blob,)).lastrowid


def stats(store: Store) -> dict[str, Any]:
    """Rows held and the highest seq (for tests and benchmarks)."""
    try:
        count, top = store._conn().execute(f"SELECT count(*), max(seq) FROM {TABLE}").fetchone()
    except sqlite3.OperationalError:
        return {"rows": 0, "max_seq": None}
    return {"rows": count, "max_seq": top}
