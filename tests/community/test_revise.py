"""`community revise`: the agreement in force against new coefficients, written only when approved."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from community import coefficient_file
from community.commands import community

EXAMPLE = Path(__file__).parents[2] / "community" / "examples" / "community.yaml"


def test_revise_compares_and_writes_only_when_approved(tmp_path: Path):
    runner = CliRunner()
    current_dir, next_dir = tmp_path / "current", tmp_path / "next"
    made = runner.invoke(community, ["coefficients", "-c", str(EXAMPLE), "--year", "2027", "--history", "2026-10",
                                     "--method", "optimal", "-o", str(current_dir)])
    assert made.exit_code == 0, made.output
    current = next(current_dir.glob("*_2027.txt"))
    args = ["revise", "-c", str(EXAMPLE), "--current", str(current), "--history", "2026-10", "-o", str(next_dir)]
    dry = runner.invoke(community, args)
    assert dry.exit_code == 0, dry.output
    assert "dolores" in dry.output and "community" in dry.output and "--approve" in dry.output
    assert not next_dir.exists()
    approved = runner.invoke(community, [*args, "--approve"])
    assert approved.exit_code == 0, approved.output
    written = next_dir / current.name
    parsed = coefficient_file.read(written, expected_cups=None)
    assert parsed.beta_micro.shape == (4, 8760)
    # The same history and method: the revision reproduces the agreement (its € change is zero for everyone).
    assert (parsed.beta_micro == coefficient_file.read(current, expected_cups=None).beta_micro).all()
    assert "+0.00" in dry.output
    bad = current.read_text().replace(";0001;", ";0001;9", 1)
    (tmp_path / current.name).write_text(bad)
    refused = runner.invoke(community, [*args[:3], "--current", str(tmp_path / current.name), "--history",
                                        "2026-10"])
    assert refused.exit_code != 0 and ":1:" in refused.output
