"""The committed dashboards and CrateDB init statements are what the generator makes; the macro expander is Grafana's."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from energytwin.cli import cli
from grafana.commands import generated_files
from grafana.macros import expand
from grafana.quantumleap import crate_init_statements


def test_committed_files_are_up_to_date() -> None:
    for path, text in generated_files().items():
        assert path.exists(), f"{path} missing: run `energytwin dashboards build`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `energytwin dashboards build`"


def test_cli_check_passes_on_committed_files() -> None:
    result = CliRunner().invoke(cli, ["dashboards", "build", "--check"])
    assert result.exit_code == 0, result.output


def test_every_panel_reads_the_provisioned_datasource() -> None:
    provisioned = generated_files().keys()
    for path in provisioned:
        if path.suffix != ".json":
            continue
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "grafana-postgresql-datasource", "uid": "cratedb"}
            assert panel["targets"][0]["rawSql"].strip()


def test_macros_expand_like_grafana_postgres() -> None:
    start, end = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
    text = expand(
        'SELECT $__timeGroupAlias(time_index, $__interval) FROM "mt${tenant}".t '
        "WHERE $__timeFilter(time_index) AND id = '$meter'",
        start,
        end,
        "5m",
        {"tenant": "site1", "meter": "m1"},
    )
    assert text == (
        'SELECT floor(extract(epoch from time_index)/300)*300 AS "time" FROM "mtsite1".t '
        "WHERE time_index BETWEEN '2026-01-02T03:04:05Z' AND '2026-01-02T04:00:00Z' AND id = 'm1'"
    )
    with pytest.raises(ValueError):
        expand("SELECT $__unixEpochGroup(t, 1m)", start, end, "1m", {})
    with pytest.raises(ValueError):
        expand("SELECT '$unknown'", start, end, "1m", {})


def test_crate_init_creates_tables_before_their_metadata() -> None:
    statements = [s["stmt"] for s in crate_init_statements("site1")]
    assert statements[0].startswith('CREATE TABLE IF NOT EXISTS "doc"."md_ets_metadata"')
    assert any(
        '"mtsite1"."etthreephaseacmeasurement"' in s and '"totalactiveenergyimport" double precision' in s
        for s in statements
    )
    meta = [s for s in crate_init_statements("site1") if "args" in s]
    assert meta[0]["args"][0] == '"mtsite1"."etthreephaseacmeasurement"'
    assert meta[0]["args"][1]["totalactiveenergyimport"] == ["totalActiveEnergyImport", "Number"]


def test_every_measure_of_the_table_gets_a_typed_column() -> None:
    """A shape the generator does not know must not silently become an empty object column."""
    from datamodels.measures import MEASURES, Shape
    from grafana.quantumleap import MEASUREMENT_COLUMNS

    by_name = {column.name: column for column in MEASUREMENT_COLUMNS}
    for measure in MEASURES:
        column = by_name[measure.attribute.lower()]
        assert "as ()" not in str(column), measure.attribute
        if measure.shape is Shape.TEXT:
            assert "text" in str(column)
        if measure.shape is Shape.BOOL:
            assert "boolean" in str(column)
