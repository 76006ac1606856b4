"""Pydantic models of the provisioning API bodies (iotagent-node-lib `lib/templates/*.json`).

Validation happens here, at the edge: the registry and the mapper trust what they get. Unknown fields are kept
(`extra="allow"`) because the FIWARE templates accept them on groups and devices and clients such as FiLiP send
fields this agent does not act on (`expressionLanguage`, `ngsiVersion`, `lazy`, …); they are stored and returned
unchanged, so a provisioning round trip loses nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

# Characters the FIWARE templates forbid in names and ids, plus the MQTT topic separators and wildcards: a device
# id containing them could never publish to `/json/<apikey>/<device_id>/attrs`.
_FORBIDDEN_IN_IDS = set("<>();'=\"") | set("/+#")


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The stored / returned form: the fields that were given, extras included."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class AttributeSpec(_Body):
    """An active attribute: which payload key (`object_id`) becomes which entity attribute (`name`, `type`)."""

    name: str = Field(min_length=1)
    type: str = "Property"
    object_id: str | None = None
    metadata: dict[str, Any] | None = None
    expression: str | None = None

    def unit_code(self) -> str | None:
        """The `unitCode` metadata value, in either the NGSI-v2 (`{"value": "VLT"}`) or bare form."""
        if not self.metadata or "unitCode" not in self.metadata:
            return None
        unit = self.metadata["unitCode"]
        if isinstance(unit, dict):
            unit = unit.get("value")
        return unit if isinstance(unit, str) else None

    @property
    def wire_key(self) -> str:
        """The payload key this attribute is read from (the name when no `object_id` is given)."""
        return self.object_id or self.name


class StaticAttribute(_Body):
    """An attribute added with a fixed value to every update from the device.

    Numbers are kept as the FIWARE agent (JavaScript) keeps them: `400.0` is the integer `400`, in the
    provisioning API's answers and on the entity, so both agents write the same static values.
    """

    name: str = Field(min_length=1)
    type: str = "Property"
    value: Any = None
    metadata: dict[str, Any] | None = None

    @field_validator("value")
    @classmethod
    def _javascript_numbers(cls, value: Any) -> Any:
        return javascript_numbers(value)


def javascript_numbers(value: Any) -> Any:
    """JSON as JavaScript parses it: integral floats become ints (at any depth); everything else unchanged."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [javascript_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: javascript_numbers(item) for key, item in value.items()}
    return value


class ServiceGroup(_Body):
    """A service group (a.k.a. config group): the apikey a family of meters publishes with and their defaults."""

    apikey: str = Field(min_length=1)
    resource: str = Field(min_length=1)
    entity_type: str | None = None
    timestamp: StrictBool | None = None
    explicitAttrs: StrictBool | str | None = None
    autoprovision: StrictBool | None = None
    attributes: list[AttributeSpec] = Field(default_factory=list)
    static_attributes: list[StaticAttribute] = Field(default_factory=list)


class GroupUpdate(_Body):
    """A `PUT /iot/services?resource=&apikey=` body: any group field but the key pair, which comes from the query."""

    entity_type: str | None = None
    timestamp: StrictBool | None = None
    explicitAttrs: StrictBool | str | None = None
    autoprovision: StrictBool | None = None
    attributes: list[AttributeSpec] | None = None
    static_attributes: list[StaticAttribute] | None = None


class Device(_Body):
    """A provisioned device (`POST /iot/devices`); service and servicepath come from the headers."""

    device_id: str = Field(min_length=1)
    apikey: str | None = None
    entity_name: str | None = None
    entity_type: str | None = None
    timestamp: StrictBool | None = None
    explicitAttrs: StrictBool | str | None = None
    protocol: str | None = None
    transport: str | None = None
    attributes: list[AttributeSpec] = Field(default_factory=list)
    static_attributes: list[StaticAttribute] = Field(default_factory=list)

    @field_validator("device_id")
    @classmethod
    def _id_fits_a_topic(cls, value: str) -> str:
        bad = sorted(set(value) & _FORBIDDEN_IN_IDS)
        if bad:
            raise ValueError(f"device_id {value!r} contains forbidden characters {''.join(bad)!r}")
        return value


class DeviceUpdate(_Body):
    """A `PUT /iot/devices/{id}` body; `device_id` itself cannot change (the agent answers 400)."""

    device_id: str | None = None
    apikey: str | None = None
    entity_name: str | None = None
    entity_type: str | None = None
    timestamp: StrictBool | None = None
    explicitAttrs: StrictBool | str | None = None
    attributes: list[AttributeSpec] | None = None
    static_attributes: list[StaticAttribute] | None = None


class ServicesRequest(BaseModel):
    """`POST /iot/services` (`services`) or `/iot/groups` (`groups`); nothing else is allowed at the top level."""

    model_config = ConfigDict(extra="forbid")

    services: list[ServiceGroup] = Field(min_length=1)


class DevicesRequest(BaseModel):
    """`POST /iot/devices`: `{"devices": [...]}`."""

    model_config = ConfigDict(extra="forbid")

    devices: list[Device] = Field(min_length=1)


class DeviceKey(BaseModel):
    """One entry of `POST /iot/op/delete`: which device (and apikey, optional) to remove."""

    model_config = ConfigDict(extra="allow")

    deviceId: str = Field(min_length=1)
    apikey: str | None = None


class OpDeleteRequest(BaseModel):
    """`POST /iot/op/delete`: `{"devices": [{"deviceId": …, "apikey": …}]}` (node-lib bulk delete)."""

    model_config = ConfigDict(extra="forbid")

    devices: list[DeviceKey] = Field(min_length=1)
