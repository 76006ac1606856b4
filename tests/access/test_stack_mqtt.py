"""The embedded stack with per-device MQTT logins (what `energytwin demo` runs): the real firmware logs in with its
own secret and reaches the twin through the agent (which logs in as itself); an anonymous client and a meter
with a wrong secret are refused; every service listens on loopback only."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest

from energytwin.demo import DEMO_APIKEY, provision_demo, wait_for_first_update
from energytwin.stack import EmbeddedStack, StackConfig
from firmware.emulator.simulated_meter import SimulatedMeter
from twin_service.mqtt_server import find_mosquitto

from .conftest import free_port


def _connack(host: str, port: int, login: tuple[str, str] | None) -> mqtt.ReasonCode | None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{time.time_ns()}")
    if login:
        client.username_pw_set(*login)
    done, seen = threading.Event(), []
    client.on_connect = lambda c, u, f, reason, p=None: (seen.append(reason), done.set())
    client.connect(host, port, keepalive=10)
    client.loop_start()
    done.wait(10)
    client.loop_stop()
    client.disconnect()
    return seen[0] if seen else None


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")
def test_meters_log_in_with_their_own_secret(tmp_path: Path):
    cfg = StackConfig(data_dir=tmp_path, mqtt_port=free_port(), broker_port=free_port(), agent_port=free_port(),
                      quality_port=0, web_port=0, access_port=0, mqtt_prefer="mosquitto", mqtt_auth=True)
    with EmbeddedStack(cfg) as stack:
        pids = [stack.mqtt.process.pid, *(c.process.pid for c in stack.children)]
        listening = []
        for pid in pids:
            for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
                listening += [c.laddr.ip for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        assert listening and set(listening) == {"127.0.0.1"}, listening  # loopback unless told otherwise

        provision_demo(cfg.agent_url, cfg.broker_url, ["meter-001"])
        login = stack.mqtt_login(DEMO_APIKEY, "meter-001")
        assert login is not None and login[0] == "meter-001"
        deadline = time.monotonic() + 5  # Mosquitto re-reads its files on the SIGHUP mqtt_login sent
        while (reason := _connack(cfg.host, cfg.mqtt_port, login)) is None or reason.is_failure:
            assert time.monotonic() < deadline, reason
            time.sleep(0.2)
        assert _connack(cfg.host, cfg.mqtt_port, None).is_failure  # anonymous
        assert _connack(cfg.host, cfg.mqtt_port, ("meter-001", "not the secret")).is_failure

        with SimulatedMeter(device_id="meter-001", apikey=DEMO_APIKEY, mqtt_host=cfg.host, mqtt_port=cfg.mqtt_port,
                            period_s=0.5, mqtt_login=login) as meter:
            meter.start()
            entity = wait_for_first_update(cfg.broker_url, "meter-001", timeout_s=30)
        assert entity["id"].endswith("meter-001")
