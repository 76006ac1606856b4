"""The measure table rendered as Markdown, so docs are generated from the table rather than retyped."""

from __future__ import annotations

from datamodels.measures import MEASURES

_SCALAR_WORDS = {"scalar": "number", "flags": "flags", "text": "text", "bool": "true/false"}


def measure_table_markdown() -> str:
    """One row per measure: wire id, attribute, unitCode, shape keys, whether the SDM model defines it."""
    lines = [
        "| wire id | attribute | unitCode | value | in ThreePhaseAcMeasurement |",
        "|---|---|---|---|---|",
    ]
    for m in MEASURES:
        keys = ",".join(m.shape.keys) if m.shape.keys else _SCALAR_WORDS[m.shape.value]
        lines.append(
            f"| `{m.object_id}` | `{m.attribute}` | {m.unit_code or '–'} | {keys} | {'yes' if m.in_model else 'extra'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(measure_table_markdown(), end="")
