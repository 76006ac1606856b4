"""Per-target history cache for the forecast service: each hour, read only what the broker received since.

Without it every hourly round re-reads each target's whole window from the temporal API (35 days of a meter's
import counter for load, 104 days of export and import for PV): at a 15-min reading cadence ~10,000 instances
per counter per round, for one new hour of information. The cache keeps, per (entity, attributes), the
counter's samples in memory and each round asks the broker only for `timerel=after` a point shortly before the
last sample it holds (NGSI-LD temporal query, ETSI GS CIM 009 §4.11: `after` selects instances observed at or
after `timeAt`; the merge below is right whether a broker reads it as `>=` or `>`).

**Same result as a full re-read.** The service turns a counter into hourly kWh by interpolating it at hour
boundaries (forecasting.service.hourly_energy). `np.interp` at a boundary uses only the last sample at or
before it and the first at or after it, so the cache keeps just the first and the last sample of each hour
(at most 48 a day per counter, 16 bytes each) and selects, for a window, the samples a full read would have
returned (`start - 30 min <= t < end`, the service's `between` query, half-open as the brokers serve it): the
hourly values are identical (tests/forecasting/test_history_cache.py checks it on a live broker).

**Late data.** A meter that was offline publishes its buffered readings later with their own `observedAt`.
Each incremental read re-reads `overlap_hours` (default 6) before the last cached sample, and every series is
read whole again once every `refresh_hours` (default 24), staggered by a hash of its key so the full reads
spread over the day instead of falling in one round. A reading published more than `overlap_hours` late is
seen at the next full read; until then the hours around it are interpolated from its neighbours (a cumulative
counter loses no energy, only how it splits between those hours).

**Bounded.** At most `max_samples` samples in all (default 3,000,000, ~48 MB); past that the least recently
used series are dropped whole (their next read is a full one). Samples older than the longest window a series
was asked for are trimmed on each read.

**Within a round** a series read for the same issue time under `fresh_s` (60 s) ago is answered from memory without a read: a member's
meter is its load target (import) and its PV generation meter (export - import), so the import counter is asked
for twice per round. A reading that lands between those two asks is seen by both next round instead of by the
second one now.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from datamodels.readings import counter_samples
from fiware_client import NotFound, instances

log = logging.getLogger("energytwin.forecast")
MARGIN = timedelta(minutes=30)  # the service reads each window from 30 min before its first hour
HOUR_S = 3600.0


def compact(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first and the last sample of each UTC hour (all interpolation at hour boundaries needs)."""
    if t.size <= 2:
        return t, v
    bucket = np.floor(t / HOUR_S)
    change = bucket[1:] != bucket[:-1]
    keep = np.concatenate([[True], change]) | np.concatenate([change, [True]])
    return t[keep], v[keep]


def _samples(history: dict, attrs: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    pairs = counter_samples(history, attrs)
    t = np.array([p[0].timestamp() for p in pairs], float)
    v = np.array([p[1] for p in pairs], float)
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


@dataclass
class _Series:
    t: np.ndarray
    v: np.ndarray
    read_from: float  # the cache holds every sample the broker had at or after this time when last read
    window_s: float  # the longest window asked for (seconds, margin included)
    full_read_hour: int  # hour number (epoch hours) of the last full read
    read_at: float = 0.0  # time.monotonic() of the last read
    read_for: float = 0.0  # the window end (the round's issue time) the last read was for


@dataclass
class CacheStats:
    full_reads: int = 0
    incremental_reads: int = 0
    instances_read: int = 0  # counter samples the broker returned
    fresh_hits: int = 0  # answered without a read: the series was read under `fresh_s` ago
    evicted: int = 0


@dataclass
class HistoryCache:
    """Counter histories kept across rounds; `samples(client, entity, attrs, start, end)` is the full read's
    answer, fetched incrementally."""

    overlap_hours: float = 6.0
    refresh_hours: int = 24
    max_samples: int = 3_000_000
    fresh_s: float = 60.0  # a series read this recently is not read again (load and PV of one meter, one round)
    stats: CacheStats = field(default_factory=CacheStats)
    _series: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def size(self) -> int:
        """Samples held, all series together."""
        return sum(s.t.size for s in self._series.values())

    def _due_full(self, key: tuple, hour: int, series: _Series) -> bool:
        if self.refresh_hours <= 0 or hour - series.full_read_hour < 1:
            return False
        if hour - series.full_read_hour >= 2 * self.refresh_hours:  # its slot was missed (service stopped)
            return True
        return (hour + zlib.crc32(repr(key).encode())) % self.refresh_hours == 0

    def _read(self, client, entity_id: str, attrs: tuple[str, str], since: datetime):
        entity = client.temporal_entity(entity_id, timerel="after", time_at=since, attrs=list(attrs),
                                        options=("temporalValues",))
        t, v = _samples({name: instances(entity, name) for name in attrs}, attrs)
        self.stats.instances_read += t.size
        return t, v

    def samples(self, client, entity_id: str, attrs: tuple[str, str], start: datetime,
                end: datetime) -> tuple[np.ndarray, np.ndarray]:
        """The counter samples (epoch s, kWh) with start - 30 min <= t < end, as a full `between` read gives them
        (first and last of each hour only). NotFound and broker errors propagate, the cache is left as it was."""
        key = (entity_id, tuple(attrs))
        lo = (start - MARGIN).timestamp()
        window = end.timestamp() - lo
        hour = int(end.timestamp() // HOUR_S)
        series = self._series.get(key)
        try:
            if series is None or lo < series.read_from or self._due_full(key, hour, series):
                # a full read covers the longest window this series was asked for, not only this one
                since = lo if series is None else min(lo, end.timestamp() - series.window_s)
                t, v = self._read(client, entity_id, attrs, datetime.fromtimestamp(since, UTC))
                self.stats.full_reads += 1
                series = _Series(*compact(t, v), since, max(window, series.window_s if series else 0.0), hour,
                                 time.monotonic(), end.timestamp())
            elif series.read_for == end.timestamp() and time.monotonic() - series.read_at < self.fresh_s:
                self.stats.fresh_hits += 1
                series.window_s = max(series.window_s, window)
            else:
                anchor = (series.t[-1] if series.t.size else series.read_from) - self.overlap_hours * HOUR_S
                anchor = max(anchor, series.read_from)
                t, v = self._read(client, entity_id, attrs, datetime.fromtimestamp(anchor, UTC))
                self.stats.incremental_reads += 1
                keep = series.t <= anchor  # an instance exactly at the anchor: ours, whatever `after` means
                new = t > anchor
                series.t, series.v = compact(np.concatenate([series.t[keep], t[new]]),
                                             np.concatenate([series.v[keep], v[new]]))
                series.window_s = max(series.window_s, window)
                series.read_at, series.read_for = time.monotonic(), end.timestamp()
        except NotFound:
            self._series.pop(key, None)
            raise
        oldest = end.timestamp() - series.window_s - HOUR_S  # trim what no window asked for reaches
        if oldest > series.read_from:
            cut = series.t >= oldest
            series.t, series.v, series.read_from = series.t[cut], series.v[cut], oldest
        self._series[key] = series
        self._series.move_to_end(key)
        self._evict()
        inside = (series.t >= lo) & (series.t < end.timestamp())
        return series.t[inside], series.v[inside]

    def _evict(self) -> None:
        total = self.size
        while total > self.max_samples and len(self._series) > 1:
            _, dropped = self._series.popitem(last=False)
            total -= dropped.t.size
            self.stats.evicted += 1
            log.info("forecast: history cache full (%d samples), dropped the least recently used series", total)
