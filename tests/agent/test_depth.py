"""Agent depth: group vs device mapping, statics, explicitAttrs, autoprovision, Device entity, flood, op/delete."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from datamodels.validation import validate_entity
from provisioning.agent_bodies import meter_device, service_group
from tests.agent.support import HEADERS, RecordingBroker, make_agent
from twin_service.agent import Agent
from twin_service.agent.registry import parse_explicit_attrs
from twin_service.mqtt_server import free_port

Publish = Callable[[str, bytes | str], None]
T0 = "2026-11-24T10:00:00Z"


def _group(north: httpx.Client, **fields: Any) -> None:
    body = {"apikey": "k", "resource": "/iot/json", "entity_type": "ThreePhaseAcMeasurement", **fields}
    response = north.post("/iot/services", json={"services": [body]}, headers=HEADERS)
    assert response.status_code == 201, response.text


def _device(north: httpx.Client, device_id: str = "m1", **fields: Any) -> None:
    body = {"device_id": device_id, "apikey": "k", "protocol": "IoTA-JSON", **fields}
    response = north.post("/iot/devices", json={"devices": [body]}, headers=HEADERS)
    assert response.status_code == 201, response.text


def test_device_attributes_and_statics_override_the_groups(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    _group(
        north,
        autoprovision=False,
        attributes=[{"object_id": "t", "name": "groupTemperature", "type": "Number"}],
        static_attributes=[{"name": "site", "type": "Text", "value": "group-site"},
                           {"name": "owner", "type": "Text", "value": "utility"}],
    )
    _device(
        north,
        attributes=[{"object_id": "t", "name": "deviceTemperature", "type": "Number"}],
        static_attributes=[{"name": "site", "type": "Text", "value": "device-site"}],
    )
    publish("/json/k/m1/attrs", json.dumps({"t": "21.5", "TimeInstant": T0}))
    [request] = recording_broker.wait_for(1)
    entity = request.body[0]
    assert entity["deviceTemperature"]["value"] == 21.5  # Number type parses the string, as node-lib does
    assert "groupTemperature" not in entity
    assert entity["site"]["value"] == "device-site" and entity["owner"]["value"] == "utility"


@pytest.mark.parametrize(
    ("explicit", "expected"),
    [
        (False, {"frequency", "totalActivePower", "extra", "site"}),
        (True, {"frequency", "site"}),
        ("['pt', {object_id:'f'}]", {"frequency", "totalActivePower"}),
    ],
)
def test_explicit_attrs(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker,
    explicit: bool | str, expected: set[str],
) -> None:
    _group(north, autoprovision=False, explicitAttrs=explicit,
           attributes=[{"object_id": "f", "name": "frequency", "type": "Number"}])
    _device(north, static_attributes=[{"name": "site", "type": "Text", "value": "A"}])
    publish("/json/k/m1/attrs", json.dumps({"f": 50.0, "pt": 10.0, "extra": 1, "TimeInstant": T0}))
    [request] = recording_broker.wait_for(1)
    assert set(request.body[0]) - {"id", "type", "@context"} == expected


def test_explicit_attrs_expression_forms() -> None:
    assert parse_explicit_attrs(None) is False and parse_explicit_attrs(True) is True
    assert parse_explicit_attrs("['a', \"b\", {object_id: 'c'}]") == frozenset({"a", "b", "c"})
    assert parse_explicit_attrs("x ? ['a'] : []") is True  # an expression we do not evaluate: the safe side


def test_unknown_device_is_autoprovisioned_when_the_group_allows_it(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    _group(north)  # FIWARE default: autoprovision
    publish("/json/k/new-meter/attrs", json.dumps({"f": 50.0, "TimeInstant": T0}))
    [request] = recording_broker.wait_for(1)
    assert request.body[0]["id"] == "urn:ngsi-ld:ThreePhaseAcMeasurement:new-meter"
    device = north.get("/iot/devices/new-meter", headers=HEADERS).json()
    assert device["apikey"] == "k" and device["entity_type"] == "ThreePhaseAcMeasurement"
    assert agent.metrics.value("autoprovisioned_total") == 1
    publish("/json/k/new-meter/attrs", json.dumps({"f": 50.1}))
    recording_broker.wait_for(2)
    assert agent.metrics.value("autoprovisioned_total") == 1


def test_provisioning_changes_apply_to_the_next_message(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    _group(north, autoprovision=False)
    publish("/json/k/m1/attrs", '{"f": 50}')
    deadline = time.monotonic() + 10
    while agent.metrics.value("rejected_total", reason="unknown_device") < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    _device(north)  # the cached "unknown device" answer must not outlive this
    publish("/json/k/m1/attrs", '{"f": 50}')
    recording_broker.wait_for(1)
    response = north.put("/iot/devices/m1", json={"entity_name": "urn:ngsi-ld:ThreePhaseAcMeasurement:renamed"},
                         headers=HEADERS)
    assert response.status_code == 204
    publish("/json/k/m1/attrs", '{"f": 51}')
    assert recording_broker.wait_for(2)[1].body[0]["id"] == "urn:ngsi-ld:ThreePhaseAcMeasurement:renamed"
    assert agent.metrics.value("rejected_total", reason="unknown_device") == 1


def test_meter_device_entity_is_kept_current_and_valid(
    agent: Agent, north: httpx.Client, publish: Publish, recording_broker: RecordingBroker
) -> None:
    assert north.post("/iot/services", json={"services": [service_group("meterkey")]},
                      headers=HEADERS).status_code == 201
    device = meter_device("meter-007", "meterkey")
    device["static_attributes"] = [*device["static_attributes"],
                                   {"name": "firmwareVersion", "type": "Text", "value": "1.4.2"}]
    assert north.post("/iot/devices", json={"devices": [device]}, headers=HEADERS).status_code == 201
    publish("/json/meterkey/meter-007/attrs", json.dumps({"f": 50.0, "TimeInstant": T0}))
    [request] = recording_broker.wait_for(1)
    measurement, twin = request.body
    assert measurement["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:meter-007",
                                        "observedAt": "2026-11-24T10:00:00.000Z"}
    assert twin["id"] == "urn:ngsi-ld:Device:meter-007" and twin["type"] == "Device"
    assert twin["dateLastValueReported"]["value"]["@value"] == "2026-11-24T10:00:00.000Z"
    assert twin["deviceState"]["value"] == "ok" and twin["firmwareVersion"]["value"] == "1.4.2"
    assert twin["controlledProperty"]["value"] == ["energy", "power"]
    validate_entity(twin)
    # a bad measure flips the state at once; an unchanged state is not rewritten within the refresh interval
    publish("/json/meterkey/meter-007/attrs", json.dumps({"f": "x", "pt": 1.0, "TimeInstant": T0}))
    publish("/json/meterkey/meter-007/attrs", json.dumps({"f": "y", "pt": 2.0, "TimeInstant": T0}))
    # (fragments, not requests: the agent may batch the two messages into one upsert)
    second_measurement, second_twin, third_measurement = recording_broker.wait_for_fragments(5)[2:5]
    assert second_measurement["type"] == "ThreePhaseAcMeasurement" and second_twin["type"] == "Device"
    assert second_twin["deviceState"]["value"] == "badData"
    assert third_measurement["type"] == "ThreePhaseAcMeasurement"
    # the meter's own fault report (wire key `ds`) wins and reaches both entities; recovery flips it back
    publish("/json/meterkey/meter-007/attrs", json.dumps({"ds": "fault:spi-crc", "clk": True, "TimeInstant": T0}))
    measurement, twin = recording_broker.wait_for_fragments(7)[5:7]
    assert measurement["deviceState"]["value"] == "fault:spi-crc"
    assert measurement["clockSynced"]["value"] is True
    assert twin["type"] == "Device" and twin["deviceState"]["value"] == "fault:spi-crc"
    validate_entity(twin)
    publish("/json/meterkey/meter-007/attrs", json.dumps({"ds": "ok", "f": 50.0, "TimeInstant": T0}))
    assert recording_broker.wait_for_fragments(9)[8]["deviceState"]["value"] == "ok"
    assert len(recording_broker.wait_for_fragments(9)) == 9


def test_a_flooding_device_is_limited_and_others_get_through(
    tmp_path: Path, mqtt_server: Any, recording_broker: RecordingBroker, publish: Publish
) -> None:
    agent = make_agent(tmp_path / "var", mqtt_server.host, mqtt_server.port, recording_broker.url,
                       flood_rate_per_s=0.01, flood_burst=3)
    try:
        with httpx.Client(base_url=agent.north_url) as north:
            _group(north, autoprovision=False)
            _device(north, "noisy")
            _device(north, "quiet")
        for _ in range(10):
            publish("/json/k/noisy/attrs", '{"f": 50}')
        publish("/json/k/quiet/attrs", '{"f": 49}')
        def ids() -> list[str]:
            return [f["id"].rsplit(":", 1)[1] for r in recording_broker.requests for f in r.body]

        # messages_total counts a message when it arrives, before it is mapped and queued, so wait for the
        # outcome itself (quiet's upsert reached the broker) rather than for the counter
        deadline = time.monotonic() + 10
        while "quiet" not in ids() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert agent.flush(10)
        assert ids().count("quiet") == 1 and ids().count("noisy") == 3
        assert agent.metrics.value("rejected_total", reason="flood") == 7
    finally:
        agent.stop()


def test_op_delete_and_delete_by_apikey(agent: Agent, north: httpx.Client) -> None:
    _group(north, autoprovision=False)
    for device_id in ("a", "b", "c"):
        _device(north, device_id)
    response = north.post("/iot/op/delete", json={"devices": [{"deviceId": "a", "apikey": "k"},
                                                             {"deviceId": "zz", "apikey": "k"},
                                                             {"deviceId": "b"}]}, headers=HEADERS)
    assert response.status_code == 404 and response.json()["name"] == "DEVICE_NOT_FOUND"
    assert [d["device_id"] for d in north.get("/iot/devices", headers=HEADERS).json()["devices"]] == ["c"]
    assert north.post("/iot/op/delete", json={"devices": []}, headers=HEADERS).status_code == 400
    assert north.delete("/iot/devices/c?apikey=other", headers=HEADERS).status_code == 404
    assert north.delete("/iot/devices/c?apikey=k", headers=HEADERS).status_code == 204
    assert north.post("/iot/op/delete", json={"devices": [{"deviceId": "c"}]}).status_code == 400  # headers
    version = north.get("/version").json()
    assert version["libVersion"] and version["health"]["broker"] in ("up", "down")


@pytest.mark.skipif(shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None,
                    reason="needs mosquitto and mosquitto_passwd")
def test_mqtt_username_and_password_from_iota_env_vars(
    tmp_path: Path, recording_broker: RecordingBroker
) -> None:
    from tests.agent.test_depth_support import MosquittoWithPassword
    from twin_service.agent.__main__ import parse_args

    with MosquittoWithPassword(tmp_path, "meter-agent", "s3cret") as mqtt:
        env = {"IOTA_MQTT_USERNAME": "meter-agent", "IOTA_MQTT_PASSWORD": "s3cret",
               "IOTA_MQTT_HOST": "127.0.0.1", "IOTA_MQTT_PORT": str(mqtt.port),
               "IOTA_CB_URL": recording_broker.url}
        config = parse_args(["--north-port", str(free_port()), "--data-dir", str(tmp_path / "var")], env)
        assert config.mqtt is not None and config.mqtt.username == "meter-agent"
        agent = Agent(config)
        agent.start()
        try:
            assert agent.wait_ready(10), "the agent could not log in to the MQTT broker"
            wrong = parse_args(["--north-port", str(free_port()), "--data-dir", str(tmp_path / "w")],
                               {**env, "IOTA_MQTT_PASSWORD": "nope"})
            refused = Agent(wrong)
            refused.start()
            try:
                assert not refused.wait_ready(2), "a wrong password must not get a subscription"
            finally:
                refused.stop()
        finally:
            agent.stop()


def test_tls_settings_come_from_iota_env_vars(tmp_path: Path) -> None:
    from twin_service.agent.__main__ import parse_args

    config = parse_args(["--data-dir", str(tmp_path)], {
        "IOTA_MQTT_PROTOCOL": "mqtts", "IOTA_MQTT_CA": "/ca.pem", "IOTA_MQTT_CERT": "/c.pem",
        "IOTA_MQTT_KEY": "/k.pem", "IOTA_MQTT_REJECT_UNAUTHORIZED": "false", "IOTA_NORTH_PORT": "4999",
        "IOTA_CB_HOST": "orion", "IOTA_CB_PORT": "1027", "IOTA_TIMESTAMP": "false"})
    assert config.mqtt is not None and config.mqtt.tls and not config.mqtt.reject_unauthorized
    assert (config.mqtt.ca_file, config.mqtt.cert_file, config.mqtt.key_file) == ("/ca.pem", "/c.pem", "/k.pem")
    assert config.north_port == 4999 and config.broker_url == "http://orion:1027"
    assert config.timestamp_default is False
