"""Notifications owed survive a receiver away for long and a broker killed with SIGKILL (_notify_backlog.py)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from tests.broker.conftest import BASE, ENERGY_LINK, Receiver, measurement
from twin_service.broker import _notify_backlog, create_app
from twin_service.mqtt_server import free_port, wait_for_port

SUBS = f"{BASE}/subscriptions"
UPSERT = f"{BASE}/entityOperations/upsert"
SUB_ID = "urn:ngsi-ld:Subscription:backlog"


def _subscription(uri: str) -> dict:
    return {"type": "Subscription", "id": SUB_ID, "entities": [{"type": "ThreePhaseAcMeasurement"}],
            "notification": {"attributes": ["phaseVoltage"], "endpoint": {"uri": uri, "accept": "application/json"}}}


def _voltages(received: list, skip: int = 0) -> list[float]:
    return [e["phaseVoltage"]["value"]["L1"] for r in list(received)[skip:] for e in r.body["data"]]


def _owed_rows(data_dir: Path) -> int:
    with closing(sqlite3.connect(data_dir / _notify_backlog.FILE_NAME)) as db:
        return db.execute("SELECT count(*) FROM owed").fetchone()[0]


def _wait(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_backlog_larger_than_memory_waits_on_disk_and_arrives_in_order(
        monkeypatch: pytest.MonkeyPatch, data_dir: Path, receiver: Receiver) -> None:
    monkeypatch.setattr(_notify_backlog, "MEMORY_WINDOW", 4)
    with TestClient(create_app(data_dir, notification_retry_delays_s=(0.05,)), raise_server_exceptions=False) as client:
        assert client.post(SUBS, json=_subscription(f"{receiver.url}/n"), headers=ENERGY_LINK).status_code == 201
        receiver.statuses = [503] * 10_000  # away
        voltages = [200.0 + n for n in range(30)]
        for voltage in voltages:
            client.post(UPSERT, params={"options": "update"}, headers=ENERGY_LINK,
                        json=[measurement(voltage_v=voltage)]).raise_for_status()
        _wait(lambda: _owed_rows(data_dir) == 30)  # all of it on disk, 4 at most in memory
        failed = len(receiver.received)
        receiver.statuses = []  # back
        _wait(lambda: _voltages(receiver.received, failed) == voltages)
        _wait(lambda: _owed_rows(data_dir) == 0)  # acknowledged rows go
        status = client.get(f"{SUBS}/{SUB_ID}").json()["notification"]
        assert status["status"] == "ok" and status["timesFailed"] >= failed


def test_beyond_the_bound_the_oldest_are_dropped_and_counted(
        monkeypatch: pytest.MonkeyPatch, data_dir: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_notify_backlog, "MEMORY_WINDOW", 2)
    monkeypatch.setattr(_notify_backlog, "MAX_ENTITIES", 5)
    with TestClient(create_app(data_dir, notification_retry_delays_s=(0.05,)), raise_server_exceptions=False) as client:
        assert client.post(SUBS, json=_subscription(f"{receiver.url}/n"), headers=ENERGY_LINK).status_code == 201
        receiver.statuses = [503] * 10_000
        voltages = [200.0 + n for n in range(12)]
        for voltage in voltages:
            client.post(UPSERT, params={"options": "update"}, headers=ENERGY_LINK,
                        json=[measurement(voltage_v=voltage)]).raise_for_status()
        failed = len(receiver.received)
        receiver.statuses = []
        _wait(lambda: _voltages(receiver.received, failed)[-5:] == voltages[-5:])
        seen = _voltages(receiver.received, failed)
        backlog = client.app.state.broker.subscriptions._backlog
        dropped = backlog.dropped(("", SUB_ID))
        assert dropped >= 1 and len(seen) + dropped == len(voltages)  # every entity delivered or counted
        shown = client.get(f"{SUBS}/{SUB_ID}", headers=ENERGY_LINK).json()["notification"]
        assert shown["energytwin:notificationsDropped"] == dropped  # on the subscription, as the journal says
    with TestClient(create_app(data_dir), raise_server_exceptions=False) as client:  # and after a restart
        shown = client.get(f"{SUBS}/{SUB_ID}", headers=ENERGY_LINK).json()["notification"]
        assert shown["energytwin:notificationsDropped"] == dropped
        assert seen == sorted(seen)  # in order; only the oldest queued were dropped
        assert "dropped the oldest" in caplog.text


@contextmanager
def _broker(data_dir: Path, port: int) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                             str(data_dir), "--log-level", "warning"])
    try:
        wait_for_port("127.0.0.1", port, timeout_s=20, proc=proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_notifications_owed_at_a_kill_9_are_sent_after_the_restart(data_dir: Path, receiver: Receiver) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    nobody = f"http://127.0.0.1:{free_port()}/gone"  # the receiver is unreachable until after the crash
    voltages = [210.0 + n for n in range(20)]
    with _broker(data_dir, port) as proc:
        httpx.post(f"{url}{SUBS}", json=_subscription(nobody), headers=ENERGY_LINK).raise_for_status()
        for voltage in voltages:
            httpx.post(f"{url}{UPSERT}", params={"options": "update"}, headers=ENERGY_LINK,
                       json=[measurement(voltage_v=voltage)]).raise_for_status()
        _wait(lambda: _owed_rows(data_dir) == len(voltages))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    with _broker(data_dir, port):
        httpx.patch(f"{url}{SUBS}/{SUB_ID}", headers=ENERGY_LINK, json={"notification": {
            "endpoint": {"uri": f"{receiver.url}/back", "accept": "application/json"}}}).raise_for_status()
        _wait(lambda: _voltages(receiver.received) == voltages, timeout_s=15)
