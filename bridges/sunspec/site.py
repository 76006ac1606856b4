"""site.yaml: which inverters and batteries the bridge polls, where the twin is. Errors name the line.

    mqtt: {host: 127.0.0.1, port: 1883}                # the IoT Agent's MQTT broker
    agent: {url: http://127.0.0.1:4041, service: energytwin, service_path: /}   # provisions; omit to skip
    broker: {url: http://127.0.0.1:1026}               # the SDM Device entities; omit to skip
    apikey: inverters                                  # the service group's apikey
    poll_interval_s: 5
    buffer: {max_messages: 10000, path: var/sunspec-buffer.json}
    watchdog: {margin: 0.5, state_path: var/sunspec-holds.json}   # re-assert at margin x revert timeout; holds saved
    location: {type: Point, coordinates: [-3.70, 40.42]}   # default location of every device
    devices:
      - id: home-001                                   # entities: ...:PhotovoltaicMeasurement:home-001, ...
        host: 192.168.1.50                             # transport: tcp (default) | rtu-over-tcp | rtu
        port: 502
        unit: 1
        reserve_port: 1502                             # optional: other local readers read the mirror here
      - id: garage
        transport: rtu
        serial_port: /dev/ttyUSB0
        baudrate: 9600
        unit: 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kernel.yaml_lines import YamlSyntaxError, dotted, line_of, load_with_lines

from .transport import Endpoint

_FORBIDDEN = set("<>();'=\"/+# ")


class SiteError(ValueError):
    """site.yaml is not valid; `problems` are `file:line: where: what` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None


class AgentConfig(_Strict):
    url: str
    service: str = "energytwin"
    service_path: str = "/"


class BrokerConfig(_Strict):
    url: str


class BufferConfig(_Strict):
    max_messages: int = Field(10_000, ge=1)
    path: Path | None = None


class WatchdogConfig(_Strict):
    margin: float = Field(0.5, gt=0, lt=1)  # re-assert after margin x revert timeout
    minimum_s: float = Field(1.0, gt=0)  # never more often than this
    state_path: Path | None = None  # held commands kept here across restarts (default: beside buffer.path)


class GeoPoint(_Strict):
    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float]  # longitude, latitude (GeoJSON order)

    @field_validator("coordinates")
    @classmethod
    def _in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lon, lat = value
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError("coordinates are [longitude, latitude] in degrees")
        return value


class DeviceConfig(_Strict):
    id: str = Field(min_length=1, max_length=64)
    transport: Literal["tcp", "rtu", "rtu-over-tcp"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=247)
    serial_port: str = ""
    baudrate: int = 9600
    timeout_s: float = Field(1.0, gt=0, le=30)
    location: GeoPoint | None = None
    reserve_port: int | None = Field(None, ge=1, le=65535)  # re-serve the registers read-only (reserve.py)
    reserve_host: str = "127.0.0.1"
    # The device id of the home's grid meter (its ThreePhaseAcMeasurement): the battery entity refers to it
    # (`refMeter`), so the fleet controller can use the home's measured net power (docs/batteries.md).
    meter: str | None = Field(None, min_length=1, max_length=64)

    @field_validator("id", mode="before")
    @classmethod
    def _yaml_bool(cls, value: object) -> object:
        if isinstance(value, bool | int | float):
            raise ValueError(  # noqa: TRY004 (pydantic turns ValueError, not TypeError, into a located error)
                f"YAML read this id as {value!r} (yes/no/on/off are booleans): put it in quotes")
        return value

    @field_validator("id")
    @classmethod
    def _id_fits_a_topic(cls, value: str) -> str:
        bad = sorted(set(value) & _FORBIDDEN)
        if bad:
            raise ValueError(f"id {value!r} contains {''.join(bad)!r}: it becomes an MQTT topic level and an "
                             "entity id")
        return value

    @model_validator(mode="after")
    def _serial_needs_a_port(self) -> DeviceConfig:
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport rtu needs serial_port (e.g. /dev/ttyUSB0)")
        return self

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.transport, self.host, self.port, self.serial_port, self.baudrate, self.timeout_s)


class SiteConfig(_Strict):
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    agent: AgentConfig | None = None
    broker: BrokerConfig | None = None
    apikey: str = Field("energytwin-sunspec", min_length=1)
    poll_interval_s: float = Field(5.0, ge=0.05, le=3600)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    location: GeoPoint = Field(default_factory=lambda: GeoPoint(coordinates=(-3.7038, 40.4168)))
    devices: list[DeviceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> SiteConfig:
        seen: set[str] = set()
        for device in self.devices:
            if device.id in seen:
                raise ValueError(f"device id {device.id!r} appears twice")
            seen.add(device.id)
        return self

    @property
    def holds_path(self) -> Path | None:
        """Where held commands are saved: watchdog.state_path, else sunspec-holds.json beside the buffer file."""
        if self.watchdog.state_path is not None:
            return self.watchdog.state_path
        return None if self.buffer.path is None else self.buffer.path.parent / "sunspec-holds.json"

    def location_of(self, device: DeviceConfig) -> GeoPoint:
        return device.location or self.location


def parse_site(text: str, name: str = "site.yaml") -> SiteConfig:
    try:
        data, lines = load_with_lines(text, name)
    except YamlSyntaxError as exc:
        raise SiteError([str(exc)]) from None
    if not isinstance(data, dict):
        raise SiteError([f"{name}:1: expected a mapping with a 'devices' list"])
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}:{line_of(lines, loc)}: {dotted(loc)}: {message}")
        raise SiteError(problems) from None


def load_site(path: Path) -> SiteConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse_site(text, str(path))


def site_dict(config: SiteConfig) -> dict[str, Any]:
    """The config as plain data (what `energytwin demo` writes to its site.yaml)."""
    return config.model_dump(mode="json", exclude_none=True)
