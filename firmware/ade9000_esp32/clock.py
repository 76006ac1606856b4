# Wall clock of the meter: NTP sync (ntptime sets the RTC) and ISO 8601 TimeInstants.
# Until the first sync the RTC counts from the port's epoch after power-on; those times are never sent as
# TimeInstants (payloads then say "clk": false), and offline records taken meanwhile are shifted once the
# sync tells by how much the RTC was off (OfflineBuffer.shift_unsynced).
#
# Clock jumps. A TimeInstant is sent only when it is true, so the clock stops counting as synced when
# - the RTC jumps against the monotonic ticks between two readings (both run off the same crystal, so they agree
#   to the millisecond unless something set the RTC): check() sees it at the first reading after the jump, that
#   reading already goes without TimeInstant ("clk": false; the agent stamps its arrival) and NTP is asked again
#   at once;
# - NTP steps a synced clock by more than _MAX_STEP_S (the ESP32's crystal drifts ~2 s/day and it resyncs every
#   6 h, so a bigger step is a wrong server or a wrong answer): the step is believed only when the next answer,
#   a minute later, agrees with it (or with the time before the step: then the doubted answer was the wrong
#   one). Meanwhile readings go without TimeInstant and offline records stay unsynced, moved by every
#   correction, so they end up on the time base NTP confirmed.
#
# Small steps back. NTP stepping a synced clock back by up to _MAX_STEP_S (a drift correction, or the time base
# coming back after a doubted step) would send true times that fall before readings already sent on the drifted
# clock: the twin's current value would briefly go back to an older reading. Instead the published time is slewed
# (as NTP's adjtime does): stamp() adds what the clock was ahead, and that lead shrinks by 1 ms per _SLEW_DIV ms
# of ticks, so stamped times keep rising at 0.9x the true rate and meet the true time after _SLEW_DIV times the
# step (20 s back: 200 s). Readings keep their spacing to within 10 % (energy per interval stays sane), and the
# lead is bounded: a step back beyond _MAX_STEP_S (a wrong base being corrected) is taken at once.
import time

_RESYNC_MS = 6 * 3600 * 1000  # RTC drift of an ESP32 is a few s/day: resync every 6 h
_RETRY_MS = 60 * 1000
_JUMP_MS = 2000  # RTC against ticks between two readings: beyond this the RTC was set by something else
_MAX_STEP_S = 60  # an NTP step of a synced clock beyond this waits for a second answer that agrees
_SLEW_DIV = 10  # while slewing, the published time loses 1 ms per this many ms


class Clock:
    def __init__(self, ntp_host):
        self.ntp_host = ntp_host
        self.synced = False
        self._last_try_ms = None
        self._synced_ms = 0
        self.jumps = 0  # RTC jumps seen against the ticks, and NTP steps not believed at once
        self._doubt = False  # the last NTP answer stepped a synced clock too far: the next must confirm it
        self._step = 0  # while in doubt: seconds between the RTC and the time base before the doubted step
        self._anchor = None  # (seconds, ms, ticks) of the last reading check() saw
        # The last stamped time (ms since the epoch) and its ticks; and the slew: lead in ms at _slew[1] ticks
        self._pub = [0, 0]
        self._published = False
        self._slew = [0, 0]
        self.slews = 0  # steps back taken by slewing

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
        delta = time.time() - before
        self._anchor = None  # the RTC was set on purpose: not a jump
        self._synced_ms = self._last_try_ms
        if self._doubt and -_MAX_STEP_S <= delta + self._step <= _MAX_STEP_S:
            delta_ok = True  # back on the time base before the doubted step: that answer was the wrong one
        else:
            delta_ok = -_MAX_STEP_S <= delta <= _MAX_STEP_S or not (self.synced or self._doubt)
        if not delta_ok:
            if not self._doubt:
                self.jumps += 1
                self._step = 0
            self._step += delta  # how far the RTC now is from the time base before the doubted step
            print("clock: NTP (%s) stepped the clock by %d s; not believed until the next answer agrees"
                  % (self.ntp_host, delta))
            self.synced = False
            self._doubt = True
            return delta
        self.synced = True
        self._doubt = False
        self._slew_from_last_stamp()
        return delta

    def _slew_from_last_stamp(self):
        # Where the published clock would be now had it kept running, against the RTC just set: a lead to slew off.
        if not self._published:
            return
        now = time.ticks_ms()
        since = time.ticks_diff(now, self._pub[1])
        if since < 0:  # ticks wrapped (nothing stamped for days): nothing to keep in order with
            self._published = False
            return
        s, ms = Clock.now()
        lead = self._pub[0] + since - (s * 1000 + ms)
        if lead <= 0:
            self._slew[0] = 0
        elif lead > _MAX_STEP_S * 1000:
            self._slew[0] = 0
            self._published = False  # the times sent were on a wrong base: the true ones may fall before them
            print("clock: %d ms back from the last sent time; taken at once (beyond %d s)" % (lead, _MAX_STEP_S))
        else:
            self._slew[0] = lead
            self._slew[1] = now
            self.slews += 1
            print("clock: %d ms back from the last sent time; slewed over %d s" % (lead, lead * _SLEW_DIV // 1000))

    def stamp(self, t_s, t_ms, tick_ms):
        """The time to send for a reading whose RTC time is (t_s, t_ms), taken at tick_ms: the RTC's, plus what
        is left of a step back being slewed off; never before a time already stamped."""
        t = t_s * 1000 + t_ms
        lead = self._slew[0]
        if lead:
            since = time.ticks_diff(tick_ms, self._slew[1])  # < 0: read just before the step was made
            left = lead - since // _SLEW_DIV if since > 0 else lead
            if left <= 0:  # slewed off
                self._slew[0] = 0
            else:
                t += left
        if self._published and t <= self._pub[0] and time.ticks_diff(tick_ms, self._pub[1]) >= 0:
            t = self._pub[0] + 1  # two readings in the same ms, or a step within the slew's rounding
        self._pub[0] = t
        self._pub[1] = tick_ms
        self._published = True
        return t // 1000, t % 1000

    def check(self, t_s, t_ms, tick_ms):
        """Compare the RTC time of a reading with the ticks since the previous one; returns whether the
        clock counts as synced (False from a jump on, until NTP sets it again)."""
        anchor = self._anchor
        self._anchor = (t_s, t_ms, tick_ms)
        if anchor is None or not self.synced:
            return self.synced
        off = (t_s - anchor[0]) * 1000 + (t_ms - anchor[1]) - time.ticks_diff(tick_ms, anchor[2])
        if -_JUMP_MS <= off <= _JUMP_MS:
            return True
        self.jumps += 1
        self.synced = False
        self._last_try_ms = None  # ask NTP at the next chance
        print("clock: the RTC jumped %d ms against the running ticks; readings go without TimeInstant until "
              "NTP sets the clock again" % off)
        return False

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
