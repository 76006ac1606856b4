"""The PEP's counters, served at `GET /pep/metrics` in the Prometheus text format (exposition format 0.0.4).

What an operator asks of an access layer: how many requests it forwarded and refused, why it refused them (a
burst of `token_expired` is a client that does not refresh; `token_signature` someone forging), whether the
upstream answers, and how much time the layer adds. The PEP answers each request on one asyncio event loop, so
the counters need no lock; the latency histograms use fixed buckets (cumulative, as Prometheus expects) so a
scrape costs nothing per request beyond one bisect.

Reasons are short fixed labels, never the request's path or the token's text, so a scanner cannot blow up the
number of series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

PREFIX = "energytwin_pep_"

# Upper bounds in seconds: the PEP's own work is tens of microseconds; an upstream's answer milliseconds.
BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# name -> (type, help). One table: the renderer and docs/access.md list exactly these.
METRICS: dict[str, tuple[str, str]] = {
    "requests_total": ("counter", ("Requests that reached the access layer, by outcome (forwarded, refused, "
                                  "upstream_error, relay, metrics)")),
    "refused_total": ("counter", "Requests refused, by HTTP status and reason"),
    "responses_total": ("counter", "Answers of the upstream to forwarded requests, by status class"),
    "upstream_errors_total": ("counter", ("Forwarded requests the upstream did not answer (connection refused, "
                                         "reset, timeout, not HTTP)")),
    "notifications_relayed_total": ("counter", "Notifications relayed to a subscriber's endpoint"),
    "notification_entities_dropped_total": ("counter", ("Entities removed from notifications (not the "
                                                       "subscriber's)")),
    "relay_failures_total": ("counter", ("Notifications whose subscriber's endpoint could not be reached, or "
                                        "that arrived for an unknown relay key, by reason")),
    "request_seconds": ("histogram", ("Time from a request's last byte to its answer, in the access layer "
                                     "(includes the upstream's time)")),
    "upstream_seconds": ("histogram", "Time the upstream took to answer forwarded requests"),
    "token_cache_entries": ("gauge", "Verified tokens cached until their expiry"),
    "relays": ("gauge", "Notification relays (subscriptions created by callers of scope own)"),
}


# Counters without labels: shown as 0 before their first count (a labelled one has no series until then).
_UNLABELLED = ("upstream_errors_total", "notifications_relayed_total", "notification_entities_dropped_total")


class Histogram:
    """Cumulative-bucket histogram (Prometheus `_bucket{le=...}`, `_sum`, `_count`)."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS_S, seconds)] += 1
        self.sum += seconds
        self.count += 1


class PepMetrics:
    """Labelled counters, two histograms and gauges read at scrape time."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self.request_seconds = Histogram()
        self.upstream_seconds = Histogram()
        self._gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}; add it to METRICS")
        key = (name, tuple(sorted(labels.items())))
        self._counters[key] = self._counters.get(key, 0) + amount

    def value(self, name: str, **labels: str) -> int:
        """A counter's current value (0 if never counted): for tests and logs."""
        return self._counters.get((name, tuple(sorted(labels.items()))), 0)

    def total(self, name: str) -> int:
        """A counter summed over all its labels."""
        return sum(v for (n, _), v in self._counters.items() if n == name)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}; add it to METRICS")
        self._gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []
        histograms = {"request_seconds": self.request_seconds, "upstream_seconds": self.upstream_seconds}
        for name, (kind, help_text) in METRICS.items():
            full = PREFIX + name
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
            if kind == "histogram":
                hist = histograms[name]
                running = 0
                for bound, count in zip((*BUCKETS_S, float("inf")), hist.counts, strict=True):
                    running += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f'{full}_bucket{{le="{le}"}} {running}')
                lines += [f"{full}_sum {hist.sum!r}", f"{full}_count {hist.count}"]
            elif kind == "gauge":
                read = self._gauges.get(name)
                if read is not None:
                    lines.append(f"{full} {_number(read())}")
            else:
                series = sorted((labels, v) for (n, labels), v in self._counters.items() if n == name)
                if not series and name in _UNLABELLED:
                    lines.append(f"{full} 0")
                for labels, v in series:
                    lines.append(f"{full}{_labels(labels)} {v}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
