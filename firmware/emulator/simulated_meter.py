"""A simulated three-phase meter for the demo and end-to-end tests: the real firmware on the ADE9000 model.

Each period the model advances by the elapsed time (real time in the background thread, or the given seconds in
`step()`), the sampling timer fires and the firmware's main loop runs once, publishing to the MQTT broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Self

from firmware.emulator.ade9000_model import ADE9000Model, BoardCalibration, PhaseInput
from firmware.emulator.harness import FuelUse, MeterConfig, MeterHarness, PublishedMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseLoad:
    """What one phase of the installation does: RMS voltage and current, V→I angle (>0 lagging), THD fractions."""

    voltage_v: float = 230.0
    current_a: float = 10.0
    angle_deg: float = 0.0
    thd_voltage: float = 0.02
    thd_current: float = 0.05

    def as_phase_input(self) -> PhaseInput:
        return PhaseInput(self.voltage_v, self.current_a, self.angle_deg, self.thd_voltage, self.thd_current)


class SimulatedMeter:
    """One meter: firmware under MicroPython, ADE9000 model, publishing to a real broker."""

    def __init__(
        self,
        device_id: str = "meter-001",
        apikey: str = "energytwin-demo",
        mqtt_host: str | None = "127.0.0.1",
        mqtt_port: int = 1883,
        period_s: float = 1.0,
        frequency_hz: float = 50.0,
        loads: tuple[PhaseLoad, PhaseLoad, PhaseLoad] = (PhaseLoad(), PhaseLoad(), PhaseLoad()),
        neutral_current_a: float | None = None,
        calibration: BoardCalibration | None = None,
        max_published: int = 1000,
        mqtt_login: tuple[str, str] | None = None,  # (user, secret) when the broker wants per-device logins
    ) -> None:
        if len(loads) != 3:
            raise ValueError("a three-phase meter needs exactly three loads")
        self.period_s = period_s
        calibration = calibration or BoardCalibration()
        nominal_hz = 60 if abs(frequency_hz - 60.0) < abs(frequency_hz - 50.0) else 50
        self.config = MeterConfig(
            device_id=device_id,
            apikey=apikey,
            mqtt_host=mqtt_host,
            mqtt_port=mqtt_port,
            period_s=period_s,
            nominal_hz=nominal_hz,
            calibration=calibration,
            mqtt_user=mqtt_login[0] if mqtt_login else None,
            mqtt_password=mqtt_login[1] if mqtt_login else None,
        )
        self.model = ADE9000Model(calibration, frequency_hz=frequency_hz)
        for index, load in enumerate(loads):
            self.model.phases[index] = load.as_phase_input()
        self.model.neutral_current_a = neutral_current_a
        self.published: deque[tuple[str, dict[str, Any]]] = deque(maxlen=max_published)
        self.harness = MeterHarness(
            self.config, self.model, max_published=max_published, on_publish=self._record
        )
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._booted = False
        self.last_error: BaseException | None = None

    @property
    def device_id(self) -> str:
        return self.config.device_id

    @property
    def fuel_used(self) -> FuelUse:
        return self.harness.fuel_used

    def _record(self, message: PublishedMessage) -> None:
        self.published.append((message.topic, message.payload))

    def boot(self) -> None:
        """Start the firmware (ADE9000 start-up, WiFi, timer) without starting the clock thread."""
        with self._lock:
            if not self._booted:
                self.harness.boot()
                self._booted = True

    # ------------------------------------------------------------------ physics controls (thread safe)
    def set_load(self, phase: int, load: PhaseLoad) -> None:
        """Change what phase 1, 2 or 3 does (L1..L3)."""
        if phase not in (1, 2, 3):
            raise ValueError("phase is 1, 2 or 3")
        with self._lock:
            self.model.set_phase(phase - 1, load.as_phase_input())

    def set_frequency(self, frequency_hz: float) -> None:
        with self._lock:
            self.model.set_frequency(frequency_hz)

    def set_neutral_current(self, current_a: float | None) -> None:
        with self._lock:
            self.model.set_neutral_current(current_a)

    def set_wifi(self, connected: bool) -> None:
        """Take the meter's WiFi link down or up."""
        with self._lock:
            self.harness.wifi_connected = connected

    # ------------------------------------------------------------------ time
    def step(self, seconds: float | None = None) -> bool:
        """One period without real time: the model advances `seconds` (default period_s); True if published."""
        self.boot()
        with self._lock:
            return self.harness.cycle(self.period_s if seconds is None else seconds)

    def start(self) -> None:
        """Boot and run in a background thread following the wall clock.

        The emulated clock is anchored to the wall clock before booting, and the first period includes the boot
        time: booting takes a couple of seconds of host time in which no emulated time passes, and without this
        every TimeInstant would lag real time by that much for the meter's whole life.
        """
        if self._thread is not None:
            return
        started = time.monotonic()
        with self._lock:
            if not self._booted:
                self.harness.start_utc_s = time.time() - self.model.simulated_time_s
        self.boot()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(started,), name=f"meter-{self.device_id}",
                                        daemon=True)
        self._thread.start()

    def _run(self, started: float) -> None:
        last = started
        next_due = time.monotonic() + self.period_s
        while not self._stop.wait(max(0.0, next_due - time.monotonic())):
            now = time.monotonic()
            try:
                with self._lock:
                    self.harness.cycle(now - last)
            except Exception as exc:  # noqa: BLE001 - a dead meter must say why, the demo keeps running
                self.last_error = exc
                log.error("simulated meter %s stopped: %s", self.device_id, exc)
                return
            last = now
            next_due += self.period_s
            if (
                next_due < time.monotonic()
            ):  # fell behind (slow host): skip missed periods, energy still exact
                next_due = time.monotonic() + self.period_s

    def stop(self) -> None:
        """Stop the clock thread and the firmware session."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        with self._lock:
            self.harness.close()
            self._booted = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
