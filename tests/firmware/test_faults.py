"""Hardware faults injected in the ADE9000 model: detected, retried or re-initialised, reported, never wrong values."""

from __future__ import annotations

import pytest

from firmware.emulator import ade9000_model as m
from firmware.emulator.harness import MeterConfig, MeterHarness

KWH_PER_LSB = 1 / (0.00408 * 0.00125 * 20_694_066 * 2) * 8192 / (8000 * 3600 * 1000)


def last(meter: MeterHarness) -> dict:
    return meter.published[-1].payload


def crc_ccitt_bitwise(data: bytes) -> int:
    """CRC-16-CCITT by its definition (poly 0x1021, seed 0xFFFF, MSB first), written out here by hand."""
    crc = 0xFFFF
    for byte in data:
        for bit in range(7, -1, -1):
            feedback = ((crc >> 15) & 1) ^ ((byte >> bit) & 1)
            crc = (crc << 1) & 0xFFFF
            if feedback:
                crc ^= 0x1021
    return crc


def test_firmware_crc_matches_the_ccitt_definition(meter: MeterHarness) -> None:
    assert crc_ccitt_bitwise(b"123456789") == 0x29B1  # the published check value of CRC-16/CCITT-FALSE
    for data in (b"123456789", b"\x00\x00\x00\x63", b"\xff\xff\xff\xff", bytes(range(0, 256, 7))):
        assert meter.eval(f"__import__('ade9000').crc16({data!r}, 0, {len(data)})") == crc_ccitt_bitwise(data)


def test_one_corrupted_read_is_retried_transparently(meter: MeterHarness) -> None:
    meter.model.corrupt_reads = 2
    assert meter.cycle(1.0) is True
    doc = last(meter)
    assert doc["ds"] == "ok" and doc["p"]["L1"] == pytest.approx(2300.0, abs=0.02)
    assert meter.eval("meter.chip.crc_errors") == 2


def test_persistent_crc_errors_withhold_values_and_lose_no_energy(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    meter.model.corrupt_reads = 3  # three failed attempts of the same read: give up for this sample
    meter.cycle(1.0)
    doc = last(meter)
    assert doc["ds"] == "fault:spi-crc"
    assert set(doc) == {"TimeInstant", "clk", "ds"}  # no value that could be wrong
    meter.cycle(1.0)  # the bus is clean again: energy of all three periods is there, nothing counted twice
    doc = last(meter)
    assert doc["ds"] == "ok"
    truth = meter.model.total_energy[0][0] / 8192 * KWH_PER_LSB
    assert doc["eai"]["L1"] == pytest.approx(truth, abs=1.01 * KWH_PER_LSB)


def test_chip_not_answering_is_reported_then_resumed(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    meter.model.answering = False
    meter.cycle(1.0)
    assert last(meter) == {"TimeInstant": last(meter)["TimeInstant"], "clk": True, "ds": "fault:no-response"}
    meter.model.answering = True
    meter.cycle(1.0)
    assert last(meter)["ds"] == "ok"
    assert last(meter)["eai"]["L1"] == pytest.approx(3 * 2300 / 3.6e6, abs=1e-7)  # 3 s at 2300 W, none lost


def test_spontaneous_chip_reset_is_detected_and_the_chip_reconfigured(meter: MeterHarness) -> None:
    meter.cycle(1.0)
    before = last(meter)["eai"]["L1"]
    meter.model.spontaneous_reset()  # configuration lost, RUN = 0, RSTDONE set
    assert meter.model.peek(m.RUN) == 0
    meter.cycle(1.0)  # the chip was not running: this second is lost by the hardware itself
    assert last(meter)["ds"] == "fault:chip-reset"
    assert meter.model.peek(m.RUN) == 1 and meter.model.peek(m.EP_CFG) == 0x0001  # re-initialised
    assert meter.eval("meter.chip.resets_seen") == 1
    meter.cycle(1.0)
    doc = last(meter)
    assert doc["ds"] == "ok"
    assert doc["eai"]["L1"] == pytest.approx(before + 2300 / 3.6e6, abs=2 * KWH_PER_LSB)  # counters continue
    assert doc["p"]["L1"] == pytest.approx(2300.0, abs=0.02)


def test_wrong_chip_at_start_is_reported_and_retried() -> None:
    with MeterHarness(MeterConfig(device_id="meter-wrong-chip")) as meter:
        meter.model.not_ade9000 = True
        meter.boot()
        assert meter.eval("meter.state") == "fault:chip-id"
        assert meter.model.peek(m.RUN) == 0
        meter.cycle(11.0)  # re-initialisation attempt after 10 s: still the wrong part, state published
        assert last(meter)["ds"] == "fault:chip-id" and "p" not in last(meter)
        meter.model.not_ade9000 = False  # the right board is fitted
        meter.cycle(11.0)
        assert meter.eval("meter.state") == "ok" and meter.model.peek(m.RUN) == 1
        meter.cycle(1.0)
        assert last(meter)["ds"] == "ok" and last(meter)["v"]["L1"] == pytest.approx(230.0, abs=1e-3)
