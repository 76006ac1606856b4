"""Every panel's SQL, with Grafana's macros expanded, run against a real PostgreSQL holding QuantumLeap's layout.

The dashboards are read from the committed JSON (what Grafana loads). Expected columns and row counts come from
the data written (tests/grafana/qldata.py), not from running the SQL.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from datamodels.measures import MEASUREMENT_TYPE, measurement_id
from grafana.macros import expand
from grafana.quantumleap import TABLES, qualified
from tests.grafana import qldata

psycopg = pytest.importorskip("psycopg", reason="psycopg (PyPI) is needed to talk to PostgreSQL")

DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
METER = "meter-3"  # the meter carrying the unbalance test vector


@pytest.fixture(scope="module")
def loaded(postgres):
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    with psycopg.connect(postgres.conninfo) as conn:
        day = qldata.load(conn, end)
    conn = psycopg.connect(postgres.conninfo, autocommit=True)
    yield conn, day
    conn.close()


def _dashboard(stem: str) -> dict:
    return json.loads((DASHBOARDS / f"{stem}.json").read_text(encoding="utf-8"))


def _run(conn, raw_sql: str, time_from: datetime, time_to: datetime, variables: dict[str, str]):
    text = expand(raw_sql, time_from, time_to, "1m", variables)
    with conn.cursor() as cur:
        cur.execute(text.replace("%", "%%"))
        return [d.name for d in cur.description], cur.fetchall()


def _per_day(samples: list[tuple[datetime, float]], since: datetime | None = None) -> dict:
    days: dict = {}
    for moment, value in samples:
        if since is None or moment >= since:
            days.setdefault(moment.date(), []).append(value)
    return {d: max(v) - min(v) for d, v in days.items()}


def _panels(stem: str) -> dict[str, dict]:
    return {p["title"]: p for p in _dashboard(stem)["panels"]}


def _range(panel: dict, day) -> tuple[datetime, datetime]:
    if panel.get("timeFrom") == "now/d":  # Grafana: from midnight today to now
        return day.end.replace(hour=0, minute=0), day.end
    return day.start, day.end


def test_variables(loaded) -> None:
    conn, day = loaded
    for stem in ("meter", "site-overview"):
        queries = {v["name"]: v["query"] for v in _dashboard(stem)["templating"]["list"]}
        cols, rows = _run(conn, queries["tenant"], day.start, day.end, {})
        assert cols == ["tenant"] and [r[0] for r in rows] == sorted(day.tenants)
        if "meter" in queries:
            cols, rows = _run(conn, queries["meter"], day.start, day.end, {"tenant": "site1"})
            assert [r[0] for r in rows] == [measurement_id(d) for d in day.tenants["site1"]]


def test_meter_dashboard(loaded) -> None:
    conn, day = loaded
    phases = ["L1", "L2", "L3"]
    expected = {
        "Voltage per phase": ["time", *phases],
        "Frequency": ["time", "frequency"],
        "Current per phase and neutral": ["time", *phases, "N"],
        "Power, all phases": ["time", "active (W)", "reactive (var)", "apparent (VA)"],
        "Active power per phase": ["time", *phases],
        "Power factor": ["time", "all phases", *phases],
        "Voltage unbalance": ["time", "unbalance"],
        "Voltage THD": ["time", *phases],
        "Current THD": ["time", *phases],
        "Energy per day": ["time", "import", "export"],
        "Open power-quality events": [
            "event",
            "device",
            "property",
            "phase",
            "severity",
            "since",
            "last update",
            "description",
        ],
    }
    panels = _panels("meter")
    assert sorted(panels) == sorted(expected), "every panel needs an expectation here"
    variables = {"tenant": "site1", "meter": measurement_id(METER)}
    results = {}
    for title, panel in panels.items():
        cols, rows = _run(conn, panel["targets"][0]["rawSql"], *_range(panel, day), variables)
        assert cols == expected[title], title
        results[title] = rows
    per_day = _per_day(day.energy[METER])
    for title in expected:
        if title == "Energy per day":
            assert len(results[title]) == len(per_day)
        elif title == "Open power-quality events":
            assert results[title] == []  # meter-3 has none
        else:
            assert len(results[title]) == qldata.MINUTES, title  # one row per one-minute bucket
    # Physics: the §1.4 vector gives VUF 1.623 %; the energy bars are each day's counter increase.
    assert all(
        math.isclose(r[1], qldata.UNBALANCED_VUF_PCT, abs_tol=0.001) for r in results["Voltage unbalance"]
    )
    for (bucket, imported, _), (date, increase) in zip(
        results["Energy per day"], sorted(per_day.items()), strict=True
    ):
        assert datetime.fromtimestamp(float(bucket), UTC).date() == date
        assert imported == pytest.approx(increase, abs=1e-9)
    voltage = results["Voltage per phase"][0]
    assert voltage[1] == pytest.approx(230.0) and voltage[2] == pytest.approx(229.0)


def test_meter_open_events(loaded) -> None:
    conn, day = loaded
    panel = _panels("meter")["Open power-quality events"]
    _, rows = _run(
        conn,
        panel["targets"][0]["rawSql"],
        day.start,
        day.end,
        {"tenant": "site1", "meter": measurement_id("meter-1")},
    )
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("urn:ngsi-ld:Anomaly:ev-1", "phaseVoltage", "L2", "medium")
    ]
    assert rows[0][6] == day.start + timedelta(minutes=20)  # its latest update


def test_balanced_meter_has_zero_unbalance(loaded) -> None:
    conn, day = loaded
    panel = _panels("meter")["Voltage unbalance"]
    _, rows = _run(
        conn,
        panel["targets"][0]["rawSql"],
        day.start,
        day.end,
        {"tenant": "site1", "meter": measurement_id("meter-1")},
    )
    assert len(rows) == qldata.MINUTES and all(abs(r[1]) < 1e-4 for r in rows)


def test_site_overview(loaded) -> None:
    conn, day = loaded
    expected = {
        "Energy today": ["import", "export"],
        "Site power": ["time", "active power", "reactive power"],
        "Meters": [
            "meter",
            "last reading",
            "active power",
            "power factor",
            "voltage L1",
            "voltage L2",
            "voltage L3",
            "frequency",
        ],
        "Worst power-quality indicators": [
            "meter",
            "lowest voltage",
            "highest voltage",
            "worst voltage THD",
            "worst unbalance",
            "lowest frequency",
            "highest frequency",
        ],
        "Open power-quality events": [
            "event",
            "device",
            "property",
            "phase",
            "severity",
            "since",
            "last update",
            "description",
        ],
    }
    panels = _panels("site-overview")
    assert sorted(panels) == sorted(expected), "every panel needs an expectation here"
    meters = day.tenants["site1"]
    results = {}
    for title, panel in panels.items():
        cols, rows = _run(conn, panel["targets"][0]["rawSql"], *_range(panel, day), {"tenant": "site1"})
        assert cols == expected[title], title
        results[title] = rows
    assert len(results["Site power"]) == qldata.MINUTES
    assert results["Site power"][0][1] == pytest.approx(sum(day.power_w[m][0] for m in meters))
    assert [r[0] for r in results["Meters"]] == [measurement_id(m) for m in meters]
    assert all(r[1] == day.end for r in results["Meters"])
    worst = {r[0]: r for r in results["Worst power-quality indicators"]}
    assert len(worst) == len(meters)
    assert worst[measurement_id("meter-3")][4] == pytest.approx(qldata.UNBALANCED_VUF_PCT, abs=0.001)
    assert worst[measurement_id("meter-1")][3] == pytest.approx(0.031)
    midnight = day.end.replace(hour=0, minute=0)
    today = sum(sum(_per_day(day.energy[m], midnight).values()) for m in meters)
    assert len(results["Energy today"]) == 1 and results["Energy today"][0][0] == pytest.approx(
        today, abs=1e-9
    )
    assert sorted(r[0] for r in results["Open power-quality events"]) == [
        "urn:ngsi-ld:Anomaly:ev-1",
        "urn:ngsi-ld:Anomaly:ev-3",
    ]


def test_energy_counters_keep_full_precision(loaded) -> None:
    """The pre-created columns are double precision; QuantumLeap's own choice (`real`) would lose the kWh digits."""
    conn, day = loaded
    table = qualified("site1", MEASUREMENT_TYPE)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'mtsite1' "
            "AND table_name = 'etthreephaseacmeasurement' AND column_name = 'totalactiveenergyimport'"
        )
        assert cur.fetchone() == ("double precision",)
        cur.execute(
            f"SELECT totalactiveenergyimport, CAST(totalactiveenergyimport AS real), "
            f"CAST(phasevoltage['L1'] AS double precision) FROM {table} "
            f"WHERE entity_id = %s ORDER BY time_index",
            (measurement_id("meter-1"),),
        )
        rows = cur.fetchall()
    written = [value for _, value in day.energy["meter-1"]]
    assert [r[0] for r in rows] == written  # every reading exactly, the integral first one included
    assert (
        rows[0][0] == qldata.ENERGY_START_KWH
        and rows[1][0] == qldata.ENERGY_START_KWH + qldata.ENERGY_STEP_KWH
    )
    assert rows[1][1] != rows[1][0]  # a 32-bit real cannot hold 123456.0125
    assert {c.name for c in TABLES[MEASUREMENT_TYPE]} >= {"phasevoltage", "totalactiveenergyimport"}
