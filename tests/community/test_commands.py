"""The CLI end to end on the example community (CSV data, no twin needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from community import coefficient_file
from community.commands import community

EXAMPLE = Path(__file__).parents[2] / "community" / "examples" / "community.yaml"
CAU = "ES0031405000000001AAA001"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_report_month_writes_table_and_chart(runner: CliRunner, tmp_path: Path):
    chart = tmp_path / "oct.png"
    result = runner.invoke(
        community, ["report", "-c", str(EXAMPLE), "--month", "2026-10", "--chart", str(chart)]
    )
    assert result.exit_code == 0, result.output
    assert "dolores" in result.output and "community" in result.output
    assert "ana.csv: 2026-10-09T06:00Z to 2026-10-09T11:00Z (5 h) no import_kwh in the file" in result.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_coefficients_then_validate(runner: CliRunner, tmp_path: Path):
    result = runner.invoke(
        community,
        [
            "coefficients",
            "-c",
            str(EXAMPLE),
            "--year",
            "2027",
            "--history",
            "2026-10",
            "--method",
            "optimal",
            "-o",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "self-consumption %" in result.output and "optimal *" in result.output
    path = tmp_path / f"{CAU}_2027.txt"
    parsed = coefficient_file.read(path, expected_cups=None)
    assert parsed.beta_micro.shape == (4, 8760)
    assert (parsed.beta_micro[2] >= 150_000).all()  # carmen's energy-poverty reserve
    assert (parsed.beta_micro >= 50_000).all() and (parsed.beta_micro <= 600_000).all()
    ok = runner.invoke(community, ["validate", str(path), "-c", str(EXAMPLE)])
    assert ok.exit_code == 0 and "every hour adds up to 1,000000" in ok.output
    text = path.read_text().replace(";0001;", ";0001;9", 1)
    path.write_text(text)
    bad = runner.invoke(community, ["validate", str(path), "-c", str(EXAMPLE)])
    assert bad.exit_code == 1 and f"{CAU}_2027.txt:1:" in bad.output


def test_validate_community_file_and_errors(runner: CliRunner, tmp_path: Path):
    assert runner.invoke(community, ["validate", "-c", str(EXAMPLE)]).exit_code == 0
    broken = tmp_path / "c.yaml"
    broken.write_text(EXAMPLE.read_text().replace("tariff: fixed", "tariff: nope", 1))
    result = runner.invoke(community, ["validate", str(broken)])
    assert result.exit_code == 1 and "unknown tariff 'nope'" in result.output
