# The offline buffer: fixed-size binary records in one preallocated 512-byte bytearray, kept while WiFi or MQTT
# is down and replayed oldest-first when the link is back.
#
# A record holds the CUMULATIVE active energy counters at the time it was taken, not the energy of its
# interval. That is what makes merging exact: merging two neighbours keeps the later one's counters (the energy
# of both intervals is the difference to the record before them), so no count is ever added, dropped or rounded;
# only the time resolution between them is lost. Counters are stored modulo 2**40 (uint32 low word + uint8 high
# byte): the replay rebuilds the full value from the last published one, which is exact while less than 2**40
# LSB (1.48 MWh with ADI's board, 4.7 mW code) pass between two records.
#
# Record layout, little-endian, no padding (_RECORD):
#   I  t_s       seconds since the port's epoch (RTC) at the end of the interval  4
#   H  t_ms      milliseconds                                                      2
#   B  pq        power-quality flags seen during the interval (wire.PQ_FLAGS)     1
#   B  flags     _UNSYNCED: t_s is not NTP time yet; _FAULT: the chip reset      1
#   6I low words of EAI L1..L3, EAE L1..L3 (xHR_HI LSBs)                          24
#   6B high bytes (bits 32..39) of the same counters                              6
#                                                                          total 38 bytes
# Budget: 512 // 38 = 13 records = 494 bytes, 18 bytes spare. The head/count/level live outside the buffer.
#
# Adaptive period: a record covers at least interval_s = period_s * 2**level. While the newest record is younger
# than that, a new reading replaces it (its counters are cumulative, so nothing is lost). When all 13 slots are
# full, neighbours are merged pairwise starting with the oldest (13 -> 7 records) and the level goes up by one:
# the buffer always spans the whole outage with roughly even spacing, and k fills cover about 6 * 2**k periods
# (24 h at 1 s needs 14 levels; records are then ~2.3 h apart).
from micropython import const
import struct

_RECORD = "<IHBB6I6B"
RECORD_BYTES = const(38)
BUFFER_BYTES = const(512)
CAPACITY = const(13)  # BUFFER_BYTES // RECORD_BYTES
UNSYNCED = const(1)
FAULT = const(2)
_MASK40 = const(0xFFFFFFFFFF)


class OfflineBuffer:
    """Ring of CAPACITY records in a 512-byte bytearray, with the adaptive record interval."""

    def __init__(self, period_s):
        self.buf = bytearray(BUFFER_BYTES)
        self.period_s = period_s
        self.head = 0
        self.count = 0
        self.level = 0
        self.merges = 0
        self._c = [0] * 12  # scratch for unpacking counters

    @property
    def interval_s(self):
        return self.period_s * (1 << self.level)

    def _pos(self, i):
        return ((self.head + i) % CAPACITY) * RECORD_BYTES

    def add(self, t_s, t_ms, pq, flags, energy):
        """Store a reading (energy: the chip's counter list, EAI..EAE first); merges when full."""
        n = self.count
        # The newest record is still inside its interval (measured from the record before it): replace it,
        # keeping its flags and PQ bits.
        if n > 1:
            t0, ms0 = struct.unpack_from("<IH", self.buf, self._pos(n - 2))
            if (t_s - t0) * 1000 + t_ms - ms0 < self.interval_s * 1000:
                o = self._pos(n - 1)
                self._write(o, t_s, t_ms, pq | self.buf[o + 6], flags | self.buf[o + 7], energy)
                return
        if n == CAPACITY:
            self._merge()
            n = self.count
        self._write(self._pos(n), t_s, t_ms, pq, flags, energy)
        self.count = n + 1

    def _write(self, o, t_s, t_ms, pq, flags, e):
        struct.pack_into(_RECORD, self.buf, o, t_s, t_ms, pq, flags,
                         e[0] & 0xFFFFFFFF, e[1] & 0xFFFFFFFF, e[2] & 0xFFFFFFFF,
                         e[3] & 0xFFFFFFFF, e[4] & 0xFFFFFFFF, e[5] & 0xFFFFFFFF,
                         (e[0] >> 32) & 0xFF, (e[1] >> 32) & 0xFF, (e[2] >> 32) & 0xFF,
                         (e[3] >> 32) & 0xFF, (e[4] >> 32) & 0xFF, (e[5] >> 32) & 0xFF)

    def _merge(self):
        """Merge neighbours pairwise, oldest first: record j = later of (2j, 2j+1), flags and PQ bits OR-ed."""
        buf = self.buf
        n = self.count
        for j in range(n // 2):
            a = self._pos(2 * j)
            b = self._pos(2 * j + 1)
            pq = buf[a + 6] | buf[b + 6]
            flags = buf[a + 7] | buf[b + 7]
            d = self._pos(j)
            buf[d:d + RECORD_BYTES] = buf[b:b + RECORD_BYTES]
            buf[d + 6] = pq
            buf[d + 7] = flags
        if n & 1:
            d = self._pos(n // 2)
            s = self._pos(n - 1)
            buf[d:d + RECORD_BYTES] = buf[s:s + RECORD_BYTES]
        self.count = (n + 1) // 2
        self.level += 1
        self.merges += 1

    def get(self, i, base):
        """Record i (0 = oldest) as (t_s, t_ms, pq, flags, counters); counters rebuilt from `base`, the full
        counters before it (6 values), and returned in a list reused by the next call."""
        o = self._pos(i)
        r = struct.unpack_from(_RECORD, self.buf, o)
        c = self._c
        for k in range(6):
            stored = r[4 + k] | (r[10 + k] << 32)
            c[k] = base[k] + ((stored - base[k]) & _MASK40)
        return r[0], r[1], r[2], r[3], c

    def drop(self, n):
        """Forget the n oldest records (they were delivered); back to the normal period when empty."""
        self.head = (self.head + n) % CAPACITY
        self.count -= n
        if self.count == 0:
            self.head = 0
            self.level = 0

    def shift_unsynced(self, delta_s, still_unsynced=False):
        """The clock was just set by NTP: move records taken before by the correction, and mark them synced
        (unless the clock still waits for a second answer to confirm a large step: Clock.sync)."""
        for i in range(self.count):
            o = self._pos(i)
            if self.buf[o + 7] & UNSYNCED:
                t = struct.unpack_from("<I", self.buf, o)[0]
                struct.pack_into("<I", self.buf, o, t + delta_s)
                if not still_unsynced:
                    self.buf[o + 7] &= ~UNSYNCED & 0xFF

    def unsynced(self):
        """True when some record still has a time that is not NTP time."""
        for i in range(self.count):
            if self.buf[self._pos(i) + 7] & UNSYNCED:
                return True
        return False
