# What survives a reboot: the energy counters, the chip's last energy readings and the offline buffer, mirrored
# into the ESP32's RTC slow memory after every sample (machine.RTC().memory(), 2048 bytes on the ESP32 port).
# RTC memory survives soft resets, watchdog and panic resets and deep sleep; it does NOT survive a power cut
# (docs/firmware.md, "What survives a reboot").
#
# Layout, little-endian (_HEAD then the buffer, then a CRC-16 of everything before it):
#   4s magic b"ET01" | 18Q counters | 36s last xHR_HI bytes | 6Q replay base counters | I base t_s | H base t_ms
#   | B head | B count | B level | 512s offline buffer | H crc                 = 4+144+36+48+4+2+3+512+2 = 755 bytes
from micropython import const
import struct

import machine

from ade9000 import N_COUNTERS, crc16
from offline import BUFFER_BYTES

_MAGIC = b"ET01"
_HEAD = "<4s18Q36s6QIHBBB"
_HEAD_BYTES = const(241)
_BLOB_BYTES = const(755)  # _HEAD_BYTES + BUFFER_BYTES + 2


class Persisted:
    """Save/restore the meter's state in RTC memory."""

    def __init__(self):
        self._rtc = machine.RTC()
        self._blob = bytearray(_BLOB_BYTES)

    def save(self, chip, base, base_t, buffer):
        b = self._blob
        e = chip.energy
        struct.pack_into(_HEAD, b, 0, _MAGIC, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10],
                         e[11], e[12], e[13], e[14], e[15], e[16], e[17], chip._prev_hi, base[0], base[1], base[2],
                         base[3], base[4], base[5], base_t[0], base_t[1], buffer.head, buffer.count, buffer.level)
        b[_HEAD_BYTES:_HEAD_BYTES + BUFFER_BYTES] = buffer.buf
        c = crc16(b, 0, _BLOB_BYTES - 2)
        b[_BLOB_BYTES - 2] = c >> 8
        b[_BLOB_BYTES - 1] = c & 0xFF
        self._rtc.memory(b)

    def restore(self, chip, base, base_t, buffer):
        """Load a saved state into the given objects; False when RTC memory holds none (power-on)."""
        b = self._rtc.memory()
        if len(b) != _BLOB_BYTES or b[:4] != _MAGIC or crc16(b, 0, _BLOB_BYTES - 2) != (b[-2] << 8 | b[-1]):
            return False
        r = struct.unpack_from(_HEAD, b, 0)
        for k in range(N_COUNTERS):
            chip.energy[k] = r[1 + k]
        chip._prev_hi[:] = r[19]
        for k in range(6):
            base[k] = r[20 + k]
        base_t[0] = r[26]
        base_t[1] = r[27]
        buffer.head, buffer.count, buffer.level = r[28], r[29], r[30]
        buffer.buf[:] = b[_HEAD_BYTES:_HEAD_BYTES + BUFFER_BYTES]
        return True
