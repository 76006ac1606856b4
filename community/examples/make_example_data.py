"""Regenerate the example CSVs (October 2026) from the simulator: `python -m community.examples.make_example_data`.

The files are committed; this script documents where their numbers come from. Ana's file has a five-hour gap
(empty cells) so the report shows how gaps are listed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulation.households import simulate

HERE = Path(__file__).parent
TZ = "Europe/Madrid"
MEMBERS = ("ana", "bernat", "carmen", "dolores")


def main() -> None:
    sim = simulate(len(MEMBERS), 2026, seed=11, kwp_per_member=1.5)
    local = pd.DatetimeIndex(sim.hour_starts_utc).tz_localize("UTC").tz_convert(TZ)
    october = np.asarray(local.month == 10)
    stamps = [t.isoformat() for t in local[october]]
    rng = np.random.default_rng(5)

    def write(name: str, header: str, columns: list[np.ndarray]) -> None:
        lines = [header]
        for k, stamp in enumerate(stamps):
            cells = ["" if np.isnan(col[k]) else f"{col[k]:.3f}" for col in columns]
            lines.append(",".join([stamp, *cells]))
        (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    write("roof.csv", "hour_start,generation_kwh", [sim.generation_kwh[october]])
    for i, member in enumerate(MEMBERS):
        load = sim.consumption_kwh[i, october].copy()
        if member == "ana":
            load[200:205] = np.nan  # a meter outage: reported, never filled
            write(f"{member}.csv", "hour_start,import_kwh", [load])
        elif member == "dolores":
            # Dolores has her own 2 kWp on the roof: P, and her meter's L (import) and T (export).
            own = (
                sim.generation_kwh[october]
                / sim.generation_kwh.max()
                * 1.4
                * rng.uniform(0.95, 1.0, load.size)
            )
            direct = np.minimum(load, own)
            write(
                f"{member}.csv",
                "hour_start,import_kwh,export_kwh,generation_kwh",
                [load - direct, own - direct, own],
            )
        else:
            write(f"{member}.csv", "hour_start,import_kwh", [load])
    # Hourly PVPC-like prices: cheaper at midday and at night.
    hod = np.asarray(local[october].hour)
    price = 0.11 + 0.07 * np.isin(hod, [8, 9, 10, 18, 19, 20, 21]) - 0.03 * np.isin(hod, [13, 14, 15, 16])
    write("prices-2026-10.csv", "hour_start,price_eur_per_kwh", [price])


if __name__ == "__main__":
    main()
