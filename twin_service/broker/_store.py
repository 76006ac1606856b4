"""The broker's state in one SQLite file (WAL): tenants, current entities, attribute history, fetched contexts.

Current state and history are separate tables because they answer different questions: `entities` is what the
NGSI-LD entity API serves (one row per entity, attributes as a JSON object keyed by expanded name), and
`attribute_instances` keeps every accepted attribute instance with its observedAt for the temporal API, so an
offline replay of three fragments leaves three instances even though only the last one is current.
One connection guarded by a lock: SQLite serializes writers anyway, and every statement here is short.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ._model import Entity, now_iso

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
CREATE TABLE IF NOT EXISTS attribute_instances (
    instance_id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    attr_name   TEXT,                   -- expanded; NULL for entity-level events (entity deleted)
    dataset_id  TEXT,
    observed_at TEXT,                   -- the meter's time, when the writer gave one
    recorded_at TEXT NOT NULL,          -- when the broker accepted it (modifiedAt)
    operation   TEXT NOT NULL,          -- create | update | replace | delete
    attribute   TEXT                    -- JSON of the instance as stored; NULL for deletions
);
CREATE INDEX IF NOT EXISTS instances_by_attr
    ON attribute_instances (tenant, entity_id, attr_name, observed_at);
CREATE TABLE IF NOT EXISTS contexts (
    url         TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    fetched_at  TEXT NOT NULL
);
"""


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


class Store:
    """Tenants, entities and history in `<data_dir>/twin.sqlite`; safe to share between threads."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DATABASE_NAME
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: an answered request survives a power cut, not only a process crash ("nothing accepted is lost").
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.create_function("regexp", 2, _regexp, deterministic=True)
        self._db.executescript(_SCHEMA)
        log.info("broker state in %s", self.path)

    def close(self) -> None:
        """Checkpoint and close the database (a clean shutdown leaves no WAL behind)."""
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """All writes inside commit together or not at all (one request = one transaction)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- tenants ---------------------------------------------------------------------------------------
    def tenant_exists(self, tenant: str) -> bool:
        """Whether anything was ever created in this tenant (the default tenant always exists)."""
        if tenant == DEFAULT_TENANT:
            return True
        with self._lock:
            return self._db.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)).fetchone() is not None

    def ensure_tenant(self, tenant: str) -> None:
        """Create the tenant on first write (NGSI-LD creates tenants implicitly)."""
        if tenant == DEFAULT_TENANT:
            return
        with self._lock:
            cursor = self._db.execute("INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)",
                                      (tenant, now_iso()))
            if cursor.rowcount:
                log.info("tenant %r created", tenant)

    def tenants(self) -> list[str]:
        """Every tenant created so far."""
        with self._lock:
            return [row["name"] for row in self._db.execute("SELECT name FROM tenants ORDER BY name")]

    # -- entities --------------------------------------------------------------------------------------
    def get_entity(self, tenant: str, entity_id: str) -> Entity | None:
        """The current state of one entity, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM entities WHERE tenant = ? AND id = ?",
                                   (tenant, entity_id)).fetchone()
        return _entity(row) if row else None

    def query_entities(self, tenant: str, query: EntityQuery, limit: int, offset: int) -> tuple[list[Entity], int]:
        """One page of matching entities in creation order, and how many match in total."""
        where = ["tenant = ?"]
        args: list[Any] = [tenant]
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
            where.append(f"EXISTS (SELECT 1 FROM json_each(entities.attrs) WHERE key IN ({_marks(query.attrs)}))")
            args += query.attrs
        clause = " AND ".join(where)
        with self._lock:
            total = self._db.execute(f"SELECT count(*) FROM entities WHERE {clause}", args).fetchone()[0]
            rows = self._db.execute(f"SELECT * FROM entities WHERE {clause} ORDER BY rowid LIMIT ? OFFSET ?",
                                    [*args, limit, offset]).fetchall()
        return [_entity(row) for row in rows], total

    def insert_entity(self, tenant: str, entity: Entity) -> None:
        """Store a new entity (the caller checked it does not exist)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO entities (tenant, id, type, created_at, modified_at, attrs) VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, entity.id, entity.type, entity.created_at, entity.modified_at, json.dumps(entity.attrs)))

    def update_entity(self, tenant: str, entity: Entity) -> None:
        """Overwrite the stored state of an existing entity (its creation order is kept)."""
        with self._lock:
            self._db.execute("UPDATE entities SET type = ?, modified_at = ?, attrs = ? WHERE tenant = ? AND id = ?",
                             (entity.type, entity.modified_at, json.dumps(entity.attrs), tenant, entity.id))

    def delete_entity(self, tenant: str, entity_id: str) -> bool:
        """Remove an entity's current state (its history stays); False when there was none."""
        with self._lock:
            return self._db.execute("DELETE FROM entities WHERE tenant = ? AND id = ?",
                                    (tenant, entity_id)).rowcount > 0

    # -- history ---------------------------------------------------------------------------------------
    def record_instances(self, tenant: str, entity: Entity, attrs: Iterable[str], operation: str,
                         recorded_at: str) -> None:
        """Append the given attributes of `entity`, as they are now, to the history."""
        rows = [(tenant, entity.id, entity.type, name, entity.attrs[name].get("datasetId"),
                 entity.attrs[name].get("observedAt"), recorded_at, operation, json.dumps(entity.attrs[name]))
                for name in attrs]
        with self._lock:
            self._db.executemany(
                "INSERT INTO attribute_instances (tenant, entity_id, entity_type, attr_name, dataset_id, "
                "observed_at, recorded_at, operation, attribute) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def record_deletion(self, tenant: str, entity_id: str, entity_type: str, recorded_at: str) -> None:
        """Mark in history that the entity was deleted (the temporal API reports deletedAt)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO attribute_instances (tenant, entity_id, entity_type, attr_name, recorded_at, operation) "
                "VALUES (?, ?, ?, NULL, ?, 'delete')", (tenant, entity_id, entity_type, recorded_at))

    def history(self, tenant: str, entity_id: str, attr_name: str | None = None) -> list[AttributeInstance]:
        """Every recorded instance of an entity's attributes (one attribute if named), oldest first."""
        sql = "SELECT * FROM attribute_instances WHERE tenant = ? AND entity_id = ?"
        args: list[Any] = [tenant, entity_id]
        if attr_name is not None:
            sql += " AND attr_name = ?"
            args.append(attr_name)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY instance_id", args).fetchall()
        return [AttributeInstance(row["instance_id"], row["entity_id"], row["entity_type"], row["attr_name"],
                                  row["observed_at"], row["recorded_at"], row["operation"],
                                  json.loads(row["attribute"]) if row["attribute"] else None) for row in rows]

    # -- fetched @context documents (ContextCache) -----------------------------------------------------
    def get_context_document(self, url: str) -> dict[str, Any] | None:
        """A context document fetched earlier, so a restart needs no network for it."""
        with self._lock:
            row = self._db.execute("SELECT document FROM contexts WHERE url = ?", (url,)).fetchone()
        return json.loads(row["document"]) if row else None

    def put_context_document(self, url: str, document: dict[str, Any]) -> None:
        """Remember a fetched context document."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO contexts (url, document, fetched_at) VALUES (?, ?, ?)",
                             (url, json.dumps(document), now_iso()))


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" * len(values))


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str) -> bool:
    """`idPattern` matching: unanchored search, like the POSIX regexec Orion-LD uses (edge checked syntax)."""
    return _compiled(pattern).search(value) is not None


def _entity(row: sqlite3.Row) -> Entity:
    return Entity(row["id"], row["type"], json.loads(row["attrs"]), row["created_at"], row["modified_at"])
