"""Notifications owed, kept on disk: what a subscription's receiver has not yet acknowledged survives a receiver
away for minutes and a broker killed with SIGKILL.

Why: a subscriber such as QuantumLeap writes history from notifications, so every notification it misses is a
hole in its history. Held only in memory, a backlog was bounded at a few thousand entities (a receiver away
60 s at 300 readings/s needs 18,000: the soak lost 9,154 of them) and vanished with the process (a kill -9 or a
power cut lost what had been committed but not yet sent). Neither NGSI-LD (ETSI GS CIM 009 V1.8.1 §5.2.14 gives
only the counters timesSent, timesFailed, lastSuccess, lastFailure) nor Orion-LD (an in-memory queue whose
overflow is discarded) keeps them; a demanding user of the field expects the broker to.

How: every entity queued for a subscription is also appended to `notify-backlog.sqlite` beside the broker's
database (one row each, JSON, in one transaction per event-loop turn), and deleted once the receiver answered
2xx to the notification that carried it. Memory holds at most `memory_window` entities of a subscription (the
head of its queue); the rest waits on disk and is read back in order as the receiver catches up. At start every
subscription's queue is rebuilt from its rows, so notifications owed at a crash are sent after the restart.

Guarantees and limits:
- At-least-once, in order per subscription: a notification delivered in the instant before its rows were
  deleted is sent again after a crash (the receiver sees it twice; NGSI-LD notifications carry the entity's
  state, so a repeat is harmless to a receiver that keys by observedAt).
- The journal runs with `synchronous=NORMAL` in WAL mode: it survives the broker process being killed, not a
  power cut of the machine (the last transactions before one may be lost). Changes committed but not yet
  matched against the subscriptions (the dispatcher's queue, normally empty) are not yet in the journal: they
  are in the broker database's outbox (`_outbox.py`), written in the write's own transaction; the journal keeps
  the outbox seq it has matched up to (table `outbox`, in the same transaction as the rows it owes), and what is
  above it is matched again at start. The outbox frees rows only up to a watermark committed with
  synchronous=FULL (at most once per `DURABLE_EVERY_S`), so a power cut that loses the journal's last
  transactions finds their changes still in the outbox.
- Bounded: beyond `max_entities` per subscription the oldest are dropped, counted (table `dropped`, a log line
  at the first drop and every 10,000), and never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._json import dumps_bytes, loads
from ._model import Entity

log = logging.getLogger(__name__)

FILE_NAME = "notify-backlog.sqlite"
MEMORY_WINDOW = 2_000  # entities of one subscription held in memory; the rest waits on disk
MAX_ENTITIES = 500_000  # per subscription (60 s away at 1,000 readings/s is 60,000)
DROP_LOG_EVERY = 10_000
# The outbox rows a watermark covers may go only once the watermark survives a power cut: at most this often a
# flush that carries one commits with synchronous=FULL (one fsync, on the event loop), and only then are they freed.
DURABLE_EVERY_S = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS owed (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    subscription TEXT NOT NULL,
    entity BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS owed_by_subscription ON owed (tenant, subscription, seq);
CREATE TABLE IF NOT EXISTS dropped (
    tenant TEXT NOT NULL,
    subscription TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant, subscription)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    journaled INTEGER NOT NULL  -- every change of the broker's outbox up to this seq is matched and owed here
);
"""


def _encode(entity: Entity) -> bytes:
    return dumps_bytes([entity.id, entity.type, entity.attrs, entity.created_at, entity.modified_at,
                        entity.deleted_at])


def _decode(blob: bytes) -> Entity:
    id_, type_, attrs, created, modified, deleted = loads(blob)
    return Entity(id_, type_, attrs, created, modified, deleted)


class NotifyBacklog:
    """The journal of every subscription's owed entities; one per broker, used on its event loop only."""

    def __init__(self, path: Path, *, memory_window: int | None = None, max_entities: int | None = None) -> None:
        self.path = path
        self.memory_window = max(1, memory_window if memory_window is not None else MEMORY_WINDOW)
        self.max_entities = max(1, max_entities if max_entities is not None else MAX_ENTITIES)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._next_seq = (self._db.execute("SELECT max(seq) FROM owed").fetchone()[0] or 0) + 1
        self._inserts: list[tuple[int, str, str, bytes]] = []
        self._acks: dict[tuple[str, str], int] = {}  # delete rows up to and including this seq
        self._drops: dict[tuple[str, str], int] = {}
        self._flush_scheduled = False
        self._outbox_seq: int | None = None  # watermark written by the next flush
        self._durable_at = float("-inf")  # monotonic time of the last flush committed with synchronous=FULL
        self.on_journaled: Callable[[int], None] | None = None  # told each watermark once it is on disk
        self._queues: dict[tuple[str, str], DurableQueue] = {}

    @classmethod
    def beside(cls, database: Path, **kwargs: Any) -> NotifyBacklog:
        """The journal in the directory of the broker's database file (or in that directory itself)."""
        folder = database if database.is_dir() else database.parent
        return cls(folder / FILE_NAME, **kwargs)

    def queue(self, key: tuple[str, str]) -> DurableQueue:
        """The queue of one subscription, holding what its rows say it is owed."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = DurableQueue(self, key)
        return queue

    def forget(self, key: tuple[str, str]) -> None:
        """A deleted subscription: its owed rows and drop count go."""
        self._queues.pop(key, None)
        self.flush()
        self._db.execute("DELETE FROM owed WHERE tenant = ? AND subscription = ?", key)
        self._db.execute("DELETE FROM dropped WHERE tenant = ? AND subscription = ?", key)

    def dropped(self, key: tuple[str, str]) -> int:
        """Entities of this subscription dropped for lack of room since it was created."""
        self.flush()
        row = self._db.execute("SELECT count FROM dropped WHERE tenant = ? AND subscription = ?", key).fetchone()
        return row[0] if row else 0

    def journaled(self, outbox_seq: int) -> None:
        """The outbox's changes up to `outbox_seq` are matched: written with the entities they owe."""
        self._outbox_seq = outbox_seq
        self._schedule()

    def outbox_journaled(self) -> int:
        """The outbox seq the journal holds everything up to (0: none yet)."""
        row = self._db.execute("SELECT journaled FROM outbox WHERE id = 0").fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        """Write what is buffered and close the file."""
        with contextlib.suppress(sqlite3.Error):
            self.flush()
        self._db.close()

    # -- used by DurableQueue ----------------------------------------------------------------------------
    def _seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def _schedule(self) -> None:
        if self._flush_scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
            self._flush_scheduled = True
        except RuntimeError:  # no loop (a synchronous caller): write now
            self.flush()

    def flush(self) -> None:
        """Write the buffered appends, acknowledgements and drops in one transaction."""
        self._flush_scheduled = False
        if not (self._inserts or self._acks or self._drops or self._outbox_seq is not None):
            return
        outbox_seq, self._outbox_seq = self._outbox_seq, None
        inserts, self._inserts = self._inserts, []
        acks, self._acks = self._acks, {}
        drops, self._drops = self._drops, {}
        durable = outbox_seq is not None and time.monotonic() - self._durable_at >= DURABLE_EVERY_S
        try:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")  # this COMMIT syncs the WAL: the watermark is safe
            self._db.execute("BEGIN")
            if inserts:
                self._db.executemany("INSERT INTO owed (seq, tenant, subscription, entity) VALUES (?, ?, ?, ?)",
                                     inserts)
            for (tenant, sub), upto in acks.items():
                self._db.execute("DELETE FROM owed WHERE tenant = ? AND subscription = ? AND seq <= ?",
                                 (tenant, sub, upto))
            for (tenant, sub), count in drops.items():
                self._db.execute("INSERT INTO dropped (tenant, subscription, count) VALUES (?, ?, ?) "
                                 "ON CONFLICT (tenant, subscription) DO UPDATE SET count = count + excluded.count",
                                 (tenant, sub, count))
            if outbox_seq is not None:
                self._db.execute("INSERT INTO outbox (id, journaled) VALUES (0, ?) "
                                 "ON CONFLICT (id) DO UPDATE SET journaled = excluded.journaled", (outbox_seq,))
            self._db.execute("COMMIT")
            if durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            # the entities stay queued in memory; what was only on disk stays owed in the rows already written
            log.error("notification backlog %s: could not write (%s); %d queued entities are held in memory "
                      "only until the next write succeeds", self.path, exc, len(inserts))
            self._inserts[:0] = inserts
            for key, upto in acks.items():
                self._acks[key] = max(upto, self._acks.get(key, 0))
            for key, count in drops.items():
                self._drops[key] = self._drops.get(key, 0) + count
            if outbox_seq is not None and self._outbox_seq is None:
                self._outbox_seq = outbox_seq
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA synchronous=NORMAL")
            return
        if durable and outbox_seq is not None:
            self._durable_at = time.monotonic()
            if self.on_journaled is not None:
                self.on_journaled(outbox_seq)

    def _read(self, key: tuple[str, str], from_seq: int, limit: int) -> list[tuple[int, Entity]]:
        self.flush()
        rows = self._db.execute("SELECT seq, entity FROM owed WHERE tenant = ? AND subscription = ? AND seq >= ? "
                                "ORDER BY seq LIMIT ?", (*key, from_seq, limit)).fetchall()
        return [(seq, _decode(blob)) for seq, blob in rows]

    def _owed(self, key: tuple[str, str]) -> tuple[int, int | None]:
        count, first = self._db.execute("SELECT count(*), min(seq) FROM owed WHERE tenant = ? AND subscription = ?",
                                        key).fetchone()
        return count, first


class DurableQueue:
    """One subscription's FIFO of owed entities: the head in memory, all of it on disk.

    It stands in for the notifier's in-memory deque (`extend`, `popleft`, `len`, truth) and adds `delivered`,
    called when the receiver acknowledged what was popped so far. `limit` is its bound (the notifier drops
    beyond it; this queue drops first, counting, so it never reaches the notifier's own drop)."""

    def __init__(self, backlog: NotifyBacklog, key: tuple[str, str]) -> None:
        self._backlog = backlog
        self._key = key
        self._memory: deque[tuple[int, Entity]] = deque()
        self._total, self._spilled_from = backlog._owed(key)  # rows from seq _spilled_from on are not in memory
        self._popped = 0  # seq of the last entity handed to the sender
        self._dropped = 0
        self._status: Any = None  # the subscription's Status, whose `dropped` this keeps current
        self.limit = backlog.max_entities + 1  # the notifier's overflow check never fires: drops happen here
        if self._total:
            log.info("subscription %s: %d notifications owed from before the restart; sending them first",
                     key[1], self._total)

    def __len__(self) -> int:
        return self._total

    def __bool__(self) -> bool:
        return self._total > 0

    def extend(self, entities: Iterable[Entity]) -> None:
        """Queue entities (journaled in this event-loop turn)."""
        backlog = self._backlog
        for entity in entities:
            seq = backlog._seq()
            backlog._inserts.append((seq, self._key[0], self._key[1], _encode(entity)))
            if self._spilled_from is None and len(self._memory) < backlog.memory_window:
                self._memory.append((seq, entity))
            elif self._spilled_from is None:
                self._spilled_from = seq
            self._total += 1
        backlog._schedule()
        overflow = self._total - backlog.max_entities
        if overflow > 0:
            self._drop(overflow)

    def keep_count(self, status: Any) -> None:
        """Keep `status.dropped` at the number of this subscription's entities dropped since it was created."""
        self._status = status
        status.dropped = self._backlog.dropped(self._key)

    def popleft(self) -> Entity:
        """The oldest owed entity (read back from disk when memory is empty)."""
        if not self._memory:
            self._refill()
        seq, entity = self._memory.popleft()
        self._popped = seq
        self._total -= 1
        return entity

    def delivered(self) -> None:
        """The receiver acknowledged everything popped so far: its rows can go."""
        if self._popped:
            self._backlog._acks[self._key] = self._popped
            self._backlog._schedule()

    def _refill(self) -> None:
        if self._spilled_from is None:
            raise IndexError("pop from an empty notification queue")
        rows = self._backlog._read(self._key, self._spilled_from, self._backlog.memory_window)
        if not rows:  # the rows went (the subscription was forgotten meanwhile)
            self._spilled_from, self._total = None, 0
            raise IndexError("pop from an empty notification queue")
        self._memory.extend(rows)
        held = len(self._memory)
        self._spilled_from = rows[-1][0] + 1 if held < self._total else None

    def _drop(self, count: int) -> None:
        """Drop the `count` oldest (the receiver has been away too long): counted and logged."""
        for _ in range(count):
            self.popleft()
        self._backlog._acks[self._key] = self._popped  # their rows go as if delivered
        self._backlog._drops[self._key] = self._backlog._drops.get(self._key, 0) + count
        if self._status is not None:
            self._status.dropped += count
        before, self._dropped = self._dropped, self._dropped + count
        if before // DROP_LOG_EVERY != self._dropped // DROP_LOG_EVERY or before == 0:
            log.warning("subscription %s: receiver is %d notifications behind; dropped the oldest %d "
                        "(%d dropped since the broker started)", self._key[1], self._backlog.max_entities, count,
                        self._dropped)
