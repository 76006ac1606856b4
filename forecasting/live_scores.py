"""Live scores: the archived forecasts of the last N days scored against what the twin measured since.

The held-out scores (forecasting.scoring) say how a method does on data shipped with the project; this says how
the forecasts the service actually wrote did on each target's own meter. Once a day the service (and on demand
`energytwin forecast score --archived --days 30`) reads the archived `EnergyForecast` entities
(`urn:ngsi-ld:EnergyForecast:<target>:<quantity>:<yyyymmddThhmmZ>`) whose 24 hours are over, the measured hourly
kWh of the meter each one names in `refTarget`, and scores the model's values against the same two naive
baselines the rest of the project uses, over the same hours: persistence (the 24 hours before `validFrom`) and
seasonal-naive (the same 24 hours a week before). MAE and RMSE are in kWh.

*The model's values*: `modelValues` when the archive has them (written when a baseline was written instead, so a
model that fell back keeps being judged and can come back), else `hourlyValues` of a forecast that is not a
fallback. A fallback archive without `modelValues` (written before they existed) is not scored.

*Which issues*: by default the forecast issued at one hour of each day (`issue_hours`, 00 UTC): the day-ahead
forecast, one of the 24 the service archives per day, and a 24th of the entities to read (1,000 meters with PV:
60,000 entities for 30 days instead of 1.4 million). `issue_hours=None` scores every archived hour.

*Where the measurement is not in the twin* it comes from `sources` ("<target>:<quantity>" -> hourly values): the
tariff's price file for a price forecast (the price the file holds for the hour, EUR/MWh), the installation's
hourly file for PV forecast from a file. The service passes its targets' own sources; without one (the CLI
without `--community`) such a target is skipped with the reason. A price forecast's hours the file had already
published were written as published: its `modelValues` (the model's own forecast of all 24 hours) is scored,
never the published prices. Forecasts none of whose hours were measured are not scored.

The report is a JSON file (`LiveReport.save`): an operator's check on the service, not state of the twin, and
there is no Smart Data Models type for forecast skill. The service keeps the last report in memory and its
fallback rule uses it (forecasting.service): a target whose model did not beat both baselines over at least
`MIN_FORECASTS` scored forecasts gets the better baseline written, `fallback: true`, and the log says why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from fiware_client import FiwareError, NonexistentTenant, NotFound
from forecasting import baselines as b
from forecasting.entity import UNITS
from forecasting.retention import ARCHIVED_ID, archived_issue

log = logging.getLogger("energytwin.forecast")
DEFAULT_DAYS = 30
MIN_FORECASTS = 7  # fewer scored forecasts than this: not judged (as the weather path's rule)
SCORED = ("load", "pvGeneration", "price")
MeasuredSource = Callable[[datetime, int], np.ndarray]  # (start UTC, hours) -> hourly values, NaN where unknown
METER_PREFIX = "urn:ngsi-ld:ThreePhaseAcMeasurement:"


@dataclass
class LiveScore:
    """One target and quantity over the scored period."""

    target: str
    quantity: str
    ref: str
    forecasts: int  # archived forecasts with at least one scored hour
    hours: int  # hours where the model, both baselines and the measurement are known
    mae: float
    rmse: float
    mae_persistence: float
    mae_seasonal_naive: float
    skill_vs_persistence: float
    skill_vs_seasonal_naive: float
    use: str  # model | persistence | seasonal_naive | not judged
    unit: str
    first_issue: str
    last_issue: str

    @property
    def judged(self) -> bool:
        return self.use != "not judged"

    def describe(self) -> str:
        if not self.judged:
            return f"not judged: {self.forecasts} scored forecasts, needs {MIN_FORECASTS}"
        verb = "beats both baselines" if self.use == "model" else "did not beat both baselines"
        return (f"{verb} on live data: {self.skill_vs_persistence:+.0%} vs persistence, "
                f"{self.skill_vs_seasonal_naive:+.0%} vs seasonal-naive over {self.forecasts} forecasts "
                f"({self.first_issue[:10]}..{self.last_issue[:10]})")


@dataclass
class LiveReport:
    generated: str
    days: int
    issue_hours: list[int] | None
    scores: dict[str, LiveScore] = field(default_factory=dict)  # "<target>:<quantity>" -> score
    skipped: dict[str, str] = field(default_factory=dict)  # "<target>:<quantity>" -> reason

    def get(self, target: str, quantity: str) -> LiveScore | None:
        return self.scores.get(f"{target}:{quantity}")

    def as_json(self) -> dict:
        def clean(x):
            return None if isinstance(x, float) and not np.isfinite(x) else (round(x, 4) if isinstance(x, float)
                                                                                else x)

        return {"generated": self.generated, "days": self.days, "issue_hours_utc": self.issue_hours,
                "scores": {k: {f: clean(v) for f, v in asdict(s).items()} for k, s in sorted(self.scores.items())},
                "skipped": dict(sorted(self.skipped.items()))}

    def save(self, path: Path) -> None:
        """Write the report atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.as_json(), indent=2) + "\n")
        tmp.replace(path)


def _pattern(now: datetime, days: int, issue_hours: list[int] | None) -> str:
    dates = "|".join(f"{now - timedelta(days=k):%Y%m%d}" for k in range(days, -1, -1))
    hours = "[0-9]{2}" if issue_hours is None else f"({'|'.join(f'{h:02d}' for h in issue_hours)})"
    return rf"^urn:ngsi-ld:EnergyForecast:.+:({'|'.join(SCORED)}):({dates})T{hours}00Z$"


def _values(entity: dict, attr: str) -> np.ndarray | None:
    node = entity.get(attr)
    value = node.get("value") if isinstance(node, dict) else None
    if not isinstance(value, list) or len(value) != 24:
        return None
    return np.array([float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
                     for v in value])


def _model_values(entity: dict) -> np.ndarray | None:
    model = _values(entity, "modelValues")
    if model is not None:
        return model
    fallback = entity.get("fallback")
    if isinstance(fallback, dict) and fallback.get("value") is True:
        return None
    method = (entity.get("method") or {}).get("value") if isinstance(entity.get("method"), dict) else None
    if isinstance(method, str) and "published in the price file" in method:
        return None  # written before modelValues: its hours mix the published prices and the model
    return _values(entity, "hourlyValues")


def measured_hourly(client, ref: str, quantity: str, start: datetime, hours: int, cache=None) -> np.ndarray:
    """What the meter measured, hourly kWh: import for load, export - import for PV (as the service reads it)."""
    from forecasting.service import EXPORT_ATTRS, IMPORT_ATTRS, meter_hourly

    imp = meter_hourly(client, ref, start, hours, IMPORT_ATTRS, cache)
    if quantity == "load":
        return imp
    exp = meter_hourly(client, ref, start, hours, EXPORT_ATTRS, cache)
    return np.clip(exp - np.nan_to_num(imp), 0, None)


def score_archived(client, now: datetime | None = None, days: int = DEFAULT_DAYS, *,
                   issue_hours: list[int] | None = (0,), cache=None,
                   sources: dict[str, MeasuredSource] | None = None) -> LiveReport:
    """Score the archived load, PV and price forecasts issued in the `days` days before `now` whose 24 hours
    are over: against the meter their `refTarget` names, or `sources["<target>:<quantity>"]` (a price file, a PV
    history file) where the measurement is not in the twin.

    Broker errors while listing propagate (there is nothing to report); a meter whose history (or a source
    that) cannot be read is skipped with the reason, the others are scored.
    """
    sources = sources or {}
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours_list = None if issue_hours is None else sorted(set(issue_hours))
    report = LiveReport(now.isoformat().replace("+00:00", "Z"), days, hours_list)
    try:
        found = client.query_entities(type="EnergyForecast", id_pattern=_pattern(now, days, hours_list),
                                      attrs=["hourlyValues", "modelValues", "fallback", "refTarget", "method"], context=None)
    except NonexistentTenant:
        return report
    groups: dict[tuple[str, str], list[tuple[datetime, dict]]] = {}
    for entity in found:
        match = ARCHIVED_ID.match(entity.get("id", ""))
        issued = archived_issue(entity.get("id", ""))
        if match is None or issued is None or issued < now - timedelta(days=days) or issued + timedelta(
                hours=24) > now:
            continue
        groups.setdefault((match["target"], match["quantity"]), []).append((issued, entity))
    for (target, quantity), items in sorted(groups.items()):
        key = f"{target}:{quantity}"
        refs = {(e.get("refTarget") or {}).get("object") for _, e in items if isinstance(e.get("refTarget"), dict)}
        refs = {r for r in refs if isinstance(r, str) and r.startswith(METER_PREFIX)}  # not an installation
        items.sort(key=lambda x: x[0])
        start = items[0][0] - timedelta(days=7)
        span = int((items[-1][0] + timedelta(hours=24) - start).total_seconds() // 3600)
        if quantity != "price" and len(refs) == 1:
            ref = refs.pop()
            try:  # one hour more: the window's last boundary needs the reading at or after it
                measured = measured_hourly(client, ref, quantity, start, span + 1, cache)[:span]
            except (NotFound, NonexistentTenant):
                report.skipped[key] = f"{ref} has no history in the twin"
                continue
            except FiwareError as exc:
                log.warning("forecast: live score of %s: history of %s unreadable: %s", key, ref, exc)
                report.skipped[key] = f"history unreadable: {exc}"
                continue
        elif len(refs) > 1:
            report.skipped[key] = f"archives name {len(refs)} different meters"
            continue
        elif key in sources:
            ref = "file"
            try:
                measured = np.asarray(sources[key](start, span), float)
                if measured.shape != (span,):
                    raise ValueError(f"{measured.size} hours read, {span} asked for")
            except (ValueError, OSError) as exc:
                log.warning("forecast: live score of %s: its file is unreadable: %s", key, exc)
                report.skipped[key] = f"file unreadable: {exc}"
                continue
        else:
            report.skipped[key] = ("the measured price is in the tariff's price file, none given (the service "
                                   "passes its own; `forecast score --archived --community FILE`)"
                                   if quantity == "price" else
                                   "no meter in the twin (refTarget is not a ThreePhaseAcMeasurement: history "
                                   "from a file) and no history file given (`--community FILE`)")
            continue
        model, actual, pers, naive, issues = [], [], [], [], []
        for issued, entity in items:
            values = _model_values(entity)
            if values is None:
                continue
            i = int((issued - start).total_seconds() // 3600)
            model.append(values)
            actual.append(measured[i:i + 24])
            pers.append(measured[i - 24:i])
            naive.append(measured[i - 168:i - 144])
            issues.append(issued)
        if not model:
            report.skipped[key] = ("no archived model values (fallback or partly published price archives written "
                                   "before modelValues)")
            continue
        m, a, p, s = (np.array(x) for x in (model, actual, pers, naive))
        ok = ~(np.isnan(m) | np.isnan(a) | np.isnan(p) | np.isnan(s))
        scored = ok.any(axis=1)
        if not scored.any():
            report.skipped[key] = "the meter measured none of the forecast hours"
            continue
        v = b.verdict(m, a, pers=p, naive=s)
        masked = [np.where(ok, x, np.nan) for x in (m, p, s)]
        first, last = (issues[int(j)] for j in (np.argmax(scored), len(scored) - 1 - np.argmax(scored[::-1])))
        n = int(scored.sum())
        report.scores[key] = LiveScore(
            target, quantity, ref, n, int(ok.sum()), b.mae(masked[0], a), b.rmse(masked[0], a),
            b.mae(masked[1], a), b.mae(masked[2], a), v.skill_vs_persistence, v.skill_vs_seasonal_naive,
            v.use if n >= MIN_FORECASTS else "not judged", UNITS[quantity],
            first.isoformat().replace("+00:00", "Z"), last.isoformat().replace("+00:00", "Z"))
    return report
