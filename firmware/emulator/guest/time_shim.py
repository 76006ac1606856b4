# `time` for the firmware under MicroPython/wasm: ticks and the RTC follow the emulator's clock (the ADE9000
# model's simulated time), so hours of outage pass in milliseconds and TimeInstants are reproducible.
# sleep_ms() advances that clock. Formatting (gmtime/localtime/mktime) is the real module's.
import time as _real

_TICKS_PERIOD = 1 << 30
_TICKS_MAX = _TICKS_PERIOD - 1
_TICKS_HALF = _TICKS_PERIOD // 2
_host = None  # (op, arg) -> value; ops "ticks", "rtc_ms", "sleep"


def bind(host):
    global _host
    _host = host


def ticks_ms():
    return _host("ticks", 0)


def ticks_us():
    return (ticks_ms() * 1000) & _TICKS_MAX


def ticks_cpu():
    return ticks_us()


def ticks_add(ticks, delta):
    return (ticks + delta) & _TICKS_MAX


def ticks_diff(end, start):
    d = (end - start) & _TICKS_MAX
    return d - _TICKS_PERIOD if d >= _TICKS_HALF else d


def sleep_ms(ms):
    _host("sleep", ms)


def sleep_us(us):
    _host("sleep", us // 1000)


def sleep(s):
    _host("sleep", int(s * 1000))


def time():
    return _host("rtc_ms", 0) // 1000


def time_ns():
    return _host("rtc_ms", 0) * 1000000


gmtime = _real.gmtime
localtime = _real.localtime
mktime = _real.mktime
