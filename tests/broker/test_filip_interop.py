"""FiLiP's NGSI-LD client (an independent FIWARE library) against the broker on a real uvicorn server:
create, query with q, update, batch, subscribe and receive notifications, as it would against Orion-LD."""

from __future__ import annotations

import time

from filip.clients.ngsi_ld.cb import ContextBrokerLDClient
from filip.models.base import FiwareLDHeader
from filip.models.ngsi_ld.context import ActionTypeLD, ContextLDEntity, ContextProperty, NamedContextProperty
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
