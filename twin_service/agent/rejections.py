"""Report input the agent refuses: one counter per reason and a log line an operator can act on.

A meter stuck sending garbage every second must not flood the log, so repeats of the same (reason, apikey,
device) are logged at most once per interval, with the number of repeats suppressed in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .metrics import Metrics

log = logging.getLogger("twin_service.agent.rejections")

# Every reason the agent counts under energytwin_agent_rejected_total{reason=…}.
REASONS: dict[str, str] = {
    "bad_topic": "topic is not /json/<apikey>/<device_id>/attrs[/<object_id>]",
    "oversize": "payload larger than the agent's limit (max_payload_bytes, 64 KiB by default)",
    "invalid_json": "payload is not JSON (or is empty)",
    "not_an_object": "payload (or an array element) is not a JSON object of measures",
    "unknown_apikey": "no service group or device has the topic's apikey",
    "unknown_device": "the apikey's group has no such device and does not autoprovision (autoprovision: false)",
    "flood": "the device sent more messages than the per-device limit (a token bucket) allows",
    "bad_timestamp": "TimeInstant is not strict ISO 8601 with a zone (the FIWARE agent's BadTimestamp)",
    "future_timestamp": "TimeInstant more than 5 min ahead of the agent's clock: the meter's clock is wrong",
    "bad_value": "a measure's value has the wrong type, shape or range for its attribute",
    "no_measures": "payload holds no measure (empty object or array, or only TimeInstant)",
    "queue_full": "the on-disk queue to the broker is full (broker down for long); the message was dropped",
    "unknown_command": "a /cmdexe result names a command the device was not provisioned with",
    "internal_error": "the agent failed on this message (a bug: see the traceback in the log)",
}


class RejectionReporter:
    """Counts every rejection and logs each (reason, apikey, device) at most once per `interval_s`."""

    def __init__(
        self, metrics: Metrics, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._metrics = metrics
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_logged: dict[tuple[str, str, str], float] = {}
        self._suppressed: dict[tuple[str, str, str], int] = {}

    def report(
        self,
        reason: str,
        detail: str,
        topic: str,
        apikey: str = "-",
        device_id: str = "-",
        dropped: str = "message",
    ) -> None:
        """Count one rejection and log it unless the same cause was logged less than `interval_s` ago.

        `dropped` says what was lost ("message", "measure object", "measure") so the operator knows whether the
        rest of the payload reached the broker.
        """
        if reason not in REASONS:
            raise KeyError(f"unknown rejection reason {reason!r}; add it to REASONS")
        self._metrics.inc("rejected_total", reason=reason)
        key = (reason, apikey, device_id)
        now = self._clock()
        with self._lock:
            last = self._last_logged.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            suppressed = self._suppressed.pop(key, 0)
            self._last_logged[key] = now
        repeats = f" ({suppressed} more like it in the last {self._interval_s:.0f} s)" if suppressed else ""
        log.warning(
            "rejected %s from device %s (apikey %s) on %s: %s; %s dropped, agent continues%s",
            reason,
            device_id,
            apikey,
            topic,
            detail,
            dropped,
            repeats,
        )
