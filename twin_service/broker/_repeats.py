"""Repeated readings: an attribute instance the history already holds is not stored a second time.

Why: MQTT QoS 1 is at-least-once (MQTT 3.1.1 §4.3.2). A meter whose PUBACK was lost in a Mosquitto restart sends
its reading again (DUP), Mosquitto redelivers what the IoT Agent had not acknowledged when the agent was killed,
and the agent itself resends a batch whose answer it never got when the broker died. Each of these writes the same
reading again, and a history that stores it twice counts a member's energy or a power-quality event twice.

The key is the NGSI-LD one of a temporal instance: (entity, attribute, observedAt), and the instance must be
identical (same value, same sub-attributes such as unitCode): a different value at the same observedAt is a new
instance, kept as NGSI-LD allows (the temporal representation of ETSI GS CIM 009: several instances may
share an observedAt; they differ by instanceId). Instances without observedAt are timed by their arrival and
never count as repeats.

How this compares with the production stack (docs/reliability.md, "Redelivered readings"): Orion-LD's TRoE gives
every write a fresh instanceId and stores it, and QuantumLeap inserts every notification (its maintainers declined
an ON DUPLICATE DO NOTHING key, orchestracities/ngsi-timeseries-api#336); STH-Comet added a unique index for this
very case (telefonicaid/fiware-sth-comet#252). The embedded broker does what STH-Comet does.

Cost: the writer keeps the newest observedAt per entity (one float; the first write of an entity after a start
reads it from the tables with two index lookups). A reading newer than that, the normal case of a meter sending
in time order, is stored without any lookup; only an older or equal one is compared with the rows at exactly its
observedAt (two index lookups). The cache may be too high (a rolled-back transaction, deleted history): that costs
a lookup, never a reading, because only a row found in the tables makes an instance a repeat.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._json import loads

MAX_ENTITIES = 200_000  # newest-observedAt entries kept; past that the cache starts again (costs lookups only)


@dataclass(frozen=True, slots=True)
class Piece:
    """One attribute instance as the readings row stores it."""

    attr_id: int
    shape_id: int  # interned sub-attributes (unitCode, ...): the row's layout maps attr_id -> shape_id
    columns: tuple[str, ...]  # its value columns; () when the value lives in the row's `extra` JSON
    values: tuple[Any, ...]  # what those columns hold; (value,) for an `extra` one


class RepeatFilter:
    """Drops the pieces of a row whose identical instance is already stored (see the module docstring)."""

    def __init__(self) -> None:
        self._newest: dict[int, float] = {}  # entity key -> newest observed_ts written (may be too high)
        self._slots: dict[int, dict[str, int]] = {}  # layout id -> {attr_id: shape_id} (immutable once written)
        self.repeats = 0  # instances not stored because they were already there

    def fresh(self, db: sqlite3.Connection, flush: Callable[[], None], entity_key: int, observed_ts: float,
              pieces: list[Piece]) -> list[Piece]:
        """The pieces not yet stored at this entity and observedAt.

        `db` is the writer (it sees the open transaction); `flush` writes the transaction's buffered rows first,
        so a repeat inside the same batch is found too."""
        newest = self._newest.get(entity_key)
        if newest is None:
            flush()
            newest = self._stored_newest(db, entity_key)
        if newest is None or observed_ts > newest:
            self._note(entity_key, observed_ts)
            return pieces
        flush()
        rows = [(self._layout_slots(db, row[0]), row[1], row[2:]) for row in db.execute(
            self._rows_sql(pieces), (entity_key, observed_ts) * 2)]
        if not rows:
            return pieces
        kept = [piece for piece in pieces if not self._stored(piece, pieces, rows)]
        self.repeats += len(pieces) - len(kept)
        return kept

    def _note(self, entity_key: int, observed_ts: float) -> None:
        if len(self._newest) >= MAX_ENTITIES:
            self._newest.clear()
        self._newest[entity_key] = observed_ts

    @staticmethod
    def _stored_newest(db: sqlite3.Connection, entity_key: int) -> float | None:
        found = [row[0] for row in db.execute(
            "SELECT max(observed_ts) FROM readings WHERE entity_key = ? UNION ALL "
            "SELECT max(observed_ts) FROM readings_log WHERE entity_key = ?", (entity_key, entity_key))
            if row[0] is not None]
        return max(found) if found else None

    @staticmethod
    def _rows_sql(pieces: list[Piece]) -> str:
        columns = ", ".join(["layout", "extra", *(c for piece in pieces for c in piece.columns)])
        return " UNION ALL ".join(f"SELECT {columns} FROM {table} WHERE entity_key = ? AND observed_ts = ?"
                                  for table in ("readings", "readings_log"))

    def _layout_slots(self, db: sqlite3.Connection, layout_id: int) -> dict[str, int]:
        slots = self._slots.get(layout_id)
        if slots is None:
            row = db.execute("SELECT slots FROM layouts WHERE layout_id = ?", (layout_id,)).fetchone()
            slots = loads(row[0]) if row else {}
            if len(self._slots) > 100_000:
                self._slots.clear()
            self._slots[layout_id] = slots
        return slots

    @staticmethod
    def _stored(piece: Piece, pieces: list[Piece], rows: list[tuple[dict[str, int], str | None, tuple[Any, ...]]]
                ) -> bool:
        """Whether a stored row at that observedAt holds this attribute with the same sub-attributes and value."""
        start = 0
        for other in pieces:  # where this piece's columns sit in the selected values
            if other is piece:
                break
            start += len(other.columns)
        key = str(piece.attr_id)
        for slots, extra, values in rows:
            if slots.get(key) != piece.shape_id:
                continue
            if not piece.columns:
                if extra is not None and key in (stored := loads(extra)) and stored[key] == piece.values[0]:
                    return True
                continue
            if tuple(values[start:start + len(piece.columns)]) == piece.values:
                return True
        return False
