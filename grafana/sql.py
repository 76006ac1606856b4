"""Panel SQL in the one dialect CrateDB and PostgreSQL both run (docs/dashboards.md, "SQL dialect").

QuantumLeap stores an object-valued Property (per-phase values {L1, L2, L3}) as a CrateDB `object`; its PostgreSQL
backend (and our test database) uses `jsonb`. Both engines accept the subscript `col['L1']` (PostgreSQL ≥ 14 has
jsonb subscripting) and an explicit `CAST(… AS double precision)`, so every query uses exactly that form. Also
avoided: engine-specific functions, `::` casts, `GREATEST`/`LEAST` over possibly-null rows (NULL handling differs).
"""

from __future__ import annotations

from datamodels.measures import MEASUREMENT_TYPE
from grafana.quantumleap import ANOMALY_OPEN, ANOMALY_STATUS_COLUMN, ANOMALY_TYPE, table_name

MEASUREMENTS = f'"mt${{tenant}}"."{table_name(MEASUREMENT_TYPE)}"'
ANOMALIES = f'"mt${{tenant}}"."{table_name(ANOMALY_TYPE)}"'
METER_FILTER = "entity_id = '${meter}' AND $__timeFilter(time_index)"
BUCKET = "$__timeGroupAlias(time_index, $__interval)"
DAY_BUCKET = "$__timeGroupAlias(time_index, 1d)"


def part(column: str, key: str, table: str = "") -> str:
    """One key of an object column as a number, e.g. part('phasevoltage', 'L1') -> CAST(phasevoltage['L1'] …)."""
    prefix = f"{table}." if table else ""
    return f"CAST({prefix}{column}['{key}'] AS double precision)"


def series(items: list[tuple[str, str]], where: str = METER_FILTER) -> str:
    """Time series of bucket averages, one series per (numeric expression, series name), for one meter."""
    columns = ",\n  ".join(f'avg({expr}) AS "{name}"' for expr, name in items)
    return f"SELECT {BUCKET},\n  {columns}\nFROM {MEASUREMENTS}\nWHERE {where}\nGROUP BY 1\nORDER BY 1"


def per_key_series(column: str, keys: tuple[str, ...]) -> str:
    """One series per key of an object column (e.g. phasevoltage L1, L2, L3)."""
    return series([(part(column, key), key) for key in keys])


def scalar_series(columns: dict[str, str]) -> str:
    """One series per scalar column ({column: series name})."""
    return series(list(columns.items()))


def _clamp01(expr: str) -> str:
    return f"CASE WHEN {expr} < 0 THEN 0 WHEN {expr} > 1 THEN 1 ELSE {expr} END"


def unbalance_from_line_voltages(alias: str = "v") -> str:
    """Voltage unbalance u2 in % from line-to-line magnitudes (power-quality.md §1.4, exact, no angles needed).

    beta = (U12^4 + U23^4 + U31^4) / (U12^2 + U23^2 + U31^2)^2, u2 = sqrt((1 - sqrt(3 - 6 beta)) / (1 + sqrt(…))).
    Expects columns u12, u23, u31 on `alias`; 3 - 6 beta is clamped to [0, 1] against rounding.
    """
    a = alias
    beta = (
        f"(power({a}.u12, 4) + power({a}.u23, 4) + power({a}.u31, 4)) / "
        f"NULLIF(power(power({a}.u12, 2) + power({a}.u23, 2) + power({a}.u31, 2), 2), 0)"
    )
    r = _clamp01(f"(3 - 6 * {beta})")
    return f"100 * sqrt((1 - sqrt({r})) / (1 + sqrt({r})))"


LINE_VOLTAGES = (
    f"{part('phasetophasevoltage', 'L12')} AS u12, {part('phasetophasevoltage', 'L23')} AS u23, "
    f"{part('phasetophasevoltage', 'L31')} AS u31"
)

METER_UNBALANCE = f"""SELECT "time", avg({unbalance_from_line_voltages()}) AS "unbalance"
FROM (
  SELECT {BUCKET}, {LINE_VOLTAGES}
  FROM {MEASUREMENTS}
  WHERE {METER_FILTER}
) AS v
GROUP BY 1
ORDER BY 1"""

METER_ENERGY_PER_DAY = f"""SELECT {DAY_BUCKET},
  max(totalactiveenergyimport) - min(totalactiveenergyimport) AS "import",
  max(totalactiveenergyexport) - min(totalactiveenergyexport) AS "export"
FROM {MEASUREMENTS}
WHERE {METER_FILTER}
GROUP BY 1
ORDER BY 1"""


def open_events(meter_only: bool) -> str:
    """The latest state of each Anomaly whose latest status is open (no time filter: an old open event is still open)."""
    where = (
        "WHERE detectedby = replace('${meter}', 'ThreePhaseAcMeasurement', 'Device')\n  "
        if meter_only
        else ""
    )
    return f"""SELECT a.entity_id AS "event", a.detectedby AS "device", a.anomalousproperty AS "property",
  a.phase AS "phase", a.severity AS "severity", a.datedetected AS "since", a.time_index AS "last update",
  a.description AS "description"
FROM {ANOMALIES} AS a
JOIN (
  SELECT entity_id, max(time_index) AS last_time
  FROM {ANOMALIES}
  {where}GROUP BY entity_id
) AS l ON a.entity_id = l.entity_id AND a.time_index = l.last_time
WHERE a.{ANOMALY_STATUS_COLUMN} = '{ANOMALY_OPEN}'
ORDER BY a.datedetected DESC"""


TENANT_VARIABLE = f"""SELECT DISTINCT substr(table_schema, 3) AS tenant
FROM information_schema.tables
WHERE table_name = '{table_name(MEASUREMENT_TYPE)}' AND table_schema LIKE 'mt%'
ORDER BY 1"""

METER_VARIABLE = f"""SELECT DISTINCT entity_id
FROM {MEASUREMENTS}
WHERE $__timeFilter(time_index)
ORDER BY 1"""

SITE_METERS = f"""SELECT m.entity_id AS "meter", m.time_index AS "last reading",
  m.totalactivepower AS "active power", m.totalpowerfactor AS "power factor",
  {part("phasevoltage", "L1", "m")} AS "voltage L1",
  {part("phasevoltage", "L2", "m")} AS "voltage L2",
  {part("phasevoltage", "L3", "m")} AS "voltage L3",
  m.frequency AS "frequency"
FROM {MEASUREMENTS} AS m
JOIN (
  SELECT entity_id, max(time_index) AS last_time
  FROM {MEASUREMENTS}
  WHERE $__timeFilter(time_index)
  GROUP BY entity_id
) AS l ON m.entity_id = l.entity_id AND m.time_index = l.last_time
ORDER BY 1"""

SITE_TOTAL_POWER = f"""SELECT "time", sum(p) AS "active power", sum(q) AS "reactive power"
FROM (
  SELECT {BUCKET}, entity_id, avg(totalactivepower) AS p, avg(totalreactivepower) AS q
  FROM {MEASUREMENTS}
  WHERE $__timeFilter(time_index)
  GROUP BY 1, 2
) AS per_meter
GROUP BY 1
ORDER BY 1"""

SITE_ENERGY_TODAY = f"""SELECT sum(e_import) AS "import", sum(e_export) AS "export"
FROM (
  SELECT entity_id,
    max(totalactiveenergyimport) - min(totalactiveenergyimport) AS e_import,
    max(totalactiveenergyexport) - min(totalactiveenergyexport) AS e_export
  FROM {MEASUREMENTS}
  WHERE $__timeFilter(time_index)
  GROUP BY entity_id
) AS per_meter"""


def _lowest(column: str, keys: tuple[str, ...]) -> str:
    return "least(" + ", ".join(f"min({part(column, k)})" for k in keys) + ")"


def _highest(column: str, keys: tuple[str, ...]) -> str:
    return "greatest(" + ", ".join(f"max({part(column, k)})" for k in keys) + ")"


_PHASES = ("L1", "L2", "L3")

SITE_WORST = f"""SELECT m.entity_id AS "meter",
  {_lowest("phasevoltage", _PHASES)} AS "lowest voltage",
  {_highest("phasevoltage", _PHASES)} AS "highest voltage",
  {_highest("thdvoltage", _PHASES)} AS "worst voltage THD",
  max(u.unbalance) AS "worst unbalance",
  min(m.frequency) AS "lowest frequency",
  max(m.frequency) AS "highest frequency"
FROM {MEASUREMENTS} AS m
JOIN (
  SELECT v.entity_id, max({unbalance_from_line_voltages()}) AS unbalance
  FROM (
    SELECT entity_id, {LINE_VOLTAGES}
    FROM {MEASUREMENTS}
    WHERE $__timeFilter(time_index)
  ) AS v
  GROUP BY v.entity_id
) AS u ON m.entity_id = u.entity_id
WHERE $__timeFilter(m.time_index)
GROUP BY m.entity_id
ORDER BY 1"""
