"""The offline buffer: bounded, persisted across a restart, replayed in order as IoT Agent JSON arrays."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from click.testing import CliRunner

from bridges.sunspec.buffer import OfflineBuffer
from bridges.sunspec.simulator import HomeConfig, free_port
from energytwin.cli import cli
from tests.bridges.conftest import wait
from twin_service.mqtt_server import start_mqtt_server


def test_bounded_drops_the_oldest_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "buffer.json"
    buffer = OfflineBuffer(max_messages=3, path=path)
    for n in range(5):
        buffer.put("/json/k/d1/attrs", {"n": n})
    assert len(buffer) == 3 and buffer.dropped == 2
    buffer.save()
    again = OfflineBuffer(max_messages=3, path=path)
    assert again.take() == [("/json/k/d1/attrs", [{"n": 2}, {"n": 3}, {"n": 4}])]
    path.write_text("{not json", encoding="utf-8")
    assert len(OfflineBuffer(path=path)) == 0 and path.with_suffix(".json.bad").exists()


def test_readings_taken_while_mqtt_is_down_are_replayed_in_order(tmp_path: Path, sunspec_server) -> None:
    """`energytwin inverter run` starts before its MQTT broker exists; the broker comes up; nothing is lost."""
    server = sunspec_server(HomeConfig())
    mqtt_port = free_port()
    site = tmp_path / "site.yaml"
    site.write_text(f"mqtt: {{host: 127.0.0.1, port: {mqtt_port}}}\napikey: key-o\npoll_interval_s: 0.2\n"
                    f"devices:\n  - id: garage-1\n    port: {server.port}\n", encoding="utf-8")
    import threading

    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(out=CliRunner().invoke(
        cli, ["inverter", "run", "-c", str(site), "--duration-s", "6"])))
    runner.start()
    time.sleep(1.5)  # about 7 polls with no broker
    broker = start_mqtt_server(tmp_path / "mqtt", port=mqtt_port)
    seen: list = []
    try:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="buffer-watch")
        client.on_message = lambda c, u, m: seen.append(json.loads(m.payload))
        client.connect("127.0.0.1", mqtt_port)
        client.subscribe("/json/key-o/garage-1-battery/attrs", qos=1)
        client.loop_start()
        # paho retries the connection at most every few seconds; the replay comes as one array, in time order
        replay = wait(lambda: next((p for p in seen if isinstance(p, list)), None), timeout_s=15)
        times = [item["TimeInstant"] for item in replay]
        assert len(replay) >= 5 and times == sorted(times)
        client.loop_stop()
        client.disconnect()
        runner.join(timeout=20)
    finally:
        broker.stop()
    assert result["out"].exit_code == 0, result["out"].output
    assert "stopped: " in result["out"].output and "polls_total" in result["out"].output
