# `machine` for the firmware under MicroPython/wasm: SPI, Pin, Timer backed by the host (firmware/emulator).
#
# The harness imports this module, binds the host functions with bind(), and installs it as
# sys.modules['machine'] before the firmware is imported. The firmware cannot tell it from the ESP32 port's
# module for the calls it makes. Transaction framing: a falling edge on a pin registered with cs_pin() starts a new
# SPI transaction on its bus, the rising edge ends it, so the ADE9000 model sees whole /SS-low..high transactions.
import micropython
from micropython import const

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

_host_spi = None  # (bus_id, op, hex) -> hex ; op: "select" / "clock" / "deselect"
_host_pin = None  # (pin_id, value) for pins that are not chip selects (RESET, PM0/PM1, LEDs)
_UNIQUE_ID = b"\x24\x0a\xc4\x00\x00\x01"
_CS_BUS = {}  # pin id -> SPI bus id
_CS_STATE = {}  # bus id -> 0 deselected, 1 selected (nothing clocked yet), 2 inside a transaction
_host_sys = None  # (op, arg) -> value for the RTC: "rtc_mem_get", "rtc_mem_set"

# Timers the firmware armed; the harness fires them with fire_timer(). Preallocated state so the interrupt
# emulation itself never allocates while the heap is locked.
_TIMERS = []
_irq_state = [None, 0, None]  # [error raised by the handler, handler runs, timer being fired]


def bind(spi, pin, unique_id=None):
    """Connect the shim to the host functions (called once by the harness)."""
    global _host_spi, _host_pin, _UNIQUE_ID
    _host_spi = spi
    _host_pin = pin
    if unique_id is not None:
        _UNIQUE_ID = unique_id


def bind_sys(host):
    """Connect RTC memory to the host (it survives reboot(), like the ESP32's RTC slow memory)."""
    global _host_sys
    _host_sys = host


def cs_pin(pin_id, bus_id):
    """Declare `pin_id` as the chip select of SPI bus `bus_id` (the harness knows the board wiring)."""
    _CS_BUS[pin_id] = bus_id


class Pin:
    IN = const(1)
    OUT = const(3)
    OPEN_DRAIN = const(7)
    PULL_UP = const(2)
    PULL_DOWN = const(1)
    IRQ_RISING = const(1)
    IRQ_FALLING = const(2)

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self._id = id
        self._value = None
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return 1 if self._value else 0
        v = 1 if v else 0
        if v == self._value:
            return None
        self._value = v
        bus = _CS_BUS.get(self._id)
        if bus is not None:
            # /SS edges travel with the next clocked bytes ("txn" = select + clock), so one SPI transaction is
            # one host call; the model starts a new transaction at each "txn" and abandons an unfinished one.
            _CS_STATE[bus] = 0 if v else 1
        elif _host_pin is not None:
            _host_pin(self._id, v)
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3):
        return None


class SPI:
    MSB = const(0)
    LSB = const(1)

    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0, sck=None, mosi=None,
                 miso=None):
        self._id = id
        self.baudrate = baudrate
        self.mode = (polarity << 1) | phase

    def init(self, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0, sck=None, mosi=None, miso=None):
        self.baudrate = baudrate
        self.mode = (polarity << 1) | phase

    def deinit(self):
        pass

    def _clock(self, tx):
        state = _CS_STATE.get(self._id, 0)
        if state == 0:
            return b"\xff" * len(tx)  # nobody selected: MISO pulled up
        _CS_STATE[self._id] = 2
        rx = _host_spi(self._id, "txn" if state == 1 else "clock", bytes(tx).hex())
        return bytes.fromhex(rx)

    def write(self, buf):
        self._clock(buf)

    def read(self, nbytes, write=0x00):
        return self._clock(bytes([write]) * nbytes)

    def readinto(self, buf, write=0x00):
        buf[:] = self._clock(bytes([write]) * len(buf))

    def write_readinto(self, write_buf, read_buf):
        if len(write_buf) != len(read_buf):
            raise ValueError("buffers must have the same length")
        read_buf[:] = self._clock(write_buf)


class Timer:
    ONE_SHOT = const(0)
    PERIODIC = const(1)

    def __init__(self, id=-1, mode=1, period=-1, freq=-1, callback=None):
        self._id = id
        self._callback = None
        self.mode = mode
        self.period_ms = period
        if callback is not None:
            self.init(mode=mode, period=period, freq=freq, callback=callback)

    def init(self, mode=1, period=-1, freq=-1, callback=None):
        if freq > 0:
            period = 1000 // freq
        self.mode = mode
        self.period_ms = period
        self._callback = callback
        if self not in _TIMERS:
            _TIMERS.append(self)

    def deinit(self):
        self._callback = None
        if self in _TIMERS:
            _TIMERS.remove(self)

    def value(self):
        return 0


class RTC:
    """ESP32 RTC: memory() is the 2 KB of RTC slow memory that survives soft resets (not power cuts)."""

    def __init__(self, id=0):
        pass

    def memory(self, data=None):
        if data is None:
            return bytes.fromhex(_host_sys("rtc_mem_get", ""))
        if len(data) > 2048:
            raise ValueError("RTC memory holds 2048 bytes")
        _host_sys("rtc_mem_set", bytes(data).hex())
        return None


def _hard_irq(_arg):
    # Runs as a scheduled callback, i.e. with the scheduler locked like a hard interrupt on the ESP32: anything
    # the handler schedules runs after it returns. The heap is locked too, so an allocating handler fails here
    # with MemoryError, exactly as it would on the device.
    timer = _irq_state[2]
    micropython.heap_lock()
    try:
        timer._callback(timer)
    except Exception as e:  # noqa: BLE001 - reported to the host, never escapes with the heap locked
        _irq_state[0] = e
    finally:
        micropython.heap_unlock()
    _irq_state[1] += 1


def fire_timer(index=0):
    """Emulate timer `index` expiring: its callback runs as a hard IRQ; returns the handler's error or None."""
    timer = _TIMERS[index]
    if timer._callback is None:
        return None
    _irq_state[0] = None
    _irq_state[2] = timer
    runs = _irq_state[1]
    micropython.schedule(_hard_irq, 0)
    for _ in range(1000):  # the VM runs pending callbacks at branch points; spin until the IRQ ran
        if _irq_state[1] != runs:
            break
    if timer.mode == 0:
        timer.deinit()
    return _irq_state[0]


def idle():
    pass


def lightsleep(ms=None):
    pass


def unique_id():
    return _UNIQUE_ID


def reset_cause():
    return PWRON_RESET


def freq(hz=None):
    return 240000000 if hz is None else None


def reset():
    raise SystemExit("machine.reset()")


def disable_irq():
    return 0


def enable_irq(state=0):
    pass
