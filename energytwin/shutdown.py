"""SIGTERM, SIGINT and SIGHUP turned into one orderly stop, from the first instant a command runs.

A whole-product command (`energytwin up`, `energytwin demo`) installs `Shutdown` before it spawns anything. The
handler raises `StopRequested` in the main thread, so whatever start-up step is running (waiting for a port,
provisioning, waiting for the first twin update) unwinds through the `finally` that stops every child. The few
steps that must not be cut in half (spawning a child and recording it) run inside `deferred()`: a signal that
arrives there is raised when the step is complete, so no child is ever started without being tracked. Once the
stop has begun (`stopping()`), further signals are noted and ignored: the stop finishes.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequested(BaseException):
    """Raised in the main thread when a stop signal arrives; a BaseException so `except Exception` lets it pass."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Shutdown:
    """Owns the process's stop signals while a stack runs."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self._deferred = 0
        self._stopping = False
        self._previous: dict[int, object] = {}

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def install(self) -> Shutdown:
        """Take over SIGINT, SIGTERM and SIGHUP (call from the main thread, before spawning anything)."""
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        """Give the signals back to whatever handled them before `install()`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = not self.requested.is_set()
        if first:
            self.signum = signum
            self.requested.set()
        if self._stopping:
            log.warning("%s received while stopping; the stop is already under way", signal.Signals(signum).name)
            return
        if first and self._deferred == 0:
            raise StopRequested(signum)

    def check(self) -> None:
        """Raise StopRequested now if a signal arrived while it could not be raised."""
        if self.requested.is_set() and not self._stopping and self._deferred == 0:
            assert self.signum is not None
            raise StopRequested(self.signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A step that must complete: a signal arriving inside is raised right after it."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
        self.check()

    @contextmanager
    def stopping(self) -> Iterator[None]:
        """The stop itself: signals no longer interrupt it."""
        self._stopping = True
        yield


    def complete(self, stop) -> None:  # type: ignore[no-untyped-def]
        """Run stop() to the end: a signal arriving just before it began only restarts it (stop is idempotent)."""
        while True:
            try:
                with self.stopping():
                    stop()
                return
            except StopRequested:
                continue


def wait(shutdown: Shutdown, duration_s: float | None, tick=None) -> None:  # type: ignore[no-untyped-def]
    """Block until a stop signal (StopRequested is raised) or for duration_s; call tick() about once a second."""
    import time

    deadline = None if duration_s is None else time.monotonic() + duration_s
    while True:
        shutdown.check()
        if deadline is not None and time.monotonic() >= deadline:
            return
        timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        shutdown.requested.wait(timeout)
        shutdown.check()
        if tick is not None:
            tick()
