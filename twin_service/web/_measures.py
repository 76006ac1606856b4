"""The measure table as the page reads it: attribute, unit symbol, shape, description (from datamodels.measures)."""

from __future__ import annotations

from typing import Any

from datamodels.measures import MEASURES, Measure

# UN/CEFACT Rec 20 code -> the symbol a reader expects next to the number. A test checks that every unit code
# of the measure table has one, so a new measure cannot reach the page without a readable unit.
UNIT_SYMBOLS: dict[str, str] = {
    "VLT": "V",
    "AMP": "A",
    "WTT": "W",
    "D44": "var",
    "D46": "VA",
    "HTZ": "Hz",
    "KWH": "kWh",
    "K3": "kvarh",
    "C79": "kVAh",
    "C62": "",  # a fraction: the page shows THD in %, power factor as a plain number
    "DD": "°",
}


def measure_json(measure: Measure) -> dict[str, Any]:
    return {
        "attribute": measure.attribute,
        "unitCode": measure.unit_code,
        "unit": UNIT_SYMBOLS[measure.unit_code] if measure.unit_code else None,
        "shape": measure.shape.value,
        "keys": list(measure.shape.keys),
        "description": measure.description,
    }


def measures_json() -> dict[str, dict[str, Any]]:
    """attribute -> label/unit entry, for GET /api/measures."""
    return {m.attribute: measure_json(m) for m in MEASURES}
