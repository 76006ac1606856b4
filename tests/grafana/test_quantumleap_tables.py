"""Panel SQL names its columns through the measure table: a misspelt attribute or key fails at build time."""

from __future__ import annotations

import pytest

from grafana import sql
from grafana.quantumleap import ANOMALY_TYPE, column


def test_columns_come_from_the_table() -> None:
    assert column("totalActiveEnergyImport") == "totalactiveenergyimport"
    assert column("detectedBy", ANOMALY_TYPE) == "detectedby"
    assert sql.part("phaseVoltage", "L2", "m") == "CAST(m.phasevoltage['L2'] AS double precision)"
    assert "current['N']" in sql.per_key_series("current")  # every key of the measure's shape by default


def test_unknown_attributes_and_keys_are_refused() -> None:
    with pytest.raises(KeyError, match="no attribute 'phasevoltage'"):
        column("phasevoltage")  # the column name, not the attribute
    with pytest.raises(KeyError, match="no key 'N'"):
        sql.part("phaseVoltage", "N")
