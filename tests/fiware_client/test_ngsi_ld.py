"""NgsiLdClient and AsyncNgsiLdClient against the embedded broker on a real uvicorn server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from datamodels.anomaly import ANOMALY_TYPE
from datamodels.context import context_for
from datamodels.entities import ThreePhaseAcMeasurement
from datamodels.measures import MEASUREMENT_TYPE, measurement_id
from fiware_client import (
    AsyncNgsiLdClient,
    BadRequest,
    BatchError,
    BrokerUnavailable,
    Measurement,
    NgsiLdClient,
    NonexistentTenant,
    NotFound,
    RetryPolicy,
    unwrap,
)
from twin_service.mqtt_server import free_port

from .conftest import LiveBroker, Receiver

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def meter(device: str, voltage_v: float, at: datetime = T0, energy_kwh: float = 1.0) -> dict:
    """A normalized measurement as the IoT Agent writes it, built from the datamodels model."""
    model = ThreePhaseAcMeasurement.from_measures(device, {
        "v": {"L1": voltage_v, "L2": voltage_v + 1, "L3": voltage_v - 1}, "f": 50.0, "eait": energy_kwh})
    return model.to_normalized(observed_at=at)


def test_upsert_query_in_pages_and_read_back(live_broker: LiveBroker) -> None:
    with NgsiLdClient(live_broker.url, "site_a", page_size=2) as broker:
        result = broker.upsert_entities([meter(f"m-{n}", 230 + n) for n in range(5)])
        assert sorted(result.succeeded) == sorted(measurement_id(f"m-{n}") for n in range(5))

        found = broker.query_entities(type=MEASUREMENT_TYPE, attrs=["frequency"])
        assert sorted(e["id"] for e in found) == sorted(measurement_id(f"m-{n}") for n in range(5))  # 3 pages
        assert all(set(e) >= {"id", "type", "frequency"} and "phaseVoltage" not in e for e in found)

        high = broker.query_entities(type=MEASUREMENT_TYPE, q="phaseVoltage[L1]>232", key_values=True)
        assert sorted(e["phaseVoltage"]["L1"] for e in high) == [233, 234]

        lazy = broker.iter_entities(type=MEASUREMENT_TYPE)
        assert next(lazy)["type"] == MEASUREMENT_TYPE  # only the first page was fetched so far
        assert len(list(lazy)) == 4

        entity = broker.get_entity(measurement_id("m-3"))
        assert unwrap(entity)["phaseVoltage"] == {"L1": 233, "L2": 234, "L3": 232}
        typed = broker.get_measurement("m-3")
        assert isinstance(typed, Measurement) and typed.device_id == "m-3"
        assert typed.values.phaseVoltage is not None and typed.values.phaseVoltage.L1 == 233
        assert typed.values.totalActiveEnergyImport == 1.0
        assert typed.observed_at == T0

        broker.update_attrs(measurement_id("m-3"), {"frequency": {"type": "Property", "value": 49.8}})
        assert unwrap(broker.get_entity(measurement_id("m-3")))["frequency"] == 49.8
        assert broker.delete_entity(measurement_id("m-3")) is True
        assert broker.delete_entity(measurement_id("m-3"), missing_ok=True) is False


def test_broker_refusals_are_typed_by_their_problem_details(live_broker: LiveBroker) -> None:
    with NgsiLdClient(live_broker.url, "site_b") as broker:
        with pytest.raises(NonexistentTenant) as tenant:
            broker.get_entity(measurement_id("nobody"))
        assert tenant.value.status == 404 and tenant.value.kind == "NonexistentTenant"
        assert tenant.value.request is not None and tenant.value.request.headers["NGSILD-Tenant"] == "site_b"

        broker.upsert_entities([meter("m-1", 230)])
        with pytest.raises(NotFound) as missing:
            broker.get_entity(measurement_id("nobody"))
        assert type(missing.value) is NotFound and missing.value.kind == "ResourceNotFound"
        assert missing.value.detail and "nobody" in missing.value.detail

        with pytest.raises(BadRequest) as bad:
            broker.query_entities(type=MEASUREMENT_TYPE, q="phaseVoltage[L1]>>")
        assert bad.value.status == 400 and bad.value.title

        broken = {**meter("m-2", 231), "frequency": {"type": "Property"}}  # a Property without a value
        with pytest.raises(BatchError) as batch:
            broker.upsert_entities([meter("m-3", 232), broken])
        assert list(batch.value.errors) == [measurement_id("m-2")]
        assert batch.value.succeeded == [measurement_id("m-3")]


def test_unreachable_broker_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with (NgsiLdClient(url, retry=RetryPolicy(attempts=3, backoff_s=0.01)) as broker,
          pytest.raises(BrokerUnavailable, match="no answer after 3 attempt")):
        broker.query_entities(type=MEASUREMENT_TYPE)


def _subscription(endpoint: str, attributes: list[str]) -> dict:
    return {
        "id": "urn:ngsi-ld:Subscription:client-test",
        "type": "Subscription",
        "entities": [{"type": MEASUREMENT_TYPE}],
        "notification": {"attributes": attributes, "format": "normalized",
                         "endpoint": {"uri": endpoint, "accept": "application/json"}},
        "@context": context_for(MEASUREMENT_TYPE),
    }


def test_ensure_subscription_creates_keeps_and_replaces(live_broker: LiveBroker, receiver: Receiver) -> None:
    with NgsiLdClient(live_broker.url, "site_c") as broker:
        body = _subscription(f"{receiver.url}/notify", ["frequency"])
        assert broker.ensure_subscription(body).action == "created"  # the tenant did not exist yet
        assert broker.ensure_subscription(body).action == "unchanged"
        moved = broker.ensure_subscription(_subscription(f"{receiver.url}/elsewhere", ["frequency", "current"]))
        assert moved.action == "replaced"
        assert moved.differences == ("notification.attributes", "notification.endpoint.uri")
        assert [s["id"] for s in broker.query_subscriptions()] == [body["id"]]

        broker.upsert_entities([meter("m-1", 230)])
        got = receiver.wait_for(1, path="/elsewhere")
        assert got[0].body["data"][0]["id"] == measurement_id("m-1")

        assert broker.delete_subscription(body["id"]) is True
        assert broker.delete_subscription(body["id"]) is False


def test_history_between_two_instants(live_broker: LiveBroker) -> None:
    with NgsiLdClient(live_broker.url, "site_d") as broker:
        fragments = [meter("m-1", 230, T0 + timedelta(minutes=m), energy_kwh=m / 10) for m in range(0, 60, 10)]
        broker.upsert_entities(fragments, update=True)
        history = broker.attribute_history(measurement_id("m-1"), ["totalActiveEnergyImport", "frequency"],
                                           T0 + timedelta(minutes=10), T0 + timedelta(minutes=40))
        assert [v for _, v in history["totalActiveEnergyImport"]] == [1.0, 2.0, 3.0]
        assert history["totalActiveEnergyImport"][0][0] == T0 + timedelta(minutes=10)
        assert len(history["frequency"]) == 3

        per_meter = broker.query_temporal(type=MEASUREMENT_TYPE, timerel="after", time_at=T0,
                                          attrs=["totalActiveEnergyImport"], options=["aggregatedValues"],
                                          aggr_methods=["min", "max"])
        assert per_meter[0]["totalActiveEnergyImport"]["max"][0][0] == 5.0
        with pytest.raises(NotFound):
            broker.temporal_entity(measurement_id("nobody"), timerel="after", time_at=T0)


def test_async_face_has_the_same_operations(live_broker: LiveBroker, receiver: Receiver) -> None:
    async def run() -> None:
        async with AsyncNgsiLdClient(live_broker.url, "site_e", page_size=1) as broker:
            await broker.upsert_entities([meter("m-1", 230), meter("m-2", 240)])
            found = await broker.query_entities(type=MEASUREMENT_TYPE)
            assert sorted(e["id"] for e in found) == [measurement_id("m-1"), measurement_id("m-2")]
            assert [e["id"] async for e in broker.iter_entities(type=MEASUREMENT_TYPE)] == [e["id"] for e in found]
            assert (await broker.get_measurement("m-2")).values.phaseVoltage.L1 == 240  # type: ignore[union-attr]
            body = _subscription(f"{receiver.url}/notify", ["frequency"])
            assert (await broker.ensure_subscription(body)).action == "created"
            assert (await broker.ensure_subscription(body)).action == "unchanged"
            with pytest.raises(NotFound):
                await broker.get_entity("urn:ngsi-ld:Anomaly:none")
            assert await broker.query_entities(type=ANOMALY_TYPE) == []

    asyncio.run(run())
