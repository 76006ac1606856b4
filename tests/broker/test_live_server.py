"""The broker on a real uvicorn server: FiLiP as an independent client, the IoT Agent's request, the CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from filip.clients.ngsi_ld.cb import ContextBrokerLDClient
from filip.models.base import FiwareLDHeader
from filip.models.ngsi_ld.context import ContextLDEntity, ContextProperty

from datamodels.context import ENERGY_CONTEXT
from twin_service.mqtt_server import free_port

from .conftest import BASE, MEASUREMENT_ID, LiveBroker, measurement

REPO = Path(__file__).resolve().parents[2]


def test_version_endpoints(live_broker: LiveBroker) -> None:
    version = httpx.get(f"{live_broker.url}/version")
    assert version.status_code == 200
    assert {"orionld version", "orion version", "uptime"} <= set(version.json())
    assert "sqlite version" in httpx.get(f"{live_broker.url}/ngsi-ld/ex/v1/version").json()


def test_filip_creates_and_reads_an_entity(live_broker: LiveBroker) -> None:
    header = FiwareLDHeader(ngsild_tenant="filip_site")
    header.set_context(ENERGY_CONTEXT)
    cb = ContextBrokerLDClient(url=live_broker.url, fiware_header=header)  # creates the tenant as it does on Orion-LD
    entity = ContextLDEntity(id=MEASUREMENT_ID, type="ThreePhaseAcMeasurement",
                             frequency=ContextProperty(value=50.02, unitCode="HTZ"),
                             phaseVoltage=ContextProperty(value={"L1": 230.1, "L2": 229.8, "L3": 231.0}))
    cb.post_entity(entity)

    got = cb.get_entity(MEASUREMENT_ID)
    assert got.type == "ThreePhaseAcMeasurement"
    assert got.model_dump()["frequency"]["value"] == 50.02
    assert got.model_dump()["phaseVoltage"]["value"] == {"L1": 230.1, "L2": 229.8, "L3": 231.0}
    listed = cb.get_entity_list(entity_type="ThreePhaseAcMeasurement")
    assert [e.id for e in listed] == [MEASUREMENT_ID]
    cb.delete_entity_by_id(MEASUREMENT_ID)
    assert cb.get_entity_list(entity_type="ThreePhaseAcMeasurement") == []


def test_iot_agent_request_over_http(live_broker: LiveBroker) -> None:
    fragments = [{**measurement(voltage_v=230.0 + n, observed_at=f"2026-11-24T10:00:0{n}.000Z"),
                  "@context": ENERGY_CONTEXT} for n in range(3)]
    headers = {"Content-Type": "application/ld+json", "NGSILD-Tenant": "site_a", "NGSILD-Path": "/",
               "fiware-service": "site_a", "fiware-servicepath": "/"}
    answer = httpx.post(f"{live_broker.url}{BASE}/entityOperations/upsert/?options=update", json=fragments,
                        headers=headers)
    assert answer.status_code == 201, answer.text
    got = httpx.get(f"{live_broker.url}{BASE}/entities/{MEASUREMENT_ID}",
                    params={"options": "keyValues", "attrs": "https://smartdatamodels.org/dataModel.Energy/frequency"},
                    headers={"NGSILD-Tenant": "site_a"})
    assert got.json() == {"id": MEASUREMENT_ID, "type": "https://smartdatamodels.org/dataModel.Energy/ThreePhaseAcMeasurement",
                          "https://smartdatamodels.org/dataModel.Energy/frequency": 50.0}


def test_module_cli_serves_on_the_given_port(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--host", "127.0.0.1",
                                "--port", str(port), "--data-dir", str(tmp_path / "var")],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/version", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "broker CLI did not answer /version"
            time.sleep(0.1)
        assert (tmp_path / "var" / "twin.sqlite").exists()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "NGSI-LD broker listening" in output
