"""1-minute, 10-minute and 1-hour aggregates of every numeric attribute, kept beside the raw history for years.

Written as data arrives, each bucket once: the store's mover sorts new readings from `readings_log` into
`readings` every few seconds and, in the same transaction, writes the buckets that this move closes. An
entity's bucket closes when a reading of a later bucket arrives; the newest bucket of each entity and period
stays open, and `rollup_open` says where (per entity and period, the first bucket not written). A closing 1-min
bucket is folded from its raw rows, a 10-min one from its ten 1-min buckets, an hour from its six 10-min ones;
the temporal API answers an open bucket from the finer closed buckets and the raw rows. Nothing lives only in
memory, so a kill -9 at any moment leaves raw and rollups consistent (the next pass folds what was not yet),
and a row is counted once. Schema 5 as first written merged every open bucket again on every pass (decode,
merge, encode, rewrite: 6-360 times a bucket), which cost more CPU at ingest than schema 4's SQL upsert. A bucket
that receives late data (an offline replay) after it closed is merged, not overwritten: counts and sums add,
min/max combine, `last` keeps the latest observedAt.

Per bucket and per key (`''` for a scalar, `L1`/`L2`/`L3`… for a per-phase object) the statistics are the count
of values, the count of numeric ones, sum, sum of squares, min, max and the last numeric value with its time:
what the NGSI-LD aggregation methods need (totalCount, sum, avg, min, max, stddev, sumsq; not distinctCount) and
what an energy counter needs (its last value per interval). The 10-minute bucket is the EN 50160 / IEC
61000-4-30 class S aggregation interval; the hour is the settlement period of energy communities and the
resolution of most panels, so a month hourly reads 720 rows instead of 4,320 (schema 5; a schema-4 dir gets its
hours built from its 10-minute buckets when it is converted).

Layout (schema 5): one row per (entity, attribute, period, bucket), the statistics of every key of the attribute
packed in one BLOB (`rollup_stats`; which keys, in order, is interned in `rollup_keys`). Schema 4 kept one row
per key with eight SQL columns (~118 bytes per key and bucket); packed, a per-phase key costs 37 bytes: counts
as 16-bit integers, sum and sum of squares as doubles, min/max/last as the store's tagged integers (a reading at
the firmware's precision, 230.25 V, is 230252: 4 bytes instead of a double's 8) and the last value's time as
microseconds into the bucket. Values that do not fit (more than 65,535 values in a bucket, numbers a tagged
32-bit integer cannot hold) use a wide record of doubles. The fold is Python over one scan of the rows being
moved (schema 4 ran ~45 SQL statements per 50 entities for it, a third of the broker's CPU at ingest).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, NamedTuple

ROLLUP_PERIODS_S = (60, 600, 3600)

ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollup_keys (  -- the keys a rollup row holds, in order: JSON ["L1", "L2", "L3"] or [""]
    keys_id     INTEGER PRIMARY KEY,
    keys        TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS rollup_stats (
    entity_key  INTEGER NOT NULL,       -- temporal_entities.rowid
    attr_id     INTEGER NOT NULL,       -- history_attrs.attr_id
    period_s    INTEGER NOT NULL,       -- 60, 600 or 3600
    bucket      INTEGER NOT NULL,       -- floor(observed_ts / period_s): the bucket starts at bucket * period_s
    keys_id     INTEGER NOT NULL,       -- rollup_keys.keys_id
    stats       BLOB NOT NULL,          -- one kind byte per key, then each key's record (see encode_stats)
    PRIMARY KEY (entity_key, attr_id, period_s, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_open (  -- per entity and period, the first bucket not folded yet (see below)
    entity_key  INTEGER NOT NULL,
    period_s    INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    PRIMARY KEY (entity_key, period_s)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS rollup_touched (
    entity_key INTEGER, attr_id INTEGER, period_s INTEGER, low INTEGER, high INTEGER
);
CREATE TEMP TABLE IF NOT EXISTS rollup_closing (  -- the mover's scratch: per entity, the span of buckets closing
    entity_key INTEGER, low INTEGER, high INTEGER
);
"""


class Stats(NamedTuple):
    """One key's statistics in one bucket (sum..last None when no value was numeric).

    A NamedTuple, not a frozen dataclass: the mover builds and merges ~200,000 of these a pass at 1,000 meters,
    and a frozen dataclass's __init__ costs ~10x a tuple's (it was the largest share of the fold in py-spy)."""

    total: int
    numeric: int
    sum: float | None
    sumsq: float | None
    min: float | int | None
    max: float | int | None
    last_ts: float | None
    last: float | int | None


def merge(a: Stats, b: Stats) -> Stats:
    """The statistics of the union of two sets of values (late data merged into a stored bucket)."""
    if not b.numeric:
        return Stats(a.total + b.total, a.numeric, a.sum, a.sumsq, a.min, a.max, a.last_ts, a.last)
    if not a.numeric:
        return Stats(a.total + b.total, b.numeric, b.sum, b.sumsq, b.min, b.max, b.last_ts, b.last)
    assert a.sum is not None and b.sum is not None and a.sumsq is not None and b.sumsq is not None
    later = b if b.last_ts is not None and (a.last_ts is None or b.last_ts >= a.last_ts) else a
    return Stats(a.total + b.total, a.numeric + b.numeric, a.sum + b.sum, a.sumsq + b.sumsq,
                 min(a.min, b.min), max(a.max, b.max), later.last_ts, later.last)  # type: ignore[type-var]


class Folder:
    """Accumulates the values of the rows being moved, then yields each touched bucket's statistics.

    `add` is called once per value (the hot loop of the fold: keep it to list appends and one comparison).
    """

    def __init__(self) -> None:
        # (entity_key, attr_id, bucket of the finest period, key) -> [total, ints, floats, last_ts, last_id, last];
        # public so the store's scan can update a group inline (a call per value was a fifth of the fold)
        self.groups: dict[tuple[int, int, int, str], list[Any]] = {}
        self.finest = ROLLUP_PERIODS_S[0]

    def add(self, entity_key: int, attr_id: int, key: str, ts: float, instance_id: int, num: Any) -> None:
        """One value; `num` the number, None when the value is not numeric (still counted in totalCount)."""
        group_key = (entity_key, attr_id, int(ts // self.finest), key)
        group = self.groups.get(group_key)
        if group is None:
            group = self.groups[group_key] = [0, [], [], -math.inf, -1, None]
        group[0] += 1
        if num is not None:
            (group[1] if type(num) is int else group[2]).append(num)
            if ts > group[3] or (ts == group[3] and instance_id > group[4]):
                group[3], group[4], group[5] = ts, instance_id, num

    def __bool__(self) -> bool:
        return bool(self.groups)

    def buckets(self, periods: tuple[int, ...] = ROLLUP_PERIODS_S
                ) -> dict[tuple[int, int, int, int], dict[str, Stats]]:
        """(entity_key, attr_id, period_s, bucket) -> key -> statistics, for each period (multiples of the
        finest one). The finest from the values; every coarser one by merging the finest buckets it holds, as a
        stored bucket and late data merge (sums of sums; one or two finest buckets per key and pass)."""
        finest: dict[tuple[int, int, int, str], Stats] = {
            group_key: _stats(group) for group_key, group in sorted(self.groups.items())}
        out: dict[tuple[int, int, int, int], dict[str, Stats]] = {}
        for period in periods:
            assert period % self.finest == 0, period
            factor = period // self.finest
            for (entity_key, attr_id, fine, key), stats in finest.items():
                by_key = out.setdefault((entity_key, attr_id, period, fine // factor), {})
                before = by_key.get(key)
                by_key[key] = stats if before is None else merge(before, stats)
        return out


def coarsen(rows: Iterable[tuple[int, int, int, int, bytes]], fine: int, period: int,
            keys_of: Callable[[int], tuple[str, ...]]) -> dict[tuple[int, int, int, int], dict[str, Stats]]:
    """Buckets of `period` merged from stored buckets of the finer period `fine` (rows: entity_key, attr_id,
    bucket, keys_id, stats, oldest first): a closing 10-minute bucket from its ten 1-minute ones, an hour from its
    six 10-minute ones. Merged in bucket order, so the same rows give the same sums however the passes fell."""
    factor = period // fine
    out: dict[tuple[int, int, int, int], dict[str, Stats]] = {}
    for entity_key, attr_id, bucket, keys_id, blob in rows:
        keys = keys_of(keys_id)
        by_key = out.setdefault((entity_key, attr_id, period, bucket // factor), {})
        for key, stats in zip(keys, decode_stats(blob, len(keys), bucket * fine), strict=True):
            before = by_key.get(key)
            by_key[key] = stats if before is None else merge(before, stats)
    return {group: {key: by_key[key] for key in sorted(by_key)} for group, by_key in out.items()}


def _stats(group: list[Any]) -> Stats:
    total, ints, floats, last_ts, _, last = group
    numeric = len(ints) + len(floats)
    if not numeric:
        return Stats(total, 0, None, None, None, None, None, None)
    # integers add exactly (then one rounding, as SQLite's REAL column did); doubles correctly rounded (fsum)
    if not floats:
        total_sum: float = float(sum(ints))
        sumsq = float(sum(i * i for i in ints))
        low, high = min(ints), max(ints)
    else:
        total_sum = math.fsum([*floats, sum(ints)]) if ints else math.fsum(floats)
        sumsq = math.fsum([*(x * x for x in floats), sum(i * i for i in ints)]) if ints else \
            math.fsum([x * x for x in floats])
        low, high = min(floats), max(floats)
        if ints:
            low, high = min(low, min(ints)), max(high, max(ints))
    return Stats(total, numeric, total_sum, sumsq, low, high, last_ts, last)


# Record kinds (one byte per key at the start of the blob) and their struct formats.
_COUNT = 0        # no numeric value: the total only, 16 bits
_COUNT_WIDE = 1   # the same, 32 bits
_PACKED = 2       # counts 16 bits, sum and sumsq doubles, min/max/last tagged 32-bit ints, last time in us offset
_WIDE_FLOAT = 3   # counts 32 bits, doubles for everything, last a double
_WIDE_INT = 4     # the same with last a 64-bit int
_FORMATS = {_COUNT: "H", _COUNT_WIDE: "I", _PACKED: "HHddiiiI", _WIDE_FLOAT: "IIdddddd", _WIDE_INT: "IIdddddq"}
_FIELDS = {kind: len(fmt) for kind, fmt in _FORMATS.items()}
_I32 = 2 ** 31
_MAX_OFFSET_US = 2 ** 32


@lru_cache(maxsize=4096)
def _struct(kinds: bytes) -> struct.Struct:
    return struct.Struct("<" + "".join(_FORMATS[kind] for kind in kinds))


@lru_cache(maxsize=65536)
def tagged_value(stored: int) -> int | float:
    """The number a tagged integer stands for (the store's _encoded, reversed; as _decoded_sql does in SQL)."""
    if stored % 10 == 0:
        return stored // 10
    magnitude = abs(stored)
    value = (magnitude // 10) / 10 ** (magnitude % 10)
    return -value if stored < 0 else value


def encode_stats(stats: Iterable[Stats], start: float, encode: Any) -> bytes:
    """The blob of one row: a kind byte per key, then the records. `encode` is the store's number tagging
    (a number -> tagged int or None); `start` the bucket's start, which last times are offsets from."""
    kinds = bytearray()
    values: list[Any] = []
    for s in stats:
        if not s.numeric:
            kinds.append(_COUNT if s.total < 65536 else _COUNT_WIDE)
            values.append(s.total)
            continue
        packed = None
        if s.total < 65536 and s.last_ts is not None:
            offset = round((s.last_ts - start) * 1e6)
            low, high, last = encode(s.min), encode(s.max), encode(s.last)
            if (0 <= offset < _MAX_OFFSET_US and low is not None and high is not None and last is not None
                    and -_I32 < low < _I32 and -_I32 < high < _I32 and -_I32 < last < _I32):
                packed = (s.total, s.numeric, s.sum, s.sumsq, low, high, last, offset)
        if packed is not None:
            kinds.append(_PACKED)
            values += packed
            continue
        last_int = type(s.last) is int and -(2 ** 63) <= s.last < 2 ** 63  # type: ignore[operator]
        kinds.append(_WIDE_INT if last_int else _WIDE_FLOAT)
        values += (s.total, s.numeric, s.sum, s.sumsq, float(s.min), float(s.max),  # type: ignore[arg-type]
                   s.last_ts if s.last_ts is not None else math.nan, s.last if last_int else float(s.last))
    return bytes(kinds) + _struct(bytes(kinds)).pack(*values)


def decode_stats(blob: bytes, count: int, start: float) -> list[Stats]:
    """The statistics of a row's `count` keys, in order."""
    kinds = blob[:count]
    fields = _struct(kinds).unpack_from(blob, count)
    out: list[Stats] = []
    at = 0
    for kind in kinds:
        if kind in (_COUNT, _COUNT_WIDE):
            out.append(Stats(fields[at], 0, None, None, None, None, None, None))
        elif kind == _PACKED:
            total, numeric, total_sum, sumsq, low, high, last, offset = fields[at:at + 8]
            out.append(Stats(total, numeric, total_sum, sumsq, tagged_value(low), tagged_value(high),
                             start + offset / 1e6, tagged_value(last)))
        else:
            total, numeric, total_sum, sumsq, low, high, last_ts, last = fields[at:at + 8]
            out.append(Stats(total, numeric, total_sum, sumsq, low, high,
                             None if math.isnan(last_ts) else last_ts, last))
        at += _FIELDS[kind]
    return out


def answer_stats(blob: bytes, count: int) -> list[tuple[int, int, float | None, float | None, float | None,
                                                         float | None]]:
    """(total, numeric, sum, sumsq, min, max) of a row's keys, min/max as doubles: what an aggregation answer
    reads (decode_stats without the last value and without building objects: a month is 4,320 rows a key)."""
    kinds = blob[:count]
    fields = _struct(kinds).unpack_from(blob, count)
    out = []
    at = 0
    value = tagged_value
    for kind in kinds:
        if kind == _PACKED:
            out.append((fields[at], fields[at + 1], fields[at + 2], fields[at + 3], float(value(fields[at + 4])),
                        float(value(fields[at + 5]))))
        elif kind in (_COUNT, _COUNT_WIDE):
            out.append((fields[at], 0, None, None, None, None))
        else:
            out.append(tuple(fields[at:at + 6]))  # type: ignore[arg-type]
        at += _FIELDS[kind]
    return out


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


def sum_sql(value: str) -> str:
    """sum() that cannot raise SQLite's "integer overflow": integers from 1e12 on are added as doubles.

    An energy counter in Wh passes 1e12 only past 1 TWh; a sum of up to 9 million smaller integers stays exact.
    Comparisons, not abs(): abs(-2**63) overflows too.
    """
    return f"sum(CASE WHEN {value} > -1e12 AND {value} < 1e12 THEN {value} ELSE {value} * 1.0 END)"


def sumsq_sql(value: str) -> str:
    """Sum of squares without integer overflow: integers from 1e6 on are squared as doubles."""
    return f"sum(CASE WHEN {value} > -1e6 AND {value} < 1e6 THEN {value} * {value} ELSE {value} * 1.0 * {value} END)"


# Schema 4's table, read once when a data dir written by it is opened (Store._migrate).
SCHEMA_4_ROWS_SQL = ("SELECT entity_key, attr_id, period_s, bucket, key, total, numeric, sum, sumsq, min, max, last_ts, "
                     "last FROM rollups ORDER BY entity_key, attr_id, period_s, bucket, key")
