"""The forecast service: every hour, 24-hour forecasts of load, PV and price, written into the twin.

For each round (one issue time, on the hour):
  * **load**, per meter: every ThreePhaseAcMeasurement in the broker; `totalActiveEnergyImport` (or the sum of
    the phases of `activeEnergyImport`) over the last 35 days from the temporal API (fiware_client), turned
    into hourly kWh, forecast with the pooled gradient-boosting model of the whole fleet
    (forecasting.load_pooled) where, on the meter's last 14 days and from a fit that never saw them, it beat
    persistence, seasonal-naive and the day-type profile; else with the day-type profile;
  * **PV**, per installation (`PvTarget`: site, tilt, azimuth, kWp, e.g. from community.yaml): its history (the
    generation meter's export minus import from the twin, or a file), the pvlib clear sky of its plane times
    the clear-sky index learned from that history, or, when a weather plug-in answers for the site, the pvlib
    chain on the forecast irradiance (forecasting.weather);
  * **price**, per tariff (`PriceTarget`): from the imported hourly price file; hours the file already holds
    (published day-ahead prices) are written as they are, only the others are forecast.
Archived forecasts older than `Targets.keep_days` (default 30) are deleted after each round
(forecasting.retention). Every forecast goes through the fallback rule on the target's own last 14 days (the model must beat
persistence and seasonal-naive there, else the better baseline is written, `fallback: true`), and is written
twice: the current forecast at a stable id and the per-issue archive kept for scoring (forecasting.entity).
One target's failure (unreadable history, too little of it) is logged and counted; the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datamodels.readings import counter_samples
from fiware_client import FiwareError, NonexistentTenant, NotFound
from forecasting import baselines as b
from forecasting.calendar import day_types
from forecasting.entity import current_and_archived, target_key
from forecasting.history_cache import HistoryCache
from forecasting.live_scores import DEFAULT_DAYS as LIVE_DAYS
from forecasting.live_scores import LiveReport, LiveScore, score_archived
from forecasting.load_pooled import JUDGE_DAYS, PooledLoad, PooledValues
from forecasting.profiles import profile_walk_forward
from forecasting.pv import PvSite, modelled_kwh, pv_walk_forward
from forecasting.retention import DEFAULT_KEEP_DAYS, archived_values, purge_archived
from forecasting.sun import ClearSkyCache

log = logging.getLogger("energytwin.forecast")
HISTORY_DAYS = 35  # load
PV_HISTORY_DAYS = 104  # the PV index's longest window (90 days) plus the 14 days the fallback rule judges
PRICE_HISTORY_DAYS = 120  # the price regression's training days
RECENT_DAYS = 14  # the fallback rule is judged on these last days of each target's history
MIN_DAYS = 7
IMPORT_ATTRS = ("totalActiveEnergyImport", "activeEnergyImport")
EXPORT_ATTRS = ("totalActiveEnergyExport", "activeEnergyExport")
ENERGY_ATTR = IMPORT_ATTRS[0]

# (start UTC, hours) -> hourly values over [start, start + hours), NaN where unknown.
HourlySource = Callable[[datetime, int], np.ndarray]


def hourly_energy(times: list[datetime] | np.ndarray, cumulative_kwh: list[float] | np.ndarray, start: datetime, hours: int) -> np.ndarray:
    """kWh per hour from a cumulative counter: the counter interpolated at hour boundaries, differenced.

    `times` are datetimes or epoch seconds (a numpy array). Hours not bracketed by samples are NaN (never invented); a counter going backwards (reset) gives NaN.
    """
    out = np.full(hours, np.nan)
    if len(times) < 2:
        return out
    t = np.asarray(times, float) if isinstance(times, np.ndarray) else np.array([x.timestamp() for x in times])
    v = np.asarray(cumulative_kwh, float)
    order = np.argsort(t)
    t, v = t[order], v[order]
    edges = start.timestamp() + 3600.0 * np.arange(hours + 1)
    at = np.interp(edges, t, v)
    inside = (edges >= t[0]) & (edges <= t[-1])
    diff = np.diff(at)
    ok = inside[:-1] & inside[1:] & (diff >= 0)
    out[ok] = diff[ok]
    return out


def meter_hourly(client, entity_id: str, start: datetime, hours: int, attrs: tuple[str, str],
                 cache: HistoryCache | None = None) -> np.ndarray:
    """Hourly kWh of one of a meter's counters (import or export) from the twin's history: read whole, or
    through `cache` (only what arrived since the last round is read; same values, forecasting.history_cache)."""
    end = start + timedelta(hours=hours)
    if cache is not None:
        t, v = cache.samples(client, entity_id, attrs, start, end)
        return hourly_energy(t, v, start, hours)
    history = client.attribute_history(entity_id, list(attrs), start - timedelta(minutes=30), end)
    samples = counter_samples(history, attrs)
    return hourly_energy([t for t, _ in samples], [v for _, v in samples], start, hours)


@dataclass(frozen=True)
class Forecast:
    values: np.ndarray
    method: str
    fallback: bool
    weather_values: np.ndarray | None = None  # PV with a weather plug-in: the weather path's values
    weather_used: bool = False
    model_values: np.ndarray | None = None  # a fallback's model values, archived so the model is judged again
    model: str = ""  # load: "pooled" or "profile" (which model's values were written or, on a fallback, kept)


def _judged(model_days: np.ndarray, days: np.ndarray, name: str, method: str) -> Forecast:
    """The fallback rule on the last RECENT_DAYS rows before the forecast row (the last row of `days`)."""
    n = days.shape[0] - 1
    recent = slice(max(MIN_DAYS, n - RECENT_DAYS), n)
    v = b.verdict(model_days[recent], days[recent], pers=b.persistence(days)[recent],
                  naive=b.seasonal_naive(days)[recent])
    if v.use == "model" or np.isnan(v.skill_vs_persistence):
        return Forecast(model_days[-1], method, False)
    base = days[-2] if v.use == "persistence" else days[-8]
    return Forecast(base, f"{v.use.replace('_', '-')} (fallback: {v.describe(name)})", True,
                    model_values=model_days[-1])


def live_fallback(fc: Forecast, history_days: np.ndarray, score: LiveScore | None, what: str) -> Forecast:
    """The fallback rule on live data: when the archived forecasts of the last days (forecasting.live_scores)
    did not beat both baselines against what the meter measured, write the better baseline instead, keep the
    model's values in the archive (`modelValues`) so it is judged again tomorrow, and say so in the log."""
    if fc.fallback or score is None or not score.judged or score.use == "model":
        return fc
    base = history_days[-1] if score.use == "persistence" else history_days[-7]
    log.warning("forecast: %s: the model %s; writing %s instead", what, score.describe(),
                score.use.replace("_", "-"))
    return Forecast(base, f"{score.use.replace('_', '-')} (fallback: model {score.describe()})", True,
                    fc.weather_values, fc.weather_used, model_values=fc.values, model=fc.model)


PROFILE_METHOD = "day-type profile (last 8 same-type days)"


def load_calendar(issue: datetime, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Day type, day of year and weekday of the n + 1 day blocks ending with the one that starts at `issue`:
    each block takes the date of its midpoint (UTC), so a block issued at 23:00 is typed by the day it covers."""
    mid = pd.Timestamp(issue).tz_convert(None) - pd.Timedelta(days=n) + pd.Timedelta(hours=12)
    dates = pd.date_range(mid.normalize(), periods=n + 1, freq="D")
    return day_types(dates), np.asarray(dates.dayofyear), np.asarray(dates.dayofweek)


def load_profile(days: np.ndarray, issue: datetime) -> tuple[np.ndarray, tuple, np.ndarray]:
    """(history + the row to forecast (NaN), its calendar, the profile's walk-forward forecasts of every row)."""
    n = days.shape[0]
    full = np.vstack([days, np.full((1, 24), np.nan)])
    calendar = load_calendar(issue, n)
    return full, calendar, profile_walk_forward(full, calendar[0], same_days=8)


def forecast_load(days: np.ndarray, issue: datetime, *, pooled: PooledValues | None = None,
                  profile: np.ndarray | None = None) -> Forecast:
    """Next-24-h load from (history days, 24) ending at `issue`, with the fallback rule on the last 14 days.

    With `pooled` (forecasting.load_pooled: its next 24 hours and its judge model's out-of-sample forecasts of
    those 14 days), the pooled model is written when it beat persistence, seasonal-naive *and* the profile
    there (MAE over the same hours); otherwise the profile goes through the fallback rule as before, and
    `method` says why the pooled model was not used. `profile`: the walk-forward profile of `load_profile`, if
    the caller has it already."""
    if profile is None:
        full, _, model = load_profile(days, issue)
    else:
        full, model = np.vstack([days, np.full((1, 24), np.nan)]), profile
    judged = _judged(model, full, "profile", PROFILE_METHOD)
    judged = Forecast(judged.values, judged.method, judged.fallback, model_values=judged.model_values,
                      model="profile")
    if pooled is None:
        return judged
    n = days.shape[0]
    lo = n - JUDGE_DAYS
    actual, pers, naive = full[lo:n], full[lo - 1:n - 1], full[lo - 7:n - 7]
    ok = np.isfinite(pooled.recent) & np.isfinite(model[lo:n]) & np.isfinite(actual) & np.isfinite(pers) & \
        np.isfinite(naive)
    if not ok.any() or not np.isfinite(pooled.next_day).all():
        return Forecast(judged.values, "pooled gradient boosting not used (no out-of-sample hours to judge it); "
                        + judged.method, judged.fallback, model_values=judged.model_values, model="profile")
    v = b.verdict(np.where(ok, pooled.recent, np.nan), actual, pers=pers, naive=naive)
    mae_pooled, mae_profile = (b.mae(np.where(ok, x, np.nan), actual) for x in (pooled.recent, model[lo:n]))
    figures = (f"on the last {JUDGE_DAYS} days from a fit that never saw them: {v.skill_vs_persistence:+.0%} vs "
               f"persistence, {v.skill_vs_seasonal_naive:+.0%} vs seasonal-naive, MAE {mae_pooled:.3f} kWh vs "
               f"{mae_profile:.3f} for the day-type profile")
    if v.use == "model" and mae_pooled < mae_profile:
        with_t = ", with air temperature" if pooled.temperature else ""
        return Forecast(pooled.next_day, f"pooled gradient boosting ({pooled.meters} meters{with_t}, fitted "
                        f"{pooled.fitted:%Y-%m-%dT%H:%MZ}; {figures})", False, model="pooled")
    why = "did not beat both baselines" if v.use != "model" else "did not beat the profile"
    return Forecast(judged.values, f"pooled gradient boosting not used ({why} {figures}); {judged.method}",
                    judged.fallback, model_values=judged.model_values, model="profile")


LoadForecast = Forecast  # the name earlier callers used


def forecast_price(days: np.ndarray, issue: datetime) -> Forecast:
    """Next-24-h price (EUR/MWh) from (history days, 24): the per-hour ridge regression when the history has
    the days to fit it (42 complete ones), else the day-type profile shifted toward yesterday's level."""
    from forecasting.profiles import ridge_walk_forward

    n = days.shape[0]
    dates = pd.date_range((issue - timedelta(days=n)).date(), periods=n + 1, freq="D")
    full = np.vstack([days, np.full((1, 24), np.nan)])
    types = day_types(dates)
    if (~np.isnan(days).any(axis=1)).sum() >= 42:
        model = ridge_walk_forward(full, types, np.asarray(dates.dayofyear), first_day=n - RECENT_DAYS,
                                   refit_every=RECENT_DAYS + 1)
        if np.isfinite(model[-1]).all():
            return _judged(model, full, "price regression",
                           "per-hour ridge regression (calendar, yesterday's and last week's level, lags)")
    model = profile_walk_forward(full, types, same_days=8, level_weight=0.5)
    return _judged(model, full, "price profile", "day-type profile + half of yesterday's level shift")


CLEAR_SKY = ClearSkyCache(modelled_kwh)  # per site, across rounds: each hourly round computes one new hour


def forecast_pv(site: PvSite, history_kwh: np.ndarray, issue: datetime, *,
                weather: tuple[np.ndarray, np.ndarray | None] | None = None,
                weather_archive: np.ndarray | None = None,
                clear_sky: ClearSkyCache | None = CLEAR_SKY) -> Forecast:
    """Next-24-h PV (kWh) from the hourly history over the PV_HISTORY_DAYS days before `issue`.

    Without weather: clear sky x the learned index, judged by the fallback rule on the last 14 days. With a
    weather forecast (GHI W/m2, air temperature C for the 24 hours): the pvlib chain on its GHI x the learned
    performance ratio, judged on `weather_archive` (the weather path's own forecasts archived by earlier rounds
    for the last RECENT_DAYS days, rows aligned with the last rows of the history; NaN where none): used when
    it beats persistence and seasonal-naive there, else the no-weather forecast is written and `method` says
    why. With under MIN_DAYS archived days it cannot be judged yet and is used on its held-out skill
    (docs/forecasts.md); `method` says so.
    """
    n = history_kwh.size // 24
    start = issue - timedelta(days=n)
    hours = np.datetime64(start.astimezone(UTC).replace(tzinfo=None), "h") + np.arange((n + 1) * 24).astype(
        "timedelta64[h]")
    clear = (modelled_kwh(site, hours) if clear_sky is None else clear_sky.kwh(site, hours[0], hours.size)).reshape(
        n + 1, 24)
    obs = np.vstack([history_kwh.reshape(n, 24), np.full((1, 24), np.nan)])
    model = pv_walk_forward(obs, clear, first_day=max(1, n - RECENT_DAYS))
    judged = _judged(model, obs, "PV clear-sky index", "pvlib clear sky x learned clear-sky index (no weather)")
    if weather is None:
        return judged
    from forecasting.pv import performance_ratio

    ghi, temp = weather
    values = modelled_kwh(site, hours[-24:], ghi_w_m2=ghi, temp_air_c=temp) * performance_ratio(obs[:-1], clear[:-1])
    method = "pvlib on the weather forecast's GHI x learned performance ratio"
    rows = min(RECENT_DAYS, n - 7) if weather_archive is not None else 0
    if rows > 0:
        archive = np.asarray(weather_archive, float)[-rows:]
        lo = n - rows
        judged_days = int((np.isfinite(archive).any(axis=1) & np.isfinite(obs[lo:n]).any(axis=1)).sum())
    else:
        judged_days = 0
    if judged_days < MIN_DAYS:
        return Forecast(values, f"{method} (not yet judged: {judged_days} archived days of the weather path, "
                                f"needs {MIN_DAYS}; held-out skill in docs/forecasts.md)", False, values, True)
    v = b.verdict(archive, obs[lo:n], pers=obs[lo - 1:n - 1], naive=obs[lo - 7:n - 7])
    if v.use == "model":
        return Forecast(values, f"{method} (beats both baselines on {judged_days} archived days: "
                                f"{v.skill_vs_persistence:+.0%} vs persistence)", False, values, True)
    note = (f"weather path not used: {v.skill_vs_persistence:+.0%} vs persistence, {v.skill_vs_seasonal_naive:+.0%} "
            f"vs seasonal-naive on {judged_days} archived days; ")
    return Forecast(judged.values, note + judged.method, judged.fallback, values, False,
                    model_values=judged.model_values)


@dataclass(frozen=True)
class PvTarget:
    """One PV installation to forecast: its site and where its hourly generation history comes from.

    `meter` is the measurement entity of its generation meter (generation = export - import, as the
    community accounting counts it); `history` a file or simulation source instead (`source` says which).
    """

    key: str
    site: PvSite
    meter: str | None = None
    history: HourlySource | None = None
    source: str = "twin"
    ref: str | None = None


@dataclass(frozen=True)
class PriceTarget:
    """One tariff's hourly import price (EUR/MWh) from its price file (hours it lacks are NaN)."""

    key: str
    history: HourlySource
    source: str = "file"


@dataclass
class Targets:
    """What a round forecasts beside every meter's load."""

    pv: list[PvTarget] = field(default_factory=list)
    price: list[PriceTarget] = field(default_factory=list)
    weather: Any = None  # a forecasting.weather.WeatherSource, or None
    load_meters: bool = True
    meters: list[str] | None = None  # measurement entity ids to forecast; None: every one the broker lists
    load_fallback: Callable[[str, datetime, int], np.ndarray] | None = None  # demo: simulated history by meter id
    keep_days: int | None = DEFAULT_KEEP_DAYS  # archived forecasts older than this are deleted; None: kept
    full_purge_done: bool = False  # the first round scans the whole archive, later ones the expired hours
    history_cache: HistoryCache | None = field(default_factory=HistoryCache)  # None: every round reads whole
    live_days: int | None = LIVE_DAYS  # once a day, score the archives of this many days (None: never)
    live_issue_hours: tuple[int, ...] | None = (0,)  # which archived issue hours (UTC) are scored; None: all
    scores_file: Path | None = None  # where the daily live report is written (JSON), if anywhere
    live_report: LiveReport | None = None  # the last live report: the live fallback rule reads it
    live_scored_at: datetime | None = None
    pooled_load: PooledLoad | None = field(default_factory=PooledLoad)  # None: the day-type profile only
    # (meter id, start UTC, hours) -> hourly air temperature (C) at the meter: observed for the history, forecast
    # for the 24 hours after the issue; a feature of the pooled load model when every meter has it (optional).
    load_temperature: Callable[[str, datetime, int], np.ndarray] | None = None


@dataclass
class RoundResult:
    issue: datetime
    entities: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # target -> reason
    purged: int = 0  # archived forecasts deleted by retention this round
    live_scored: bool = False  # this round re-scored the archive (once a day)
    live_fallbacks: list[str] = field(default_factory=list)  # "<target>:<quantity>" the live rule fell back on
    load_models: dict[str, int] = field(default_factory=dict)  # pooled | profile | fallback -> meters

    @property
    def written(self) -> int:
        return len(self.entities) // 2


def refresh_live_scores(client, issue: datetime, targets: Targets) -> bool:
    """Re-score the archive when the last report is a day old (or from a later replayed hour); a failure is
    logged and the previous report kept: scoring must never cost a round its forecasts."""
    if not targets.live_days:
        return False
    last = targets.live_scored_at
    if last is not None and timedelta(0) <= issue - last < timedelta(hours=24):
        return False
    try:
        report = score_archived(client, issue, targets.live_days, cache=targets.history_cache,
                                issue_hours=None if targets.live_issue_hours is None
                                else list(targets.live_issue_hours), sources=measured_sources(targets))
    except (FiwareError, ValueError) as exc:
        log.warning("forecast: live scores not refreshed: %s", exc)
        return False
    targets.live_report, targets.live_scored_at = report, issue
    lost = sorted(k for k, sc in report.scores.items() if sc.judged and sc.use != "model")
    log.info("forecast: live scores of the last %d days: %d targets scored (%d judged, %d did not beat both "
             "baselines%s), %d skipped", report.days, len(report.scores),
             sum(sc.judged for sc in report.scores.values()), len(lost),
             f": {', '.join(lost[:10])}" if lost else "", len(report.skipped))
    if targets.scores_file is not None:
        try:
            report.save(targets.scores_file)
        except OSError as exc:
            log.warning("forecast: live scores not written to %s: %s", targets.scores_file, exc)
    return True


def measured_sources(targets: Targets) -> dict[str, HourlySource]:
    """What live scoring reads where the measurement is not in the twin: each tariff's price file, and the
    history file of each PV installation that has no generation meter."""
    out = {f"{target_key(t.key)}:price": t.history for t in targets.price}
    out |= {f"{target_key(t.key)}:pvGeneration": t.history for t in targets.pv if t.meter is None and t.history}
    return out


def _live_score(targets: Targets, key: str, quantity: str) -> LiveScore | None:
    return targets.live_report.get(key, quantity) if targets.live_report is not None else None


def _load_temperatures(targets: Targets, meters: list[str], start: datetime, hours: int) -> dict[str, np.ndarray]:
    """Each meter's hourly air temperature as (days + 1, 24), when `targets.load_temperature` gives a complete
    series; a meter whose source fails or has gaps is logged and left out (the model then runs without)."""
    if targets.load_temperature is None:
        return {}
    out = {}
    for mid in meters:
        try:
            t = np.asarray(targets.load_temperature(mid, start, hours), float)
        except (ValueError, OSError) as exc:
            log.warning("forecast: no air temperature for %s: %s", mid, exc)
            continue
        if t.shape != (hours,) or not np.isfinite(t).all():
            log.warning("forecast: air temperature for %s incomplete (%d of %d hours): the pooled load model "
                        "runs without temperature", mid, int(np.isfinite(t).sum()) if t.ndim == 1 else 0, hours)
            continue
        out[mid] = t.reshape(-1, 24)
    return out


def _enough(values: np.ndarray) -> bool:
    return np.isfinite(values[-MIN_DAYS * 24:]).mean() >= 0.5


def run_round(client, issue: datetime | None = None, targets: Targets | None = None) -> RoundResult:
    """One round at `issue` (default: this hour): forecast every target, upsert the entities, report."""
    targets = targets or Targets()
    issue = (issue or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = issue - timedelta(days=HISTORY_DAYS)
    hours = HISTORY_DAYS * 24
    result = RoundResult(issue)

    def add(target: str, quantity: str, fc: Forecast, source: str, **kw) -> None:
        if fc.fallback and "on live data" in fc.method:
            result.live_fallbacks.append(f"{target_key(target)}:{quantity}")
        result.entities.extend(current_and_archived(target, quantity, issue, fc.values, fc.method,
                                                    fallback=fc.fallback, history_source=source,
                                                    model_values=fc.model_values, **kw))

    result.live_scored = refresh_live_scores(client, issue, targets)

    meters: list[dict] = []
    if targets.load_meters:
        if targets.meters is not None:
            meters = [{"id": m} for m in targets.meters]
        else:
            try:
                meters = client.query_entities(type="ThreePhaseAcMeasurement", attrs=[IMPORT_ATTRS[0]])
            except NonexistentTenant:
                log.info("forecast: tenant %s holds no meters yet", getattr(client, "tenant", None))
        loads: list[tuple[str, np.ndarray, str]] = []
        for meter in meters:
            mid = meter["id"]
            try:
                kwh, source = meter_hourly(client, mid, start, hours, IMPORT_ATTRS, targets.history_cache), "twin"
            except (NotFound, NonexistentTenant):  # a listed meter that has not reported yet
                kwh, source = np.full(hours, np.nan), "twin"
            except FiwareError as exc:  # one meter's broken history must not stop the others
                log.warning("forecast: no history for %s: %s", mid, exc)
                result.skipped[mid] = f"history unreadable: {exc}"
                continue
            if not _enough(kwh) and targets.load_fallback is not None:
                kwh, source = targets.load_fallback(mid, start, hours), "simulation"
            if not _enough(kwh):
                log.info("forecast: %s has under %d days of history, skipped", mid, MIN_DAYS)
                result.skipped[mid] = f"under {MIN_DAYS} days of history"
                continue
            loads.append((mid, kwh.reshape(HISTORY_DAYS, 24), source))
        profiles = {mid: load_profile(days, issue) for mid, days, _ in loads}
        pooled: dict[str, PooledValues] = {}
        if targets.pooled_load is not None and loads:
            try:
                temps = _load_temperatures(targets, [mid for mid, _, _ in loads], start, hours + 24)
                pooled = targets.pooled_load.forecast(
                    {mid: (p[0], p[2], temps.get(mid)) for mid, p in profiles.items()},
                    next(iter(profiles.values()))[1], issue)
            except (ValueError, MemoryError) as exc:  # the profile still forecasts every meter
                log.warning("forecast: pooled load model failed, day-type profile only: %s", exc)
        for mid, days, source in loads:
            fc = live_fallback(forecast_load(days, issue, pooled=pooled.get(mid), profile=profiles[mid][2]), days,
                               _live_score(targets, target_key(mid), "load"), f"load {target_key(mid)}")
            kind = "fallback" if fc.fallback else fc.model
            result.load_models[kind] = result.load_models.get(kind, 0) + 1
            add(mid, "load", fc, source)

    pv_start, pv_hours = issue - timedelta(days=PV_HISTORY_DAYS), PV_HISTORY_DAYS * 24
    for target in targets.pv:
        start, hours = pv_start, pv_hours
        try:
            if target.meter is not None:
                try:
                    exp = meter_hourly(client, target.meter, start, hours, EXPORT_ATTRS, targets.history_cache)
                    imp = meter_hourly(client, target.meter, start, hours, IMPORT_ATTRS, targets.history_cache)
                    kwh = np.clip(exp - np.nan_to_num(imp), 0, None)
                except (NotFound, NonexistentTenant):
                    kwh = np.full(hours, np.nan)
                source = "twin"
                if not _enough(kwh) and target.history is not None:
                    kwh, source = target.history(start, hours), target.source
            else:
                assert target.history is not None, "a PV target needs a meter or a history source"
                kwh, source = target.history(start, hours), target.source
            if not _enough(kwh):
                result.skipped[target.key] = f"under {MIN_DAYS} days of PV history"
                log.info("forecast: PV %s has under %d days of history, skipped", target.key, MIN_DAYS)
                continue
            weather = targets.weather.for_site(target.site, issue) if targets.weather is not None else None
            archive = None
            if weather is not None:
                archive = archived_values(client, target.key, "pvGeneration", issue, RECENT_DAYS,
                                          "weatherModelValues")
            fc = forecast_pv(target.site, kwh, issue, weather=weather, weather_archive=archive)
            fc = live_fallback(fc, kwh.reshape(-1, 24), _live_score(targets, target.key, "pvGeneration"),
                               f"PV {target.key}")
        except (FiwareError, ValueError, OSError) as exc:
            log.warning("forecast: PV %s failed: %s", target.key, exc)
            result.skipped[target.key] = str(exc)
            continue
        kind = targets.weather.kind if fc.weather_used else "none"
        add(target.key, "pvGeneration", fc, source, weather_input=kind, ref_target=target.ref or target.meter,
            weather_model_values=fc.weather_values)

    for target in targets.price:
        start, hours = issue - timedelta(days=PRICE_HISTORY_DAYS), PRICE_HISTORY_DAYS * 24
        try:
            series = target.history(start, hours + 24)
        except (ValueError, OSError) as exc:
            log.warning("forecast: price %s failed: %s", target.key, exc)
            result.skipped[target.key] = str(exc)
            continue
        past, ahead = series[:hours], series[hours:]
        if not _enough(past):
            result.skipped[target.key] = f"under {MIN_DAYS} days of prices before {issue:%Y-%m-%d %H:%MZ}"
            continue
        days = past.reshape(PRICE_HISTORY_DAYS, 24)
        fc = live_fallback(forecast_price(days, issue), days, _live_score(targets, target_key(target.key), "price"),
                           f"price {target.key}")
        published = np.isfinite(ahead)
        if published.any():  # the model's own 24 hours are archived, so live scoring judges the model
            values = np.where(published, ahead, fc.values)
            fc = Forecast(values, f"{published.sum()} of 24 h published in the price file; others: {fc.method}",
                          fc.fallback, model_values=fc.model_values if fc.fallback else fc.values)
        add(target.key, "price", fc, target.source)

    if result.entities:
        client.upsert_entities(result.entities)
    if targets.keep_days is not None:
        try:
            result.purged = purge_archived(client, targets.keep_days, issue, full=not targets.full_purge_done).deleted
            targets.full_purge_done = True
        except FiwareError as exc:  # retention must not cost a round its forecasts: the next round retries
            log.warning("forecast: retention purge failed: %s", exc)
    log.info("forecast: %d forecasts issued %s (%d skipped)%s", result.written, issue.isoformat(), len(result.skipped),
             "; load: " + ", ".join(f"{k} {v}" for k, v in sorted(result.load_models.items()))
             if result.load_models else "")
    return result


def run_once(client, issue: datetime | None = None, targets: Targets | None = None) -> list[dict]:
    """One round; the archived entities it wrote (one per forecast)."""
    return run_round(client, issue, targets).entities[1::2]  # current_and_archived: [current, archived] pairs
