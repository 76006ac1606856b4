"""Register-level model of the ADE9000: three-phase physics in, the register codes the chip would hold out.

The firmware under test talks to this model over (emulated) SPI exactly as it talks to the chip, so the numbers
it publishes go through the same transfer functions as on a real board. Every scaling rule is the one in
docs/ade9000.md (cited as "ref §n"; its sources are the ADE9000 Technical Reference Manual UG-1098 and the data
sheet); where that page marks a fact [?] the choice made here is written next to it as ASSUMPTION.

Modelled besides the metrology: dips and swells (RMS½ against DIP_LVL/SWELL_LVL · 2⁵ for DIP_CYC/SWELL_CYC
cycles → STATUS1 DIPx/SWELLx and the DIPx/SWELLx extreme registers), overcurrent (RMS½ current against OILVL · 2⁵
with CONFIG3.OC_EN → STATUS1.OI, OISTATUS), phase-sequence error (negative sequence wiring → STATUS1.SEQERR),
and faults a driver must survive: a chip that does not answer (MISO pulled up), corrupted reads (bad CRC), a
part that is not an ADE9000, a spontaneous reset (configuration and energy lost, RSTDONE set).

Not modelled (documented, the driver does not rely on them): waveform buffer and burst reads (a read past the
CRC returns 0x00), fundamental-only registers (xFWATT…, read 0), no-load detection, temperature, CF pulses, IRQ
pins, VCONSEL wirings other than 4-wire wye (the register is stored), multipoint gain and phase calibration
(xPHCALx is stored but has no effect), offsets (xRMSOS… stored, no effect).
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------------------------
# Datasheet constants (ref §3)
RMS_FULL_SCALE_CODE = 52_702_092  # total/fundamental RMS at ±1 V peak on the pins
POWER_FULL_SCALE_CODE = 20_694_066  # WATT / VAR / VA at full scale on both channels
F_DSP_HZ = 8000  # metrology sample rate
ANGLE_CLOCK_HZ = 1_024_000  # CLKIN/24, timer of the ANGL_* registers
FIXED_5_27_ONE = 1 << 27  # 5.27 fixed point (PF, THD)
GAIN_REG_ONE = 1 << 27  # xIGAIN etc.: factor = 1 + reg / 2^27
ENERGY_LO_BITS = 13  # xHR_HI holds the 32 MSBs of a 45-bit accumulator, xHR_LO the 13 LSBs
ENERGY_ACC_BITS = 45

# ---------------------------------------------------------------------------------------------------------------
# Register map (ref §2). Phase B = A + 0x20, C = A + 0x40 in the 0x000-0x05F and 0x200-0x25F blocks.
PHASE_STRIDE = 0x20
ENERGY_PHASE_STRIDE = 0x3C

AIGAIN, AVGAIN, APGAIN = 0x000, 0x00B, 0x00E
CONFIG0, NIGAIN, DICOEFF = 0x060, 0x06D, 0x072
AIRMS, AVRMS, AWATT, AVAR, AVA, APF, AVTHD, AITHD = 0x20C, 0x20D, 0x210, 0x211, 0x212, 0x216, 0x217, 0x218
NIRMS, VERSION2 = 0x266, 0x26A
AWATTHR_LO, AWATTHR_HI = 0x2E6, 0x2E7
AVARHR_LO, AVARHR_HI = 0x2F0, 0x2F1
AVAHR_LO, AVAHR_HI = 0x2FA, 0x2FB
STATUS0, STATUS1, MASK0, MASK1, EVENT_MASK, VLEVEL = 0x402, 0x403, 0x405, 0x406, 0x407, 0x40F
APERIOD, BPERIOD, CPERIOD, COM_PERIOD = 0x418, 0x419, 0x41A, 0x41B
LAST_DATA_32, PART_ID = 0x423, 0x472
RUN, CONFIG1 = 0x480, 0x481
ANGL_VA_VB, ANGL_VB_VC, ANGL_VA_VC, ANGL_VA_IA, ANGL_VB_IB, ANGL_VC_IC = (
    0x482,
    0x483,
    0x484,
    0x485,
    0x486,
    0x487,
)
ANGL_IA_IB, ANGL_IB_IC, ANGL_IA_IC = 0x488, 0x489, 0x48A
ACCMODE, CONFIG3, ZX_LP_SEL, SEQ_CYC, PHSIGN, WFB_CFG = 0x492, 0x493, 0x49A, 0x49C, 0x49D, 0x4A0
CONFIG5, LAST_DATA_16, LAST_CMD, CONFIG2, EP_CFG, PWR_TIME, EGY_TIME = (
    0x4A4,
    0x4AC,
    0x4AE,
    0x4AF,
    0x4B0,
    0x4B1,
    0x4B2,
)
TEMP_CFG, PGA_GAIN, VERSION = 0x4B6, 0x4B9, 0x4FE

# Bits
STATUS0_EGYRDY = 1 << 0
STATUS0_REVAP = (1 << 1, 1 << 2, 1 << 3)  # active power sign change, phases A/B/C
STATUS0_REVRP = (1 << 4, 1 << 5, 1 << 6)
STATUS0_THD_PF_RDY = 1 << 21
STATUS1_RSTDONE = 1 << 16
STATUS1_OI = 1 << 17
STATUS1_SEQERR = 1 << 18
STATUS1_SWELL = (1 << 20, 1 << 21, 1 << 22)
STATUS1_DIP = (1 << 23, 1 << 24, 1 << 25)
OILVL, DIP_LVL, DIPA, SWELL_LVL, SWELLA, OISTATUS = 0x409, 0x410, 0x411, 0x414, 0x415, 0x48F
DIP_CYC, SWELL_CYC = 0x48B, 0x48C
CONFIG3_OC_EN = 0xF000
CONFIG1_SWRST = 1 << 0
EP_CFG_EGY_PWR_EN = 1 << 0
EP_CFG_EGY_TMR_MODE = 1 << 1
EP_CFG_EGY_LD_ACCUM = 1 << 4
EP_CFG_RD_RST_EN = 1 << 5
ACCMODE_SELFREQ = 1 << 8
ACCMODE_ICONSEL = 1 << 7  # IB = -IA - IC (no CT on phase B)

PART_ID_ADE9000 = 1 << 20
CONFIG5_RESET = 0x0063
VERSION_RESET = 0x0040  # ASSUMPTION: no source confirms a VERSION value (ref §7 #8)
VERSION2_VALUE = 0x0000_000C  # ASSUMPTION: any non-zero metrology version, readable after RUN=1
THD_PF_PERIOD_S = 1.024  # PF/THD refresh (ref §2a)


def register_width_bits(addr: int) -> int:
    """Width of a register: 0x480-0x4FE inclusive are 16-bit, everything else 32-bit (ref §1, §7 #4)."""
    return 16 if 0x480 <= addr <= 0x4FE else 32


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def crc16_ccitt(data: bytes, seed: int = 0xFFFF) -> int:
    """CRC-16-CCITT (poly 0x1021, MSB first, no final XOR) the chip appends to read data (ref §1; seed [?])."""
    crc = seed
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


# Registers the model knows: address -> reset value. Writable ones are in _WRITABLE; everything else known is
# read-only (writes ignored). Addresses not listed read as 0 and ignore writes: the real chip answers reserved
# addresses with 0 as far as the sources show, and we must not pretend to know more (ASSUMPTION).
def _known_registers() -> dict[int, int]:
    regs: dict[int, int] = {}
    for phase in range(3):
        base = phase * PHASE_STRIDE
        for offset in range(0x019):  # calibration block xIGAIN .. xIRMS1012OS
            regs[base + offset] = 0
        for addr in (AIRMS, AVRMS, AWATT, AVAR, AVA, APF, AVTHD, AITHD):
            regs[addr + base] = 0
        for addr in range(0x20A, 0x21D):
            regs.setdefault(addr + base, 0)
        ebase = phase * ENERGY_PHASE_STRIDE
        for addr in range(0x2E5, 0x2E5 + 0x3C):
            regs[addr + ebase] = 0
    for addr in range(0x060, 0x073):
        regs[addr] = 0
    for addr in (NIRMS, 0x265, 0x267, 0x268, 0x269, VERSION2):
        regs[addr] = 0
    for addr in range(0x400, 0x424):
        regs[addr] = 0
    regs[PART_ID] = PART_ID_ADE9000  # ASSUMPTION: only bit 20 set (ref §2c)
    regs[0x474] = 0  # TEMP_TRIM
    for addr in range(0x480, 0x4BA):
        regs[addr] = 0
    regs[CONFIG5] = CONFIG5_RESET
    regs[VERSION] = VERSION_RESET
    return regs


_MEASUREMENT_READ_ONLY: frozenset[int] = frozenset(
    [a + p * PHASE_STRIDE for p in range(3) for a in range(0x20A, 0x21D)]
    + [a + p * ENERGY_PHASE_STRIDE for p in range(3) for a in range(0x2E5, 0x2E5 + 0x3C)]
    + [0x265, NIRMS, 0x267, 0x268, 0x269, VERSION2, 0x400, 0x401, 0x404, 0x40A, 0x40B, 0x40C, 0x40D]
    + list(range(0x411, 0x414))
    + list(range(0x415, 0x41C))
    + [0x41F, LAST_DATA_32, PART_ID, 0x474]
    + list(range(0x482, 0x48B))
    + [0x48F, PHSIGN, CONFIG5, LAST_DATA_16, LAST_CMD, 0x4A8, 0x4A9, 0x4B7, VERSION]
)


@dataclass(frozen=True)
class BoardCalibration:
    """Analog front end of one meter board: what the ADC pins see per amp / per volt (ref §3).

    Defaults are ADI's example board: CT 2500:1 with a 10.2 Ω burden (0.00408 V/A) and a resistor divider giving
    0.00125 V at the pin per line volt, PGA x1 everywhere (3.28849 µA, 10.73364 µV, 4.73755 mW per code).
    """

    current_tf_v_per_a: float = 0.00408
    neutral_current_tf_v_per_a: float = 0.00408
    voltage_tf_v_per_v: float = 0.00125

    def as_dict(self) -> dict[str, float]:
        """JSON-friendly form handed to the firmware's config."""
        return {
            "current_tf_v_per_a": self.current_tf_v_per_a,
            "neutral_current_tf_v_per_a": self.neutral_current_tf_v_per_a,
            "voltage_tf_v_per_v": self.voltage_tf_v_per_v,
        }


@dataclass
class PhaseInput:
    """Physics of one phase at the meter: RMS magnitudes and the angle from voltage to current.

    angle_deg > 0: current lags (inductive, +var). |angle| > 90°: power flows back to the grid (export, -W).
    Magnitudes are total RMS; the THD figures only feed the THD registers (ASSUMPTION: harmonics carry no
    active power, P = V·I·cos(angle)).
    """

    voltage_v: float = 230.0
    current_a: float = 0.0
    angle_deg: float = 0.0
    thd_voltage: float = 0.0  # fraction, 0.02 = 2 %
    thd_current: float = 0.0


@dataclass
class _SpiTransaction:
    """State of one /SS-low..high transaction as the chip's SPI engine sees it."""

    received: bytearray = field(default_factory=bytearray)
    read_data: bytes = b""


class ADE9000Model:
    """Register-level ADE9000: holds register codes, answers SPI transactions, accumulates energy over time.

    Time only moves through `advance(seconds)`, so tests are deterministic and the demo can follow the wall clock.
    """

    def __init__(self, calibration: BoardCalibration | None = None, frequency_hz: float = 50.0) -> None:
        self.calibration = calibration or BoardCalibration()
        self.phases: list[PhaseInput] = [PhaseInput(), PhaseInput(), PhaseInput()]
        self.frequency_hz = frequency_hz
        self.neutral_current_a: float | None = None  # None: vector sum of the phase currents
        self.simulated_time_s = 0.0
        self.spi_transactions = 0
        self.negative_sequence = False  # True: phases wired A-C-B (STATUS1.SEQERR)
        # Fault injection
        self.answering = True  # False: nothing drives MISO (unpowered, unplugged, held in reset)
        self.corrupt_reads = 0  # the next n reads return a CRC that does not match their data
        self.not_ade9000 = False  # PART_ID without the ADE9000 bit (another part on the bus)
        # Every energy code·sample the DSP accumulated since power-on, never cleared by reads: the truth tests
        # compare the firmware's counters with ([phase][watt, var, va]).
        self.total_energy = [[0, 0, 0] for _ in range(3)]
        self._regs: dict[int, int] = {}
        self._known: dict[int, int] = _known_registers()
        self._txn: _SpiTransaction | None = None
        self.power_on_reset()

    # ----------------------------------------------------------------------------------------------- reset / run
    def power_on_reset(self) -> None:
        """All registers to reset values, DSP stopped (RUN=0 after reset: ASSUMPTION, ref §7 #8), RSTDONE set."""
        self._regs = dict(self._known)
        self._regs[STATUS1] = STATUS1_RSTDONE
        self._energy_user = [[0, 0, 0] for _ in range(3)]  # [phase][watt, var, va]: 45-bit, code·samples
        self._energy_internal = [[0, 0, 0] for _ in range(3)]  # since the last EGYRDY, code·samples
        self._samples_in_interval = 0
        self._sample_carry = 0.0  # fractional 8 kSPS sample not yet accounted
        self._thd_pf_timer_s = 0.0
        self._last_sign = [(1, 1)] * 3
        self._recompute()

    def spontaneous_reset(self) -> None:
        """The chip resets by itself (brown-out, ESD): configuration and accumulated energy are gone."""
        self.power_on_reset()

    def voltage_event(self, phase: int, voltage_v: float, duration_s: float) -> None:
        """A short dip or swell on one phase (0-2): RMS½ sits at `voltage_v` for `duration_s`, then recovers.

        Energy during the event is not modelled (the event is short against a sampling period); the status bit
        latches when the event lasts DIP_CYC / SWELL_CYC line cycles or more (ASSUMPTION: full cycles, ref §7 #8).
        """
        self._check_rms_half(phase, voltage_v, duration_s * self.frequency_hz)

    def _rms_half_code(self, phase: int, voltage_v: float) -> int:
        cal = self.calibration
        g_v = self._pga(4 + phase) * self._gain_factor(AVGAIN + phase * PHASE_STRIDE)
        return round(RMS_FULL_SCALE_CODE * math.sqrt(2) * cal.voltage_tf_v_per_v * voltage_v * g_v)

    def _check_rms_half(self, phase: int, voltage_v: float, cycles: float) -> None:
        """Dip/swell detection on RMS½ (ref §5): levels are RMS½ codes · 2⁻⁵."""
        if not self.running:
            return
        regs = self._regs
        code = self._rms_half_code(phase, voltage_v)
        dip_lvl = regs[DIP_LVL] << 5
        swell_lvl = regs[SWELL_LVL] << 5
        if dip_lvl and code < dip_lvl and cycles >= max(1, regs[DIP_CYC]):
            regs[STATUS1] |= STATUS1_DIP[phase]
            regs[DIPA + phase] = min(regs[DIPA + phase] or 0xFFFFFF, code >> 5)
        if swell_lvl and code > swell_lvl and cycles >= max(1, regs[SWELL_CYC]):
            regs[STATUS1] |= STATUS1_SWELL[phase]
            regs[SWELLA + phase] = max(regs[SWELLA + phase], code >> 5)

    def _check_status(self) -> None:
        """Steady-state power-quality conditions of the present physics (called whenever it changes)."""
        if not self.running:
            return
        regs = self._regs
        for index, phase in enumerate(self.phases):
            self._check_rms_half(index, phase.voltage_v, float("inf"))
        oi_lvl = regs[OILVL] << 5
        if oi_lvl and regs[CONFIG3] & CONFIG3_OC_EN:
            tripped = 0
            for index in range(3):
                if regs[AIRMS + index * PHASE_STRIDE] > oi_lvl:
                    tripped |= 1 << index
            if tripped:
                regs[STATUS1] |= STATUS1_OI
                regs[OISTATUS] = tripped
        if self.negative_sequence and (regs[ACCMODE] >> 4) & 0b111 in (0b000, 0b010, 0b011):
            regs[STATUS1] |= STATUS1_SEQERR

    def hardware_reset(self) -> None:
        """RESET pin pulsed low: same as power-on for the register file."""
        self.power_on_reset()

    @property
    def running(self) -> bool:
        """DSP running (RUN register = 1)."""
        return self._regs[RUN] & 1 == 1

    # ----------------------------------------------------------------------------------------------- physics in
    def set_phase(self, index: int, phase: PhaseInput) -> None:
        """Set the physics of phase 0 (A/L1), 1 (B/L2) or 2 (C/L3)."""
        self.phases[index] = phase
        self._recompute()

    def set_frequency(self, frequency_hz: float) -> None:
        """Set the line frequency."""
        self.frequency_hz = frequency_hz
        self._recompute()

    def set_negative_sequence(self, reversed_: bool) -> None:
        """Wire the phases A-C-B (True): voltage angles swap and the chip raises SEQERR."""
        self.negative_sequence = reversed_
        self._recompute()

    def set_neutral_current(self, current_a: float | None) -> None:
        """Set the neutral CT current; None derives it from the phase currents (ideal 4-wire wye)."""
        self.neutral_current_a = current_a
        self._recompute()

    def phase_currents_phasor(self) -> list[complex]:
        """Phase current phasors, with VA at 0°, VB at -120°, VC at +120° (positive sequence)."""
        out = []
        for index, phase in enumerate(self.phases):
            v_angle_deg = (0.0, -120.0, 120.0)[index]
            out.append(cmath.rect(phase.current_a, math.radians(v_angle_deg - phase.angle_deg)))
        return out

    def neutral_current(self) -> float:
        """Neutral current in A: the set value, or |IA + IB + IC|."""
        if self.neutral_current_a is not None:
            return self.neutral_current_a
        return abs(sum(self.phase_currents_phasor()))

    # ----------------------------------------------------------------------------------------------- gains
    def _pga(self, field_index: int) -> int:
        """PGA gain of one ADC from PGA_GAIN: 00 x1, 01 x2, 10/11 x4 (ref §2d, §7 #5)."""
        code = (self._regs[PGA_GAIN] >> (2 * field_index)) & 0b11
        return (1, 2, 4, 4)[code]

    def _gain_factor(self, addr: int) -> float:
        return 1.0 + _signed(self._regs[addr], 32) / GAIN_REG_ONE

    def effective_frequency_hz(self) -> float:
        """Frequency the period registers report: outside 40-70 Hz the chip forces the SELFREQ nominal (ref §3)."""
        if 40.0 <= self.frequency_hz <= 70.0:
            return self.frequency_hz
        return 60.0 if self._regs[ACCMODE] & ACCMODE_SELFREQ else 50.0

    # ----------------------------------------------------------------------------------------------- registers
    def _recompute(self) -> None:
        """Refresh the measurement registers from the physics and the configuration (only while RUN=1)."""
        regs = self._regs
        cal = self.calibration
        if not self.running:
            return
        channels, v_angles, i_angles = self._channels()
        for index, (voltage_v, current_a, angle_deg) in enumerate(channels):
            phase = self.phases[index]
            base = index * PHASE_STRIDE
            g_i = self._pga(index) * self._gain_factor(AIGAIN + base)
            g_v = self._pga(4 + index) * self._gain_factor(AVGAIN + base)
            g_p = self._gain_factor(APGAIN + base)
            v_pin_rms = cal.voltage_tf_v_per_v * voltage_v * g_v
            i_pin_rms = cal.current_tf_v_per_a * current_a * g_i
            angle = math.radians(angle_deg)
            power_scale = POWER_FULL_SCALE_CODE * 2 * v_pin_rms * i_pin_rms * g_p
            watt = round(power_scale * math.cos(angle))
            var = round(power_scale * math.sin(angle))
            va = round(power_scale)
            regs[AVRMS + base] = _clip_unsigned(round(RMS_FULL_SCALE_CODE * math.sqrt(2) * v_pin_rms))
            regs[AIRMS + base] = _clip_unsigned(round(RMS_FULL_SCALE_CODE * math.sqrt(2) * i_pin_rms))
            regs[AWATT + base] = watt & 0xFFFF_FFFF
            regs[AVAR + base] = var & 0xFFFF_FFFF
            regs[AVA + base] = va & 0xFFFF_FFFF
            # PF = WATT/VA, sign of the active power (ASSUMPTION: ref §3 marks the sign convention [?]).
            pf = watt / va if va else 1.0
            regs[APF + base] = _to_5_27(pf)
            regs[AVTHD + base] = _to_5_27(phase.thd_voltage)
            regs[AITHD + base] = _to_5_27(phase.thd_current)
            sign = (1 if watt >= 0 else -1, 1 if var >= 0 else -1)
            if sign[0] != self._last_sign[index][0]:
                regs[STATUS0] |= STATUS0_REVAP[index]
            if sign[1] != self._last_sign[index][1]:
                regs[STATUS0] |= STATUS0_REVRP[index]
            self._last_sign[index] = sign
        regs[PHSIGN] = sum(
            ((1 << (2 * i)) if self._last_sign[i][0] < 0 else 0)
            | ((1 << (2 * i + 1)) if self._last_sign[i][1] < 0 else 0)
            for i in range(3)
        )
        g_n = self._pga(3) * self._gain_factor(NIGAIN)
        regs[NIRMS] = _clip_unsigned(
            round(
                RMS_FULL_SCALE_CODE
                * math.sqrt(2)
                * cal.neutral_current_tf_v_per_a
                * self.neutral_current()
                * g_n
            )
        )
        f_hz = self.effective_frequency_hz()
        period = period_code(f_hz)
        for addr in (APERIOD, BPERIOD, CPERIOD, COM_PERIOD):
            regs[addr] = period
        # Angles: time between zero crossings on the 1.024 MHz clock (ref §2a, §3).
        regs[ANGL_VA_VB] = angle_code(v_angles[0] - v_angles[1], f_hz)
        regs[ANGL_VB_VC] = angle_code(v_angles[1] - v_angles[2], f_hz)
        regs[ANGL_VA_VC] = angle_code(v_angles[0] - v_angles[2], f_hz)
        for k, addr in enumerate((ANGL_VA_IA, ANGL_VB_IB, ANGL_VC_IC)):
            regs[addr] = angle_code(v_angles[k] - i_angles[k], f_hz)
        regs[ANGL_IA_IB] = angle_code(i_angles[0] - i_angles[1], f_hz)
        regs[ANGL_IB_IC] = angle_code(i_angles[1] - i_angles[2], f_hz)
        regs[ANGL_IA_IC] = angle_code(i_angles[0] - i_angles[2], f_hz)
        regs[VERSION2] = VERSION2_VALUE
        self._check_status()

    def _channels(self) -> tuple[list[tuple[float, float, float]], list[float], list[float]]:
        """What the three voltage and current channels see: (V rms, I rms, angle V->I in degrees) per channel, and
        the channel voltage and current phase angles.

        4-wire wye (VCONSEL 000): each channel is one phase against neutral. 3-wire delta (VCONSEL 001, Blondel
        compliant, ADE9000 Technical Reference Manual UG-1098 Rev. 0, "Applying the ADE9000 to a 3-Wire Delta
        Service", pp. 47-48): phase B is the reference, VA measures V_AB, VC measures V_CB and the chip computes
        VB = VA - VC (= V_AC); with ICONSEL = 1 there is no CT on phase B and IB = -IA - IC. Only A + C make a
        meaningful total (the two-wattmeter method); the B channel's powers are computed but mean nothing. The
        phases' physics stays given as wye equivalents (voltage to the star point, current angle to it).
        """
        v_angles = (0.0, 120.0, -120.0) if self.negative_sequence else (0.0, -120.0, 120.0)
        volts = [cmath.rect(p.voltage_v, math.radians(v_angles[k])) for k, p in enumerate(self.phases)]
        amps = [cmath.rect(p.current_a, math.radians(v_angles[k] - p.angle_deg)) for k, p in enumerate(self.phases)]
        accmode = self._regs[ACCMODE]
        if (accmode >> 4) & 0b111 != 0b001:
            i_angles = [v_angles[k] - self.phases[k].angle_deg for k in range(3)]
            return ([(p.voltage_v, p.current_a, p.angle_deg) for p in self.phases], list(v_angles), i_angles)
        v_ab, v_cb = volts[0] - volts[1], volts[2] - volts[1]
        v_ch = [v_ab, v_ab - v_cb, v_cb]
        i_ch = [amps[0], -amps[0] - amps[2] if accmode & ACCMODE_ICONSEL else amps[1], amps[2]]
        v_deg = [math.degrees(cmath.phase(v)) for v in v_ch]
        i_deg = [math.degrees(cmath.phase(i)) for i in i_ch]
        return ([(abs(v_ch[k]), abs(i_ch[k]), v_deg[k] - i_deg[k]) for k in range(3)], v_deg, i_deg)

    def peek(self, addr: int) -> int:
        """Register value without side effects (tests and debugging; the firmware goes through SPI)."""
        if _energy_slot(addr) is not None:
            return self._energy_register(addr)
        if addr == PART_ID and self.not_ade9000:
            return self._regs[PART_ID] & ~PART_ID_ADE9000
        return self._regs.get(addr, 0) & ((1 << register_width_bits(addr)) - 1)

    def poke_physics_register(self, addr: int, value: int) -> None:
        """Force a register value bypassing SPI rules (fault injection in tests)."""
        self._regs[addr] = value & ((1 << register_width_bits(addr)) - 1)

    def _energy_register(self, addr: int) -> int:
        slot = _energy_slot(addr)
        assert slot is not None
        phase, kind, part = slot
        user = self._energy_user[phase][kind]
        if part == "hi":
            return (user >> ENERGY_LO_BITS) & 0xFFFF_FFFF
        if part == "lo":
            # ASSUMPTION: the 13 LSBs sit in bits 31:19 of xHR_LO (ref §2b marks the position [?]).
            return (user & ((1 << ENERGY_LO_BITS) - 1)) << 19
        return 0  # xHR_ACC (PWR_TIME accumulation) not modelled

    def _read(self, addr: int) -> int:
        """A read as the SPI engine performs it, with the chip's side effects (read-with-reset)."""
        slot = _energy_slot(addr)
        if slot is not None:
            value = self._energy_register(addr)
            phase, kind, part = slot
            if part == "hi" and self._regs[EP_CFG] & EP_CFG_RD_RST_EN:
                # Reading HI clears the part it returned; the sub-LSB remainder (the 13 LO bits) stays, so a
                # reader that sums every HI it reads never double counts and never loses energy.
                self._energy_user[phase][kind] &= (1 << ENERGY_LO_BITS) - 1
            return value
        return self.peek(addr)

    def _write(self, addr: int, value: int) -> None:
        """A completed register write: write-1-to-clear, SWRST, read-only and unknown addresses ignored."""
        value &= (1 << register_width_bits(addr)) - 1
        if addr in (STATUS0, STATUS1):
            self._regs[addr] &= ~value & 0xFFFF_FFFF
            return
        if addr not in self._known or addr in _MEASUREMENT_READ_ONLY:
            return  # the chip has nothing there to change (ASSUMPTION for reserved addresses)
        if addr == CONFIG1 and value & CONFIG1_SWRST:
            self.power_on_reset()  # SWRST self-clears; reset completes instantly here (the chip needs ~46 ms)
            return
        was_running = self.running
        self._regs[addr] = value
        if addr == RUN and self.running and not was_running:
            self._samples_in_interval = 0
        self._recompute()

    # ----------------------------------------------------------------------------------------------- SPI
    def spi_select(self) -> None:
        """/SS falling edge: a new transaction starts (an unfinished one is abandoned, like the chip)."""
        self._txn = _SpiTransaction()
        self.spi_transactions += 1

    def spi_deselect(self) -> None:
        """/SS rising edge: the transaction ends; an incomplete write was never applied."""
        self._txn = None

    def spi_clock(self, mosi: bytes) -> bytes:
        """Clock bytes through the selected chip; returns what it drives on MISO for each byte."""
        if self._txn is None or not self.answering:
            return b"\xff" * len(mosi)  # not selected or not answering: MISO released, pulled up (ref §1)
        txn = self._txn
        out = bytearray()
        for byte in mosi:
            index = len(txn.received)
            txn.received.append(byte)
            if index < 2:
                out.append(0x00)  # ASSUMPTION: MISO content during the command phase is 0
                continue
            command = (txn.received[0] << 8) | txn.received[1]
            addr = command >> 4
            width_bytes = register_width_bits(addr) // 8
            if command & 0x0008:  # read
                if index == 2:
                    value = self._read(addr)
                    txn.read_data = value.to_bytes(width_bytes, "big")
                    self._regs[LAST_CMD] = command
                    crc = crc16_ccitt(txn.read_data)
                    if self.corrupt_reads > 0:  # a bit flipped on the wire: the CRC no longer matches
                        self.corrupt_reads -= 1
                        crc ^= 0x0400
                    txn.read_data += crc.to_bytes(2, "big")
                data_index = index - 2
                out.append(txn.read_data[data_index] if data_index < len(txn.read_data) else 0x00)
            else:  # write: applied once all data bits arrived (ref §1)
                out.append(0x00)
                if index == 1 + width_bytes:
                    value = int.from_bytes(txn.received[2 : 2 + width_bytes], "big")
                    self._regs[LAST_CMD] = command
                    self._write(addr, value)
        return bytes(out)

    def transaction(self, mosi: bytes) -> bytes:
        """One whole /SS-low..high transaction."""
        self.spi_select()
        try:
            return self.spi_clock(mosi)
        finally:
            self.spi_deselect()

    # ----------------------------------------------------------------------------------------------- time
    def advance(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass: energy accumulates, EGYRDY / THD_PF_RDY flags latch."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.simulated_time_s += seconds
        if not self.running:
            return
        self._check_status()  # steady conditions re-latch their bits while they last (DIP_SWELL_IRQ_MODE 0)
        self._thd_pf_timer_s += seconds
        if self._thd_pf_timer_s >= THD_PF_PERIOD_S:
            self._thd_pf_timer_s %= THD_PF_PERIOD_S
            self._regs[STATUS0] |= STATUS0_THD_PF_RDY
        ep_cfg = self._regs[EP_CFG]
        if not ep_cfg & EP_CFG_EGY_PWR_EN:
            return
        total = self._sample_carry + seconds * F_DSP_HZ
        whole = int(total)
        self._sample_carry = total - whole
        interval = self._energy_interval_samples()
        codes = [
            [_signed(self._regs[reg + p * PHASE_STRIDE], 32) for reg in (AWATT, AVAR, AVA)] for p in range(3)
        ]
        position = self._samples_in_interval + whole
        latches = position // interval
        remainder = position % interval
        for p in range(3):
            for kind in range(3):
                self.total_energy[p][kind] += codes[p][kind] * whole
        for p in range(3):
            for kind in range(3):
                code = codes[p][kind]
                if latches == 0:
                    self._energy_internal[p][kind] += code * whole
                    continue
                first = self._energy_internal[p][kind] + code * (interval - self._samples_in_interval)
                if ep_cfg & EP_CFG_EGY_LD_ACCUM:  # overwrite the user register with the last full interval
                    latched = first if latches == 1 else code * interval
                    self._energy_user[p][kind] = _wrap_45(latched)
                else:  # add every completed interval into the user register
                    added = first + code * interval * (latches - 1)
                    self._energy_user[p][kind] = _wrap_45(self._energy_user[p][kind] + added)
                self._energy_internal[p][kind] = code * remainder
        self._samples_in_interval = remainder
        if latches:
            self._regs[STATUS0] |= STATUS0_EGYRDY

    def _energy_interval_samples(self) -> int:
        """Samples between EGYRDY latches: EGY_TIME+1 samples, or EGY_TIME+1 half line cycles (ref §3)."""
        egy_time = self._regs[EGY_TIME] & 0x1FFF
        if self._regs[EP_CFG] & EP_CFG_EGY_TMR_MODE:
            # ASSUMPTION: half cycles counted at the measured frequency, rounded to whole samples.
            return max(1, round((egy_time + 1) * F_DSP_HZ / (2 * self.effective_frequency_hz())))
        return egy_time + 1

    def energy_accumulator(self, phase: int, kind: int) -> int:
        """45-bit user energy register in code·samples (kind 0 WATT, 1 VAR, 2 VA): test introspection."""
        return self._energy_user[phase][kind]


def _energy_slot(addr: int) -> tuple[int, int, str] | None:
    """(phase, kind, 'hi'|'lo'|'acc') for WATTHR/VARHR/VAHR registers of phases A-C, else None."""
    for phase in range(3):
        rel = addr - phase * ENERGY_PHASE_STRIDE
        for kind, acc in enumerate((0x2E5, 0x2EF, 0x2F9)):
            if rel == acc:
                return phase, kind, "acc"
            if rel == acc + 1:
                return phase, kind, "lo"
            if rel == acc + 2:
                return phase, kind, "hi"
    return None


def _wrap_45(value: int) -> int:
    return _signed(value, ENERGY_ACC_BITS)


def _clip_unsigned(code: int) -> int:
    return max(0, min(code, 0x7FFF_FFFF))


def _to_5_27(value: float) -> int:
    """Signed 5.27 fixed point as a 32-bit register code (ref §3 PF, THD)."""
    code = round(value * FIXED_5_27_ONE)
    code = max(-(1 << 31), min(code, (1 << 31) - 1))
    return code & 0xFFFF_FFFF


def period_code(frequency_hz: float) -> int:
    """xPERIOD for a line frequency: f = 8000·2^16 / (xPERIOD + 1) (ref §3)."""
    return round(F_DSP_HZ * (1 << 16) / frequency_hz) - 1


def angle_code(angle_deg: float, frequency_hz: float) -> int:
    """ANGL_* count for an angle between zero crossings: deg = ANGL·360·f / 1,024,000 (ref §3)."""
    return round((angle_deg % 360.0) * ANGLE_CLOCK_HZ / (360.0 * frequency_hz)) & 0xFFFF
