"""Energy across power cuts: the real firmware under MicroPython, its flash store, the agent's continuity rule.

Power is cut at random host calls (an SPI transfer, a publish, a flash write or erase torn half-way, a clock
read...), the meter powers up again with its RTC memory and the ADE9000's accumulators gone, and the twin's
cumulative energy (the agent's mapping + continuity stages applied to every message the meter delivered) is held
against the ADE9000 model's own energy total, which no reset clears.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness, PowerCut
from twin_service.agent.continuity import CounterContinuity
from twin_service.agent.mapping import map_payload
from twin_service.agent.registry import ResolvedDevice

CODES_PER_LSB = 8192  # one xHR_HI LSB is 2**13 code·samples of the 45-bit accumulator
SAVE_S = 3  # flash save interval for the tests (default 900 s): many flash writes to cut into


def _device() -> ResolvedDevice:
    return ResolvedDevice("tenant", "/", "meter-pc", "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-pc",
                          "ThreePhaseAcMeasurement", True, (), ())


class Twin:
    """What the agent makes of the meter's messages: mapped fragments through the continuity rule."""

    def __init__(self) -> None:
        self.device = _device()
        self.continuity = CounterContinuity(None)
        self.series: list[tuple[str, list[float], list[float]]] = []  # (observedAt, twin L1..L3, meter L1..L3)
        self.resets = 0

    def receive(self, payload: object) -> None:
        mapped = map_payload(self.device, payload, datetime.now(UTC))
        raw = [f["activeEnergyImport"]["value"].copy() for f in mapped.fragments if "activeEnergyImport" in f]
        self.resets += len(self.continuity.apply("tenant", mapped.fragments))
        done = [f for f in mapped.fragments if "activeEnergyImport" in f]
        for fragment, meter in zip(done, raw, strict=True):
            attribute = fragment["activeEnergyImport"]
            self.series.append((attribute["observedAt"], [attribute["value"][k] for k in ("L1", "L2", "L3")],
                                [meter[k] for k in ("L1", "L2", "L3")]))


@pytest.fixture
def rig() -> Iterator[tuple[MeterHarness, Twin, dict[int, list[int]]]]:
    twin = Twin()
    harness = MeterHarness(MeterConfig(device_id="meter-pc"), on_publish=lambda m: twin.receive(m.payload))
    harness.extra_config["FLASH_SAVE_S"] = SAVE_S
    for k, amps in enumerate((10.0, 4.0, 7.0)):
        harness.model.set_phase(k, PhaseInput(230.0, amps, 0.0))
    truth: dict[int, list[int]] = {}  # sample time (ms) -> model's active energy per phase (code·samples)
    harness.boot()
    yield harness, twin, truth
    harness.close()


def _cycle(h: MeterHarness, truth: dict[int, list[int]]) -> None:
    h.advance(1.0)
    truth[round(h.utc_s() * 1000)] = [h.model.total_energy[p][0] for p in range(3)]
    h.fire_timer()
    h.step()


def _ms(observed_at: str) -> int:
    return round(datetime.fromisoformat(observed_at).timestamp() * 1000)


def _lsb(h: MeterHarness) -> float:
    return float(h.eval("meter.scale.kwh_per_energy_lsb"))


def _check(h: MeterHarness, twin: Twin, truth: dict[int, list[int]], cut_times: list[int]) -> None:
    cuts = len(cut_times)
    kwh = _lsb(h)
    series = twin.series
    assert len(series) > 10
    for (_, before, _), (when, after, _) in itertools.pairwise(series):
        assert all(b <= a + 1e-12 for b, a in zip(before, after)), f"twin energy went back at {when}"
    # Between two readings of one power-on segment the twin grows by exactly the model's energy: within the
    # 1 LSB of truncating the chip's accumulator to xHR_HI, plus the wire's 1e-9 kWh rounding of both values.
    compared = 0
    for (w0, v0, _), (w1, v1, _) in itertools.pairwise(series):
        t0, t1 = _ms(w0), _ms(w1)
        if t0 not in truth or t1 not in truth or any(t0 <= cut <= t1 for cut in cut_times):
            continue
        compared += 1
        for p in range(3):
            model_lsb = (truth[t1][p] - truth[t0][p]) / CODES_PER_LSB
            assert (v1[p] - v0[p]) / kwh == pytest.approx(model_lsb, abs=1.0 + 1e-9 / kwh)
    assert compared > len(series) // 2
    # Overall: never more than the model's energy, and short of it only by what each cut destroyed: the chip's
    # sub-LSB remainder and the one period whose reading had not left the meter (no hold-up capacitor: the energy
    # since the last read dies with the chip). Without the flash store the first period after each restart
    # would be lost as well.
    last_when, last_value, _ = series[-1]
    model_total = [truth[_ms(last_when)][p] / CODES_PER_LSB for p in range(3)]
    per_second = [h.model.phases[p].current_a * 230.0 / 3.6e6 / kwh for p in range(3)]
    for p in range(3):
        twin_lsb = last_value[p] / kwh
        assert twin_lsb <= model_total[p] + 1.0
        assert twin_lsb >= model_total[p] - cuts * (2.0 + per_second[p]) - 1.0


def test_flash_store_keeps_the_previous_copy_when_a_write_is_torn(rig) -> None:
    h, _, _ = rig
    seq = h.eval("meter.store.seq")
    h.run("meter.chip.energy[0] += 12345\nmeter._save_flash(0)")
    assert h.eval("meter.store.seq") == seq + 1
    h.cut_power_during("flash_write", fraction=0.4)
    with pytest.raises(PowerCut):
        h.run("meter.chip.energy[0] += 1000\nmeter._save_flash(0)")
    h.power_cycle()
    assert h.flash.torn_operations == 1
    assert h.eval("[meter.store.torn, meter.flash_restored]") == [1, True]
    # The torn slot (+1000) is skipped, the copy before it (+12345) is what the counters continue from.
    restored = h.eval("meter.store.counters[0]")
    assert h.eval("meter.announced[0]") == restored
    assert restored >= 12345


def test_wear_levelling_spreads_saves_over_every_block(rig) -> None:
    h, _, _ = rig
    writes = h.flash.writes
    erases = h.flash.erases
    h.run("for _ in range(60):\n    meter.chip.energy[0] += 1\n    meter._save_flash(0)")
    slots_per_block = h.eval("meter.store.slots_per_block")
    assert slots_per_block == 12
    assert h.flash.writes - writes == 60
    assert h.flash.erases - erases == pytest.approx(60 / slots_per_block, abs=1)
    # Both blocks hold slots, and the newest valid one is found after a power-up.
    assert h.flash.data[:2] == b"EB" and h.flash.data[4096:4098] == b"EB"
    newest = h.eval("meter.store.seq")
    h.power_cycle()
    assert h.eval("meter.store.seq") == newest + 1  # the power-on save follows the newest copy
    assert h.eval("meter.store.torn") == 0


def test_cuts_during_flash_writes_lose_nothing_delivered(rig) -> None:
    h, twin, truth = rig
    for _ in range(3):
        _cycle(h, truth)
    cuts = 0
    cut_times: list[int] = []
    rng = random.Random(18)
    for op in ("flash_write", "flash_erase", "flash_write", "flash_write"):
        h.cut_power_during(op, fraction=rng.random())
        with pytest.raises(PowerCut):
            for _ in range(12 * SAVE_S + 6):  # a save every SAVE_S cycles, an erase every 12 saves
                _cycle(h, truth)
        assert h.power_cut_op == op
        cuts += 1
        cut_times.append(round(h.utc_s() * 1000))
        h.power_cycle()
        for _ in range(2):
            _cycle(h, truth)
    assert cuts == 4
    for _ in range(3):
        _cycle(h, truth)
    assert twin.resets > 0  # the twin did see the counters go back, and bridged them
    kwh = _lsb(h)
    last_when, last_value, _ = twin.series[-1]
    for p in range(3):
        # Every delivered count is in the twin. Each cut costs less than 1 LSB (the chip's sub-LSB remainder
        # dies with it) and each bridged reset carries the wire's 1e-9 kWh rounding (0.74 LSB here).
        model_lsb = truth[_ms(last_when)][p] / CODES_PER_LSB
        assert last_value[p] / kwh == pytest.approx(model_lsb, abs=cuts * (1.0 + 1e-9 / kwh) + 1.0)
    _check(h, twin, truth, cut_times)


def test_random_power_cuts_keep_the_twin_within_what_the_cut_destroyed(rig) -> None:
    h, twin, truth = rig
    rng = random.Random(20261206)
    cuts = 0
    cut_times: list[int] = []
    for _ in range(6):
        h.cut_power_after(rng.randint(1, 400), fraction=rng.random())
        try:
            for _ in range(12):
                _cycle(h, truth)
        except PowerCut:
            cuts += 1
            cut_times.append(round(h.utc_s() * 1000))
            h.power_cycle()
        for _ in range(rng.randint(1, 3)):
            _cycle(h, truth)
    assert cuts >= 4
    for _ in range(3):
        _cycle(h, truth)
    _check(h, twin, truth, cut_times)
