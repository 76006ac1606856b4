"""Fixtures: the real firmware booted under MicroPython against the ADE9000 model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness


@pytest.fixture
def meter() -> Iterator[MeterHarness]:
    """A booted meter (capture-only MQTT), all three phases at 230 V / 10 A / 0°, 50 Hz."""
    harness = MeterHarness(MeterConfig(device_id="meter-test", period_s=1.0))
    for k in range(3):
        harness.model.set_phase(k, PhaseInput(230.0, 10.0, 0.0, 0.02, 0.05))
    harness.boot()
    yield harness
    harness.close()
