"""Offline: the 512-byte buffer under real MicroPython, on the emulator's clock (hours pass in milliseconds)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness

# ADI's example board (docs/ade9000.md §3): W/code = 1 / (TF_I·TF_V·20,694,066·2) = 4.73755 mW; one xHR_HI LSB is 2**13
# codes at 8 kSPS.
W_PER_CODE = 1 / (0.00408 * 0.00125 * 20_694_066 * 2)
KWH_PER_LSB = W_PER_CODE * 8192 / (8000 * 3600 * 1000)  # 1.34757e-9 kWh = 1.34757 µWh


@pytest.fixture
def meter() -> Iterator[MeterHarness]:
    """L1 imports 2300 W, L2 imports 575 W (60° lagging), L3 exports 1150 W (PV)."""
    harness = MeterHarness(MeterConfig(device_id="meter-offline", period_s=1.0), start_utc_s=1_780_000_000.0)
    harness.model.set_phase(0, PhaseInput(230.0, 10.0, 0.0))
    harness.model.set_phase(1, PhaseInput(230.0, 5.0, 60.0))
    harness.model.set_phase(2, PhaseInput(230.0, 5.0, 180.0))
    harness.boot()
    harness.running_since_s = harness.model.simulated_time_s  # type: ignore[attr-defined]
    yield harness
    harness.close()


def records(meter: MeterHarness) -> list[dict]:
    """Every published measurement object, arrays flattened, in publish order."""
    out: list[dict] = []
    for message in meter.published:
        out.extend(message.payload if isinstance(message.payload, list) else [message.payload])
    return out


def when(doc: dict) -> datetime:
    return datetime.strptime(doc["TimeInstant"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def true_kwh(meter: MeterHarness, phase: int) -> float:
    """Energy the model's DSP accumulated on a phase since power-on, in kWh (signed: + import, - export)."""
    return meter.model.total_energy[phase][0] / 8192 * KWH_PER_LSB


def outage(meter: MeterHarness, seconds: float) -> int:
    """WiFi down for `seconds` of emulated time, back up, one more period to replay; returns the offline cycles."""
    meter.cycle(1.0)
    meter.wifi_connected = False
    cycles = meter.run_for(seconds)
    meter.wifi_connected = True
    meter.cycle(meter.period_s())
    return cycles


def check_replay(meter: MeterHarness, offline_s: float) -> list[dict]:
    docs = records(meter)
    stamps = [when(d) for d in docs]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # monotonic, nothing published twice
    # Original times: each record's time is the emulated UTC at which it was read (within the 1 ms rounding).
    assert stamps[-1].timestamp() == pytest.approx(meter.utc_s(), abs=0.002)
    last = docs[-1]
    for phase, key in enumerate(("L1", "L2", "L3")):
        truth = true_kwh(meter, phase)
        imported, exported = last["eai"][key], last["eae"][key]
        # To the register resolution: at most the sub-LSB remainder still inside the chip (+ JSON rounding).
        assert imported - exported == pytest.approx(truth, abs=1.01 * KWH_PER_LSB + 1e-9), key
    # Hand-computed physics over the whole run (the boot cycle, the outage and the reconnect period).
    elapsed_h = (meter.model.simulated_time_s - meter.running_since_s) / 3600  # type: ignore[attr-defined]
    # The chip's power register holds whole codes: up to half a code (2.4 mW) off the true power.
    tolerance = 0.5 * W_PER_CODE / 1000 * elapsed_h + 2 * KWH_PER_LSB
    assert last["eai"]["L1"] == pytest.approx(2.3 * elapsed_h, abs=tolerance)  # 230 V · 10 A
    assert last["eai"]["L2"] == pytest.approx(0.575 * elapsed_h, abs=tolerance)  # 230 V · 5 A · cos 60°
    assert last["eae"]["L3"] == pytest.approx(1.15 * elapsed_h, abs=tolerance)  # 230 V · 5 A exported
    assert last["eai"]["L3"] == 0.0
    assert meter.eval("meter.buffer.count") == 0
    assert meter.period_s() == 1.0  # back to the normal period
    offline = [d for d in docs if "v" not in d]
    span_s = max(when(d) for d in offline).timestamp() - min(when(d) for d in offline).timestamp()
    assert offline and span_s <= offline_s + 300  # the outage and the (stretched) reconnect period
    for doc in offline:  # replayed records: mean power of the interval they stand for, exact after merges
        assert doc["p"]["L1"] == pytest.approx(2300.0, abs=0.05)
        assert doc["p"]["L2"] == pytest.approx(575.0, abs=0.05)
        assert doc["p"]["L3"] == pytest.approx(-1150.0, abs=0.05)
    return offline


def test_ten_second_outage_replays_every_reading(meter: MeterHarness) -> None:
    cycles = outage(meter, 10.0)
    assert cycles == 10 and meter.eval("meter.buffer.merges") == 0
    offline = check_replay(meter, 10.0)
    assert len(offline) == 11  # 10 offline periods and the reconnect period, one record each
    assert meter.eval("meter.replayed") == 11
    assert max(len(m.payload) for m in meter.published if isinstance(m.payload, list)) == 4  # batches of 4


def test_ten_minute_outage_merges_and_stretches_the_period(meter: MeterHarness) -> None:
    cycles = outage(meter, 600.0)
    assert meter.eval("meter.buffer.merges") >= 5
    assert cycles < 120  # the period stretched: far fewer than 600 samples
    offline = check_replay(meter, 600.0)
    assert len(offline) <= 13 + 1  # never more than the 13 records the 512-byte buffer holds (+ reconnect)


def test_day_long_outage_keeps_energy_exact(meter: MeterHarness) -> None:
    cycles = outage(meter, 86400.0)
    # Stretching stops at the longest period that cannot wrap the chip's energy register at the rated
    # 63 A (+20 %): 2**31 LSB · 8192 / (230·63·1.2 W / 4.737552 mW) / 8000 Hz, halved = 299.574 s.
    assert meter.eval("meter.max_period_ms") == 299_574
    assert cycles < 400
    offline = check_replay(meter, 86400.0)
    assert len(offline) <= 14
    assert meter.reboots >= 0


def test_soft_reboot_during_an_outage_keeps_the_buffer_and_every_count(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    meter.wifi_connected = False
    meter.run_for(30.0)
    held = meter.eval("meter.buffer.count")
    meter.reboot()  # watchdog or soft reset: RTC memory survives, the ADE9000 keeps running
    assert meter.eval("meter.restored") is True and meter.eval("meter.warm_start") is True
    assert meter.eval("meter.buffer.count") == held
    meter.run_for(30.0)
    meter.wifi_connected = True
    meter.cycle(meter.period_s())
    check_replay(meter, 60.0)


def test_power_cut_continues_from_the_flash_copy_and_announces_it(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    saved = meter.eval("meter.store.counters[0]")  # the power-on save (the next is FLASH_SAVE_S away)
    meter.cycle(1.0)
    published = records(meter)[-1]["eai"]["L1"]
    meter.power_cycle()  # RTC memory and the chip's accumulators are gone; the flash is not
    assert meter.eval("[meter.restored, meter.flash_restored, meter.announcing]") == [False, True, True]
    meter.cycle(1.0)
    baseline, first = records(meter)[-2:]
    # First the counters the meter restarted from (below what the twin saw: the flash copy is older), then the
    # readings continuing from them; twin_service/agent/continuity.py bridges the step back.
    assert "p" not in baseline and baseline["eai"]["L1"] == pytest.approx(saved * KWH_PER_LSB, abs=1e-9)
    assert baseline["eai"]["L1"] < published
    assert first["eai"]["L1"] == pytest.approx(baseline["eai"]["L1"] + 2300 / 3.6e6, abs=2 * KWH_PER_LSB)
    assert meter.eval("meter.announcing") is False


def test_broker_down_with_wifi_up_is_an_outage_too(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    meter.broker_reachable = False
    meter.run_for(20.0)
    assert meter.eval("meter.buffer.count") > 0
    meter.broker_reachable = True
    meter.run_for(120.0)  # reconnect after the backoff (1-8 s plus jitter so far), replay, then live again
    assert meter.eval("meter.buffer.count") == 0
    docs = records(meter)
    stamps = [when(d) for d in docs]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert docs[-1]["eai"]["L1"] == pytest.approx(true_kwh(meter, 0), abs=1.01 * KWH_PER_LSB + 1e-9)


def test_record_layout_fits_the_512_byte_budget(meter: MeterHarness) -> None:
    size, capacity, buffer = meter.eval(
        "[__import__('struct').calcsize(__import__('offline')._RECORD), __import__('offline').CAPACITY,"
        " len(meter.buffer.buf)]"
    )
    assert (size, capacity, buffer) == (38, 13, 512)
    assert size * capacity <= buffer < size * (capacity + 1)
