# ADE9000 three-phase energy metering IC: SPI driver for MicroPython (ESP32, MicroPython >= 1.22).
#
# Facts from shared/reference/ade9000.md (cited "ref §n"): SPI framing §1, registers §2, transfer functions §3,
# start-up §4. Buffers are allocated once; sample() reads every measurement register into one preallocated
# receive buffer and folds the read-with-reset energy registers into per-phase import/export counters, so the
# sampling path creates no objects (while the counters stay below 2**30 LSB = 1447 kWh per phase with ADI's
# example board; beyond that MicroPython promotes them to long ints, which is fine outside an interrupt).
from micropython import const
import struct
import time

# --- Calibration registers, 32-bit signed; phase B = A + 0x20, C = A + 0x40 (ref §2e)
_AIGAIN = const(0x000)  # 32
_AVGAIN = const(0x00B)  # 32
_APGAIN = const(0x00E)  # 32
_PHASE_STRIDE = const(0x20)
# --- Configuration, 32-bit (ref §2d)
_CONFIG0 = const(0x060)  # 32
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
_ENERGY_STRIDE = const(0x3C)
# --- Status, identification, levels, 32-bit (ref §2c)
_STATUS0 = const(0x402)  # 32, write-1-to-clear
_STATUS1 = const(0x403)  # 32, write-1-to-clear
_MASK0 = const(0x405)  # 32
_MASK1 = const(0x406)  # 32
_EVENT_MASK = const(0x407)  # 32
_VLEVEL = const(0x40F)  # 32
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
_ACCMODE = const(0x492)  # 16
_CONFIG3 = const(0x493)  # 16
_ZX_LP_SEL = const(0x49A)  # 16
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
_EP_CFG_READ_WITH_RESET = const(0x0021)  # EGY_PWR_EN + RD_RST_EN: xHR_HI accumulates, clears when read
_EGY_TIME_READ_WITH_RESET = const(0x0001)
_VLEVEL_X2 = const(0x0022EA28)  # nominal voltage at half of full scale (ref §4.7)

# --- Full-scale codes (ref §3)
_RMS_FS = const(52702092)
_POWER_FS = const(20694066)
_F_DSP_HZ = const(8000)
_ANGLE_CLOCK_HZ = const(1024000)

# --- Sample slots: one SPI transaction each, laid out back to back in _tx/_rx. A slot is the 2-byte command
# followed by the data (4 bytes for 32-bit registers, 2 for 16-bit), so the data of slot k starts at off[k] + 2.
VRMS = const(0)  # per-phase slots: PHASE * 8 + quantity
IRMS = const(1)
WATT = const(2)
VAR = const(3)
VA = const(4)
PF = const(5)
VTHD = const(6)
ITHD = const(7)
PER_PHASE = const(8)
NIRMS = const(24)
PERIOD = const(25)
ANGL_VV = const(26)  # VA-VB, VB-VC, VA-VC
ANGL_VI = const(29)  # VA-IA, VB-IB, VC-IC
_N_SLOTS = const(32)
_N_SLOTS_32 = const(26)  # slots 0..25 are 32-bit, 26..31 16-bit
_SAMPLE_BYTES = const(180)  # 26 * 6 + 6 * 4
_N_ENERGY = const(6)  # WATTHR_HI and VARHR_HI for three phases, read with reset
# Energy counters, in xHR_HI LSBs: index = kind * 3 + phase
EAI = const(0)  # active import
EAE = const(3)  # active export
ERI = const(6)  # reactive import
ERE = const(9)  # reactive export


def _is16(addr):
    return 0x480 <= addr <= 0x4FE


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


def pga_code(gain):
    """PGA_GAIN field for a gain of 1, 2 or 4 (ref §2d)."""
    if gain == 1:
        return 0
    if gain == 2:
        return 1
    if gain == 4:
        return 2
    raise ValueError("PGA gain must be 1, 2 or 4")


class ADE9000:
    """One ADE9000 on an SPI bus: register access, start-up, sampling into preallocated buffers."""

    def __init__(self, spi, cs, reset=None):
        self._spi = spi
        self._cs = cs
        self._reset = reset
        cs.value(1)
        # Single-register access: command + up to 4 data bytes.
        self._buf_tx = bytearray(6)
        self._buf_rx = bytearray(6)
        self._tx16 = memoryview(self._buf_tx)[:4]
        self._rx16 = memoryview(self._buf_rx)[:4]
        # Sampling: all slots' commands prebuilt once.
        addrs = []
        for phase in range(3):
            b = phase * _PHASE_STRIDE
            addrs += [_AVRMS + b, _AIRMS + b, _AWATT + b, _AVAR + b, _AVA + b, _APF + b, _AVTHD + b, _AITHD + b]
        addrs += [_NIRMS, _COM_PERIOD, _ANGL_VA_VB, _ANGL_VB_VC, _ANGL_VA_VC, _ANGL_VA_IA, _ANGL_VB_IB, _ANGL_VC_IC]
        self._tx = bytearray(_SAMPLE_BYTES)
        self._rx = bytearray(_SAMPLE_BYTES)
        self._off = self._prebuild(addrs, self._tx)
        self._txv = [memoryview(self._tx)[o:o + (4 if _is16(a) else 6)] for o, a in zip(self._off, addrs)]
        self._rxv = [memoryview(self._rx)[o:o + (4 if _is16(a) else 6)] for o, a in zip(self._off, addrs)]
        e_addrs = []
        for phase in range(3):
            e_addrs += [_AWATTHR_HI + phase * _ENERGY_STRIDE, _AVARHR_HI + phase * _ENERGY_STRIDE]
        self._etx = bytearray(6 * _N_ENERGY)
        self._erx = bytearray(6 * _N_ENERGY)
        self._eoff = self._prebuild(e_addrs, self._etx)
        self._etxv = [memoryview(self._etx)[o:o + 6] for o in self._eoff]
        self._erxv = [memoryview(self._erx)[o:o + 6] for o in self._eoff]
        self.energy = [0] * 12  # EAI, EAE, ERI, ERE blocks of three phases, xHR_HI LSBs
        self.samples = 0

    @staticmethod
    def _prebuild(addrs, tx):
        offsets = []
        o = 0
        for a in addrs:
            cmd = (a << 4) | _READ
            tx[o] = cmd >> 8
            tx[o + 1] = cmd & 0xFF
            offsets.append(o)
            o += 4 if _is16(a) else 6
        return offsets

    # ------------------------------------------------------------------ register access (ref §1)
    def _transfer(self, tx, rx):
        self._cs.value(0)
        try:
            self._spi.write_readinto(tx, rx)
        finally:
            self._cs.value(1)

    def read(self, addr):
        """Read a register (16 or 32 bits by address); 32-bit values are returned unsigned."""
        cmd = (addr << 4) | _READ
        tx = self._buf_tx
        tx[0] = cmd >> 8
        tx[1] = cmd & 0xFF
        for k in range(2, 6):
            tx[k] = 0
        rx = self._buf_rx
        if _is16(addr):
            self._transfer(self._tx16, self._rx16)
            return (rx[2] << 8) | rx[3]
        self._transfer(self._buf_tx, self._buf_rx)
        return struct.unpack_from(">I", rx, 2)[0]

    def write(self, addr, value):
        """Write a register; negative values are written as two's complement."""
        cmd = addr << 4
        tx = self._buf_tx
        tx[0] = cmd >> 8
        tx[1] = cmd & 0xF0
        if _is16(addr):
            tx[2] = (value >> 8) & 0xFF
            tx[3] = value & 0xFF
            self._transfer(self._tx16, self._rx16)
        else:
            struct.pack_into(">I", tx, 2, value & 0xFFFFFFFF)
            self._transfer(self._buf_tx, self._buf_rx)

    # ------------------------------------------------------------------ start-up (ref §4)
    def begin(self, nominal_hz=50, pga=(1, 1, 1), gains=None, timeout_ms=1000):
        """Reset, check the chip, configure for 3-phase 4-wire wye and start the DSP (RUN=1).

        pga: (current, neutral, voltage) PGA gains. gains: dict of per-phase lists "igain", "vgain", "pgain"
        and "nigain" (register codes, factor 1 + code/2**27) from the board calibration.
        Raises OSError when no ADE9000 answers or the configuration does not read back.
        """
        self._do_reset(timeout_ms)
        if self.read(_CONFIG5) != _CONFIG5_RESET or not self.read(_PART_ID) & _PART_ID_ADE9000:
            raise OSError("ADE9000 not found: CONFIG5/PART_ID mismatch; check SPI wiring and power")
        self.write(_STATUS1, _RSTDONE)  # clear RSTDONE (write-1-to-clear)
        self.write(_RUN, 0)
        gi, gn, gv = pga_code(pga[0]), pga_code(pga[1]), pga_code(pga[2])
        self.write(_PGA_GAIN, gi | gi << 2 | gi << 4 | gn << 6 | gv << 8 | gv << 10 | gv << 12)
        self.write(_CONFIG0, 0)
        self.write(_CONFIG1, 0x0002)  # ZX on CF3
        self.write(_CONFIG2, 0x0C00)  # HPF corner 1.25 Hz
        self.write(_CONFIG3, 0)
        accmode = _SELFREQ_60HZ if nominal_hz == 60 else 0  # 4-wire wye, signed accumulation
        self.write(_ACCMODE, accmode)
        self.write(_TEMP_CFG, 0x000C)
        self.write(_ZX_LP_SEL, 0x001E)  # combined zero crossing, COM_PERIOD
        self.write(_MASK0, 0)
        self.write(_MASK1, 0)
        self.write(_EVENT_MASK, 0)
        self.write(_WFB_CFG, 0x1000)
        self.write(_VLEVEL, _VLEVEL_X2)
        self.write(_DICOEFF, 0)
        if gains:
            for phase in range(3):
                b = phase * _PHASE_STRIDE
                self.write(_AIGAIN + b, gains.get("igain", (0, 0, 0))[phase])
                self.write(_AVGAIN + b, gains.get("vgain", (0, 0, 0))[phase])
                self.write(_APGAIN + b, gains.get("pgain", (0, 0, 0))[phase])
            self.write(_NIGAIN, gains.get("nigain", 0))
        self.write(_EGY_TIME, _EGY_TIME_READ_WITH_RESET)
        self.write(_EP_CFG, _EP_CFG_READ_WITH_RESET)
        if self.read(_ACCMODE) != accmode or self.read(_EP_CFG) != _EP_CFG_READ_WITH_RESET:
            raise OSError("ADE9000 configuration did not read back; check SPI signal integrity")
        self.write(_STATUS0, 0xFFFFFFFF)
        self.write(_STATUS1, 0xFFFFFFFF)
        self.write(_RUN, 1)
        if self.read(_RUN) != 1:
            raise OSError("ADE9000 did not start (RUN reads 0)")
        # Discard energy accumulated before the counters are ours.
        self.sample()
        for k in range(12):
            self.energy[k] = 0

    def _do_reset(self, timeout_ms):
        if self._reset is not None:
            self._reset.value(0)
            time.sleep_ms(50)  # ADI sketches hold RESET low 50 ms
            self._reset.value(1)
        else:
            self.write(_CONFIG1, _SWRST)
        start = time.ticks_ms()
        while not self.read(_STATUS1) & _RSTDONE:  # ref §7 #7: poll RSTDONE rather than trust a fixed wait
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                raise OSError("ADE9000 reset did not complete (STATUS1.RSTDONE never set)")
            time.sleep_ms(1)

    # ------------------------------------------------------------------ sampling (no allocation)
    def sample(self):
        """Read all measurement registers into the receive buffer and fold the energy deltas into counters."""
        cs = self._cs
        spi = self._spi
        txv = self._txv
        rxv = self._rxv
        for k in range(_N_SLOTS):
            cs.value(0)
            spi.write_readinto(txv[k], rxv[k])
            cs.value(1)
        etxv = self._etxv
        erxv = self._erxv
        erx = self._erx
        energy = self.energy
        for k in range(_N_ENERGY):
            cs.value(0)
            spi.write_readinto(etxv[k], erxv[k])
            cs.value(1)
            o = k * 6 + 2
            # Signed 32-bit delta built from a signed top byte so it stays a small int for realistic deltas.
            d = ((((erx[o] ^ 0x80) - 0x80) << 8 | erx[o + 1]) << 8 | erx[o + 2]) << 8 | erx[o + 3]
            phase = k >> 1
            base = 6 if k & 1 else 0  # active -> EAI/EAE, reactive -> ERI/ERE
            if d >= 0:
                energy[base + phase] += d
            else:
                energy[base + 3 + phase] -= d
        self.samples += 1

    def raw(self, slot):
        """Signed code of a sampled 32-bit slot, or the unsigned count of a 16-bit angle slot."""
        o = self._off[slot] + 2
        if slot >= _N_SLOTS_32:
            return (self._rx[o] << 8) | self._rx[o + 1]
        return struct.unpack_from(">i", self._rx, o)[0]
