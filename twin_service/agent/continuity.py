"""Keep the twin's cumulative energy continuous when a meter's counters go backwards (power cut, reflash, swap).

A meter's energy counters restart lower after a power cut: from zero, or (firmware/ade9000_esp32 with its flash
store) from the last copy saved to flash, which is older than what the twin already published. Published as
received, a member's cumulative import would jump back and every downstream difference (community accounting,
dashboards) would see negative energy. The agent's mapping stage is the one place every measure passes, so the
rule lives here, between `mapping.map_payload` and the upsert:

- per tenant, entity, cumulative attribute (measure table rows with `cumulative=True`) and phase key, the agent
  remembers the last counter value the meter sent, its observation time, and an offset (0 until a reset);
- a value LOWER than the last one is a reset, unless it is a redelivery: the offset grows by (last - new), so
  the published value continues exactly where it was; the new value is taken as the point the meter restarted
  from (the ADE9000 firmware sends exactly that point first after a power-on, so nothing is lost; a meter that
  restarts at zero without announcing it loses the energy of its first interval, never counts anything twice);
- a redelivery (MQTT QoS 1 sends a message again after a reconnect) repeats an (observedAt, value) pair seen
  recently; it gets the offset that was in force at its time and changes nothing. Right after an agent restart
  the recent pairs are not known, and a lower value observed at or before the last one counts as a redelivery.
  Time alone cannot decide: a meter's restart baseline is stamped with its boot time, which an RTC without its
  sub-second part can put a few hundred ms before the last reading delivered before the cut;
- the reset is marked on the instance that carries it: the attribute gets a `counterReset` sub-property (the
  meter's value before and after), and every attribute published with an offset carries `meterReading`, the
  value the meter actually sent, so nothing is hidden.

State is kept in SQLite (`agent-counters.sqlite`): offsets are written at once, last values at most every
`flush_interval_s` (a crash can forget up to that much progress; a reset that also happens in that window is then
under-corrected by the forgotten energy). The periodic write runs on its own thread: written from the MQTT thread
(where `apply` runs) it was a third of the agent's samples in a py-spy profile (docs/performance.md), stalling the
intake of every meter for its duration. It writes one row per entity (table `entity_counters`: the entity's
counters as one JSON object), not one per counter: the firmware's message has 12 counter values, so at 1,000
meters a flush is 1,000 rows instead of 12,000 (table `counters`, the layout before 2026-12-07, is read at start
and converted by the first flush).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from datamodels.measures import MEASURES

log = logging.getLogger("twin_service.agent.continuity")

CUMULATIVE_ATTRIBUTES = frozenset(m.attribute for m in MEASURES if m.cumulative)
_DIGITS = 9  # the wire's resolution for energy (1 uWh in kWh), below one ADE9000 energy LSB
_MAX_EPOCHS = 16  # resets remembered per counter, to give late replays the offset of their time
_RECENT = 64  # (observedAt, value) pairs remembered per counter to recognise a redelivery
COUNTERS_FILE = "agent-counters.sqlite"


@dataclass
class _Counter:
    last: float
    last_when: datetime | None
    offset: float = 0.0
    epochs: list[tuple[str, float]] = field(default_factory=list)  # (observedAt from which, offset)
    epochs_json: str = "[]"  # the epochs as stored: encoded once per reset, not once per flush
    last_text: str | None = None  # last_when as stored (the observedAt text received), printed once per reading
    # (observedAt, value) -> offset published with it, for recent values: a redelivery gets the same (not on disk)
    recent: dict[tuple[str | None, float], float] = field(default_factory=dict)

    def offset_at(self, when: datetime | None) -> float:
        if when is None:
            return self.offset
        offset = 0.0
        for start, value in self.epochs:
            if start and _parse(start) <= when:
                offset = value
        return offset


@dataclass(frozen=True)
class Reset:
    """One counter found going backwards."""

    entity_id: str
    attribute: str
    key: str  # "L1".."L3", or "" for a scalar
    before: float
    after: float
    observed_at: str | None


class CounterContinuity:
    """The agent's continuity rule for cumulative measures, with its state on disk (None: memory only)."""

    def __init__(self, path: Path | None, flush_interval_s: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, _Counter] = {}
        # entity ("tenant\x1fentity_id") -> its counters by "attribute\x1fkey": what one stored row holds
        self._by_entity: dict[str, dict[str, _Counter]] = {}
        self._dirty: set[str] = set()  # entities whose row is behind memory
        self._legacy_rows = False  # rows of the per-counter table still on disk: the next write converts them
        self._flush_interval_s = flush_interval_s
        self._flushed_at = time.monotonic()
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()  # the connection: the flusher thread and a reset's immediate write
        self._flusher: threading.Thread | None = None
        self._closing = threading.Event()
        self.resets_total = 0
        if path is not None:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS entity_counters (entity TEXT PRIMARY KEY, counters TEXT NOT NULL)")
            legacy = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'counters'").fetchone()
            if legacy:  # the per-counter layout (key = tenant, entity, attribute, phase key joined by \x1f)
                for key, last, last_when, offset, epochs in self._db.execute("SELECT * FROM counters"):
                    self._load(key, last, last_when, offset, epochs)
                self._legacy_rows = True
            for entity, packed in self._db.execute("SELECT entity, counters FROM entity_counters"):
                for member, (last, last_when, offset, epochs) in json.loads(packed).items():
                    self._load(f"{entity}\x1f{member}", last, last_when, offset, json.dumps(epochs))
            self._flusher = threading.Thread(target=self._flush_loop, name="agent-counters", daemon=True)
            self._flusher.start()

    def apply(self, tenant: str, fragments: list[dict[str, Any]]) -> list[Reset]:
        """Rewrite the cumulative attributes of `fragments` (in time order) in place; returns the resets found."""
        resets: list[Reset] = []
        with self._lock:
            for fragment in fragments:
                entity_id = fragment.get("id", "")
                for name in CUMULATIVE_ATTRIBUTES.intersection(fragment):
                    attribute = fragment[name]
                    if isinstance(attribute, dict) and "value" in attribute:
                        self._attribute(tenant, entity_id, name, attribute, resets)
            rows = self._dirty_rows() if resets else None
        if rows:  # an offset changed: on disk before the message carrying it is acknowledged
            self._write(rows)
        self.resets_total += len(resets)
        return resets

    def _load(self, ident: str, last: float, last_when: str | None, offset: float, epochs: str) -> None:
        counter = _Counter(last, _parse(last_when) if last_when else None, offset,
                           [tuple(e) for e in json.loads(epochs)], epochs, last_when)
        self._counters[ident] = counter
        entity, member = _split(ident)
        self._by_entity.setdefault(entity, {})[member] = counter

    def _flush_loop(self) -> None:
        """Every `flush_interval_s`, the counters that moved since the last write (off the MQTT thread)."""
        while not self._closing.wait(self._flush_interval_s):
            with self._lock:
                rows = self._dirty_rows()
            self._write(rows)

    def _attribute(
        self, tenant: str, entity_id: str, name: str, attribute: dict[str, Any], resets: list[Reset]
    ) -> None:
        observed = attribute.get("observedAt")
        when = _parse(observed) if isinstance(observed, str) else None
        raw = attribute["value"]
        parts = raw.items() if isinstance(raw, dict) else [("", raw)]
        out: dict[str, Any] = {}
        before: dict[str, float] = {}
        shifted = dirty = False
        entity = f"{tenant}\x1f{entity_id}"
        for key, value in parts:
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                out[key] = value  # not a counter reading (the meter's table refuses NaN/inf before this)
                continue
            ident = f"{entity}\x1f{name}\x1f{key}"
            counter = self._counters.get(ident)
            if counter is None:
                counter = self._counters[ident] = _Counter(value, when, last_text=_text(observed, when))
                self._by_entity.setdefault(entity, {})[f"{name}\x1f{key}"] = counter
                offset = 0.0
            elif (observed, value) in counter.recent:  # redelivered: published again exactly as before
                offset = counter.recent[(observed, value)]
            elif value >= counter.last:
                counter.last, counter.last_when, counter.last_text = value, when, _text(observed, when)
                offset = counter.offset
            elif counter.recent or not _not_later(when, counter.last_when):
                before[key] = counter.last
                counter.offset += counter.last - value
                counter.epochs = [*counter.epochs, (observed or "", counter.offset)][-_MAX_EPOCHS:]
                counter.epochs_json = json.dumps(counter.epochs)
                resets.append(Reset(entity_id, name, key, counter.last, value, observed))
                counter.last, counter.last_when, counter.last_text = value, when, _text(observed, when)
                offset = counter.offset
            else:  # right after a restart: older than the last value, a redelivery; the offset of its time
                offset = counter.offset_at(when)
            counter.recent[(observed, value)] = offset
            if len(counter.recent) > _RECENT:
                del counter.recent[next(iter(counter.recent))]
            dirty = True
            out[key] = round(value + offset, _DIGITS) if offset else value
            shifted = shifted or offset != 0
        if dirty:
            self._dirty.add(entity)
        attribute["value"] = out if isinstance(raw, dict) else out[""]
        if shifted:
            attribute["meterReading"] = {"type": "Property", "value": raw}
        if before:
            after = {k: raw[k] for k in before} if isinstance(raw, dict) else raw
            attribute["counterReset"] = {
                "type": "Property",
                "value": {"before": before if isinstance(raw, dict) else before[""], "after": after},
            }

    def _dirty_rows(self) -> list[tuple[str, str]]:
        """(entity, its counters as JSON) of the entities changed since the last write (caller holds `_lock`);
        every entity when rows of the per-counter layout are still on disk (they are converted in one go)."""
        self._flushed_at = time.monotonic()
        if self._db is None or not (self._dirty or self._legacy_rows):
            self._dirty.clear()
            return []
        entities = self._by_entity if self._legacy_rows else self._dirty
        rows = []
        for entity in entities:
            packed = {member: (c.last, c.last_text, c.offset, c.epochs)
                      for member, c in self._by_entity[entity].items()}
            try:
                rows.append((entity, orjson.dumps(packed).decode()))  # ~12x cheaper than json.dumps here
            except TypeError:  # an integer beyond 64 bits
                rows.append((entity, json.dumps(packed)))
        self._dirty.clear()
        return rows

    def _write(self, rows: list[tuple[str, str]]) -> None:
        if not rows:
            return
        with self._db_lock:
            if self._db is None:
                return
            try:
                self._db.execute("BEGIN")
                # an upsert updates the row in place; INSERT OR REPLACE deleted and re-inserted it
                self._db.executemany(
                    "INSERT INTO entity_counters VALUES (?, ?) ON CONFLICT (entity) DO UPDATE SET"
                    " counters = excluded.counters", rows)
                converting = self._legacy_rows
                if converting:  # every entity is in these rows (_dirty_rows): the old layout goes with them
                    self._db.execute("DROP TABLE IF EXISTS counters")
                self._db.execute("COMMIT")
                if converting:
                    self._legacy_rows = False
                    log.info("counter state converted to one row per entity (%d entities)", len(rows))
                return
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")  # disk full or read-only: keep going in memory, say so
                log.error("counter state not saved (%s); kept in memory, retried at the next flush", exc)
        with self._lock:
            self._dirty.update(r[0] for r in rows)

    def close(self) -> None:
        self._closing.set()
        if self._flusher is not None:
            self._flusher.join(timeout=10)
            self._flusher = None
        with self._lock:
            rows = self._dirty_rows()
        self._write(rows)
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _split(ident: str) -> tuple[str, str]:
    """A counter's ident -> (its entity "tenant\x1fentity_id", "attribute\x1fkey"); split from the right, as
    attribute names and phase keys hold no \x1f."""
    entity, name, key = ident.rsplit("\x1f", 2)
    return entity, f"{name}\x1f{key}"


def _text(observed: str | None, when: datetime | None) -> str | None:
    """last_when as stored: the observedAt received (fromisoformat reads it back), else the datetime printed."""
    if isinstance(observed, str):
        return observed
    return when.isoformat() if when is not None else None


def _not_later(when: datetime | None, last_when: datetime | None) -> bool:
    return when is not None and last_when is not None and when <= last_when


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
