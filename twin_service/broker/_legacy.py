"""History layouts of earlier broker versions, and their conversion to the wide layout (schema 3).

Schema 2 and before kept one history row per attribute instance (`history`, `history_log`, and before them
`attribute_instances`): ~30 rows and ~6 KB per meter message. Schema 3 keeps one row per entity and observedAt.
A data dir written by any earlier version is converted when the broker opens it, in one transaction (a crash
during the conversion leaves the old tables untouched and the conversion restarts at the next start).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

EPOCH_JULIAN = 2440587.5

# The schema-2 history tables, as that version created them (series and temporal_entities are still in use).
V2_HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    series_id   INTEGER NOT NULL,
    observed_ts REAL NOT NULL,
    instance_id INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    operation   TEXT NOT NULL,
    observed_at TEXT,
    value,
    attribute   TEXT,
    PRIMARY KEY (series_id, observed_ts, instance_id)
) WITHOUT ROWID;
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
"""


def has_legacy_history(db: sqlite3.Connection) -> bool:
    """Whether the database still holds history in a layout before schema 3."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE name IN ('history', 'history_log', "
                      "'attribute_instances')").fetchone() is not None


def upgrade_to_v2(db: sqlite3.Connection) -> None:
    """Bring schema 0/1 history (attribute_instances, or series rows without their own value column) to schema 2."""
    db.executescript(V2_HISTORY_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(history)")}
    if "value" not in columns:  # series layout before values had their own column
        db.execute("ALTER TABLE history ADD COLUMN observed_at TEXT")
        db.execute("ALTER TABLE history ADD COLUMN value")
        db.execute(
            "UPDATE history SET observed_at = attribute ->> '$.observedAt', "
            "value = CASE WHEN json_type(attribute, '$.value') IN ('integer', 'real') THEN attribute ->> "
            "'$.value' ELSE coalesce(attribute -> '$.value', attribute -> '$.object') END, "
            "attribute = json_remove(attribute, '$.value', '$.object', '$.observedAt') WHERE attribute IS NOT NULL")
        db.execute("PRAGMA user_version = 2")
    if db.execute("PRAGMA user_version").fetchone()[0] < 2:
        # version 1 kept observedAt in `attribute` and the coalesced time in observed_at
        for table in ("history", "history_log"):
            db.execute(f"UPDATE {table} SET observed_at = attribute ->> '$.observedAt', "
                       "attribute = json_remove(attribute, '$.observedAt') WHERE attribute IS NOT NULL")
        db.execute("PRAGMA user_version = 2")
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'attribute_instances'").fetchone() is None:
        return
    log.info("upgrading history to the series layout")
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT OR IGNORE INTO series (tenant, entity_id, attr_name) SELECT DISTINCT tenant, "
               "entity_id, coalesce(attr_name, '') FROM attribute_instances")
    db.execute("INSERT OR IGNORE INTO temporal_entities (tenant, id, type) SELECT tenant, entity_id, "
               "max(entity_type) FROM attribute_instances GROUP BY tenant, entity_id")
    db.execute(
        "INSERT OR IGNORE INTO history (series_id, observed_ts, instance_id, recorded_at, operation, observed_at, "
        "value, attribute) SELECT s.series_id, (julianday(coalesce(a.observed_at, a.recorded_at)) - "
        f"{EPOCH_JULIAN}) * 86400.0, a.instance_id, a.recorded_at, a.operation, "
        "a.observed_at, CASE WHEN a.attribute IS NULL THEN NULL WHEN "
        "json_type(a.attribute, '$.value') IN ('integer', 'real') THEN a.attribute ->> '$.value' ELSE "
        "coalesce(a.attribute -> '$.value', a.attribute -> '$.object') END, "
        "json_remove(a.attribute, '$.value', '$.object', '$.observedAt', '$.createdAt', '$.modifiedAt') "
        "FROM attribute_instances a JOIN series s ON s.tenant = a.tenant AND s.entity_id = a.entity_id "
        "AND s.attr_name = coalesce(a.attr_name, '')")
    db.execute("DROP TABLE attribute_instances")
    db.execute("PRAGMA user_version = 2")
    db.execute("COMMIT")


Reading = tuple[str, str, str, list[tuple[str, dict[str, Any]]], str, str]  # tenant, id, type, attrs, op, recorded


def v2_readings(db: sqlite3.Connection, instance: Callable[[Any, str, str | None], dict[str, Any]],
                marks: list[tuple[int, float, str]]) -> Iterator[Reading]:
    """Schema-2 instances regrouped into readings, in arrival order; deletion marks appended to `marks`.

    Consecutive instances (by instance id) of one entity with the same observedAt, recorded time and operation
    were written by one request: they become one wide row. An attribute seen twice starts a new row.
    """
    rows = db.execute(
        "SELECT s.series_id, s.tenant, s.entity_id, s.attr_name, t.type, h.observed_ts, h.recorded_at, h.operation, "
        "h.observed_at, h.value, h.attribute FROM (SELECT * FROM history UNION ALL SELECT * FROM history_log) AS h "
        "JOIN series s USING (series_id) JOIN temporal_entities t ON t.tenant = s.tenant AND t.id = s.entity_id "
        "ORDER BY h.instance_id")
    key: tuple[Any, ...] | None = None
    group: list[tuple[str, dict[str, Any]]] = []
    head: tuple[str, str, str, str, str] | None = None
    for series_id, tenant, entity_id, name, entity_type, observed_ts, recorded, operation, observed, value, rest \
            in rows:
        if operation == "delete" or rest is None:
            marks.append((series_id, observed_ts, recorded))
            continue
        row_key = (tenant, entity_id, observed, recorded, operation)
        if row_key != key or any(n == name for n, _ in group):
            if group and head is not None:
                yield head[0], head[1], head[2], group, head[3], head[4]
            key, group, head = row_key, [], (tenant, entity_id, entity_type, operation, recorded)
        group.append((name, instance(value, rest, observed)))
    if group and head is not None:
        yield head[0], head[1], head[2], group, head[3], head[4]


def drop_v2(db: sqlite3.Connection) -> None:
    """Remove the schema-2 history tables (after their rows were converted, in the same transaction)."""
    db.execute("DROP VIEW IF EXISTS all_history")
    db.execute("DROP TABLE IF EXISTS history")
    db.execute("DROP TABLE IF EXISTS history_log")
