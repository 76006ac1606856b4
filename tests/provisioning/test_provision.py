"""`energytwin provision` against a running agent (+ broker): creates, is idempotent, updates, prunes, scales."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from filip.clients.ngsi_v2 import IoTAClient
from filip.models.base import FiwareHeader

from datamodels.context import ENERGY_CONTEXT, link_header
from energytwin.cli import cli
from provisioning.inventory import parse_inventory
from provisioning.sync import SUBSCRIPTION_PREFIX, Provisioner
from tests.provisioning.conftest import SubscriptionBroker
from tests.provisioning.test_inventory import EXAMPLE

HEADERS = {"fiware-service": "energytwin", "fiware-servicepath": "/"}


def _run(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["provision", *args], catch_exceptions=False)
    return result


def test_example_inventory_provisions_then_changes_nothing(
    agent_for: Any, subscription_broker: SubscriptionBroker
) -> None:
    agent = agent_for(subscription_broker.url)
    urls = ("--agent-url", agent.north_url, "--broker-url", subscription_broker.url)
    dry = _run(str(EXAMPLE), "--dry-run", *urls)
    assert dry.exit_code == 0, dry.output
    assert "create" in dry.output and "meter-001 … meter-101 (3 devices)" in dry.output
    assert httpx.get(f"{agent.north_url}/iot/devices", headers=HEADERS).json()["count"] == 0  # dry run

    first = _run(str(EXAMPLE), *urls)
    assert first.exit_code == 0, first.output
    assert "--check" not in first.output  # the embedded agent always writes with the project's context
    devices = httpx.get(f"{agent.north_url}/iot/devices", headers=HEADERS).json()
    assert devices["count"] == 3
    meter = next(d for d in devices["devices"] if d["device_id"] == "meter-001")
    statics = {s["name"]: s for s in meter["static_attributes"]}
    assert statics["refDevice"]["value"] == "urn:ngsi-ld:Device:meter-001"
    assert statics["nominalVoltage"]["value"] == 230 and statics["ctPrimaryCurrent"]["value"] == 400
    assert statics["location"]["value"] == {"type": "Point", "coordinates": [11.5756, 48.1372]}
    groups = httpx.get(f"{agent.north_url}/iot/services", headers=HEADERS).json()["services"]
    assert [(g["apikey"], g["autoprovision"]) for g in groups] == [("meterkey", False)]
    subs = subscription_broker.subscriptions["energytwin"]
    sub = subs[f"{SUBSCRIPTION_PREFIX}energytwin:quantumleap"]
    assert sub["notification"]["endpoint"]["uri"] == "http://quantumleap:8668/v2/notify"
    # listed without a Link header, the broker (like Orion-LD) answers with the types' full IRIs
    assert sub["entities"] == [{"type": "https://smartdatamodels.org/dataModel.Energy/ThreePhaseAcMeasurement"}]
    events = subs[f"{SUBSCRIPTION_PREFIX}energytwin:quantumleap-events"]
    assert [e["type"].rsplit("/", 1)[-1] for e in events["entities"]] == ["Anomaly"]
    assert len(subs) == 2

    subscriptions_before = subscription_broker.subscriptions["energytwin"]
    with Provisioner(agent.north_url, subscription_broker.url) as provisioner:
        plan = provisioner.plan(parse_inventory(EXAMPLE.read_text()))
    assert plan.changes() == []
    assert plan.counts() == {("group", "unchanged"): 1, ("device", "unchanged"): 3,
                             ("subscription", "unchanged"): 2}
    second = _run(str(EXAMPLE), *urls)
    assert second.exit_code == 0
    assert subscription_broker.subscriptions["energytwin"] == subscriptions_before  # not re-created

    # FiLiP, a client nobody here wrote, reads what provisioning wrote
    iota = IoTAClient(url=agent.north_url, fiware_header=FiwareHeader(service="energytwin", service_path="/"))
    device = iota.get_device(device_id="meter-002")
    assert device.entity_name == "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-002"
    assert {s.name for s in device.static_attributes} >= {"refDevice", "wiring", "nominalFrequency"}


def test_changes_update_and_prune_removes_what_the_inventory_dropped(
    tmp_path: Path, agent_for: Any, subscription_broker: SubscriptionBroker
) -> None:
    agent = agent_for(subscription_broker.url)
    urls = ("--agent-url", agent.north_url, "--broker-url", subscription_broker.url)
    assert _run(str(EXAMPLE), *urls).exit_code == 0
    text = EXAMPLE.read_text()
    changed = (text.replace("ct_primary_a: 63", "ct_primary_a: 80")
               .replace("url: http://quantumleap:8668/v2/notify", "url: http://ql2:8668/v2/notify"))
    changed = changed[:changed.index("          - device_id: meter-002")] + changed[
        changed.index("      - id: plant-b"):]
    edited = tmp_path / "edited.yaml"
    edited.write_text(changed)

    without_prune = _run(str(edited), *urls)
    assert without_prune.exit_code == 0, without_prune.output
    assert httpx.get(f"{agent.north_url}/iot/devices/meter-002", headers=HEADERS).status_code == 200
    meter = httpx.get(f"{agent.north_url}/iot/devices/meter-101", headers=HEADERS).json()
    assert {s["name"]: s["value"] for s in meter["static_attributes"]}["ctPrimaryCurrent"] == 80
    uris = {s["notification"]["endpoint"]["uri"] for s in subscription_broker.subscriptions["energytwin"].values()}
    assert uris == {"http://ql2:8668/v2/notify"}

    dry = _run(str(edited), "--prune", "--dry-run", *urls)
    assert "delete" in dry.output and "meter-002" in dry.output
    pruned = _run(str(edited), "--prune", *urls)
    assert pruned.exit_code == 0, pruned.output
    assert httpx.get(f"{agent.north_url}/iot/devices/meter-002", headers=HEADERS).status_code == 404
    assert httpx.get(f"{agent.north_url}/iot/devices", headers=HEADERS).json()["count"] == 2


def test_unreachable_agent_and_bad_inventory_fail_with_a_message(tmp_path: Path) -> None:
    down = _run(str(EXAMPLE), "--agent-url", "http://127.0.0.1:9", "--broker-url", "http://127.0.0.1:9")
    assert down.exit_code == 1 and "cannot reach the agent" in down.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("nominal_voltage_v: 230", "nominal_voltage_v: -230", 1))
    result = _run(str(bad))
    assert result.exit_code == 2
    assert "bad.yaml:16: tenants[0].sites[0].meters[0].nominal_voltage_v: Input should be greater than 0" \
        in result.output


def _thousand_meters() -> str:
    meters = "".join(
        f"          - device_id: meter-{n:04d}\n            nominal_voltage_v: 230\n"
        f"            nominal_frequency_hz: 50\n            ct_primary_a: {50 + n % 7 * 50}\n"
        for n in range(1000)
    )
    return ("tenants:\n  - service: energytwin\n    groups:\n      - apikey: meterkey\n    sites:\n"
            "      - id: big-site\n        location: {lat: 48.1, lon: 11.5}\n        meters:\n" + meters)


@pytest.mark.slow
def test_a_thousand_meters_against_the_embedded_stack(
    tmp_path: Path, agent_for: Any, embedded_broker: str, publish_meter: Any
) -> None:
    agent = agent_for(embedded_broker)
    inventory = tmp_path / "thousand.yaml"
    inventory.write_text(_thousand_meters())
    urls = ("--agent-url", agent.north_url, "--broker-url", embedded_broker)
    started = time.monotonic()
    first = _run(str(inventory), *urls)
    elapsed = time.monotonic() - started
    assert first.exit_code == 0, first.output
    print(f"provisioned 1,000 meters in {elapsed:.2f} s")
    assert httpx.get(f"{agent.north_url}/iot/devices?limit=1", headers=HEADERS).json()["count"] == 1000
    with Provisioner(agent.north_url, embedded_broker) as provisioner:
        plan = provisioner.plan(parse_inventory(inventory.read_text()))
    assert plan.changes() == [] and plan.counts()[("device", "unchanged")] == 1000

    # a provisioned meter's reading reaches the twin with its installation facts
    publish_meter("/json/meterkey/meter-0999/attrs", json.dumps({"f": 50.01, "TimeInstant": "2026-11-24T10:00:00Z"}))
    entity: dict[str, Any] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "frequency" not in entity:
        response = httpx.get(f"{embedded_broker}/ngsi-ld/v1/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:meter-0999",
                             headers={"Link": link_header(ENERGY_CONTEXT), "NGSILD-Tenant": "energytwin",
                                      "Accept": "application/json"})
        entity = response.json() if response.status_code == 200 else {}
        time.sleep(0.05)
    assert entity["frequency"]["value"] == 50.01
    assert entity["nominalVoltage"]["value"] == 230 and entity["nominalVoltage"]["unitCode"] == "VLT"
    assert entity["ctPrimaryCurrent"]["value"] == 50 + 999 % 7 * 50
