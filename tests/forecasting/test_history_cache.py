"""The per-target history cache gives the service exactly what a full re-read gives, reading only what is new."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from forecasting.history_cache import HistoryCache, compact
from forecasting.service import hourly_energy


def test_first_and_last_of_each_hour_interpolate_the_boundaries_as_every_sample_does():
    rng = np.random.default_rng(1)
    start = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    t = np.sort(start - 1800 + rng.uniform(0, 50 * 3600, 700))
    t = np.delete(t, np.s_[200:260])  # a gap of a few hours
    v = np.cumsum(rng.uniform(0, 0.3, t.size))
    v[500:] -= 40  # a counter reset
    ct, cv = compact(t, v)
    assert ct.size < t.size / 4
    begin = datetime.fromtimestamp(start, UTC)
    np.testing.assert_array_equal(hourly_energy(ct, cv, begin, 48), hourly_energy(t, v, begin, 48))


class _Fake:
    """A broker answering `after` reads of one counter from a list of instances (for the size bound)."""

    def __init__(self, times: list[datetime]):
        self.times = times

    def temporal_entity(self, entity_id, *, timerel, time_at, attrs, options):
        values = [[round(t.timestamp() / 3600 + (t.minute == 7) * 0.1, 3), t.strftime("%Y-%m-%dT%H:%M:%SZ")]
                  for t in self.times if t >= time_at]  # a counter rising 1 kWh per hour, 0.1 of it at :07
        return {"id": entity_id, attrs[0]: {"type": "Property", "values": values}}


def test_cache_is_bounded_and_drops_the_least_recently_used_series():
    end = datetime(2026, 3, 1, tzinfo=UTC)
    fake = _Fake([end - timedelta(minutes=15 * k) for k in range(4 * 24 * 3)])  # 3 days, 15-min
    cache = HistoryCache(max_samples=400)
    attrs = ("totalActiveEnergyImport", "activeEnergyImport")
    for name in ("a", "b", "c"):
        cache.samples(fake, name, attrs, end - timedelta(days=3), end)  # ~145 samples each after compaction
    assert cache.size <= 400 and cache.stats.evicted == 1
    assert [k[0] for k in cache._series] == ["b", "c"]


def test_each_series_is_read_whole_once_a_day_over_its_longest_window():
    end = datetime(2026, 3, 1, tzinfo=UTC)
    fake = _Fake([end + timedelta(hours=30, minutes=7) - timedelta(minutes=15 * k) for k in range(4 * 24 * 6)])
    cache = HistoryCache(fresh_s=0)
    attrs = ("totalActiveEnergyImport", "activeEnergyImport")
    cache.samples(fake, "m", attrs, end - timedelta(days=4), end)  # the longest window: 4 days
    for h in range(1, 25):
        at = end + timedelta(hours=h)
        got = hourly_energy(*cache.samples(fake, "m", attrs, at - timedelta(days=1), at), at - timedelta(days=1), 24)
        fresh = HistoryCache().samples(fake, "m", attrs, at - timedelta(days=1), at)
        np.testing.assert_array_equal(got, hourly_energy(*fresh, at - timedelta(days=1), 24))
        assert np.isfinite(got[1:-1]).all()
    assert cache.stats.full_reads == 2 and cache.stats.incremental_reads == 23  # one staggered full read
    series = cache._series[("m", attrs)]
    assert series.read_from <= (end + timedelta(hours=24) - timedelta(days=4, minutes=30)).timestamp()


def _readings(meter: str, times: list[datetime], imported: np.ndarray, exported: np.ndarray) -> list[dict]:
    out = []
    for t, i, e in zip(times, imported, exported, strict=True):
        at = t.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append({"id": meter, "type": "ThreePhaseAcMeasurement",
                    "totalActiveEnergyImport": {"type": "Property", "value": round(float(i), 3), "observedAt": at},
                    "totalActiveEnergyExport": {"type": "Property", "value": round(float(e), 3), "observedAt": at}})
    return out


def test_cached_rounds_write_the_same_forecasts_as_full_rereads(broker_url: str):
    """Load and PV of a meter over four rounds, one with a reading published late: cached == full re-read."""
    from fiware_client import NgsiLdClient
    from forecasting.pv import PvSite, modelled_kwh
    from forecasting.service import PvTarget, Targets, run_round

    issue = datetime(2026, 6, 1, tzinfo=UTC)
    meter = "urn:ngsi-ld:ThreePhaseAcMeasurement:cache-meter"
    site = PvSite(40.4, -3.7, 30, 180, 2.0)
    first = issue - timedelta(days=9)
    steps = 9 * 96 + 3 * 4  # 15-min readings up to issue + 3 h
    times = [first + timedelta(minutes=7 + 15 * k) for k in range(steps)]  # off the hour: interpolated
    hours = np.datetime64(first.replace(tzinfo=None), "h") + np.arange(steps // 4 + 1).astype("timedelta64[h]")
    rng = np.random.default_rng(5)
    pv = np.repeat(modelled_kwh(site, hours) * rng.uniform(0.4, 0.9, hours.size), 4)[:steps] / 4
    load = rng.uniform(0.05, 0.2, steps)
    imported = 100 + np.cumsum(np.clip(load - pv, 0, None))
    exported = 50 + np.cumsum(np.clip(pv - load, 0, None))
    rows = _readings(meter, times, imported, exported)
    until = len(rows) - 12  # readings before the first issue
    late = until + 3  # issue + 52 min, the hour's last reading: published two hours late
    cache = HistoryCache(refresh_hours=0)  # no periodic full read inside this test
    cached = Targets(pv=[PvTarget("cache-roof", site, meter=meter)], meters=[meter], keep_days=None,
                     history_cache=cache)
    full = Targets(pv=[PvTarget("cache-roof", site, meter=meter)], meters=[meter], keep_days=None,
                   history_cache=None)
    with NgsiLdClient(broker_url, tenant="cache-test") as client:
        client.upsert_entities(rows[:until], update=True)
        first_rows = until
        for round_ in range(4):
            issue_k = issue + timedelta(hours=round_)
            a = run_round(client, issue_k, cached).entities
            b = run_round(client, issue_k, full).entities
            assert len(a) == 4 and [e["hourlyValues"] for e in a] == [e["hourlyValues"] for e in b]
            assert [e["method"] for e in a] == [e["method"] for e in b]
            step = rows[until:until + 4]
            if round_ == 0:
                step = [r for k, r in enumerate(step, until) if k != late]
            elif round_ == 2:  # after the next hour's readings were read: the overlap finds it
                step = step + [rows[late]]
            client.upsert_entities(step, update=True)
            until += 4
    stats = cache.stats
    # import (35 days for load, then 104 for PV) and export read whole once; then a round reads import (for load;
    # PV's ask for it is answered from memory) and export after the last cached sample less the overlap
    assert (stats.full_reads, stats.incremental_reads, stats.fresh_hits) == (3, 6, 3)
    assert stats.instances_read - 3 * first_rows <= 6 * 4 * 8  # each: the 6-h overlap and the new hours
