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


def test_readme_lists_every_cli_command():
    """The README's command table is the CLI's command table: every command with its help line, nothing else."""
    import re

    from energytwin.cli import _LazyGroup

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The command line", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `energytwin ([\w-]+)` \| (.*) \|$", section, flags=re.MULTILINE))
    expected = {name: help_text for name, (_, _, help_text) in _LazyGroup._commands.items()}
    assert listed == expected, "update the table in README.md '## The command line' from energytwin/cli.py"


def test_conformance_table_names_tests_that_exist():
    """Each test the NGSI-LD conformance table in docs/compatibility.md cites is a test function of tests/broker."""
    import re

    doc = (ROOT / "docs" / "compatibility.md").read_text(encoding="utf-8")
    table = doc.split("### Conformance with ETSI GS CIM 009 V1.8.1", 1)[1].split("\n### ", 1)[0]
    cited = re.findall(r"`(test_\w+\.py)::(test_\w+)`", table)
    assert len(cited) > 30
    for module, name in cited:
        source = (ROOT / "tests" / "broker" / module).read_text(encoding="utf-8")
        assert f"def {name}(" in source, f"docs/compatibility.md cites {module}::{name}, which does not exist"
