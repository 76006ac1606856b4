"""Per-device MQTT credentials against the real brokers: Mosquitto (password_file + acl_file) and the amqtt fallback
(the same files through access/_amqtt_plugins.py): a wrong secret or no login is refused, a device publishing
another device's topic is dropped, a device reads its own commands and not another's."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from access._mqtt_auth import (
    AGENT_USER,
    MqttCredentials,
    filter_within,
    mosquitto_hash,
    read_acl_file,
    topic_matches,
    verify_mosquitto_hash,
)
from twin_service.mqtt_server import MqttServer, find_mosquitto, free_port, start_mqtt_server

APIKEY = "meterkey"


def test_hashes_are_mosquittos_own():
    stored = mosquitto_hash("s3cret", salt=b"0123456789ab")
    assert stored.startswith("$7$101$") and verify_mosquitto_hash("s3cret", stored)
    assert not verify_mosquitto_hash("other", stored) and not verify_mosquitto_hash("s3cret", "$6$x$y")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_a_hash_written_by_mosquitto_passwd_verifies(tmp_path: Path):
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "pw"), "dev", "pa:ss"], check=True)
    stored = (tmp_path / "pw").read_text().strip().split(":", 1)[1]
    assert verify_mosquitto_hash("pa:ss", stored) and not verify_mosquitto_hash("pass", stored)


def test_topic_matching():
    assert topic_matches("/json/k/d/attrs/+", "/json/k/d/attrs/v") and not topic_matches("/json/k/d/attrs", "/x")
    assert topic_matches("#", "/json/k/d/attrs") and not topic_matches("/json/k/d/cmd", "/json/k/e/cmd")
    assert filter_within("/json/k/d/cmd", "/json/k/d/cmd") and not filter_within("/json/k/+/cmd", "/json/k/d/cmd")
    assert not filter_within("#", "/json/k/d/cmd") and filter_within("/json/+/+/attrs", "#")


def test_generation_keeps_secrets_and_refuses_a_device_under_two_apikeys(tmp_path: Path):
    creds = MqttCredentials(tmp_path)
    first = creds.ensure([(APIKEY, "meter-001")])
    again = creds.ensure([(APIKEY, "meter-001"), (APIKEY, "meter-002")])
    assert again["meter-001"].secret == first["meter-001"].secret and "meter-002" in again
    assert creds.password_file.stat().st_mode & 0o077 == 0 and creds.accounts_path.stat().st_mode & 0o077 == 0
    acl = read_acl_file(creds.acl_file)
    assert acl["meter-001"]["write"] == [f"/json/{APIKEY}/meter-001/attrs", f"/json/{APIKEY}/meter-001/attrs/+",
                                         f"/json/{APIKEY}/meter-001/cmdexe", f"/{APIKEY}/meter-001/attrs",
                                         f"/{APIKEY}/meter-001/attrs/+", f"/{APIKEY}/meter-001/cmdexe"]
    assert acl["meter-001"]["read"] == [f"/json/{APIKEY}/meter-001/cmd", f"/{APIKEY}/meter-001/cmd"]
    with pytest.raises(ValueError, match="one apikey"):
        creds.ensure([("otherkey", "meter-001")])


def _client(name: str, server: MqttServer, login: tuple[str, str] | None) -> tuple[mqtt.Client, object]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{time.time_ns()}")
    if login:
        client.username_pw_set(*login)
    result: dict[str, object] = {}
    done = threading.Event()

    def on_connect(c, u, flags, reason, props=None):
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    client.connect(server.host, server.port, keepalive=30)
    client.loop_start()
    done.wait(10)
    return client, result.get("reason")


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[MqttServer, MqttCredentials]]:
    if request.param == "mosquitto" and find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    creds = MqttCredentials(tmp_path)
    creds.ensure([(APIKEY, "meter-001"), (APIKEY, "meter-002")])
    server = start_mqtt_server(tmp_path / "mqtt", "127.0.0.1", free_port(), prefer=request.param,
                               auth=(creds.password_file, creds.acl_file))
    try:
        yield server, creds
    finally:
        server.stop()


def test_devices_authenticate_and_stay_on_their_topics(broker: tuple[MqttServer, MqttCredentials]):
    server, creds = broker
    clients = []
    try:
        for login in (None, ("meter-001", "wrong secret"), ("nobody", "x")):
            client, reason = _client("refused", server, login)
            clients.append(client)
            assert reason is not None and reason.is_failure, (login, reason)  # CONNACK refused
        received: list[tuple[str, bytes]] = []
        agent, reason = _client("agent", server, creds.login(AGENT_USER))
        clients.append(agent)
        assert reason is not None and not reason.is_failure, reason
        agent.on_message = lambda c, u, m: received.append((m.topic, m.payload))
        agent.subscribe("/json/+/+/attrs", qos=1)
        meter, reason = _client("meter-001", server, creds.login("meter-001"))
        clients.append(meter)
        assert not reason.is_failure, reason
        commands: list[str] = []
        meter.on_message = lambda c, u, m: commands.append(m.topic)
        meter.subscribe(f"/{APIKEY}/meter-001/cmd", qos=1)
        meter.subscribe(f"/{APIKEY}/meter-002/cmd", qos=1)  # another meter's commands: refused
        time.sleep(0.5)
        meter.publish(f"/json/{APIKEY}/meter-002/attrs", b'{"f": 49.0}', qos=1).wait_for_publish(5)  # not its own
        meter.publish(f"/json/{APIKEY}/meter-001/attrs", b'{"f": 50.0}', qos=1).wait_for_publish(5)
        agent.publish(f"/{APIKEY}/meter-002/cmd", b'{"x": 1}', qos=1).wait_for_publish(5)
        agent.publish(f"/{APIKEY}/meter-001/cmd", b'{"x": 2}', qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (received and commands):
            time.sleep(0.05)
        time.sleep(0.5)  # a dropped publish would have arrived by now
        assert received == [(f"/json/{APIKEY}/meter-001/attrs", b'{"f": 50.0}')], received
        assert commands == [f"/{APIKEY}/meter-001/cmd"], commands
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()


def test_a_new_device_logs_in_after_a_reload(broker: tuple[MqttServer, MqttCredentials]):
    server, creds = broker
    creds.ensure([(APIKEY, "meter-003")])
    server.reload_credentials()
    deadline, reason = time.monotonic() + 5, None
    while time.monotonic() < deadline:
        client, reason = _client("meter-003", server, creds.login("meter-003"))
        client.loop_stop()
        client.disconnect()
        if reason is not None and not reason.is_failure:
            break
        time.sleep(0.2)
    assert reason is not None and not reason.is_failure, reason


def test_a_gateway_publishes_for_its_devices_only(tmp_path: Path):
    creds = MqttCredentials(tmp_path)
    creds.ensure(gateways={"home-1": [(APIKEY, "home-1-pv"), (APIKEY, "home-1-battery")]})
    creds.ensure(gateways={"home-1": [(APIKEY, "home-1-pv")]})  # again: nothing lost
    acl = read_acl_file(creds.acl_file)["home-1"]
    assert f"/json/{APIKEY}/home-1-battery/attrs" in acl["write"] and f"/{APIKEY}/home-1-pv/cmd" in acl["read"]
    assert not any("meter-" in t for t in acl["write"] + acl["read"])
