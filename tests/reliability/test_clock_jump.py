"""A clock jump on the meter, under real MicroPython: no reading is ever sent with a time that is not true.

The firmware (firmware/ade9000_esp32/clock.py) checks the RTC against the monotonic ticks at every reading and
doubts an NTP step of more than a minute until a second answer agrees; meanwhile readings go with "clk": false and
no TimeInstant, which the agent stamps on arrival.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness

START_UTC_S = 1_780_000_000.0
YEAR_S = 365 * 86400


@pytest.fixture
def meter() -> Iterator[MeterHarness]:
    harness = MeterHarness(MeterConfig(device_id="meter-clock", period_s=1.0), start_utc_s=START_UTC_S)
    for phase in range(3):
        harness.model.set_phase(phase, PhaseInput(230.0, 5.0, 0.0))
    harness.boot()
    yield harness
    harness.close()


def cycle(meter: MeterHarness, seconds: float = 1.0) -> list[tuple[float, dict]]:
    """One period; (true UTC of the reading, published object) for what it sent."""
    before = len(meter.published)
    meter.cycle(seconds)
    now = meter.utc_s()
    out = []
    for message in list(meter.published)[before:]:
        for doc in message.payload if isinstance(message.payload, list) else [message.payload]:
            out.append((now, doc))
    return out


def stamped(sent: list[tuple[float, dict]]) -> list[tuple[float, float]]:
    """(true UTC, TimeInstant as unix seconds) of every stamped reading."""
    return [(true, datetime.strptime(doc["TimeInstant"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp())
            for true, doc in sent if "TimeInstant" in doc]


def resync_due(meter: MeterHarness) -> None:
    """Make the 6-hourly NTP resync due now (instead of running 6 h of periods)."""
    meter.run("import time\nmeter.clock._synced_ms = time.ticks_add(time.ticks_ms(), -(6 * 3600 * 1000 + 1))\n"
              "meter.clock._last_try_ms = None")


def assert_every_time_true(sent: list[tuple[float, dict]]) -> None:
    for true, instant in stamped(sent):
        assert instant == pytest.approx(true, abs=0.002)
    instants = [instant for _, instant in stamped(sent)]
    assert instants == sorted(instants) and len(set(instants)) == len(instants)


@pytest.mark.parametrize("jump_s", [3600.0, -3600.0, 5.0])
def test_an_rtc_jump_is_caught_at_the_next_reading(meter: MeterHarness, jump_s: float) -> None:
    sent = [doc for _ in range(3) for doc in cycle(meter)]
    assert all(doc["clk"] for _, doc in sent)
    meter.jump_rtc(jump_s)  # something set the RTC (not the firmware's NTP sync)
    after_jump = cycle(meter)
    assert [doc["clk"] for _, doc in after_jump] == [False] and "TimeInstant" not in after_jump[0][1]
    assert meter.eval("meter.clock.jumps") == 1
    syncs = meter.ntp_syncs
    resynced = [doc for _ in range(3) for doc in cycle(meter)]
    assert meter.ntp_syncs == syncs + 1  # NTP asked again at once, not 6 h later
    assert all(doc["clk"] for _, doc in resynced)
    assert_every_time_true(sent + after_jump + resynced)


def test_a_one_off_wrong_ntp_answer_is_not_believed(meter: MeterHarness) -> None:
    sent = [doc for _ in range(2) for doc in cycle(meter)]
    meter.ntp_error_s = YEAR_S  # the next answer is a year ahead (a bad server)
    resync_due(meter)
    doubted = cycle(meter)
    assert [doc["clk"] for _, doc in doubted] == [False]  # the year-ahead time is not sent
    assert meter.eval("meter.clock.jumps") == 1
    meter.ntp_error_s = 0.0  # the next answer, a minute later, is right again
    waiting = [doc for _ in range(2) for doc in cycle(meter, 30.0)]
    waiting += cycle(meter)
    assert waiting[-1][1]["clk"] is True  # back on the time it had before the wrong answer
    assert_every_time_true(sent + doubted + waiting)


def test_a_step_two_answers_agree_on_is_believed_and_offline_readings_follow_it(meter: MeterHarness) -> None:
    cycle(meter)
    meter.ntp_error_s = YEAR_S  # the server is consistently a year ahead: two answers agree, the meter believes it
    resync_due(meter)
    assert [doc["clk"] for _, doc in cycle(meter)] == [False]
    meter.wifi_connected = False  # readings taken while the step is in doubt go to the offline buffer, unsynced
    taken = []
    for _ in range(2):
        assert cycle(meter) == []
        taken.append(meter.utc_s())
    assert meter.eval("meter.buffer.unsynced()") is True
    meter.wifi_connected = True
    sent = []
    for seconds in (30.0, 30.0, 1.0):  # the second answer, a minute on, agrees: the step is believed
        sent += cycle(meter, seconds)
        taken.append(meter.utc_s())
    assert meter.eval("meter.buffer.count") == 0
    assert meter.eval("meter.clock.synced") is True and meter.eval("meter.clock.jumps") == 1
    instants = [instant for _, instant in stamped(sent)]
    # the two buffered readings, replayed with their own times moved onto the confirmed base, then the live ones
    # (a year ahead: the agent refuses those, tests/reliability/test_future_time.py)
    assert len(instants) >= 3 and instants == sorted(instants)
    for instant in instants:
        assert min(abs(instant - YEAR_S - true) for true in taken) < 0.002
    assert instants[0] == pytest.approx(taken[0] + YEAR_S, abs=0.002)


def test_a_small_step_back_is_slewed_off_and_times_never_go_back(meter: MeterHarness) -> None:
    before = [doc for _ in range(2) for doc in cycle(meter)]
    meter.ntp_error_s = 20.0  # one resync sets the clock 20 s ahead (within the 60 s believed at once)
    resync_due(meter)
    ahead = [doc for _ in range(3) for doc in cycle(meter)]
    assert all(instant - true == pytest.approx(20.0, abs=0.002) for true, instant in stamped(ahead))
    meter.ntp_error_s = 0.0  # the next resync steps it 20 s back to the true time
    resync_due(meter)
    slewing = cycle(meter)
    (true, instant), = stamped(slewing)
    assert 19.9 < instant - true < 20.001  # not sent 20 s before the readings already out
    assert meter.eval("meter.clock.slews") == 1
    for _ in range(44):  # 20 s lead at 1 ms per 10 ms: true again after 200 s
        slewing += cycle(meter, 5.0)
    after = [doc for _ in range(3) for doc in cycle(meter)]
    assert_every_time_true(after)
    instants = [instant for _, instant in stamped(before + ahead + slewing + after)]
    gaps = [b - a for a, b in itertools.pairwise(instants)]
    assert min(gaps) >= 0.899  # strictly rising, each period at least 0.9 of its length (1 s readings)
    assert all(doc["clk"] for _, doc in before + ahead + slewing + after)
