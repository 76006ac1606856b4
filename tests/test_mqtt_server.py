"""The embedded MQTT broker really carries messages (both Mosquitto and the amqtt fallback)."""

import threading

import paho.mqtt.client as mqtt
import pytest

from twin_service.mqtt_server import find_mosquitto, free_port, start_mqtt_server


def _roundtrip(host: str, port: int) -> bytes:
    got: list[bytes] = []
    done = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = lambda c, u, m: (got.append(m.payload), done.set())
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(host, port)
    sub.subscribe("/json/k/d/attrs", qos=1)
    sub.loop_start()
    assert subscribed.wait(5)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub")
    pub.connect(host, port)
    pub.loop_start()
    pub.publish("/json/k/d/attrs", b'{"f":50}', qos=1).wait_for_publish(5)
    assert done.wait(5), "message not delivered"
    for c in (sub, pub):
        c.loop_stop()
        c.disconnect()
    return got[0]


@pytest.mark.parametrize("prefer", ["mosquitto", "amqtt"])
def test_broker_delivers(tmp_path, prefer):
    if prefer == "mosquitto" and find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    server = start_mqtt_server(tmp_path, port=free_port(), prefer=prefer)
    try:
        assert _roundtrip(server.host, server.port) == b'{"f":50}'
    finally:
        server.stop()
