"""Community file validation and the hourly CSV import: errors name the line."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from community.config import CommunityFileError, load_community, parse_community
from community.csv_import import CsvFormatError, read_hourly_csv
from community.hourly import hour_grid

EXAMPLE = Path(__file__).parents[2] / "community" / "examples" / "community.yaml"

BASE = """\
name: test
tariffs:
  flat: {import_price_eur_per_kwh: 0.2}
installations:
  - id: roof
    cau: ES0031405000000001AAA001
    meter: pv-1
members:
  - id: ana
    cups: ES0031405000000101QJ
    meter: m-1
    tariff: flat
  - id: bea
    cups: ES0031405000000102RK
    csv: bea.csv
    tariff: flat
"""


def test_example_is_valid():
    loaded = load_community(EXAMPLE)
    assert [m.id for m in loaded.community.members] == ["ana", "bernat", "carmen", "dolores"]


def test_minimal_file_parses():
    c = parse_community(BASE)
    assert c.timezone == "Europe/Madrid" and c.co2.factor_kg_per_kwh == 0.331


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("    tariff: flat\n  - id: bea", "    tariff: flat\n    colour: red\n  - id: bea"),
            "t.yaml:13: members[0].colour: unknown field",
        ),
        (("ES0031405000000102RK", "ES123"), "t.yaml:14: members[1].cups: 'ES123' is not a CUPS"),
        (
            ("    csv: bea.csv\n    tariff: flat", "    csv: bea.csv\n    tariff: cheap"),
            "t.yaml:16: members[1].tariff: unknown tariff 'cheap' (tariffs: flat)",
        ),
        (("    meter: m-1\n", ""), "t.yaml:9: members[0]: give exactly one of meter"),
        (("cau: ES0031405000000001AAA001", "cau: ES0031405000000001AA"), "t.yaml:6: installations[0].cau"),
    ],
)
def test_errors_name_the_line(edit, expected):
    text = BASE.replace(*edit)
    assert text != BASE
    with pytest.raises(CommunityFileError) as info:
        parse_community(text, "t.yaml")
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


def test_rules_that_no_beta_can_meet():
    text = BASE + "rules:\n  min_share: 0.6\n  energy_poverty_reserve: 0.1\n"
    with pytest.raises(CommunityFileError) as info:
        parse_community(text, "t.yaml")
    assert (
        "t.yaml:18: rules.min_share: the minimum shares add up to 1.2000 > 1 for 2 members"
        in info.value.errors
    )
    assert "t.yaml:19: rules.energy_poverty_reserve: a reserve is set but no member is energy_poverty" in (
        info.value.errors
    )


def test_yaml_syntax_error_has_a_line():
    with pytest.raises(CommunityFileError, match=r"t.yaml:4: not valid YAML"):
        parse_community("name: x\ntariffs:\n  - [a\n", "t.yaml")


TZ = ZoneInfo("Europe/Madrid")


def test_csv_reads_onto_the_grid_and_reports_gaps(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text(
        "hour_start,import_kwh,export_kwh\n"
        "# a comment\n"
        "2026-10-25T01:00:00+02:00,0.5,0\n"
        "2026-10-25T02:00:00+02:00,0.6,0\n"
        "2026-10-25T02:00:00+01:00,0.7,0\n"  # the repeated local hour of the DST change: a different UTC hour
        "2026-10-25T04:00:00+01:00,,0\n",
        encoding="utf-8",
    )
    grid = hour_grid(datetime(2026, 10, 25, 1, tzinfo=TZ), datetime(2026, 10, 25, 5, tzinfo=TZ))
    out = read_hourly_csv(path, grid, ("import_kwh",))
    np.testing.assert_allclose(out.columns["import_kwh"], [0.5, 0.6, 0.7, np.nan, np.nan])
    assert [(g.hours, g.reason) for g in out.gaps] == [(2, "no import_kwh in the file")]


def test_csv_errors_are_line_numbered(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text(
        "hour_start,import_kwh\n"
        "2026-10-01T00:00:00+02:00,0.5\n"
        "2026-10-01T00:00:00+02:00,0.6\n"
        "2026-10-01T01:00:00,0.6\n"
        "2026-10-01T02:00:00+02:00,0,4\n"
        "2026-10-01T03:00:00+02:00,abc\n",
        encoding="utf-8",
    )
    grid = hour_grid(datetime(2026, 10, 1, tzinfo=TZ), datetime(2026, 10, 2, tzinfo=TZ))
    with pytest.raises(CsvFormatError) as info:
        read_hourly_csv(path, grid, ("import_kwh",))
    assert info.value.errors == [
        "m.csv:3: hour 2026-10-01T00:00:00+02:00 already given on line 2",
        "m.csv:4: hour_start '2026-10-01T01:00:00' has no UTC offset (e.g. +02:00)",
        "m.csv:5: 3 fields, the header has 2",
        "m.csv:6: import_kwh 'abc' is not a number (use a decimal point)",
    ]
