"""Hourly energy from a CSV file, for members (or installations) without a meter in the twin.

Format (docs/community.md): UTF-8, comma-separated, a header row, one row per hour:

    hour_start,import_kwh,export_kwh,generation_kwh
    2026-10-01T00:00:00+02:00,0.412,0,0

`hour_start` is the start of the hour in ISO 8601 *with* its UTC offset (so the DST days are unambiguous);
energies are kWh with a decimal point. Only the columns the file's role needs must be present: `import_kwh` for a
member (what it took from the grid), `generation_kwh` for an installation; `export_kwh` (fed back) and
`generation_kwh` (own PV) give the household view for a member. An empty cell or an absent hour is a gap,
reported and never filled. Lines starting with `#` are comments.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from community.hourly import Gap, gaps_from_missing

COLUMNS = ("import_kwh", "export_kwh", "generation_kwh")


class CsvFormatError(ValueError):
    """The CSV breaks the format; `errors` are "file:line: what" strings."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass(frozen=True)
class HourlyCsv:
    """Columns of the file on the requested hour grid (NaN where missing) and the gaps found."""

    columns: dict[str, np.ndarray]
    gaps: tuple[Gap, ...]


def read_hourly_csv(path: Path, hour_starts_utc: np.ndarray, required: tuple[str, ...], max_errors: int = 20):
    """Read `path` onto the grid `hour_starts_utc` (datetime64[s]); rows outside the grid are ignored."""
    name = path.name
    errors: list[str] = []
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise CsvFormatError([f"{path}: cannot read: {exc.strerror}"]) from None
    index = {int(t): k for k, t in enumerate(hour_starts_utc.astype("int64"))}
    with handle:
        rows = [
            (n, r)
            for n, r in enumerate(csv.reader(handle), start=1)
            if r and not r[0].lstrip().startswith("#")
        ]
    if not rows:
        raise CsvFormatError([f"{name}: empty file; expected a header hour_start,{','.join(required)}"])
    header_line, header = rows[0]
    header = [h.strip() for h in header]
    if not header or header[0] != "hour_start":
        raise CsvFormatError([f"{name}:{header_line}: the first column must be hour_start, got {header[:1]}"])
    unknown = [h for h in header[1:] if h not in COLUMNS]
    if unknown:
        errors.append(
            f"{name}:{header_line}: unknown column(s) {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}"
        )
    for column in required:
        if column not in header:
            errors.append(f"{name}:{header_line}: missing column {column}")
    if errors:
        raise CsvFormatError(errors)
    columns = {h: np.full(hour_starts_utc.size, np.nan) for h in header[1:]}
    seen: dict[int, int] = {}
    for line_no, row in rows[1:]:
        if len(errors) >= max_errors:
            break
        if len(row) != len(header):
            errors.append(f"{name}:{line_no}: {len(row)} fields, the header has {len(header)}")
            continue
        try:
            t = datetime.fromisoformat(row[0].strip())
        except ValueError:
            errors.append(f"{name}:{line_no}: hour_start {row[0]!r} is not ISO 8601")
            continue
        if t.tzinfo is None:
            errors.append(f"{name}:{line_no}: hour_start {row[0]!r} has no UTC offset (e.g. +02:00)")
            continue
        epoch = int(t.timestamp())
        if epoch % 3600:
            errors.append(f"{name}:{line_no}: hour_start {row[0]!r} is not the start of an hour")
            continue
        if epoch in seen:
            errors.append(f"{name}:{line_no}: hour {row[0]} already given on line {seen[epoch]}")
            continue
        seen[epoch] = line_no
        k = index.get(epoch)
        for column, cell in zip(header[1:], row[1:], strict=True):
            cell = cell.strip()
            if not cell:
                continue
            try:
                value = float(cell)
            except ValueError:
                errors.append(f"{name}:{line_no}: {column} {cell!r} is not a number (use a decimal point)")
                continue
            if not value >= 0:  # negative or NaN
                errors.append(f"{name}:{line_no}: {column} {cell} must be a non-negative number of kWh")
                continue
            if k is not None:
                columns[column][k] = value
    if errors:
        raise CsvFormatError(errors)
    gaps: list[Gap] = []
    for column in required:
        gaps += gaps_from_missing(hour_starts_utc, columns[column], f"no {column} in the file", name)
    return HourlyCsv(columns, tuple(gaps))
