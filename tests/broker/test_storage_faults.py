"""Storage faults: a full disk and a read-only database give 503 with the reason, keep nothing of the refused
request, leave reads working, recover by themselves, and leave a database that passes PRAGMA integrity_check.

Disk full is real when the test may mount a 4 MiB tmpfs (root, as CI runs): a filler file takes the free space and
is removed again. Elsewhere SQLite's max_page_count gives the same SQLITE_FULL. Read-only uses PRAGMA query_only on
the writer connection, which fails writes with SQLITE_READONLY, the answer SQLite gives for a read-only file (a
tmpfs cannot be remounted read-only while the broker holds its files open).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from datamodels.context import ENERGY_CONTEXT, link_header
from twin_service.broker import create_app

BASE = "/ngsi-ld/v1"
LINK = {"Link": link_header(ENERGY_CONTEXT)}


def _entity(n: int, attr: str = "frequency") -> dict:
    return {"id": f"urn:ngsi-ld:ThreePhaseAcMeasurement:m{n}", "type": "ThreePhaseAcMeasurement",
            attr: {"type": "Property", "value": 50.0, "observedAt": "2026-12-01T10:00:00Z"},
            "note": {"type": "Property", "value": "x" * 4000}}


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[bool]:
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             check=False, capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _integrity(data_dir: Path) -> str:
    with contextlib.closing(sqlite3.connect(data_dir / "twin.sqlite")) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def _refused(response, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["type"].endswith("/InternalError") and body["title"] == "Storage unavailable"
    assert reason in body["detail"] and response.headers["retry-after"] == "10"


def test_disk_full_is_503_keeps_nothing_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _tmpfs(tmp_path / "disk", "4m") as mounted:
        data_dir = tmp_path / "disk" / "var"
        app = create_app(data_dir)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.post(f"{BASE}/entityOperations/upsert", json=[_entity(k) for k in range(5)],
                               headers=LINK).status_code == 201
            filler = tmp_path / "disk" / "filler"
            if mounted:
                with open(filler, "wb") as f, contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
            else:
                store = app.state.broker.store
                pages = store._db.execute("PRAGMA page_count").fetchone()[0]
                store._db.execute(f"PRAGMA max_page_count={pages + 2}")
            caplog.set_level(logging.ERROR, logger="twin_service.broker")
            # New entities with new attributes: the refused transaction created tables, columns and series ids.
            for n in range(3):
                batch = [_entity(100 + k, f"extra{n}") for k in range(40)]
                _refused(client.post(f"{BASE}/entityOperations/upsert", json=batch, headers=LINK), "disk full")
            assert any("disk full" in r.getMessage() and "503" in r.getMessage() for r in caplog.records)
            # Reads keep working, and nothing of the refused requests is there.
            assert client.get(f"{BASE}/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:m1", headers=LINK).status_code == 200
            assert client.get(f"{BASE}/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:m100",
                              headers=LINK).status_code == 404
            assert _integrity(data_dir) == "ok"
            if mounted:
                filler.unlink()
            else:
                app.state.broker.store._db.execute("PRAGMA max_page_count=4294967294")
            # Space is back: the same request goes through without any repair.
            batch = [_entity(100 + k, "extra1") for k in range(40)]
            assert client.post(f"{BASE}/entityOperations/upsert", json=batch, headers=LINK).status_code == 201
            got = client.get(f"{BASE}/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:m101", headers=LINK).json()
            assert got["extra1"]["value"] == 50.0 and "extra0" not in got
            assert client.get(f"{BASE}/entities", params={"type": "ThreePhaseAcMeasurement", "count": "true",
                                                          "limit": "1"}, headers=LINK).headers[
                "NGSILD-Results-Count"] == "45"
        assert _integrity(data_dir) == "ok"


def test_read_only_database_is_503_and_recovers(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    app = create_app(data_dir)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post(f"{BASE}/entityOperations/upsert", json=[_entity(1)], headers=LINK).status_code == 201
        store = app.state.broker.store
        store._db.execute("PRAGMA query_only=1")
        sub = {"id": f"urn:ngsi-ld:Subscription:{uuid.uuid4()}", "type": "Subscription",
               "entities": [{"type": "ThreePhaseAcMeasurement"}],
               "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}
        _refused(client.post(f"{BASE}/entityOperations/upsert", json=[_entity(2, "extra")], headers=LINK),
                 "read-only")
        _refused(client.post(f"{BASE}/subscriptions", json=sub, headers=LINK), "read-only")
        _refused(client.delete(f"{BASE}/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:m1"), "read-only")
        assert client.get(f"{BASE}/entities/urn:ngsi-ld:ThreePhaseAcMeasurement:m1", headers=LINK).status_code == 200
        store._db.execute("PRAGMA query_only=0")
        assert client.post(f"{BASE}/entityOperations/upsert", json=[_entity(2, "extra")], headers=LINK).status_code == 201
        assert client.post(f"{BASE}/subscriptions", json=sub, headers=LINK).status_code == 201
    assert _integrity(data_dir) == "ok"
