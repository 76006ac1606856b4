"""Counters the agent exposes on `GET /metrics` in the Prometheus text format.

Kept dependency-free: a handful of labelled counters and gauges behind one lock, because the MQTT thread, the
writer thread and the HTTP server all update them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

PREFIX = "energytwin_agent_"

# name -> (type, help). One place lists every metric so docs and tests can read it.
METRICS: dict[str, tuple[str, str]] = {
    "messages_total": ("counter", "MQTT messages received on a measure topic"),
    "measures_total": ("counter", "Measure values accepted and queued for the broker (one per attribute)"),
    "rejected_total": ("counter", "Messages or measures rejected, by reason"),
    "upserts_total": ("counter", "Batch upserts sent to the NGSI-LD broker, by HTTP status or error"),
    "upserted_messages_total": ("counter", "MQTT messages whose upsert the broker accepted (batched)"),
    "upsert_dropped_total": ("counter", "Upserts the broker refused for good (4xx, or the failed part of a 207)"),
    "acked_total": ("counter", "QoS 1 messages acknowledged to MQTT (after they were stored on disk)"),
    "autoprovisioned_total": ("counter", "Unknown devices registered on their first message (group autoprovision)"),
    "commands_total": ("counter", "Commands sent on /cmd and their outcomes (sent, ok, error, expired), by result"),
    "counter_resets_total": ("counter", "Energy counters a meter sent lower than before, bridged (continuity.py)"),
    "upsert_queue_depth": ("gauge", "MQTT messages stored on disk, waiting to be sent to the broker"),
    "broker_up": ("gauge", "1 when the last upsert reached the NGSI-LD broker, 0 while it is down"),
    "devices": ("gauge", "Devices provisioned in the registry"),
    "groups": ("gauge", "Service groups provisioned in the registry"),
}


class Metrics:
    """Thread-safe labelled counters; gauges are read from callbacks at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add `amount` to counter `name` with `labels`."""
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}; add it to METRICS")
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + amount

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter (0 if never incremented); used by tests and logs."""
        with self._lock:
            return self._counters.get((name, tuple(sorted(labels.items()))), 0)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value is read when /metrics is scraped."""
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}; add it to METRICS")
        self._gauges[name] = read

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4) of every metric."""
        with self._lock:
            counters = dict(self._counters)
        lines: list[str] = []
        for name, (kind, help_text) in METRICS.items():
            full = PREFIX + name
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            if kind == "gauge":
                read = self._gauges.get(name)
                if read is not None:
                    lines.append(f"{full} {_number(read())}")
                continue
            series = sorted((labels, v) for (n, labels), v in counters.items() if n == name)
            if not series and name in ("messages_total", "measures_total"):
                lines.append(f"{full} 0")
            for labels, v in series:
                lines.append(f"{full}{_labels(labels)} {_number(v)}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
