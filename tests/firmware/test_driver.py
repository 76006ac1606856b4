"""The ADE9000 driver running under MicroPython against the register model."""

from __future__ import annotations

import pytest

from firmware.emulator import ade9000_model as m
from firmware.emulator.harness import HarnessError, MeterConfig, MeterHarness


def test_register_reads_through_driver_return_model_codes(meter: MeterHarness) -> None:
    for addr in (
        m.AVRMS,
        m.AIRMS + m.PHASE_STRIDE,
        m.AWATT + 2 * m.PHASE_STRIDE,
        m.PART_ID,
        m.COM_PERIOD,
        m.ANGL_VA_VB,
        m.CONFIG5,
        m.VERSION,
    ):
        assert meter.eval(f"meter.chip.read({addr})") == meter.model.peek(addr), hex(addr)
    assert meter.eval(f"meter.chip.read({m.CONFIG5})") == 0x0063


def test_driver_writes_reach_the_model(meter: MeterHarness) -> None:
    meter.run(f"meter.chip.write({m.AIGAIN}, -1000)")
    assert meter.model.peek(m.AIGAIN) == (-1000) & 0xFFFF_FFFF
    meter.run(f"meter.chip.write({m.ZX_LP_SEL}, 0x0018)")
    assert meter.model.peek(m.ZX_LP_SEL) == 0x0018


def test_startup_sequence_leaves_chip_running_with_reference_config(meter: MeterHarness) -> None:
    model = meter.model
    assert model.peek(m.RUN) == 1
    assert model.peek(m.EP_CFG) == 0x0001 and model.peek(m.EGY_TIME) == 0x0001  # accumulate, read without reset
    assert model.peek(m.ACCMODE) == 0x0000  # 50 Hz, 4-wire wye, signed
    assert model.peek(m.CONFIG1) == 0x0002
    assert model.peek(m.CONFIG2) == 0x0C00
    assert model.peek(m.ZX_LP_SEL) == 0x001E
    assert model.peek(m.VLEVEL) == 0x0022EA28
    assert model.peek(m.WFB_CFG) == 0x1000
    assert model.peek(m.PGA_GAIN) == 0
    assert model.peek(m.STATUS1) & m.STATUS1_RSTDONE == 0  # cleared after the reset check
    assert meter.pin_levels[14] == 1  # RESET released
    assert meter.pin_levels[12] == 0  # PM1 low: PSM0


def test_startup_for_60hz_and_pga_sets_selfreq_and_gains() -> None:
    with MeterHarness(MeterConfig(nominal_hz=60, pga_current=2, pga_voltage=4, igain=(5, 6, 7))) as h:
        h.boot()
        assert h.model.peek(m.ACCMODE) == 0x0100
        assert h.model.peek(m.PGA_GAIN) == 0b01_0101 | (0b10_1010 << 8)
        assert [h.model.peek(m.AIGAIN + k * m.PHASE_STRIDE) for k in range(3)] == [5, 6, 7]


def test_startup_reports_a_chip_that_is_not_an_ade9000() -> None:
    harness = MeterHarness(MeterConfig(pin_reset=None))  # software reset path
    harness.boot(start=False)
    try:
        # A board whose SPI reads back a CONFIG5 that is not the ADE9000's reset value 0x0063.
        real_write = harness.model._write

        def broken_write(addr: int, value: int) -> None:
            real_write(addr, value)
            harness.model.poke_physics_register(m.CONFIG5, 0xFFFF)

        harness.model._write = broken_write  # type: ignore[method-assign]
        harness.start()  # the firmware keeps running and says why it has no values
        assert harness.eval("meter.state") == "fault:chip-id"
        assert harness.model.peek(m.RUN) == 0
    finally:
        harness.close()


def test_harness_reports_firmware_tracebacks(meter: MeterHarness) -> None:
    with pytest.raises(HarnessError, match="TypeError"):
        meter.run("meter.chip.read(None)")
    with pytest.raises(HarnessError):
        meter.run(
            "import micropython\ndef _bad(_):\n    raise ValueError('boom')\nmicropython.schedule(_bad, 0)\n"
            "for _ in range(10):\n    pass\n"
        )
