"""Air temperature for the load forecast: one hourly series from a CSV file, for every meter of the service.

    hour_start,temp_air_c
    2026-10-20T00:00:00+00:00,12.5

`hour_start` is ISO 8601 with a UTC offset, on the hour; `temp_air_c` is in -60..60 C. The file holds both the
observed hours (the history the pooled load model learns from, forecasting.load_pooled) and the forecast for the
next 24 hours (a community's weather station log plus a day-ahead forecast appended each day). One series serves
every meter: the members of an energy community live within a few kilometres. The model uses the temperature
only when it covers the whole window and the next 24 hours; otherwise it runs without it and the log says so
(forecasting.service). Every bad row is reported with its line number (up to 20) and the file refused whole.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from forecasting.weather import TEMP_RANGE, WeatherFileError, _number, read_text

COLUMNS = ("hour_start", "temp_air_c")


@dataclass(frozen=True)
class TemperatureCsv:
    """An hourly air-temperature series: a `Targets.load_temperature` source (the same series for any meter)."""

    hours: dict[int, float]  # hour start (UTC epoch s) -> C
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path, max_errors: int = 20) -> TemperatureCsv:
        path = Path(path)
        return cls.parse(read_text(path), str(path), max_errors, path)

    @classmethod
    def parse(cls, text: str, name: str = "<temperature csv>", max_errors: int = 20,
              path: Path | None = None) -> TemperatureCsv:
        reader = csv.DictReader(text.splitlines())
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise WeatherFileError(f"{name}:1: missing column(s) {', '.join(missing)} (need {', '.join(COLUMNS)})")
        hours: dict[int, float] = {}
        errors: list[str] = []
        for line, row in enumerate(reader, start=2):
            try:
                moment = datetime.fromisoformat((row["hour_start"] or "").strip())
                if moment.tzinfo is None:
                    raise ValueError(f"hour_start {row['hour_start']!r} needs a UTC offset")
                if moment.minute or moment.second or moment.microsecond:
                    raise ValueError(f"hour_start {row['hour_start']!r} is not on the hour")
                epoch = int(moment.astimezone(UTC).timestamp())
                if epoch in hours:
                    raise ValueError(f"hour {moment.isoformat()} given twice")
                hours[epoch] = _number((row["temp_air_c"] or "").strip(), "temp_air_c", *TEMP_RANGE)
            except ValueError as exc:
                errors.append(f"{name}:{line}: {exc}")
                if len(errors) >= max_errors:
                    break
        if errors:
            raise WeatherFileError("\n".join(errors))
        if not hours:
            raise WeatherFileError(f"{name}: no rows")
        return cls(hours, path)

    def __call__(self, meter: str, start: datetime, hours: int) -> np.ndarray:
        """Hourly C over [start, start + hours); NaN for hours the file does not hold."""
        first = int(start.astimezone(UTC).timestamp())
        return np.array([self.hours.get(first + 3600 * k, np.nan) for k in range(hours)])
