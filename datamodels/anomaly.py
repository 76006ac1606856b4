"""The Smart Data Models `Anomaly` (dataModel.Alert, schema 0.0.2) as the power-quality analytics write it.

The official schema requires `id`, `type`, `anomalousProperty` and `dateDetected`, and defines `detectedBy` (the
meter's Device) and `thresholdBreach` (measured value, limit, UPPER/LOWER). What a building manager also needs is
added in the model's style with terms of the same Alert @context where one exists: `severity` (the Alert enum),
`description`, `validFrom`/`validTo` (when the condition started and ended, as an Alert's validity window), plus
`phase` and `status` (open/closed), which no SDM context defines (they expand under the core default vocabulary).
The choice of Anomaly over Alert is written up in docs/datamodels.md.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .context import context_for
from .entities import Timestamp, iso_utc

ANOMALY_TYPE = "Anomaly"

# The SDM Alert `severity` enum, used as is so Alert-aware apps read it unchanged.
SEVERITIES: tuple[str, ...] = ("informational", "low", "medium", "high", "critical")

Severity = Literal["informational", "low", "medium", "high", "critical"]
ThresholdType = Literal["UPPER", "LOWER"]
Status = Literal["open", "closed"]


def severity_rank(severity: str) -> int:
    """Position in SEVERITIES (0 = informational), so the worse of two severities is the larger rank."""
    return SEVERITIES.index(severity)


class ThresholdBreach(BaseModel):
    """One item of `thresholdBreach`: a reading outside a limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dateObserved: Timestamp
    measuredValue: float
    thresholdType: ThresholdType
    thresholdValue: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "dateObserved": iso_utc(self.dateObserved),
            "measuredValue": self.measuredValue,
            "thresholdType": self.thresholdType,
            "thresholdValue": self.thresholdValue,
        }


class Anomaly(BaseModel):
    """One power-quality condition at one meter: opened when a limit is breached, closed when it ends."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    entity_type: ClassVar[str] = ANOMALY_TYPE

    id: str
    type: Literal["Anomaly"] = "Anomaly"
    anomalousProperty: str = Field(description="measurement attribute (or derived quantity) that breached")
    dateDetected: Timestamp
    detectedBy: str = Field(description="entity id of the meter's Device")
    thresholdBreach: list[ThresholdBreach] = Field(default_factory=list)
    severity: Severity = "medium"
    description: str = ""
    phase: str = Field(description="L1, L2, L3, N, or 'all' for a three-phase quantity")
    status: Status = "open"
    validFrom: Timestamp | None = None
    validTo: Timestamp | None = None
    name: str | None = None
    source: str | None = Field(None, description="entity id of the ThreePhaseAcMeasurement evaluated")

    def to_normalized(self) -> dict[str, Any]:
        """Normalized NGSI-LD with the Alert @context, ready for a batch upsert."""
        entity: dict[str, Any] = {"id": self.id, "type": self.type}
        entity["anomalousProperty"] = _prop(self.anomalousProperty)
        entity["dateDetected"] = _date(self.dateDetected)
        entity["detectedBy"] = {"type": "Relationship", "object": self.detectedBy}
        entity["thresholdBreach"] = _prop([b.as_dict() for b in self.thresholdBreach])
        entity["severity"] = _prop(self.severity)
        entity["description"] = _prop(self.description)
        entity["phase"] = _prop(self.phase)
        entity["status"] = _prop(self.status)
        if self.validFrom is not None:
            entity["validFrom"] = _date(self.validFrom)
        if self.validTo is not None:
            entity["validTo"] = _date(self.validTo)
        if self.name is not None:
            entity["name"] = _prop(self.name)
        if self.source is not None:
            entity["source"] = _prop(self.source)
        entity["@context"] = context_for(self.type)
        return entity

    def to_key_values(self) -> dict[str, Any]:
        """Key-values form (what the SDM schema describes)."""
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        for key, value in self.model_dump(exclude={"id", "type"}, exclude_none=True).items():
            if key == "thresholdBreach":
                out[key] = [b.as_dict() for b in self.thresholdBreach]
            elif key in ("dateDetected", "validFrom", "validTo"):
                out[key] = iso_utc(getattr(self, key))
            else:
                out[key] = value
        return out

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Anomaly:
        """Parse an Anomaly the broker returns (normalized or key-values, Alert @context terms)."""
        flat: dict[str, Any] = {}
        for key, attr in entity.items():
            if key == "@context":
                continue
            if isinstance(attr, dict) and attr.get("type") == "Relationship":
                flat[key] = attr.get("object")
            elif isinstance(attr, dict) and attr.get("type") == "Property":
                value = attr.get("value")
                flat[key] = value.get("@value") if isinstance(value, dict) and "@value" in value else value
            else:
                flat[key] = attr
        known = set(cls.model_fields)
        return cls.model_validate({k: v for k, v in flat.items() if k in known})


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _date(moment: Timestamp) -> dict[str, Any]:
    # A JSON-LD DateTime literal, as for the measurement's dates, so brokers index it as a time.
    return {"type": "Property", "value": {"@type": "DateTime", "@value": iso_utc(moment)}}
