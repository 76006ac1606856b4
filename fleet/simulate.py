"""The strategy ladder on the same homes and the same year: none, greedy per home, mean SoC, LP optimum.

Every strategy is scored by the same `score()`, from the same per-home grid flows, so the table compares only
what the batteries did. Flows are netted per period at the community's level (the Spanish hourly collective
self-consumption settlement of RD 244/2019, Annex I, as amended by Orden TED/1247/2021): PV of one home that
another home or another home's battery takes in the same hour counts as used inside the community.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from fleet.battery import BatterySpec
from fleet.homes import Homes
from fleet.lp import optimal_schedule
from fleet.rule import DEFAULT_DEADBAND, DEFAULT_GAIN_PER_H, balance_power_kw

STRATEGIES = ("none", "greedy", "mean_soc", "lp")


@dataclass(frozen=True)
class StrategyResult:
    """What one strategy did over the run; energy in kWh, power in kW, fractions 0..1."""

    self_consumption: float  # PV used inside the community / PV produced
    self_sufficiency: float  # consumption covered without the grid / consumption
    peak_import_kw: float  # community, highest period mean
    peak_export_kw: float
    soc_spread: float  # time mean of (highest − lowest) SoC across the fleet
    cycles: float  # equivalent full cycles per battery (energy discharged / capacity), fleet mean
    curtailed_kwh: float
    grid_import_kwh: float
    grid_export_kwh: float
    energy_tax_base_kwh: float  # Σ homes' delivery L: taxed per kWh once netting ends (NL, 1 Jan 2027)
    netted_tax_base_kwh: float  # Σ max(0, L − T) per home over the run: the base while netting lasts
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Flows:
    battery_kw: np.ndarray  # homes x periods, charge > 0
    curtailed_kw: np.ndarray
    soc: np.ndarray  # homes x periods (after each period)


def _limits(batteries: tuple[BatterySpec, ...], soc: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    capacity = np.array([b.capacity_kwh for b in batteries])
    eta_c = np.array([b.charge_efficiency for b in batteries])
    eta_d = np.array([b.discharge_efficiency for b in batteries])
    headroom = np.maximum(0.0, (np.array([b.soc_max for b in batteries]) - soc) * capacity)
    available = np.maximum(0.0, (soc - np.array([b.soc_min for b in batteries])) * capacity)
    high = np.minimum(np.array([b.max_charge_kw for b in batteries]), headroom / (eta_c * dt))
    low = -np.minimum(np.array([b.max_discharge_kw for b in batteries]), available * eta_d / dt)
    return low, high


def _run_online(homes: Homes, policy: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                initial_soc: float, export_limit_kw: float | None) -> Flows:
    """Step a per-period policy(net_kw, soc, low_kw, high_kw) -> battery_kw through the run."""
    dt = homes.period_h
    batteries = homes.batteries
    capacity = np.array([b.capacity_kwh for b in batteries])
    eta_c = np.array([b.charge_efficiency for b in batteries])
    eta_d = np.array([b.discharge_efficiency for b in batteries])
    net_kw = (homes.load_kwh - homes.pv_kwh) / dt
    pv_kw = homes.pv_kwh / dt
    soc = np.full(homes.n_homes, initial_soc)
    battery = np.zeros_like(net_kw)
    curtailed = np.zeros_like(net_kw)
    socs = np.zeros_like(net_kw)
    for t in range(homes.n_periods):
        low, high = _limits(batteries, soc, dt)
        power = np.clip(policy(net_kw[:, t], soc, low, high), low, high)
        battery[:, t] = power
        if export_limit_kw is not None:
            export = np.maximum(0.0, -(net_kw[:, t] + power))
            curtailed[:, t] = np.minimum(pv_kw[:, t], np.maximum(0.0, export - export_limit_kw))
        stored = np.where(power >= 0, power * dt * eta_c, power * dt / eta_d)
        soc = np.clip(soc + stored / capacity, 0.0, 1.0)
        socs[:, t] = soc
    return Flows(battery, curtailed, socs)


def _greedy(net_kw: np.ndarray, soc: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Each battery alone: store its own home's surplus, cover its own home's deficit."""
    return -net_kw


def _mean_soc(gain_per_h: float, deadband: float) -> Callable[..., np.ndarray]:
    def policy(net_kw: np.ndarray, soc: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        capacity = policy.capacity  # type: ignore[attr-defined]
        return balance_power_kw(capacity, soc, low, high, -float(net_kw.sum()), gain_per_h=gain_per_h,
                                deadband=deadband)

    return policy


def score(homes: Homes, flows: Flows, seconds: float) -> StrategyResult:
    """The metrics of one run (see StrategyResult) from its per-home flows."""
    dt = homes.period_h
    grid_kw = (homes.load_kwh - homes.pv_kwh) / dt + flows.battery_kw + flows.curtailed_kw
    community_kw = grid_kw.sum(axis=0)
    imported = np.maximum(0.0, community_kw) * dt
    exported = np.maximum(0.0, -community_kw) * dt
    pv_total = float(homes.pv_kwh.sum())
    load_total = float(homes.load_kwh.sum())
    curtailed = float(flows.curtailed_kw.sum() * dt)
    capacity = np.array([b.capacity_kwh for b in homes.batteries])
    discharged = np.maximum(0.0, -flows.battery_kw).sum(axis=1) * dt
    delivery = np.maximum(0.0, grid_kw).sum(axis=1) * dt
    feed_in = np.maximum(0.0, -grid_kw).sum(axis=1) * dt
    return StrategyResult(
        self_consumption=(pv_total - float(exported.sum()) - curtailed) / pv_total if pv_total > 0 else 0.0,
        self_sufficiency=(load_total - float(imported.sum())) / load_total if load_total > 0 else 0.0,
        peak_import_kw=float(np.maximum(0.0, community_kw).max()),
        peak_export_kw=float(np.maximum(0.0, -community_kw).max()),
        soc_spread=float((flows.soc.max(axis=0) - flows.soc.min(axis=0)).mean()),
        cycles=float((discharged / capacity).mean()),
        curtailed_kwh=curtailed,
        grid_import_kwh=float(imported.sum()),
        grid_export_kwh=float(exported.sum()),
        energy_tax_base_kwh=float(delivery.sum()),
        netted_tax_base_kwh=float(np.maximum(0.0, delivery - feed_in).sum()),
        seconds=seconds,
    )


def simulate_fleet(homes: Homes, strategies: tuple[str, ...] = STRATEGIES, *, initial_soc: float = 0.5,
                   export_limit_kw: float | None = None, gain_per_h: float = DEFAULT_GAIN_PER_H,
                   deadband: float = DEFAULT_DEADBAND) -> dict[str, StrategyResult]:
    """Run each named strategy on `homes` and score it."""
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")
    results: dict[str, StrategyResult] = {}
    for name in strategies:
        started = time.perf_counter()
        if name == "lp":
            schedule = optimal_schedule(homes, initial_soc=initial_soc, export_limit_kw=export_limit_kw)
            flows = Flows(schedule.battery_kw, schedule.curtailed_kw, schedule.soc)
        else:
            if name == "none":
                policy: Callable[..., np.ndarray] = lambda net, soc, low, high: np.zeros_like(net)
            elif name == "greedy":
                policy = _greedy
            else:
                policy = _mean_soc(gain_per_h, deadband)
                policy.capacity = np.array([b.capacity_kwh for b in homes.batteries])  # type: ignore[attr-defined]
            flows = _run_online(homes, policy, initial_soc, export_limit_kw)
        results[name] = score(homes, flows, time.perf_counter() - started)
    return results
