"""Docs that repeat a shared table must say what the table says."""

from pathlib import Path

from datamodels.table_doc import measure_table_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_architecture_doc_carries_the_current_measure_table():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert measure_table_markdown() in doc, "regenerate with: python -m datamodels.table_doc"


def test_readme_gives_the_two_commands_first():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
