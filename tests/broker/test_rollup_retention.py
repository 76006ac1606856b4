"""Retention of the 1-min rollups: old ones go, 10-min and hourly stay and keep answering old windows, and where
raw history is kept longer it answers 1-minute aggregations instead of the deleted rollups."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from twin_service.broker import Store, create_app
from twin_service.broker._model import Entity, format_datetime
from twin_service.broker._store import TimeRange

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, measurement
from .test_rollups import _close

TEMPORAL = f"{BASE}/temporal/entities/{MEASUREMENT_ID}"
REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
OLD, RECENT = NOW - timedelta(days=40), NOW - timedelta(hours=2)  # hour-aligned windows of 25 min of readings


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _feed(client: TestClient, start: datetime) -> None:
    for s in range(0, 1500, 10):
        at = _stamp(start + timedelta(seconds=s))
        reading = measurement(voltage_v=230.0 + (s % 7) * 0.5, observed_at=at, activeEnergyImport={
            "type": "Property", "value": 100.0 + s / 100, "unitCode": "KWH", "observedAt": at})
        client.post(f"{BASE}/entityOperations/upsert", params={"options": "update"}, headers=ENERGY_LINK,
                    json=[reading]).raise_for_status()


def _aggregated(client: TestClient, start: datetime, period: str) -> dict[str, Any]:
    answer = client.get(TEMPORAL, headers=ENERGY_LINK, params={
        "timerel": "between", "timeAt": _stamp(start), "endTimeAt": _stamp(start + timedelta(hours=1)),
        "attrs": "phaseVoltage,activeEnergyImport", "aggrMethods": "totalCount,avg,min,max,stddev",
        "aggrPeriodDuration": period})
    assert answer.status_code == 200, answer.text
    return {k: v for k, v in answer.json().items() if k not in ("id", "type")}


def _rollups(store: Store, period_s: int, start: datetime) -> list[dict[str, Any]]:
    window = TimeRange(start.timestamp(), (start + timedelta(hours=1)).timestamp())
    return [r for _, series in store.history_attributes("", MEASUREMENT_ID)
            for r in store.rollups(series, period_s, window)]


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_old_1min_rollups_go_and_coarser_ones_answer(data_dir: Path) -> None:
    with TestClient(create_app(data_dir)) as client:
        _feed(client, OLD)
        _feed(client, RECENT)  # later readings: the old buckets are closed, as a live meter closes them
        store: Store = client.app.state.broker.store
        store.move_history()
        before = {p: _aggregated(client, OLD, p) for p in ("PT1H", "PT10M", "PT1M")}
        coarse = {p: _rollups(store, p, OLD) for p in (600, 3600)}
        assert len({r["start"] for r in _rollups(store, 60, OLD)}) == 25  # 25 minutes of readings
        assert before["PT1M"]["phaseVoltage"]["avg"] and len(before["PT10M"]["activeEnergyImport"]["max"]) == 3

    # raw history kept: the 1-min rollups older than the retention go, and the raw rows answer PT1M there
    with TestClient(create_app(data_dir, rollup_1min_retention_days=31)) as client:
        store = client.app.state.broker.store
        _until(lambda: not _rollups(store, 60, OLD), "the 1-min rollups of 40 days ago were not pruned")
        assert len({r["start"] for r in _rollups(store, 60, RECENT)}) == 25  # younger than the retention: kept
        assert {p: _rollups(store, p, OLD) for p in (600, 3600)} == coarse
        for period in ("PT1H", "PT10M", "PT1M"):
            assert _close(_aggregated(client, OLD, period), before[period]), period

    # raw history pruned too: 10-min and hourly rollups still answer the old window; 1-minute resolution is gone
    with TestClient(create_app(data_dir, retention_days=35, rollup_1min_retention_days=31)) as client:
        store = client.app.state.broker.store
        series = dict(store.history_attributes("", MEASUREMENT_ID))
        _until(lambda: store.first_observed(next(iter(series.values()))) > OLD.timestamp() + 3600,
               "the raw rows of 40 days ago were not pruned")
        for period in ("PT1H", "PT10M"):
            assert _close(_aggregated(client, OLD, period), before[period]), period
        assert _aggregated(client, OLD, "PT1M") == {}
        assert _aggregated(client, RECENT, "PT1M")["phaseVoltage"]["avg"]


def test_pruning_in_small_transactions_deletes_exactly_the_older_buckets(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        base = 1_800_000_000  # a whole hour
        for meter in range(3):
            entity = Entity(f"urn:ngsi-ld:X:{meter}", "https://example.org/X", {}, "", "")
            for minute in range(30):
                at = format_datetime(datetime.fromtimestamp(base + minute * 60 + meter, UTC))
                entity.attrs = {"https://example.org/p": {"type": "Property", "value": minute + 0.5, "observedAt": at}}
                with store.transaction() as tx:
                    tx.record_instances("t", entity, list(entity.attrs), "update", at)
        store.move_history()
        series = [s for m in range(3) for _, s in store.history_attributes("t", f"urn:ngsi-ld:X:{m}")]
        ten_minutes = [store.rollups(s, 600) for s in series]
        assert store.prune_rollups(60, base + 17 * 60 + 30, rows_per_transaction=4) == 3 * 17
        for s in series:
            assert [r["start"] for r in store.rollups(s, 60)] == [base + m * 60 for m in range(17, 30)]
        assert [store.rollups(s, 600) for s in series] == ten_minutes
    finally:
        store.close()


def test_rollup_retention_on_the_command_line(tmp_path: Path) -> None:
    refused = subprocess.run([sys.executable, "-m", "twin_service.broker", "--rollup-1min-retention-days", "0",
                              "--data-dir", str(tmp_path)], check=False, cwd=REPO, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "--rollup-1min-retention-days must be positive" in refused.stderr
