"""Benchmark: the battery-fleet strategies on 20 homes over a year, and the controller cycle for 1,000 batteries.

Run: `.venv/bin/python bench/fleet_batteries.py` (`--quick`: 5 homes x 14 days and 200 batteries, the smoke run).
Figures are printed and written to bench/results/fleet_batteries.json.

Targets (issue "Communicating home batteries"): the mean-SoC rule within 10 % of the LP bound's self-consumption
gain over "no batteries" and ahead of greedy per home; one controller cycle for 1,000 batteries < 100 ms; the
simulation of a year for 20 homes < 60 s. The cycle time is printed beside a 10-battery cycle measured in the
same run, so a loaded machine shows as a ratio rather than as a slower figure.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.battery import BatteryReading, BatterySpec
from fleet.homes import simulated_homes
from fleet.rule import mean_soc_setpoints
from fleet.simulate import simulate_fleet

RESULTS = Path(__file__).resolve().parent / "results" / "fleet_batteries.json"


def _cycle_ms(n: int, repeats: int) -> float:
    rng = np.random.default_rng(n)
    specs = {f"b{i}": BatterySpec(f"b{i}", float(rng.uniform(5, 15)), 5.0, 5.0) for i in range(n)}
    readings = {k: BatteryReading(k, float(rng.uniform(0.05, 1.0)), 0.0) for k in specs}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        mean_soc_setpoints(specs, readings, now_s=10.0, fleet_power_kw=-0.3 * n)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    homes_n, days, batteries_n = (5, 14, 200) if quick else (20, 365, 1000)
    started = time.perf_counter()
    homes = simulated_homes(homes_n, days, seed=0)
    results = simulate_fleet(homes)
    total_s = time.perf_counter() - started
    base = results["none"].self_consumption
    gains = {name: results[name].self_consumption - base for name in ("greedy", "mean_soc", "lp")}
    ratio_to_lp = gains["mean_soc"] / gains["lp"] if gains["lp"] > 0 else float("nan")
    # The LP maximises self-sufficiency (it minimises import; see fleet/lp.py), so compare on that too.
    base_ss = results["none"].self_sufficiency
    ss_ratio = ((results["mean_soc"].self_sufficiency - base_ss) / (results["lp"].self_sufficiency - base_ss)
                if results["lp"].self_sufficiency > base_ss else float("nan"))
    cycle_ms = _cycle_ms(batteries_n, 30)
    small_ms = _cycle_ms(10, 30)

    print(f"{homes_n} homes x {days} days, hourly: simulation of all four strategies {total_s:.1f} s "
          f"(LP {results['lp'].seconds:.1f} s)")
    print(f"{'strategy':10s} {'self-cons.':>10s} {'gain':>8s} {'self-suff.':>10s} {'SoC spread':>10s} "
          f"{'cycles':>7s} {'peak imp kW':>11s}")
    for name, r in results.items():
        gain = r.self_consumption - base
        print(f"{name:10s} {r.self_consumption:10.1%} {gain * 100:+7.1f}p {r.self_sufficiency:10.1%} "
              f"{r.soc_spread:10.1%} {r.cycles:7.0f} {r.peak_import_kw:11.1f}")
    print(f"mean-SoC gain = {ratio_to_lp:.1%} of the LP bound's gain (target >= 90 %); "
          f"ahead of greedy by {(gains['mean_soc'] - gains['greedy']) * 100:+.1f} points")
    print(f"self-sufficiency gain: mean-SoC {ss_ratio:.1%} of the LP bound's (the quantity the LP maximises)")
    print(f"controller cycle: {batteries_n} batteries {cycle_ms:.2f} ms (target < 100 ms for 1,000), "
          f"10 batteries {small_ms:.2f} ms in the same run (ratio {cycle_ms / small_ms:.1f})")
    figures = {
        "quick": quick,
        "homes": homes_n,
        "days": days,
        "simulation_s": total_s,
        "lp_s": results["lp"].seconds,
        "strategies": {name: r.as_dict() for name, r in results.items()},
        "self_consumption_gain": gains,
        "mean_soc_share_of_lp_gain": ratio_to_lp,
        "mean_soc_share_of_lp_self_sufficiency_gain": ss_ratio,
        "controller_cycle_ms": {"batteries": batteries_n, "median_ms": cycle_ms, "ten_batteries_ms": small_ms},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
