"""Property-based fuzzing of the agent's MQTT side: any topic and payload is mapped or rejected with a counted
reason, never an internal error, and whatever is accepted is an upsert the broker can take (JSON, NGSI-LD shaped)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin_service.agent.continuity import CounterContinuity
from twin_service.agent.metrics import Metrics
from twin_service.agent.models import Device, ServiceGroup
from twin_service.agent.registry import Registry
from twin_service.agent.rejections import RejectionReporter
from twin_service.agent.south import FloodLimit, MeasureHandler

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(90)
KEYS = ["v", "vll", "i", "p", "q", "s", "pt", "qt", "st", "pf", "pft", "thdv", "thdi", "f", "eai", "eae", "eait",
        "eaet", "eri", "ere", "esi", "ese", "avv", "avi", "pq", "ds", "clk", "TimeInstant", "id", "type", "x"]


@pytest.fixture(scope="module")
def handler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MeasureHandler, Metrics]]:
    registry = Registry(Path(tmp_path_factory.mktemp("agent")) / "registry.sqlite")
    registry.create_groups("energytwin", "/", [ServiceGroup(apikey="k", resource="/iot/json",
                                                            entity_type="ThreePhaseAcMeasurement")])
    registry.create_devices("energytwin", "/", [Device(device_id="m1", apikey="k",
                                                       entity_name="urn:ngsi-ld:ThreePhaseAcMeasurement:m1",
                                                       entity_type="ThreePhaseAcMeasurement")])
    metrics = Metrics()
    yield MeasureHandler(registry, metrics, RejectionReporter(metrics, 3600.0), 64 * 1024, True,
                         FloodLimit(0.0, 1), None, CounterContinuity(None)), metrics
    registry.close()


scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
           | st.sampled_from(["2026-12-06T10:00:00.000Z", "2026-12-06T10:00:00", "2026-02-30T25:00:00Z", "NaN"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(
    st.sampled_from(["L1", "L2", "L3", "N", "L12", "L23", "L31", "dipL1", "overcurrent", "x", ""]) | st.text(max_size=8),
    c, max_size=5), max_leaves=25)
measure_objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), values, max_size=8)
payloads = st.one_of(measure_objects, st.lists(measure_objects, max_size=5), values)
topics = st.one_of(st.sampled_from(["/json/k/m1/attrs", "/k/m1/attrs", "/json/k/m1/attrs/f", "/json/k/m2/attrs",
                                    "/json/zz/m1/attrs", "/json/k//attrs", "json/k/m1/attrs", "/json/k/m1/cmd",
                                    "/json/k/m1/attrs/eai"]), st.text(max_size=40))


def _finite(obj: object) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


def _accepted_shape(handler: MeasureHandler, topic: str, raw: bytes) -> None:
    upsert = handler.handle(topic, raw)
    if upsert is None:
        return
    for fragment in upsert.entities:
        assert isinstance(fragment.get("id"), str) and isinstance(fragment.get("type"), str)
        assert _finite(fragment)
        json.dumps(fragment, allow_nan=False)  # what the broker receives is strict JSON
        for name, attribute in fragment.items():
            if name not in ("id", "type", "@context"):
                assert isinstance(attribute, dict) and attribute.get("type") in (
                    "Property", "Relationship", "GeoProperty", "LanguageProperty"), (name, attribute)


@FUZZ
@given(topic=topics, payload=payloads)
def test_json_payloads_are_mapped_or_rejected_with_a_reason(handler, topic: str, payload: object) -> None:
    h, metrics = handler
    _accepted_shape(h, topic, json.dumps(payload).encode())
    assert metrics.value("rejected_total", reason="internal_error") == 0


@FUZZ
@given(topic=topics, raw=st.one_of(st.binary(max_size=300), st.sampled_from(
    [b"", b"{", b"[" * 10000, b'{"f": 1e999}', b'{"f": NaN}', b'{"eai": {"L1": -Infinity}}', b"\xff\xfe",
     b'{"TimeInstant": "2026-12-06T10:00:00Z", "f": 50}' * 3, b"null", b"1" * 70000])))
def test_raw_bytes_never_break_the_agent(handler, topic: str, raw: bytes) -> None:
    h, metrics = handler
    _accepted_shape(h, topic, raw)
    assert metrics.value("rejected_total", reason="internal_error") == 0
