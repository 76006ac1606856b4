"""`energytwin provision` against the FIWARE IoT Agent's own north API (iotagent-node-lib 4.14.0 from npm).

The library runs in Node.js as iotagent-json embeds it (memory registry, NGSI-LD mode, IOTA_JSON_LD_CONTEXT set)
and writes to the embedded broker; one launch per module. Each tenant here is new, as on a new site.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from datamodels.context import ENERGY_CONTEXT, link_header
from energytwin.cli import cli
from fiware_client import IotAgentClient
from provisioning.inventory import parse_inventory
from provisioning.sync import SUBSCRIPTION_PREFIX, Provisioner
from tests.peers.node_iotagent import NodeAgent, start_node_agent
from tests.polling import wait_until
from tests.provisioning.conftest import serve
from tests.provisioning.test_inventory import EXAMPLE

_tenants = itertools.count()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from twin_service.broker import create_app

    url, server, thread = serve(create_app(tmp_path_factory.mktemp("real-agent-broker")))
    yield url
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def fiware_agent(broker: str) -> Iterator[NodeAgent]:
    agent = start_node_agent(broker, ENERGY_CONTEXT)
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def fiware_agent_without_context(broker: str) -> Iterator[NodeAgent]:
    agent = start_node_agent(broker, None)
    yield agent
    agent.stop()


def _site(tmp_path: Path, text: str | None = None) -> tuple[Path, str]:
    """The example inventory on a tenant and apikey of its own (apikeys are global in the agent)."""
    n = next(_tenants)
    service = f"site{n}"
    text = (text or EXAMPLE.read_text()).replace("service: energytwin", f"service: {service}")
    text = text.replace("apikey: meterkey", f"apikey: key{n}")
    path = tmp_path / f"{service}.yaml"
    path.write_text(text)
    return path, service


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["provision", *args], catch_exceptions=False)


def _headers(service: str) -> dict[str, str]:
    return {"fiware-service": service, "fiware-servicepath": "/"}


def _entity(broker: str, service: str, device_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{broker}/ngsi-ld/v1/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:{device_id}",
                         headers={"Link": link_header(ENERGY_CONTEXT), "NGSILD-Tenant": service,
                                  "Accept": "application/json"})
    return response.json() if response.status_code == 200 else None


def _measure(agent: NodeAgent, apikey: str, device_id: str, body: Any) -> httpx.Response:
    """A measure handed to the library's own update path (launch.js, shaped like iotagent-json's HTTP binding)."""
    return httpx.post(f"{agent.measure_url}/iot/json", params={"k": apikey, "i": device_id}, json=body)


def test_a_new_site_provisions_from_an_empty_tenant_and_a_second_run_changes_nothing(
    tmp_path: Path, fiware_agent: NodeAgent, broker: str
) -> None:
    inventory, service = _site(tmp_path)
    headers = _headers(service)
    # the quirk this handles: an empty tenant has no group list but a 404
    empty = httpx.get(f"{fiware_agent.url}/iot/services", headers=headers)
    assert empty.status_code == 404 and empty.json()["name"] == "DEVICE_GROUP_NOT_FOUND"
    urls = ("--agent-url", fiware_agent.url, "--broker-url", broker)

    dry = _run(str(inventory), "--dry-run", *urls)
    assert dry.exit_code == 0, dry.output
    assert "meter-001 … meter-101 (3 devices)" in dry.output
    assert httpx.get(f"{fiware_agent.url}/iot/devices", headers=headers).json()["count"] == 0

    first = _run(str(inventory), *urls)
    assert first.exit_code == 0, first.output
    assert "`--check` verifies it can write readings" in first.output
    groups = httpx.get(f"{fiware_agent.url}/iot/services", headers=headers).json()["services"]
    assert [(g["apikey"], g["entity_type"], g["autoprovision"]) for g in groups] == [
        (service.replace("site", "key"), "ThreePhaseAcMeasurement", False)]
    devices = httpx.get(f"{fiware_agent.url}/iot/devices", headers=headers).json()
    assert devices["count"] == 3
    meter = next(d for d in devices["devices"] if d["device_id"] == "meter-001")
    assert meter["entity_name"] == "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"
    statics = {s["name"]: s["value"] for s in meter["static_attributes"]}
    assert statics["nominalVoltage"] == 230 and isinstance(statics["nominalVoltage"], int)  # JavaScript numbers
    assert statics["refDevice"] == "urn:ngsi-ld:Device:meter-001"
    subscriptions = httpx.get(f"{broker}/ngsi-ld/v1/subscriptions", headers={"NGSILD-Tenant": service}).json()
    assert sorted(s["id"] for s in subscriptions) == [
        f"{SUBSCRIPTION_PREFIX}{service}:quantumleap", f"{SUBSCRIPTION_PREFIX}{service}:quantumleap-events"]

    with Provisioner(fiware_agent.url, broker) as provisioner:
        plan = provisioner.plan(parse_inventory(inventory.read_text()))
    assert plan.changes() == []
    assert plan.counts() == {("group", "unchanged"): 1, ("device", "unchanged"): 3,
                             ("subscription", "unchanged"): 2}
    assert _run(str(inventory), *urls).exit_code == 0

    # a reading through the agent library's own NGSI-LD code reaches our broker with the provisioned facts
    apikey = service.replace("site", "key")
    sent = _measure(fiware_agent, apikey, "meter-001",
                    {"f": 50.01, "v": {"L1": 230.0, "L2": 231.5, "L3": 229.1}, "TimeInstant": "2026-11-24T10:00:00Z"})
    assert sent.status_code == 200, sent.text
    entity = wait_until(lambda: _entity(broker, service, "meter-001"), 10, "the measurement entity")
    assert entity["frequency"]["value"] == 50.01 and entity["frequency"]["unitCode"] == "HTZ"
    assert entity["phaseVoltage"]["value"] == {"L1": 230, "L2": 231.5, "L3": 229.1}
    assert entity["phaseVoltage"]["observedAt"] == "2026-11-24T10:00:00.000Z"
    assert entity["nominalVoltage"] == {"type": "Property", "value": 230, "unitCode": "VLT",
                                        "observedAt": "2026-11-24T10:00:00.000Z"}
    assert entity["refDevice"]["object"] == "urn:ngsi-ld:Device:meter-001"
    assert entity["location"]["value"] == {"type": "Point", "coordinates": [11.5756, 48.1372]}


def test_a_changed_meter_is_updated_and_prune_removes_what_the_file_dropped(
    tmp_path: Path, fiware_agent: NodeAgent, broker: str
) -> None:
    inventory, service = _site(tmp_path)
    headers = _headers(service)
    urls = ("--agent-url", fiware_agent.url, "--broker-url", broker)
    assert _run(str(inventory), *urls).exit_code == 0
    text = inventory.read_text()
    edited_text = text.replace("ct_primary_a: 63", "ct_primary_a: 80")
    edited_text = edited_text[:edited_text.index("          - device_id: meter-002")] + edited_text[
        edited_text.index("      - id: plant-b"):]
    edited = tmp_path / "edited.yaml"
    edited.write_text(edited_text)

    updated = _run(str(edited), *urls)
    assert updated.exit_code == 0, updated.output
    meter = httpx.get(f"{fiware_agent.url}/iot/devices/meter-101", headers=headers).json()
    assert {s["name"]: s["value"] for s in meter["static_attributes"]}["ctPrimaryCurrent"] == 80
    assert httpx.get(f"{fiware_agent.url}/iot/devices/meter-002", headers=headers).status_code == 200
    with Provisioner(fiware_agent.url, broker) as provisioner:
        assert provisioner.plan(parse_inventory(edited.read_text())).changes() == []

    dry = _run(str(edited), "--prune", "--dry-run", *urls)
    assert dry.exit_code == 0 and "delete" in dry.output and "meter-002" in dry.output
    assert httpx.get(f"{fiware_agent.url}/iot/devices/meter-002", headers=headers).status_code == 200
    pruned = _run(str(edited), "--prune", *urls)
    assert pruned.exit_code == 0, pruned.output
    gone = httpx.get(f"{fiware_agent.url}/iot/devices/meter-002", headers=headers)
    assert gone.status_code == 404 and gone.json()["name"] == "DEVICE_NOT_FOUND"
    assert httpx.get(f"{fiware_agent.url}/iot/devices", headers=headers).json()["count"] == 2

    # the new static value is on the entity with the next reading
    sent = _measure(fiware_agent, service.replace("site", "key"), "meter-101", {"f": 49.98})
    assert sent.status_code == 200, sent.text
    entity = wait_until(lambda: _entity(broker, service, "meter-101"), 10, "meter-101's entity")
    assert entity["ctPrimaryCurrent"]["value"] == 80


def test_a_put_the_agent_cannot_mirror_on_the_broker_is_sent_again(
    fiware_agent: NodeAgent, broker: str
) -> None:
    """node-lib upserts a PUT's new attributes first and takes the broker's 201 (created) for a failure."""
    service = f"put{next(_tenants)}"
    north = IotAgentClient(fiware_agent.url, service)
    north.create_devices([{"device_id": "m1", "entity_name": "urn:ngsi-ld:ThreePhaseAcMeasurement:m1",
                           "entity_type": "ThreePhaseAcMeasurement", "timestamp": True,
                           "static_attributes": [{"name": "wiring", "type": "Text", "value": "3P4W"}]}])
    statics = [{"name": "wiring", "type": "Text", "value": "3P4W"}, {"name": "site", "type": "Text", "value": "a"}]
    raw = httpx.put(f"{fiware_agent.url}/iot/devices/m1", headers=_headers(service),
                    json={"static_attributes": statics})
    assert raw.status_code == 200 and raw.json()["name"] == "ENTITY_GENERIC_ERROR"  # and nothing changed:
    assert [s["name"] for s in north.get_device("m1")["static_attributes"]] == ["wiring"]

    north.create_devices([{"device_id": "m2", "entity_name": "urn:ngsi-ld:ThreePhaseAcMeasurement:m2",
                           "entity_type": "ThreePhaseAcMeasurement", "timestamp": True}])
    north.update_device("m2", {"static_attributes": statics})  # refused once, then accepted
    assert [s["name"] for s in north.get_device("m2")["static_attributes"]] == ["wiring", "site"]
    assert _entity(broker, service, "m2") is not None  # the refused attempt had created the entity


def test_the_same_inventory_gives_the_same_devices_on_both_agents(
    tmp_path: Path, fiware_agent: NodeAgent, broker: str, agent_for: Any
) -> None:
    inventory, service = _site(tmp_path)
    embedded = agent_for(broker)
    for url in (fiware_agent.url, embedded.north_url):
        result = _run(str(inventory), "--agent-url", url, "--broker-url", broker)
        assert result.exit_code == 0, result.output

    def listing(url: str) -> dict[str, Any]:
        devices = httpx.get(f"{url}/iot/devices", headers=_headers(service)).json()["devices"]
        return {d["device_id"]: {key: d.get(key) for key in
                                 ("entity_name", "entity_type", "apikey", "timestamp", "static_attributes")}
                for d in devices}

    assert listing(fiware_agent.url) == listing(embedded.north_url)


def test_check_says_whether_the_agent_writes_with_the_projects_context(
    tmp_path: Path, fiware_agent: NodeAgent, fiware_agent_without_context: NodeAgent, broker: str, agent_for: Any
) -> None:
    inventory, service = _site(tmp_path)
    good = _run(str(inventory), "--check", "--agent-url", fiware_agent.url, "--broker-url", broker)
    assert good.exit_code == 0, good.output
    assert "ok: FIWARE IoT Agent (node-lib 4.14.0" in good.output and "SDM Energy @context" in good.output

    bad = _run(str(inventory), "--check", "--agent-url", fiware_agent_without_context.url, "--broker-url", broker)
    assert bad.exit_code == 1, bad.output
    assert "warning: FIWARE IoT Agent" in bad.output and "IOTA_JSON_LD_CONTEXT is unset" in bad.output

    embedded = _run(str(inventory), "--check", "--agent-url", agent_for(broker).north_url, "--broker-url", broker)
    assert embedded.exit_code == 0 and "embedded energytwin agent" in embedded.output

    # the probe leaves nothing behind, on either agent or on the broker; the inventory was not provisioned
    for url in (fiware_agent.url, fiware_agent_without_context.url):
        assert httpx.get(f"{url}/iot/devices", headers=_headers(service)).json()["count"] == 0
    probes = httpx.get(f"{broker}/ngsi-ld/v1/entities", params={"type": "EnergytwinWriteCheck"},
                       headers={"NGSILD-Tenant": service})
    assert probes.status_code == 200 and probes.json() == []


def test_the_differences_docs_compatibility_lists_still_hold(
    fiware_agent: NodeAgent, broker: str, agent_for: Any
) -> None:
    """One row of docs/compatibility.md's provisioning table each: what node-lib answers, what ours answers."""
    embedded = agent_for(broker).north_url
    service = f"diff{next(_tenants)}"
    headers = _headers(service)

    def both(method: str, path: str, extra: dict[str, str] | None = None,
             **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
        """The same request to node-lib, then to the embedded agent."""
        def send(url: str) -> httpx.Response:
            return httpx.request(method, f"{url}{path}", headers={**headers, **(extra or {})}, **kwargs)

        return send(fiware_agent.url), send(embedded)

    fiware, ours = both("GET", "/iot/services")
    assert (fiware.status_code, fiware.json()["name"]) == (404, "DEVICE_GROUP_NOT_FOUND")
    assert (ours.status_code, ours.json()) == (200, {"count": 0, "services": []})

    apikey = f"k{service}"
    for response in both("POST", "/iot/services", json={"services": [
            {"apikey": apikey, "resource": "/iot/json", "entity_type": "ThreePhaseAcMeasurement"}]}):
        assert response.status_code == 201
    fiware, ours = both("POST", "/iot/devices", json={"devices": [{"device_id": "a", "apikey": apikey},
                                                                  {"device_id": "a", "apikey": apikey}]})
    assert fiware.status_code == ours.status_code == 409
    fiware, ours = both("GET", "/iot/devices/a")
    assert fiware.status_code == 200 and ours.status_code == 404  # node-lib stored the first one
    assert fiware.json()["entity_name"] == "urn:ngsi-ld:undefined:a" and "entity_type" not in fiware.json()

    httpx.post(f"{embedded}/iot/devices", headers=headers, json={"devices": [{"device_id": "a", "apikey": apikey}]})
    for response in both("POST", "/iot/devices", json={"devices": [{"device_id": f"p{n}", "apikey": apikey}
                                                                   for n in range(4)]}):
        assert response.status_code == 201
    pages = [[r.json() for r in both("GET", "/iot/devices", params={"limit": 2, "offset": offset})]
             for offset in (0, 2, 4)]
    for page in pages:
        assert page[0]["count"] == page[1]["count"] == 5
        assert [d["device_id"] for d in page[0]["devices"]] == [d["device_id"] for d in page[1]["devices"]]
    fiware, ours = both("GET", "/iot/devices", params={"limit": "x"})
    assert (fiware.status_code, len(fiware.json()["devices"])) == (200, 5)
    assert (ours.status_code, ours.json()["name"]) == (400, "WRONG_SYNTAX")

    fiware, ours = both("GET", "/iot/devices/p0", extra={"fiware-servicepath": "/elsewhere"})
    assert fiware.status_code == 200 and ours.status_code == 404

    fiware, ours = both("POST", "/iot/devices", content=b"not json", extra={"Content-Type": "application/json"})
    assert (fiware.status_code, fiware.json()["name"]) == (500, "SyntaxError")
    assert (ours.status_code, ours.json()["name"]) == (400, "WRONG_SYNTAX")
    fiware, ours = both("POST", "/iot/devices", json={"devices": [{"apikey": apikey}]})
    assert (fiware.status_code, fiware.json()["name"]) == (ours.status_code, ours.json()["name"]) == (
        400, "MISSING_ATTRIBUTES")
    assert ours.json()["message"] == fiware.json()["message"]

    fiware, ours = both("GET", "/iot/about")
    assert fiware.json()["libVersion"] == "4.14.0" and "energytwin" not in fiware.json()
    assert "energytwin" in ours.json()


def test_a_device_batch_the_agent_half_stored_is_completed_one_by_one(fiware_agent: NodeAgent, agent_for: Any,
                                                                    broker: str) -> None:
    """node-lib stores the devices before a refused one; IotAgentClient finishes the batch on either agent."""
    for url in (fiware_agent.url, agent_for(broker).north_url):
        service = f"batch{next(_tenants)}"
        with IotAgentClient(url, service) as north:
            north.create_devices([{"device_id": "x1", "entity_type": "ThreePhaseAcMeasurement"}])
            north.create_devices([{"device_id": f"x{n}", "entity_type": "ThreePhaseAcMeasurement"}
                                  for n in range(4)])  # x1 is there: 409 on the first attempt
            assert sorted(d["device_id"] for d in north.devices()) == ["x0", "x1", "x2", "x3"]
