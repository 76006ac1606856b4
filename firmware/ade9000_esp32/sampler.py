# Periodic sampling: a hardware timer interrupt schedules the SPI work, which runs outside interrupt context.
import micropython
from machine import Timer
from time import ticks_ms

from ade9000 import ChipError


class Sampler:
    """Timer-driven sampling of an ADE9000.

    The interrupt handler only schedules `_tick` through a bound-method reference created once here: calling
    micropython.schedule() with an existing object allocates nothing, so the handler is safe with the heap
    locked (hard IRQ on the ESP32). If a tick is still pending when the timer fires again the interrupt is
    counted as missed instead of overflowing the schedule queue. `_tick` never raises: a chip fault is left in
    `fault` for the main loop, which reports it and re-initialises the chip.
    """

    def __init__(self, chip, period_ms, timer_id=0):
        self._chip = chip
        self.period_ms = period_ms
        self._timer = Timer(timer_id)
        self._tick_ref = self._tick
        self._irq_ref = self._irq
        self._pending = False
        self.full = True  # False: status and energy only (offline records need nothing else)
        self.enabled = True  # False while the chip is being re-initialised
        self.ready = False  # a new sample waits for the main loop
        self.fault = None  # ChipError reason of the last tick, or None
        self.taken_ms = 0  # time.ticks_ms() when the sample was read
        self.missed = 0

    def start(self):
        self._timer.init(period=self.period_ms, mode=Timer.PERIODIC, callback=self._irq_ref)

    def set_period(self, period_ms):
        """Change the sampling period (re-arms the timer only when it changes)."""
        if period_ms != self.period_ms:
            self.period_ms = period_ms
            self.start()

    def stop(self):
        self._timer.deinit()

    def _irq(self, _timer):
        if self._pending:
            self.missed += 1
            return
        self._pending = True
        micropython.schedule(self._tick_ref, 0)

    def _tick(self, _arg):
        self._pending = False
        if not self.enabled:
            return
        try:
            self._chip.sample(self.full)
            self.fault = None
        except ChipError as exc:
            self.fault = exc.args[0]
        self.taken_ms = ticks_ms()
        self.ready = True
