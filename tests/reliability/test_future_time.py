"""The agent refuses a TimeInstant from the future (a meter that believed a wrong clock): counted, logged, the
other measure objects of the message kept; a small lead (an agent clock a little behind) still passes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from twin_service.agent.metrics import Metrics
from twin_service.agent.models import Device, ServiceGroup
from twin_service.agent.registry import Registry
from twin_service.agent.rejections import RejectionReporter
from twin_service.agent.south import FloodLimit, MeasureHandler
from twin_service.agent.timestamps import observed_at

ARRIVAL = datetime(2026, 12, 7, 4, 0, 0, tzinfo=UTC)
TOPIC = "/json/k/m1/attrs"


@pytest.fixture
def handler(tmp_path: Path) -> Iterator[tuple[MeasureHandler, Metrics]]:
    registry = Registry(tmp_path / "registry.sqlite")
    registry.create_groups("energytwin", "/", [ServiceGroup(apikey="k", resource="/iot/json",
                                                            entity_type="ThreePhaseAcMeasurement")])
    registry.create_devices("energytwin", "/", [Device(device_id="m1", apikey="k",
                                                       entity_name="urn:ngsi-ld:ThreePhaseAcMeasurement:m1",
                                                       entity_type="ThreePhaseAcMeasurement")])
    metrics = Metrics()
    yield MeasureHandler(registry, metrics, RejectionReporter(metrics, 0.0), 64 * 1024, True, FloodLimit(0.0, 1)), \
        metrics
    registry.close()


def reading(ahead: timedelta, frequency: float = 50.0) -> dict:
    return {"f": frequency, "TimeInstant": observed_at(ARRIVAL + ahead)}


def test_a_reading_a_year_ahead_is_refused_and_counted(handler: tuple[MeasureHandler, Metrics],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    measures, metrics = handler
    upsert = measures.handle(TOPIC, json.dumps(reading(timedelta(days=365))).encode(), ARRIVAL)
    assert upsert is None
    assert metrics.value("rejected_total", reason="future_timestamp") == 1
    assert "31536000 s ahead of the agent's clock" in caplog.text and "meter's clock is wrong" in caplog.text


def test_in_a_replay_only_the_future_objects_are_dropped(handler: tuple[MeasureHandler, Metrics]) -> None:
    measures, metrics = handler
    batch = [reading(timedelta(seconds=-2), 49.9), reading(timedelta(hours=2), 50.1),
             reading(timedelta(seconds=240), 50.0)]  # 4 min ahead: an agent clock behind, still in the limit
    upsert = measures.handle(TOPIC, json.dumps(batch).encode(), ARRIVAL)
    assert upsert is not None
    kept = [f["frequency"]["value"] for f in upsert.entities if "frequency" in f]
    assert kept == [49.9, 50.0]
    assert metrics.value("rejected_total", reason="future_timestamp") == 1
