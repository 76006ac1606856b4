"""Meters' energy counters from the twin's history, read through a `fiware_client.HistoryReader`.

The client asks `GET /ngsi-ld/v1/temporal/entities/{id}?timerel=between&...&options=temporalValues` with the SDM
Energy @context and the tenant, the same request against the embedded broker and Orion-LD + Mintaka, and follows
206 partial answers, so a year of readings arrives in pages; on the production stack `QuantumLeapClient` asks
QuantumLeap's `/v2/entities/{id}` the same question. This module only turns the counters' history into
one import and one export series per meter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from datamodels.measures import measurement_id
from datamodels.readings import counter_samples
from fiware_client import HistoryReader

IMPORT_ATTRS = ("totalActiveEnergyImport", "activeEnergyImport")
EXPORT_ATTRS = ("totalActiveEnergyExport", "activeEnergyExport")


@dataclass
class CounterSeries:
    """Import and export energy counters of one meter (kWh, all phases), as (time, value) samples."""

    entity_id: str
    import_kwh: list[tuple[datetime, float]] = field(default_factory=list)
    export_kwh: list[tuple[datetime, float]] = field(default_factory=list)


def energy_counters(broker: HistoryReader, device_id: str, start: datetime, end: datetime,
                    margin: timedelta) -> CounterSeries:
    """A meter's import/export counters over [start - margin, end + margin] (the margin brackets the edges).

    Uses `totalActiveEnergyImport/Export` when the meter reports it, else the sum of the phases of
    `activeEnergyImport/Export` ({L1, L2, L3}, kWh) at each instant.
    """
    entity_id = measurement_id(device_id)
    history = broker.attribute_history(entity_id, IMPORT_ATTRS + EXPORT_ATTRS, start - margin, end + margin)
    return CounterSeries(entity_id, counter_samples(history, IMPORT_ATTRS), counter_samples(history, EXPORT_ATTRS))


