"""Typed results: what an operation found or did, and a meter's measurement read back from the broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from datamodels.entities import ThreePhaseAcMeasurement
from datamodels.measures import BY_ATTRIBUTE, MEASUREMENT_TYPE, device_of

from ._attributes import attribute_value, observed_at


@dataclass(frozen=True)
class BatchResult:
    """Entity ids a batch operation wrote (created or updated), over every chunk."""

    succeeded: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SubscriptionOutcome:
    """What `ensure_subscription` did: `created`, `unchanged`, or `replaced` (with the fields that differed)."""

    id: str
    action: Literal["created", "unchanged", "replaced"]
    differences: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measurement:
    """A meter's ThreePhaseAcMeasurement as the broker holds it: typed measures plus what the model lacks.

    `values` is the datamodels model (its fields come from the measure table); `extras` keeps the other
    attributes a deployment adds (nominalVoltage, site, wiring) as plain values; `observed_at` is the latest
    `observedAt` among the measures.
    """

    entity_id: str
    values: ThreePhaseAcMeasurement
    observed_at: datetime | None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def device_id(self) -> str:
        return device_of(self.entity_id)

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Measurement:
        """Read a normalized or key-values entity; ValueError (pydantic's) when a measure breaks the table."""
        if entity.get("type") != MEASUREMENT_TYPE:
            raise ValueError(f"{entity.get('id')}: type {entity.get('type')!r}, expected {MEASUREMENT_TYPE}")
        known = set(ThreePhaseAcMeasurement.model_fields)
        fields: dict[str, Any] = {}
        extras: dict[str, Any] = {}
        for name, attribute in entity.items():
            if name in ("id", "type", "@context"):
                continue
            value = attribute_value(attribute)
            (fields if name in known else extras)[name] = value
        times = [t for name in BY_ATTRIBUTE if name in fields and (t := observed_at(entity, name)) is not None]
        return cls(entity["id"], ThreePhaseAcMeasurement(id=entity["id"], **fields), max(times, default=None),
                   extras)
