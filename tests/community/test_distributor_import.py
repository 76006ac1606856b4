"""Distributor hourly CSVs: the DST days both ways, duplicates, line-numbered errors, the community format out."""

from __future__ import annotations

from pathlib import Path

import pytest

from community.distributor_import import DistributorFileError, read_distributor_csv, write_hourly_csvs

CUPS = "ES0031405123456789JN0F"
HEADER = "CUPS;Fecha;Hora;AE_kWh;AS_kWh;REAL/ESTIMADO\n"


def _write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "curva.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="latin-1")
    return path


def test_an_ordinary_day_and_the_two_dst_days(tmp_path: Path):
    rows = [f"{CUPS};01/10/2026;{h};0,{h:03d};0;R" for h in range(1, 25)]
    rows += [f"{CUPS};25/10/2026;{h};1,5;0;E" for h in range(1, 26)]  # 25 hours
    rows += [f"{CUPS};29/03/2026;{h};0,2;0;R" for h in (1, 2, *range(4, 25))]  # wall clock, no hour 3
    imported = read_distributor_csv(_write(tmp_path, rows))
    hours = imported.hours[CUPS]
    assert len(hours) == 24 + 25 + 23
    assert imported.counts["estimated"] == 25 and imported.counts["measured"] == 47
    out = write_hourly_csvs(imported, tmp_path / "out")[0].read_text().splitlines()
    assert out[0] == "hour_start,import_kwh,export_kwh"
    assert "2026-03-29T01:00:00+01:00,0.2,0" in out and "2026-03-29T03:00:00+02:00,0.2,0" in out
    october = [line for line in out if line.startswith("2026-10-25T02:00")]
    assert october == ["2026-10-25T02:00:00+02:00,1.5,0", "2026-10-25T02:00:00+01:00,1.5,0"]
    assert "2026-10-01T00:00:00+02:00,0.001,0" in out


def test_sequential_march_numbering_and_duplicates(tmp_path: Path):
    rows = [f"{CUPS};29/03/2026;{h};0,2;;R" for h in range(1, 24)]
    rows.append(f"{CUPS};29/03/2026;5;0,2;;R")  # the same hour again, same value: kept once
    imported = read_distributor_csv(_write(tmp_path, rows))
    assert len(imported.hours[CUPS]) == 23 and imported.counts["duplicates"] == 1


def test_errors_name_their_lines(tmp_path: Path):
    rows = [f"{CUPS};01/10/2026;1;0,4;0;R", f"{CUPS};01/10/2026;1;0,5;0;R", f"{CUPS};01/10/2026;25;0,4;0;R",
            f"{CUPS};31/13/2026;2;0,4;0;R", "ES123;01/10/2026;2;0,4;0;R", f"{CUPS};01/10/2026;3;-1;0;R",
            f"{CUPS};01/10/2026;4;0,4;0;X", f"{CUPS};29/03/2026;3;0,1;0;R", f"{CUPS};29/03/2026;24;0,1;0;R"]
    with pytest.raises(DistributorFileError) as err:
        read_distributor_csv(_write(tmp_path, rows))
    lines = [e.split(":")[1] for e in err.value.errors]
    assert sorted(lines, key=int) == ["3", "4", "5", "6", "7", "8", "9"], err.value.errors
    text = "\n".join(err.value.errors)
    assert "first on line 2" in text and "which has 24 hours" in text and "hour 3 does not exist" in text


def test_a_header_without_the_energy_column(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("CUPS;Fecha;Hora\n", encoding="utf-8")
    with pytest.raises(DistributorFileError, match=r"bad.csv:1: .*lacks import"):
        read_distributor_csv(path)
