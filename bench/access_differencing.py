"""How much of one home's hourly consumption an attacker recovers by differencing public answers, with and
without the public view's defence (access/_disclosure.py `PublicRelease`).

Simulated communities (simulation/households.py: archetypes, seasons, lognormal noise) of `--members` homes
(10 and 40 by default), one year of hours. Each trial picks a home F and an hour t at which F joins, and plays four attacks on the public
hourly sums:

- backfill: the 24 hours before t are answered, then F's history for them is imported (a new member's
  distributor file, a meter's buffered readings) and they are answered again; estimate F(h) = after - before;
- adjacent: F's first hour t against the hour before: estimate F(t) = A(t) - A(t-1);
- batch: F joins with k-1 others (the defence's release): estimate F(h) = (after - before) / k;
- departure: F leaves at t (the whole community of `--members` before, one fewer after): estimate F(t-1) =
  A(t-1) - A(t); with the defence (the departure rule) the hour t is summed without F and four companions;
- adjacent-model, departure-model: the same, less the others' change predicted from the same two hours the day
  before (a better attacker than the plain difference).

The figure for each is the attacker's mean absolute error over F's true kWh, divided by that of a guess made
without any differencing, the other homes' mean at that hour (about what one public answer / homes gives): 0 =
F's hours recovered exactly, >= 1 = nothing learned beyond the average home. Both are computed in the same run on the same draws; no timing involved.

    python bench/access_differencing.py            # 200 trials
    python bench/access_differencing.py --quick    # 20 trials (the smoke run)
Writes bench/results/access_differencing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from access._disclosure import PublicRelease
from simulation.households import simulate

RESULTS = Path(__file__).resolve().parent / "results" / "access_differencing.json"
K = 5


def _mae(estimates: list[float], truth: list[float]) -> float:
    return float(np.mean(np.abs(np.asarray(estimates) - np.asarray(truth))))


def trial(load: np.ndarray, joiner: int, t: int, others: list[int], batch_mates: list[int]) -> dict[str, tuple]:
    """One join; returns per attack (estimates, truth, prior guesses), without and with the defence."""
    homes = [m for m in others if m not in batch_mates]
    before_hours = list(range(t - 24, t))
    out: dict[str, tuple] = {}

    def mean_home(hours: list[int]) -> list[float]:  # the prior: the other homes' mean at that hour
        return [float(np.mean(load[homes, h])) for h in hours]

    def contributions(h: int, members: list[int]) -> dict[str, float]:
        return {f"m{m}": float(load[m, h]) for m in members}

    for defended in (False, True):
        guard = PublicRelease(None, batch=K) if defended else None

        def answer(h: int, members: list[int], series: str = "import", guard: PublicRelease | None = guard) -> float:
            c = contributions(h, members)
            if guard is None:
                return sum(c.values())
            value = guard.release_sum(series, str(h), c)
            assert value is not None
            return value

        tag = "defended" if defended else "plain"
        # backfill: the same 24 hours before and after F's history arrives
        first = [answer(h, homes) for h in before_hours]
        again = [answer(h, [*homes, joiner]) for h in before_hours]
        truth = [float(load[joiner, h]) for h in before_hours]
        out[f"backfill/{tag}"] = ([b - a for a, b in zip(first, again, strict=True)], truth, mean_home(before_hours))
        # adjacent: F's first hour against the hour before (continuing the same series)
        y_prev, y_now = answer(t - 25, homes, "adj"), answer(t - 24, homes, "adj")  # the day before
        prev, now = answer(t - 1, homes, "adj"), answer(t, [*homes, joiner], "adj")
        out[f"adjacent/{tag}"] = ([now - prev], [float(load[joiner, t])], mean_home([t]))
        # a better attacker takes out the others' change with yesterday's change of the same hours
        out[f"adjacent-model/{tag}"] = ([(now - prev) - (y_now - y_prev)], [float(load[joiner, t])], mean_home([t]))
        # batch: F and k-1 others join together: the release the defence allows
        group = [joiner, *batch_mates]
        b_first = [answer(h, homes, "batch") for h in before_hours]
        b_again = [answer(h, [*homes, *group], "batch") for h in before_hours]
        out[f"batch/{tag}"] = ([(b - a) / len(group) for a, b in zip(b_first, b_again, strict=True)], truth,
                               mean_home(before_hours))
        # departure: F leaves the whole community at t: its last hour against the first without it
        dy_prev, dy_now = answer(t - 25, [*others, joiner], "dep"), answer(t - 24, [*others, joiner], "dep")
        d_prev, d_now = answer(t - 1, [*others, joiner], "dep"), answer(t, others, "dep")
        out[f"departure/{tag}"] = ([d_prev - d_now], [float(load[joiner, t - 1])], mean_home([t - 1]))
        others_change = (dy_prev - dy_now) * len(others) / (len(others) + 1)
        out[f"departure-model/{tag}"] = ([(d_prev - d_now) - others_change], [float(load[joiner, t - 1])],
                                         mean_home([t - 1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", default="10,40", help="community sizes, comma-separated (each >= 10)")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--quick", action="store_true", help="20 trials")
    args = parser.parse_args()
    trials = 20 if args.quick else args.trials
    sizes = [int(n) for n in args.members.split(",")]
    if min(sizes) < 2 * K:
        parser.error(f"--members: each size at least {2 * K} (the batch attack needs k joiners and k homes)")
    by_size = {}
    for size in sizes:
        by_size[str(size)] = rows = {}
        load = simulate(size, 2025, seed=args.seed).consumption_kwh
        rng = random.Random(args.seed)
        collected: dict[str, list[list[float]]] = {}
        for _ in range(trials):
            joiner = rng.randrange(size)
            t = rng.randrange(48, load.shape[1] - 1)
            others = [m for m in range(size) if m != joiner]
            mates = rng.sample(others, K - 1)
            for name, (est, truth, prior) in trial(load, joiner, t, others, mates).items():
                slot = collected.setdefault(name, [[], [], []])
                for k, values in enumerate((est, truth, prior)):
                    slot[k].extend(values)
        for name, (est, truth, prior) in sorted(collected.items()):
            mae, base = _mae(est, truth), _mae(prior, truth)
            exact = float(np.mean(np.abs(np.asarray(est) - np.asarray(truth)) < 0.01))
            rows[name] = {"attacker_mae_kwh": round(mae, 4), "mean_home_guess_mae_kwh": round(base, 4),
                          "ratio": round(mae / base, 3) if base else None, "exact_share": round(exact, 3),
                          "estimates": len(est)}
            print(f"{size:3d} homes  {name:24s} attacker MAE {mae:6.3f} kWh  mean-home guess {base:6.3f} kWh  "
                  f"ratio {mae / base:5.2f}  exact (<10 Wh) {exact:6.1%}  n={len(est)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "access_differencing", "k": K, "trials": trials,
                                   "seed": args.seed, "python": platform.python_version(),
                                   "load_average": os.getloadavg(), "by_community_size": by_size}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
