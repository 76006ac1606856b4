"""Totals per member and for the community: energy, money saved, CO2 avoided, trees; and the daily chart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from community.co2 import co2_avoided_kg, tree_years
from community.config import LoadedCommunity
from community.data import CommunityEnergy
from community.hourly import Gap
from community.settlement import (
    Settlement,
    assigned_kwh,
    direct_self_use_kwh,
    household_consumption_kwh,
    settle_assigned,
)
from community.tariffs import monthly_savings_eur, price_file_mean, read_hourly_prices


@dataclass(frozen=True)
class MemberPrices:
    """Each member's import price per hour and surplus price (members x hours, members)."""

    import_eur_per_kwh: np.ndarray
    surplus_eur_per_kwh: np.ndarray
    compensation: tuple[str, ...]
    notes: tuple[str, ...] = ()


def member_prices(
    loaded: LoadedCommunity, hour_starts_utc: np.ndarray, *, strict: bool = True
) -> MemberPrices:
    """Prices per member from their tariffs. `strict=False` (planning a future year) lets hours a price file
    does not cover take the flat price, or else the file's mean price, and says so in `notes`."""
    c = loaded.community
    cache: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for name, tariff in c.tariffs.items():
        if tariff.import_prices_file is None:
            cache[name] = np.full(hour_starts_utc.size, tariff.import_price_eur_per_kwh)
            continue
        path = loaded.resolve(tariff.import_prices_file)
        fallback = tariff.import_price_eur_per_kwh
        if fallback is None and not strict:
            fallback = price_file_mean(path)
            notes.append(
                f"tariff {name}: hours missing from {path.name} are priced at its mean, {fallback:.4f} EUR/kWh"
            )
        cache[name] = read_hourly_prices(path, hour_starts_utc, fallback)
    return MemberPrices(
        np.array([cache[m.tariff] for m in c.members]),
        np.array([c.tariffs[m.tariff].surplus_price_eur_per_kwh for m in c.members]),
        tuple(c.tariffs[m.tariff].compensation for m in c.members),
        tuple(notes),
    )


def savings_by_member_eur(
    settlement: Settlement, hour_starts_utc: np.ndarray, tz: str, prices: MemberPrices
) -> np.ndarray:
    """Each member's saving over the period, settled month by month (the compensation cap is monthly)."""
    months = pd.DatetimeIndex(hour_starts_utc).tz_localize("UTC").tz_convert(tz).strftime("%Y-%m")
    out = np.zeros(settlement.consumption_kwh.shape[0])
    for month in np.unique(months):
        cols = np.asarray(months == month)
        for i in range(out.size):
            out[i] += monthly_savings_eur(
                settlement.self_consumed_kwh[i, cols],
                settlement.grid_import_kwh[i, cols],
                settlement.surplus_kwh[i, cols],
                prices.import_eur_per_kwh[i, cols],
                float(prices.surplus_eur_per_kwh[i]),
                prices.compensation[i],
            )
    return out


@dataclass(frozen=True)
class Totals:
    """One row of the report (a member, or the community)."""

    label: str
    consumption_kwh: float
    assigned_kwh: float
    self_consumed_kwh: float
    grid_import_kwh: float
    surplus_kwh: float
    savings_eur: float
    co2_avoided_kg: float
    trees: float
    missing_hours: int
    household_kwh: float | None = None  # V = P + L - T, members with their own PV
    direct_self_use_kwh: float | None = None  # P - T

    @property
    def self_consumption_ratio(self) -> float:
        return self.self_consumed_kwh / self.assigned_kwh if self.assigned_kwh > 0 else 0.0


@dataclass
class Report:
    """A period's accounting: rows per member, the community row, daily series for the chart, the gaps."""

    title: str
    members: list[Totals]
    community: Totals
    daily: pd.DataFrame  # index local date; columns self_consumed_kwh, grid_import_kwh, surplus_kwh, ratio
    gaps: list[Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def combined_settlement(energy: CommunityEnergy, betas: dict[str, np.ndarray]) -> Settlement:
    """Settle every member against all installations: E_i = sum_k beta_k,i G_k, then the settlement formulas (docs/community.md) on the sum."""
    assigned = np.zeros_like(energy.import_kwh)
    for inst_id, beta in betas.items():
        assigned = assigned + assigned_kwh(beta, energy.generation_kwh[inst_id])
    return settle_assigned(assigned, energy.import_kwh)


def build_report(
    loaded: LoadedCommunity,
    energy: CommunityEnergy,
    betas: dict[str, np.ndarray],
    title: str,
    prices: MemberPrices | None = None,
) -> Report:
    """Settle the period and total it per member and for the community."""
    c = loaded.community
    s = combined_settlement(energy, betas)
    prices = prices or member_prices(loaded, energy.hour_starts_utc)
    savings = savings_by_member_eur(s, energy.hour_starts_utc, c.timezone, prices)
    factor, tree = c.co2.factor_kg_per_kwh, c.co2.tree_kg_co2_per_year

    def row(
        label: str, rows: slice | int, saving: float, household: tuple[float | None, float | None]
    ) -> Totals:
        a = float(np.nansum(s.self_consumed_kwh[rows]))
        co2 = co2_avoided_kg(a, factor)
        missing = int(np.isnan(s.self_consumed_kwh[rows]).sum())
        return Totals(
            label,
            float(np.nansum(s.consumption_kwh[rows])),
            float(np.nansum(s.assigned_kwh[rows])),
            a,
            float(np.nansum(s.grid_import_kwh[rows])),
            float(np.nansum(s.surplus_kwh[rows])),
            saving,
            co2,
            tree_years(co2, tree),
            missing,
            *household,
        )

    members = []
    for i, m in enumerate(c.members):
        household: tuple[float | None, float | None] = (None, None)
        if energy.has_own_installation[i]:
            p, l_, t = energy.own_generation_kwh[i], energy.import_kwh[i], np.nan_to_num(energy.export_kwh[i])
            household = (
                float(np.nansum(household_consumption_kwh(p, l_, t))),
                float(np.nansum(direct_self_use_kwh(p, t))),
            )
        members.append(row(m.id, i, float(savings[i]), household))
    community = row("community", slice(None), float(savings.sum()), (None, None))

    local = pd.DatetimeIndex(energy.hour_starts_utc).tz_localize("UTC").tz_convert(c.timezone)
    frame = pd.DataFrame(
        {
            "self_consumed_kwh": np.nansum(s.self_consumed_kwh, axis=0),
            "grid_import_kwh": np.nansum(s.grid_import_kwh, axis=0),
            "surplus_kwh": np.nansum(s.surplus_kwh, axis=0),
            "assigned_kwh": np.nansum(s.assigned_kwh, axis=0),
        },
        index=local.date,
    )
    daily = frame.groupby(level=0).sum()
    daily["ratio"] = np.where(
        daily["assigned_kwh"] > 0, daily["self_consumed_kwh"] / daily["assigned_kwh"], np.nan
    )
    return Report(title, members, community, daily, list(energy.gaps), [*prices.notes, *energy.notes])


def write_chart(report: Report, path: Path) -> Path:
    """PNG: stacked self-consumed / grid import / surplus per day, and the self-consumption ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    daily = report.daily
    x = np.arange(len(daily))
    fig, ax = plt.subplots(figsize=(11, 5), dpi=110)
    a = daily["self_consumed_kwh"].to_numpy()
    i = daily["grid_import_kwh"].to_numpy()
    s = daily["surplus_kwh"].to_numpy()
    ax.bar(x, a, color="#2e7d32", label="self-consumed")
    ax.bar(x, i, bottom=a, color="#9e9e9e", label="grid import")
    ax.bar(x, s, bottom=a + i, color="#f9a825", label="surplus")
    ax.set_ylabel("energy per day (kWh)")
    ax.set_xticks(x, [d.strftime("%d") for d in daily.index], fontsize=8)
    ax.set_xlabel("day")
    ratio_ax = ax.twinx()
    ratio_ax.plot(
        x, 100 * daily["ratio"].to_numpy(), color="#1565c0", marker="o", ms=3, label="self-consumption"
    )
    ratio_ax.set_ylim(0, 105)
    ratio_ax.set_ylabel("community self-consumption (% of generation)")
    handles = ax.get_legend_handles_labels()[0] + ratio_ax.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ratio_ax.get_legend_handles_labels()[1]
    ax.legend(handles, labels, loc="upper left", fontsize=8)
    total = report.community
    ax.set_title(f"{report.title}: {total.self_consumption_ratio:.0%} of the generation self-consumed")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
