"""Panel SQL in the one dialect CrateDB and PostgreSQL both run (docs/dashboards.md, "SQL dialect").

QuantumLeap stores an object-valued Property (per-phase values {L1, L2, L3}) as a CrateDB `object`; its PostgreSQL
backend (and our test database) uses `jsonb`. Both engines accept the subscript `col['L1']` (PostgreSQL ≥ 14 has
jsonb subscripting) and an explicit `CAST(… AS double precision)`, so every query uses exactly that form. Also
avoided: engine-specific functions, `::` casts, `GREATEST`/`LEAST` over possibly-null rows (NULL handling differs).
"""

from __future__ import annotations

from datamodels.measures import BY_ATTRIBUTE, MEASUREMENT_TYPE
from grafana.quantumleap import ANOMALY_OPEN, ANOMALY_STATUS_COLUMN, ANOMALY_TYPE, column, table_name

MEASUREMENTS = f'"mt${{tenant}}"."{table_name(MEASUREMENT_TYPE)}"'
ANOMALIES = f'"mt${{tenant}}"."{table_name(ANOMALY_TYPE)}"'
METER_FILTER = "entity_id = '${meter}' AND $__timeFilter(time_index)"
BUCKET = "$__timeGroupAlias(time_index, $__interval)"
DAY_BUCKET = "$__timeGroupAlias(time_index, 1d)"


def _anomaly(attribute: str) -> str:
    return column(attribute, ANOMALY_TYPE)


def part(attribute: str, key: str, table: str = "") -> str:
    """One key of an object measure as a number: part('phaseVoltage', 'L1') -> CAST(phasevoltage['L1'] …)."""
    if key not in BY_ATTRIBUTE[attribute].shape.keys:
        raise KeyError(f"{attribute} has no key {key!r}; its keys: {', '.join(BY_ATTRIBUTE[attribute].shape.keys)}")
    prefix = f"{table}." if table else ""
    return f"CAST({prefix}{column(attribute)}['{key}'] AS double precision)"


def series(items: list[tuple[str, str]], where: str = METER_FILTER) -> str:
    """Time series of bucket averages, one series per (numeric expression, series name), for one meter."""
    columns = ",\n  ".join(f'avg({expr}) AS "{name}"' for expr, name in items)
    return f"SELECT {BUCKET},\n  {columns}\nFROM {MEASUREMENTS}\nWHERE {where}\nGROUP BY 1\nORDER BY 1"


def per_key_series(attribute: str, keys: tuple[str, ...] | None = None) -> str:
    """One series per key of an object measure (phaseVoltage: L1, L2, L3; every key of its shape by default)."""
    return series([(part(attribute, key), key) for key in keys or BY_ATTRIBUTE[attribute].shape.keys])


def scalar_series(names: dict[str, str]) -> str:
    """One series per scalar measure ({attribute: series name})."""
    return series([(column(attribute), name) for attribute, name in names.items()])


def _clamp01(expr: str) -> str:
    return f"CASE WHEN {expr} < 0 THEN 0 WHEN {expr} > 1 THEN 1 ELSE {expr} END"


def unbalance_from_line_voltages(alias: str = "v") -> str:
    """Voltage unbalance u2 in % from line-to-line magnitudes (docs/power-quality.md §1.4, exact, no angles needed).

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
    f"{part('phaseToPhaseVoltage', 'L12')} AS u12, {part('phaseToPhaseVoltage', 'L23')} AS u23, "
    f"{part('phaseToPhaseVoltage', 'L31')} AS u31"
)
_IMPORT = column("totalActiveEnergyImport")
_EXPORT = column("totalActiveEnergyExport")

METER_UNBALANCE = f"""SELECT "time", avg({unbalance_from_line_voltages()}) AS "unbalance"
FROM (
  SELECT {BUCKET}, {LINE_VOLTAGES}
  FROM {MEASUREMENTS}
  WHERE {METER_FILTER}
) AS v
GROUP BY 1
ORDER BY 1"""

METER_ENERGY_PER_DAY = f"""SELECT {DAY_BUCKET},
  max({_IMPORT}) - min({_IMPORT}) AS "import",
  max({_EXPORT}) - min({_EXPORT}) AS "export"
FROM {MEASUREMENTS}
WHERE {METER_FILTER}
GROUP BY 1
ORDER BY 1"""


def open_events(meter_only: bool) -> str:
    """The latest state of each Anomaly whose latest status is open (no time filter: an old open event is still open)."""
    where = (
        f"WHERE {_anomaly('detectedBy')} = replace('${{meter}}', 'ThreePhaseAcMeasurement', 'Device')\n  "
        if meter_only
        else ""
    )
    by, prop, phase, severity, since, text = (_anomaly(name) for name in (
        "detectedBy", "anomalousProperty", "phase", "severity", "dateDetected", "description"))
    return f"""SELECT a.entity_id AS "event", a.{by} AS "device", a.{prop} AS "property",
  a.{phase} AS "phase", a.{severity} AS "severity", a.{since} AS "since", a.time_index AS "last update",
  a.{text} AS "description"
FROM {ANOMALIES} AS a
JOIN (
  SELECT entity_id, max(time_index) AS last_time
  FROM {ANOMALIES}
  {where}GROUP BY entity_id
) AS l ON a.entity_id = l.entity_id AND a.time_index = l.last_time
WHERE a.{ANOMALY_STATUS_COLUMN} = '{ANOMALY_OPEN}'
ORDER BY a.{since} DESC"""


TENANT_VARIABLE = f"""SELECT DISTINCT substr(table_schema, 3) AS tenant
FROM information_schema.tables
WHERE table_name = '{table_name(MEASUREMENT_TYPE)}' AND table_schema LIKE 'mt%'
ORDER BY 1"""

METER_VARIABLE = f"""SELECT DISTINCT entity_id
FROM {MEASUREMENTS}
WHERE $__timeFilter(time_index)
ORDER BY 1"""

SITE_METERS = f"""SELECT m.entity_id AS "meter", m.time_index AS "last reading",
  m.{column("totalActivePower")} AS "active power", m.{column("totalPowerFactor")} AS "power factor",
  {part("phaseVoltage", "L1", "m")} AS "voltage L1",
  {part("phaseVoltage", "L2", "m")} AS "voltage L2",
  {part("phaseVoltage", "L3", "m")} AS "voltage L3",
  m.{column("frequency")} AS "frequency"
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
  SELECT {BUCKET}, entity_id, avg({column("totalActivePower")}) AS p, avg({column("totalReactivePower")}) AS q
  FROM {MEASUREMENTS}
  WHERE $__timeFilter(time_index)
  GROUP BY 1, 2
) AS per_meter
GROUP BY 1
ORDER BY 1"""

SITE_ENERGY_TODAY = f"""SELECT sum(e_import) AS "import", sum(e_export) AS "export"
FROM (
  SELECT entity_id,
    max({_IMPORT}) - min({_IMPORT}) AS e_import,
    max({_EXPORT}) - min({_EXPORT}) AS e_export
  FROM {MEASUREMENTS}
  WHERE $__timeFilter(time_index)
  GROUP BY entity_id
) AS per_meter"""


def _lowest(attribute: str, keys: tuple[str, ...]) -> str:
    return "least(" + ", ".join(f"min({part(attribute, k)})" for k in keys) + ")"


def _highest(attribute: str, keys: tuple[str, ...]) -> str:
    return "greatest(" + ", ".join(f"max({part(attribute, k)})" for k in keys) + ")"


_PHASES = ("L1", "L2", "L3")

SITE_WORST = f"""SELECT m.entity_id AS "meter",
  {_lowest("phaseVoltage", _PHASES)} AS "lowest voltage",
  {_highest("phaseVoltage", _PHASES)} AS "highest voltage",
  {_highest("thdVoltage", _PHASES)} AS "worst voltage THD",
  max(u.unbalance) AS "worst unbalance",
  min(m.{column("frequency")}) AS "lowest frequency",
  max(m.{column("frequency")}) AS "highest frequency"
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
