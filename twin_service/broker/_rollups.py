"""1-minute and 10-minute aggregates of every numeric attribute, kept beside the raw history for years.

Written as data arrives: the store's mover sorts new readings from `readings_log` into `readings` every few
seconds, and in the same transaction folds exactly those rows into `rollups` (so an instance is counted once,
and a kill -9 at any moment leaves raw and rollups consistent). A bucket that receives late data (an offline
replay) is merged, not overwritten: counts and sums add, min/max combine, `last` keeps the latest observedAt.

Per bucket and per key (`''` for a scalar, `L1`/`L2`/`L3`… for a per-phase object) a row keeps the count of
values, the count of numeric ones, sum, sum of squares, min, max and the last numeric value with its time, which
is what the NGSI-LD aggregation methods need (totalCount, sum, avg, min, max, stddev, sumsq; not distinctCount)
and what an energy counter needs (its last value per interval). The 10-minute bucket is the EN 50160 / IEC
61000-4-30 class S aggregation interval.
"""

from __future__ import annotations

import itertools

ROLLUP_PERIODS_S = (60, 600)

ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollups (
    entity_key  INTEGER NOT NULL,       -- temporal_entities.rowid
    attr_id     INTEGER NOT NULL,       -- history_attrs.attr_id
    period_s    INTEGER NOT NULL,       -- 60 or 600
    bucket      INTEGER NOT NULL,       -- floor(observed_ts / period_s): the bucket starts at bucket * period_s
    key         TEXT NOT NULL,          -- '' for scalar values, the member name for object values (L1, L2, L3)
    total       INTEGER NOT NULL,       -- values (numeric or not)
    numeric     INTEGER NOT NULL,       -- numeric values
    sum         REAL,
    sumsq       REAL,
    min         REAL,
    max         REAL,
    last_ts     REAL,                   -- observedAt of the last numeric value
    last,                               -- the last numeric value (energy counters: the reading at the interval end)
    PRIMARY KEY (entity_key, attr_id, period_s, bucket, key)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS rollup_input (
    entity_key INTEGER, attr_id INTEGER, observed_ts REAL, instance_id INTEGER, key TEXT, num
);
CREATE TEMP TABLE IF NOT EXISTS rollup_part (
    period_s INTEGER, entity_key INTEGER, attr_id INTEGER, b INTEGER, key TEXT, total INTEGER, numeric INTEGER,
    sum, sumsq, min, max, last_ts REAL, last
);
CREATE TEMP TABLE IF NOT EXISTS rollup_last (
    entity_key INTEGER, attr_id INTEGER, b INTEGER, key TEXT, last_ts REAL, last,
    PRIMARY KEY (entity_key, attr_id, b, key)
);
"""


def sum_sql(value: str) -> str:
    """sum() that cannot raise SQLite's "integer overflow": integers from 1e12 on are added as doubles.

    An energy counter in Wh passes 1e12 only past 1 TWh; a sum of up to 9 million smaller integers stays exact.
    One overflowing aggregate would otherwise fail every fold of the mover (its rows never reach `readings`).
    Comparisons, not abs(): abs(-2**63) overflows too.
    """
    return f"sum(CASE WHEN {value} > -1e12 AND {value} < 1e12 THEN {value} ELSE {value} * 1.0 END)"


def sumsq_sql(value: str) -> str:
    """Sum of squares without integer overflow: integers from 1e6 on are squared as doubles."""
    return f"sum(CASE WHEN {value} > -1e6 AND {value} < 1e6 THEN {value} * {value} ELSE {value} * 1.0 * {value} END)"


def unpivot_members_sql(attr_id: int, members: list[tuple[str, str]], values_sql: list[str]) -> str:
    """Copy the values of an object kept in member columns: one scan of the rows, one output row per member.

    `values_sql[i]` is the SQL of member i's number (NULL for a boolean: counted, not numeric). Parameters as
    unpivot_sql's.
    """
    picks = " UNION ALL ".join(f"SELECT {i} AS i" for i in range(len(members)))
    keys = " ".join(f"WHEN {i} THEN '{key.replace(chr(39), chr(39) * 2)}'" for i, (key, _) in enumerate(members))
    nums = " ".join(f"WHEN {i} THEN {value}" for i, value in enumerate(values_sql))
    return (
        "INSERT INTO temp.rollup_input (entity_key, attr_id, observed_ts, instance_id, key, num) "
        f"SELECT l.entity_key, {attr_id}, l.observed_ts, l.instance_id, CASE m.i {keys} END, CASE m.i {nums} END "
        f"FROM readings_log AS l, ({picks}) AS m WHERE l.entity_key BETWEEN ? AND ? AND l.rowid <= ? "
        f"AND l.a{attr_id}_0 IS NOT NULL")


def unpivot_sql(attr_id: int, value_sql: str) -> str:
    """Copy one attribute's values (one row per scalar, one per member of an object) of the rows being moved.

    Parameters: low entity key, high entity key, highest readings_log rowid.
    """
    return (
        "INSERT INTO temp.rollup_input (entity_key, attr_id, observed_ts, instance_id, key, num) "
        f"SELECT l.entity_key, {attr_id}, l.observed_ts, l.instance_id, "
        "CASE WHEN j.type IS NULL THEN '' ELSE CAST(j.key AS TEXT) END, "
        "CASE WHEN j.type IS NULL THEN (CASE WHEN typeof(l.v) IN ('integer', 'real') THEN l.v END) "
        "WHEN j.type IN ('integer', 'real') THEN j.value END "
        f"FROM (SELECT entity_key, observed_ts, instance_id, {value_sql} AS v FROM readings_log "
        f"WHERE entity_key BETWEEN ? AND ? AND rowid <= ? AND {value_sql} IS NOT NULL) AS l "
        "LEFT JOIN json_each(CASE WHEN typeof(l.v) = 'text' AND json_type(l.v) IN ('object', 'array') "
        "THEN l.v END) AS j")


# Parameter: period. The last numeric value per bucket, by SQLite's bare-column rule: with a single max()
# aggregate, the other selected columns come from the row holding that maximum.
LAST_SQL = """
INSERT INTO temp.rollup_last (entity_key, attr_id, b, key, last_ts, last)
SELECT entity_key, attr_id, CAST(floor(observed_ts / ?1) AS INTEGER) AS b, key, max(observed_ts), num
FROM temp.rollup_input WHERE num IS NOT NULL GROUP BY entity_key, attr_id, b, key
"""

# Parameter: the finest period. Its buckets from the unpivoted rows (the one pass over every value).
FIRST_SQL = f"""
INSERT INTO temp.rollup_part (period_s, entity_key, attr_id, b, key, total, numeric, sum, sumsq, min, max, last_ts,
                              last)
SELECT ?1, g.entity_key, g.attr_id, g.b, g.key, g.total, g.numeric, g.sum, g.sumsq, g.min, g.max, l.last_ts, l.last
FROM (SELECT entity_key, attr_id, CAST(floor(observed_ts / ?1) AS INTEGER) AS b, key, count(*) AS total,
             count(num) AS numeric, {sum_sql('num')} AS sum, {sumsq_sql('num')} AS sumsq, min(num) AS min,
             max(num) AS max
      FROM temp.rollup_input GROUP BY entity_key, attr_id, b, key) AS g
LEFT JOIN temp.rollup_last AS l ON l.entity_key = g.entity_key AND l.attr_id = g.attr_id AND l.b = g.b
     AND l.key = g.key
"""

# Parameters: fine period, coarse period (a multiple of it). The coarse buckets' last values from the fine ones.
COARSE_LAST_SQL = """
INSERT INTO temp.rollup_last (entity_key, attr_id, b, key, last_ts, last)
SELECT entity_key, attr_id, CAST(floor(b * ?1 * 1.0 / ?2) AS INTEGER) AS nb, key, max(last_ts), last
FROM temp.rollup_part WHERE period_s = ?1 AND last_ts IS NOT NULL GROUP BY entity_key, attr_id, nb, key
"""

# Parameters: fine period, coarse period. A coarse bucket is the union of its fine buckets: counts and sums add,
# min/max combine; ~10x fewer rows to group than the raw values.
COARSE_SQL = f"""
INSERT INTO temp.rollup_part (period_s, entity_key, attr_id, b, key, total, numeric, sum, sumsq, min, max, last_ts,
                              last)
SELECT ?2, g.entity_key, g.attr_id, g.nb, g.key, g.total, g.numeric, g.sum, g.sumsq, g.min, g.max, l.last_ts, l.last
FROM (SELECT entity_key, attr_id, CAST(floor(b * ?1 * 1.0 / ?2) AS INTEGER) AS nb, key, sum(total) AS total,
             sum(numeric) AS numeric, {sum_sql('sum')} AS sum, {sum_sql('sumsq')} AS sumsq, min(min) AS min,
             max(max) AS max
      FROM temp.rollup_part WHERE period_s = ?1 GROUP BY entity_key, attr_id, nb, key) AS g
LEFT JOIN temp.rollup_last AS l ON l.entity_key = g.entity_key AND l.attr_id = g.attr_id AND l.b = g.nb
     AND l.key = g.key
"""

# Merges the new partial buckets into the stored ones (late data: an offline replay) instead of replacing them.
MERGE_SQL = """
INSERT INTO rollups (entity_key, attr_id, period_s, bucket, key, total, numeric, sum, sumsq, min, max, last_ts, last)
SELECT entity_key, attr_id, period_s, b, key, total, numeric, sum, sumsq, min, max, last_ts, last
FROM temp.rollup_part WHERE true
ON CONFLICT (entity_key, attr_id, period_s, bucket, key) DO UPDATE SET
    total = total + excluded.total,
    numeric = numeric + excluded.numeric,
    sum = CASE WHEN sum IS NULL THEN excluded.sum WHEN excluded.sum IS NULL THEN sum ELSE sum + excluded.sum END,
    sumsq = CASE WHEN sumsq IS NULL THEN excluded.sumsq WHEN excluded.sumsq IS NULL THEN sumsq
                 ELSE sumsq + excluded.sumsq END,
    min = min(coalesce(min, excluded.min), coalesce(excluded.min, min)),
    max = max(coalesce(max, excluded.max), coalesce(excluded.max, max)),
    last = CASE WHEN excluded.last_ts IS NOT NULL AND (last_ts IS NULL OR excluded.last_ts >= last_ts)
                THEN excluded.last ELSE last END,
    last_ts = max(coalesce(last_ts, excluded.last_ts), coalesce(excluded.last_ts, last_ts))
"""


def fold_statements(periods: tuple[int, ...] = ROLLUP_PERIODS_S) -> list[tuple[str, tuple[int, ...]]]:
    """The statements (SQL, parameters) folding temp.rollup_input into `rollups` for these periods, each a
    multiple of the one before: the finest from the values, every coarser one from its predecessor's buckets."""
    steps: list[tuple[str, tuple[int, ...]]] = [
        ("DELETE FROM temp.rollup_part", ()), ("DELETE FROM temp.rollup_last", ()),
        (LAST_SQL, (periods[0],)), (FIRST_SQL, (periods[0],))]
    for fine, coarse in itertools.pairwise(periods):
        assert coarse % fine == 0, (fine, coarse)
        steps += [("DELETE FROM temp.rollup_last", ()), (COARSE_LAST_SQL, (fine, coarse)),
                  (COARSE_SQL, (fine, coarse))]
    return [*steps, (MERGE_SQL, ()), ("DELETE FROM temp.rollup_part", ())]


# Parameters: rollup period, origin, aggregation period, entity key, attr id, rollup period, low bucket, high bucket.
ANSWER_SQL = """
SELECT (bucket * ?1 - ?2) / ?3 AS idx, key, sum(total) AS total, sum(numeric) AS numeric_n, sum(sum) AS total_sum,
       sum(sumsq) AS total_sumsq, min(min) AS vmin, max(max) AS vmax
FROM rollups WHERE entity_key = ?4 AND attr_id = ?5 AND period_s = ?6 AND bucket >= ?7 AND bucket < ?8
GROUP BY idx, key ORDER BY idx, key
"""


def rollup_period(origin: float, period_s: float, start: float | None, end: float | None) -> int | None:
    """The coarsest rollup whose buckets tile every aggregation period exactly, or None (raw history answers).

    Periods must be whole multiples of the rollup and start on its grid (origin, window start and end aligned),
    so each period is a union of whole buckets and the answer equals the one computed from raw instances.
    """
    for rollup in sorted(ROLLUP_PERIODS_S, reverse=True):
        points = [origin, period_s] + [t for t in (start, end) if t is not None]
        if period_s >= rollup and all(float(p).is_integer() and int(p) % rollup == 0 for p in points):
            return rollup
    return None
