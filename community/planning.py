"""Coefficients for a coming year: expected data from history, every method on it, and their comparison."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from community.accounting import MemberPrices, savings_by_member_eur
from community.config import Installation, LoadedCommunity
from community.data import CommunityEnergy
from community.expected import (
    clear_sky_index,
    expected_from_profile,
    hour_of_week_profile,
)
from community.scenarios import Scenarios, scenarios_from_history
from community.settlement import settle
from community.sharing import METHODS, SharingRules, shares_by_method
from simulation.pv import PvArray, clear_sky_energy_kwh


class PlanningError(ValueError):
    """The history cannot support a plan (e.g. a member without any data)."""


@dataclass(frozen=True)
class Expected:
    """Expected hourly consumption (members x hours) and generation of one installation for the target hours."""

    hour_starts_utc: np.ndarray
    consumption_kwh: np.ndarray
    generation_kwh: np.ndarray
    notes: tuple[str, ...] = ()
    scenarios: Scenarios | None = None  # past hours like each target hour, for the stochastic optimum


def expected_for(
    loaded: LoadedCommunity,
    installation: Installation,
    history: CommunityEnergy,
    target_hours_utc: np.ndarray,
) -> Expected:
    """Hour-of-week consumption profiles; PV from pvlib clear sky x fitted index when modelled, else the
    history's mean per calendar month and local hour (a week profile would ignore the seasons). Also the
    scenarios (community/scenarios.py) the stochastic optimum averages over, when generation was measured."""
    c = loaded.community
    tz = c.timezone
    notes: list[str] = []
    scenarios: Scenarios | None = None
    for i, m in enumerate(c.members):
        if np.isnan(history.import_kwh[i]).all():
            raise PlanningError(
                f"member {m.id} has no consumption in the history; give its meter's data or a CSV"
            )
    consumption = expected_from_profile(
        hour_of_week_profile(history.hour_starts_utc, history.import_kwh, tz), target_hours_utc, tz
    )
    measured = history.generation_kwh[installation.id]
    if installation.can_model_clear_sky:
        array = PvArray(
            installation.peak_power_kwp,
            installation.latitude_deg,
            installation.longitude_deg,
            installation.tilt_deg,
            installation.azimuth_deg,
        )
        if (~np.isnan(measured)).any():
            k = clear_sky_index(measured, clear_sky_energy_kwh(array, history.hour_starts_utc))
            notes.append(f"generation: pvlib clear sky x {k:.3f} (clear-sky index measured on the history)")
        elif installation.clear_sky_index is not None:
            k = installation.clear_sky_index
            notes.append(f"generation: pvlib clear sky x {k:.3f} (clear_sky_index from the community file)")
        else:
            raise PlanningError(
                f"installation {installation.id}: no generation history and no clear_sky_index"
            )
        target_clear = clear_sky_energy_kwh(array, target_hours_utc)
        generation = k * target_clear
        if (~np.isnan(measured)).any():
            scenarios = scenarios_from_history(
                history.hour_starts_utc,
                history.import_kwh,
                measured,
                target_hours_utc,
                tz,
                history_clear_sky_kwh=clear_sky_energy_kwh(array, history.hour_starts_utc),
                target_clear_sky_kwh=target_clear,
            )
    else:
        if np.isnan(measured).all():
            raise PlanningError(
                f"installation {installation.id}: no generation history; give peak_power_kwp, latitude_deg and "
                "longitude_deg so pvlib can model it"
            )
        generation = _month_hour_profile(history.hour_starts_utc, measured, target_hours_utc, tz)
        notes.append("generation: mean of the history per month and local hour (no location/kWp for pvlib)")
        scenarios = scenarios_from_history(
            history.hour_starts_utc, history.import_kwh, measured, target_hours_utc, tz
        )
    if scenarios is not None:
        notes.append(
            f"optimal: expected self-consumption over {scenarios.n_scenarios} past hours per hour "
            "(same weekday and hour, nearest in the year)"
        )
        notes += scenarios.notes
    return Expected(target_hours_utc, consumption, generation, tuple(notes), scenarios)


def _month_hour_profile(
    hist_hours: np.ndarray, values: np.ndarray, target: np.ndarray, tz: str
) -> np.ndarray:
    hist = pd.DatetimeIndex(hist_hours).tz_localize("UTC").tz_convert(tz)
    tgt = pd.DatetimeIndex(target).tz_localize("UTC").tz_convert(tz)
    frame = pd.DataFrame({"m": hist.month, "h": hist.hour, "v": values})
    by_mh = frame.groupby(["m", "h"])["v"].mean()
    by_h = frame.groupby("h")["v"].mean()
    keys = list(zip(tgt.month, tgt.hour, strict=True))
    out = np.array([by_mh.get(k, np.nan) for k in keys], float)
    fallback = np.array([by_h.get(h, 0.0) for h in tgt.hour], float)
    return np.nan_to_num(np.where(np.isnan(out), fallback, out))


@dataclass
class MethodOutcome:
    """A method's coefficients and what they would give on the expected data."""

    method: str
    beta: np.ndarray
    self_consumed_kwh: float
    surplus_kwh: float
    grid_import_kwh: float
    generation_kwh: float
    savings_eur: np.ndarray  # per member
    violations: list[str] = field(default_factory=list)
    # The same coefficients settled on every scenario (past hours like each target hour): a fairer in-sample
    # yardstick than the mean profile, which flatters the programme optimised on it.
    scenario_self_consumption_ratio: float | None = None

    @property
    def self_consumption_ratio(self) -> float:
        return self.self_consumed_kwh / self.generation_kwh if self.generation_kwh > 0 else 0.0


def evaluate(
    method: str,
    beta: np.ndarray,
    consumption_kwh: np.ndarray,
    generation_kwh: np.ndarray,
    rules: SharingRules,
    savings: Callable[..., np.ndarray] | None = None,
) -> MethodOutcome:
    """Settle `beta` on the given data and total it (the same yardstick for every method)."""
    s = settle(beta, generation_kwh, consumption_kwh)
    per_member = savings(s) if savings else np.zeros(beta.shape[0])
    return MethodOutcome(
        method,
        beta,
        float(np.nansum(s.self_consumed_kwh)),
        float(np.nansum(s.surplus_kwh)),
        float(np.nansum(s.grid_import_kwh)),
        float(np.nansum(generation_kwh)),
        per_member,
        rules.violations(beta, generation_kwh),
    )


def scenario_self_consumption(beta: np.ndarray, scenarios: Scenarios) -> float:
    """Share of the scenarios' generation the community would self-consume with `beta` (sum over scenarios)."""
    g = scenarios.generation_kwh
    used = np.minimum(beta[:, :, None] * g[None], scenarios.consumption_kwh).sum()
    total = float(g.sum())
    return float(used) / total if total > 0 else 0.0


def compare_methods(
    expected: Expected,
    rules: SharingRules,
    tz: str,
    prices: MemberPrices | None,
    methods: tuple[str, ...] = METHODS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, MethodOutcome]:
    """Every method on the same expected data, each settled and priced the same way."""

    def savings(s) -> np.ndarray:
        if prices is None:
            return np.zeros(s.consumption_kwh.shape[0])
        return savings_by_member_eur(s, expected.hour_starts_utc, tz, prices)

    out = {}
    for method in methods:
        if progress:
            progress(f"{method}: computing coefficients")
        beta = shares_by_method(
            method,
            expected.consumption_kwh,
            expected.generation_kwh,
            rules,
            progress,
            scenarios=expected.scenarios,
        )
        out[method] = evaluate(
            method, beta, expected.consumption_kwh, expected.generation_kwh, rules, savings
        )
        if expected.scenarios is not None:
            out[method].scenario_self_consumption_ratio = scenario_self_consumption(beta, expected.scenarios)
    return out
