"""Interrupt discipline: the sampling timer's handler runs with the heap locked and must not allocate."""

from __future__ import annotations

import pytest

from firmware.emulator.harness import IsrError, MeterHarness


def test_sampler_irq_runs_with_heap_locked_and_schedules_sampling(meter: MeterHarness) -> None:
    samples = meter.eval("meter.chip.samples")
    meter.fire_timer()  # raises IsrError if the handler allocated
    assert meter.eval("meter.chip.samples") == samples + 1
    assert meter.eval("meter.sampler.ready") is True
    assert meter.eval("meter.sampler.missed") == 0


def test_a_second_irq_before_the_tick_is_counted_not_queued(meter: MeterHarness) -> None:
    # Block the scheduled tick by marking one pending, then interrupt: the handler must only count.
    meter.run("meter.sampler._pending = True")
    samples = meter.eval("meter.chip.samples")
    meter.fire_timer()
    assert meter.eval("meter.sampler.missed") == 1
    assert meter.eval("meter.chip.samples") == samples


def test_an_allocating_handler_is_caught(meter: MeterHarness) -> None:
    # Proves the check is live: the same machinery with a handler that builds a list fails with MemoryError.
    meter.run("machine_shim._TIMERS[0]._callback = lambda t: [t, t]")
    with pytest.raises(IsrError, match="MemoryError"):
        meter.fire_timer()
    # The session survives (heap unlocked in finally) and keeps working.
    assert meter.eval("1 + 1") == 2


def test_heap_is_unlocked_after_each_irq(meter: MeterHarness) -> None:
    meter.fire_timer()
    assert meter.eval("len([1, 2, 3])") == 3
    assert meter.step() is True
