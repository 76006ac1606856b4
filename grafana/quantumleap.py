"""The QuantumLeap table layout the dashboards read, created ahead so every reading keeps full precision.

QuantumLeap fixes a column's type from the first value it sees (docs/dashboards.md, "Full precision"): an integral first reading makes a
`bigint` column that truncates later ones, and floats become 32-bit `real` (~7 digits, too few for kWh counters).
QuantumLeap runs `create table if not exists` and only alters columns missing from its metadata table
`md_ets_metadata`, so creating the table and its metadata row first makes it keep our types.

One definition, two renderings: CrateDB (production) and PostgreSQL (the tests; jsonb where CrateDB has objects).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from datamodels.measures import MEASUREMENT_TYPE, MEASURES, PQ_FLAGS, Shape

METADATA_TABLE = "md_ets_metadata"  # QuantumLeap's own, in CrateDB's default schema `doc`
ANOMALY_TYPE = "Anomaly"
# datamodels/anomaly.py: `status` is "open" until the power-quality service closes the condition.
ANOMALY_STATUS_COLUMN = "status"
ANOMALY_OPEN = "open"
TENANT_PLACEHOLDER = "__tenant__"  # lowercase: schema names are the tenant lowercased


@dataclass(frozen=True)
class Column:
    """One column: name as QuantumLeap writes it (attribute lowercased), NGSI type QuantumLeap records for it."""

    name: str
    ngsi_type: str  # what QuantumLeap puts in md_ets_metadata: Number, StructuredValue, Text, DateTime, ...
    crate_type: str
    postgres_type: str
    attribute: str  # the NGSI-LD attribute (or QuantumLeap's own name for base columns)


# QuantumLeap's own columns (sql_translator.py: entity_id, entity_type, time_index, fiware_servicepath,
# __original_ngsi_entity__, instanceId), typed as it creates them.
_BASE = (
    Column("entity_id", "Text", "text", "text", "id"),
    Column("entity_type", "Text", "text", "text", "type"),
    Column("time_index", "DateTime", "timestamp with time zone", "timestamp with time zone", "time_index"),
    Column("fiware_servicepath", "Text", "text", "text", "fiware_servicepath"),
    Column("__original_ngsi_entity__", "StructuredValue", "object", "jsonb", "__original_ngsi_entity__"),
    Column("instanceid", "Text", "text", "text", "instanceId"),
)
# Only entity_id, entity_type and time_index are recorded in QuantumLeap's metadata; the rest it adds itself.
_BASE_IN_METADATA = {"entity_id", "entity_type", "time_index"}


def _crate_object(keys: tuple[str, ...], sub_type: str) -> str:
    inner = ", ".join(f'"{key}" {sub_type}' for key in keys)
    return f"object(dynamic) as ({inner})"


def _measure_column(measure) -> Column:
    name = measure.attribute.lower()
    if measure.shape is Shape.SCALAR:
        return Column(name, "Number", "double precision", "double precision", measure.attribute)
    if measure.shape is Shape.FLAGS:
        return Column(name, "StructuredValue", _crate_object(PQ_FLAGS, "boolean"), "jsonb", measure.attribute)
    if measure.shape is Shape.TEXT:
        return Column(name, "Text", "text", "text", measure.attribute)
    if measure.shape is Shape.BOOL:
        return Column(name, "Boolean", "boolean", "boolean", measure.attribute)
    return Column(
        name,
        "StructuredValue",
        _crate_object(measure.shape.keys, "double precision"),
        "jsonb",
        measure.attribute,
    )


MEASUREMENT_COLUMNS: tuple[Column, ...] = _BASE + tuple(_measure_column(m) for m in MEASURES)

_TIMESTAMPTZ = "timestamp with time zone"

# As datamodels/anomaly.py writes it. `thresholdBreach` is a list of objects: QuantumLeap would make it
# array(text) in CrateDB, which rejects objects, so it is created as an array of objects.
ANOMALY_COLUMNS: tuple[Column, ...] = _BASE + (
    Column("anomalousproperty", "Text", "text", "text", "anomalousProperty"),
    Column("datedetected", "DateTime", _TIMESTAMPTZ, _TIMESTAMPTZ, "dateDetected"),
    Column("detectedby", "Relationship", "text", "text", "detectedBy"),
    Column("thresholdbreach", "Array", "array(object(dynamic))", "jsonb", "thresholdBreach"),
    Column("severity", "Text", "text", "text", "severity"),
    Column("description", "Text", "text", "text", "description"),
    Column("phase", "Text", "text", "text", "phase"),
    Column(ANOMALY_STATUS_COLUMN, "Text", "text", "text", "status"),
    Column("validfrom", "DateTime", _TIMESTAMPTZ, _TIMESTAMPTZ, "validFrom"),
    Column("validto", "DateTime", _TIMESTAMPTZ, _TIMESTAMPTZ, "validTo"),
    Column("name", "Text", "text", "text", "name"),
    Column("source", "Text", "text", "text", "source"),
)

TABLES: dict[str, tuple[Column, ...]] = {MEASUREMENT_TYPE: MEASUREMENT_COLUMNS, ANOMALY_TYPE: ANOMALY_COLUMNS}


_COLUMN_OF: dict[str, dict[str, str]] = {kind: {c.attribute: c.name for c in cols} for kind, cols in TABLES.items()}


def column(attribute: str, entity_type: str = MEASUREMENT_TYPE) -> str:
    """The column QuantumLeap writes an attribute to (a measure of the table, or an Anomaly attribute).

    KeyError names the attributes the table has, so a panel cannot query a column nobody writes.
    """
    try:
        return _COLUMN_OF[entity_type][attribute]
    except KeyError:
        raise KeyError(f"{entity_type} has no attribute {attribute!r} in the measure table; known: "
                       f"{', '.join(sorted(_COLUMN_OF.get(entity_type, {})))}") from None


def schema_name(tenant: str) -> str:
    """QuantumLeap's schema for a tenant: `mt` + the tenant lowercased (QuantumLeap docs, admin/grafana.md; docs/dashboards.md)."""
    return f"mt{tenant.lower()}"


def table_name(entity_type: str) -> str:
    """QuantumLeap's table for an entity type: `et` + the type lowercased."""
    return f"et{entity_type.lower()}"


def qualified(tenant: str, entity_type: str) -> str:
    return f'"{schema_name(tenant)}"."{table_name(entity_type)}"'


def create_table_sql(tenant: str, entity_type: str, dialect: str) -> str:
    """`create table if not exists` for one entity type, in `crate` or `postgres` dialect."""
    columns = TABLES[entity_type]
    body = ", ".join(f'"{c.name}" {c.crate_type if dialect == "crate" else c.postgres_type}' for c in columns)
    stmt = f"CREATE TABLE IF NOT EXISTS {qualified(tenant, entity_type)} ({body})"
    if dialect == "crate":
        # The table options QuantumLeap itself uses (translators/crate.py), so a pre-created table behaves the same.
        stmt += " WITH (\"number_of_replicas\" = '2-all', \"column_policy\" = 'strict')"
    return stmt


def metadata_entry(entity_type: str) -> dict[str, list[str]]:
    """The md_ets_metadata `entity_attrs` QuantumLeap would record: column -> [attribute, NGSI type]."""
    return {
        c.name: [c.attribute, c.ngsi_type]
        for c in TABLES[entity_type]
        if c.name in _BASE_IN_METADATA or c not in _BASE
    }


def crate_init_statements(tenant: str = TENANT_PLACEHOLDER) -> list[dict[str, object]]:
    """Bodies for CrateDB's `POST /_sql`, in order: metadata table, data tables, their metadata rows.

    `on conflict do nothing`: once QuantumLeap has recorded a table, its metadata is left alone.
    """
    statements: list[dict[str, object]] = [
        {
            "stmt": f'CREATE TABLE IF NOT EXISTS "doc"."{METADATA_TABLE}" (table_name text primary key, '
            "entity_attrs object) WITH (number_of_replicas = '2-all', column_policy = 'dynamic')"
        }
    ]
    for entity_type in TABLES:
        statements.append({"stmt": create_table_sql(tenant, entity_type, "crate")})
        statements.append(
            {
                "stmt": f'INSERT INTO "doc"."{METADATA_TABLE}" (table_name, entity_attrs) VALUES (?, ?) '
                "ON CONFLICT (table_name) DO NOTHING",
                "args": [qualified(tenant, entity_type), metadata_entry(entity_type)],
            }
        )
    return statements


def crate_init_jsonl() -> str:
    """The init job's input: one `_sql` body a line, tenant as a placeholder the job substitutes."""
    return "".join(json.dumps(s, sort_keys=True) + "\n" for s in crate_init_statements())
