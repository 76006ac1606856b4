"""FiLiP's NGSI-LD client (an independent FIWARE library) against the broker on a real uvicorn server:
create, query with q, update, batch, subscribe and receive notifications, as it would against Orion-LD."""

from __future__ import annotations

import time

from filip.clients.ngsi_ld.cb import ContextBrokerLDClient
from filip.models.base import FiwareLDHeader
from filip.models.ngsi_ld.context import (
    ActionTypeLD,
    ContextGeoProperty,
    ContextLDEntity,
    ContextProperty,
    NamedContextProperty,
)
from filip.models.ngsi_ld.subscriptions import Endpoint, EntityInfo, NotificationParams, SubscriptionLD

from datamodels.context import ENERGY_CONTEXT

from .conftest import LiveBroker, Receiver

METER = "urn:ngsi-ld:ThreePhaseAcMeasurement:filip-{:03d}"


def _client(live_broker: LiveBroker) -> ContextBrokerLDClient:
    header = FiwareLDHeader(ngsild_tenant="filip_site")
    header.set_context(ENERGY_CONTEXT)
    return ContextBrokerLDClient(url=live_broker.url, fiware_header=header)


def _meter(n: int, voltage: float) -> ContextLDEntity:
    return ContextLDEntity(id=METER.format(n), type="ThreePhaseAcMeasurement",
                           frequency=ContextProperty(value=50.0, unitCode="HTZ"),
                           phaseVoltage=ContextProperty(value={"L1": voltage, "L2": voltage, "L3": voltage},
                                                        unitCode="VLT"))


def test_filip_queries_updates_and_batches(live_broker: LiveBroker) -> None:
    cb = _client(live_broker)
    for n, voltage in enumerate((229.0, 241.0, 252.0)):
        cb.post_entity(_meter(n, voltage))
    high = cb.get_entity_list(entity_type="ThreePhaseAcMeasurement", q="phaseVoltage[L1]>240")
    assert sorted(e.id for e in high) == [METER.format(1), METER.format(2)]
    both = cb.get_entity_list(entity_type="ThreePhaseAcMeasurement",
                              q='(phaseVoltage[L1]<230|phaseVoltage[L1]>250);frequency==50')
    assert sorted(e.id for e in both) == [METER.format(0), METER.format(2)]

    cb.update_entity_attribute(METER.format(0), NamedContextProperty(name="frequency", value=49.9), "frequency")
    assert cb.get_entity(METER.format(0)).model_dump()["frequency"]["value"] == 49.9

    extra = ContextLDEntity(id=METER.format(0), type="ThreePhaseAcMeasurement",
                            powerFactor=ContextProperty(value=0.97))
    cb.append_entity_attributes(extra)
    assert cb.get_entity(METER.format(0)).model_dump()["powerFactor"]["value"] == 0.97

    cb.entity_batch_operation(entities=[_meter(0, 235.0), _meter(3, 236.0)], action_type=ActionTypeLD.UPSERT)
    assert len(cb.get_entity_list(entity_type="ThreePhaseAcMeasurement")) == 4
    assert cb.get_entity(METER.format(3)).model_dump()["phaseVoltage"]["value"]["L1"] == 236.0
    cb.entity_batch_operation(entities=[_meter(0, 0.0), _meter(3, 0.0)], action_type=ActionTypeLD.DELETE)
    assert sorted(e.id for e in cb.get_entity_list(entity_type="ThreePhaseAcMeasurement")) == [
        METER.format(1), METER.format(2)]
    cb.delete_attribute(METER.format(1), "frequency")
    assert "frequency" not in cb.get_entity(METER.format(1)).model_dump()


def test_filip_subscribes_and_receives_notifications(live_broker: LiveBroker, receiver: Receiver) -> None:
    cb = _client(live_broker)
    cb.post_entity(_meter(0, 230.0))
    subscription = SubscriptionLD(
        id="urn:ngsi-ld:Subscription:filip", type="Subscription",
        entities=[EntityInfo(type="ThreePhaseAcMeasurement")], watchedAttributes=["phaseVoltage"],
        q="phaseVoltage[L1]>250",
        notification=NotificationParams(attributes=["phaseVoltage"], format="normalized",
                                        endpoint=Endpoint(uri=f"{receiver.url}/filip",
                                                          accept="application/json")))
    sub_id = cb.post_subscription(subscription)
    assert sub_id == "urn:ngsi-ld:Subscription:filip"
    assert [s.id for s in cb.get_subscription_list()] == [sub_id]

    cb.update_entity_attribute(METER.format(0), NamedContextProperty(
        name="phaseVoltage", value={"L1": 240.0, "L2": 240.0, "L3": 240.0}), "phaseVoltage")  # q not met
    cb.update_entity_attribute(METER.format(0), NamedContextProperty(
        name="phaseVoltage", value={"L1": 255.0, "L2": 254.0, "L3": 253.0}), "phaseVoltage")
    got = receiver.wait_for(1)
    assert got[0].body["subscriptionId"] == sub_id
    assert got[0].headers["ngsild-tenant"] == "filip_site"
    assert got[0].body["data"][0]["phaseVoltage"]["value"] == {"L1": 255.0, "L2": 254.0, "L3": 253.0}
    deadline = time.monotonic() + 3
    while cb.get_subscription(sub_id).notification.timesSent != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.1)
    assert len(receiver.received) == 1

    subscription.q = "phaseVoltage[L1]>300"
    cb.update_subscription(subscription)
    assert cb.get_subscription(sub_id).q == "phaseVoltage[L1]>300"
    cb.delete_subscription(sub_id)
    assert cb.get_subscription_list() == []


def test_filip_defaults_list_query_batch_and_geo(live_broker: LiveBroker) -> None:
    """FiLiP's calls with their default arguments, as an app written against Orion-LD makes them.

    `get_entity_list()` sends `GET /entities/?idPattern=.*&count=true&limit=…` (no type: ETSI GS CIM 009 V1.8.1
    §5.7.2 allows it) and pages with offset; `get_entity_list(entity_id=…)` adds `id=`; `post_entity` and the
    batch operations use their default options; geo-queries go as URI parameters (§4.10).
    """
    cb = _client(live_broker)
    located = ContextLDEntity(id=METER.format(99), type="ThreePhaseAcMeasurement",
                              frequency=ContextProperty(value=50.0, unitCode="HTZ"),
                              location=ContextGeoProperty(value={"type": "Point", "coordinates": [-3.7038, 40.4168]}))
    cb.post_entity(located)
    cb.entity_batch_operation(entities=[_meter(n, 230.0 + n) for n in range(30)], action_type=ActionTypeLD.CREATE)
    everything = cb.get_entity_list()
    assert len(everything) == 31  # more than one page of 20: FiLiP followed NGSILD-Results-Count with offset
    assert [e.id for e in cb.get_entity_list(entity_id=METER.format(7))] == [METER.format(7)]
    assert len(cb.get_entity_list(limit=5)) == 5
    simple = cb.get_entity_list(entity_id=METER.format(3), options="keyValues")
    assert simple[0].model_dump()["frequency"] == 50.0
    near = cb.get_entity_list(georel="near;maxDistance==1000", geometry="Point",
                              coordinates="[-3.7074, 40.4155]")
    assert [e.id for e in near] == [METER.format(99)]
    cb.entity_batch_operation(entities=[_meter(n, 0.0) for n in range(2)], action_type=ActionTypeLD.UPDATE)
    assert cb.get_entity(METER.format(1)).model_dump()["phaseVoltage"]["value"]["L1"] == 0.0
    cb.entity_batch_operation(entities=[_meter(n, 240.0) for n in range(30, 32)], action_type=ActionTypeLD.UPSERT)
    assert len(cb.get_entity_list()) == 33
    cb.delete_entity_by_id(METER.format(99))
    cb.entity_batch_operation(entities=[_meter(n, 0.0) for n in range(32)], action_type=ActionTypeLD.DELETE)
    assert cb.get_entity_list() == []
