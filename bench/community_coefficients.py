"""Benchmark: optimal sharing coefficients for a year of 50 members, and the methods compared.

Run: `.venv/bin/python bench/community_coefficients.py` (add `--fairness` for the coupled LP, ~7 min). Prints the LP solve time and, on a simulated
community (pvlib clear sky near Madrid x daily clouds, three household archetypes), the self-consumption of
each method, in sample (on the expected data the coefficients were computed from) and out of sample (the
coefficients for 2027 computed from 2026's hour-of-week profiles, settled on 2027's simulated actuals).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from community.coefficient_file import round_coefficients
from community.expected import expected_from_profile, hour_of_week_profile
from community.planning import evaluate
from community.sharing import SharingRules, fixed_shares, optimal_shares, proportional_shares
from community.simulate import simulate

N_MEMBERS = 50
TZ = "Europe/Madrid"


def main() -> None:
    history = simulate(N_MEMBERS, 2026, seed=1)
    actual = simulate(N_MEMBERS, 2027, seed=1)  # same seed: the same households and sizes, 2027's calendar
    actual_c = actual.consumption_kwh
    poor = np.zeros(N_MEMBERS, bool)
    poor[:5] = True
    rules = SharingRules(
        lower=np.full(N_MEMBERS, 0.005),
        upper=np.full(N_MEMBERS, 0.08),
        entitlement=history.investment_eur / history.investment_eur.sum(),
        reserve=0.08,
        reserve_members=poor,
        fairness_tolerance=None,
    )
    expected_c = expected_from_profile(
        hour_of_week_profile(history.hour_starts_utc, history.consumption_kwh, TZ), actual.hour_starts_utc, TZ
    )
    # Expected PV: 2026's month x hour mean would also do; the simulator's 2027 clear-sky shape x 2026's mean
    # cloudiness stands in for the pvlib path the CLI takes.
    k = history.generation_kwh.sum() / actual.generation_kwh.sum()
    expected_g = actual.generation_kwh * k

    print(
        f"community: {N_MEMBERS} members, {actual.hour_starts_utc.size} hours, "
        f"generation {actual.generation_kwh.sum() / 1000:.1f} MWh, consumption {actual_c.sum() / 1000:.1f} MWh"
    )
    print(
        "rules: min 0.5 %, cap 8 %, 8 % reserved for 5 energy-poverty households; fixed shares by investment"
    )

    t0 = time.perf_counter()
    opt = optimal_shares(expected_c, expected_g, rules)
    solve_s = time.perf_counter() - t0
    print(
        f"optimal LP (HiGHS via scipy.optimize.linprog), year x {N_MEMBERS} members: {solve_s:.1f} s "
        f"({opt.n_variables:,} variables per stage, 2 stages)"
    )
    t0 = time.perf_counter()
    micro = round_coefficients(opt.beta, rules.lower, rules.upper, rules.reserve, rules.poor)
    print(
        f"rounding to six decimals with exact hourly sums: {time.perf_counter() - t0:.2f} s; "
        f"sums exact: {bool((micro.sum(axis=0) == 1_000_000).all())}"
    )

    betas = {
        "fixed (investment)": fixed_shares(expected_c.shape[1], rules),
        "proportional": proportional_shares(expected_c, rules),
        "optimal": opt.beta,
    }
    fair_rules = SharingRules(
        rules.lower, rules.upper, rules.entitlement, rules.reserve, rules.reserve_members, 0.25
    )
    if "--fairness" in sys.argv:  # couples all 8760 hours: minutes, not seconds (about 7 min here)
        t0 = time.perf_counter()
        betas["optimal + fairness 25 %"] = optimal_shares(expected_c, expected_g, fair_rules).beta
        print(
            f"optimal LP with fairness bound +/-25 % of the investment share: {time.perf_counter() - t0:.1f} s"
        )
    print()
    print(
        f"{'method':26s} {'in-sample self-cons.':>21s} {'out-of-sample self-cons.':>25s} "
        f"{'surplus kWh (actual)':>21s} {'rule violations':>16s}"
    )
    for name, beta in betas.items():
        r = fair_rules if "fairness" in name else rules
        inside = evaluate(name, beta, expected_c, expected_g, r)
        outside = evaluate(name, beta, actual_c, actual.generation_kwh, rules)
        print(
            f"{name:26s} {100 * inside.self_consumption_ratio:20.1f}% {100 * outside.self_consumption_ratio:24.1f}% "
            f"{outside.surplus_kwh:21,.0f} {len(inside.violations):16d}"
        )


if __name__ == "__main__":
    main()
