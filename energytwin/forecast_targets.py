"""What the forecast service forecasts beside every meter's load, from a community file (community.yaml).

The forecasting and community parts sit in the same layer and do not import each other (docs/architecture.md);
this CLI-layer module wires them: each installation with a site (latitude, longitude, kWp; tilt and azimuth
default to 30/180) becomes a PV target whose history is its generation meter in the twin (`meter:`) or its
hourly file (`csv:`, column generation_kwh), each tariff with an hourly price file a price target (the file's
EUR/kWh as EUR/MWh, the format community/tariffs.py reads).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from community.config import LoadedCommunity, load_community
from datamodels.measures import measurement_id
from forecasting.pv import PvSite
from forecasting.service import PriceTarget, PvTarget, Targets

log = logging.getLogger("energytwin.forecast")


def _grid(start: datetime, hours: int) -> np.ndarray:
    first = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "s")
    return first + np.arange(hours).astype("timedelta64[h]").astype("timedelta64[s]")


def _csv_source(path: Path):
    from community.csv_import import read_hourly_csv

    def read(start: datetime, hours: int) -> np.ndarray:
        grid = _grid(start, hours)
        return np.asarray(read_hourly_csv(path, grid, ("generation_kwh",)).columns["generation_kwh"], float)

    return read


def _price_source(path: Path):
    from community.tariffs import read_hourly_prices

    def read(start: datetime, hours: int) -> np.ndarray:
        return read_hourly_prices(path, _grid(start, hours), float("nan")) * 1000.0  # EUR/kWh -> EUR/MWh

    return read


def targets_from_community(loaded: LoadedCommunity) -> Targets:
    """PV and price targets of a community; installations without a site are logged and left out."""
    c = loaded.community
    targets = Targets()
    for inst in c.installations:
        if not inst.can_model_clear_sky:
            log.warning("forecast: installation %s has no latitude/longitude/peak_power_kwp: no PV forecast", inst.id)
            continue
        site = PvSite(inst.latitude_deg, inst.longitude_deg, inst.tilt_deg, inst.azimuth_deg, inst.peak_power_kwp)
        if inst.meter:
            targets.pv.append(PvTarget(inst.id, site, meter=measurement_id(inst.meter)))
        else:
            assert inst.csv is not None
            targets.pv.append(PvTarget(inst.id, site, history=_csv_source(loaded.resolve(inst.csv)), source="file",
                                       ref=f"urn:ngsi-ld:PhotovoltaicInstallation:{inst.id}"))
    for name, tariff in c.tariffs.items():
        if tariff.import_prices_file is not None:
            targets.price.append(PriceTarget(name, _price_source(loaded.resolve(tariff.import_prices_file))))
    return targets


def load_targets(community_file: Path | None) -> Targets:
    return targets_from_community(load_community(community_file)) if community_file else Targets()


class SimulatedHistory:
    """The demo's history stand-in: one simulated household (simulation/households.py) per meter, by position.

    A fresh demo's twin holds minutes of readings, not the 7 days a forecast needs, so meters under that use
    this simulated history instead (entities say `historySource: simulation`); each meter is also given the
    simulated household's 1.5 kWp roof in Madrid as its PV. At most 8 households are simulated (meter n uses
    household n mod 8): a year of them takes about 2 s.
    """

    HOUSEHOLDS = 8
    ROOF_KWP = 1.5

    def __init__(self, meter_ids: list[str], seed: int = 7) -> None:
        self.meter_ids = list(meter_ids)
        self.seed = seed
        self._years: dict[int, object] = {}

    def _year(self, year: int):
        if year not in self._years:
            from simulation.households import simulate

            self._years[year] = simulate(self.HOUSEHOLDS, year, seed=self.seed, weather_seed=year,
                                         kwp_per_member=self.ROOF_KWP / self.HOUSEHOLDS)
        return self._years[year]

    def _series(self, pick, start: datetime, hours: int) -> np.ndarray:
        grid = _grid(start, hours).astype("datetime64[h]")
        out = np.full(hours, np.nan)
        for year in sorted({start.year, (start + timedelta(hours=hours)).year}):
            sim = self._year(year)
            stamps = np.asarray(sim.hour_starts_utc, "datetime64[h]")
            pos = np.minimum(np.searchsorted(stamps, grid), stamps.size - 1)
            ok = stamps[pos] == grid
            out[ok] = pick(sim)[pos[ok]]
        return out

    def _member(self, meter_id: str) -> int:
        key = meter_id.rsplit(":", 1)[-1]
        ids = [m.rsplit(":", 1)[-1] for m in self.meter_ids]
        return (ids.index(key) if key in ids else len(ids)) % self.HOUSEHOLDS

    def load(self, meter_id: str, start: datetime, hours: int) -> np.ndarray:
        member = self._member(meter_id)
        return self._series(lambda sim: sim.consumption_kwh[member], start, hours)

    def pv_target(self, meter_id: str) -> PvTarget:
        from simulation.households import MADRID_ROOF

        site = PvSite(MADRID_ROOF.latitude_deg, MADRID_ROOF.longitude_deg, MADRID_ROOF.tilt_deg,
                      MADRID_ROOF.azimuth_deg, self.ROOF_KWP)
        return PvTarget(meter_id.rsplit(":", 1)[-1], site, meter=meter_id, source="simulation",
                        history=lambda start, hours: self._series(lambda sim: sim.generation_kwh, start, hours))
