# `ntptime` for the firmware under MicroPython/wasm: settime() sets the emulated RTC to the host's UTC, or
# raises OSError(ETIMEDOUT) when the test made NTP unreachable.
host = "pool.ntp.org"
timeout = 1
_host = None


def bind(h):
    global _host
    _host = h


def settime():
    if not _host("ntp", host):
        raise OSError(110)
