"""Hourly energy of every member and installation over a period, from the twin or from CSV files."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from community.config import LoadedCommunity
from community.csv_import import read_hourly_csv
from community.distributor_history import SAMPLE_PERIOD, estimated_hours
from community.hourly import Gap, hour_grid, hourly_energy_from_counter
from community.settlement import net_generation_kwh
from community.twin import energy_counters
from fiware_client import HistoryReader, history_reader


@dataclass
class CommunityEnergy:
    """Hourly kWh on one UTC grid; NaN = missing (and listed in `gaps`)."""

    hour_starts_utc: np.ndarray
    generation_kwh: dict[str, np.ndarray]  # installation id -> net generation G
    import_kwh: np.ndarray  # members x hours: taken from the grid (L); the settlement's consumption C
    export_kwh: np.ndarray  # members x hours: fed back (T); NaN when the source has none
    own_generation_kwh: np.ndarray  # members x hours: own PV (P); NaN for members without one
    has_own_installation: np.ndarray  # bool per member
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. hours a distributor estimated (the report prints them)


def load_energy(
    loaded: LoadedCommunity, start: datetime, end: datetime, client: HistoryReader | None = None
) -> CommunityEnergy:
    """Hourly energy for [start, end) for every installation and member of the community.

    Meter history comes from `client`, else from the reader the community file's `twin:` names: the broker's
    NGSI-LD temporal API (`history: ngsi-ld`, the default) or QuantumLeap (`history: quantumleap`).
    """
    community = loaded.community
    grid = hour_grid(start, end)
    gap_limit = timedelta(minutes=community.twin.max_sample_gap_min)
    own_client = None
    if client is None and (
        any(m.meter or m.distributor for m in community.members) or any(i.meter for i in community.installations)
    ):
        twin = community.twin
        own_client = client = history_reader(twin.history, broker_url=twin.url, tenant=twin.tenant,
                                             history_url=twin.history_server_url, service_path=twin.service_path)
    gaps: list[Gap] = []
    notes: list[str] = []

    def counters(device_id: str, limit: timedelta = gap_limit,
                 export_optional: bool = False) -> tuple[np.ndarray, np.ndarray]:
        series = energy_counters(client, device_id, start, end, margin=limit)
        out = []
        for label, samples in (("import", series.import_kwh), ("export", series.export_kwh)):
            if label == "export" and export_optional and not samples:
                out.append(np.full(grid.size, np.nan))  # a file without export: unknown, as a CSV without it
                continue
            hourly = hourly_energy_from_counter(
                [t for t, _ in samples],
                [v for _, v in samples],
                start,
                end,
                max_sample_gap=limit,
                source=f"{device_id} {label}",
            )
            gaps.extend(hourly.gaps)
            out.append(hourly.energy_kwh)
        return out[0], out[1]

    try:
        generation: dict[str, np.ndarray] = {}
        for inst in community.installations:
            if inst.meter:
                imp, exp = counters(inst.meter)
                generation[inst.id] = np.where(
                    np.isnan(imp) | np.isnan(exp), np.nan, net_generation_kwh(exp, imp)
                )
            else:
                csv = read_hourly_csv(loaded.resolve(inst.csv), grid, ("generation_kwh",))
                gaps.extend(csv.gaps)
                generation[inst.id] = csv.columns["generation_kwh"]
        n = len(community.members)
        imports = np.full((n, grid.size), np.nan)
        exports = np.full((n, grid.size), np.nan)
        own = np.full((n, grid.size), np.nan)
        has_own = np.zeros(n, bool)
        for i, m in enumerate(community.members):
            if m.meter:
                imports[i], exports[i] = counters(m.meter)
                if m.own_installation_meter:
                    _, own[i] = counters(m.own_installation_meter)
                    has_own[i] = True
            elif m.distributor:  # hourly counter samples: an hour between two is not a gap
                imports[i], exports[i] = counters(m.cups, max(gap_limit, SAMPLE_PERIOD), True)
                estimated = estimated_hours(client, m.cups, start, end)
                if estimated:
                    notes.append(f"{m.id}: {len(estimated)} of {grid.size} h estimated by the distributor "
                                 f"(first {estimated[0]:%Y-%m-%d %H:%M} UTC); a later real reading may change them")
            else:
                csv = read_hourly_csv(loaded.resolve(m.csv), grid, ("import_kwh",))
                gaps.extend(csv.gaps)
                imports[i] = csv.columns["import_kwh"]
                if "export_kwh" in csv.columns:
                    exports[i] = csv.columns["export_kwh"]
                if "generation_kwh" in csv.columns:
                    own[i] = csv.columns["generation_kwh"]
                    has_own[i] = True
    finally:
        if own_client is not None:
            own_client.close()
    return CommunityEnergy(grid, generation, imports, exports, own, has_own, gaps, notes)
