"""The write path's entity cache (twin_service/broker/_entity_cache.py) never answers with a state that was not
committed, nor with one a later write replaced: a refused write leaves nothing in it, and a write made outside
the HTTP write helper (no commit announcement) evicts the entry instead of leaving it stale."""

from __future__ import annotations

import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from datamodels.context import ENERGY_CONTEXT, link_header
from twin_service.broker import create_app
from twin_service.broker._operations import Tx, delete_entity

BASE = "/ngsi-ld/v1"
LINK = {"Link": link_header(ENERGY_CONTEXT)}
ID = "urn:ngsi-ld:ThreePhaseAcMeasurement:cache-1"


def _fragment(attr: str, value: float) -> list[dict]:
    return [{"id": ID, "type": "ThreePhaseAcMeasurement",
             attr: {"type": "Property", "value": value, "observedAt": "2026-12-01T10:00:00Z"}}]


def _upsert(client: TestClient, attr: str, value: float) -> int:
    return client.post(f"{BASE}/entityOperations/upsert", params={"options": "update"},
                       json=_fragment(attr, value), headers=LINK).status_code


def test_a_refused_write_leaves_no_trace_for_the_next_upsert(tmp_path: Path) -> None:
    app = create_app(tmp_path / "var")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert _upsert(client, "frequency", 50.0) == 201
        assert _upsert(client, "totalActivePower", 1200.0) == 204  # starts from the cached state
        store = app.state.broker.store
        store._db.execute("PRAGMA query_only=1")
        assert _upsert(client, "totalReactivePower", 7.0) == 503  # rolled back
        store._db.execute("PRAGMA query_only=0")
        assert _upsert(client, "totalApparentPower", 1300.0) == 204
        got = client.get(f"{BASE}/entities/{ID}", headers=LINK).json()
        assert got["frequency"]["value"] == 50.0 and got["totalActivePower"]["value"] == 1200.0
        assert got["totalApparentPower"]["value"] == 1300.0
        assert "totalReactivePower" not in got


def test_a_write_outside_the_write_helper_evicts_the_cached_entity(tmp_path: Path) -> None:
    app = create_app(tmp_path / "var")
    with TestClient(app) as client:
        assert _upsert(client, "frequency", 50.0) == 201
        assert _upsert(client, "totalActivePower", 1200.0) == 204
        store = app.state.broker.store
        with store.transaction() as tx_store:  # e.g. a maintenance job using the operations directly
            delete_entity(Tx(tx_store), "", ID)
        # the cache knew the entity; the upsert must see it is gone and create it with the new attribute only
        assert _upsert(client, "totalApparentPower", 1300.0) == 201
        got = client.get(f"{BASE}/entities/{ID}", headers=LINK).json()
        assert "frequency" not in got and "totalActivePower" not in got
        assert got["totalApparentPower"]["value"] == 1300.0
