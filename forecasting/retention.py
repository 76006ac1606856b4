"""Retention of archived forecasts: each per-issue EnergyForecast is kept `keep_days` days, then deleted.

The service archives one entity per target, quantity and hour (forecasting.entity): 48 a day per meter with PV,
~1.4 million a month for 1,000 meters. Archives exist to score forecasts against what happened, which needs weeks,
not years, so every round deletes the archives that have just aged past `keep_days` (default 30). Only archived
ids are ever touched (`urn:ngsi-ld:EnergyForecast:<target>:<quantity>:<yyyymmddThhmmZ>`); the current forecasts,
at ids without the issue suffix, are never deleted.

Selection is by the issue time in the id, with an NGSI-LD `idPattern` (ETSI GS CIM 009 §4.9, served by the
embedded broker and Orion-LD; POSIX extended syntax, so `[0-9]` rather than a backslash-d) naming the expired
hours only: a round lists what it will delete, not the whole archive. A round looks back `LOOKBACK_DAYS` (a
service stopped for a few days catches up); `purge_archived(..., full=True)` (`energytwin forecast purge`, and
the service's first round) scans every archived id instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from fiware_client import FiwareError, NonexistentTenant
from forecasting.entity import UNITS

log = logging.getLogger("energytwin.forecast")
DEFAULT_KEEP_DAYS = 30
LOOKBACK_DAYS = 7
_QUANTITIES = "|".join(sorted(UNITS))
ARCHIVED_ID = re.compile(rf"^urn:ngsi-ld:EnergyForecast:(?P<target>.+):(?P<quantity>{_QUANTITIES}):"
                         r"(?P<issued>\d{8}T\d{4}Z)$")


def archived_issue(entity_id: str) -> datetime | None:
    """The issue time an archived forecast's id carries, or None when the id is not an archived one."""
    match = ARCHIVED_ID.match(entity_id)
    if match is None:
        return None
    try:
        return datetime.strptime(match["issued"], "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def expired_pattern(cutoff: datetime, lookback_days: int | None = LOOKBACK_DAYS) -> str:
    """idPattern of archived ids issued before `cutoff`: the `lookback_days` whole days before the cutoff's day and
    that day's hours before the cutoff hour (every archived id; `lookback_days=None`: any date)."""
    prefix = rf"^urn:ngsi-ld:EnergyForecast:.+:({_QUANTITIES}):"
    if lookback_days is None:
        return prefix + r"[0-9]{8}T[0-9]{4}Z$"
    cutoff = cutoff.astimezone(UTC)
    day = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    days = [f"{day - timedelta(days=k):%Y%m%d}" for k in range(lookback_days, 0, -1)]
    alternatives = [rf"({'|'.join(days)})T[0-9]{{4}}" if days else None]
    if cutoff.hour:
        alternatives.append(rf"{day:%Y%m%d}T({'|'.join(f'{h:02d}' for h in range(cutoff.hour))})[0-9]{{2}}")
    body = "|".join(a for a in alternatives if a)
    return prefix + f"({body})Z$"


@dataclass
class PurgeResult:
    cutoff: datetime
    deleted: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def purge_archived(client, keep_days: int = DEFAULT_KEEP_DAYS, now: datetime | None = None, *,
                   full: bool = False) -> PurgeResult:
    """Delete the archived forecasts issued more than `keep_days` days before `now`; failures are logged and
    counted (the next round tries them again), never raised, except a broker that cannot be queried at all."""
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1 (0 disables retention in the CLI), got {keep_days}")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    cutoff = now - timedelta(days=keep_days)
    result = PurgeResult(cutoff)
    pattern = expired_pattern(cutoff, None if full else LOOKBACK_DAYS)
    try:
        found = client.query_entities(type="EnergyForecast", id_pattern=pattern, attrs=["dateIssued"], context=None)
    except NonexistentTenant:
        return result
    for entity in found:
        issued = archived_issue(entity.get("id", ""))
        if issued is None or issued >= cutoff:
            continue
        try:
            client.delete_entity(entity["id"], missing_ok=True)
            result.deleted += 1
        except FiwareError as exc:
            result.failed[entity["id"]] = str(exc)
            log.warning("forecast: could not delete archived %s: %s", entity["id"], exc)
    if result.deleted or result.failed:
        log.info("forecast: purged %d archived forecasts issued before %s (%d failed)", result.deleted,
                 cutoff.isoformat(), len(result.failed))
    return result


def _posix_escape(text: str) -> str:
    """`text` as a literal in a POSIX extended regular expression (what idPattern takes)."""
    return "".join(f"[{c}]" if c in ".[]()*+?{}|^$\\" else c for c in text)


def archived_values(client, target: str, quantity: str, issue: datetime, days: int,
                    attr: str = "hourlyValues") -> np.ndarray:
    """The `attr` arrays of the target's archived forecasts issued at the same hour on each of the `days` days
    before `issue`, as (days, 24): row j is the forecast issued `days - j` days before (NaN where there is none
    or it lacks `attr`). This is what the service judges a path on when only its own past forecasts can say."""
    from forecasting.entity import current_forecast_id, target_key

    issue = issue.astimezone(UTC)
    out = np.full((days, 24), np.nan)
    if days < 1:
        return out
    stamps = [issue - timedelta(days=days - j) for j in range(days)]
    prefix = _posix_escape(current_forecast_id(target_key(target), quantity))
    pattern = f"^{prefix}:({'|'.join(f'{t:%Y%m%d}' for t in stamps)})T{issue:%H}00Z$"
    row = {f"{t:%Y%m%dT%H%MZ}": j for j, t in enumerate(stamps)}
    for entity in client.query_entities(type="EnergyForecast", id_pattern=pattern, attrs=[attr], context=None):
        j = row.get(entity.get("id", "").rsplit(":", 1)[-1])
        value = (entity.get(attr) or {}).get("value") if isinstance(entity.get(attr), dict) else None
        if j is None or not isinstance(value, list) or len(value) != 24:
            continue
        out[j] = [np.nan if not isinstance(v, int | float) else float(v) for v in value]
    return out
