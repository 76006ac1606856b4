"""FiLiP's IoT Agent client (a peer nobody here wrote) provisions against the real north server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from filip.clients.exceptions import BaseHttpClientException
from filip.clients.ngsi_v2 import IoTAClient
from filip.models.base import FiwareHeader
from filip.models.ngsi_v2.iot import Device, DeviceAttribute, ServiceGroup, StaticDeviceAttribute

from tests.agent.support import RecordingBroker
from twin_service.agent import Agent


@pytest.fixture
def iota(agent: Agent) -> IoTAClient:
    return IoTAClient(url=agent.north_url, fiware_header=FiwareHeader(service="energytwin", service_path="/"))


def test_filip_provisions_a_group_and_a_device(
    agent: Agent, iota: IoTAClient, publish: Any, recording_broker: RecordingBroker
) -> None:
    group = ServiceGroup(
        apikey="filipkey", resource="/iot/json", entity_type="ThreePhaseAcMeasurement", timestamp=True
    )
    iota.post_group(service_group=group)
    with pytest.raises(BaseHttpClientException) as duplicate:
        iota.post_group(service_group=group)
    assert duplicate.value.response.status_code == 409
    assert duplicate.value.response.json()["name"] == "DUPLICATE_GROUP"
    iota.post_group(service_group=group, update=True)  # 409 -> FiLiP falls back to PUT ?resource=&apikey=

    fetched = iota.get_group(resource="/iot/json", apikey="filipkey")
    assert fetched.entity_type == "ThreePhaseAcMeasurement" and fetched.timestamp is True

    device = Device(
        device_id="meter-filip",
        entity_name="urn:ngsi-ld:ThreePhaseAcMeasurement:meter-filip",
        entity_type="ThreePhaseAcMeasurement",
        apikey="filipkey",
        protocol="IoTA-JSON",
        transport="MQTT",
        attributes=[
            DeviceAttribute(
                object_id="t",
                name="temperature",
                type="Number",
                metadata={"unitCode": {"type": "Text", "value": "CEL"}},
            )
        ],
        static_attributes=[StaticDeviceAttribute(name="site", type="Text", value="plant-A")],
    )
    iota.post_device(device=device)
    listed = iota.get_device_list()
    assert [d.device_id for d in listed] == ["meter-filip"]
    got = iota.get_device(device_id="meter-filip")
    assert got.entity_name == device.entity_name
    assert got.attributes[0].object_id == "t" and got.static_attributes[0].value == "plant-A"
    assert iota.does_device_exists("meter-filip") and not iota.does_device_exists("meter-none")

    publish(
        "/json/filipkey/meter-filip/attrs",
        json.dumps({"t": 21.5, "f": 50.0, "TimeInstant": "2026-11-24T10:00:00Z"}),
    )
    [request] = recording_broker.wait_for(1)
    entity = request.body[0]
    assert entity["id"] == "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-filip"
    assert entity["temperature"]["unitCode"] == "CEL" and entity["frequency"]["unitCode"] == "HTZ"
    assert entity["site"]["value"] == "plant-A"

    iota.delete_device(device_id="meter-filip")
    assert iota.get_device_list() == []
    iota.delete_group(resource="/iot/json", apikey="filipkey")
    with httpx.Client(base_url=agent.north_url) as client:
        headers = {"fiware-service": "energytwin", "fiware-servicepath": "/"}
        assert client.get("/iot/services", headers=headers).json() == {"count": 0, "services": []}
