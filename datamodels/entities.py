"""Typed Smart Data Models entities this project writes, and their NGSI-LD renderings.

Values enter through the measure table (`measures.py`) only, so the wire object ids, the attribute names and the
unit codes cannot drift apart. Each entity renders two ways: normalized NGSI-LD (what the broker is sent, with
`unitCode`, `observedAt` and the type's `@context`) and key-values (what the SDM schemas validate).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, create_model

from .context import context_for
from .measures import (
    BY_ATTRIBUTE,
    BY_OBJECT_ID,
    DEVICE_TYPE,
    MEASUREMENT_TYPE,
    MEASURES,
    Shape,
    ShapeError,
    check_value,
    device_entity_id,
    measurement_id,
)

Timestamp = datetime | str


def iso_utc(moment: Timestamp) -> str:
    """ISO 8601 in UTC with a `Z`, the form Orion-LD returns; strings are trusted as already formatted."""
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: give a timezone so observedAt is unambiguous")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Values(BaseModel):
    """Per-phase object; absent keys are left out (a meter without a neutral CT sends no `N`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def as_dict(self) -> dict[str, float]:
        return {key: value for key, value in self.model_dump().items() if value is not None}


class PhaseValues(_Values):
    L1: float | None = None
    L2: float | None = None
    L3: float | None = None


class PhaseValuesN(PhaseValues):
    N: float | None = None


class LineValues(_Values):
    L12: float | None = None
    L23: float | None = None
    L31: float | None = None


_SHAPE_MODEL: dict[Shape, type[_Values]] = {
    Shape.PHASES: PhaseValues,
    Shape.PHASES_N: PhaseValuesN,
    Shape.LINE: LineValues,
}


def _property(value: Any, unit_code: str | None = None, observed_at: str | None = None) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "Property", "value": value}
    if unit_code:
        attr["unitCode"] = unit_code
    if observed_at:
        attr["observedAt"] = observed_at
    return attr


def _datetime_property(moment: Timestamp) -> dict[str, Any]:
    # NGSI-LD types a date-time Property value as a JSON-LD literal so brokers index it as a time.
    return {"type": "Property", "value": {"@type": "DateTime", "@value": iso_utc(moment)}}


def _plain(value: Any) -> Any:
    return value.as_dict() if isinstance(value, _Values) else value


# The Python type of each measure shape; the model's measure fields are generated from the table with these.
_SHAPE_TYPE: dict[Shape, Any] = {
    Shape.SCALAR: float,
    Shape.PHASES: PhaseValues,
    Shape.PHASES_N: PhaseValuesN,
    Shape.LINE: LineValues,
    Shape.FLAGS: dict[str, bool],
    Shape.TEXT: str,
    Shape.BOOL: bool,
}


class _MeasurementBase(BaseModel):
    """What a ThreePhaseAcMeasurement has besides its measures (those are generated from the measure table)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    entity_type: ClassVar[str] = MEASUREMENT_TYPE

    id: str
    type: Literal["ThreePhaseAcMeasurement"] = "ThreePhaseAcMeasurement"
    refDevice: str | None = Field(None, description="entity id of the meter's Device")
    refTargetDevice: str | None = Field(None, description="entity id of the measured equipment")
    dateEnergyMeteringStarted: Timestamp | None = None
    location: dict[str, Any] | None = Field(None, description="GeoJSON geometry")
    name: str | None = None
    description: str | None = None

    @classmethod
    def from_measures(cls, device_id: str, measures: Mapping[str, object]) -> Self:
        """Build from a wire payload keyed by object id (`{"v": {"L1": 230.1}, "f": 50.0}`).

        Every value is checked against the table (shape, keys, range) so a bad reading is refused here with the
        object id in the message, not later by the broker. `TimeInstant` is not a measure; pass it to
        `to_normalized(observed_at=...)`.
        """
        fields: dict[str, Any] = {}
        for object_id, value in measures.items():
            measure = BY_OBJECT_ID.get(object_id)
            if measure is None:
                raise ShapeError(f"{object_id}: not in the measure table; known: {', '.join(sorted(BY_OBJECT_ID))}")
            check_value(measure, value)
            model = _SHAPE_MODEL.get(measure.shape)
            fields[measure.attribute] = model(**value) if model and isinstance(value, dict) else value
        return cls(id=measurement_id(device_id), refDevice=device_entity_id(device_id), **fields)

    def measure_values(self) -> dict[str, Any]:
        """The measures that are set, as plain JSON values keyed by attribute."""
        return {name: _plain(getattr(self, name)) for name in BY_ATTRIBUTE if getattr(self, name) is not None}

    def to_normalized(self, observed_at: Timestamp | None = None) -> dict[str, Any]:
        """NGSI-LD normalized entity: measures carry `unitCode` from the table and `observedAt` when given."""
        when = iso_utc(observed_at) if observed_at is not None else None
        entity: dict[str, Any] = {"id": self.id, "type": self.type}
        for name, target in (("refDevice", self.refDevice), ("refTargetDevice", self.refTargetDevice)):
            if target is not None:
                # A single URI, not an array: arrays in `object` are not core NGSI-LD (ETSI GS CIM 009: a Relationship's `object` is one URI).
                entity[name] = {"type": "Relationship", "object": target}
        if self.location is not None:
            entity["location"] = {"type": "GeoProperty", "value": self.location}
        if self.dateEnergyMeteringStarted is not None:
            entity["dateEnergyMeteringStarted"] = _datetime_property(self.dateEnergyMeteringStarted)
        for name in ("name", "description"):
            if getattr(self, name) is not None:
                entity[name] = _property(getattr(self, name))
        for name, value in self.measure_values().items():
            entity[name] = _property(value, BY_ATTRIBUTE[name].unit_code, when)
        entity["@context"] = context_for(self.type)
        return entity

    def to_key_values(self) -> dict[str, Any]:
        """Key-values form, as the SDM schema describes it (relationships as arrays of ids)."""
        entity: dict[str, Any] = {"id": self.id, "type": self.type}
        for name in ("refDevice", "refTargetDevice"):
            if getattr(self, name) is not None:
                entity[name] = [getattr(self, name)]
        if self.location is not None:
            entity["location"] = self.location
        if self.dateEnergyMeteringStarted is not None:
            entity["dateEnergyMeteringStarted"] = iso_utc(self.dateEnergyMeteringStarted)
        for name in ("name", "description"):
            if getattr(self, name) is not None:
                entity[name] = getattr(self, name)
        entity.update(self.measure_values())
        return entity


ThreePhaseAcMeasurement = create_model(
    "ThreePhaseAcMeasurement",
    __base__=_MeasurementBase,
    __module__=__name__,
    __doc__="One meter's SDM ThreePhaseAcMeasurement; its measure fields are the rows of the measure table.",
    **{m.attribute: (_SHAPE_TYPE[m.shape] | None, Field(None, description=m.description)) for m in MEASURES},
)


# The meter measures energy and power; `voltage`/`current` are not in the SDM controlledProperty enum.
METER_CONTROLLED_PROPERTIES: tuple[str, ...] = ("energy", "power")


class Device(BaseModel):
    """The SDM Device describing one meter (firmware, state, network identity)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    entity_type: ClassVar[str] = DEVICE_TYPE

    id: str
    type: Literal["Device"] = "Device"
    controlledProperty: list[str]
    deviceCategory: list[str] = Field(default_factory=lambda: ["meter"])
    supportedProtocol: list[str] = Field(default_factory=lambda: ["mqtt"])
    name: str | None = None
    description: str | None = None
    location: dict[str, Any] | None = Field(None, description="GeoJSON geometry")
    serialNumber: str | None = None
    macAddress: str | None = None
    ipAddress: list[str] | None = None
    firmwareVersion: str | None = None
    hardwareVersion: str | None = None
    softwareVersion: str | None = None
    provider: str | None = None
    deviceState: str | None = None
    rssi: float | None = Field(None, description="Wi-Fi received signal strength, dBm")
    dateInstalled: Timestamp | None = None
    dateLastValueReported: Timestamp | None = None
    refDeviceModel: str | None = None

    _DATE_FIELDS: ClassVar[tuple[str, ...]] = ("dateInstalled", "dateLastValueReported")
    _OBSERVED_FIELDS: ClassVar[tuple[str, ...]] = ("deviceState", "rssi")

    @classmethod
    def for_meter(cls, device_id: str, **attributes: Any) -> Device:
        """A meter's Device with the project's defaults (energy/power, category meter, MQTT)."""
        attributes.setdefault("controlledProperty", list(METER_CONTROLLED_PROPERTIES))
        return cls(id=device_entity_id(device_id), **attributes)

    def _set(self) -> dict[str, Any]:
        skip = {"id", "type", "refDeviceModel", "location", *self._DATE_FIELDS}
        return {name: value for name, value in self if name not in skip and value is not None}

    def to_normalized(self, observed_at: Timestamp | None = None) -> dict[str, Any]:
        """NGSI-LD normalized entity; `observed_at` stamps the live attributes (state, RSSI)."""
        when = iso_utc(observed_at) if observed_at is not None else None
        entity: dict[str, Any] = {"id": self.id, "type": self.type}
        for name, value in self._set().items():
            # No unitCode on rssi: we have not verified a UN/CEFACT code for dBm (the field doc says the unit).
            entity[name] = _property(value, None, when if name in self._OBSERVED_FIELDS else None)
        for name in self._DATE_FIELDS:
            if getattr(self, name) is not None:
                entity[name] = _datetime_property(getattr(self, name))
        if self.location is not None:
            entity["location"] = {"type": "GeoProperty", "value": self.location}
        if self.refDeviceModel is not None:
            entity["refDeviceModel"] = {"type": "Relationship", "object": self.refDeviceModel}
        entity["@context"] = context_for(self.type)
        return entity

    def to_key_values(self) -> dict[str, Any]:
        """Key-values form, as the SDM Device schema describes it."""
        entity: dict[str, Any] = {"id": self.id, "type": self.type, **self._set()}
        for name in self._DATE_FIELDS:
            if getattr(self, name) is not None:
                entity[name] = iso_utc(getattr(self, name))
        if self.location is not None:
            entity["location"] = self.location
        if self.refDeviceModel is not None:
            entity["refDeviceModel"] = self.refDeviceModel
        return entity
