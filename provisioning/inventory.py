"""The inventory file: what meters a deployment has, whose they are, and who must be told about their data.

An operator edits it by hand, so every error names the file, line and field (`site.yaml:14: meters[2].device_id:
…`). The schema is the pydantic models below; docs/provisioning.md shows a full example
(provisioning/examples/site.yaml). Shape:

    tenants:                       # one per fiware-service (= NGSI-LD tenant)
      - service: energytwin
        service_path: /
        groups:                    # IoT Agent service groups (one apikey each)
          - apikey: meterkey
            autoprovision: false   # default false here: meters come from this file
        sites:
          - id: plant-a
            name: Plant A
            location: {lat: 48.137, lon: 11.575}
            meters:
              - device_id: meter-001
                group: meterkey    # optional when the tenant has one group
                nominal_voltage_v: 230
                nominal_frequency_hz: 50
                ct_primary_a: 100
                ct_secondary_a: 5   # optional (Rogowski / direct: omit)
                wiring: 3P4W        # 3P4W (star, neutral) | 3P3W (delta) | 1P2W
                overcurrent_a: 80   # optional: the meter's OVERCURRENT_A (its hardware overcurrent limit)
                location: {lat: …, lon: …}   # optional: the site's
                model: urn:ngsi-ld:DeviceModel:…   # optional: becomes the Device's refDeviceModel
        subscribers:               # NGSI-LD subscriptions this tenant needs (QuantumLeap, any app)
          - name: quantumleap
            url: http://quantumleap:8668/v2/notify
            entity_type: ThreePhaseAcMeasurement
            attributes: []          # optional: all
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from datamodels.measures import MEASUREMENT_TYPE
from kernel.yaml_lines import YamlSyntaxError, dotted, line_of, load_with_lines

_ID = re.compile(r"^[A-Za-z0-9_.\-:]+$")  # fits an MQTT topic level and an NGSI-LD URN
_APIKEY = re.compile(r"^[A-Za-z0-9_\-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Strict):
    """A WGS 84 point, in degrees."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)

    def geojson(self) -> dict[str, Any]:
        """GeoJSON Point (longitude first, as GeoJSON wants)."""
        return {"type": "Point", "coordinates": [self.lon, self.lat]}


class Group(_Strict):
    """An IoT Agent service group: the apikey a family of meters publishes with."""

    apikey: str
    entity_type: str = MEASUREMENT_TYPE
    autoprovision: bool = False
    explicitAttrs: bool = False

    @field_validator("apikey")
    @classmethod
    def _apikey(cls, value: str) -> str:
        if not _APIKEY.match(value):
            raise ValueError("use letters, digits, '-' and '_' only (it is an MQTT topic level)")
        return value


class Meter(_Strict):
    """One three-phase meter: its identity, where it is, and what it is wired to."""

    device_id: str
    group: str | None = None
    name: str | None = None
    location: Location | None = None
    nominal_voltage_v: float = Field(gt=0, le=1000)
    nominal_frequency_hz: Literal[50, 60]
    ct_primary_a: float = Field(gt=0)
    ct_secondary_a: float | None = Field(None, gt=0)
    wiring: Literal["3P4W", "3P3W", "1P2W"] = "3P4W"
    overcurrent_a: float | None = Field(None, gt=0)  # the meter's OVERCURRENT_A: its hardware overcurrent limit
    model: str | None = None
    firmware_version: str | None = None

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("use letters, digits and - _ . : only (it is an MQTT topic level and part of a URN)")
        return value


class Site(_Strict):
    """A place with meters."""

    id: str
    name: str | None = None
    location: Location | None = None
    meters: list[Meter] = Field(default_factory=list)


class Subscriber(_Strict):
    """An application that is notified of entity changes (QuantumLeap in production)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    url: str = Field(pattern=r"^https?://")
    entity_type: str = MEASUREMENT_TYPE
    attributes: list[str] = Field(default_factory=list)
    format: Literal["normalized", "keyValues", "concise"] = "normalized"
    accept: Literal["application/json", "application/ld+json"] = "application/json"


class Tenant(_Strict):
    """One fiware-service (NGSI-LD tenant) and servicepath with its groups, sites and subscribers."""

    service: str = Field(pattern=r"^[a-z0-9_]+$")  # the IoT Agent wants lower case, digits and '_'
    service_path: str = Field("/", pattern=r"^/[A-Za-z0-9_/]*$")
    groups: list[Group] = Field(min_length=1)
    sites: list[Site] = Field(default_factory=list)
    subscribers: list[Subscriber] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Tenant:
        apikeys = [group.apikey for group in self.groups]
        for index, site in enumerate(self.sites):
            for m_index, meter in enumerate(site.meters):
                if meter.group is None and len(apikeys) > 1:
                    raise _Located(("sites", index, "meters", m_index, "group"),
                                   f"the tenant has {len(apikeys)} groups: say which one ({', '.join(apikeys)})")
                if meter.group is not None and meter.group not in apikeys:
                    raise _Located(("sites", index, "meters", m_index, "group"),
                                   f"no group with apikey {meter.group!r} in this tenant ({', '.join(apikeys)})")
        return self

    def meters(self) -> list[tuple[Site, Meter]]:
        """Every meter with its site."""
        return [(site, meter) for site in self.sites for meter in site.meters]

    def apikey_of(self, meter: Meter) -> str:
        """The apikey the meter publishes with."""
        return meter.group or self.groups[0].apikey


class Inventory(_Strict):
    """The whole file."""

    tenants: list[Tenant] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Inventory:
        apikeys: dict[str, tuple[int, int]] = {}
        for t_index, tenant in enumerate(self.tenants):
            for g_index, group in enumerate(tenant.groups):
                if group.apikey in apikeys:  # the IoT Agent keys groups by (resource, apikey) across services
                    raise _Located(("tenants", t_index, "groups", g_index, "apikey"),
                                   f"apikey {group.apikey!r} is already used (apikeys are global in the agent)")
                apikeys[group.apikey] = (t_index, g_index)
            seen: set[str] = set()
            for s_index, site in enumerate(tenant.sites):
                for m_index, meter in enumerate(site.meters):
                    if meter.device_id in seen:
                        raise _Located(("tenants", t_index, "sites", s_index, "meters", m_index, "device_id"),
                                       f"device_id {meter.device_id!r} appears twice in this tenant")
                    seen.add(meter.device_id)
            names = [s.name for s in tenant.subscribers]
            if len(names) != len(set(names)):
                raise _Located(("tenants", t_index, "subscribers"), "subscriber names must be unique")
        return self


class _Located(ValueError):
    """A cross-field error that knows which field it is about (relative to the model raising it)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class InventoryError(ValueError):
    """The inventory is not valid; `problems` are `file:line: path: message` strings."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_inventory(path: Path) -> Inventory:
    """Read and validate an inventory file; InventoryError lists every problem with its line."""
    text = path.read_text(encoding="utf-8")
    return parse_inventory(text, str(path))


def parse_inventory(text: str, name: str = "<inventory>") -> Inventory:
    """Validate inventory YAML text (see the module docstring for the schema)."""
    try:
        data, lines = load_with_lines(text, name)
    except YamlSyntaxError as exc:
        raise InventoryError([str(exc)]) from None
    if not isinstance(data, dict):
        raise InventoryError([f"{name}:1: expected a mapping with a 'tenants' list"])
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = error["msg"]
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, _Located):
                loc = _prefix(loc, cause.loc) + cause.loc
                message = str(cause)
            message = message.removeprefix("Value error, ")
            problems.append(f"{name}:{line_of(lines, loc)}: {dotted(loc)}: {message}")
        raise InventoryError(problems) from None


def _prefix(loc: tuple[Any, ...], inner: tuple[Any, ...]) -> tuple[Any, ...]:
    """Where the model that raised a _Located sits: validators on Inventory see loc (), on Tenant tenants[i]."""
    if inner and inner[0] == "tenants":
        return ()
    return tuple(part for part in loc[:2])


