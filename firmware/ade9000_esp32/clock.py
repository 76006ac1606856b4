# Wall clock of the meter: NTP sync (ntptime sets the RTC) and ISO 8601 TimeInstants.
# Until the first sync the RTC counts from the port's epoch after power-on; those times are never sent as
# TimeInstants (payloads then say "clk": false), and offline records taken meanwhile are shifted once the
# sync tells by how much the RTC was off (OfflineBuffer.shift_unsynced).
import time

_RESYNC_MS = 6 * 3600 * 1000  # RTC drift of an ESP32 is a few s/day: resync every 6 h
_RETRY_MS = 60 * 1000


class Clock:
    def __init__(self, ntp_host):
        self.ntp_host = ntp_host
        self.synced = False
        self._last_try_ms = None
        self._synced_ms = 0

    def due(self):
        """True when a sync should be attempted now (never synced, or the last sync is old)."""
        now = time.ticks_ms()
        if self._last_try_ms is not None and time.ticks_diff(now, self._last_try_ms) < _RETRY_MS:
            return False
        return not self.synced or time.ticks_diff(now, self._synced_ms) > _RESYNC_MS

    def sync(self):
        """Set the RTC from NTP; returns the correction in seconds, or None when NTP did not answer."""
        import ntptime

        self._last_try_ms = time.ticks_ms()
        ntptime.host = self.ntp_host
        before = time.time()
        try:
            ntptime.settime()
        except (OSError, OverflowError, IndexError) as exc:
            print("clock: NTP sync with %s failed (%s); retrying in %d s" % (self.ntp_host, exc, _RETRY_MS // 1000))
            return None
        self.synced = True
        self._synced_ms = self._last_try_ms
        return time.time() - before

    @staticmethod
    def now():
        """(seconds since the port's epoch, milliseconds) from the RTC."""
        ns = time.time_ns()
        s = ns // 1000000000
        return s, (ns // 1000000) % 1000


def iso(t_s, t_ms):
    """ISO 8601 UTC with milliseconds: the IoT Agent's TimeInstant."""
    t = time.gmtime(t_s)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], t_ms)
