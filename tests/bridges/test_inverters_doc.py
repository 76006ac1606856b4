"""docs/inverters.md carries the current DER and register tables (they are generated from the code)."""

from __future__ import annotations

from pathlib import Path

from bridges.sunspec.registers import table_markdown as register_table
from datamodels.der import COMMANDS
from datamodels.der import table_markdown as der_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "inverters.md"


def test_the_page_has_the_tables_and_every_command() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert der_table() in text, "regenerate the table in docs/inverters.md from datamodels.der.table_markdown()"
    assert register_table() in text, "regenerate from bridges.sunspec.registers.table_markdown()"
    for command in COMMANDS:
        assert f"`{command.name}`" in text
