"""Peers read what the client wrote: FiLiP's NGSI-LD client reads it back from the embedded broker, and the
IoT Agent client provisions the embedded agent's north API the way FiLiP's IoTA client reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from filip.clients.ngsi_ld.cb import ContextBrokerLDClient
from filip.clients.ngsi_v2 import IoTAClient
from filip.models.base import FiwareHeader, FiwareLDHeader

from datamodels.context import ENERGY_CONTEXT, context_for
from datamodels.measures import MEASUREMENT_TYPE, measurement_id
from fiware_client import IotAgentClient, IotAgentError, NgsiLdClient
from tests.agent.support import make_agent

from .conftest import LiveBroker, Receiver
from .test_ngsi_ld import meter


def test_filip_reads_back_what_the_client_wrote(live_broker: LiveBroker, receiver: Receiver) -> None:
    with NgsiLdClient(live_broker.url, "peer_site") as broker:
        broker.upsert_entities([meter("m-1", 231.5), meter("m-2", 242.0)])
        broker.update_attrs(measurement_id("m-2"), {"frequency": {"type": "Property", "value": 49.9,
                                                                   "unitCode": "HTZ"}})
        broker.ensure_subscription({
            "id": "urn:ngsi-ld:Subscription:peer", "type": "Subscription",
            "entities": [{"type": MEASUREMENT_TYPE}],
            "notification": {"endpoint": {"uri": f"{receiver.url}/n", "accept": "application/json"}},
            "@context": context_for(MEASUREMENT_TYPE)})

    header = FiwareLDHeader(ngsild_tenant="peer_site")
    header.set_context(ENERGY_CONTEXT)
    filip = ContextBrokerLDClient(url=live_broker.url, fiware_header=header)
    entities = filip.get_entity_list(entity_type=MEASUREMENT_TYPE, q="phaseVoltage[L1]>240")
    assert [e.id for e in entities] == [measurement_id("m-2")]
    read = filip.get_entity(measurement_id("m-2")).model_dump()
    assert read["frequency"]["value"] == 49.9 and read["frequency"]["unitCode"] == "HTZ"
    assert read["phaseVoltage"]["value"] == {"L1": 242.0, "L2": 243.0, "L3": 241.0}
    assert read["refDevice"]["object"] == "urn:ngsi-ld:Device:m-2"
    subscription = filip.get_subscription("urn:ngsi-ld:Subscription:peer")
    assert str(subscription.notification.endpoint.uri) == f"{receiver.url}/n"
    assert [e.type for e in subscription.entities] == [MEASUREMENT_TYPE]


@pytest.fixture
def agent_url(tmp_path: Path, mqtt_server, live_broker: LiveBroker):  # type: ignore[no-untyped-def]
    agent = make_agent(tmp_path / "agent", mqtt_server.host, mqtt_server.port, live_broker.url)
    yield f"http://127.0.0.1:{agent.config.north_port}"
    agent.stop()


def test_iot_agent_client_provisions_the_north_api(agent_url: str) -> None:
    group = {"apikey": "k1", "resource": "/iot/json", "entity_type": MEASUREMENT_TYPE, "timestamp": True}
    devices = [{"device_id": f"m-{n}", "entity_name": measurement_id(f"m-{n}"), "entity_type": MEASUREMENT_TYPE,
                "protocol": "IoTA-JSON", "transport": "MQTT", "apikey": "k1"} for n in range(5)]
    with IotAgentClient(agent_url, "peer_site", "/meters") as agent:
        agent.create_service_groups([group])
        with pytest.raises(IotAgentError) as duplicate:
            agent.create_service_groups([group])
        assert duplicate.value.status == 409 and duplicate.value.name == "DUPLICATE_GROUP"
        agent.create_devices(devices, chunk=2)
        assert sorted(d["device_id"] for d in agent.devices()) == [f"m-{n}" for n in range(5)]
        agent.update_device("m-0", {"attributes": [{"object_id": "f", "name": "frequency", "type": "Number"}]})
        assert agent.delete_device("m-4") is True
        assert agent.delete_device("m-4", missing_ok=True) is False
        assert agent.find_device("m-4") is None
        with pytest.raises(IotAgentError) as missing:
            agent.get_device("m-4")
        assert missing.value.name == "DEVICE_NOT_FOUND"

    iota = IoTAClient(url=agent_url, fiware_header=FiwareHeader(service="peer_site", service_path="/meters"))
    assert sorted(d.device_id for d in iota.get_device_list()) == [f"m-{n}" for n in range(4)]
    assert [a.name for a in iota.get_device(device_id="m-0").attributes] == ["frequency"]
    assert [g.apikey for g in iota.get_group_list()] == ["k1"]
