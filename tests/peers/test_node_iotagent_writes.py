"""iotagent-node-lib (npm 4.14.0, the FIWARE IoT Agents' core) writing to our broker through its own NGSI-LD code.

The library is provisioned on its own north API (a service group from the measure table, one device), gets
measures through its `update` call (launch.js, as iotagent-json's bindings hand them over), and sends its own
`POST /ngsi-ld/v1/entityOperations/upsert/?options=update` to the embedded broker; the test reads the entity and
its history back from the broker. The second agent runs without IOTA_JSON_LD_CONTEXT to show why production
must set it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from datamodels.context import ENERGY_CONTEXT, link_header
from fiware_client import IotAgentClient
from provisioning.agent_bodies import service_group
from tests.peers.node_iotagent import NodeAgent, start_node_agent
from tests.polling import wait_until
from tests.provisioning.conftest import serve

LD = {"Link": link_header(ENERGY_CONTEXT), "Accept": "application/json"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from twin_service.broker import create_app

    url, server, thread = serve(create_app(tmp_path_factory.mktemp("peer-broker")))
    yield url
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def agents(broker: str) -> Iterator[dict[str, NodeAgent]]:
    with_context = start_node_agent(broker, ENERGY_CONTEXT)
    try:
        without_context = start_node_agent(broker, None)
    except BaseException:
        with_context.stop()
        raise
    yield {"context": with_context, "none": without_context}
    with_context.stop()
    without_context.stop()


def _provision(agent: NodeAgent, service: str, apikey: str, device_id: str) -> None:
    north = IotAgentClient(agent.url, service)
    north.create_service_groups([service_group(apikey)])
    north.create_devices([{
        "device_id": device_id, "apikey": apikey, "entity_name": f"urn:ngsi-ld:ThreePhaseAcMeasurement:{device_id}",
        "entity_type": "ThreePhaseAcMeasurement", "timestamp": True,
        "static_attributes": [{"name": "refDevice", "type": "Relationship", "value": f"urn:ngsi-ld:Device:{device_id}"},
                              {"name": "nominalVoltage", "type": "Number", "value": 230,
                               "metadata": {"unitCode": {"type": "Text", "value": "VLT"}}}]}])


def _measure(agent: NodeAgent, apikey: str, device_id: str, body: Any) -> httpx.Response:
    return httpx.post(f"{agent.measure_url}/iot/json", params={"k": apikey, "i": device_id}, json=body)


def _get(broker: str, service: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{broker}/ngsi-ld/v1/{path}", headers={**LD, "NGSILD-Tenant": service}, params=params)


def test_the_fiware_agent_library_writes_a_reading_our_broker_serves(
    agents: dict[str, NodeAgent], broker: str
) -> None:
    agent = agents["context"]
    _provision(agent, "peer", "peerkey", "pm-1")
    sent = _measure(agent, "peerkey", "pm-1", {
        "v": {"L1": 230.1, "L2": 229.8, "L3": 231.0}, "f": 50.01, "pt": 1500.0, "TimeInstant": "2026-11-24T10:00:00Z"})
    assert sent.status_code == 200, sent.text

    entity = wait_until(lambda: (r := _get(broker, "peer", "entities/urn:ngsi-ld:ThreePhaseAcMeasurement:pm-1"))
                        .status_code == 200 and r.json(), 10, "the entity the library wrote")
    assert entity["type"] == "ThreePhaseAcMeasurement"  # compacted: the library's @context is the SDM Energy one
    assert entity["phaseVoltage"] == {"type": "Property", "value": {"L1": 230.1, "L2": 229.8, "L3": 231.0},
                                      "unitCode": "VLT", "observedAt": "2026-11-24T10:00:00.000Z"}
    assert entity["frequency"]["value"] == 50.01 and entity["frequency"]["unitCode"] == "HTZ"
    assert entity["totalActivePower"]["value"] == 1500  # JavaScript: 1500.0 is 1500
    assert entity["refDevice"]["object"] == "urn:ngsi-ld:Device:pm-1"
    assert entity["nominalVoltage"]["value"] == 230
    assert "TimeInstant" not in entity  # NGSI-LD mode: observedAt, no root TimeInstant

    # an offline replay: one upsert with three fragments of the same entity, each kept as its own instance (the
    # library keeps the order it is given; iotagent-json's bindings sort by TimeInstant before handing them over)
    replay = [{"f": 49.9 + n / 100, "TimeInstant": f"2026-11-24T10:0{n}:00Z"} for n in (3, 1, 2)]
    assert _measure(agent, "peerkey", "pm-1", replay).status_code == 200
    history = _get(broker, "peer", "temporal/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:pm-1", attrs="frequency",
                   options="temporalValues")
    assert history.status_code == 200, history.text
    values = sorted((at, value) for value, at in history.json()["frequency"]["values"])
    assert values == [("2026-11-24T10:00:00.000Z", 50.01), ("2026-11-24T10:01:00.000Z", 49.91),
                      ("2026-11-24T10:02:00.000Z", 49.92), ("2026-11-24T10:03:00.000Z", 49.93)]
    latest = _get(broker, "peer", "entities/urn:ngsi-ld:ThreePhaseAcMeasurement:pm-1").json()
    assert latest["frequency"]["observedAt"] == "2026-11-24T10:02:00.000Z"  # fragments applied in order


def test_without_iota_json_ld_context_the_agent_writes_nothing(
    agents: dict[str, NodeAgent], broker: str
) -> None:
    agent = agents["none"]
    _provision(agent, "nocontext", "nokey", "nm-1")
    sent = _measure(agent, "nokey", "nm-1", {"f": 50.0, "TimeInstant": "2026-11-24T10:00:00Z"})
    # application/ld+json without @context: the broker refuses the entity (Orion-LD refuses the request), and
    # the library reports ENTITY_GENERIC_ERROR with the broker's answer
    assert sent.status_code == 500, sent.text
    assert sent.json()["name"] == "ENTITY_GENERIC_ERROR"
    assert sent.json()["details"]["errors"][0]["error"]["title"] == "@context missing"
    answer = _get(broker, "nocontext", "entities/urn:ngsi-ld:ThreePhaseAcMeasurement:nm-1")
    assert answer.status_code == 404  # nothing written (the tenant does not even exist)
