"""Weather plug-ins for the PV forecast: an hourly CSV file or NGSI-LD `WeatherForecast` entities.

Both answer one question, `for_site(site, issue)`: the forecast global horizontal irradiance (W/m2) and air
temperature (C) for the 24 hours from `issue`, or None when they do not cover all 24 hours near the site (the
PV forecast then runs without weather, and says so in `weatherInput`).

CSV (`CsvWeather`), one row per hour and point:

    hour_start,ghi_w_m2,temp_air_c,latitude_deg,longitude_deg
    2026-10-20T00:00:00+00:00,0,12.5,40.41,-3.70

`hour_start` (ISO 8601 with a UTC offset) and `ghi_w_m2` are required; `temp_air_c` is optional (20 C
otherwise); `latitude_deg`/`longitude_deg` are optional: without them every row applies to every site, with them
a site takes the nearest point within MAX_DISTANCE_KM. Every bad row is reported with its line number.

Entities (`EntityWeather`): SDM dataModel.Weather `WeatherForecast`, one entity per forecast hour, with
`validFrom`/`validTo` (the hour), `location` (GeoJSON Point), `temperature` (C) and `solarRadiation` (GHI,
W/m2). SDM's WeatherForecast has no irradiance attribute: `solarRadiation` is the term SDM's WeatherObserved
uses for it, an extension documented in docs/forecasts.md. Read through fiware_client with the core @context.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np

from forecasting.pv import PvSite

log = logging.getLogger("energytwin.forecast")
MAX_DISTANCE_KM = 50.0
REQUIRED = ("hour_start", "ghi_w_m2")
OPTIONAL = ("temp_air_c", "latitude_deg", "longitude_deg")
GHI_RANGE = (0.0, 1500.0)
TEMP_RANGE = (-60.0, 60.0)


class WeatherFileError(ValueError):
    """A weather CSV that cannot be used; the message lists each problem as file:line: reason."""


class WeatherSource(Protocol):
    kind: str

    def for_site(self, site: PvSite, issue: datetime) -> tuple[np.ndarray, np.ndarray | None] | None: ...


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius 6371 km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


@dataclass
class _Point:
    """Hourly forecasts at one point (or everywhere when lat/lon are None): hour (UTC epoch s) -> (ghi, temp)."""

    latitude_deg: float | None
    longitude_deg: float | None
    hours: dict[int, tuple[float, float | None]] = field(default_factory=dict)


def _hours(issue: datetime) -> list[int]:
    first = int(issue.astimezone(UTC).replace(minute=0, second=0, microsecond=0).timestamp())
    return [first + 3600 * k for k in range(24)]


def _pick(points: list[_Point], site: PvSite, issue: datetime) -> tuple[np.ndarray, np.ndarray | None] | None:
    best, best_km = None, MAX_DISTANCE_KM
    for point in points:
        if point.latitude_deg is None or point.longitude_deg is None:
            km = 0.0
        else:
            km = distance_km(site.latitude_deg, site.longitude_deg, point.latitude_deg, point.longitude_deg)
        if km <= best_km and all(h in point.hours for h in _hours(issue)):
            best, best_km = point, km
    if best is None:
        return None
    rows = [best.hours[h] for h in _hours(issue)]
    ghi = np.array([r[0] for r in rows])
    temps = [r[1] for r in rows]
    temp = None if any(t is None for t in temps) else np.array(temps, float)
    return ghi, temp


def _number(text: str, name: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not (lo <= value <= hi):
        raise ValueError(f"{name} {value:g} is outside {lo:g}..{hi:g}")
    return value


def read_text(path: Path) -> str:
    """A weather or temperature file's text; WeatherFileError (with the path) when it cannot be read as UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeatherFileError(f"{path}: cannot read: {exc}") from None


@dataclass
class CsvWeather:
    """An hourly weather forecast file (format in the module docstring)."""

    points: list[_Point]
    path: Path | None = None
    kind: str = "csv"

    @classmethod
    def load(cls, path: str | Path, max_errors: int = 20) -> CsvWeather:
        path = Path(path)
        return cls.parse(read_text(path), str(path), max_errors)

    @classmethod
    def parse(cls, text: str, name: str = "<weather>", max_errors: int = 20) -> CsvWeather:
        rows = [(n, r) for n, r in enumerate(csv.reader(text.splitlines()), start=1)
                if r and "".join(r).strip() and not r[0].lstrip().startswith("#")]
        if not rows:
            raise WeatherFileError(f"{name}: empty; expected a header {','.join(REQUIRED + OPTIONAL)}")
        header_line, header = rows[0]
        header = [h.strip() for h in header]
        errors = []
        missing = [c for c in REQUIRED if c not in header]
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if missing:
            errors.append(f"{name}:{header_line}: missing column(s) {', '.join(missing)}")
        if unknown:
            errors.append(f"{name}:{header_line}: unknown column(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(REQUIRED + OPTIONAL)}")
        if ("latitude_deg" in header) != ("longitude_deg" in header):
            errors.append(f"{name}:{header_line}: give both latitude_deg and longitude_deg, or neither")
        if errors:
            raise WeatherFileError("\n".join(errors))
        col = {c: header.index(c) for c in header}
        points: dict[tuple, _Point] = {}
        for line, row in rows[1:]:
            try:
                if len(row) != len(header):
                    raise ValueError(f"{len(row)} fields, the header has {len(header)}")
                raw = row[col["hour_start"]].strip()
                try:
                    when = datetime.fromisoformat(raw)
                except ValueError:
                    raise ValueError(f"hour_start {raw!r} is not an ISO 8601 time") from None
                if when.tzinfo is None:
                    raise ValueError(f"hour_start {raw!r} has no UTC offset")
                if when.minute or when.second:
                    raise ValueError(f"hour_start {raw!r} is not on the hour")
                ghi = _number(row[col["ghi_w_m2"]], "ghi_w_m2", *GHI_RANGE)
                temp = (_number(row[col["temp_air_c"]], "temp_air_c", *TEMP_RANGE)
                        if "temp_air_c" in col and row[col["temp_air_c"]].strip() else None)
                if "latitude_deg" in col:
                    key = (_number(row[col["latitude_deg"]], "latitude_deg", -90, 90),
                           _number(row[col["longitude_deg"]], "longitude_deg", -180, 180))
                else:
                    key = (None, None)
            except ValueError as exc:
                errors.append(f"{name}:{line}: {exc}")
                if len(errors) >= max_errors:
                    errors.append(f"{name}: stopped after {max_errors} errors")
                    break
                continue
            point = points.setdefault(key, _Point(*key))
            stamp = int(when.timestamp())
            if stamp in point.hours:
                errors.append(f"{name}:{line}: hour {raw} appears twice for this point")
                continue
            point.hours[stamp] = (ghi, temp)
        if errors:
            raise WeatherFileError("\n".join(errors))
        return cls(list(points.values()), Path(name))

    def for_site(self, site: PvSite, issue: datetime) -> tuple[np.ndarray, np.ndarray | None] | None:
        return _pick(self.points, site, issue)


def weather_forecast_entity(latitude_deg: float, longitude_deg: float, hour_start: datetime, ghi_w_m2: float,
                            temp_air_c: float | None, issued: datetime, *, name: str = "site") -> dict:
    """One SDM WeatherForecast entity for one hour at one point (what EntityWeather reads), normalized."""
    start = hour_start.astimezone(UTC)

    def dt(moment: datetime) -> dict:
        return {"type": "Property", "value": {"@type": "DateTime",
                                              "@value": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}

    entity = {
        "id": f"urn:ngsi-ld:WeatherForecast:{name}:{start:%Y%m%dT%H%MZ}",
        "type": "WeatherForecast",
        "address": {"type": "Property", "value": {"addressLocality": name}},
        "location": {"type": "GeoProperty", "value": {"type": "Point",
                                                       "coordinates": [longitude_deg, latitude_deg]}},
        "dateIssued": dt(issued), "validFrom": dt(start), "validTo": dt(start + timedelta(hours=1)),
        "solarRadiation": {"type": "Property", "value": float(ghi_w_m2), "unitCode": "D54"},  # W/m2
    }
    if temp_air_c is not None:
        entity["temperature"] = {"type": "Property", "value": float(temp_air_c), "unitCode": "CEL"}
    return entity


def _value(entity: dict, attr: str):
    prop = entity.get(attr)
    value = prop.get("value") if isinstance(prop, dict) else prop
    if isinstance(value, dict) and "@value" in value:
        value = value["@value"]
    return value


@dataclass
class EntityWeather:
    """The broker's WeatherForecast entities (read through fiware_client), as the weather plug-in.

    The entities are listed once per round and cached per issue; malformed ones (no location, no hour, a
    non-numeric or out-of-range radiation) are skipped, counted in `rejected` and logged once each.
    """

    client: object
    kind: str = "WeatherForecast"
    rejected: int = 0
    _cache: tuple[datetime, list[_Point]] | None = None

    def points(self, issue: datetime) -> list[_Point]:
        if self._cache is not None and self._cache[0] == issue:
            return self._cache[1]
        points: dict[tuple, _Point] = {}
        for entity in self.client.query_entities(type="WeatherForecast", context=None):
            try:
                coords = _value(entity, "location")["coordinates"]
                key = (float(coords[1]), float(coords[0]))
                start = datetime.fromisoformat(str(_value(entity, "validFrom")))
                ghi = _number(str(_value(entity, "solarRadiation")), "solarRadiation", *GHI_RANGE)
                raw_t = _value(entity, "temperature")
                temp = None if raw_t is None else _number(str(raw_t), "temperature", *TEMP_RANGE)
            except (TypeError, KeyError, IndexError, ValueError) as exc:
                self.rejected += 1
                log.warning("forecast: WeatherForecast %s unusable: %s", entity.get("id"), exc)
                continue
            point = points.setdefault(key, _Point(*key))
            point.hours[int(start.timestamp())] = (ghi, temp)
        self._cache = (issue, list(points.values()))
        return self._cache[1]

    def for_site(self, site: PvSite, issue: datetime) -> tuple[np.ndarray, np.ndarray | None] | None:
        return _pick(self.points(issue), site, issue)
