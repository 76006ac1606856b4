"""A restart of the embedded Mosquitto keeps a persistent session and the QoS 1 messages queued for it.

This is what lets the agent miss nothing while the MQTT broker restarts. Run as root (CI), Mosquitto drops to the
`mosquitto` user, which cannot enter pytest's 0700 temporary directories; before the stack handled that, every
save failed with "Permission denied" and the soak lost one reading per meter at each restart.
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from twin_service.mqtt_server import find_mosquitto, free_port, start_mqtt_server

TOPIC = "/json/k/d/attrs"


def _session(port: int, got: list[bytes], subscribe: bool) -> mqtt.Client:
    """The agent's kind of client: a fixed id, a persistent session (clean_session False), QoS 1."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="persistent-agent", clean_session=False)
    ready = threading.Event()
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.on_subscribe = lambda *a: ready.set()
    client.on_connect = lambda c, u, f, reason, p: (c.subscribe(TOPIC, qos=1) if subscribe else ready.set())
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(5)
    return client


def test_queued_qos1_message_survives_a_mosquitto_restart(tmp_path):
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    workdir, port = tmp_path / "private" / "mqtt", free_port()
    workdir.parent.mkdir(mode=0o700)  # what tempfile and pytest create: closed to the mosquitto user
    got: list[bytes] = []
    server = start_mqtt_server(workdir, port=port, prefer="mosquitto")
    try:
        agent = _session(port, got, subscribe=True)
        agent.loop_stop()
        agent.disconnect()  # the session stays on the broker; what follows is queued for it
        meter = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="meter")
        meter.connect("127.0.0.1", port)
        meter.loop_start()
        meter.publish(TOPIC, b'{"f":50}', qos=1).wait_for_publish(5)
        meter.loop_stop()
        meter.disconnect()
    finally:
        server.stop()  # SIGTERM: Mosquitto saves its database on the way out
    log = (workdir / "mosquitto.log").read_text()
    assert "Permission denied" not in log, log
    server = start_mqtt_server(workdir, port=port, prefer="mosquitto")
    try:
        delivered = threading.Event()
        agent = _session(port, got, subscribe=False)
        agent.on_message = lambda c, u, m: (got.append(m.payload), delivered.set())
        assert delivered.wait(5) or got, "the queued message did not survive the restart"
        agent.loop_stop()
        agent.disconnect()
    finally:
        server.stop()
    assert got == [b'{"f":50}']
