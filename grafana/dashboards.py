"""The "Meter" and "Site overview" dashboards, built with grafana-foundation-sdk (docs/dashboards.md).

Limits are EN 50160:2010 clause 4 for low voltage, Un = 230 V, 50 Hz (docs/power-quality.md §1): voltage
207–253 V for 95 % of a week and never below 195.5 V; frequency 49.5–50.5 Hz (99.5 % of a year), 47–52 Hz always; voltage THD ≤ 8 %;
unbalance ≤ 2 %.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from grafana import sql

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "cratedb"  # grafana/provisioning/datasources/cratedb.yaml
DATASOURCE = model.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

NOMINAL_VOLTAGE_V = 230.0
VOLTAGE_BAND_V = (195.5, 207.0, 253.0)  # Un -15 %, -10 %, +10 %
FREQUENCY_BANDS_HZ = (47.0, 49.5, 50.5, 52.0)
VOLTAGE_THD_LIMIT = 0.08  # fraction, as the meter reports THD
UNBALANCE_LIMIT_PCT = 2.0


class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL target of Grafana's PostgreSQL data source (the SDK has no model for it)."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: str) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class SqlQueryBuilder(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw_sql: str, fmt: str = "time_series", ref_id: str = "A") -> None:
        self._internal = SqlQuery(ref_id, raw_sql, fmt)

    def build(self) -> SqlQuery:
        return self._internal


def _thresholds(*steps: tuple[float | None, str]) -> gdash.ThresholdsConfig:
    return (
        gdash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


@dataclass(frozen=True)
class PanelSpec:
    """What a panel shows; `kind` is timeseries, bars, stat or table."""

    title: str
    kind: str
    query: str
    unit: str
    description: str
    w: int
    h: int = 8
    thresholds: tuple[tuple[float | None, str], ...] = ()
    time_from: str | None = None
    decimals: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fmt(self) -> str:
        return "table" if self.kind in ("table", "stat") else "time_series"


def _panel(spec: PanelSpec, panel_id: int, x: int, y: int) -> cogbuilder.Builder[model.Panel]:
    if spec.kind in ("timeseries", "bars"):
        panel = timeseries.Panel().line_width(1).fill_opacity(10 if spec.kind == "timeseries" else 80)
        if spec.kind == "bars":
            panel = panel.draw_style(common.GraphDrawStyle.BARS)
        if spec.thresholds:
            panel = panel.thresholds_style(
                GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE_AND_AREA)
            )
    elif spec.kind == "stat":
        panel = stat.Panel().graph_mode(common.BigValueGraphMode.NONE)
    elif spec.kind == "table":
        panel = table.Panel()
    else:
        raise ValueError(f"unknown panel kind {spec.kind!r}")
    panel = (
        panel.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .with_target(SqlQueryBuilder(spec.query, spec.fmt))
        .grid_pos(model.GridPos(h=spec.h, w=spec.w, x=x, y=y))
        .unit(spec.unit)
    )
    if spec.thresholds:
        panel = panel.thresholds(_thresholds(*spec.thresholds))
    if spec.time_from:
        panel = panel.time_from(spec.time_from)
    if spec.decimals is not None:
        panel = panel.decimals(spec.decimals)
    return panel


def _layout(rows: list[list[PanelSpec]]) -> list[tuple[PanelSpec, int, int]]:
    placed, y = [], 0
    for row in rows:
        x = 0
        for spec in row:
            placed.append((spec, x, y))
            x += spec.w
        if x > 24:
            raise ValueError(f"row at y={y} is {x} columns wide (Grafana has 24)")
        y += max(spec.h for spec in row)
    return placed


def _tenant_variable() -> gdash.QueryVariable:
    return (
        gdash.QueryVariable("tenant")
        .label("Tenant")
        .description("NGSI-LD tenant (QuantumLeap schema mt<tenant>)")
        .datasource(DATASOURCE)
        .query(sql.TENANT_VARIABLE)
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def _meter_variable() -> gdash.QueryVariable:
    return (
        gdash.QueryVariable("meter")
        .label("Meter")
        .description("ThreePhaseAcMeasurement entity of the meter")
        .datasource(DATASOURCE)
        .query(sql.METER_VARIABLE)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


_VOLTAGE_STEPS = (
    (None, "red"),
    (VOLTAGE_BAND_V[0], "orange"),
    (VOLTAGE_BAND_V[1], "green"),
    (VOLTAGE_BAND_V[2], "red"),
)
_FREQUENCY_STEPS = (
    (None, "red"),
    (FREQUENCY_BANDS_HZ[0], "orange"),
    (FREQUENCY_BANDS_HZ[1], "green"),
    (FREQUENCY_BANDS_HZ[2], "orange"),
    (FREQUENCY_BANDS_HZ[3], "red"),
)


def meter_panels() -> list[list[PanelSpec]]:
    """The Meter dashboard, row by row."""
    phases, with_n = ("L1", "L2", "L3"), ("L1", "L2", "L3", "N")
    return [
        [
            PanelSpec(
                "Voltage per phase",
                "timeseries",
                sql.per_key_series("phaseVoltage", phases),
                "volt",
                "Phase-to-neutral RMS voltage. Green: EN 50160 band 207–253 V (230 V ±10 %), to be met 95 % "
                "of each week; orange down to 195.5 V (−15 %), never to be crossed.",
                12,
                thresholds=_VOLTAGE_STEPS,
            ),
            PanelSpec(
                "Frequency",
                "timeseries",
                sql.scalar_series({"frequency": "frequency"}),
                "hertz",
                "Line frequency. Green: 49.5–50.5 Hz (99.5 % of a year); orange up to 47–52 Hz (always).",
                12,
                thresholds=_FREQUENCY_STEPS,
                decimals=3,
            ),
        ],
        [
            PanelSpec(
                "Current per phase and neutral",
                "timeseries",
                sql.per_key_series("current", with_n),
                "amp",
                "RMS current in each phase and the neutral. A neutral current close to the phase currents "
                "means unbalanced loads or third-harmonic currents.",
                12,
            ),
            PanelSpec(
                "Power, all phases",
                "timeseries",
                sql.scalar_series(
                    {
                        "totalActivePower": "active (W)",
                        "totalReactivePower": "reactive (var)",
                        "totalApparentPower": "apparent (VA)",
                    }
                ),
                "watt",
                "Active power (what is billed; negative = export), reactive power (var) and apparent "
                "power (VA) summed over the three phases.",
                12,
            ),
        ],
        [
            PanelSpec(
                "Active power per phase",
                "timeseries",
                sql.per_key_series("activePower", phases),
                "watt",
                "Active power in each phase; very different phases mean the load is unevenly spread.",
                8,
            ),
            PanelSpec(
                "Power factor",
                "timeseries",
                sql.series(
                    [(sql.column("totalPowerFactor"), "all phases")] + [(sql.part("powerFactor", k), k) for k in phases]
                ),
                "none",
                "True power factor P/S per phase and overall; EN 50160 sets no limit, many tariffs "
                "charge reactive energy below about 0.9.",
                8,
                decimals=3,
            ),
            PanelSpec(
                "Voltage unbalance",
                "timeseries",
                sql.METER_UNBALANCE,
                "percent",
                "Negative-sequence voltage unbalance u2 from the line-to-line voltages. EN 50160: ≤ 2 % for "
                "95 % of a week.",
                8,
                thresholds=((None, "green"), (UNBALANCE_LIMIT_PCT, "red")),
                decimals=2,
            ),
        ],
        [
            PanelSpec(
                "Voltage THD",
                "timeseries",
                sql.per_key_series("thdVoltage", phases),
                "percentunit",
                "Total harmonic distortion of each phase voltage. EN 50160: ≤ 8 % for 95 % of a week.",
                12,
                thresholds=((None, "green"), (VOLTAGE_THD_LIMIT, "red")),
                decimals=1,
            ),
            PanelSpec(
                "Current THD",
                "timeseries",
                sql.per_key_series("thdCurrent", phases),
                "percentunit",
                "Total harmonic distortion of each phase current (electronic loads). No EN 50160 limit; high "
                "values heat neutral conductors and transformers.",
                12,
                decimals=1,
            ),
        ],
        [
            PanelSpec(
                "Energy per day",
                "bars",
                sql.METER_ENERGY_PER_DAY,
                "kwatth",
                "Active energy imported and exported each day (UTC), from the meter's counters.",
                12,
            ),
            PanelSpec(
                "Open power-quality events",
                "table",
                sql.open_events(meter_only=True),
                "none",
                "Anomalies the power-quality service has opened for this meter and not yet closed.",
                12,
            ),
        ],
    ]


def site_panels() -> list[list[PanelSpec]]:
    """The Site overview dashboard, row by row."""
    return [
        [
            PanelSpec(
                "Energy today",
                "stat",
                sql.SITE_ENERGY_TODAY,
                "kwatth",
                "Active energy imported and exported by all meters since midnight.",
                6,
                time_from="now/d",
            ),
            PanelSpec(
                "Site power",
                "timeseries",
                sql.SITE_TOTAL_POWER,
                "watt",
                "Active and reactive power summed over all meters.",
                18,
            ),
        ],
        [
            PanelSpec(
                "Meters",
                "table",
                sql.SITE_METERS,
                "none",
                "Every meter with its latest reading in the time range.",
                24,
            ),
        ],
        [
            PanelSpec(
                "Worst power-quality indicators",
                "table",
                sql.SITE_WORST,
                "none",
                "Per meter, the extremes in the time range: voltage outside 207–253 V, voltage THD above 8 %, "
                "unbalance above 2 % or frequency outside 49.5–50.5 Hz break EN 50160 if they last.",
                24,
            ),
        ],
        [
            PanelSpec(
                "Open power-quality events",
                "table",
                sql.open_events(meter_only=False),
                "none",
                "Anomalies open on any meter.",
                24,
            ),
        ],
    ]


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    file_stem: str
    rows: list[list[PanelSpec]]
    variables: tuple[str, ...]


def specs() -> list[DashboardSpec]:
    return [
        DashboardSpec("energytwin-meter", "Meter", "meter", meter_panels(), ("tenant", "meter")),
        DashboardSpec("energytwin-site", "Site overview", "site-overview", site_panels(), ("tenant",)),
    ]


def build(spec: DashboardSpec) -> dict[str, Any]:
    """The dashboard as Grafana JSON (a plain dict)."""
    builder = (
        gdash.Dashboard(spec.title)
        .uid(spec.uid)
        .tags(["energytwin", "power quality"])
        .time("now-24h", "now")
        .timezone("browser")
        .refresh("1m")
        .editable()
    )
    variables = {"tenant": _tenant_variable, "meter": _meter_variable}
    for name in spec.variables:
        builder = builder.with_variable(variables[name]())
    for panel_id, (panel_spec, x, y) in enumerate(_layout(spec.rows), start=1):
        builder = builder.with_panel(_panel(panel_spec, panel_id, x, y))
    built = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for panel in built["panels"]:
        if panel.get("options") is None:
            panel["options"] = {}
    return built


def render_json(spec: DashboardSpec) -> str:
    return json.dumps(build(spec), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
