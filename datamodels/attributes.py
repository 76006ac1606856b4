"""Plain values out of NGSI-LD attributes and times, for every part that reads entities.

The attribute shapes are those of ETSI GS CIM 009 v1.8.1 clause 4.5: normalized (Property `value`, Relationship
`object`, LanguageProperty `languageMap`, typed literals `{"@type": "DateTime", "@value": ...}`) or simplified
(key-values: the value itself). `fiware_client` builds its entity and temporal readers on these.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def attribute_value(attribute: Any) -> Any:
    """The plain value of one attribute, whether it came normalized (`{"type": "Property", ...}`) or simplified."""
    if isinstance(attribute, list):  # several datasets: the default one (without datasetId) wins
        plain = [a for a in attribute if not (isinstance(a, dict) and "datasetId" in a)]
        attribute = (plain or attribute)[0] if attribute else None
    if not isinstance(attribute, dict):
        return attribute
    for key in ("value", "object", "languageMap", "vocab", "json"):
        if key in attribute:
            value = attribute[key]
            if isinstance(value, dict) and "@value" in value:  # a typed JSON-LD literal (DateTime)
                return value["@value"]
            return value
    return attribute


def parse_time(text: str) -> datetime:
    """An NGSI-LD DateTime (ISO 8601, `Z` or an offset; naive read as UTC)."""
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
