"""Benchmark baseline: the broker store of schema 2 (one history row per attribute instance), kept verbatim.

bench/history_layouts.py loads the same data into this and into the current store, in the same run, so the
new layout's figures are printed beside the old one's. Not used by the broker.

Original docstring: the broker's state in one SQLite file (WAL): tenants, current entities, attribute history, fetched contexts.

Current state and history are separate tables because they answer different questions: `entities` is what the
NGSI-LD entity API serves (one row per entity, attributes as a JSON object keyed by expanded name), and
`history` keeps every accepted attribute instance with its observedAt for the temporal API, so an
offline replay of three fragments leaves three instances even though only the last one is current.
History is one series per (tenant, entity, attribute) clustered by time, so a temporal query reads one range;
new instances are first appended to `history_log` in the request's transaction (cheap to commit) and a
background thread sorts them into `history` every few seconds; readers see both.
One writer connection guarded by a lock (SQLite serializes writers anyway); readers use their own per-thread
connections, so in WAL mode a long history read never holds up ingestion and a write never holds up a read.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from twin_service.broker._json import dumps, loads
from twin_service.broker._model import Entity, now_iso

log = logging.getLogger(__name__)

DATABASE_NAME = "twin.sqlite"
DEFAULT_TENANT = ""  # requests without a tenant header; always exists, as in Orion-LD

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entities (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,          -- expanded IRI
    created_at  TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    attrs       TEXT NOT NULL,          -- JSON object: expanded attribute name -> normalized attribute
    UNIQUE (tenant, id)
);
CREATE INDEX IF NOT EXISTS entities_by_type ON entities (tenant, type);
-- History: one series per (tenant, entity, attribute), instances clustered by series and time, so appending a
-- reading touches one small B-tree and a temporal query reads one contiguous range.
CREATE TABLE IF NOT EXISTS series (
    series_id   INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    attr_name   TEXT NOT NULL,          -- expanded; '' for entity-level events (entity deleted)
    UNIQUE (tenant, entity_id, attr_name)
);
CREATE TABLE IF NOT EXISTS history (
    series_id   INTEGER NOT NULL,
    observed_ts REAL NOT NULL,          -- the time axis: observedAt (else recorded_at) in Unix seconds
    instance_id INTEGER NOT NULL,       -- unique, increasing in arrival order
    recorded_at TEXT NOT NULL,          -- when the broker accepted it (modifiedAt)
    operation   TEXT NOT NULL,          -- create | update | replace | append | merge | delete
    observed_at TEXT,                   -- observedAt as written; NULL when the writer gave none (recorded_at then)
    value,                              -- value/object: a number as is, anything else as JSON text; NULL: deletion
    attribute   TEXT,                   -- JSON of the other members (type, unitCode, sub-attributes…)
    PRIMARY KEY (series_id, observed_ts, instance_id)
) WITHOUT ROWID;
-- Instances land here first (appended in commit order, one small index), and a background mover sorts them into
-- `history` every few seconds: a request's COMMIT then touches a few dozen pages instead of one page per attribute
-- series, and `history` receives many rows per page at once.
CREATE TABLE IF NOT EXISTS history_log (
    series_id   INTEGER NOT NULL,
    observed_ts REAL NOT NULL,
    instance_id INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    operation   TEXT NOT NULL,
    observed_at TEXT,
    value,
    attribute   TEXT
);
CREATE INDEX IF NOT EXISTS history_log_by_series ON history_log (series_id, observed_ts);
CREATE VIEW IF NOT EXISTS all_history AS
    SELECT series_id, observed_ts, instance_id, recorded_at, operation, observed_at, value, attribute FROM history
    UNION ALL
    SELECT series_id, observed_ts, instance_id, recorded_at, operation, observed_at, value, attribute
    FROM history_log;
CREATE TABLE IF NOT EXISTS temporal_entities (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,          -- expanded IRI (the latest type the entity had)
    UNIQUE (tenant, id)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    body        TEXT NOT NULL,          -- JSON: the subscription as stored (expanded names)
    status      TEXT NOT NULL,          -- JSON: timesSent, lastNotification, lastSuccess, lastFailure, status
    UNIQUE (tenant, id)
);
CREATE TABLE IF NOT EXISTS contexts (
    url         TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    fetched_at  TEXT NOT NULL
);
"""


_EPOCH_JULIAN = 2440587.5
# Checkpoints copy the WAL back into the database; done by a background thread every CHECKPOINT_EVERY_S so the
# writer's COMMIT only appends to the WAL. The writer checkpoints itself only if the WAL outgrows this (~200 MB).
_AUTOCHECKPOINT_PAGES = 50_000
_MAX_PERIOD_QUERIES = 2000  # aggregation periods read one query each up to this many
CHECKPOINT_EVERY_S = 1.0
MOVE_EVERY_S = 10.0  # how long instances wait in history_log before they are sorted into history
_NOT_IN_REST = frozenset({"value", "object", "observedAt", "createdAt", "modifiedAt"})
SCHEMA_VERSION = 2  # PRAGMA user_version: 2 = observedAt only in its column (not repeated in `attribute`)
_INSERT_HISTORY = ("INSERT INTO history_log (series_id, observed_ts, instance_id, recorded_at, operation, observed_at, "
                   "value, attribute) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True)
class AttributeInstance:
    """One row of history: an attribute as it was accepted at one moment."""

    instance_id: int
    entity_id: str
    entity_type: str
    attr_name: str | None
    observed_at: str | None
    recorded_at: str
    operation: str
    attribute: dict[str, Any] | None


@dataclass(frozen=True)
class EntityQuery:
    """Filters of `GET /entities`, already expanded; None means "no filter"."""

    types: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None
    id_pattern: str | None = None
    attrs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TimeRange:
    """A temporal query's window on the time axis (Unix seconds): start inclusive, end exclusive; lastN."""

    start: float | None = None
    end: float | None = None
    last_n: int | None = None
    # `timeproperty` (NGSI-LD §6.3.9 / §4.11): observedAt, or the time the broker accepted the instance, which is
    # both its createdAt and its modifiedAt (an instance is never modified after it was recorded)
    axis: str = "observedAt"


@dataclass(frozen=True)
class Bucket:
    """One aggregation period of one attribute (key: the JSON key for per-phase values, None for scalars)."""

    index: int
    key: str | None
    total: int
    distinct: int
    numeric: int
    sum: float | None
    sumsq: float | None
    min: float | None
    max: float | None


class Store:
    """Tenants, entities and history in `<data_dir>/twin.sqlite`; safe to share between threads."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DATABASE_NAME
        self._lock = threading.RLock()
        self._writer_thread: int | None = None  # the thread inside transaction(): it reads its own writes
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._db = self._connect()
        # FULL: an answered request survives a power cut, not only a process crash ("nothing accepted is lost").
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: a batch touches many B-tree pages before COMMIT
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._series: dict[tuple[str, str, str], int] = {}  # series ids, cached (writer side)
        self._new_series: list[tuple[str, str, str]] = []  # created in the open transaction (forgotten on rollback)
        self._last_instance = 0
        # Writes buffered inside a transaction and written with one executemany each just before COMMIT: a batch
        # that updates an entity several times (an offline replay) writes its row once.
        self._pending_updates: dict[tuple[str, str], Entity] = {}
        self._pending_history: list[tuple[Any, ...]] = []
        self._db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
        self._checkpoints = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()
        log.info("broker state in %s", self.path)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.create_function("regexp", 2, _regexp, deterministic=True)
        return db

    def _migrate(self) -> None:
        """Move history written by earlier versions of this broker into the current series/history layout."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(history)")}
        if "value" not in columns:  # series layout before values had their own column
            self._db.execute("ALTER TABLE history ADD COLUMN observed_at TEXT")
            self._db.execute("ALTER TABLE history ADD COLUMN value")
            self._db.execute(
                "UPDATE history SET observed_at = attribute ->> '$.observedAt', "
                "value = CASE WHEN json_type(attribute, '$.value') IN ('integer', 'real') THEN attribute ->> "
                "'$.value' ELSE coalesce(attribute -> '$.value', attribute -> '$.object') END, "
                "attribute = json_remove(attribute, '$.value', '$.object', '$.observedAt') WHERE attribute IS NOT NULL")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            # version 1 kept observedAt in `attribute` and the coalesced time in observed_at
            for table in ("history", "history_log"):
                self._db.execute(f"UPDATE {table} SET observed_at = attribute ->> '$.observedAt', "
                                 "attribute = json_remove(attribute, '$.observedAt') WHERE attribute IS NOT NULL")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        old = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'attribute_instances'").fetchone()
        if old is None:
            return
        log.info("upgrading history in %s to the series layout", self.path)
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("INSERT OR IGNORE INTO series (tenant, entity_id, attr_name) SELECT DISTINCT tenant, "
                         "entity_id, coalesce(attr_name, '') FROM attribute_instances")
        self._db.execute("INSERT OR IGNORE INTO temporal_entities (tenant, id, type) SELECT tenant, entity_id, "
                         "max(entity_type) FROM attribute_instances GROUP BY tenant, entity_id")
        self._db.execute(
            "INSERT OR IGNORE INTO history (series_id, observed_ts, instance_id, recorded_at, operation, observed_at, "
            "value, attribute) SELECT s.series_id, (julianday(coalesce(a.observed_at, a.recorded_at)) - "
            f"{_EPOCH_JULIAN}) * 86400.0, a.instance_id, a.recorded_at, a.operation, "
            "a.observed_at, CASE WHEN a.attribute IS NULL THEN NULL WHEN "
            "json_type(a.attribute, '$.value') IN ('integer', 'real') THEN a.attribute ->> '$.value' ELSE "
            "coalesce(a.attribute -> '$.value', a.attribute -> '$.object') END, "
            "json_remove(a.attribute, '$.value', '$.object', '$.observedAt', '$.createdAt', '$.modifiedAt') "
            "FROM attribute_instances a JOIN series s ON s.tenant = a.tenant AND s.entity_id = a.entity_id "
            "AND s.attr_name = coalesce(a.attr_name, '')")
        self._db.execute("DROP TABLE attribute_instances")
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute("COMMIT")

    def _conn(self) -> sqlite3.Connection:
        """The writer inside the current thread's transaction, else this thread's own reader connection."""
        if self._writer_thread == threading.get_ident():
            return self._db
        reader = getattr(self._local, "db", None)
        if reader is None:
            if self._closed:
                raise sqlite3.ProgrammingError("store closed")
            reader = self._local.db = self._connect()
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    def close(self) -> None:
        """Sort waiting history into place, checkpoint and close (a clean shutdown leaves no WAL behind)."""
        self._checkpoints.set()
        self._checkpointer.join(timeout=30)
        try:
            self.move_history()  # bulk loads through record_instances() end up in the clustered table too
        except sqlite3.Error as exc:
            log.warning("history_log not moved at shutdown (%s); it will be at the next start", exc)
        self._closed = True
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self, after_commit: Callable[[], None] | None = None) -> Iterator[Store]:
        """All writes inside commit together or not at all (one request = one transaction).

        `after_commit` runs right after COMMIT, still holding the write lock, so whatever it announces is
        announced in commit order.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._writer_thread = threading.get_ident()
            self._new_series.clear()
            try:
                yield self
                self._flush()
            except BaseException:
                self._writer_thread = None
                self._pending_updates.clear()
                self._pending_history.clear()
                self._db.execute("ROLLBACK")
                for key in self._new_series:
                    self._series.pop(key, None)
                raise
            self._writer_thread = None
            self._db.execute("COMMIT")
            if after_commit is not None:
                after_commit()

    def _flush(self) -> None:
        if self._pending_updates:
            self._db.executemany("UPDATE entities SET type = ?, modified_at = ?, attrs = ? WHERE tenant = ? AND id = ?",
                                 [(e.type, e.modified_at, dumps(e.attrs), tenant, e.id)
                                  for (tenant, _), e in self._pending_updates.items()])
            self._pending_updates.clear()
        if self._pending_history:
            self._db.executemany(_INSERT_HISTORY, self._pending_history)
            self._pending_history.clear()

    def _checkpoint_loop(self) -> None:
        """Background WAL checkpoints (PASSIVE: never waits for readers or writer) and history moves."""
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=100")
        last_move = time.monotonic()
        try:
            while not self._checkpoints.wait(CHECKPOINT_EVERY_S):
                if time.monotonic() - last_move >= MOVE_EVERY_S:
                    last_move = time.monotonic()
                    try:
                        self.move_history()
                    except sqlite3.Error as exc:
                        log.warning("moving recent history into place failed (%s); retrying later", exc)
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.debug("background checkpoint skipped: %s", exc)
        finally:
            db.close()

    def move_history(self, series_per_transaction: int = 500) -> int:
        """Sort the instances in `history_log` into `history`, a range of series per short transaction."""
        if self._closed:
            return 0
        with self._lock:
            top = self._db.execute("SELECT max(rowid) FROM history_log").fetchone()[0]
            if top is None:
                return 0
            series = [row[0] for row in self._db.execute(
                "SELECT DISTINCT series_id FROM history_log ORDER BY series_id").fetchall()]
        moved = 0
        for start in range(0, len(series), series_per_transaction):
            low, high = series[start], series[min(start + series_per_transaction, len(series)) - 1]
            with self.transaction():
                moved += self._db.execute(
                    "INSERT OR IGNORE INTO history (series_id, observed_ts, instance_id, recorded_at, operation, "
                    "observed_at, value, attribute) SELECT series_id, observed_ts, instance_id, recorded_at, "
                    "operation, observed_at, value, attribute FROM history_log WHERE series_id BETWEEN ? AND ? "
                    "AND rowid <= ? ORDER BY series_id, observed_ts, instance_id", (low, high, top)).rowcount
                self._db.execute("DELETE FROM history_log WHERE series_id BETWEEN ? AND ? AND rowid <= ?",
                                 (low, high, top))
        return moved

    def _write(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(args))

    # -- tenants ---------------------------------------------------------------------------------------
    def tenant_exists(self, tenant: str) -> bool:
        """Whether anything was ever created in this tenant (the default tenant always exists)."""
        if tenant == DEFAULT_TENANT:
            return True
        return self._conn().execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)).fetchone() is not None

    def ensure_tenant(self, tenant: str) -> None:
        """Create the tenant on first write (NGSI-LD creates tenants implicitly)."""
        if tenant == DEFAULT_TENANT:
            return
        cursor = self._write("INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)", (tenant, now_iso()))
        if cursor.rowcount:
            log.info("tenant %r created", tenant)

    def tenants(self) -> list[str]:
        """Every tenant created so far."""
        return [row["name"] for row in self._conn().execute("SELECT name FROM tenants ORDER BY name")]

    # -- entities --------------------------------------------------------------------------------------
    def get_entity(self, tenant: str, entity_id: str) -> Entity | None:
        """The current state of one entity, or None."""
        if self._writer_thread == threading.get_ident():
            pending = self._pending_updates.get((tenant, entity_id))
            if pending is not None:
                return Entity(pending.id, pending.type, dict(pending.attrs), pending.created_at, pending.modified_at)
        row = self._conn().execute("SELECT * FROM entities WHERE tenant = ? AND id = ?",
                                   (tenant, entity_id)).fetchone()
        return _entity(row) if row else None

    def query_entities(self, tenant: str, query: EntityQuery, limit: int, offset: int,
                       keep: Callable[[Entity], bool] | None = None) -> tuple[list[Entity], int]:
        """One page of matching entities in creation order, and how many match in total.

        `keep` filters in Python what SQL cannot (the q language); then paging happens after it.
        """
        clause, args = _entity_filter(query, _HAS_ATTRS_NOW)
        db = self._conn()
        if keep is None:
            total = db.execute(f"SELECT count(*) FROM entities WHERE tenant = ? {clause}",
                               [tenant, *args]).fetchone()[0]
            rows = db.execute(f"SELECT * FROM entities WHERE tenant = ? {clause} ORDER BY rowid LIMIT ? OFFSET ?",
                              [tenant, *args, limit, offset]).fetchall()
            return [_entity(row) for row in rows], total
        page: list[Entity] = []
        total = 0
        for row in db.execute(f"SELECT * FROM entities WHERE tenant = ? {clause} ORDER BY rowid", [tenant, *args]):
            entity = _entity(row)
            if keep(entity):
                if offset <= total < offset + limit:
                    page.append(entity)
                total += 1
        return page, total

    def entities_of(self, tenant: str, query: EntityQuery) -> Iterator[Entity]:
        """Every entity matching the filter (periodic subscriptions)."""
        clause, args = _entity_filter(query, _HAS_ATTRS_NOW)
        for row in self._conn().execute(f"SELECT * FROM entities WHERE tenant = ? {clause} ORDER BY rowid",
                                        [tenant, *args]).fetchall():
            yield _entity(row)

    def type_attributes(self, tenant: str) -> list[tuple[str, str, str, int]]:
        """(entity type, attribute name, attribute type, entity count) over the tenant's current entities."""
        rows = self._conn().execute(
            "SELECT e.type AS etype, j.key AS name, json_extract(j.value, '$.type') AS atype, count(*) AS n "
            "FROM entities e, json_each(e.attrs) j WHERE e.tenant = ? GROUP BY e.type, j.key, atype", (tenant,))
        return [(row["etype"], row["name"], row["atype"], row["n"]) for row in rows]

    def type_counts(self, tenant: str) -> dict[str, int]:
        """Entity type -> how many current entities have it."""
        rows = self._conn().execute("SELECT type, count(*) AS n FROM entities WHERE tenant = ? GROUP BY type",
                                    (tenant,))
        return {row["type"]: row["n"] for row in rows}

    def insert_entity(self, tenant: str, entity: Entity) -> None:
        """Store a new entity (the caller checked it does not exist)."""
        self._write("INSERT INTO entities (tenant, id, type, created_at, modified_at, attrs) VALUES (?, ?, ?, ?, ?, ?)",
                    (tenant, entity.id, entity.type, entity.created_at, entity.modified_at, dumps(entity.attrs)))
        self._write("INSERT INTO temporal_entities (tenant, id, type) VALUES (?, ?, ?) "
                    "ON CONFLICT (tenant, id) DO UPDATE SET type = excluded.type", (tenant, entity.id, entity.type))

    def update_entity(self, tenant: str, entity: Entity) -> None:
        """Overwrite the stored state of an existing entity (its creation order is kept)."""
        if self._writer_thread == threading.get_ident():
            self._pending_updates[(tenant, entity.id)] = entity
            return
        self._write("UPDATE entities SET type = ?, modified_at = ?, attrs = ? WHERE tenant = ? AND id = ?",
                    (entity.type, entity.modified_at, dumps(entity.attrs), tenant, entity.id))

    def delete_entity(self, tenant: str, entity_id: str) -> bool:
        """Remove an entity's current state (its history stays); False when there was none."""
        self._pending_updates.pop((tenant, entity_id), None)
        return self._write("DELETE FROM entities WHERE tenant = ? AND id = ?", (tenant, entity_id)).rowcount > 0

    # -- history ---------------------------------------------------------------------------------------
    def _series_id(self, tenant: str, entity_id: str, attr_name: str) -> int:
        """The series of one attribute, created on first use (writer side, inside a transaction)."""
        key = (tenant, entity_id, attr_name)
        series_id = self._series.get(key)
        if series_id is None:
            row = self._db.execute("SELECT series_id FROM series WHERE tenant = ? AND entity_id = ? AND "
                                   "attr_name = ?", key).fetchone()
            if row is None:
                series_id = self._db.execute("INSERT INTO series (tenant, entity_id, attr_name) VALUES (?, ?, ?)",
                                             key).lastrowid
                self._new_series.append(key)
            else:
                series_id = row[0]
            if len(self._series) > 1_000_000:
                self._series.clear()
            self._series[key] = series_id
        return series_id

    def _instance_id(self) -> int:
        """A unique, increasing instance id: microseconds since the epoch, bumped when the clock repeats."""
        self._last_instance = max(self._last_instance + 1, time.time_ns() // 1000)
        return self._last_instance

    def record_instances(self, tenant: str, entity: Entity, attrs: Iterable[str], operation: str,
                         recorded_at: str) -> None:
        """Append the given attributes of `entity`, as they are now, to the history."""
        recorded_ts = epoch_seconds(recorded_at)
        rows = []
        with self._lock:
            for name in attrs:
                attribute = entity.attrs[name]
                observed = attribute.get("observedAt")
                value = attribute["object"] if "object" in attribute else attribute.get("value")
                rest = {k: v for k, v in attribute.items() if k not in _NOT_IN_REST}
                rows.append((self._series_id(tenant, entity.id, name),
                             epoch_seconds(observed) if observed else recorded_ts, self._instance_id(),
                             recorded_at, operation, observed,
                             value if type(value) in (int, float) else dumps(value), dumps(rest)))
            if self._writer_thread == threading.get_ident():
                self._pending_history.extend(rows)
            else:
                self._db.executemany(_INSERT_HISTORY, rows)

    def _record_mark(self, tenant: str, entity_id: str, attr_name: str, recorded_at: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO history (series_id, observed_ts, instance_id, recorded_at, operation) "
                             "VALUES (?, ?, ?, ?, 'delete')", (self._series_id(tenant, entity_id, attr_name),
                                                              epoch_seconds(recorded_at), self._instance_id(),
                                                              recorded_at))

    def record_attribute_deletion(self, tenant: str, entity_id: str, entity_type: str, attr_name: str,
                                  recorded_at: str) -> None:
        """Mark in history that one attribute was deleted (it has no values from then on)."""
        self._record_mark(tenant, entity_id, attr_name, recorded_at)

    def record_deletion(self, tenant: str, entity_id: str, entity_type: str, recorded_at: str) -> None:
        """Mark in history that the entity was deleted (the temporal API reports deletedAt)."""
        self._record_mark(tenant, entity_id, "", recorded_at)

    # -- temporal provision (NGSI-LD §5.6.11-§5.6.16: history written and deleted directly) ----------------
    def record_temporal_entity(self, tenant: str, entity_id: str, entity_type: str) -> bool:
        """Register an entity's temporal representation (it need not exist now); True when it is new."""
        existed = self._db.execute("SELECT 1 FROM temporal_entities WHERE tenant = ? AND id = ?",
                                   (tenant, entity_id)).fetchone() is not None
        self._write("INSERT INTO temporal_entities (tenant, id, type) VALUES (?, ?, ?) "
                    "ON CONFLICT (tenant, id) DO UPDATE SET type = excluded.type", (tenant, entity_id, entity_type))
        return not existed

    def delete_history(self, tenant: str, entity_id: str, attr_name: str | None = None) -> bool:
        """Delete every instance of one attribute (or of the whole entity: all its series and, unless the entity
        exists now, its temporal representation); False when there was nothing to delete."""
        if attr_name is None:
            rows = self._db.execute("SELECT series_id, attr_name FROM series WHERE tenant = ? AND entity_id = ?",
                                    (tenant, entity_id)).fetchall()
        else:
            rows = self._db.execute("SELECT series_id, attr_name FROM series WHERE tenant = ? AND entity_id = ? "
                                    "AND attr_name = ?", (tenant, entity_id, attr_name)).fetchall()
        self._flush()
        for series_id, name in rows:
            for table in ("history", "history_log", "series"):
                self._write(f"DELETE FROM {table} WHERE series_id = ?", (series_id,))
            self._series.pop((tenant, entity_id, name), None)
        if attr_name is not None:
            return bool(rows)
        exists_now = self._db.execute("SELECT 1 FROM entities WHERE tenant = ? AND id = ?",
                                      (tenant, entity_id)).fetchone() is not None
        if exists_now:
            return True
        return self._write("DELETE FROM temporal_entities WHERE tenant = ? AND id = ?",
                           (tenant, entity_id)).rowcount > 0 or bool(rows)

    def delete_instance(self, tenant: str, entity_id: str, attr_name: str, instance_id: int) -> bool:
        """Delete one attribute instance by its id; False when the attribute has no such instance."""
        row = self._db.execute("SELECT series_id FROM series WHERE tenant = ? AND entity_id = ? AND attr_name = ?",
                               (tenant, entity_id, attr_name)).fetchone()
        if row is None:
            return False
        self._flush()
        return sum(self._write(f"DELETE FROM {table} WHERE series_id = ? AND instance_id = ? AND "
                               "operation != 'delete'", (row[0], instance_id)).rowcount
                   for table in ("history", "history_log")) > 0

    def history(self, tenant: str, entity_id: str, attr_name: str | None = None) -> list[AttributeInstance]:
        """Every recorded instance of an entity's attributes (one attribute if named), in arrival order."""
        sql = ("SELECT h.*, s.attr_name, t.type AS entity_type FROM all_history h JOIN series s USING (series_id) "
               "JOIN temporal_entities t ON t.tenant = s.tenant AND t.id = s.entity_id "
               "WHERE s.tenant = ? AND s.entity_id = ?")
        args: list[Any] = [tenant, entity_id]
        if attr_name is not None:
            sql += " AND s.attr_name = ?"
            args.append(attr_name)
        rows = self._conn().execute(sql + " ORDER BY h.instance_id", args).fetchall()
        out = []
        for row in rows:
            attribute = (_instance(row["value"], row["attribute"], row["observed_at"]) if row["attribute"]
                         else None)
            out.append(AttributeInstance(row["instance_id"], entity_id, row["entity_type"], row["attr_name"] or None,
                                         attribute.get("observedAt") if attribute else None, row["recorded_at"],
                                         row["operation"], attribute))
        return out

    # -- temporal queries --------------------------------------------------------------------------------
    def temporal_entities(self, tenant: str, query: EntityQuery, limit: int,
                          offset: int) -> tuple[list[tuple[str, str]], int]:
        """(id, expanded type) of entities with history, current or deleted, in first-creation order."""
        clause, args = _entity_filter(query, _HAS_ATTRS_IN_HISTORY)
        db = self._conn()
        total = db.execute(f"SELECT count(*) FROM temporal_entities t WHERE tenant = ? {clause}",
                           [tenant, *args]).fetchone()[0]
        rows = db.execute(f"SELECT id, type FROM temporal_entities t WHERE tenant = ? {clause} "
                          "ORDER BY rowid LIMIT ? OFFSET ?", [tenant, *args, limit, offset]).fetchall()
        return [(row["id"], row["type"]) for row in rows], total

    def temporal_entity(self, tenant: str, entity_id: str) -> tuple[str, str | None] | None:
        """(expanded type, deletedAt or None) of an entity with history, None if it never existed."""
        db = self._conn()
        row = db.execute("SELECT type FROM temporal_entities WHERE tenant = ? AND id = ?",
                         (tenant, entity_id)).fetchone()
        if row is None:
            return None
        deleted = None
        if db.execute("SELECT 1 FROM entities WHERE tenant = ? AND id = ?", (tenant, entity_id)).fetchone() is None:
            mark = db.execute("SELECT max(h.recorded_at) FROM history h JOIN series s USING (series_id) "
                              "WHERE s.tenant = ? AND s.entity_id = ? AND s.attr_name = ''",
                              (tenant, entity_id)).fetchone()
            deleted = mark[0] if mark else None
        return row["type"], deleted

    def history_attributes(self, tenant: str, entity_id: str) -> list[tuple[str, int]]:
        """(attribute name, series id) of every attribute an entity's history holds."""
        rows = self._conn().execute("SELECT attr_name, series_id FROM series WHERE tenant = ? AND entity_id = ? "
                                    "AND attr_name != '' ORDER BY series_id", (tenant, entity_id)).fetchall()
        return [(row[0], row[1]) for row in rows]

    def _source(self, series_id: int) -> str:
        """`history` when the series has nothing waiting in history_log (one index seek), else the union view.

        Reading through the UNION ALL view costs a merge per row; most series most of the time have nothing
        waiting, and a day of 1 Hz is 86,400 rows.
        """
        waiting = self._conn().execute("SELECT 1 FROM history_log WHERE series_id = ? LIMIT 1",
                                       (series_id,)).fetchone()
        return "all_history" if waiting else "history"

    def _window(self, series_id: int, window: TimeRange) -> tuple[str, list[Any]]:
        """A sub-select of one series' instances inside the window (lastN: the newest N of them)."""
        observed = window.axis == "observedAt"
        axis = "observed_ts" if observed else f"((julianday(recorded_at) - {_EPOCH_JULIAN}) * 86400.0)"
        sql = (f"SELECT instance_id, observed_ts, {axis} AS t, observed_at, "
               f"{'coalesce(observed_at, recorded_at)' if observed else 'recorded_at'} AS at, "
               f"recorded_at, value, attribute FROM "
               f"{self._source(series_id)} "
               "WHERE series_id = ? AND operation != 'delete'")
        args: list[Any] = [series_id]
        if window.start is not None:
            sql += f" AND {axis} >= ?"
            args.append(window.start)
        if window.end is not None:
            sql += f" AND {axis} < ?"
            args.append(window.end)
        if window.last_n is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY t DESC, instance_id DESC LIMIT ?)"
            args.append(window.last_n)
        return sql, args

    def instances(self, series_id: int, window: TimeRange) -> list[tuple[int, str, str, dict[str, Any]]]:
        """(instance id, time, recorded at, attribute) of one series inside the window, oldest first."""
        sql, args = self._window(series_id, window)
        rows = self._conn().execute(f"SELECT * FROM ({sql}) ORDER BY t, instance_id", args).fetchall()
        return [(row["instance_id"], row["at"], row["recorded_at"],
                 _instance(row["value"], row["attribute"], row["observed_at"])) for row in rows]

    def temporal_values_json(self, series_id: int, window: TimeRange) -> tuple[str, str | None]:
        """The `[[value, time], …]` array as JSON text built by SQLite, and the attribute type.

        A day of 1 Hz history is 86,400 pairs: building them in C and splicing the text into the response
        avoids decoding and re-encoding every instance in Python.
        """
        sql, args = self._window(series_id, window)
        row = self._conn().execute(
            "SELECT json_group_array(json_array(CASE WHEN typeof(value) = 'text' THEN json(value) ELSE value END, "
            "at)) AS pairs, (SELECT attribute ->> '$.type' FROM all_history WHERE series_id = ? AND "
            "operation != 'delete' LIMIT 1) AS kind "
            f"FROM (SELECT * FROM ({sql}) ORDER BY t, instance_id)", [series_id, *args]).fetchone()
        return row["pairs"], row["kind"]

    def aggregate(self, series_id: int, window: TimeRange, origin: float, period_s: float,
                  counts: bool = False, distinct: bool = False) -> list[Bucket]:
        """Per-period statistics of one series; object values (per-phase) are aggregated per key.

        Periods are read one range query each (the rows come out of the clustered index in time order, so no
        sorter is needed); numbers are stored as SQL numbers and aggregated directly, JSON values go through
        `json_each`, one row per key of an object. Many small periods, or lastN, fall back to one GROUP BY.
        """
        db = self._conn()
        sample = db.execute("SELECT typeof(value) FROM all_history WHERE series_id = ? AND operation != 'delete' "
                            "LIMIT 1", (series_id,)).fetchone()
        if sample is None:
            return []
        # two queries: SQLite answers a lone min() or max() with one index seek, both together with a scan
        low = window.start if window.start is not None else self.first_observed(series_id)
        high = window.end if window.end is not None else self._last_observed(series_id) + 1e-6
        first, last = math.floor((low - origin) / period_s), math.floor((high - origin) / period_s)
        if window.last_n is not None or window.axis != "observedAt" or last - first > _MAX_PERIOD_QUERIES:
            return self._aggregate_grouped(series_id, window, origin, period_s)
        numeric = sample[0] in ("integer", "real")
        source = self._source(series_id)
        distinct_sql = "count(DISTINCT value)" if distinct else "NULL"
        out: list[Bucket] = []
        for index in range(first, last + 1):
            start, end = max(low, origin + index * period_s), min(high, origin + (index + 1) * period_s)
            if start >= end:
                continue
            if numeric:
                stats = db.execute(
                    f"SELECT count(*), sum(value), sum(value * value), min(value), max(value) FROM {source} "
                    "WHERE series_id = ? AND observed_ts >= ? AND observed_ts < ? AND typeof(value) IN "
                    "('integer', 'real')", (series_id, start, end)).fetchone()
                total, distinct_n = stats[0], 0
                if counts:  # totalCount/distinctCount also count non-numeric values; a second pass only then
                    total, distinct_n = db.execute(
                        f"SELECT count(*), {distinct_sql} FROM {source} WHERE series_id = ? AND observed_ts >= ? "
                        "AND observed_ts < ? AND value IS NOT NULL", (series_id, start, end)).fetchone()
                if total:
                    out.append(Bucket(index, None, total, distinct_n or 0, stats[0], stats[1], stats[2], stats[3],
                                      stats[4]))
                continue
            rows = db.execute(
                f"SELECT key, count(*) AS total, {distinct_sql.replace('value', 'v')} AS distinct_n, "
                "count(num) AS numeric_n, sum(num) AS total_sum, sum(num * num) AS total_sumsq, "
                "min(num) AS vmin, max(num) AS vmax FROM (SELECT j.key AS key, coalesce(j.atom, j.value) AS v, "
                "CASE WHEN j.type IN ('integer', 'real') THEN j.value END AS num "
                f"FROM {source} AS h, json_each(h.value) AS j WHERE h.series_id = ? AND h.operation != 'delete' "
                "AND h.observed_ts >= ? AND h.observed_ts < ?) GROUP BY key ORDER BY key",
                (series_id, start, end)).fetchall()
            out += [Bucket(index, row["key"], row["total"], row["distinct_n"] or 0, row["numeric_n"],
                           row["total_sum"], row["total_sumsq"], row["vmin"], row["vmax"]) for row in rows]
        return out

    def _aggregate_grouped(self, series_id: int, window: TimeRange, origin: float, period_s: float) -> list[Bucket]:
        """One GROUP BY over the whole window (many periods, or lastN)."""
        sql, args = self._window(series_id, window)
        rows = self._conn().execute(
            "SELECT bucket, key, count(*) AS total, count(DISTINCT v) AS distinct_n, count(num) AS numeric_n, "
            "sum(num) AS total_sum, sum(num * num) AS total_sumsq, min(num) AS vmin, max(num) AS vmax FROM ("
            " SELECT CAST((w.t - ?) / ? AS INTEGER) AS bucket, j.key AS key,"
            " CASE WHEN j.type IS NULL THEN w.value ELSE coalesce(j.atom, j.value) END AS v,"
            " CASE WHEN j.type IS NULL THEN (CASE WHEN typeof(w.value) IN ('integer', 'real') THEN w.value END)"
            "  WHEN j.type IN ('integer', 'real') THEN j.value END AS num"
            f" FROM ({sql}) AS w LEFT JOIN json_each(CASE WHEN typeof(w.value) = 'text' THEN w.value END) AS j) "
            "GROUP BY bucket, key ORDER BY bucket, key", [origin, period_s, *args]).fetchall()
        return [Bucket(row["bucket"], row["key"], row["total"], row["distinct_n"], row["numeric_n"],
                       row["total_sum"], row["total_sumsq"], row["vmin"], row["vmax"]) for row in rows]

    def first_observed(self, series_id: int) -> float | None:
        """The earliest time of a series (aggregation periods start there without timeAt)."""
        return self._bound("min", series_id)

    def _last_observed(self, series_id: int) -> float:
        bound = self._bound("max", series_id)
        return bound if bound is not None else 0.0

    def _bound(self, function: str, series_id: int) -> float | None:
        """min or max observed_ts over both tables: one index seek each (not through the view, which scans)."""
        db = self._conn()
        values = [db.execute(f"SELECT {function}(observed_ts) FROM {table} WHERE series_id = ?",
                             (series_id,)).fetchone()[0] for table in ("history", "history_log")]
        present = [v for v in values if v is not None]
        if not present:
            return None
        return min(present) if function == "min" else max(present)

    def prune_history(self, before_ts: float, series_per_transaction: int = 200) -> int:
        """Delete instances observed before `before_ts`, series by series, in short transactions.

        Each delete is a range at the start of one series' clustered B-tree, so a pass costs what it removes
        plus one seek per series, and ingestion waits at most for one short transaction.
        """
        series = [row[0] for row in self._conn().execute("SELECT series_id FROM series").fetchall()]
        deleted = 0
        for start in range(0, len(series), series_per_transaction):
            with self.transaction():
                for series_id in series[start:start + series_per_transaction]:
                    for table in ("history", "history_log"):
                        deleted += self._db.execute(f"DELETE FROM {table} WHERE series_id = ? AND observed_ts < ?",
                                                    (series_id, before_ts)).rowcount
        return deleted

    # -- subscriptions ------------------------------------------------------------------------------------
    def put_subscription(self, tenant: str, sub_id: str, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Create or overwrite a subscription."""
        self._write("INSERT OR REPLACE INTO subscriptions (tenant, id, body, status) VALUES (?, ?, ?, ?)",
                    (tenant, sub_id, dumps(body), dumps(status)))

    def save_subscription_status(self, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Persist notification counters and times of several subscriptions at once."""
        with self._lock:
            self._db.executemany("UPDATE subscriptions SET status = ? WHERE tenant = ? AND id = ?",
                                 [(dumps(status), tenant, sub_id) for tenant, sub_id, status in rows])

    def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        """Remove a subscription; False when it did not exist."""
        return self._write("DELETE FROM subscriptions WHERE tenant = ? AND id = ?", (tenant, sub_id)).rowcount > 0

    def subscriptions(self) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
        """Every stored subscription: (tenant, id, body, status), in creation order."""
        rows = self._conn().execute("SELECT * FROM subscriptions ORDER BY rowid").fetchall()
        return [(row["tenant"], row["id"], loads(row["body"]), loads(row["status"])) for row in rows]

    # -- fetched @context documents (ContextCache) -----------------------------------------------------
    def get_context_document(self, url: str) -> dict[str, Any] | None:
        """A context document fetched earlier, so a restart needs no network for it."""
        row = self._conn().execute("SELECT document FROM contexts WHERE url = ?", (url,)).fetchone()
        return loads(row["document"]) if row else None

    def put_context_document(self, url: str, document: dict[str, Any]) -> None:
        """Remember a fetched context document."""
        self._write("INSERT OR REPLACE INTO contexts (url, document, fetched_at) VALUES (?, ?, ?)",
                    (url, dumps(document), now_iso()))

    def context_documents(self) -> list[tuple[str, str]]:
        """(url, stored at) of every context document kept, oldest first (the @context management API)."""
        rows = self._conn().execute("SELECT url, fetched_at FROM contexts ORDER BY fetched_at, url").fetchall()
        return [(row["url"], row["fetched_at"]) for row in rows]

    def delete_context_document(self, url: str) -> bool:
        """Forget a context document; False when none was kept under that url."""
        return self._write("DELETE FROM contexts WHERE url = ?", (url,)).rowcount > 0


# How "has one of these attributes" reads against current entities and against history ({marks}: placeholders).
_HAS_ATTRS_NOW = "EXISTS (SELECT 1 FROM json_each(entities.attrs) WHERE key IN ({marks}))"
_HAS_ATTRS_IN_HISTORY = ("EXISTS (SELECT 1 FROM series s WHERE s.tenant = t.tenant AND s.entity_id = t.id AND "
                         "s.attr_name IN ({marks}))")


def _entity_filter(query: EntityQuery, has_attrs: str) -> tuple[str, list[Any]]:
    """SQL ` AND …` conditions and their arguments for a query's types, ids, idPattern and attrs."""
    where: list[str] = []
    args: list[Any] = []
    if query.types is not None:
        where.append(f"type IN ({_marks(query.types)})")
        args += query.types
    if query.ids is not None:
        where.append(f"id IN ({_marks(query.ids)})")
        args += query.ids
    if query.id_pattern is not None:
        where.append("regexp(?, id)")
        args.append(query.id_pattern)
    if query.attrs is not None:
        where.append(has_attrs.format(marks=_marks(query.attrs)))
        args += query.attrs
    return "".join(f" AND {w}" for w in where), args


def _instance(value: Any, rest: str, observed_at: str | None) -> dict[str, Any]:
    """An attribute instance rebuilt from its stored value, observedAt and other members."""
    attribute = loads(rest)
    if isinstance(value, str):
        value = loads(value)
    attribute["object" if attribute.get("type") == "Relationship" else "value"] = value
    if observed_at is not None:
        attribute["observedAt"] = observed_at
    return attribute


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" * len(values))


@lru_cache(maxsize=4096)
def epoch_seconds(text: str) -> float:
    """Unix seconds of a stored DateTime (cached: all attributes of one meter reading share one observedAt)."""
    return datetime.fromisoformat(text).timestamp()


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str) -> bool:
    """`idPattern` matching: unanchored search, like the POSIX regexec Orion-LD uses (edge checked syntax)."""
    return _compiled(pattern).search(value) is not None


def _entity(row: sqlite3.Row) -> Entity:
    return Entity(row["id"], row["type"], loads(row["attrs"]), row["created_at"], row["modified_at"])
