"""The live controller's state and cycle (fleet/controller.py), on entities shaped as the twin holds them."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from fleet.controller import FleetState, clamp_w

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def battery(home: str, soc: object, *, at: float = NOW, capacity_wh: float | None = 10_000,
            max_w: float | None = 5_000, **extra: object) -> dict:
    entity: dict = {"id": f"urn:ngsi-ld:BatteryStatus:{home}", "type": "BatteryStatus",
                    "statusPercent": {"type": "Property", "value": soc, "observedAt": iso(at)}}
    if capacity_wh is not None:
        entity["energyCapacity"] = {"type": "Property", "value": capacity_wh, "unitCode": "WHR"}
    if max_w is not None:
        entity["maxChargePower"] = {"type": "Property", "value": max_w, "unitCode": "WTT"}
    for name, value in extra.items():
        entity[name] = {"type": "Property", "value": value}
    return entity


def test_below_the_mean_charges_above_discharges_in_watts():
    state = FleetState(period_s=900, deadband=0.0)
    for entity in (battery("a", 0.2), battery("b", 0.8)):
        assert state.take(entity) is None
    cycle = state.cycle(NOW)
    by_id = {c.entity_id.rsplit(":", 1)[1]: c.power_w for c in cycle.commands}
    # gain 0.5/h x 10 kWh x 0.3 = 1.5 kW each way
    assert by_id == {"a": 1500, "b": -1500}
    assert cycle.mean_soc == pytest.approx(0.5) and cycle.live == 2 and not cycle.excluded


def test_unknown_or_invalid_limits_get_no_command_and_a_reason():
    state = FleetState(period_s=60)
    state.take(battery("ok", 0.4))
    state.take(battery("nocap", 0.9, capacity_wh=None))
    state.take(battery("nomax", 0.1, max_w=None))
    state.take(battery("zero", 0.1, capacity_wh=0))
    cycle = state.cycle(NOW)
    assert [c.entity_id for c in cycle.commands] == ["urn:ngsi-ld:BatteryStatus:ok"]
    assert "no energyCapacity" in cycle.excluded["urn:ngsi-ld:BatteryStatus:nocap"]
    assert "no maxChargePower" in cycle.excluded["urn:ngsi-ld:BatteryStatus:nomax"]
    assert "capacity_kwh must be > 0" in cycle.excluded["urn:ngsi-ld:BatteryStatus:zero"]


def test_a_silent_battery_leaves_the_mean():
    state = FleetState(period_s=60, stale_periods=3, deadband=0.0)
    state.take(battery("a", 0.2))
    state.take(battery("b", 0.4))
    state.take(battery("silent", 1.0, at=NOW - 181))
    cycle = state.cycle(NOW)
    assert cycle.mean_soc == pytest.approx(0.3)  # the silent full battery does not pull the mean up
    assert "silent for 181 s" in cycle.excluded["urn:ngsi-ld:BatteryStatus:silent"]
    assert {c.entity_id for c in cycle.commands} == {"urn:ngsi-ld:BatteryStatus:a", "urn:ngsi-ld:BatteryStatus:b"}
    state.take(battery("silent", 1.0, at=NOW))  # it reports again: back in
    assert state.cycle(NOW).live == 3


def test_bad_readings_are_refused_with_the_reason_and_a_late_replay_never_rewinds():
    state = FleetState(period_s=60)
    assert "not a fraction" in (state.take(battery("pct", 55)) or "")  # percent, not the model's fraction
    assert "not a fraction" in (state.take(battery("text", "full")) or "")
    no_time = battery("notime", 0.5)
    del no_time["statusPercent"]["observedAt"]
    assert "no observedAt" in (state.take(no_time) or "")
    assert "not BatteryStatus" in (state.take({"id": "urn:x", "type": "Thing"}) or "")
    assert state.refused_entities == 4
    cycle = state.cycle(NOW)
    assert not cycle.commands and set(cycle.excluded) == {f"urn:ngsi-ld:BatteryStatus:{h}"
                                                          for h in ("pct", "text", "notime")}
    state.take(battery("r", 0.6, at=NOW))
    state.take(battery("r", 0.1, at=NOW - 30))  # an offline replay arriving after the newer reading
    assert state.batteries["urn:ngsi-ld:BatteryStatus:r"].soc == 0.6


def test_a_faulted_device_is_left_out():
    state = FleetState(period_s=60)
    state.take(battery("a", 0.5, deviceState="fault:timeout"))
    state.take(battery("b", 0.5, deviceState="ok"))
    assert state.cycle(NOW).excluded == {"urn:ngsi-ld:BatteryStatus:a": "deviceState fault:timeout"}


def test_pv_is_kept_per_home():
    state = FleetState(period_s=60)
    state.take({"id": "urn:ngsi-ld:PhotovoltaicMeasurement:a", "type": "PhotovoltaicMeasurement",
                "activePower": {"type": "Property", "value": 2.5, "unitCode": "KWT"}})
    assert state.pv_kw == {"a": 2.5}


def test_setpoints_never_leave_the_reported_limits():
    rng = random.Random(7)
    for _ in range(200):
        state = FleetState(period_s=rng.choice([5, 60, 900]), reserve=rng.choice([0.0, 0.1]),
                           fleet_power_w=rng.uniform(-20_000, 20_000))
        limits = {}
        for i in range(rng.randint(1, 8)):
            cap, max_w = rng.uniform(1_000, 20_000), rng.uniform(100, 8_000)
            soc = rng.choice([0.0, 1.0, 0.05, rng.random()])
            state.take(battery(f"h{i}", soc, capacity_wh=cap, max_w=max_w))
            limits[f"urn:ngsi-ld:BatteryStatus:h{i}"] = (soc, cap, max_w)
        for command in state.cycle(NOW).commands:
            soc, cap, max_w = limits[command.entity_id]
            assert -max_w <= command.power_w <= max_w
            period_h = state.period_s / 3600
            if command.power_w > 0:  # never past full within the period
                assert command.power_w * 0.95 * period_h <= (1.0 - soc) * cap + 1e-6
            if command.power_w < 0:  # never below the reserve
                assert -command.power_w * period_h / 0.95 <= max(0.0, soc - state.reserve) * cap + 1e-6


def test_clamp_rounds_toward_zero_inside_the_limits():
    assert clamp_w(1.9999, -2.0, 1.9999) == 1999
    assert clamp_w(-3.0, -2.0005, 2.0) == -2000
    assert clamp_w(0.0, 0.0, 0.0) == 0
