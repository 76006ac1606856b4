"""Every acknowledged write survives kill -9 during ingestion; the retention setting bounds history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from datamodels.context import ENERGY_CONTEXT, link_header
from twin_service.broker import Store, create_app
from twin_service.mqtt_server import free_port

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, measurement

REPO = Path(__file__).resolve().parents[2]


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--host", "127.0.0.1", "--port",
                                str(port), "--data-dir", str(data_dir), "--log-level", "warning"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/version", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "broker did not start"
        time.sleep(0.05)


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "var", free_port()
    process = _start(data_dir, port)
    url = f"http://127.0.0.1:{port}{BASE}/entityOperations/upsert"
    headers = {"Link": link_header(ENERGY_CONTEXT), "NGSILD-Tenant": "site_a"}
    acknowledged: list[tuple[str, float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            n = 0
            while not stop.is_set():
                entity_id = f"urn:ngsi-ld:ThreePhaseAcMeasurement:w{worker}-{n % 5}"
                voltage = float(n)
                try:
                    answer = client.post(url, params={"options": "update"}, headers=headers,
                                         json=[measurement(entity_id=entity_id, voltage_v=voltage)])
                except httpx.TransportError:
                    return  # the broker died under this request: not acknowledged
                if answer.status_code in (201, 204):
                    with lock:
                        acknowledged.append((entity_id, voltage))
                n += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)  # in the middle of ingestion
    process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(acknowledged) >= 150

    restarted = _start(data_dir, port)
    try:
        latest: dict[str, float] = {}
        for entity_id, voltage in acknowledged:
            latest[entity_id] = max(voltage, latest.get(entity_id, -1.0))
        for entity_id, voltage in latest.items():
            got = httpx.get(f"http://127.0.0.1:{port}{BASE}/entities/{entity_id}", headers=headers)
            assert got.status_code == 200, entity_id
            # a write may have committed without its answer reaching the client: never *less* than acknowledged
            assert got.json()["phaseVoltage"]["value"]["L1"] >= voltage
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)
    history = {(h.entity_id, h.attribute["value"]["L1"])
               for h in Store(data_dir).history("site_a", "urn:ngsi-ld:ThreePhaseAcMeasurement:w0-0")
               + Store(data_dir).history("site_a", "urn:ngsi-ld:ThreePhaseAcMeasurement:w1-1")
               if h.attr_name and h.attr_name.endswith("phaseVoltage")}
    for entity_id, voltage in acknowledged:
        if entity_id.endswith(("w0-0", "w1-1")):
            assert (entity_id, voltage) in history  # every acknowledged instance is in the history


@pytest.mark.parametrize("days", [1.0])
def test_retention_prunes_old_history(data_dir: Path, make_client: Callable[[], TestClient], days: float) -> None:
    first = make_client()
    now = datetime.now(UTC)
    for age_days in (10, 5, 0.01):
        moment = (now - timedelta(days=age_days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        first.post(f"{BASE}/entityOperations/upsert", params={"options": "update"}, headers=ENERGY_LINK,
                   json=[measurement(observed_at=moment, voltage_v=200.0 + age_days)]).raise_for_status()
    first.__exit__(None, None, None)

    with TestClient(create_app(data_dir, retention_days=days)) as client:
        deadline = time.monotonic() + 5
        while True:
            body = client.get(f"{BASE}/temporal/entities/{MEASUREMENT_ID}", headers=ENERGY_LINK,
                              params={"attrs": "phaseVoltage", "options": "temporalValues"}).json()
            values = [v["L1"] for v, _ in body["phaseVoltage"]["values"]]
            if len(values) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert values == [200.01]
        assert client.get(f"{BASE}/entities/{MEASUREMENT_ID}").status_code == 200  # current state untouched


def test_retention_setting_on_the_command_line(tmp_path: Path) -> None:
    refused = subprocess.run([sys.executable, "-m", "twin_service.broker", "--retention-days", "0", "--data-dir",
                              str(tmp_path)], check=False, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--retention-days must be positive" in refused.stderr
    bad_env = subprocess.run([sys.executable, "-m", "twin_service.broker", "--data-dir", str(tmp_path)], check=False,
                             cwd=REPO,
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "ENERGYTWIN_BROKER_RETENTION_DAYS": "a week"})
    assert bad_env.returncode != 0 and "ENERGYTWIN_BROKER_RETENTION_DAYS" in bad_env.stderr
