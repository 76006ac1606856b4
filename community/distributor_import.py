"""Hourly consumption/generation files Spanish distributors publish per CUPS, into the community's hourly CSVs.

Supported variant (the "curva de carga horaria" CSV that Datadis and e-distribución give customers), UTF-8 or
Latin-1, `;`-separated, a header row, one row per CUPS and hour:

    CUPS;Fecha;Hora;AE_kWh;REAL/ESTIMADO
    ES0031405123456789JN0F;01/10/2026;1;0,412;R

- Columns are found by header name, case-insensitive: CUPS; Fecha (dd/mm/yyyy or yyyy/mm/dd); Hora (1-24, the
  hour *ending* at that local time, 1 = 00:00-01:00); import energy `AE_kWh` (or `Consumo_kWh`, `consumo`);
  optional export `AS_kWh` (or `Excedentes_kWh`, `generacion`); optional flag `REAL/ESTIMADO` (or
  `Metodo_obtencion`): R/Real/REAL = measured, E/Estimada/ESTIMADO = estimated. Decimal comma or point.
- DST (Europe/Madrid, Orden ETU/1282/2017 / RD 1110/2007 load curves): the March day has 23 hours, numbered
  either 1-23 in sequence or by wall clock with hour 3 missing (1, 2, 4, ..., 24: then an hour 3 is an error);
  the October day has 25 hours, 1-25 in sequence. Hour 25 on any other day is an error.
- Duplicates: the same CUPS and hour twice with the same values is counted and kept once; with different values
  it is an error naming both lines. Every error names its line (`file:line: what`); the import stops without
  writing anything when any line is wrong.

Output: one file per CUPS in the community's hourly format (`hour_start,import_kwh[,export_kwh]`, hour starts
with their UTC offset), which community.yaml's `csv:` of a member without a meter reads.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from community.config import CUPS_RE

TZ = ZoneInfo("Europe/Madrid")
_IMPORT = ("ae_kwh", "consumo_kwh", "consumo", "ae")
_EXPORT = ("as_kwh", "excedentes_kwh", "generacion_kwh", "generacion", "as")
_FLAG = ("real/estimado", "metodo_obtencion", "metodoobtencion", "tipo")
_MEASURED = {"r", "real", "medido", "medida"}
_ESTIMATED = {"e", "estimado", "estimada", "est"}


class DistributorFileError(ValueError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass
class Imported:
    """Per CUPS: UTC hour start -> (import kWh, export kWh or None, estimated)."""

    hours: dict[str, dict[datetime, tuple[float, float | None, bool]]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)


def _day_hours(day: date) -> int:
    start = datetime(day.year, day.month, day.day, tzinfo=TZ)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=TZ)
    return int((end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() // 3600)


def _date(text: str) -> date:
    for fmt in ("%d/%m/%Y", "%Y/%m/%d", "%Y-%m-%d", "%d-%m-%Y"):
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise ValueError(f"date {text!r} is not dd/mm/yyyy or yyyy/mm/dd")


def _kwh(text: str, what: str) -> float:
    cleaned = text.strip().replace(".", "").replace(",", ".") if "," in text else text.strip()
    try:
        value = float(cleaned)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} {text!r} is negative or not a number")
    return value


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [re.sub(r"\s+", "", h.strip().lower()) for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def read_distributor_csv(path: Path) -> Imported:
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    errors: list[str] = []
    if not rows:
        raise DistributorFileError([f"{path}:1: empty file"])
    header = rows[0]
    cols = {"cups": _column(header, ("cups",)), "date": _column(header, ("fecha", "date")),
            "hour": _column(header, ("hora", "hour")), "import": _column(header, _IMPORT),
            "export": _column(header, _EXPORT), "flag": _column(header, _FLAG)}
    missing = [k for k in ("cups", "date", "hour", "import") if cols[k] is None]
    if missing:
        expected = "CUPS;Fecha;Hora;AE_kWh[;AS_kWh][;REAL/ESTIMADO]"
        raise DistributorFileError([(f"{path}:1: header {';'.join(header)!r} lacks {', '.join(missing)} "
                                    f"(expected {expected})")])
    # First pass: parse; hours are placed once each day's numbering is known.
    parsed: list[tuple[int, str, date, int, float, float | None, bool]] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row) or row[0].startswith("#"):
            continue
        try:
            if len(row) < len(header):
                raise ValueError(f"{len(row)} fields, the header has {len(header)}")
            cups = row[cols["cups"]].strip().upper()
            if not CUPS_RE.match(cups):
                raise ValueError(f"CUPS {cups!r} is not ES + 16 digits + 2 letters (+ 2 optional)")
            day = _date(row[cols["date"]])
            hour = int(row[cols["hour"]].strip())
            if not 1 <= hour <= 25:
                raise ValueError(f"hour {hour} is not 1-25")
            imp = _kwh(row[cols["import"]], "import kWh")
            exp = _kwh(row[cols["export"]], "export kWh") if cols["export"] is not None \
                and row[cols["export"]].strip() else None
            estimated = False
            if cols["flag"] is not None:
                flag = row[cols["flag"]].strip().lower()
                if flag in _ESTIMATED:
                    estimated = True
                elif flag not in _MEASURED:
                    raise ValueError(f"flag {row[cols['flag']]!r} is neither measured (R/REAL) nor estimated "
                                     "(E/ESTIMADO)")
            parsed.append((line_no, cups, day, hour, imp, exp, estimated))
        except (ValueError, IndexError) as exc:
            errors.append(f"{path}:{line_no}: {exc}")
    wall_clock_days = {(c, d) for _, c, d, h, *_ in parsed if h == 24 and _day_hours(d) == 23}
    out = Imported()
    seen: dict[tuple[str, datetime], tuple[int, tuple[float, float | None, bool]]] = {}
    for line_no, cups, day, hour, imp, exp, estimated in parsed:
        n = _day_hours(day)
        index = hour - 1
        if (cups, day) in wall_clock_days:
            if hour == 3:
                errors.append(f"{path}:{line_no}: hour 3 does not exist on {day} (clocks go 02:00 -> 03:00)")
                continue
            index = hour - 1 if hour < 3 else hour - 2
        elif hour > n:
            errors.append(f"{path}:{line_no}: hour {hour} on {day}, which has {n} hours")
            continue
        start = datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC) + timedelta(hours=index)
        value = (imp, exp, estimated)
        key = (cups, start)
        if key in seen:
            first_line, first = seen[key]
            if first[:2] == value[:2]:
                out.counts["duplicates"] += 1
                continue
            errors.append(f"{path}:{line_no}: {cups} {day} hour {hour} given again with other values "
                          f"(first on line {first_line})")
            continue
        seen[key] = (line_no, value)
        out.hours.setdefault(cups, {})[start] = value
        out.counts["estimated" if estimated else "measured"] += 1
    if errors:
        raise DistributorFileError(errors)
    return out


def write_hourly_csvs(imported: Imported, out_dir: Path) -> list[Path]:
    """One community hourly CSV per CUPS (hour starts in Madrid time with their offset), sorted by hour."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cups, hours in sorted(imported.hours.items()):
        has_export = any(v[1] is not None for v in hours.values())
        path = out_dir / f"{cups}.csv"
        lines = ["hour_start,import_kwh" + (",export_kwh" if has_export else "")]
        for start in sorted(hours):
            imp, exp, _ = hours[start]
            cells = [start.astimezone(TZ).isoformat(), f"{imp:g}"]
            if has_export:
                cells.append("" if exp is None else f"{exp:g}")
            lines.append(",".join(cells))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written
