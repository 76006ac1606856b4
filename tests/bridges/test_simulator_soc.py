"""The simulated battery's state of charge integrates small powers over short steps (real-time demo, 1 s polls).

The SoC register holds 0.1 % steps; integrating on the register itself swallowed every step smaller than 0.05 %
(5 kW for 1 s on 10 kWh is 0.014 %), so a real-time simulated battery never moved.
"""

from __future__ import annotations

import pytest

from bridges.sunspec.simulator import CHARGE_BIT, HomeConfig, SimulatedHome, scaled, set_scaled


def test_small_steps_add_up() -> None:
    now = [1_000.0]
    home = SimulatedHome(HomeConfig(soc_pct=50.0, battery_wh=10_000, solar_noon_utc_h=0.0), clock=lambda: now[0])
    storage = home.models[124]
    storage.points["StorCtl_Mod"].set_value(CHARGE_BIT)
    set_scaled(storage, "InWRte", 10.0)  # 10 % of 5 kW: 500 W
    for _ in range(3600):  # an hour of 1 s reads
        now[0] += 1.0
        home.refresh()
    assert scaled(home.models[802], "SoC") == pytest.approx(55.0, abs=0.1)


def test_a_written_soc_register_still_wins() -> None:
    """Tests and benches set the register directly; the exact value follows it."""
    now = [1_000.0]
    home = SimulatedHome(HomeConfig(soc_pct=50.0, solar_noon_utc_h=0.0), clock=lambda: now[0])
    set_scaled(home.models[802], "SoC", 30.0)
    now[0] += 1.0
    home.refresh()
    assert scaled(home.models[802], "SoC") == pytest.approx(30.0, abs=0.1)
