"""Benchmark: sharing coefficients for a year of 50 members: solve times and an out-of-sample comparison.

Run: `.venv/bin/python bench/community_coefficients.py` (add `--fairness` for the coupled programmes, minutes;
`--quick` for a 10-member smoke run). Figures are printed and written to bench/results/community_coefficients.json.

Protocol (no peeking): one simulated community (households fixed by seed 1), three independent weather/noise
draws. 2026 with weather seed 101 is the history every method learns from: the hour-of-week mean profile
(fixed, proportional, optimal-mean) or the 52 same weekday-and-hour past hours per target hour (optimal, the
stochastic programme). PV is expected as pvlib clear sky x the clear-sky index fitted on 2026, as the CLI does.
The coefficients for 2027 are then settled on 2027 actuals drawn with weather seeds the history never saw:
202 is the *validation* year the scenario defaults (count, matching) were chosen on, 303 and 404 are test
years that played no part in any choice.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from community.coefficient_file import round_coefficients
from community.expected import (
    clear_sky_index,
    expected_from_profile,
    hour_of_week_profile,
)
from community.planning import evaluate, scenario_self_consumption
from community.scenarios import scenarios_from_history
from community.sharing import (
    SharingRules,
    fixed_shares,
    optimal_shares,
    proportional_shares,
    stochastic_shares,
)
from simulation.households import MADRID_ROOF, simulate
from simulation.pv import PvArray, clear_sky_energy_kwh

QUICK = "--quick" in sys.argv
N_MEMBERS = 10 if QUICK else 50
RESULTS = Path(__file__).resolve().parent / "results" / "community_coefficients.json"
TZ = "Europe/Madrid"
HOUSEHOLDS_SEED = 1
HISTORY_WEATHER = 101
EVALUATION = {"validation": 202, "test A": 303, "test B": 404}


def main() -> None:
    history = simulate(N_MEMBERS, 2026, seed=HOUSEHOLDS_SEED, weather_seed=HISTORY_WEATHER)
    actuals = {
        name: simulate(N_MEMBERS, 2027, seed=HOUSEHOLDS_SEED, weather_seed=w)
        for name, w in EVALUATION.items()
    }
    target = actuals["validation"].hour_starts_utc
    poor = np.zeros(N_MEMBERS, bool)
    poor[: max(1, N_MEMBERS // 10)] = True
    rules = SharingRules(
        lower=np.full(N_MEMBERS, 0.005),
        upper=np.full(N_MEMBERS, max(0.08, 2.0 / N_MEMBERS)),  # the 8 % cap of 50 members; looser when few
        entitlement=history.investment_eur / history.investment_eur.sum(),
        reserve=0.08,
        reserve_members=poor,
    )
    array = PvArray(
        1.5 * N_MEMBERS, MADRID_ROOF.latitude_deg, MADRID_ROOF.longitude_deg, MADRID_ROOF.tilt_deg, 180.0
    )
    clear_hist = clear_sky_energy_kwh(array, history.hour_starts_utc)
    clear_target = clear_sky_energy_kwh(array, target)
    expected_g = clear_sky_index(history.generation_kwh, clear_hist) * clear_target
    expected_c = expected_from_profile(
        hour_of_week_profile(history.hour_starts_utc, history.consumption_kwh, TZ), target, TZ
    )
    print(
        f"community: {N_MEMBERS} members, {target.size} hours; history 2026 (weather seed {HISTORY_WEATHER}) "
        f"generation {history.generation_kwh.sum() / 1000:.1f} MWh, consumption "
        f"{history.consumption_kwh.sum() / 1000:.1f} MWh"
    )
    print(
        f"rules: min 0.5 %, cap {100 * rules.upper[0]:g} %, 8 % reserved for {int(poor.sum())} energy-poverty "
        "households; fixed shares by investment"
    )

    t0 = time.perf_counter()
    scenarios = scenarios_from_history(
        history.hour_starts_utc,
        history.consumption_kwh,
        history.generation_kwh,
        target,
        TZ,
        history_clear_sky_kwh=clear_hist,
        target_clear_sky_kwh=clear_target,
    )
    scen_s = time.perf_counter() - t0
    figures: dict = {"members": N_MEMBERS, "hours": int(target.size), "quick": QUICK,
                     "scenarios_build_s": round(scen_s, 3)}
    t0 = time.perf_counter()
    stochastic = stochastic_shares(scenarios, rules, reference_kwh=expected_c)
    stoch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean_opt = optimal_shares(expected_c, expected_g, rules)
    mean_s = time.perf_counter() - t0
    figures |= {"optimal_stochastic_solve_s": round(stoch_s, 3), "optimal_mean_solve_s": round(mean_s, 3),
                "scenarios_per_hour": int(scenarios.n_scenarios), "methods": {}}
    print(f"scenarios: {scenarios.n_scenarios} past hours per target hour, built in {scen_s:.1f} s")
    print(
        f"optimal (stochastic, exact per-hour greedy): {stoch_s:.1f} s for a year x {N_MEMBERS} members x "
        f"{scenarios.n_scenarios} scenarios ({stochastic.n_variables:,} segment variables)"
    )
    if "--highs" in sys.argv:  # the same programme through HiGHS, week blocks (slow: ~0.25 s a day)
        t0 = time.perf_counter()
        check = stochastic_shares(scenarios, rules, reference_kwh=expected_c, solver="highs")
        print(
            f"optimal through HiGHS: {time.perf_counter() - t0:.1f} s, optimum "
            f"{check.self_consumed_kwh:,.1f} vs greedy {stochastic.self_consumed_kwh:,.1f} kWh"
        )
    print(
        f"optimal-mean (deterministic two-stage HiGHS LP): {mean_s:.1f} s ({mean_opt.n_variables:,} variables)"
    )
    t0 = time.perf_counter()
    micro = round_coefficients(stochastic.beta, rules.lower, rules.upper, rules.reserve, rules.poor)
    print(
        f"rounding to six decimals with exact hourly sums: {time.perf_counter() - t0:.2f} s; "
        f"sums exact: {bool((micro.sum(axis=0) == 1_000_000).all())}"
    )

    betas = {
        "fixed (investment)": (fixed_shares(target.size, rules), rules),
        "proportional": (proportional_shares(expected_c, rules), rules),
        "optimal-mean": (mean_opt.beta, rules),
        "optimal (stochastic)": (stochastic.beta, rules),
    }
    if "--fairness" in sys.argv:
        fair = SharingRules(
            rules.lower, rules.upper, rules.entitlement, rules.reserve, rules.reserve_members, 0.25
        )
        t0 = time.perf_counter()
        b = stochastic_shares(
            scenarios, fair, reference_kwh=expected_c, fairness_generation_kwh=expected_g
        ).beta
        print(f"optimal (stochastic) with fairness +/-25 %, one HiGHS LP: {time.perf_counter() - t0:.1f} s")
        betas["optimal + fairness 25 %"] = (b, fair)

    print()
    header = f"{'method':24s} {'mean profile':>12s} {'past hours':>10s}"
    for name in EVALUATION:
        header += f" | {name + ' %':>13s} {'surplus kWh':>11s}"
    print("self-consumption in sample (on the history's expectation) and out of sample (2027 actuals)")
    print(header + f" {'violations':>10s}")
    for name, (beta, r) in betas.items():
        inside = evaluate(name, beta, expected_c, expected_g, r)
        row = (
            f"{name:24s} {100 * inside.self_consumption_ratio:11.1f}% "
            f"{100 * scenario_self_consumption(beta, scenarios):9.1f}%"
        )
        method: dict = {"in_sample_self_consumption": round(inside.self_consumption_ratio, 5), "out_of_sample": {}}
        for year, actual in actuals.items():
            out = evaluate(name, beta, actual.consumption_kwh, actual.generation_kwh, r)
            row += f" | {100 * out.self_consumption_ratio:12.2f}% {out.surplus_kwh:11,.0f}"
            method["out_of_sample"][year] = {"self_consumption": round(out.self_consumption_ratio, 5),
                                             "surplus_kwh": round(float(out.surplus_kwh), 1)}
        violations = len(r.violations(beta, expected_g))
        method["violations"] = violations
        figures["methods"][name] = method
        print(row + f" {violations:10d}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
