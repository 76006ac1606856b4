"""The reader against the real embedded broker: write meter readings, read hourly kWh back.

Skips, saying why, only while the broker does not serve the temporal API (404/501 on a temporal GET);
it runs as soon as `twin_service.broker` gains it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from community.hourly import hourly_energy_from_counter
from community.twin import energy_counters
from datamodels.context import ENERGY_CONTEXT, link_header
from datamodels.measures import measurement_id
from fiware_client import NgsiLdClient

ROOT = Path(__file__).parents[2]
T0 = datetime(2026, 10, 1, tzinfo=UTC)
TENANT = "communitytest"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("broker")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twin_service.broker",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"the embedded broker exited with {proc.returncode}: {out[-2000:]}")
        try:
            httpx.get(f"{url}/ngsi-ld/v1/entities?type=X", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.terminate()
        pytest.fail("the embedded broker did not answer within 20 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _fragment(device: str, minutes: int, import_kwh: float) -> dict:
    observed = (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    per_phase = {"L1": import_kwh / 2, "L2": import_kwh / 4, "L3": import_kwh / 4}
    return {
        "id": measurement_id(device),
        "type": "ThreePhaseAcMeasurement",
        "activeEnergyImport": {
            "type": "Property",
            "value": per_phase,
            "observedAt": observed,
            "unitCode": "KWH",
        },
        "activeEnergyExport": {
            "type": "Property",
            "value": {"L1": 0.0, "L2": 0.0, "L3": 0.0},
            "observedAt": observed,
            "unitCode": "KWH",
        },
    }


def test_hourly_energy_from_the_embedded_broker(broker: str):
    headers = {
        "Content-Type": "application/json",
        "Link": link_header(ENERGY_CONTEXT),
        "NGSILD-Tenant": TENANT,
    }
    # 1.2 kWh per hour, readings every 10 min for 3 h, except none between 01:00 and 01:50 (a gap).
    minutes = [m for m in range(0, 181, 10) if not 60 < m < 110]
    fragments = [_fragment("meter-c1", m, 100.0 + 1.2 * m / 60) for m in minutes]
    r = httpx.post(
        f"{broker}/ngsi-ld/v1/entityOperations/upsert", json=fragments, headers=headers, timeout=10
    )
    assert r.status_code in (201, 204), r.text

    probe = httpx.get(
        f"{broker}/ngsi-ld/v1/temporal/entities/{measurement_id('meter-c1')}",
        params={"timerel": "after", "timeAt": "2026-01-01T00:00:00Z"},
        headers=headers,
        timeout=10,
    )
    if probe.status_code in (404, 501):
        pytest.skip(
            f"the embedded broker does not serve the NGSI-LD temporal API yet "
            f"(GET /ngsi-ld/v1/temporal/entities/... -> {probe.status_code})"
        )

    with NgsiLdClient(broker, TENANT) as client:
        series = energy_counters(client, "meter-c1", T0, T0 + timedelta(hours=3), margin=timedelta(minutes=15))
    assert len(series.import_kwh) == len(minutes)
    hourly = hourly_energy_from_counter(
        [t for t, _ in series.import_kwh], [v for _, v in series.import_kwh], T0, T0 + timedelta(hours=3)
    )
    assert hourly.energy_kwh[0] == pytest.approx(1.2)
    assert np.isnan(hourly.energy_kwh[1])  # 01:00-01:50 without readings: reported, not filled
    assert hourly.energy_kwh[2] == pytest.approx(1.2)
    assert [g.hours for g in hourly.gaps] == [1]
