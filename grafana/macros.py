"""Expand Grafana's PostgreSQL-datasource macros and template variables the way Grafana does before it sends SQL.

Follows Grafana's `grafana-postgresql-datasource` macro engine (timescaledb off): `$__timeFilter(c)` ->
`c BETWEEN '<from>' AND '<to>'` (RFC 3339, UTC), `$__timeGroup(c, i)` -> `floor(extract(epoch from c)/s)*s`,
`$__timeGroupAlias` adds `AS "time"`, `$__timeFrom()`/`$__timeTo()` -> the quoted bounds. Single-value variables
are substituted as plain text. Anything else starting with `$__` is an error, so a panel cannot use a macro the
tests do not understand.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def interval_seconds(text: str) -> float:
    """'30s', '1m', '1d' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(ms|s|m|h|d|w)\s*", text)
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


def _rfc3339(moment: datetime) -> str:
    text = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(seconds)


def _args(text: str) -> list[str]:
    return [a.strip() for a in text.split(",")] if text.strip() else []


def expand(
    raw_sql: str, time_from: datetime, time_to: datetime, interval: str, variables: dict[str, str]
) -> str:
    """The SQL Grafana would send for `raw_sql` over [time_from, time_to] with `$__interval` = `interval`."""
    text = raw_sql.replace("$__interval_ms", str(int(interval_seconds(interval) * 1000)))
    text = text.replace("$__interval", interval)
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
        text = re.sub(r"\$" + re.escape(name) + r"\b", value, text)

    def macro(match: re.Match[str]) -> str:
        name, args = match.group(1), _args(match.group(2))
        if name == "__timeFilter" and len(args) == 1:
            return f"{args[0]} BETWEEN '{_rfc3339(time_from)}' AND '{_rfc3339(time_to)}'"
        if name in ("__timeGroup", "__timeGroupAlias") and len(args) >= 2:
            seconds = _seconds_text(interval_seconds(args[1].strip("'")))
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__timeFrom" and not args:
            return f"'{_rfc3339(time_from)}'"
        if name == "__timeTo" and not args:
            return f"'{_rfc3339(time_to)}'"
        raise ValueError(f"macro ${name}({match.group(2)}) is not supported by the tests")

    text = re.sub(r"\$(__\w+)\(([^()]*)\)", macro, text)
    leftover = re.search(r"\$\{?\w+", text)
    if leftover:
        raise ValueError(f"unexpanded {leftover.group(0)!r} in SQL")
    return text
