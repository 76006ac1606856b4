"""The analytics service as a process against the real embedded broker: records written, updated, closed, valid,
and no duplicate across a restart. Notifications are posted to /notify exactly as the broker posts them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from datamodels.context import ALERT_CONTEXT, link_header
from datamodels.validation import validate_entity
from tests.broker_process import broker_process
from twin_service.mqtt_server import free_port, wait_for_port

from .support import T0, entity, seconds

TENANT = "quality-test"


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with broker_process(tmp_path_factory.mktemp("broker")) as url:
        yield url


class Service:
    def __init__(self, broker_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twin_service.quality", "--broker-url", broker_url, "--tenant", TENANT,
             "--listen-port", str(self.port), "--data-dir", str(data_dir), "--log-level", "warning"])
        wait_for_port("127.0.0.1", self.port, timeout_s=20, proc=self.proc)

    def post(self, *entities: dict) -> None:
        body = {"id": "urn:ngsi-ld:Notification:1", "type": "Notification",
                "subscriptionId": "urn:ngsi-ld:Subscription:energytwin-quality",
                "notifiedAt": "2026-01-05T00:00:00Z", "data": list(entities)}
        r = httpx.post(f"{self.url}/notify", json=body, timeout=10)
        assert r.status_code == 204, r.text

    def health(self) -> dict:
        r = httpx.get(f"{self.url}/health", timeout=5)
        assert r.status_code == 200
        return r.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def anomalies(broker_url: str, device: str) -> list[dict]:
    r = httpx.get(f"{broker_url}/ngsi-ld/v1/entities", params={"type": "Anomaly", "limit": 1000},
                  headers={"NGSILD-Tenant": TENANT, "Link": link_header(ALERT_CONTEXT)})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return [e for e in r.json() if e["detectedBy"]["object"] == f"urn:ngsi-ld:Device:{device}"]


def test_dip_record_is_written_updated_and_closed(broker_url: str, tmp_path: Path) -> None:
    service = Service(broker_url, tmp_path)
    try:
        service.post(entity("svc-dip", T0))
        service.post(entity("svc-dip", T0 + seconds(1), v=(230, 170, 230)))
        [opened] = anomalies(broker_url, "svc-dip")
        validate_entity(opened)
        assert opened["status"]["value"] == "open"
        assert opened["severity"]["value"] == "medium"  # 170 V = 74 % of Un
        service.post(entity("svc-dip", T0 + seconds(2), v=(230, 140, 230)))
        service.post(entity("svc-dip", T0 + seconds(3)))
        [record] = anomalies(broker_url, "svc-dip")
        validate_entity(record)
        assert record["anomalousProperty"]["value"] == "phaseVoltage"
        assert record["phase"]["value"] == "L2"
        assert record["status"]["value"] == "closed"
        assert record["severity"]["value"] == "high"  # 140 V = 61 % of Un
        assert [b["measuredValue"] for b in record["thresholdBreach"]["value"]] == [170.0, 140.0]
        assert "140.0 V" in record["description"]["value"] and "207.0 V" in record["description"]["value"]
        health = service.health()
        assert health["status"] == "ok" and health["meters"]["svc-dip"].startswith("2026-01-05T00:00:03")
        assert health["evaluations"] == 4 and health["writeErrors"] == 0
        # bad bodies are refused with the reason and change nothing
        for bad in (b"", b"{not json", b'{"data": 5}'):
            answer = httpx.post(f"{service.url}/notify", content=bad, timeout=10)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["title"] == "Invalid notification"
        assert service.health()["evaluations"] == 4 and service.proc.poll() is None
    finally:
        service.stop()


def test_restart_during_a_condition_keeps_one_record(broker_url: str, tmp_path: Path) -> None:
    service = Service(broker_url, tmp_path)
    try:
        service.post(entity("svc-ov", T0))
        service.post(entity("svc-ov", T0 + seconds(1), v=(262, 230, 230)))
        service.post(entity("svc-ov", T0 + seconds(2), v=(262, 230, 230)))
    finally:
        service.stop()
    [before] = anomalies(broker_url, "svc-ov")
    assert before["status"]["value"] == "open"

    service = Service(broker_url, tmp_path / "elsewhere")  # no local copy: the state comes from the broker
    try:
        assert service.health()["recoveredOpenAnomalies"] >= 1
        service.post(entity("svc-ov", T0 + seconds(2), v=(262, 230, 230)))  # redelivered: ignored
        service.post(entity("svc-ov", T0 + seconds(3), v=(265, 230, 230)))
        service.post(entity("svc-ov", T0 + seconds(4)))
    finally:
        service.stop()
    [after] = anomalies(broker_url, "svc-ov")
    assert after["id"] == before["id"]
    assert after["status"]["value"] == "closed"
    assert max(b["measuredValue"] for b in after["thresholdBreach"]["value"]) == 265.0
    validate_entity(after)
