"""Smart Data Models for energytwin: measure table, @context, typed entities, offline schema validation."""

from .context import CONTEXT_BY_TYPE, context_for, link_header, load_vendored
from .entities import Device, LineValues, PhaseValues, PhaseValuesN, ThreePhaseAcMeasurement
from .measures import BY_ATTRIBUTE, BY_OBJECT_ID, MEASURES, Measure, Shape, ShapeError
from .validation import EntityValidationError, to_key_values, validate_entity

__all__ = [
    "BY_ATTRIBUTE",
    "BY_OBJECT_ID",
    "CONTEXT_BY_TYPE",
    "MEASURES",
    "Device",
    "EntityValidationError",
    "LineValues",
    "Measure",
    "PhaseValues",
    "PhaseValuesN",
    "Shape",
    "ShapeError",
    "ThreePhaseAcMeasurement",
    "context_for",
    "link_header",
    "load_vendored",
    "to_key_values",
    "validate_entity",
]
