"""Scenarios for the stochastic sharing LP: for every target hour, S joint (consumption, generation) samples from
history.

Why scenarios and not a mean profile: coefficients that match the *mean* consumption of every member exactly
leave no room for how each member's real hour differs from the mean, so generation a proportional split would
have self-consumed ends as surplus (bench/community_coefficients.py measures it). Optimising the average over
real past hours that resemble the target hour weighs each member's share by how often that member really
needs it.

Which past hours resemble a target hour: the same local hour on the same kind of day (`match`:
"hour-of-week" = same weekday; "day-type" = Monday-Friday / Saturday / Sunday), the S nearest by day of the year
(circular, so 2 January is near 30 December). Each scenario is one whole past hour: every member's consumption
and the generation of that same hour, which keeps what they have in common (holidays, heat, cloudy days).
Generation is moved to the target hour's sun: with a clear-sky model, g = clear-sky(target hour) x measured /
clear-sky of the past hour (its clear-sky index); without one, the measured kWh of the past hour as is (it is the
same local hour a few days away).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Match = Literal["hour-of-week", "day-type"]
# Defaults chosen on a validation year (bench/community_coefficients.py, seed separate from the reported test
# year): more scenarios were better all the way to every week of a year's history (12 -> 52: +0.7 points of
# self-consumption); hour-of-week and day-type matched within 0.02 points, and hour-of-week is the same data the
# mean profile uses, so the comparison with `optimal-mean` isolates the effect of using the distribution.
DEFAULT_SCENARIOS = 52
DEFAULT_MATCH: Match = "hour-of-week"
_MAX_CLEAR_SKY_INDEX = 1.5  # bounds the ratio near sunrise/sunset, where the clear-sky energy is tiny


@dataclass(frozen=True)
class Scenarios:
    """S past hours per target hour: members x hours x S consumption, hours x S generation."""

    consumption_kwh: np.ndarray
    generation_kwh: np.ndarray
    source_index: np.ndarray  # hours x S: column of the history each scenario was taken from
    notes: tuple[str, ...] = ()

    @property
    def n_scenarios(self) -> int:
        return int(self.generation_kwh.shape[1])

    @classmethod
    def single(cls, consumption_kwh: np.ndarray, generation_kwh: np.ndarray) -> Scenarios:
        """One scenario = the given data itself: the stochastic LP becomes the deterministic one."""
        c = np.asarray(consumption_kwh, float)
        return cls(c[:, :, None], np.asarray(generation_kwh, float)[:, None], np.zeros((c.shape[1], 1), int))

    def mean_consumption_kwh(self) -> np.ndarray:
        return self.consumption_kwh.mean(axis=2)

    def mean_generation_kwh(self) -> np.ndarray:
        return self.generation_kwh.mean(axis=1)


def _day_keys(local: pd.DatetimeIndex, match: Match) -> np.ndarray:
    dow = np.asarray(local.dayofweek)
    if match == "day-type":
        dow = np.where(dow < 5, 0, dow)  # Monday-Friday alike, Saturday and Sunday apart
    elif match != "hour-of-week":
        raise ValueError(f"unknown scenario match {match!r}")
    return dow * 24 + np.asarray(local.hour)


def scenarios_from_history(
    history_hours_utc: np.ndarray,
    history_consumption_kwh: np.ndarray,
    history_generation_kwh: np.ndarray,
    target_hours_utc: np.ndarray,
    tz: str,
    *,
    n_scenarios: int = DEFAULT_SCENARIOS,
    match: Match = DEFAULT_MATCH,
    history_clear_sky_kwh: np.ndarray | None = None,
    target_clear_sky_kwh: np.ndarray | None = None,
) -> Scenarios:
    """The `n_scenarios` past hours nearest in the year with the same local hour and kind of day (module doc).

    Only past hours with a measured generation are candidates. A member's gap in a chosen hour takes that
    member's mean of the same kind of hour (the profile the deterministic method uses), and the note says how
    many cells that was. With fewer candidates than `n_scenarios` (a short history), every target hour gets the
    largest count all of them have; a history shorter than a week matches on the local hour only.
    """
    c_hist = np.atleast_2d(np.asarray(history_consumption_kwh, float))
    g_hist = np.asarray(history_generation_kwh, float)
    n = c_hist.shape[0]
    hist_local = pd.DatetimeIndex(history_hours_utc).tz_localize("UTC").tz_convert(tz)
    tgt_local = pd.DatetimeIndex(target_hours_utc).tz_localize("UTC").tz_convert(tz)
    notes: list[str] = []

    known = ~np.isnan(g_hist)
    hist_key = _day_keys(hist_local, match)
    tgt_key = _day_keys(tgt_local, match)
    counts = np.bincount(hist_key[known], minlength=7 * 24)
    if int(known.sum()) < 7 * 24 or (counts[np.unique(tgt_key)] == 0).any():
        hist_key = np.asarray(hist_local.hour)
        tgt_key = np.asarray(tgt_local.hour)
        counts = np.bincount(hist_key[known], minlength=24)
        notes.append("scenarios: history shorter than a week, matched on the local hour only")
    s = min(n_scenarios, int(counts[np.unique(tgt_key)].min()))
    if s == 0:
        raise ValueError("no past hour with measured generation for some local hour of the target period")
    if s < n_scenarios:
        notes.append(f"scenarios: {s} per hour (the history has no more past hours of some kind)")

    # Generation moved to the target hour's sun through the past hour's clear-sky index.
    if history_clear_sky_kwh is not None and target_clear_sky_kwh is not None:
        clear_h = np.asarray(history_clear_sky_kwh, float)
        days = np.asarray(hist_local.normalize().asi8)
        frame = pd.DataFrame({"d": days, "m": np.nan_to_num(g_hist), "c": clear_h})
        by_day = frame.groupby("d")[["m", "c"]].transform("sum")
        day_index = np.where(by_day["c"] > 0, by_day["m"] / by_day["c"].where(by_day["c"] > 0, 1), 0.0)
        day_max = frame.groupby("d")["c"].transform("max").to_numpy()
        bright = clear_h >= 0.1 * day_max
        with np.errstate(all="ignore"):
            hour_index = np.where(bright & (clear_h > 0), g_hist / clear_h, day_index)
        index_hist = np.clip(np.nan_to_num(hour_index), 0.0, _MAX_CLEAR_SKY_INDEX)
        target_clear = np.asarray(target_clear_sky_kwh, float)
    else:
        index_hist = None
        target_clear = None

    doy_hist = np.asarray(hist_local.dayofyear)
    doy_tgt = np.asarray(tgt_local.dayofyear)
    source = np.empty((tgt_key.size, s), int)
    cand_all = np.arange(g_hist.size)
    for key in np.unique(tgt_key):
        cand = cand_all[(hist_key == key) & known]
        rows = np.flatnonzero(tgt_key == key)
        gap = np.abs(doy_tgt[rows, None] - doy_hist[None, cand])
        gap = np.minimum(gap, 365 - gap)
        order = np.argsort(gap, axis=1, kind="stable")[:, :s]
        source[rows] = cand[order]

    consumption = c_hist[:, source]  # members x hours x S
    missing = np.isnan(consumption)
    if missing.any():
        keys = np.unique(hist_key)
        profile = np.full((n, hist_key.max() + 1), np.nan)
        for key in keys:
            with np.errstate(all="ignore"):
                cols = c_hist[:, hist_key == key]
                ok = ~np.isnan(cols)
                profile[:, key] = np.where(ok, cols, 0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)
        fill = profile[:, hist_key[source]]
        consumption = np.where(missing, fill, consumption)
        notes.append(
            f"scenarios: {int(missing.sum())} member-hours with a gap took the member's mean of that kind of hour"
        )
    consumption = np.clip(np.nan_to_num(consumption), 0, None)
    if index_hist is not None and target_clear is not None:
        generation = target_clear[:, None] * index_hist[source]
    else:
        generation = np.clip(g_hist[source], 0, None)
    return Scenarios(consumption, generation, source, tuple(notes))
