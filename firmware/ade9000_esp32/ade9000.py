# ADE9000 three-phase energy metering IC: SPI driver for MicroPython (ESP32, MicroPython >= 1.22).
#
# Install the driver alone with mip, which reads package.json beside this file (relative URLs: mpremote of 2025+):
#   mpremote mip install ./firmware/ade9000_esp32/package.json          (from a clone)
#   mpremote mip install github:ORG/REPO/firmware/ade9000_esp32         (from the repository you cloned)
# manifest.py freezes it into a firmware image. Usage:
#
#     from machine import Pin, SPI
#     from ade9000 import ADE9000, Calibration, EAI, IRMS, PER_PHASE, VRMS
#
#     spi = SPI(2, baudrate=5_000_000, polarity=0, phase=0, sck=Pin(18), mosi=Pin(23), miso=Pin(19))
#     chip = ADE9000(spi, cs=Pin(5, Pin.OUT, value=1), reset=Pin(14, Pin.OUT, value=1))
#     cal = Calibration(nominal_hz=50, wiring="3P4W")  # ADI's example board; pass your CTs, gains, offsets
#     chip.begin(cal)                                  # reset, identify, configure, run (raises ChipError)
#     chip.sample()                                    # every measurement register, CRC-checked
#     for phase in range(3):
#         v = chip.raw(VRMS + phase * PER_PHASE) * cal.scale.v_per_code
#         i = chip.raw(IRMS + phase * PER_PHASE) * cal.scale.a_per_code
#         print("L%d: %.1f V %.2f A" % (phase + 1, v, i))
#     kwh = chip.energy[EAI] * cal.scale.kwh_per_energy_lsb  # phase A imported active energy since begin()
#
# Sources: the ADE9000 Technical Reference Manual UG-1098 Rev. 0 and the ADE9000 data sheet (Analog Devices).
# "ref §n" is a section of docs/ade9000.md, which gives each fact with its UG-1098 page: SPI framing and CRC §1
# (pp. 32-35), registers §2, transfer functions §3 (Table 8, p. 13), start-up §4 (p. 16), power-quality status
# §5 (pp. 25-31), the board's pins §6, open questions §7.
#
# Buffers are allocated once; sample() reads every measurement register into one preallocated receive buffer,
# checks the CRC-16 the chip appends to every read, and folds the energy registers into per-phase import/export
# counters without creating objects (while a delta and the counters stay below 2**30: 1447 kWh per phase with
# ADI's example board; beyond that MicroPython promotes them to long ints, which is fine: sample() runs from
# micropython.schedule, never in the interrupt).
#
# Energy: the chip accumulates signed energy into 45-bit registers whose 32 MSBs are xHR_HI (ref §2b). The driver
# does NOT use read-with-reset: it keeps the previous HI value and adds the difference modulo 2**32, so
#   * a read that fails its CRC is simply read again (a read-with-reset would have cleared the lost value),
#   * the accumulator rolling over 2**45 is invisible (HI wraps modulo 2**32 consistently),
#   * no count is used twice (each difference starts where the previous one ended).
# The only limit: less than 2**31 HI LSB may pass between two reads (max_period_s() gives the longest safe period).
from micropython import const
import time

# --- Calibration registers, 32-bit signed; phase B = A + 0x20, C = A + 0x40 (ref §2e)
_AIGAIN = const(0x000)  # 32
_APHCAL0 = const(0x006)  # 32
_AVGAIN = const(0x00B)  # 32
_AIRMSOS = const(0x00C)  # 32
_AVRMSOS = const(0x00D)  # 32
_APGAIN = const(0x00E)  # 32
_AWATTOS = const(0x00F)  # 32
_PHASE_STRIDE = const(0x20)
# --- Configuration, 32-bit (ref §2d)
_CONFIG0 = const(0x060)  # 32
_NIRMSOS = const(0x06B)  # 32
_NIGAIN = const(0x06D)  # 32
_DICOEFF = const(0x072)  # 32
# --- Per-phase measurements, 32-bit two's complement (ref §2a)
_AIRMS = const(0x20C)  # 32, FS 52,702,092
_AVRMS = const(0x20D)  # 32
_AWATT = const(0x210)  # 32, FS 20,694,066, + import / - export
_AVAR = const(0x211)  # 32
_AVA = const(0x212)  # 32
_APF = const(0x216)  # 32, 5.27
_AVTHD = const(0x217)  # 32, 5.27
_AITHD = const(0x218)  # 32, 5.27
_NIRMS = const(0x266)  # 32
# --- Energy, 32 MSBs of the 45-bit accumulators; phase B = A + 0x3C, C = A + 0x78 (ref §2b)
_AWATTHR_HI = const(0x2E7)  # 32
_AVARHR_HI = const(0x2F1)  # 32
_AVAHR_HI = const(0x2FB)  # 32
_ENERGY_STRIDE = const(0x3C)
# --- Status, identification, levels, 32-bit (ref §2c)
_STATUS0 = const(0x402)  # 32, write-1-to-clear
_STATUS1 = const(0x403)  # 32, write-1-to-clear
_MASK0 = const(0x405)  # 32
_MASK1 = const(0x406)  # 32
_EVENT_MASK = const(0x407)  # 32
_OILVL = const(0x409)  # 32 (24 used)
_VLEVEL = const(0x40F)  # 32
_DIP_LVL = const(0x410)  # 32 (24 used)
_SWELL_LVL = const(0x414)  # 32 (24 used)
_COM_PERIOD = const(0x41B)  # 32, unsigned
_PART_ID = const(0x472)  # 32
# --- 16-bit registers 0x480-0x4FE (ref §1, §2c, §2d)
_RUN = const(0x480)  # 16
_CONFIG1 = const(0x481)  # 16
_ANGL_VA_VB = const(0x482)  # 16
_ANGL_VB_VC = const(0x483)  # 16
_ANGL_VA_VC = const(0x484)  # 16
_ANGL_VA_IA = const(0x485)  # 16
_ANGL_VB_IB = const(0x486)  # 16
_ANGL_VC_IC = const(0x487)  # 16
_DIP_CYC = const(0x48B)  # 16
_SWELL_CYC = const(0x48C)  # 16
_ACCMODE = const(0x492)  # 16
_CONFIG3 = const(0x493)  # 16
_ZX_LP_SEL = const(0x49A)  # 16
_SEQ_CYC = const(0x49C)  # 16
_WFB_CFG = const(0x4A0)  # 16
_CONFIG5 = const(0x4A4)  # 16, reset value 0x0063
_CONFIG2 = const(0x4AF)  # 16
_EP_CFG = const(0x4B0)  # 16
_EGY_TIME = const(0x4B2)  # 16
_TEMP_CFG = const(0x4B6)  # 16
_PGA_GAIN = const(0x4B9)  # 16

# --- Bits and values
_READ = const(0x0008)  # command word bit 3
_RSTDONE = const(0x10000)  # STATUS1 bit 16
_SWRST = const(0x0001)  # CONFIG1 bit 0
_PART_ID_ADE9000 = const(0x100000)  # PART_ID bit 20
_CONFIG5_RESET = const(0x0063)
_SELFREQ_60HZ = const(0x0100)  # ACCMODE bit 8 (0 = 50 Hz, ref §7 #1)
_VCONSEL_3W_DELTA = const(0x0010)  # ACCMODE VCONSEL 001: 3-wire delta, VB = VA - VC
_ICONSEL = const(0x0080)  # ACCMODE bit 7: IB = -IA - IC (no CT on phase B)
_EP_CFG_ACCUMULATE = const(0x0001)  # EGY_PWR_EN, add every interval into xHR (no read-with-reset)
_EGY_TIME_2_SAMPLES = const(0x0001)  # user registers follow the internal accumulator every 2 samples (0.25 ms)
_VLEVEL_X2 = const(0x0022EA28)  # nominal voltage at half of full scale (ref §4.7)
_OC_EN_ALL = const(0xF000)  # CONFIG3 OC_EN for A, B, C, N (bit order [?], all enabled)
# STATUS1 power-quality bits (ref §5)
_OI = const(17)
_SEQERR = const(18)
_SWELLA = const(20)
_DIPA = const(23)
PQ_STATUS_MASK = const(0x03F60000)  # OI, SEQERR, SWELLA..C, DIPA..C

# --- Full-scale codes (ref §3)
_RMS_FS = const(52702092)
_POWER_FS = const(20694066)
_F_DSP_HZ = const(8000)
_ANGLE_CLOCK_HZ = const(1024000)

# --- Fault reasons: what the Device entity's deviceState says (payload.py)
NO_RESPONSE = "no-response"  # MISO stays high: chip unpowered, unplugged or held in reset
CHIP_ID = "chip-id"  # something answers but it is not an ADE9000 (PART_ID / CONFIG5)
SPI_CRC = "spi-crc"  # a read failed its CRC-16 _RETRIES times in a row: noise on the bus
CHIP_RESET = "chip-reset"  # STATUS1.RSTDONE came back: the chip reset itself and lost its configuration
CONFIG = "config"  # configuration did not read back
_RETRIES = const(3)

# --- Sample slots: one SPI transaction each, laid out back to back in _tx/_rx. A slot is the 2-byte command, the
# data (4 bytes for 32-bit registers, 2 for 16-bit) and the 2-byte CRC the chip appends, so the data of slot k
# starts at off[k] + 2. The first _N_FAST slots are what an offline tick needs (status and energy).
STATUS1 = const(0)
ENERGY = const(1)  # 9 slots: phase * 3 + (0 active, 1 reactive, 2 apparent)
_N_FAST = const(10)
VRMS = const(10)  # per-phase slots: VRMS + phase * PER_PHASE + quantity
IRMS = const(11)
WATT = const(12)
VAR = const(13)
VA = const(14)
PF = const(15)
VTHD = const(16)
ITHD = const(17)
PER_PHASE = const(8)
NIRMS = const(34)
PERIOD = const(35)
ANGL_VV = const(36)  # VA-VB, VB-VC, VA-VC
ANGL_VI = const(39)  # VA-IA, VB-IB, VC-IC
_N_SLOTS = const(42)
_N_SLOTS_32 = const(36)  # slots 0..35 are 32-bit (8 bytes with CRC), 36..41 16-bit (6 bytes)
SNAPSHOT_BYTES = const(324)  # 36 * 8 + 6 * 6: bytes clocked for one full snapshot
FAST_BYTES = const(80)  # 10 * 8: an offline snapshot (status + energy)
# Energy counters, in xHR_HI LSBs: index = kind + phase
EAI = const(0)  # active import
EAE = const(3)  # active export
ERI = const(6)  # reactive import (reactive energy while its sign is positive)
ERE = const(9)  # reactive export
ESI = const(12)  # apparent energy while importing active power
ESE = const(15)  # apparent energy while exporting
N_COUNTERS = const(18)


def _is16(addr):
    return 0x480 <= addr <= 0x4FE


# CRC-16-CCITT table, big-endian pairs: _CRC_TABLE[2b] << 8 | _CRC_TABLE[2b + 1] is the CRC of byte b shifted
# through poly 0x1021 (generated once; a test checks it against the bitwise definition).
_CRC_TABLE = (
    b"\x00\x00\x10\x21\x20\x42\x30\x63\x40\x84\x50\xa5\x60\xc6\x70\xe7\x81\x08\x91\x29\xa1\x4a\xb1\x6b\xc1\x8c\xd1\xad\xe1\xce\xf1\xef"
    b"\x12\x31\x02\x10\x32\x73\x22\x52\x52\xb5\x42\x94\x72\xf7\x62\xd6\x93\x39\x83\x18\xb3\x7b\xa3\x5a\xd3\xbd\xc3\x9c\xf3\xff\xe3\xde"
    b"\x24\x62\x34\x43\x04\x20\x14\x01\x64\xe6\x74\xc7\x44\xa4\x54\x85\xa5\x6a\xb5\x4b\x85\x28\x95\x09\xe5\xee\xf5\xcf\xc5\xac\xd5\x8d"
    b"\x36\x53\x26\x72\x16\x11\x06\x30\x76\xd7\x66\xf6\x56\x95\x46\xb4\xb7\x5b\xa7\x7a\x97\x19\x87\x38\xf7\xdf\xe7\xfe\xd7\x9d\xc7\xbc"
    b"\x48\xc4\x58\xe5\x68\x86\x78\xa7\x08\x40\x18\x61\x28\x02\x38\x23\xc9\xcc\xd9\xed\xe9\x8e\xf9\xaf\x89\x48\x99\x69\xa9\x0a\xb9\x2b"
    b"\x5a\xf5\x4a\xd4\x7a\xb7\x6a\x96\x1a\x71\x0a\x50\x3a\x33\x2a\x12\xdb\xfd\xcb\xdc\xfb\xbf\xeb\x9e\x9b\x79\x8b\x58\xbb\x3b\xab\x1a"
    b"\x6c\xa6\x7c\x87\x4c\xe4\x5c\xc5\x2c\x22\x3c\x03\x0c\x60\x1c\x41\xed\xae\xfd\x8f\xcd\xec\xdd\xcd\xad\x2a\xbd\x0b\x8d\x68\x9d\x49"
    b"\x7e\x97\x6e\xb6\x5e\xd5\x4e\xf4\x3e\x13\x2e\x32\x1e\x51\x0e\x70\xff\x9f\xef\xbe\xdf\xdd\xcf\xfc\xbf\x1b\xaf\x3a\x9f\x59\x8f\x78"
    b"\x91\x88\x81\xa9\xb1\xca\xa1\xeb\xd1\x0c\xc1\x2d\xf1\x4e\xe1\x6f\x10\x80\x00\xa1\x30\xc2\x20\xe3\x50\x04\x40\x25\x70\x46\x60\x67"
    b"\x83\xb9\x93\x98\xa3\xfb\xb3\xda\xc3\x3d\xd3\x1c\xe3\x7f\xf3\x5e\x02\xb1\x12\x90\x22\xf3\x32\xd2\x42\x35\x52\x14\x62\x77\x72\x56"
    b"\xb5\xea\xa5\xcb\x95\xa8\x85\x89\xf5\x6e\xe5\x4f\xd5\x2c\xc5\x0d\x34\xe2\x24\xc3\x14\xa0\x04\x81\x74\x66\x64\x47\x54\x24\x44\x05"
    b"\xa7\xdb\xb7\xfa\x87\x99\x97\xb8\xe7\x5f\xf7\x7e\xc7\x1d\xd7\x3c\x26\xd3\x36\xf2\x06\x91\x16\xb0\x66\x57\x76\x76\x46\x15\x56\x34"
    b"\xd9\x4c\xc9\x6d\xf9\x0e\xe9\x2f\x99\xc8\x89\xe9\xb9\x8a\xa9\xab\x58\x44\x48\x65\x78\x06\x68\x27\x18\xc0\x08\xe1\x38\x82\x28\xa3"
    b"\xcb\x7d\xdb\x5c\xeb\x3f\xfb\x1e\x8b\xf9\x9b\xd8\xab\xbb\xbb\x9a\x4a\x75\x5a\x54\x6a\x37\x7a\x16\x0a\xf1\x1a\xd0\x2a\xb3\x3a\x92"
    b"\xfd\x2e\xed\x0f\xdd\x6c\xcd\x4d\xbd\xaa\xad\x8b\x9d\xe8\x8d\xc9\x7c\x26\x6c\x07\x5c\x64\x4c\x45\x3c\xa2\x2c\x83\x1c\xe0\x0c\xc1"
    b"\xef\x1f\xff\x3e\xcf\x5d\xdf\x7c\xaf\x9b\xbf\xba\x8f\xd9\x9f\xf8\x6e\x17\x7e\x36\x4e\x55\x5e\x74\x2e\x93\x3e\xb2\x0e\xd1\x1e\xf0"
)


def crc16(buf, start, n):
    """CRC-16-CCITT (poly 0x1021, seed 0xFFFF, MSB first) of buf[start:start+n], as the chip appends (ref §1)."""
    crc = 0xFFFF
    t = _CRC_TABLE
    for k in range(start, start + n):
        i = ((crc >> 8) ^ buf[k]) << 1
        crc = ((crc << 8) & 0xFFFF) ^ (t[i] << 8 | t[i + 1])
    return crc


class ChipError(OSError):
    """The ADE9000 failed in a way the meter reports as its device state; args[0] is one of the reasons above."""


class Scale:
    """Register code -> SI unit factors for one board (ref §3), computed once from the calibration."""

    def __init__(self, current_tf_v_per_a, neutral_tf_v_per_a, voltage_tf_v_per_v, pga_i=1, pga_n=1, pga_v=1):
        sqrt2 = 1.4142135623730951
        tf_i = current_tf_v_per_a * pga_i
        tf_v = voltage_tf_v_per_v * pga_v
        self.v_per_code = 1.0 / (tf_v * _RMS_FS * sqrt2)
        self.a_per_code = 1.0 / (tf_i * _RMS_FS * sqrt2)
        self.neutral_a_per_code = 1.0 / (neutral_tf_v_per_a * pga_n * _RMS_FS * sqrt2)
        # Factor 2: both channels at full scale give 0.5 V^2 at the pins.
        self.w_per_code = 1.0 / (tf_i * tf_v * _POWER_FS * 2)
        # One xHR_HI LSB is 2**13 samples of one power code at 8 kSPS.
        self.kwh_per_energy_lsb = self.w_per_code * 8192 / (_F_DSP_HZ * 3600.0 * 1000.0)
        self.fixed_5_27 = 1.0 / 134217728  # 2**-27
        self.hz_times_period = _F_DSP_HZ * 65536.0  # f = 8000 * 2**16 / (PERIOD + 1)
        self.deg_per_angle_count_hz = 360.0 / _ANGLE_CLOCK_HZ  # deg = ANGL * 360 * f / 1,024,000

    def max_period_s(self, max_power_w):
        """Longest sampling period for which the energy difference between two reads stays below 2**31 HI LSB
        at `max_power_w` per phase, halved for margin (the 45-bit accumulator overflows after 2**44 codes)."""
        codes = max_power_w / self.w_per_code
        return (2147483648 * 8192 / (codes * _F_DSP_HZ)) / 2

    def rms_half_level(self, volts, tf, pga):
        """DIP_LVL / SWELL_LVL / OILVL code for an RMS1/2 value: RMS code * 2**-5 (ref §5; RMS1/2 full scale
        assumed equal to the RMS full scale, ref §7 #8)."""
        return int(volts * tf * pga * _RMS_FS * 1.4142135623730951) >> 5


def pga_code(gain):
    """PGA_GAIN field for a gain of 1, 2 or 4 (ref §2d)."""
    if gain == 1:
        return 0
    if gain == 2:
        return 1
    if gain == 4:
        return 2
    raise ValueError("PGA gain must be 1, 2 or 4")


class Calibration:
    """What begin() writes: the board's transfer functions, PGA gains, gain/offset codes, and the grid it meters.

    Defaults are ADI's example board (EV-ADE9000SHIELDZ: CT 2500:1 with a 10.2 ohm burden, 0.00408 V/A; a
    divider giving 0.00125 V per line volt; PGA x1) on a 230 V / 50 Hz 4-wire grid with EN 50160 dip/swell
    levels. Gain codes are xIGAIN/xVGAIN/xPGAIN (factor 1 + code / 2**27), offsets are register codes, per
    phase (A, B, C). `scale` converts register codes to SI units for this calibration.
    """

    def __init__(self, current_tf_v_per_a=0.00408, neutral_tf_v_per_a=0.00408, voltage_tf_v_per_v=0.00125,
                 pga_current=1, pga_neutral=1, pga_voltage=1, igain=(0, 0, 0), vgain=(0, 0, 0), pgain=(0, 0, 0),
                 phcal=(0, 0, 0), irmsos=(0, 0, 0), vrmsos=(0, 0, 0), wattos=(0, 0, 0), nigain=0, nirmsos=0,
                 nominal_hz=50, nominal_v=230, wiring="3P4W", dip_pct=90, swell_pct=110, pq_cycles=2,
                 overcurrent_a=0):
        if wiring not in ("3P4W", "3P3W"):
            raise ValueError("wiring must be 3P4W or 3P3W")
        self.current_tf_v_per_a = current_tf_v_per_a
        self.voltage_tf_v_per_v = voltage_tf_v_per_v
        self.pga_current, self.pga_neutral, self.pga_voltage = pga_current, pga_neutral, pga_voltage
        self.igain, self.vgain, self.pgain, self.phcal = igain, vgain, pgain, phcal
        self.irmsos, self.vrmsos, self.wattos = irmsos, vrmsos, wattos
        self.nigain, self.nirmsos = nigain, nirmsos
        self.nominal_hz, self.nominal_v, self.wiring = nominal_hz, nominal_v, wiring
        self.dip_pct, self.swell_pct, self.pq_cycles = dip_pct, swell_pct, pq_cycles
        self.overcurrent_a = overcurrent_a  # 0: no overcurrent monitor
        self.scale = Scale(current_tf_v_per_a, neutral_tf_v_per_a, voltage_tf_v_per_v, pga_current, pga_neutral,
                           pga_voltage)


class ADE9000:
    """One ADE9000 on an SPI bus: checked register access, start-up, sampling into preallocated buffers."""

    def __init__(self, spi, cs, reset=None):
        self._spi = spi
        self._cs = cs
        self._reset = reset
        cs.value(1)
        # Single-register access: command + up to 4 data bytes + CRC.
        self._buf_tx = bytearray(8)
        self._buf_rx = bytearray(8)
        self._tx16 = memoryview(self._buf_tx)[:6]
        self._rx16 = memoryview(self._buf_rx)[:6]
        self._tx16w = memoryview(self._buf_tx)[:4]
        self._rx16w = memoryview(self._buf_rx)[:4]
        self._tx32w = memoryview(self._buf_tx)[:6]
        self._rx32w = memoryview(self._buf_rx)[:6]
        addrs = [_STATUS1]
        for phase in range(3):
            e = phase * _ENERGY_STRIDE
            addrs += [_AWATTHR_HI + e, _AVARHR_HI + e, _AVAHR_HI + e]
        for phase in range(3):
            b = phase * _PHASE_STRIDE
            addrs += [_AVRMS + b, _AIRMS + b, _AWATT + b, _AVAR + b, _AVA + b, _APF + b, _AVTHD + b, _AITHD + b]
        addrs += [_NIRMS, _COM_PERIOD, _ANGL_VA_VB, _ANGL_VB_VC, _ANGL_VA_VC, _ANGL_VA_IA, _ANGL_VB_IB, _ANGL_VC_IC]
        self._tx = bytearray(SNAPSHOT_BYTES)
        self._rx = bytearray(SNAPSHOT_BYTES)
        off = []
        o = 0
        for a in addrs:
            cmd = (a << 4) | _READ
            self._tx[o] = cmd >> 8
            self._tx[o + 1] = cmd & 0xFF
            off.append(o)
            o += 6 if _is16(a) else 8
        self._off = off
        self._txv = [memoryview(self._tx)[o:o + (6 if _is16(a) else 8)] for o, a in zip(off, addrs)]
        self._rxv = [memoryview(self._rx)[o:o + (6 if _is16(a) else 8)] for o, a in zip(off, addrs)]
        self._prev_hi = bytearray(36)  # last xHR_HI bytes of the 9 energy slots
        self.energy = [0] * N_COUNTERS  # EAI, EAE, ERI, ERE, ESI, ESE blocks of three phases, xHR_HI LSBs
        self.pq = 0  # STATUS1 power-quality bits seen since the caller last cleared this
        self.samples = 0
        self.crc_errors = 0  # reads that failed their CRC (retried)
        self.resets_seen = 0

    # ------------------------------------------------------------------ register access (ref §1)
    def _checked(self, tx, rx, n):
        """One read transaction, retried until the CRC of its n data bytes matches; raises ChipError."""
        cs = self._cs
        spi = self._spi
        for _ in range(_RETRIES):
            cs.value(0)
            spi.write_readinto(tx, rx)
            cs.value(1)
            c = (rx[2 + n] << 8) | rx[3 + n]
            if crc16(rx, 2, n) == c:
                return
            self.crc_errors += 1
        # All ones, CRC included: nothing drives MISO (the pull-up answers).
        for k in range(2, 4 + n):
            if rx[k] != 0xFF:
                raise ChipError(SPI_CRC)
        raise ChipError(NO_RESPONSE)

    def read(self, addr):
        """Read a register (16 or 32 bits by address), CRC-checked; 32-bit values are returned unsigned."""
        cmd = (addr << 4) | _READ
        tx = self._buf_tx
        tx[0] = cmd >> 8
        tx[1] = cmd & 0xFF
        rx = self._buf_rx
        if _is16(addr):
            self._checked(self._tx16, self._rx16, 2)
            return (rx[2] << 8) | rx[3]
        self._checked(tx, rx, 4)
        return (rx[2] << 24) | (rx[3] << 16) | (rx[4] << 8) | rx[5]

    def write(self, addr, value):
        """Write a register; negative values are written as two's complement. Writes carry no CRC (ref §1)."""
        cmd = addr << 4
        tx = self._buf_tx
        tx[0] = cmd >> 8
        tx[1] = cmd & 0xF0
        cs = self._cs
        cs.value(0)
        if _is16(addr):
            tx[2] = (value >> 8) & 0xFF
            tx[3] = value & 0xFF
            self._spi.write_readinto(self._tx16w, self._rx16w)
        else:
            value &= 0xFFFFFFFF
            tx[2] = value >> 24
            tx[3] = (value >> 16) & 0xFF
            tx[4] = (value >> 8) & 0xFF
            tx[5] = value & 0xFF
            self._spi.write_readinto(self._tx32w, self._rx32w)
        cs.value(1)

    def _write_checked(self, addr, value):
        self.write(addr, value)
        mask = 0xFFFF if _is16(addr) else 0xFFFFFFFF
        if self.read(addr) != value & mask:
            raise ChipError(CONFIG)

    # ------------------------------------------------------------------ start-up (ref §4)
    def identify(self):
        """Raise ChipError unless an ADE9000 answers (PART_ID bit 20 and CONFIG5 reset value, ref §4.3)."""
        if not self.read(_PART_ID) & _PART_ID_ADE9000:
            raise ChipError(CHIP_ID)

    def configured(self, cal):
        """True when the chip runs with exactly the configuration begin(cal) writes (used for a warm start)."""
        return (self.read(_RUN) == 1 and self.read(_EP_CFG) == _EP_CFG_ACCUMULATE
                and self.read(_ACCMODE) == self._accmode(cal) and not self.read(_STATUS1) & _RSTDONE)

    @staticmethod
    def _accmode(cal):
        mode = _SELFREQ_60HZ if cal.nominal_hz == 60 else 0
        if cal.wiring == "3P3W":
            mode |= _VCONSEL_3W_DELTA | _ICONSEL
        return mode

    def begin(self, cal, timeout_ms=1000):
        """Reset, identify, configure (ref §4 order) and start the DSP; energy counters continue from their values.

        cal: a Calibration (transfer functions, PGA gains, gain/offset codes, nominal grid, PQ thresholds).
        Raises ChipError (reason in args[0]) when no ADE9000 answers or the configuration does not read back.
        """
        self._do_reset(timeout_ms)
        self.identify()
        if self.read(_CONFIG5) != _CONFIG5_RESET:
            raise ChipError(CHIP_ID)
        self.write(_STATUS1, _RSTDONE)  # clear RSTDONE (write-1-to-clear)
        self.write(_RUN, 0)
        gi, gn, gv = pga_code(cal.pga_current), pga_code(cal.pga_neutral), pga_code(cal.pga_voltage)
        self._write_checked(_PGA_GAIN, gi | gi << 2 | gi << 4 | gn << 6 | gv << 8 | gv << 10 | gv << 12)
        self.write(_CONFIG0, 0)
        self.write(_CONFIG1, 0x0002)  # ZX on CF3
        self.write(_CONFIG2, 0x0C00)  # HPF corner 1.25 Hz
        self.write(_CONFIG3, _OC_EN_ALL if cal.overcurrent_a else 0)
        accmode = self._accmode(cal)
        self._write_checked(_ACCMODE, accmode)
        self.write(_TEMP_CFG, 0x000C)
        self.write(_ZX_LP_SEL, 0x001E)  # combined zero crossing, COM_PERIOD
        self.write(_MASK0, 0)
        self.write(_MASK1, 0)  # status bits are polled every sample; they latch in STATUS1 meanwhile
        self.write(_EVENT_MASK, 0)
        self.write(_WFB_CFG, 0x1000)
        self.write(_VLEVEL, _VLEVEL_X2)
        self.write(_DICOEFF, 0)
        for phase in range(3):
            b = phase * _PHASE_STRIDE
            self._write_checked(_AIGAIN + b, cal.igain[phase])
            self._write_checked(_AVGAIN + b, cal.vgain[phase])
            self._write_checked(_APGAIN + b, cal.pgain[phase])
            self.write(_APHCAL0 + b, cal.phcal[phase])
            self.write(_AIRMSOS + b, cal.irmsos[phase])
            self.write(_AVRMSOS + b, cal.vrmsos[phase])
            self.write(_AWATTOS + b, cal.wattos[phase])
        self._write_checked(_NIGAIN, cal.nigain)
        self.write(_NIRMSOS, cal.nirmsos)
        # Power-quality monitors (ref §5): levels are RMS1/2 codes * 2**-5.
        scale, tf_v, tf_i = cal.scale, cal.voltage_tf_v_per_v, cal.current_tf_v_per_a
        nominal = cal.nominal_v if cal.wiring == "3P4W" else cal.nominal_v * 1.7320508
        self.write(_DIP_LVL, scale.rms_half_level(nominal * cal.dip_pct / 100, tf_v, cal.pga_voltage))
        self.write(_SWELL_LVL, scale.rms_half_level(nominal * cal.swell_pct / 100, tf_v, cal.pga_voltage))
        self.write(_DIP_CYC, cal.pq_cycles)
        self.write(_SWELL_CYC, cal.pq_cycles)
        if cal.overcurrent_a:
            self.write(_OILVL, scale.rms_half_level(cal.overcurrent_a, tf_i, cal.pga_current))
        self.write(_SEQ_CYC, 1)  # ADI recommends 1 line cycle for the phase-sequence check
        self.write(_EGY_TIME, _EGY_TIME_2_SAMPLES)
        self._write_checked(_EP_CFG, _EP_CFG_ACCUMULATE)
        self.write(_STATUS0, 0xFFFFFFFF)
        self.write(_STATUS1, 0xFFFFFFFF)
        self._write_checked(_RUN, 1)
        self.resume()

    def resume(self):
        """Take the chip's current energy registers as the starting point of the counters (after begin or a
        warm start); raises ChipError."""
        self.sample(False, True)

    def _do_reset(self, timeout_ms):
        if self._reset is not None:
            self._reset.value(0)
            time.sleep_ms(50)  # ADI sketches hold RESET low 50 ms
            self._reset.value(1)
        else:
            self.write(_CONFIG1, _SWRST)
        start = time.ticks_ms()
        while True:  # ref §7 #7: poll RSTDONE rather than trust a fixed wait
            try:
                if self.read(_STATUS1) & _RSTDONE:
                    return
            except ChipError:
                pass
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                self.read(_PART_ID)  # raises NO_RESPONSE / SPI_CRC when that is why
                raise ChipError(CHIP_ID)  # answers but never signals RSTDONE: not an ADE9000
            time.sleep_ms(10)

    # ------------------------------------------------------------------ sampling (no objects created)
    def sample(self, full=True, baseline=False):
        """Read status, energy and (full=True) every measurement register, CRC-checked.

        Energy differences since the previous read go to the import/export counters; baseline=True only records
        the starting point. Raises ChipError: CHIP_RESET when the chip reset itself (configuration and energy
        since the last read are lost; the caller runs begin() again), NO_RESPONSE, SPI_CRC.
        """
        txv = self._txv
        rxv = self._rxv
        rx = self._rx
        n = _N_SLOTS if full else _N_FAST
        for k in range(n):
            self._checked(txv[k], rxv[k], 4 if k < _N_SLOTS_32 else 2)
        # STATUS1 first: after a reset the energy registers restarted from zero and must not be differenced.
        if rx[3] & 0x01:  # bit 16 RSTDONE
            self.resets_seen += 1
            raise ChipError(CHIP_RESET)
        pq = ((rx[2] << 8 | rx[3]) << 16) & PQ_STATUS_MASK  # bits 31..16 hold all PQ bits
        if pq:
            self.pq |= pq
            self.write(_STATUS1, pq)  # write-1-to-clear what we saw
        prev = self._prev_hi
        energy = self.energy
        for k in range(9):
            o = k * 8 + 10  # data of energy slot k: slot offset 8 * (k + 1) plus the 2 command bytes
            p = k * 4
            if not baseline:
                # Difference modulo 2**32, signed, from 16-bit halves so that it stays a small int.
                dh = ((rx[o] << 8 | rx[o + 1]) - (prev[p] << 8 | prev[p + 1])) & 0xFFFF
                if dh & 0x8000:
                    dh -= 0x10000
                d = (dh << 16) + ((rx[o + 2] << 8 | rx[o + 3]) - (prev[p + 2] << 8 | prev[p + 3]))
                phase = k // 3
                kind = k - phase * 3
                if kind == 0:
                    if d >= 0:
                        energy[EAI + phase] += d
                    else:
                        energy[EAE + phase] -= d
                    exporting = d < 0
                elif kind == 1:
                    if d >= 0:
                        energy[ERI + phase] += d
                    else:
                        energy[ERE + phase] -= d
                elif exporting:  # apparent energy follows the direction of the active energy
                    energy[ESE + phase] += d if d >= 0 else -d
                else:
                    energy[ESI + phase] += d if d >= 0 else -d
            prev[p] = rx[o]
            prev[p + 1] = rx[o + 1]
            prev[p + 2] = rx[o + 2]
            prev[p + 3] = rx[o + 3]
        self.samples += 1

    def raw(self, slot):
        """Signed code of a sampled 32-bit slot, or the unsigned count of a 16-bit angle slot."""
        o = self._off[slot] + 2
        rx = self._rx
        if slot >= _N_SLOTS_32:
            return (rx[o] << 8) | rx[o + 1]
        return (((rx[o] ^ 0x80) - 0x80) << 24) | (rx[o + 1] << 16) | (rx[o + 2] << 8) | rx[o + 3]
