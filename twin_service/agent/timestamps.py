"""`TimeInstant` parsing and the NGSI-LD `observedAt` form (UTC, milliseconds, `Z`).

The FIWARE agent in NGSI-LD mode fails an update whose TimeInstant is not strict ISO 8601 (`BadTimestamp`), so this
accepts only full date-time strings with an explicit zone; a meter clock without a zone is a bug worth seeing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})$")


# A TimeInstant further ahead of the agent's clock than this is refused (`future_timestamp`): a meter cannot have
# measured in the future, so its clock is wrong (a bad NTP answer it believed), and an observedAt from the future
# would stand as the entity's newest value and sort after every true reading until that time came.
# 5 min leaves room for an agent host whose own clock is a little behind.
MAX_AHEAD_S = 300.0


class BadTimestamp(ValueError):
    """A TimeInstant that is not a strict ISO 8601 date-time with a zone."""


def parse_time_instant(value: object) -> datetime:
    """The aware UTC datetime of a TimeInstant value, or BadTimestamp saying why not."""
    if not isinstance(value, str):
        raise BadTimestamp(f"TimeInstant must be an ISO 8601 string, got {type(value).__name__}")
    if not _ISO_8601.match(value):
        raise BadTimestamp(f"TimeInstant {value!r} is not YYYY-MM-DDTHH:MM:SS[.sss]Z (or ±HH:MM)")
    text = value.replace("Z", "+00:00")
    # fromisoformat takes at most 6 fraction digits: cut nanoseconds to microseconds before parsing.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:  # e.g. month 13: the regex checks form, not ranges
        raise BadTimestamp(f"TimeInstant {value!r}: {exc}") from None
    return parsed.astimezone(UTC)


def observed_at(moment: datetime) -> str:
    """`2026-11-24T10:00:00.000Z`: the form the FIWARE agent writes and Orion-LD returns."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
