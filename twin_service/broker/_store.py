"""The broker's state in one SQLite file (WAL): tenants, current entities, history, rollups, fetched contexts.

Current state and history are separate tables because they answer different questions: `entities` is what the
NGSI-LD entity API serves (one row per entity, attributes as a JSON object keyed by expanded name), and the
history keeps every accepted attribute instance with its observedAt for the temporal API, so an offline replay
of three fragments leaves three instances even though only the last one is current.

History layout (schema 3): one *wide* row per entity and observedAt (`readings`), clustered by entity and time.
Every attribute name the store has seen gets a column (`a<id>`: numbers as SQL numbers, anything else as JSON
text, NULL when the row does not carry that attribute); what is constant across instances of an attribute (its
type, unitCode, sub-attributes) is interned once in `shapes`, and a row points at the combination it uses
(`layouts`). observedAt and the accepted time are stored as Unix seconds and printed back exactly as written
(a time that would not print back identically is kept as text). A meter message of ~30 attributes is one row
of ~0.5 KB instead of 30 rows of ~200 bytes. New rows are first appended to `readings_log` in the request's
transaction (cheap to commit) and a background mover sorts them into `readings` every few seconds, writing the
1-min / 10-min / 1-hour rollup buckets that closes in the same transaction (see _rollups.py); readers see both
tables, and the open buckets through their raw rows.

One writer connection guarded by a lock (SQLite serializes writers anyway); readers use their own per-thread
connections, so in WAL mode a long history read never holds up ingestion and a write never holds up a read.

The history methods below are the store API the temporal handlers use: `history_attributes` names the series of
an entity, `instances` / `temporal_values_json` / `aggregate` read one series in a window,
`append_instances` writes instances, `delete_instance` removes one, `prune_history` / `prune_rollups` apply
retention.
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
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import Any

from . import _legacy, _rollups
from ._json import dumps, loads
from ._model import Entity, format_datetime, now_iso
from ._repeats import Piece, RepeatFilter

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
-- Every entity that ever had history; its rowid is the entity key of the history tables.
CREATE TABLE IF NOT EXISTS temporal_entities (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,          -- expanded IRI (the latest type the entity had)
    UNIQUE (tenant, id)
);
-- One series per (tenant, entity, attribute): what the temporal API lists; '' is the entity's deletion marks.
CREATE TABLE IF NOT EXISTS series (
    series_id   INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    attr_name   TEXT NOT NULL,          -- expanded; '' for entity-level events (entity deleted)
    entity_key  INTEGER,                -- temporal_entities.rowid
    attr_id     INTEGER,                -- history_attrs.attr_id (NULL for '')
    UNIQUE (tenant, entity_id, attr_name)
);
-- Attribute names with their column in readings (in_column = 0: kept in the `extra` JSON of the row).
CREATE TABLE IF NOT EXISTS history_attrs (
    attr_id     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    in_column   INTEGER NOT NULL,
    members     TEXT                -- JSON [[key, kind], ...]: objects of exactly these members (kind n: number,
                                    -- b: boolean) live in the columns a<id>_<i> (see Store._flattened)
);
CREATE TABLE IF NOT EXISTS shapes (       -- the members of an attribute besides value/object/observedAt, as JSON
    shape_id    INTEGER PRIMARY KEY,
    rest        TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS layouts (      -- which shape each attribute of a row has: JSON {"attr_id": shape_id}
    layout_id   INTEGER PRIMARY KEY,
    slots       TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS readings (
    entity_key  INTEGER NOT NULL,
    observed_ts REAL NOT NULL,          -- the time axis: observedAt (else the accepted time) in Unix seconds
    instance_id INTEGER NOT NULL,       -- unique, increasing in arrival order
    recorded    NOT NULL,               -- when the broker accepted it (modifiedAt): Unix seconds, or the text
    operation   NOT NULL,               -- index in _OPERATIONS (or the text of another operation)
    observed,                           -- NULL: no observedAt given; 1: observed_ts printed; else the text
    layout      INTEGER NOT NULL,
    extra       TEXT,                   -- JSON {"attr_id": value} of attributes beyond the column budget
    PRIMARY KEY (entity_key, observed_ts, instance_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings_log (
    entity_key  INTEGER NOT NULL,
    observed_ts REAL NOT NULL,
    instance_id INTEGER NOT NULL,
    recorded    NOT NULL,
    operation   NOT NULL,
    observed,
    layout      INTEGER NOT NULL,
    extra       TEXT
);
CREATE INDEX IF NOT EXISTS readings_log_by_entity ON readings_log (entity_key, observed_ts);
CREATE TABLE IF NOT EXISTS history_marks (  -- an attribute (or, for series '', the entity) deleted at that time
    series_id   INTEGER NOT NULL,
    observed_ts REAL NOT NULL,
    instance_id INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (series_id, observed_ts, instance_id)
) WITHOUT ROWID;
-- Per rollup period, the first bucket retention kept (Store.prune_rollups deleted the ones before it): below it
-- an aggregation reads the raw rows instead of that period's rollups, where raw rows are still kept.
CREATE TABLE IF NOT EXISTS rollup_retention (
    period_s    INTEGER PRIMARY KEY,
    kept_from   INTEGER NOT NULL        -- bucket number (starts at kept_from * period_s)
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
""" + _rollups.ROLLUP_SCHEMA
_INDEXES = "CREATE INDEX IF NOT EXISTS series_by_slot ON series (entity_key, attr_id);"

# Checkpoints copy the WAL back into the database; done by a background thread every CHECKPOINT_EVERY_S so the
# writer's COMMIT only appends to the WAL. The writer checkpoints itself only if the WAL outgrows this (~200 MB).
_AUTOCHECKPOINT_PAGES = 50_000
_MAX_PERIOD_QUERIES = 2000  # aggregation periods read one query each up to this many
CHECKPOINT_EVERY_S = 1.0
WRITER_CACHE_KIB = 16 * 1024  # the writer connection's SQLite page cache (readers keep SQLite's 2 MiB)
# how long readings wait in readings_log before they are sorted into readings; the move holds the write lock for
# one short transaction per 50 entities, so ingestion interleaves with it instead of waiting for the whole pass
MOVE_EVERY_S = 10.0
# Meters read on the clock's minute, so every entity's 1-min bucket would close in the same mover pass (500 meters:
# 30,000 rows folded at once, the write lock held ~0.4 s per 50-entity transaction, then five passes with nothing
# to fold). An entity closes its buckets (entity_key % 6) * 10 s after they end, so each pass folds a sixth of them.
_CLOSE_GROUPS = 6
_CLOSE_STAGGER_S = 10.0
MAX_ATTR_COLUMNS = 1500  # SQLite allows 2,000 columns; attribute names beyond this live in the `extra` JSON
_NOT_IN_REST = frozenset({"value", "object", "observedAt", "createdAt", "modifiedAt"})
# an attribute of only these members has a rest of its type and unitCode alone (Store._plain_shape)
_PLAIN_MEMBERS = frozenset({"type", "value", "object", "observedAt", "createdAt", "modifiedAt", "unitCode"})
# PRAGMA user_version: 5 = rollups packed one row per (entity, attribute, period, bucket) (_rollups.py); 4 =
# numbers scaled to integers, per-phase objects in member columns; 3 = wide readings with SQL numbers and objects as
# JSON text; 2 = one history row per attribute instance
SCHEMA_VERSION = 5
_OPERATIONS = ("create", "update", "replace", "append", "merge")
_OPERATION_CODES = {name: code for code, name in enumerate(_OPERATIONS)}
_BASE_COLUMNS = ("entity_key", "observed_ts", "instance_id", "recorded", "operation", "observed", "layout", "extra")
_TIME_FORMAT = "'%Y-%m-%dT%H:%M:%fZ'"
_CLUSTERED_ORDER = " ORDER BY observed_ts, instance_id"  # the order of `readings`' primary key
_RECORDED_SQL = (f"CASE WHEN typeof(recorded) = 'text' THEN recorded "
                 f"ELSE strftime({_TIME_FORMAT}, recorded, 'unixepoch') END")
_RECORDED_TS_SQL = ("(CASE WHEN typeof(recorded) = 'text' THEN (julianday(recorded) - 2440587.5) * 86400.0 "
                    "ELSE recorded END)")
_AT_SQL = (f"CASE WHEN observed IS NULL THEN {_RECORDED_SQL} WHEN typeof(observed) = 'text' THEN observed "
           f"ELSE strftime({_TIME_FORMAT}, observed_ts, 'unixepoch') END")


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
        # 16 MiB: holds a 1,000-meter batch's working set (entity rows, the log's tail, the rows the mover and
        # the rollups touch). The cache fills as the file grows and is never given back: at 64 MiB the broker's
        # RSS kept climbing through a 10-min soak; 8 MiB ingested as fast (bench/soak_memory.py,
        # docs/reliability.md "Broker memory").
        self._db.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._db.execute("PRAGMA temp_store=MEMORY")  # the rollup fold's scratch table
        self._db.executescript(_SCHEMA)
        # Writer-side caches of ids (series, entity keys, attribute columns, shapes, layouts, tenants); what a
        # transaction adds is listed in _created and forgotten again on rollback.
        self._series: dict[tuple[str, str, str], int] = {}
        self._entity_keys: dict[tuple[str, str], int] = {}
        self._attrs: dict[str, tuple[int, str | None]] = {}  # name -> (attr_id, column or None: in `extra`)
        # attr_id -> ((key, kind) of each member in order, their columns): objects of exactly these members
        self._members: dict[int, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {}
        self._columns = 0
        self._shapes: dict[str, int] = {}
        self._plain_shapes: dict[tuple[str, str | None], int] = {}  # (type, unitCode) -> shape id (_plain_shape)
        # (tenant, entity id) -> names whose series exist (checked once per row, not per attribute); the sets are
        # shared between entities of the same attributes (_name_sets), so 1,000 meters hold a handful
        self._ensured_series: dict[tuple[str, str], frozenset[str]] = {}
        self._name_sets: dict[frozenset[str], frozenset[str]] = {}
        self._layouts: dict[str, int] = {}
        self._tenants: set[str] = set()
        self._rollup_keys: dict[tuple[str, ...], int] = {}  # writer: keys of a rollup row -> keys_id
        self._created: list[tuple[dict[Any, Any] | set[Any], Any]] = []
        # Reader-side caches (ids are immutable once committed, so any thread may fill them)
        self._layout_shapes: dict[int, dict[int, str]] = {}
        self._series_slots: dict[int, tuple[int, int | None]] = {}
        self._value_sql: dict[int, str] = {}
        self._present_sql: dict[int, str] = {}
        self._rollup_key_names: dict[int, tuple[str, ...]] = {}
        self._last_instance = 0
        # Writes buffered inside a transaction and written with one executemany each just before COMMIT: a batch
        # that updates an entity several times (an offline replay) writes its row once.
        self._pending_updates: dict[tuple[str, str], Entity] = {}
        self._pending_history: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        if "members" not in {row[1] for row in self._db.execute("PRAGMA table_info(history_attrs)")}:
            self._db.execute("ALTER TABLE history_attrs ADD COLUMN members TEXT")  # schema 3
        self._repeats: RepeatFilter | None = None  # off while converting older history
        self._load_attrs()
        self._migrate()
        self._repeats = RepeatFilter()
        self._db.executescript(_INDEXES)
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

    def _load_attrs(self) -> None:
        for attr_id, name, in_column, members in self._db.execute(
                "SELECT attr_id, name, in_column, members FROM history_attrs"):
            self._attrs[name] = (attr_id, f"a{attr_id}" if in_column else None)
            self._columns += 1 if in_column else 0
            if members is not None:
                keys = tuple((key, kind) for key, kind in loads(members))
                self._members[attr_id] = (keys, tuple(f"a{attr_id}_{i}" for i in range(len(keys))))
                self._columns += len(keys)

    def _migrate(self) -> None:
        """Convert history written by earlier versions of this broker into the wide layout (schema 3)."""
        series_columns = {row[1] for row in self._db.execute("PRAGMA table_info(series)")}
        if "entity_key" not in series_columns:  # schema 2: series without their slot in the wide rows
            self._db.execute("ALTER TABLE series ADD COLUMN entity_key INTEGER")
            self._db.execute("ALTER TABLE series ADD COLUMN attr_id INTEGER")
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rollups'").fetchone():
            self._convert_rollups()  # schema 3/4: one rollup row per key
        if not _legacy.has_legacy_history(self._db):
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 3:
                self._scale_integers()
            if version < SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        _legacy.upgrade_to_v2(self._db)
        started = time.monotonic()
        converted = 0
        marks: list[tuple[int, float, str]] = []
        with self.transaction():
            for tenant, entity_id, entity_type, items, operation, recorded_at in _legacy.v2_readings(
                    self._db, _instance, marks):
                self.append_instances(tenant, entity_id, entity_type, items, operation, recorded_at)
                converted += len(items)
                if converted % 20_000 < len(items):
                    self._flush()
            for series_id, observed_ts, recorded_at in marks:
                self._db.execute("INSERT INTO history_marks (series_id, observed_ts, instance_id, recorded_at) "
                                 "VALUES (?, ?, ?, ?)", (series_id, observed_ts, self._instance_id(), recorded_at))
            self._db.execute("UPDATE series SET entity_key = (SELECT rowid FROM temporal_entities t WHERE "
                             "t.tenant = series.tenant AND t.id = series.entity_id) WHERE entity_key IS NULL")
            self._flush()
            _legacy.drop_v2(self._db)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.move_history()
        log.info("history in %s converted to the wide layout: %d instances, %d deletion marks in %.1f s",
                 self.path, converted, len(marks), time.monotonic() - started)

    def _scale_integers(self) -> None:
        """Schema 3 -> 4: integers in the value columns become the tagged form (n * 10, see _encode_number).

        Reals and JSON text read the same in both schemas, and schema 3 had no member columns, so only integers
        change; one UPDATE per column and table, in one transaction (a kill -9 leaves schema 3 intact).
        """
        started = time.monotonic()
        columns = self._column_names()
        with self.transaction():
            for table in ("readings", "readings_log"):
                for column in columns:
                    self._db.execute(f"UPDATE {table} SET {column} = CASE WHEN {column} > -{_MAX_TAGGED_INT} AND "
                                     f"{column} < {_MAX_TAGGED_INT} "
                                     f"THEN {column} * 10 ELSE CAST({column} AS TEXT) END "
                                     f"WHERE typeof({column}) = 'integer'")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        log.info("history in %s converted to schema %d (integers tagged) in %.1f s", self.path, SCHEMA_VERSION,
                 time.monotonic() - started)

    def _convert_rollups(self) -> None:
        """Schema 4 -> 5: the rollups of one key per row packed into one row per (entity, attribute, period,
        bucket), the hours built from the 10-minute buckets; one transaction with the DROP of the old table (a
        kill -9 leaves schema 4 intact)."""
        started = time.monotonic()
        rows: list[tuple[Any, ...]] = []
        with self.transaction():
            group: tuple[int, int, int, int] | None = None
            keys: list[str] = []
            stats: list[_rollups.Stats] = []

            def flush() -> None:
                if group is not None:
                    rows.append((*group, self._rollup_keys_id(tuple(keys)),
                                 _rollups.encode_stats(stats, group[3] * group[2], _encode_number)))

            for entity_key, attr_id, period_s, bucket, key, total, numeric, total_sum, sumsq, vmin, vmax, last_ts, \
                    last in self._db.execute(_rollups.SCHEMA_4_ROWS_SQL):
                if (entity_key, attr_id, period_s, bucket) != group:
                    flush()
                    group, keys, stats = (entity_key, attr_id, period_s, bucket), [], []
                keys.append(key)
                stats.append(_rollups.Stats(total, numeric, total_sum, sumsq, vmin, vmax, last_ts, last) if numeric
                             else _rollups.Stats(total, 0, None, None, None, None, None, None))
            flush()
            rows += self._hours_from(rows)
            self._db.executemany("INSERT OR REPLACE INTO rollup_stats (entity_key, attr_id, period_s, bucket, keys_id, "
                                 "stats) VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("DROP TABLE rollups")
        log.info("rollups in %s packed one row per attribute and bucket (schema 5): %d rows in %.1f s", self.path,
                 len(rows), time.monotonic() - started)

    def _hours_from(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The 1-hour rollup rows of converted 10-minute ones (schema 4 had no hours): six buckets merged each."""
        hours: dict[tuple[int, int, int], dict[str, _rollups.Stats]] = {}
        for entity_key, attr_id, period_s, bucket, keys_id, blob in sorted(rows):
            if period_s != 600:
                continue
            keys = self._rollup_keys_of(keys_id)
            into = hours.setdefault((entity_key, attr_id, bucket // 6), {})
            for key, stats in zip(keys, _rollups.decode_stats(blob, len(keys), bucket * 600), strict=True):
                before = into.get(key)
                into[key] = stats if before is None else _rollups.merge(before, stats)
        return [(entity_key, attr_id, 3600, hour, self._rollup_keys_id(tuple(by_key)),
                 _rollups.encode_stats(by_key.values(), hour * 3600, _encode_number))
                for (entity_key, attr_id, hour), by_key in hours.items()]

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

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees one committed state of the file (a read transaction on this thread's reader).

        A temporal answer reads several statements: the rollups and the rows still waiting in readings_log, the
        series of an entity one by one. Each statement alone sees its own snapshot, so a mover pass committing in
        between (rows leave readings_log and enter the rollups) made an aggregation miss those rows in both reads:
        the page's hourly counters lost an hour that way. In WAL mode a read transaction never blocks the writer;
        it only keeps the checkpoint from recycling the WAL past it, so hold it for one answer, not longer.
        Nested calls and calls inside the writer's transaction join what is open.
        """
        if self._writer_thread == threading.get_ident():
            yield
            return
        db = self._conn()
        if db.in_transaction:
            yield
            return
        db.execute("BEGIN")
        try:
            yield
        finally:
            if db.in_transaction:
                db.execute("COMMIT")

    def close(self) -> None:
        """Sort waiting history into place, checkpoint and close (a clean shutdown leaves no WAL behind)."""
        self._checkpoints.set()
        self._checkpointer.join(timeout=30)
        try:
            self.move_history()  # bulk loads through record_instances() end up in the clustered table too
        except sqlite3.Error as exc:
            log.warning("readings_log not moved at shutdown (%s); it will be at the next start", exc)
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
            self._created.clear()
            try:
                yield self
                self._flush()
                self._writer_thread = None
                # Inside the try: a COMMIT refused (disk full, read-only) rolls back like any failed write, so
                # the id caches forget what it created and the next transaction starts clean.
                self._db.execute("COMMIT")
            except BaseException:
                self._writer_thread = None
                self._pending_updates.clear()
                self._pending_history.clear()
                if self._db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR)
                    self._db.execute("ROLLBACK")
                for cache, key in self._created:
                    if isinstance(cache, set):
                        cache.discard(key)
                    else:
                        removed = cache.pop(key, None)
                        if cache is self._attrs and removed is not None and removed[1] is not None:
                            self._columns -= 1
                        elif cache is self._members and removed is not None:
                            self._columns -= len(removed[1])
                self._created.clear()
                raise
            if after_commit is not None:
                after_commit()

    def _flush(self) -> None:
        if self._pending_updates:
            self._db.executemany("UPDATE entities SET type = ?, modified_at = ?, attrs = ? WHERE tenant = ? AND id = ?",
                                 [(e.type, e.modified_at, dumps(e.attrs), tenant, e.id)
                                  for (tenant, _), e in self._pending_updates.items()])
            self._pending_updates.clear()
        for columns, rows in self._pending_history.items():
            names = _BASE_COLUMNS + columns
            self._db.executemany(f"INSERT INTO readings_log ({', '.join(names)}) VALUES "
                                 f"({', '.join('?' * len(names))})", rows)
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

    def move_history(self, entities_per_transaction: int = 50) -> int:
        """Sort the rows of `readings_log` into `readings` and fold them into the rollups, a few entities per
        short transaction (the fold and the move commit together: a row is counted in the rollups exactly once).

        A bucket is folded once, when it closes (see `_close_rollups`); rows of a bucket already closed (late
        data, an offline replay) are merged into it here. Returns the attribute instances moved.
        """
        if self._closed:
            return 0
        with self._lock:
            top = self._db.execute("SELECT max(rowid) FROM readings_log").fetchone()[0]
            if top is None:
                return 0
            keys = [row[0] for row in self._db.execute(
                "SELECT DISTINCT entity_key FROM readings_log ORDER BY entity_key").fetchall()]
        moved = 0
        for start in range(0, len(keys), entities_per_transaction):
            low, high = keys[start], keys[min(start + entities_per_transaction, len(keys)) - 1]
            with self.transaction():
                counted, closing = self._fold_late_rows(low, high, top)
                moved += counted
                columns = ", ".join(_BASE_COLUMNS + self._column_names())
                self._db.execute(
                    f"INSERT OR IGNORE INTO readings ({columns}) SELECT {columns} FROM readings_log WHERE entity_key "
                    "BETWEEN ? AND ? AND rowid <= ? ORDER BY entity_key, observed_ts, instance_id", (low, high, top))
                self._db.execute("DELETE FROM readings_log WHERE entity_key BETWEEN ? AND ? AND rowid <= ?",
                                 (low, high, top))
                self._close_rollups(closing)
        return moved

    def _open_buckets(self, low: int, high: int) -> dict[tuple[int, int], int]:
        """(entity_key, period_s) -> the first bucket not folded yet, for entities low..high (any connection)."""
        return {(entity_key, period_s): bucket for entity_key, period_s, bucket in self._conn().execute(
            "SELECT entity_key, period_s, bucket FROM rollup_open WHERE entity_key BETWEEN ? AND ?", (low, high))}

    def _fold_late_rows(self, low: int, high: int, top: int
                        ) -> tuple[int, dict[tuple[int, int], tuple[int, int]]]:
        """Before the move of the readings_log rows of entities low..high (rowid <= top): fold the rows that fall
        in buckets already closed into them, and say which buckets the move closes: (entity_key, period_s) ->
        (first open bucket now, first open bucket after the move). Returns the attribute instances moved too.

        Invariant, per entity and period, with `open` from rollup_open: every `readings` row observed before
        open * period_s is counted in rollup_stats, none from there on (an entity without a rollup_open row,
        written by a version that folded every row as it moved, has all its rows counted). The bucket holding an
        entity's newest reading stays open, and so does the one before for up to 50 s (_CLOSE_STAGGER_S);
        everything before closes. So after a kill -9 nothing needs to be
        rebuilt: what is not folded yet is in `readings` and readings_log, and the next pass folds it."""
        db = self._db
        spans = db.execute(f"SELECT entity_key, min(observed_ts), max(observed_ts), sum({self._instances_sql()}) "
                           "FROM readings_log WHERE entity_key BETWEEN ? AND ? AND rowid <= ? GROUP BY entity_key",
                           (low, high, top)).fetchall()
        opened = self._open_buckets(low, high)
        closing: dict[tuple[int, int], tuple[int, int]] = {}
        late: dict[int, float] = {}  # entity -> rows observed before this are late for the finest period
        counted = 0
        for entity_key, first_ts, last_ts, instances in spans:
            counted += instances or 0
            prior: float | None = None
            for period_s in _rollups.ROLLUP_PERIODS_S:
                bucket = opened.get((entity_key, period_s))
                if bucket is None:  # first move of this entity under this scheme: rows already stored are folded
                    if prior is None:
                        prior = db.execute("SELECT max(observed_ts) FROM readings WHERE entity_key = ?",
                                           (entity_key,)).fetchone()[0]
                        prior = -math.inf if prior is None else prior
                    bucket = (math.floor(prior / period_s) + 1 if math.isfinite(prior)
                              else math.floor(first_ts / period_s))
                lag = (entity_key % _CLOSE_GROUPS) * _CLOSE_STAGGER_S
                closing[(entity_key, period_s)] = (bucket, max(bucket, math.floor((last_ts - lag) / period_s)))
                if first_ts < bucket * period_s:
                    late[entity_key] = max(late.get(entity_key, -math.inf), bucket * period_s)
        first_seen = [(entity_key, period_s, old) for (entity_key, period_s), (old, new) in closing.items()
                      if new == old and (entity_key, period_s) not in opened]
        if first_seen:  # the others are written by _close_rollups when they move on
            db.executemany("INSERT INTO rollup_open (entity_key, period_s, bucket) VALUES (?, ?, ?)", first_seen)
        if late:
            columns, plan = self._fold_plan()
            folder = _rollups.Folder()
            for entity_key, before in late.items():
                _fold_rows(db.execute(f"SELECT entity_key, observed_ts, instance_id, extra{columns} FROM readings_log "
                                      "WHERE entity_key = ? AND rowid <= ? AND observed_ts < ?",
                                      (entity_key, top, before)), plan, folder)
            self._store_rollups({group: stats for group, stats in folder.buckets().items()
                                 if group[3] < closing[(group[0], group[2])][0]})
        return counted, closing

    def _close_rollups(self, closing: dict[tuple[int, int], tuple[int, int]]) -> None:
        """Fold the buckets that close (entity, period: open -> new open) and record where each entity's open
        buckets start now. 1-minute buckets from the raw rows in `readings`, each coarser period from the finer
        buckets it holds (all closed by then: an entity's 1-min open bucket is never before its 10-min one's
        start). Each bucket is written once, not merged again on every pass while it is open."""
        db = self._db
        for index, period_s in enumerate(_rollups.ROLLUP_PERIODS_S):
            spans = [(entity_key, old, new) for (entity_key, period), (old, new) in closing.items()
                     if period == period_s and new > old]
            if not spans:
                continue
            db.execute("DELETE FROM temp.rollup_closing")
            if index == 0:
                db.executemany("INSERT INTO temp.rollup_closing (entity_key, low, high) VALUES (?, ?, ?)",
                               [(entity_key, old * period_s, new * period_s) for entity_key, old, new in spans])
                columns, plan = self._fold_plan()
                folder = _rollups.Folder()
                select = _fold_select(columns.split(", ")[1:], plan, "r")
                _fold_columns(db.execute(f"SELECT r.entity_key, r.observed_ts, r.instance_id, r.extra"
                                         f"{select} FROM temp.rollup_closing c JOIN readings r "
                                         "ON r.entity_key = c.entity_key AND r.observed_ts >= c.low AND "
                                         "r.observed_ts < c.high ORDER BY r.entity_key, r.observed_ts, r.instance_id"),
                              plan, folder)
                buckets = folder.buckets((period_s,))
            else:
                fine = _rollups.ROLLUP_PERIODS_S[index - 1]
                factor = period_s // fine
                db.executemany("INSERT INTO temp.rollup_closing (entity_key, low, high) VALUES (?, ?, ?)",
                               [(entity_key, old * factor, new * factor) for entity_key, old, new in spans])
                buckets = _rollups.coarsen(db.execute(
                    "SELECT r.entity_key, r.attr_id, r.bucket, r.keys_id, r.stats FROM temp.rollup_closing c "
                    "JOIN rollup_stats r ON r.entity_key = c.entity_key AND r.period_s = ? AND r.bucket >= c.low "
                    "AND r.bucket < c.high ORDER BY r.entity_key, r.attr_id, r.bucket", (fine,)),
                    fine, period_s, self._rollup_keys_of)
            db.execute("DELETE FROM temp.rollup_closing")
            self._store_rollups(buckets)
        db.executemany("INSERT OR REPLACE INTO rollup_open (entity_key, period_s, bucket) VALUES (?, ?, ?)",
                       [(entity_key, period_s, new) for (entity_key, period_s), (old, new) in closing.items()
                        if new > old])

    def _close_rollups_before(self, before_ts: float) -> None:
        """Close every open bucket that starts before `before_ts` (up to the next whole hour), so pruning the raw
        rows of a meter gone quiet cannot take rows no rollup holds yet."""
        through = math.ceil(before_ts / _rollups.ROLLUP_PERIODS_S[-1]) * _rollups.ROLLUP_PERIODS_S[-1]
        with self.transaction():
            closing = {(entity_key, period_s): (bucket, through // period_s) for entity_key, period_s, bucket in
                       self._db.execute("SELECT entity_key, period_s, bucket FROM rollup_open WHERE "
                                        "bucket * period_s < ?", (through,)).fetchall()}
            if closing:
                self._close_rollups(closing)

    def _instances_sql(self) -> str:
        """SQL counting the attribute instances a readings row holds."""
        counted = []
        for attr_id, column in sorted(self._attrs.values()):
            if column is not None:
                members = self._members.get(attr_id)
                counted.append(f"(coalesce({column}, {members[1][0]}) IS NOT NULL)" if members else
                               f"({column} IS NOT NULL)")
        return " + ".join([*counted, "coalesce((SELECT count(*) FROM json_each(extra)), 0)"])

    def _column_names(self) -> tuple[str, ...]:
        """Every value column of the readings tables: a<id> and its member columns a<id>_<i>."""
        names: list[str] = []
        for attr_id, column in sorted(self._attrs.values()):
            if column is not None:
                names.append(column)
                names += self._members.get(attr_id, ((), ()))[1]
        return tuple(names)

    def _fold_plan(self, only: int | None = None) -> tuple[str, list[tuple[int, int, str, int]]]:
        """The value columns the fold reads (SQL text after `extra`) and, per column, (row index, attr_id,
        member key, kind): kind 0 a<id> (a number, or JSON text), 1 a numeric member, 2 a boolean member, +3 on
        the first member column (it counts the instance). `only`: one attribute's columns (a rebuild)."""
        names: list[str] = []
        plan: list[tuple[int, int, str, int]] = []
        for attr_id, column in sorted(self._attrs.values()):
            if column is None or (only is not None and attr_id != only):
                continue
            names.append(column)
            plan.append((3 + len(names), attr_id, "", 0))
            members = self._members.get(attr_id)
            if members is not None:
                for i, ((key, kind), name) in enumerate(zip(*members, strict=True)):
                    names.append(name)
                    plan.append((3 + len(names), attr_id, key, (1 if kind == "n" else 2) + (3 if i == 0 else 0)))
        return "".join(f", {name}" for name in names), plan

    def _store_rollups(self, buckets: dict[tuple[int, int, int, int], dict[str, _rollups.Stats]]) -> None:
        """Merge freshly folded buckets into the stored ones (late data adds to a bucket, never replaces it)."""
        if not buckets:
            return
        ranges: dict[tuple[int, int, int], list[int]] = {}
        for entity_key, attr_id, period_s, bucket in buckets:
            span = ranges.get((entity_key, attr_id, period_s))
            if span is None:
                ranges[(entity_key, attr_id, period_s)] = [bucket, bucket]
            else:
                span[0], span[1] = min(span[0], bucket), max(span[1], bucket)
        db = self._db
        db.execute("DELETE FROM temp.rollup_touched")
        db.executemany("INSERT INTO temp.rollup_touched (entity_key, attr_id, period_s, low, high) VALUES "
                       "(?, ?, ?, ?, ?)", [(*key, low, high) for key, (low, high) in ranges.items()])
        for entity_key, attr_id, period_s, bucket, keys_id, blob in db.execute(
                "SELECT r.entity_key, r.attr_id, r.period_s, r.bucket, r.keys_id, r.stats FROM temp.rollup_touched t "
                "JOIN rollup_stats r ON r.entity_key = t.entity_key AND r.attr_id = t.attr_id AND "
                "r.period_s = t.period_s AND r.bucket BETWEEN t.low AND t.high").fetchall():
            fresh = buckets.get((entity_key, attr_id, period_s, bucket))
            if fresh is None:
                continue
            keys = self._rollup_keys_of(keys_id)
            stored = dict(zip(keys, _rollups.decode_stats(blob, len(keys), bucket * period_s), strict=True))
            for key, stats in fresh.items():
                before = stored.get(key)
                stored[key] = stats if before is None else _rollups.merge(before, stats)
            buckets[(entity_key, attr_id, period_s, bucket)] = stored
        db.execute("DELETE FROM temp.rollup_touched")
        db.executemany("INSERT OR REPLACE INTO rollup_stats (entity_key, attr_id, period_s, bucket, keys_id, stats) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       [(entity_key, attr_id, period_s, bucket, self._rollup_keys_id(tuple(by_key)),
                         _rollups.encode_stats(by_key.values(), bucket * period_s, _encode_number))
                        for (entity_key, attr_id, period_s, bucket), by_key in buckets.items()])

    def _rollup_keys_id(self, keys: tuple[str, ...]) -> int:
        """The interned id of a rollup row's key list (writer side)."""
        known = self._rollup_keys.get(keys)
        if known is None:
            text = dumps(list(keys))
            row = self._db.execute("SELECT keys_id FROM rollup_keys WHERE keys = ?", (text,)).fetchone()
            known = row[0] if row else self._db.execute("INSERT INTO rollup_keys (keys) VALUES (?)",
                                                        (text,)).lastrowid
            self._remember(self._rollup_keys, keys, known)
            if known not in self._rollup_key_names:  # forgotten again if this transaction rolls back
                self._remember(self._rollup_key_names, known, keys)
        return known

    def _rollup_keys_of(self, keys_id: int) -> tuple[str, ...]:
        """The key list of an interned id (ids never change once committed: any thread may cache them; the
        writer's new ones are remembered as created, so a rollback forgets them)."""
        keys = self._rollup_key_names.get(keys_id)
        if keys is None:
            keys = tuple(loads(self._conn().execute("SELECT keys FROM rollup_keys WHERE keys_id = ?",
                                                    (keys_id,)).fetchone()[0]))
            self._rollup_key_names[keys_id] = keys  # read from a committed row (or one the writer remembered)
        return keys

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
        """Create the tenant on first write (NGSI-LD creates tenants implicitly); one SQL statement per tenant
        and process, not per entity written."""
        if tenant == DEFAULT_TENANT or tenant in self._tenants:
            return
        cursor = self._write("INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)", (tenant, now_iso()))
        if cursor.rowcount:
            log.info("tenant %r created", tenant)
        self._tenants.add(tenant)
        if self._writer_thread == threading.get_ident():
            self._created.append((self._tenants, tenant))

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

    # -- history: writing ---------------------------------------------------------------------------------
    def _remember(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        self._created.append((cache, key))

    def _entity_key(self, tenant: str, entity_id: str, entity_type: str) -> int:
        """The entity's key in the history tables (its temporal_entities row, created on first use)."""
        key = self._entity_keys.get((tenant, entity_id))
        if key is None:
            row = self._db.execute("SELECT rowid FROM temporal_entities WHERE tenant = ? AND id = ?",
                                   (tenant, entity_id)).fetchone()
            if row is None:
                key = self._db.execute("INSERT INTO temporal_entities (tenant, id, type) VALUES (?, ?, ?)",
                                       (tenant, entity_id, entity_type)).lastrowid
            else:
                key = row[0]
            if len(self._entity_keys) > 1_000_000:
                self._entity_keys.clear()
            self._remember(self._entity_keys, (tenant, entity_id), key)
        return key

    def _attr(self, name: str) -> tuple[int, str | None]:
        """(attr_id, column) of an attribute name; a new name gets a column in both readings tables."""
        known = self._attrs.get(name)
        if known is not None:
            return known
        in_column = self._columns < MAX_ATTR_COLUMNS
        attr_id = self._db.execute("INSERT INTO history_attrs (name, in_column) VALUES (?, ?)",
                                   (name, int(in_column))).lastrowid
        column = f"a{attr_id}" if in_column else None
        if column is not None:
            for table in ("readings", "readings_log"):
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            self._columns += 1
        self._remember(self._attrs, name, (attr_id, column))
        return attr_id, column

    def _flattened(self, attr_id: int, value: dict[str, Any]) -> tuple[tuple[str, ...], list[int]] | None:
        """(member columns, stored integers) of an object kept in member columns, else None (JSON text).

        An object qualifies when every member is a number that tags exactly (_encode_number) or a boolean (1/0:
        SQLite stores both in the row header alone), and its (key, kind) list is the attribute's: the first such
        object fixes it, in order, so rebuilding the object prints its keys as they came. A per-phase reading of
        three numbers is then ~10 bytes instead of ~40 of JSON, the meter's dozen status flags 12 instead of ~230.
        """
        if not value:
            return None
        members = self._members.get(attr_id)
        if members is not None:  # the common case: check against the fixed member list as we go
            if len(value) != len(members[0]):
                return None
            out: list[int] = []
            for (key, member), (expected, kind) in zip(value.items(), members[0], strict=True):
                kind_of = type(member)
                if key != expected or (kind_of is bool) != (kind == "b"):
                    return None
                encoded = int(member) if kind_of is bool else (
                    _encode_number(member) if kind_of is int or kind_of is float else None)
                if encoded is None:
                    return None
                out.append(encoded)
            return members[1], out
        signature: list[tuple[str, str]] = []
        stored: list[int] = []
        for key, member in value.items():
            if type(member) is bool:
                signature.append((key, "b"))
                stored.append(int(member))
                continue
            encoded = _encode_number(member) if type(member) in (int, float) else None
            if encoded is None:
                return None
            signature.append((key, "n"))
            stored.append(encoded)
        keys = tuple(signature)
        if self._columns + len(keys) > MAX_ATTR_COLUMNS:
            return None
        columns = tuple(f"a{attr_id}_{i}" for i in range(len(keys)))  # the first such object: its columns
        for table in ("readings", "readings_log"):
            for column in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        self._db.execute("UPDATE history_attrs SET members = ? WHERE attr_id = ?",
                         (dumps([list(key) for key in keys]), attr_id))
        self._columns += len(columns)
        self._remember(self._members, attr_id, (keys, columns))
        self._value_sql.pop(attr_id, None)
        return columns, stored

    def _series_id(self, tenant: str, entity_id: str, attr_name: str, entity_key: int | None = None,
                   attr_id: int | None = None) -> int:
        """The series of one attribute, created on first use (writer side, inside a transaction)."""
        key = (tenant, entity_id, attr_name)
        series_id = self._series.get(key)
        if series_id is None:
            row = self._db.execute("SELECT series_id, entity_key FROM series WHERE tenant = ? AND entity_id = ? AND "
                                   "attr_name = ?", key).fetchone()
            if row is None:
                series_id = self._db.execute("INSERT INTO series (tenant, entity_id, attr_name, entity_key, attr_id) "
                                             "VALUES (?, ?, ?, ?, ?)", (*key, entity_key, attr_id)).lastrowid
            else:
                series_id = row[0]
                if row[1] is None and entity_key is not None:
                    self._db.execute("UPDATE series SET entity_key = ?, attr_id = ? WHERE series_id = ?",
                                     (entity_key, attr_id, series_id))
            if len(self._series) > 1_000_000:
                self._series.clear()
            self._remember(self._series, key, series_id)
        return series_id

    def _plain_shape(self, attribute: dict[str, Any]) -> int | None:
        """The shape id of an attribute whose rest is only its type and unitCode (a meter's ~30 attributes), from
        a cache keyed by those two; None for any other attribute (the caller encodes its rest as JSON).

        The rest of such an attribute is `{"type": t}` or `{"type": t, "unitCode": u}`, in that order when `type`
        is its first member (the parser puts it first): the same text, so the same shape, as encoding it."""
        if not attribute or not attribute.keys() <= _PLAIN_MEMBERS or next(iter(attribute)) != "type":
            return None
        unit = attribute.get("unitCode")
        if unit is None and "unitCode" in attribute:
            return None  # a null unitCode is part of the rest
        key = (attribute["type"], unit)
        shape = self._plain_shapes.get(key)
        if shape is None:
            if type(key[0]) is not str or not (unit is None or type(unit) is str):
                return None
            rest = dumps({"type": key[0]} if unit is None else {"type": key[0], "unitCode": unit})
            shape = self._interned(self._shapes, "shapes", "rest", rest)
            self._remember(self._plain_shapes, key, shape)
        return shape

    def _interned(self, cache: dict[str, int], table: str, column: str, text: str) -> int:
        known = cache.get(text)
        if known is None:
            row = self._db.execute(f"SELECT rowid FROM {table} WHERE {column} = ?", (text,)).fetchone()
            known = row[0] if row else self._db.execute(f"INSERT INTO {table} ({column}) VALUES (?)",
                                                        (text,)).lastrowid
            if len(cache) > 100_000:
                cache.clear()
            self._remember(cache, text, known)
        return known

    def _instance_id(self) -> int:
        """A unique, increasing instance id: microseconds since the epoch, bumped when the clock repeats."""
        self._last_instance = max(self._last_instance + 1, time.time_ns() // 1000)
        return self._last_instance

    def record_instances(self, tenant: str, entity: Entity, attrs: Iterable[str], operation: str,
                         recorded_at: str) -> None:
        """Append the given attributes of `entity`, as they are now, to the history."""
        self.append_instances(tenant, entity.id, entity.type, [(name, entity.attrs[name]) for name in attrs],
                              operation, recorded_at)

    def append_instances(self, tenant: str, entity_id: str, entity_type: str,
                         items: Iterable[tuple[str, dict[str, Any]]], operation: str, recorded_at: str) -> None:
        """Append attribute instances (expanded name, normalized attribute) of one entity to the history.

        Instances sharing an observedAt become one wide row; an attribute named twice starts another row (two
        instances at the same time, e.g. a temporal entity created with its history). `operation` is what wrote
        them (create, update, replace, append, merge, or another word the caller chooses); `recorded_at` the
        accepted time (modifiedAt with sysAttrs).
        """
        recorded_ts = epoch_seconds(recorded_at)
        recorded: float | str = recorded_ts if _prints_back(recorded_at) else recorded_at
        code: int | str = _OPERATION_CODES.get(operation, operation)
        rows: list[tuple[tuple[str, ...], tuple[Any, ...]]] = []
        with self._lock:
            entity_key = self._entity_key(tenant, entity_id, entity_type)
            groups: list[tuple[str | None, dict[str, dict[str, Any]]]] = []
            for name, attribute in items:
                observed = attribute.get("observedAt")
                for at, group in groups:
                    if at == observed and name not in group:
                        group[name] = attribute
                        break
                else:
                    groups.append((observed, {name: attribute}))
            for observed, group in groups:
                pieces: list[Piece] = []
                ensured = self._ensured_series.get((tenant, entity_id))
                if ensured is None or not group.keys() <= ensured:  # a series not yet known to exist
                    for name in group:
                        self._series_id(tenant, entity_id, name, entity_key, self._attr(name)[0])
                    names = frozenset(group.keys()) | (ensured or frozenset())
                    if len(self._ensured_series) > 1_000_000 or len(self._name_sets) > 10_000:
                        self._ensured_series.clear()  # bounded like the other id caches; refilled as rows come
                        self._name_sets.clear()
                    self._remember(self._ensured_series, (tenant, entity_id), self._name_sets.setdefault(names, names))
                for name, attribute in group.items():
                    attr_id, column = self._attr(name)
                    value = attribute["object"] if "object" in attribute else attribute.get("value")
                    shape = self._plain_shape(attribute)
                    if shape is None:
                        rest = dumps({k: v for k, v in attribute.items() if k not in _NOT_IN_REST})
                        shape = self._interned(self._shapes, "shapes", "rest", rest)
                    if column is None:
                        pieces.append(Piece(attr_id, shape, (), (value,)))
                        continue
                    members = self._flattened(attr_id, value) if type(value) is dict else None
                    if members is not None:
                        pieces.append(Piece(attr_id, shape, tuple(members[0]), tuple(members[1])))
                        continue
                    encoded = _encode_number(value) if type(value) in (int, float) else None
                    pieces.append(Piece(attr_id, shape, (column,), (
                        encoded if encoded is not None else value if type(value) is float else dumps(value),)))
                ts = epoch_seconds(observed) if observed else recorded_ts
                if observed and self._repeats is not None:  # a redelivered reading is stored once (_repeats.py)
                    pieces = self._repeats.fresh(self._db, self._flush, entity_key, ts, pieces)
                    if not pieces:
                        continue
                columns = [c for piece in pieces for c in piece.columns]
                values = [v for piece in pieces if piece.columns for v in piece.values]
                extra = {str(piece.attr_id): piece.values[0] for piece in pieces if not piece.columns}
                layout = self._interned(self._layouts, "layouts", "slots",
                                        dumps({str(p.attr_id): p.shape_id for p in sorted(pieces, key=_by_attr)}))
                mark: int | str | None = None if observed is None else (1 if _prints_back(observed) else observed)
                rows.append((tuple(columns), (entity_key, ts, self._instance_id(), recorded, code, mark, layout,
                                              dumps(extra) if extra else None, *values)))
            for columns_key, row in rows:
                self._pending_history.setdefault(columns_key, []).append(row)
            if self._writer_thread != threading.get_ident():
                self._flush()

    def _record_mark(self, tenant: str, entity_id: str, attr_name: str, recorded_at: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO history_marks (series_id, observed_ts, instance_id, recorded_at) "
                             "VALUES (?, ?, ?, ?)", (self._series_id(tenant, entity_id, attr_name),
                                                     epoch_seconds(recorded_at), self._instance_id(), recorded_at))

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
        exists now, its temporal representation), with their rollups; False when there was nothing to delete.

        Runs inside the caller's transaction (`tx.store`)."""
        self._flush()
        db = self._db
        if attr_name is None:
            rows = db.execute("SELECT series_id, attr_name, entity_key, attr_id FROM series WHERE tenant = ? AND "
                              "entity_id = ?", (tenant, entity_id)).fetchall()
        else:
            rows = db.execute("SELECT series_id, attr_name, entity_key, attr_id FROM series WHERE tenant = ? AND "
                              "entity_id = ? AND attr_name = ?", (tenant, entity_id, attr_name)).fetchall()
        key_row = db.execute("SELECT rowid FROM temporal_entities WHERE tenant = ? AND id = ?",
                             (tenant, entity_id)).fetchone()
        for series_id, name, entity_key, attr_id in rows:
            if attr_name is not None and attr_id is not None and entity_key is not None:
                column = self._column_of(attr_id)
                for table in ("readings", "readings_log"):
                    if column is None:
                        db.execute(f"UPDATE {table} SET extra = json_remove(extra, ?) WHERE entity_key = ?",
                                   (f'$."{attr_id}"', entity_key))
                    else:
                        db.execute(f"UPDATE {table} SET {self._nulls(attr_id, column)} WHERE entity_key = ?",
                                   (entity_key,))
                db.execute("DELETE FROM rollup_stats WHERE entity_key = ? AND attr_id = ?", (entity_key, attr_id))
            db.execute("DELETE FROM history_marks WHERE series_id = ?", (series_id,))
            db.execute("DELETE FROM series WHERE series_id = ?", (series_id,))
            self._series.pop((tenant, entity_id, name), None)
            self._ensured_series.pop((tenant, entity_id), None)
            self._series_slots.pop(series_id, None)
        if attr_name is not None:
            return bool(rows)
        if key_row is not None:
            for table in ("readings", "readings_log", "rollup_stats", "rollup_open"):
                db.execute(f"DELETE FROM {table} WHERE entity_key = ?", (key_row[0],))
        exists_now = db.execute("SELECT 1 FROM entities WHERE tenant = ? AND id = ?",
                                (tenant, entity_id)).fetchone() is not None
        if exists_now:
            return True
        self._entity_keys.pop((tenant, entity_id), None)
        return self._write("DELETE FROM temporal_entities WHERE tenant = ? AND id = ?",
                           (tenant, entity_id)).rowcount > 0 or bool(rows)

    def delete_instance(self, tenant: str, entity_id: str, attr_name: str, instance_id: int) -> bool:
        """Delete one attribute instance by its id (the row's other attributes stay); False when the attribute
        has no such instance. The rollups of its buckets are rebuilt from the raw rows left, so aggregation stays
        exact. Runs inside the caller's transaction (`tx.store`)."""
        row = self._db.execute("SELECT series_id FROM series WHERE tenant = ? AND entity_id = ? AND attr_name = ?",
                               (tenant, entity_id, attr_name)).fetchone()
        if row is None:
            return False
        entity_key, attr_id = self._slot(row[0])
        if attr_id is None:
            return False
        self._flush()
        column = self._column_of(attr_id)
        value_sql = self._value_expr(attr_id)
        for table in ("readings", "readings_log"):
            found = self._db.execute(f"SELECT observed_ts FROM {table} WHERE entity_key = ? AND instance_id = ? "
                                     f"AND {value_sql} IS NOT NULL", (entity_key, instance_id)).fetchone()
            if found is None:
                continue
            if column is None:
                self._db.execute(f"UPDATE {table} SET extra = json_remove(extra, ?) WHERE entity_key = ? AND "
                                 "instance_id = ?", (f'$."{attr_id}"', entity_key, instance_id))
            else:
                self._db.execute(f"UPDATE {table} SET {self._nulls(attr_id, column)} WHERE entity_key = ? AND "
                                 "instance_id = ?", (entity_key, instance_id))
            if table == "readings":  # rows still in readings_log are not in the rollups yet
                self._rebuild_rollups(entity_key, attr_id, found[0])
            return True
        return False

    def _rebuild_rollups(self, entity_key: int, attr_id: int, observed_ts: float) -> None:
        """Recompute one attribute's rollup buckets around one time from the raw rows (writer, in a transaction)."""
        columns, plan = self._fold_plan(only=attr_id)
        opened = self._open_buckets(entity_key, entity_key)
        for period_s in _rollups.ROLLUP_PERIODS_S:
            bucket = math.floor(observed_ts / period_s)
            if bucket >= opened.get((entity_key, period_s), 2 ** 62):
                continue  # still open: not folded yet, its close reads the rows left
            self._db.execute("DELETE FROM rollup_stats WHERE entity_key = ? AND attr_id = ? AND period_s = ? AND "
                             "bucket = ?", (entity_key, attr_id, period_s, bucket))
            rows = self._db.execute(f"SELECT entity_key, observed_ts, instance_id, NULL{columns} FROM readings "
                                    "WHERE entity_key = ? AND observed_ts >= ? AND observed_ts < ?",
                                    (entity_key, bucket * period_s, (bucket + 1) * period_s))
            folder = _rollups.Folder()
            _fold_rows(rows, plan, folder)
            self._store_rollups(folder.buckets((period_s,)))

    # -- history: reading ---------------------------------------------------------------------------------
    def _slot(self, series_id: int) -> tuple[int, int | None]:
        """(entity key, attr_id) of a series."""
        slot = self._series_slots.get(series_id)
        if slot is None:
            row = self._conn().execute("SELECT entity_key, attr_id FROM series WHERE series_id = ?",
                                       (series_id,)).fetchone()
            if row is None or row[0] is None:
                return -1, None
            slot = self._series_slots[series_id] = (row[0], row[1])
        return slot

    def _column_of(self, attr_id: int) -> str | None:
        row = self._conn().execute("SELECT in_column FROM history_attrs WHERE attr_id = ?", (attr_id,)).fetchone()
        return f"a{attr_id}" if row and row[0] else None

    def _nulls(self, attr_id: int, column: str) -> str:
        """SQL `SET` list clearing one attribute's value columns (its column and member columns)."""
        row = self._conn().execute("SELECT members FROM history_attrs WHERE attr_id = ?", (attr_id,)).fetchone()
        count = len(loads(row[0])) if row and row[0] else 0
        return ", ".join(f"{name} = NULL" for name in (column, *(f"{column}_{i}" for i in range(count))))

    def _value_expr(self, attr_id: int) -> str:
        """SQL for one attribute's value in a readings row: a number, JSON text, or NULL when absent.

        Tagged integers are decoded (see _encode_number); an object stored in member columns is rebuilt as JSON
        text with its keys in their order. Read from the connection's own snapshot, and cached only once it cannot
        change (an attribute in `extra`, or one with its member columns): a column without members may get them.
        """
        known = self._value_sql.get(attr_id)
        if known is not None:
            return known
        row = self._conn().execute("SELECT in_column, members FROM history_attrs WHERE attr_id = ?",
                                   (attr_id,)).fetchone()
        if row is None:
            return "NULL"
        column = f"a{attr_id}"
        if not row[0]:
            path = f"'$.\"{attr_id}\"'"
            known = (f"(CASE json_type(extra, {path}) WHEN 'integer' THEN extra ->> {path} WHEN 'real' THEN "
                     f"extra ->> {path} ELSE extra -> {path} END)")
        elif row[1] is None:
            return _decoded_sql(column)
        else:
            pairs = ", ".join(f"{_sql_text(key)}, " + (_decoded_sql(f"{column}_{i}") if kind == "n" else
                                                         f"(CASE {column}_{i} WHEN 1 THEN json('true') ELSE "
                                                         "json('false') END)")
                              for i, (key, kind) in enumerate(loads(row[1])))
            known = f"coalesce({_decoded_sql(column)}, CASE WHEN {column}_0 IS NOT NULL THEN json_object({pairs}) END)"
        self._value_sql[attr_id] = known
        return known

    def _present_expr(self, attr_id: int) -> str:
        """SQL true when a readings row holds the attribute: the same rows as `_value_expr(...) IS NOT NULL`
        without decoding the value (a day of 1 Hz is 86,400 rows: the decode in WHERE cost as much as the read)."""
        known = self._present_sql.get(attr_id)
        if known is not None:
            return known
        row = self._conn().execute("SELECT in_column, members FROM history_attrs WHERE attr_id = ?",
                                   (attr_id,)).fetchone()
        if row is None:
            return "0"
        column = f"a{attr_id}"
        if not row[0]:
            known = f"json_type(extra, '$.\"{attr_id}\"') IS NOT NULL"
        elif row[1] is None:
            return f"{column} IS NOT NULL"  # not cached: the attribute may get member columns
        else:
            known = f"({column} IS NOT NULL OR {column}_0 IS NOT NULL)"
        self._present_sql[attr_id] = known
        return known

    def _rest(self, layout: int, attr_id: int) -> str:
        """The JSON of an instance's other members (type, unitCode, sub-attributes), from its row's layout."""
        shapes = self._layout_shapes.get(layout)
        if shapes is None or attr_id not in shapes:
            db = self._conn()
            slots = loads(db.execute("SELECT slots FROM layouts WHERE layout_id = ?", (layout,)).fetchone()[0])
            shapes = {}
            for key, shape_id in slots.items():
                shapes[int(key)] = db.execute("SELECT rest FROM shapes WHERE shape_id = ?",
                                              (shape_id,)).fetchone()[0]
            if len(self._layout_shapes) > 100_000:
                self._layout_shapes.clear()
            self._layout_shapes[layout] = shapes
        return shapes[attr_id]

    def _rows(self, series_id: int, window: TimeRange = TimeRange(), tables: tuple[str, ...] | None = None,
              columns: str = "instance_id, observed_ts, observed, recorded, operation, layout",
              ordered: bool = False, value: bool = True) -> tuple[str, list[Any]]:
        """A sub-select of one series' instances inside the window, columns + `value` (lastN: the newest N).

        Reads `readings` alone when the entity has nothing waiting in readings_log (one index range), else
        both tables; the window's conditions are inside each branch so each uses its index. `ordered`: sorted by
        (t, instance_id); one table read along the time axis is in that order in its clustered index already,
        so SQLite sorts nothing (a day of 1 Hz: ~15 ms less). `value=False`: the `value` column is NULL.
        """
        entity_key, attr_id = self._slot(series_id)
        if attr_id is None:
            return f"SELECT {columns}, NULL AS t, NULL AS value WHERE 0", []
        value_sql = self._value_expr(attr_id)
        if tables is None:
            waiting = self._conn().execute("SELECT 1 FROM readings_log WHERE entity_key = ? LIMIT 1",
                                           (entity_key,)).fetchone()
            tables = ("readings", "readings_log") if waiting else ("readings",)
        axis = "observed_ts" if window.axis == "observedAt" else _RECORDED_TS_SQL
        where = f"entity_key = ? AND {self._present_expr(attr_id)}"
        args: list[Any] = [entity_key]
        if window.start is not None:
            where += f" AND {axis} >= ?"
            args.append(window.start)
        if window.end is not None:
            where += f" AND {axis} < ?"
            args.append(window.end)
        if not value:  # the caller reads the stored columns itself (SQLite would decode `value` for nothing)
            value_sql = "NULL"
        sql = " UNION ALL ".join(f"SELECT {columns}, {axis} AS t, {value_sql} AS value FROM {table} WHERE {where}"
                                 for table in tables)
        args = args * len(tables)
        if window.last_n is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY t DESC, instance_id DESC LIMIT ?)"
            args.append(window.last_n)
        elif ordered and tables == ("readings",) and window.axis == "observedAt":
            return sql + _CLUSTERED_ORDER, args
        if ordered:
            sql = f"SELECT * FROM ({sql}) ORDER BY t, instance_id"
        return sql, args

    def history(self, tenant: str, entity_id: str, attr_name: str | None = None) -> list[AttributeInstance]:
        """Every recorded instance of an entity's attributes (one attribute if named), in arrival order."""
        db = self._conn()
        found = db.execute("SELECT type FROM temporal_entities WHERE tenant = ? AND id = ?",
                           (tenant, entity_id)).fetchone()
        if found is None:
            return []
        entity_type = found[0]
        rows = db.execute("SELECT series_id, attr_name FROM series WHERE tenant = ? AND entity_id = ?",
                          (tenant, entity_id)).fetchall()
        out: list[tuple[int, int, AttributeInstance]] = []
        for series_id, name in rows:
            if attr_name is not None and name != attr_name:
                continue
            _, attr_id = self._slot(series_id)
            if attr_id is not None:
                sql, args = self._rows(series_id)
                for row in db.execute(sql, args).fetchall():
                    observed = _observed_text(row["observed"], row["observed_ts"])
                    attribute = _instance(row["value"], self._rest(row["layout"], attr_id), observed)
                    operation = row["operation"]
                    out.append((row["instance_id"], attr_id, AttributeInstance(
                        row["instance_id"], entity_id, entity_type, name or None, observed,
                        _recorded_text(row["recorded"]),
                        _OPERATIONS[operation] if isinstance(operation, int) else operation, attribute)))
            for instance_id, recorded_at in db.execute("SELECT instance_id, recorded_at FROM history_marks "
                                                       "WHERE series_id = ?", (series_id,)).fetchall():
                out.append((instance_id, -1, AttributeInstance(instance_id, entity_id, entity_type, name or None,
                                                               None, recorded_at, "delete", None)))
        return [instance for _, _, instance in sorted(out, key=lambda item: (item[0], item[1]))]

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
            mark = db.execute("SELECT max(m.recorded_at) FROM history_marks m JOIN series s USING (series_id) "
                              "WHERE s.tenant = ? AND s.entity_id = ? AND s.attr_name = ''",
                              (tenant, entity_id)).fetchone()
            deleted = mark[0] if mark else None
        return row["type"], deleted

    def history_attributes(self, tenant: str, entity_id: str) -> list[tuple[str, int]]:
        """(attribute name, series id) of every attribute an entity's history holds."""
        rows = self._conn().execute("SELECT attr_name, series_id FROM series WHERE tenant = ? AND entity_id = ? "
                                    "AND attr_name != '' ORDER BY series_id", (tenant, entity_id)).fetchall()
        return [(row[0], row[1]) for row in rows]

    def instances(self, series_id: int, window: TimeRange) -> list[tuple[int, str, str, dict[str, Any]]]:
        """(instance id, time, recorded at, attribute) of one series inside the window, oldest first."""
        _, attr_id = self._slot(series_id)
        if attr_id is None:
            return []
        sql, args = self._rows(series_id, window, ordered=True)
        rows = self._conn().execute(sql, args).fetchall()
        by_observed = window.axis == "observedAt"
        out = []
        for row in rows:
            recorded = _recorded_text(row["recorded"])
            observed = _observed_text(row["observed"], row["observed_ts"])
            out.append((row["instance_id"], (observed or recorded) if by_observed else recorded, recorded,
                        _instance(row["value"], self._rest(row["layout"], attr_id), observed)))
        return out

    def _kind(self, series_id: int) -> str | None:
        """The attribute type (Property, Relationship…) of a series' instances, None when it has none."""
        _, attr_id = self._slot(series_id)
        if attr_id is None:
            return None
        sql, args = self._rows(series_id)
        row = self._conn().execute(f"{sql} LIMIT 1", args).fetchone()
        return loads(self._rest(row["layout"], attr_id)).get("type") if row else None

    def temporal_values_json(self, series_id: int, window: TimeRange) -> tuple[str, str | None]:
        """The `[[value, time], …]` array as JSON text built by SQLite, and the attribute type.

        A day of 1 Hz history is 86,400 pairs: building them in C and splicing the text into the response
        avoids decoding and re-encoding every instance in Python.
        """
        kind = self._kind(series_id)
        if kind is None:
            return "[]", None
        built = self._temporal_values_columnar(series_id, window)
        return (built if built is not None else self._temporal_values_sql(series_id, window)), kind

    def _temporal_values_sql(self, series_id: int, window: TimeRange) -> str:
        """The pairs built by SQLite row by row: any value and time the store holds."""
        sql, args = self._rows(series_id, window, ordered=True)
        row = self._conn().execute(
            f"SELECT json_group_array(json_array({_JSON_VALUE_SQL}, "
            f"{_AT_SQL if window.axis == 'observedAt' else _RECORDED_SQL})) FROM ({sql})", args).fetchone()
        return row[0]

    def _temporal_values_columnar(self, series_id: int, window: TimeRange) -> str | None:
        """The same pairs built column-wise (_temporal_json) when every row in the window holds tagged numbers
        (or per-phase members of them, or booleans) and a time printed from its Unix seconds; else None.

        SQLite only checks the rows and concatenates the stored integers: a day of 1 Hz of one attribute is
        then one index range read and two `group_concat`s instead of a decode, a `strftime` and two JSON calls
        per row (docs/performance.md, History). Small answers (fewer than MIN_ROWS) are left to SQLite, whose
        cost per row is higher but which has no fixed cost: lastN=1 of a thousand meters stays as fast."""
        from . import _temporal_json  # numpy on first use: the write path never needs it

        if window.last_n is not None and window.last_n < _temporal_json.MIN_ROWS:
            return None
        _, attr_id = self._slot(series_id)
        if attr_id is None:
            return None
        row = self._conn().execute("SELECT in_column, members FROM history_attrs WHERE attr_id = ?",
                                   (attr_id,)).fetchone()
        if row is None or not row[0]:
            return None  # kept in the row's `extra` JSON
        column = f"a{attr_id}"
        members = [tuple(m) for m in loads(row[1])] if row[1] else None
        keys = tuple(key for key, _ in members) if members is not None else None
        if keys is not None and not all(_temporal_json.plain_key(key) for key in keys):
            return None
        stored = [column] if members is None else [f"{column}_{i}" for i in range(len(members))]
        # the checks are sums (cheaper than a test per row): SQLite's sum() is an integer only when every value
        # it adds is one, so sum(observed) == count(*) says every row's time is its printed observed_ts (1), and
        # an integer sum of a value column says every value is a tagged number (JSON text or a REAL makes it real)
        ts = "observed_ts" if window.axis == "observedAt" else "recorded"
        checks = ["sum(observed)" if window.axis == "observedAt" else "sum(typeof(recorded) = 'text')",
                  *(f"sum(s{i})" for i in range(len(stored))),
                  f"count({column})" if members is not None else "0"]
        picked = ", ".join(f"{c} AS s{i}" for i, c in enumerate(stored))
        columns = f"instance_id, observed_ts, observed, recorded, {picked}" + (
            f", {column}" if members is not None else "")
        # one row first, unsorted (an index seek): a series of text or REALs (a Relationship, a status word), or
        # without observedAt, is declined before its whole window is read and read again by the SQL path
        sql, args = self._rows(series_id, TimeRange(window.start, window.end, None, window.axis), value=False,
                               columns=columns)
        first = self._conn().execute(
            f"SELECT observed, typeof(recorded), typeof(s0), {column if members is not None else 'NULL'} "
            f"FROM ({sql}) LIMIT 1", args).fetchone()
        if first is not None and (first[2] != "integer" or first[3] is not None or (
                first[0] != 1 if window.axis == "observedAt" else first[1] == "text")):
            return None
        sql, args = self._rows(series_id, window, ordered=True, value=False, columns=columns)
        concat = ", ".join(f"group_concat(s{i})" for i in range(len(stored)))
        # one table read along its clustered index is in that order already: unsorted, the sub-select is
        # flattened into the aggregate (no co-routine per row)
        sql = sql.removesuffix(_CLUSTERED_ORDER)
        # observedAt printed from observed_ts is a whole millisecond: ts * 1000 rounds to it directly; the time
        # an instance was accepted (modifiedAt) has microseconds, so there strftime's own clock is computed
        clock, offset = ((_temporal_json.EXACT_MS_SQL, 0) if window.axis == "observedAt" else
                         (_temporal_json.MS_SQL, _temporal_json.JULIAN_EPOCH_MS))
        try:
            found = self._conn().execute(
                f"SELECT count(*), {', '.join(checks)}, {concat}, "
                f"group_concat({clock.format(ts=ts)}) FROM ({sql})", args).fetchone()
        except sqlite3.OperationalError as exc:  # "integer overflow" of a sum: huge numbers, SQLite prints them
            if "overflow" not in str(exc):
                raise
            return None
        count = found[0]
        if count == 0:
            return "[]"
        if count < _temporal_json.MIN_ROWS:
            return None
        time_check, sums, members_as_json = found[1], found[2:2 + len(stored)], found[2 + len(stored)]
        if (window.axis == "observedAt" and (type(time_check) is not int or time_check != count)) or (
                window.axis != "observedAt" and time_check):
            return None  # a time kept as text, or an instance without observedAt (printed from another column)
        if members_as_json or not all(type(total) is int for total in sums):
            return None  # some value is JSON text or a REAL: SQLite prints those
        texts = found[3 + len(stored):]
        ms = _temporal_json.integers(texts[-1], count)
        columns = [_temporal_json.integers(text, count) for text in texts[:-1]]
        if ms is None or any(c is None for c in columns):
            return None
        ms -= offset
        if ms[0] < 0 or ms.max() > _temporal_json.MAX_TS * 1000:  # ms[0]: the smallest (rows sorted by time)
            return None
        kinds = [kind for _, kind in members] if members is not None else ["n"]
        fields = [_temporal_json.boolean_field(c) if kind == "b" else _temporal_json.number_field(c)
                  for c, kind in zip(columns, kinds, strict=True)]
        return _temporal_json.pairs_json(fields, keys, ms)

    def aggregate(self, series_id: int, window: TimeRange, origin: float, period_s: float,
                  counts: bool = False, distinct: bool = False) -> list[Bucket]:
        """Per-period statistics of one series; object values (per-phase) are aggregated per key.

        Answered from the 1-min / 10-min / 1-hour rollups when every period is a whole number of rollup buckets on
        their grid (and distinctCount is not asked), plus the few rows still waiting in readings_log; else from
        the raw rows: one range query per period (rows come out of the clustered index in time order), or one
        GROUP BY for many small periods and for lastN. Numbers are aggregated as SQL numbers, JSON objects per
        key through `json_each`.
        """
        with self.snapshot():
            return self._aggregate(series_id, window, origin, period_s, counts, distinct)

    def _aggregate(self, series_id: int, window: TimeRange, origin: float, period_s: float, counts: bool,
                   distinct: bool) -> list[Bucket]:
        db = self._conn()
        sql, args = self._rows(series_id)
        sample = db.execute(f"SELECT typeof(value) FROM ({sql}) LIMIT 1", args).fetchone()
        rollup = None
        if window.last_n is None and window.axis == "observedAt" and not distinct and math.isfinite(period_s):
            rollup = _rollups.rollup_period(origin, period_s, window.start, window.end)
        if rollup is not None and self._below_rollup_retention(series_id, rollup, window):
            rollup = None  # that period's rollups were deleted there (prune_rollups), raw rows were not
        if rollup is not None:
            if sample is None and not self._has_rollups(series_id):
                return []
            return self._aggregate_rollups(series_id, window, origin, period_s, rollup, counts,
                                           numeric=sample[0] in ("integer", "real") if sample else None)
        if sample is None:
            return []
        # two queries: SQLite answers a lone min() or max() with one index seek, both together with a scan
        low = window.start if window.start is not None else self.first_observed(series_id)
        high = window.end if window.end is not None else self._last_observed(series_id) + 1e-6
        assert low is not None
        first, last = math.floor((low - origin) / period_s), math.floor((high - origin) / period_s)
        if window.last_n is not None or window.axis != "observedAt" or last - first > _MAX_PERIOD_QUERIES:
            return self._aggregate_grouped(series_id, window, origin, period_s)
        numeric = sample[0] in ("integer", "real")
        distinct_sql = "count(DISTINCT value)" if distinct else "NULL"
        out: list[Bucket] = []
        for index in range(first, last + 1):
            start, end = max(low, origin + index * period_s), min(high, origin + (index + 1) * period_s)
            if start >= end:
                continue
            rows_sql, rows_args = self._rows(series_id, TimeRange(start, end), columns="observed_ts")
            if numeric:
                stats = db.execute(
                    f"SELECT count(*), {_rollups.sum_sql('value')}, {_rollups.sumsq_sql('value')}, min(value), max(value) "
                    f"FROM ({rows_sql}) "
                    "WHERE typeof(value) IN ('integer', 'real')", rows_args).fetchone()
                total, distinct_n = stats[0], 0
                if counts:  # totalCount/distinctCount also count non-numeric values; a second pass only then
                    total, distinct_n = db.execute(f"SELECT count(*), {distinct_sql} FROM ({rows_sql})",
                                                   rows_args).fetchone()
                if total:
                    out.append(Bucket(index, None, total, distinct_n or 0, stats[0], stats[1], stats[2], stats[3],
                                      stats[4]))
                continue
            rows = db.execute(
                f"SELECT key, count(*) AS total, {distinct_sql.replace('value', 'v')} AS distinct_n, "
                f"count(num) AS numeric_n, {_rollups.sum_sql('num')} AS total_sum, "
                f"{_rollups.sumsq_sql('num')} AS total_sumsq, "
                "min(num) AS vmin, max(num) AS vmax FROM (SELECT j.key AS key, coalesce(j.atom, j.value) AS v, "
                "CASE WHEN j.type IN ('integer', 'real') THEN j.value END AS num "
                f"FROM ({rows_sql}) AS h, json_each(h.value) AS j) GROUP BY key ORDER BY key", rows_args).fetchall()
            out += [Bucket(index, row["key"], row["total"], row["distinct_n"] or 0, row["numeric_n"],
                           row["total_sum"], row["total_sumsq"], row["vmin"], row["vmax"]) for row in rows]
        return out

    def _has_rollups(self, series_id: int) -> bool:
        entity_key, attr_id = self._slot(series_id)
        return self._conn().execute("SELECT 1 FROM rollup_stats WHERE entity_key = ? AND attr_id = ? LIMIT 1",
                                    (entity_key, attr_id)).fetchone() is not None

    def _aggregate_rollups(self, series_id: int, window: TimeRange, origin: float, period_s: float, rollup: int,
                           counts: bool, numeric: bool | None) -> list[Bucket]:
        """Statistics from rollup buckets, merged with those of the rows not yet folded (readings_log)."""
        entity_key, attr_id = self._slot(series_id)
        low = int(window.start) // rollup if window.start is not None else -(2 ** 62)
        high = int(window.end) // rollup if window.end is not None else 2 ** 62
        merged: dict[tuple[int, str], list[Any]] = {}
        start, period = int(origin), int(period_s)
        stored, raw_from = self._rollup_sources(entity_key, attr_id, rollup, low, high)
        for bucket_s, rows in stored:
            for bucket, keys_id, blob in rows:
                keys = self._rollup_keys_of(keys_id)
                index = (bucket * bucket_s - start) // period
                for key, (total, numeric_n, total_sum, sumsq, vmin, vmax) in zip(
                        keys, _rollups.answer_stats(blob, len(keys)), strict=True):
                    into = merged.get((index, key))
                    if into is None:
                        merged[(index, key)] = into = [0, 0, [], [], vmin, vmax]
                    into[0] += total
                    if numeric_n:
                        into[1] += numeric_n
                        into[2].append(total_sum)
                        into[3].append(sumsq)
                        if into[4] is None or vmin < into[4]:
                            into[4] = vmin
                        if into[5] is None or vmax > into[5]:
                            into[5] = vmax
        if raw_from is not None:  # the open buckets: their rows, as the rollups will hold them once they close
            self._merge_open_rows(merged, series_id, window, origin, period_s, raw_from)
        for stats in merged.values():  # the sums of the buckets, correctly rounded (SQLite's sum() was KBN)
            stats[2] = math.fsum(stats[2]) if stats[2] else None
            stats[3] = math.fsum(stats[3]) if stats[3] else None
        # the rows not folded yet: added as before (an integer sum of raw rows alone stays an integer)
        for b in self._aggregate_grouped(series_id, window, origin, period_s, tables=("readings_log",)):
            into = merged.get((b.index, b.key or ""))
            if into is None:
                merged[(b.index, b.key or "")] = [b.total, b.numeric, b.sum, b.sumsq, b.min, b.max]
                continue
            into[0] += b.total
            into[1] += b.numeric
            into[2] = _add(into[2], b.sum)
            into[3] = _add(into[3], b.sumsq)
            into[4] = b.min if into[4] is None else (into[4] if b.min is None else min(into[4], b.min))
            into[5] = b.max if into[5] is None else (into[5] if b.max is None else max(into[5], b.max))
        if numeric is None:  # raw history pruned: what the rollups hold says whether values were scalars
            numeric = any(key == "" and stats[1] for (_, key), stats in merged.items())
        out = []
        for (index, key), (total, numeric_n, total_sum, sumsq, vmin, vmax) in sorted(merged.items()):
            if numeric != (key == ""):
                continue
            if numeric and not counts:
                total = numeric_n
            if numeric and not total:
                continue
            out.append(Bucket(index, None if numeric else key, total, 0, numeric_n, total_sum, sumsq, vmin, vmax))
        return out

    def _rollup_sources(self, entity_key: int, attr_id: int | None, rollup: int, low: int, high: int
                        ) -> tuple[Iterator[tuple[int, sqlite3.Cursor]], float | None]:
        """The stored buckets an aggregation over rollup buckets low..high-1 reads, as (period_s, rows of
        (bucket, keys_id, stats)), and the time from which `readings` rows are not folded yet (None: all are).

        Each entity's newest buckets stay open until a later reading closes them (the mover writes a bucket
        once, see _close_rollups): before the rollup's open bucket its own buckets answer, then each finer
        period's closed buckets (10-min, 1-min), then the raw rows of the open minute."""
        opened = {period_s: bucket for (_, period_s), bucket in self._open_buckets(entity_key, entity_key).items()}
        segments: list[tuple[int, int, int]] = []
        from_ts, end_ts = low * rollup, high * rollup
        raw_from: float | None = None
        for period_s in sorted((p for p in _rollups.ROLLUP_PERIODS_S if p <= rollup), reverse=True):
            bucket = opened.get(period_s)
            first = max(from_ts // period_s, -(2 ** 62))
            stop = min(end_ts // period_s, 2 ** 62, bucket if bucket is not None else 2 ** 62)
            if stop > first:
                segments.append((period_s, first, stop))
            if bucket is None:
                break
            from_ts = raw_from = max(from_ts, bucket * period_s)
        db = self._conn()

        def rows() -> Iterator[tuple[int, sqlite3.Cursor]]:  # one statement per segment, run when reached
            for period_s, first, stop in segments:
                yield period_s, db.execute(
                    "SELECT bucket, keys_id, stats FROM rollup_stats WHERE entity_key = ? AND attr_id = ? AND "
                    "period_s = ? AND bucket >= ? AND bucket < ?", (entity_key, attr_id, period_s, first, stop))
        return rows(), raw_from

    def _merge_open_rows(self, merged: dict[tuple[int, str], list[Any]], series_id: int, window: TimeRange,
                         origin: float, period_s: float, raw_from: float) -> None:
        """Add the `readings` rows from `raw_from` on (buckets still open) to statistics being merged from
        rollups; sums as doubles, as a rollup holds them."""
        start = raw_from if window.start is None else max(raw_from, window.start)
        for b in self._aggregate_grouped(series_id, TimeRange(start, window.end), origin, period_s,
                                         tables=("readings",)):
            into = merged.get((b.index, b.key or ""))
            if into is None:
                merged[(b.index, b.key or "")] = into = [0, 0, [], [], None, None]
            into[0] += b.total
            if b.numeric:
                low, high = float(b.min), float(b.max)  # type: ignore[arg-type]
                into[1] += b.numeric
                into[2].append(float(b.sum))  # type: ignore[arg-type]
                into[3].append(float(b.sumsq))  # type: ignore[arg-type]
                into[4] = low if into[4] is None else min(into[4], low)
                into[5] = high if into[5] is None else max(into[5], high)

    def _aggregate_grouped(self, series_id: int, window: TimeRange, origin: float, period_s: float,
                           tables: tuple[str, ...] | None = None) -> list[Bucket]:
        """One GROUP BY over the whole window (many periods, or lastN)."""
        sql, args = self._rows(series_id, window, tables=tables, columns="instance_id, observed_ts")
        rows = self._conn().execute(
            "SELECT bucket, key, count(*) AS total, count(DISTINCT v) AS distinct_n, count(num) AS numeric_n, "
            f"{_rollups.sum_sql('num')} AS total_sum, {_rollups.sumsq_sql('num')} AS total_sumsq, min(num) AS vmin, "
            "max(num) AS vmax FROM ("
            " SELECT CAST(floor((w.t - ?) / ?) AS INTEGER) AS bucket, j.key AS key,"
            " CASE WHEN j.type IS NULL THEN w.value ELSE coalesce(j.atom, j.value) END AS v,"
            " CASE WHEN j.type IS NULL THEN (CASE WHEN typeof(w.value) IN ('integer', 'real') THEN w.value END)"
            "  WHEN j.type IN ('integer', 'real') THEN j.value END AS num"
            f" FROM ({sql}) AS w LEFT JOIN json_each(CASE WHEN typeof(w.value) = 'text' THEN w.value END) AS j) "
            "GROUP BY bucket, key ORDER BY bucket, key", [origin, period_s, *args]).fetchall()
        return [Bucket(row["bucket"], row["key"], row["total"], row["distinct_n"], row["numeric_n"],
                       row["total_sum"], row["total_sumsq"], row["vmin"], row["vmax"]) for row in rows]

    def first_observed(self, series_id: int) -> float | None:
        """The earliest time of a series (aggregation periods start there without timeAt)."""
        return self._bound("ASC", series_id)

    def _last_observed(self, series_id: int) -> float:
        bound = self._bound("DESC", series_id)
        return bound if bound is not None else 0.0

    def _bound(self, order: str, series_id: int) -> float | None:
        """The first or last observed_ts of a series over both tables (each read in index order, one row)."""
        _, attr_id = self._slot(series_id)
        if attr_id is None:
            return None
        present = []
        for table in ("readings", "readings_log"):
            sql, args = self._rows(series_id, tables=(table,), columns="observed_ts")
            row = self._conn().execute(f"{sql} ORDER BY observed_ts {order} LIMIT 1", args).fetchone()
            if row is not None:
                present.append(row[0])
        if not present:
            return None
        return min(present) if order == "ASC" else max(present)

    def prune_history(self, before_ts: float, entities_per_transaction: int = 200) -> int:
        """Delete raw instances observed before `before_ts` (rollups stay), entity by entity, in short
        transactions; returns how many attribute instances went.

        Waiting rows are folded into the rollups first, so pruning never loses them from the aggregates. Each
        delete is a range at the start of one entity's clustered B-tree.
        """
        self.move_history()
        self._close_rollups_before(before_ts)
        keys = [row[0] for row in self._conn().execute("SELECT rowid FROM temporal_entities").fetchall()]
        counted = self._instances_sql()
        deleted = 0
        for start in range(0, len(keys), entities_per_transaction):
            with self.transaction():
                for key in keys[start:start + entities_per_transaction]:
                    for table in ("readings", "readings_log"):
                        gone = self._db.execute(
                            f"SELECT sum({counted}) FROM {table} WHERE entity_key = ? AND observed_ts < ?",
                            (key, before_ts)).fetchone()[0]
                        if gone:
                            self._db.execute(f"DELETE FROM {table} WHERE entity_key = ? AND observed_ts < ?",
                                             (key, before_ts))
                            deleted += gone
                if start == 0:
                    deleted += self._db.execute("DELETE FROM history_marks WHERE observed_ts < ?",
                                                (before_ts,)).rowcount
        return deleted

    def prune_rollups(self, period_s: int, before_ts: float, rows_per_transaction: int = 20_000) -> int:
        """Delete the rollup buckets of one period that start before the bucket holding `before_ts`; returns how
        many went (retention of the 1-min rollups: `--rollup-1min-retention-days`).

        The first bucket kept is recorded first (`rollup_retention`), so from then on an aggregation that would
        read this period's rollups below it reads the raw rows instead wherever those reach further back
        (`_below_rollup_retention`): deleting 1-min rollups under raw history kept longer never hides data.
        Then series by series (each a range of the rollups' primary key, found by seeking from one to the next:
        rollups of a series whose history was deleted go too), at most `rows_per_transaction` buckets per
        transaction, so ingestion interleaves even on the first pass over years of 1-min rollups.
        """
        kept_from = math.floor(before_ts / period_s)
        self._close_rollups_before(before_ts)  # a quiet meter's open 10-min/hour buckets: built before 1-min go
        with self.transaction():
            self._db.execute("INSERT INTO rollup_retention (period_s, kept_from) VALUES (?, ?) ON CONFLICT (period_s) "
                             "DO UPDATE SET kept_from = max(kept_from, excluded.kept_from)", (period_s, kept_from))
        deleted, after, low = 0, (-(2 ** 63), -(2 ** 63)), None
        while True:
            with self.transaction():
                budget = rows_per_transaction
                while budget > 0:
                    if low is None:  # the next series, and its first bucket of this period
                        slot = self._db.execute("SELECT entity_key, attr_id FROM rollup_stats WHERE (entity_key, "
                                                "attr_id) > (?, ?) ORDER BY entity_key, attr_id LIMIT 1", after).fetchone()
                        if slot is None:
                            return deleted
                        after = (slot[0], slot[1])
                        low = self._db.execute("SELECT min(bucket) FROM rollup_stats WHERE entity_key = ? AND "
                                               "attr_id = ? AND period_s = ?", (*after, period_s)).fetchone()[0]
                        if low is None or low >= kept_from:
                            low = None
                            budget -= 1
                            continue
                    high = min(kept_from, low + budget)  # buckets are whole periods: at most `budget` rows
                    gone = self._db.execute("DELETE FROM rollup_stats WHERE entity_key = ? AND attr_id = ? AND "
                                            "period_s = ? AND bucket >= ? AND bucket < ?",
                                            (*after, period_s, low, high)).rowcount
                    deleted += gone
                    budget -= max(gone, 1)
                    low = high if high < kept_from else None

    def _below_rollup_retention(self, series_id: int, rollup: int, window: TimeRange) -> bool:
        """Whether the window reaches below the first bucket retention kept of `rollup` while raw rows of the
        series are kept there (then the raw rows answer: the rollups there were deleted)."""
        row = self._conn().execute("SELECT kept_from FROM rollup_retention WHERE period_s = ?", (rollup,)).fetchone()
        if row is None or (window.start is not None and window.start >= row[0] * rollup):
            return False
        first = self.first_observed(series_id)
        return first is not None and first < row[0] * rollup

    def rollups(self, series_id: int, period_s: int, window: TimeRange = TimeRange()) -> list[dict[str, Any]]:
        """The stored rollup buckets of one series (key, start, total, numeric, sum, sumsq, min, max, last),
        oldest first: what quality analytics and dashboards read per EN 50160 10-minute interval. The buckets
        still open (the newest of each entity, not written until a later reading closes them) are folded here
        from their raw rows, as the mover will fold them."""
        entity_key, attr_id = self._slot(series_id)
        low = math.floor(window.start / period_s) if window.start is not None else -(2 ** 62)
        high = math.ceil(window.end / period_s) if window.end is not None else 2 ** 62
        out = []
        with self.snapshot():
            stored = [(bucket, dict(zip(keys, _rollups.decode_stats(blob, len(keys), bucket * period_s),
                                        strict=True)))
                      for bucket, keys_id, blob in self._conn().execute(
                          "SELECT bucket, keys_id, stats FROM rollup_stats WHERE entity_key = ? AND attr_id = ? AND "
                          "period_s = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
                          (entity_key, attr_id, period_s, low, high))
                      for keys in [self._rollup_keys_of(keys_id)]]
            stored += self._open_rollups(entity_key, attr_id, period_s, low, high)
        for bucket, stats in stored:
            for key in sorted(stats):
                s = stats[key]
                out.append({"start": bucket * period_s, "key": key or None, "total": s.total, "numeric": s.numeric,
                            "sum": s.sum, "sumsq": s.sumsq, "min": None if s.min is None else float(s.min),
                            "max": None if s.max is None else float(s.max), "last": s.last})
        return out

    def _open_rollups(self, entity_key: int, attr_id: int | None, period_s: int, low: int, high: int
                      ) -> list[tuple[int, dict[str, _rollups.Stats]]]:
        """The open buckets low..high-1 of one attribute and period, folded from their `readings` rows."""
        opened = self._open_buckets(entity_key, entity_key).get((entity_key, period_s))
        if opened is None or attr_id is None or opened >= high:
            return []
        columns, plan = self._fold_plan(only=attr_id)
        folder = _rollups.Folder()
        _fold_rows(self._conn().execute(
            f"SELECT entity_key, observed_ts, instance_id, extra{columns} FROM readings WHERE entity_key = ? AND "
            "observed_ts >= ? AND observed_ts < ?", (entity_key, max(opened, low) * period_s, float(high * period_s))),
            plan, folder)
        return sorted(((bucket, stats) for (_, attr, _, bucket), stats in folder.buckets((period_s,)).items()
                       if attr == attr_id), key=lambda item: item[0])

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


_MAX_TAGGED_INT = 2 ** 59  # |n| * 10 + tag stays inside SQLite's 64-bit integers
_MAX_SCALED = 10 ** 15  # 15 significant digits: SQLite prints the decoded double back as the same decimal
_POWERS = " ".join(f"WHEN {d} THEN 1e{d}" for d in range(1, 10))


def _encode_number(value: float) -> int | None:
    """`_encoded` for one number; -0.0 (equal to 0.0, so it would share its cache entry) kept as a REAL."""
    if value == 0 and type(value) is float and math.copysign(1.0, value) < 0:
        return None
    return _encoded(value)


@lru_cache(maxsize=65536, typed=True)  # a meter's values repeat (flags, zeros, volts at 0.1 V): ~1 us saved each
def _encoded(value: float) -> int | None:
    """A number as one tagged integer (SQLite stores integers in 0-8 bytes, doubles in 8), or None to keep it.

    An int n becomes n * 10 (tag 0); a float whose repr has d = 1..9 decimals and no exponent becomes
    sign * (|m| * 10 + d), m its digits: 230.25 -> 230252, 0.0 -> 1 (repr "0.0"). Decoding m / 10**d as a
    double is correctly rounded, so it is the same float, and with <= 15 significant digits SQLite's JSON prints
    it back as the same text Python wrote. What does not fit (exponents, -0.0, > 9 decimals or 15 digits, huge
    ints) is kept as it was: a REAL, or JSON text for an int.
    """
    if type(value) is int:
        return value * 10 if -_MAX_TAGGED_INT < value < _MAX_TAGGED_INT else None
    text = repr(value)
    if "e" in text or "n" in text:
        return None
    whole, _, decimals = text.partition(".")
    if not 0 < len(decimals) <= 9:
        return None
    digits = int(whole + decimals)
    if not -_MAX_SCALED < digits < _MAX_SCALED:
        return None
    return digits * 10 + len(decimals) if digits >= 0 else digits * 10 - len(decimals)


# A value as JSON inside SQLite's json_array: text is JSON already, numbers print as SQLite prints them (15
# significant digits: exact for every tagged number; a double needing 16-17 digits, e.g. 0.1 + 0.2, prints
# rounded in temporalValues, as before schema 4; the normalized representation keeps it exactly)
_JSON_VALUE_SQL = "CASE WHEN typeof(value) = 'text' THEN json(value) ELSE value END"


def _decoded_sql(column: str) -> str:
    """SQL decoding a value column: tagged integers back to the int or float they were; an integer too large to
    tag (JSON text) back to the SQL integer it is, so aggregations count it as a number; reals, text as stored."""
    return (f"(CASE WHEN typeof({column}) = 'integer' THEN (CASE WHEN {column} % 10 = 0 THEN {column} / 10 "
            f"ELSE ({column} / 10) / (CASE abs({column}) % 10 {_POWERS} END) END) "
            f"WHEN typeof({column}) = 'text' AND json_type({column}) = 'integer' THEN {column} ->> '$' "
            f"ELSE {column} END)")


def _fold_rows(rows: Iterable[tuple[Any, ...]], plan: list[tuple[int, int, str, int]], folder: _rollups.Folder) -> int:
    """Add every value of readings rows (entity_key, observed_ts, instance_id, extra, value columns...) to the
    folder, as the temporal API's aggregation sees them: tagged integers decoded, an object's members per key
    (member columns or JSON), anything not a number counted but not numeric. Returns the attribute instances."""
    add = folder.add
    groups, finest = folder.groups, folder.finest
    value_of = _rollups.tagged_value
    counted = 0
    for row in rows:
        entity_key, ts, instance_id, extra = row[0], row[1], row[2], row[3]
        minute = int(ts // finest)
        for index, attr_id, key, kind in plan:
            value = row[index]
            if value is None:
                continue
            if kind == 0:
                counted += 1
                if type(value) is not int and type(value) is not float:
                    _fold_json(add, entity_key, attr_id, ts, instance_id, loads(value))
                    continue
            elif kind >= 3:
                counted += 1
                kind -= 3
            if kind == 2:  # a boolean member: counted, not numeric
                add(entity_key, attr_id, key, ts, instance_id, None)
                continue
            # a number (Folder.add inlined: this runs once per value moved)
            num = value_of(value) if type(value) is int else value
            group = groups.get((entity_key, attr_id, minute, key))
            if group is None:
                group = groups[(entity_key, attr_id, minute, key)] = [0, [], [], -math.inf, -1, None]
            group[0] += 1
            (group[1] if type(num) is int else group[2]).append(num)
            if ts > group[3] or (ts == group[3] and instance_id > group[4]):
                group[3], group[4], group[5] = ts, instance_id, num
        if extra:
            for attr_id, value in loads(extra).items():
                counted += 1
                _fold_json(add, entity_key, int(attr_id), ts, instance_id, value)
    return counted


def _fold_columns(rows: Iterable[tuple[Any, ...]], plan: list[tuple[int, int, str, int]],
                  folder: _rollups.Folder) -> None:
    """`_fold_rows` column by column, for rows sorted by (entity_key, observed_ts, instance_id) whose numeric
    columns SQLite has decoded already (`_fold_select`): one (entity, minute) at a time, each column's values are
    split into ints and floats by list comprehensions instead of a dictionary lookup, a decode and a comparison
    per value (the mover folds every closing minute this way: ~60 rows of ~40 values per meter). Same groups as
    `_fold_rows`; anything that is not a number (JSON text, a huge int kept as text) goes through it."""
    groups, finest = folder.groups, folder.finest
    for (entity_key, minute), chunk in groupby(rows, key=lambda row: (row[0], int(row[1] // finest))):
        chunk = list(chunk)
        for index, attr_id, key, kind in plan:
            values = [row[index] for row in chunk if row[index] is not None]
            if not values:
                continue
            kind = kind - 3 if kind >= 3 else kind
            if kind != 2:
                ints = [v for v in values if type(v) is int]
                floats = [v for v in values if type(v) is float] if len(ints) < len(values) else []
                if len(ints) + len(floats) < len(values):  # JSON text (objects, huge ints): value by value
                    for row in chunk:
                        value = row[index]
                        if type(value) is str:
                            _fold_json(folder.add, entity_key, attr_id, row[1], row[2], loads(value))
                        elif value is not None:  # decoded already
                            folder.add(entity_key, attr_id, key, row[1], row[2], value)
                    continue
            group = groups.get((entity_key, attr_id, minute, key))
            if group is None:
                group = groups[(entity_key, attr_id, minute, key)] = [0, [], [], -math.inf, -1, None]
            group[0] += len(values)
            if kind == 2:  # boolean members: counted, not numeric
                continue
            group[1] += ints
            group[2] += floats
            last = next(row for row in reversed(chunk) if row[index] is not None)
            if last[1] > group[3] or (last[1] == group[3] and last[2] > group[4]):
                group[3], group[4], group[5] = last[1], last[2], last[index]
        for row in chunk:
            if row[3]:
                for attr_id, value in loads(row[3]).items():
                    _fold_json(folder.add, entity_key, int(attr_id), row[1], row[2], value)


def _fold_select(names: list[str], plan: list[tuple[int, int, str, int]], table: str) -> str:
    """The value columns of `_fold_columns` as SQL: numbers (scalars, numeric members) decoded from the tagged
    integers in SQLite (as `tagged_value` does: n * 10 -> n, else digits / 10**d, the same correctly rounded
    double), booleans and text as stored."""
    out = []
    for name, (_, _, _, kind) in zip(names, plan, strict=True):
        column = f"{table}.{name}"
        if kind % 3 == 2:
            out.append(column)
        else:
            out.append(f"CASE WHEN typeof({column}) = 'integer' THEN (CASE WHEN {column} % 10 = 0 THEN {column} / 10 "
                       f"ELSE ({column} / 10) / (CASE abs({column}) % 10 {_POWERS} END) END) ELSE {column} END")
    return "".join(f", {expression}" for expression in out)


def _fold_json(add: Callable[..., None], entity_key: int, attr_id: int, ts: float, instance_id: int,
               value: Any) -> None:
    """A JSON value's share of the rollups: a number under '', an object's or array's members under their keys
    (as SQLite's json_each names them), anything else counted under '' as not numeric."""
    if isinstance(value, dict):
        for key, member in value.items():
            add(entity_key, attr_id, key, ts, instance_id, _number(member))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            add(entity_key, attr_id, str(index), ts, instance_id, _number(member))
    else:
        add(entity_key, attr_id, "", ts, instance_id, _number(value))


def _number(value: Any) -> int | float | None:
    return value if type(value) is int or type(value) is float else None


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _instance(value: Any, rest: str, observed_at: str | None) -> dict[str, Any]:
    """An attribute instance rebuilt from its stored value, observedAt and other members."""
    attribute = loads(rest)
    if isinstance(value, str):
        value = loads(value)
    attribute["object" if attribute.get("type") == "Relationship" else "value"] = value
    if observed_at is not None:
        attribute["observedAt"] = observed_at
    return attribute


@lru_cache(maxsize=4096)
def _prints_back(text: str) -> bool:
    """Whether a DateTime text is exactly what its Unix seconds print as (then only the number is stored)."""
    return _format_ts(epoch_seconds(text)) == text


def _by_attr(piece: Piece) -> int:
    return piece.attr_id


def _format_ts(ts: float) -> str:
    """`format_datetime(datetime.fromtimestamp(ts, UTC))` without building a datetime: the normalized temporal
    representation prints two per instance, and strftime was ~40 % of its time. Same rounding as fromtimestamp
    (the fraction to whole microseconds, half to even), then milliseconds truncated; outside 1970-9999 the
    datetime does it."""
    if not 0.0 <= ts < _YEAR_10000_TS:
        return format_datetime(datetime.fromtimestamp(ts, UTC))
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    day, of_day = divmod(int(whole), 86_400)
    hours, rest = divmod(of_day, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{_day_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{micros // 1000:03d}Z"


_YEAR_10000_TS = 253_402_300_800.0


@lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    """`YYYY-MM-DDT` of a day number (days since 1970-01-01)."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).strftime("%Y-%m-%dT")


def _observed_text(stored: Any, observed_ts: float) -> str | None:
    """observedAt as written, from the row's `observed` (NULL: none given; 1: the printed observed_ts)."""
    if stored is None:
        return None
    return stored if isinstance(stored, str) else _format_ts(observed_ts)


def _recorded_text(stored: float | str) -> str:
    return stored if isinstance(stored, str) else _format_ts(stored)


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else (a if b is None else a + b)


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
