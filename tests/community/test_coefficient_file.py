"""The distributor file: byte-for-byte on a small case, leap years, and line-numbered validation errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from community import coefficient_file as cf
from kernel.hours import hours_in_year, year_hour_starts_utc

CUPS = ("ES0031405000000101QJ", "ES0031405000000102RK")


def test_small_case_byte_for_byte(tmp_path: Path):
    beta = np.array([[1 / 3, 0.5, 1.0], [2 / 3, 0.5, 0.0]])
    micro = cf.round_coefficients(beta)
    # 333333.33 + 666666.67 floor to 999999: the missing millionth goes to the larger remainder (member 2).
    path = cf.write(tmp_path / "x.txt", CUPS, micro)
    assert path.read_bytes() == (
        b"ES0031405000000101QJ;0001;0,333333\r\n"
        b"ES0031405000000101QJ;0002;0,500000\r\n"
        b"ES0031405000000101QJ;0003;1,000000\r\n"
        b"ES0031405000000102RK;0001;0,666667\r\n"
        b"ES0031405000000102RK;0002;0,500000\r\n"
        b"ES0031405000000102RK;0003;0,000000"
    )


def test_hours_per_year_and_first_hour():
    assert hours_in_year(2027) == 8760
    assert hours_in_year(2028) == 8784
    starts = year_hour_starts_utc(2027, "Europe/Madrid")
    assert str(starts[0]) == "2026-12-31T23:00:00"  # 00:00 local (CET, UTC+1) on 1 January
    assert str(starts[-1]) == "2027-12-31T22:00:00"  # hour 8760 = 23:00-24:00 local on 31 December
    assert cf.file_name("ES0031405000000001AAA001", 2027) == "ES0031405000000001AAA001_2027.txt"


def test_leap_year_round_trip(tmp_path: Path):
    rng = np.random.default_rng(0)
    raw = rng.random((3, 8784))
    micro = cf.round_coefficients(raw / raw.sum(axis=0))
    cups = (*CUPS, "ES0031405000000104TM0F")
    path = cf.write(tmp_path / "ES0031405000000001AAA001_2028.txt", cups, micro)
    parsed = cf.read(path, expected_cups=cups, cau="ES0031405000000001AAA001")
    assert parsed.cups == cups
    assert (parsed.beta_micro == micro).all()
    with pytest.raises(cf.CoefficientFileError, match="has 8784 hours, 2027 has 8760"):
        cf.read(path, year=2027)


def _file(tmp_path: Path, lines: list[str], name="ES0031405000000001AAA001_2027.txt") -> Path:
    path = tmp_path / name
    path.write_text("\r\n".join(lines), encoding="ascii")
    return path


def _valid_lines() -> list[str]:
    lines = [f"{CUPS[0]};{h:04d};0,250000" for h in range(1, 8761)]
    return lines + [f"{CUPS[1]};{h:04d};0,750000" for h in range(1, 8761)]


def test_validation_reports_line_numbers(tmp_path: Path):
    lines = _valid_lines()
    lines[4] = f"{CUPS[0]};0005;0.250000"  # decimal point: line 5
    lines[8760 + 9] = f"{CUPS[1]};0010;0,750001"  # hour 10 adds up to 1,000001: reported at CUPS 1's hour 10
    with pytest.raises(cf.CoefficientFileError) as info:
        cf.read(_file(tmp_path, lines), expected_cups=CUPS)
    assert any(
        e.endswith(
            f":5: expected CUPS;HHHH;0,000000 (six decimals, decimal comma), got '{CUPS[0]};0005;0.250000'"
        )
        for e in info.value.errors
    )
    lines[4] = f"{CUPS[0]};0005;0,250000"
    with pytest.raises(cf.CoefficientFileError) as info:
        cf.read(_file(tmp_path, lines), expected_cups=CUPS)
    assert info.value.errors == [
        "ES0031405000000001AAA001_2027.txt:10: hour 0010: coefficients add up to 1,000001, not 1,000000"
    ]


def test_validation_hour_order_members_and_name(tmp_path: Path):
    lines = _valid_lines()
    lines[2], lines[3] = lines[3], lines[2]
    with pytest.raises(cf.CoefficientFileError) as info:
        cf.read(_file(tmp_path, lines))
    assert (
        "ES0031405000000001AAA001_2027.txt:3: hour 0004 where 0003 was expected for ES0031405000000101QJ"
        in (info.value.errors)
    )
    other = "ES0031405000000109ZZ"
    with pytest.raises(cf.CoefficientFileError) as info:
        cf.read(_file(tmp_path, _valid_lines()), expected_cups=(CUPS[0], other))
    assert any("member CUPS ES0031405000000109ZZ has no lines" in e for e in info.value.errors)
    assert any(":8761: CUPS ES0031405000000102RK is not a member" in e for e in info.value.errors)
    with pytest.raises(cf.CoefficientFileError, match="must be <CAU>_<YYYY>.txt"):
        cf.read(_file(tmp_path, _valid_lines(), name="coefs.txt"))


def test_validator_accepts_lf_and_a_final_newline(tmp_path: Path):
    path = tmp_path / "ES0031405000000001AAA001_2027.txt"
    path.write_text("\n".join(_valid_lines()) + "\n", encoding="ascii")
    assert cf.read(path).beta_micro.shape == (2, 8760)
