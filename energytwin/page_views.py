"""The community's accounts for the page's views: `CommunityAccounts(path).accounts()` -> JSON.

The page (twin_service.web) may not import the community part (both sit in one layer: tests/test_layers.py), so
this CLI-layer module does the wiring, as energytwin/page_login.py does for the access layer: it runs the
community's own accounting (community.data.load_energy -> accounting.build_report, the same code as
`energytwin community report`) on the community file's members and installations and hands the page plain JSON
(`twin_service.web._views.AccountsSource` describes the shape). Nothing is recomputed here: kWh, EUR (each
member's tariff, RD 244/2019 simplified compensation as community/tariffs.py settles it), CO2 (the file's
factor) and trees come from community/.

The period is the current month up to the last complete hour (local time of the community), or a fixed one.
Results are cached for `cache_s` (reading a month of history takes seconds); a failure is raised to the page,
which shows the reason instead of figures.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from community import coefficient_file
from community.accounting import Totals, build_report, combined_settlement, member_prices
from community.config import LoadedCommunity, load_community
from community.data import CommunityEnergy, load_energy
from community.planning import expected_for
from community.revision import revise
from community.sharing import SharingRules, shares_by_method
from kernel.hours import year_hour_starts_utc

HOURS_PER_YEAR = 8760
REVISION_METHODS = ("fixed", "proportional", "optimal", "optimal-mean")  # community/sharing.py's methods


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _figures(row: Totals) -> dict[str, Any]:
    return {"consumptionKwh": round(row.consumption_kwh, 3), "assignedKwh": round(row.assigned_kwh, 3),
            "selfConsumedKwh": round(row.self_consumed_kwh, 3), "gridImportKwh": round(row.grid_import_kwh, 3),
            "surplusKwh": round(row.surplus_kwh, 3), "savingsEur": round(row.savings_eur, 2),
            "co2AvoidedKg": round(row.co2_avoided_kg, 2), "trees": round(row.trees, 3),
            "missingHours": row.missing_hours,
            "householdKwh": None if row.household_kwh is None else round(row.household_kwh, 3)}


def simple_payback(investment_eur: float | None, yearly_savings_eur: float) -> float | None:
    """Simple payback in years: investment / yearly savings, undiscounted, no running costs (the "simple payback
    period" of NREL's Manual for the Economic Evaluation of Energy Efficiency and Renewable Energy Technologies,
    Short, Packey & Holt, NREL/TP-462-5173, March 1995); None without an investment or savings."""
    if not investment_eur or yearly_savings_eur <= 0:
        return None
    return round(investment_eur / yearly_savings_eur, 1)


def month_to_date(tz: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[first day of this month 00:00 local, the last complete hour) as aware datetimes."""
    now = (now or datetime.now(UTC)).astimezone(ZoneInfo(tz))
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = now.replace(minute=0, second=0, microsecond=0)
    return start, max(end, start + timedelta(hours=1))


def month_bounds(month: str, tz: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` -> [its first day 00:00, the next month's) in the community's time zone; ValueError if malformed."""
    try:
        year, number = (int(part) for part in month.split("-"))
        start = datetime(year, number, 1, tzinfo=ZoneInfo(tz))
    except ValueError:
        raise ValueError(f"month {month!r}: expected YYYY-MM") from None
    return start, datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=ZoneInfo(tz))


def betas_for(loaded: LoadedCommunity, energy: CommunityEnergy) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Each installation's coefficients over the period (members x hours) and where they come from.

    The agreed coefficient file (`coefficients_file`) when the installation names one, else the fixed shares of
    the community's rules: what `energytwin community report` settles with."""
    c = loaded.community
    rules = SharingRules.from_community(c)
    betas, sources = {}, {}
    for inst in c.installations:
        if inst.coefficients_file is None:
            betas[inst.id] = shares_by_method("fixed", energy.import_kwh, energy.generation_kwh[inst.id], rules)
            sources[inst.id] = f"fixed shares ({c.rules.fixed_shares}): no coefficients_file"
            continue
        path = loaded.resolve(inst.coefficients_file)
        parsed = coefficient_file.read(path, expected_cups=[m.cups for m in c.members], cau=inst.cau)
        year = int(path.name.rsplit("_", 1)[1][:4])
        year_hours = year_hour_starts_utc(year, c.timezone)
        k = ((energy.hour_starts_utc - year_hours[0]) // np.timedelta64(3600, "s")).astype(int)
        if k.min() < 0 or k.max() >= year_hours.size:
            raise ValueError(f"{path.name} covers {year}; the period reaches outside it")
        row = {cups: r for r, cups in enumerate(parsed.cups)}
        betas[inst.id] = np.array([parsed.beta[row[m.cups], k] for m in c.members])
        sources[inst.id] = path.name
    return betas, sources


@dataclass
class CommunityAccounts:
    """The page's AccountsSource for one community file."""

    path: Path
    period: tuple[datetime, datetime] | None = None  # None: `month`, else month to date
    month: str | None = None  # YYYY-MM: that whole month (a past month under review)
    cache_s: float = 300.0
    _cached: tuple[float, dict[str, Any]] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    _revisions: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)

    def accounts(self) -> dict[str, Any]:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_s:
                return self._cached[1]
            body = self._compute()
            self._cached = (time.monotonic(), body)
            return body

    def revision(self, method: str = "optimal") -> dict[str, Any]:
        """The coefficient revision the manager would run now (`energytwin community revise`, community/revision.py):
        for each installation, the agreement in force and `method`'s coefficients, both settled on the expected
        year learnt from this period's history, member by member. Read only: adopting them stays the CLI's
        `--approve`. Cached like the accounts (the LP takes about a second for a few members)."""
        if method not in REVISION_METHODS:
            raise ValueError(f"method {method!r}: one of {', '.join(REVISION_METHODS)}")
        with self._lock:
            hit = self._revisions.get(method)
            if hit is not None and time.monotonic() - hit[0] < self.cache_s:
                return hit[1]
            body = self._revise(method)
            self._revisions[method] = (time.monotonic(), body)
            return body

    def _revise(self, method: str) -> dict[str, Any]:
        loaded = load_community(self.path)
        c = loaded.community
        tz = ZoneInfo(c.timezone)
        start, end = self.period or (month_bounds(self.month, c.timezone) if self.month else month_to_date(c.timezone))
        history = load_energy(loaded, start, end)
        rules = SharingRules.from_community(c)
        cups = [m.cups for m in c.members]
        installations = []
        for inst in c.installations:
            if inst.coefficients_file is not None:
                path = loaded.resolve(inst.coefficients_file)
                year = int(path.stem.rsplit("_", 1)[1])
                in_force = coefficient_file.read(path, year=year, expected_cups=cups, cau=inst.cau)
                order = [in_force.cups.index(x) for x in cups]
                target = year_hour_starts_utc(year, c.timezone)
                expected = expected_for(loaded, inst, history, target)
                current, source = in_force.beta[order], path.name
                adopt = (f"energytwin community revise --community {self.path} --current {path} --history "
                         f"{start.astimezone(tz):%Y-%m} --method {method} --installation {inst.id} --approve")
            else:  # no file agreed yet: the fixed shares are what the distributor applies
                year = end.astimezone(tz).year + 1
                target = year_hour_starts_utc(year, c.timezone)
                expected = expected_for(loaded, inst, history, target)
                current = shares_by_method("fixed", expected.consumption_kwh, expected.generation_kwh, rules)
                source = f"fixed shares ({c.rules.fixed_shares}): no coefficients_file"
                adopt = (f"energytwin community coefficients --community {self.path} --year {year} --history "
                         f"{start.astimezone(tz):%Y-%m} --method {method} --installation {inst.id}")
            prices = member_prices(loaded, target, strict=False)
            result = revise(current, expected, rules, c.timezone, prices, method)
            now, new = result.current, result.proposed
            single = len(c.installations) == 1  # a member's payback needs all their savings: one installation
            members = []
            for i, m in enumerate(c.members):
                members.append({
                    "member": m.id, "cups": m.cups,
                    "selfConsumedKwh": round(float(now.self_consumed_kwh[i]), 1),
                    "proposedSelfConsumedKwh": round(float(new.self_consumed_kwh[i]), 1),
                    "savingsEur": round(float(now.savings_eur[i]), 2),
                    "proposedSavingsEur": round(float(new.savings_eur[i]), 2),
                    "changeEur": round(float(new.savings_eur[i] - now.savings_eur[i]), 2),
                    "investmentEur": m.investment_eur,
                    "paybackYears": simple_payback(m.investment_eur, float(now.savings_eur[i])) if single else None,
                    "proposedPaybackYears": (simple_payback(m.investment_eur, float(new.savings_eur[i]))
                                             if single else None)})
            installations.append({
                "installation": inst.id, "cau": inst.cau, "year": year, "inForce": source, "method": method,
                "expectedGenerationKwh": round(result.generation_kwh, 1),
                "selfConsumedKwh": round(float(now.self_consumed_kwh.sum()), 1),
                "proposedSelfConsumedKwh": round(float(new.self_consumed_kwh.sum()), 1),
                "savingsEur": round(float(now.savings_eur.sum()), 2),
                "proposedSavingsEur": round(float(new.savings_eur.sum()), 2),
                "violations": list(new.violations), "inForceViolations": list(now.violations),
                "notes": list(expected.notes) + list(prices.notes), "members": members,
                "adopt": None if new.violations else adopt})
        return {"community": c.name, "history": {"start": _iso(start), "end": _iso(end)},
                "installations": installations}

    def _compute(self) -> dict[str, Any]:
        loaded = load_community(self.path)
        c = loaded.community
        start, end = self.period or (month_bounds(self.month, c.timezone) if self.month else month_to_date(c.timezone))
        energy = load_energy(loaded, start, end)
        betas, sources = betas_for(loaded, energy)
        report = build_report(loaded, energy, betas, c.name)
        hours = energy.hour_starts_utc.size
        members = []
        for m, row in zip(c.members, report.members):
            figures = _figures(row)
            yearly = row.savings_eur * HOURS_PER_YEAR / hours if hours else 0.0
            payback = (round(m.investment_eur / yearly, 1) if m.investment_eur and yearly > 0 else None)
            members.append({"member": m.id, "cups": m.cups, "meter": m.meter, **figures,
                            "investmentEur": m.investment_eur, "paybackYears": payback})
        settlement = combined_settlement(energy, betas)
        generation = sum(np.nan_to_num(g) for g in energy.generation_kwh.values())
        hourly = []
        for k, hour in enumerate(energy.hour_starts_utc):
            moment = datetime.fromtimestamp(int(hour.astype("datetime64[s]").astype(np.int64)), UTC)
            column = settlement.self_consumed_kwh[:, k]
            hourly.append({"start": _iso(moment),
                           "consumptionKwh": round(float(np.nansum(settlement.consumption_kwh[:, k])), 4),
                           "generationKwh": round(float(generation[k]) if np.ndim(generation) else 0.0, 4),
                           "selfConsumedKwh": round(float(np.nansum(column)), 4),
                           "surplusKwh": round(float(np.nansum(settlement.surplus_kwh[:, k])), 4),
                           # members with data this hour: the public view withholds an hour of too few
                           "members": int(np.count_nonzero(~np.isnan(energy.import_kwh[:, k])))})
        now_k = hours - 1
        coefficients = [{"installation": inst.id, "cau": inst.cau, "source": sources[inst.id],
                         "at": hourly[now_k]["start"] if hourly else None,
                         "shares": {m.id: round(float(betas[inst.id][i, now_k]), 6) for i, m in enumerate(c.members)}}
                        for inst in c.installations]
        return {"community": c.name, "period": {"start": _iso(start), "end": _iso(end),
                                                "label": start.astimezone(ZoneInfo(c.timezone)).strftime("%Y-%m")},
                "members": members, "totals": _figures(report.community), "coefficients": coefficients,
                "hourly": hourly, "notes": list(report.notes) + [g.describe() for g in report.gaps[:20]],
                "co2": {"factorKgPerKwh": c.co2.factor_kg_per_kwh, "source": c.co2.factor_source,
                        "treeKgCo2PerYear": c.co2.tree_kg_co2_per_year}}
