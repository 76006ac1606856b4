"""Tenants (NGSILD-Tenant / Fiware-Service) and state surviving a broker restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from twin_service.broker import DATABASE_NAME, Store

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, assert_problem, measurement

ENTITY_URL = f"{BASE}/entities/{MEASUREMENT_ID}"
UPSERT = f"{BASE}/entityOperations/upsert"


def test_tenants_are_isolated_and_created_implicitly(client: TestClient) -> None:
    alpha, beta = {**ENERGY_LINK, "NGSILD-Tenant": "alpha"}, {**ENERGY_LINK, "NGSILD-Tenant": "beta"}
    client.post(f"{BASE}/entities", json=measurement(voltage_v=230.0), headers=alpha).raise_for_status()
    for tenant_headers in (beta, {}):
        assert_problem(client.get(ENTITY_URL, headers=tenant_headers),
                       404, "NonexistentTenant" if tenant_headers else "ResourceNotFound")

    # beta comes to exist through an upsert; the same id then holds different data per tenant.
    assert client.post(UPSERT, json=[measurement(voltage_v=240.0)], headers=beta).status_code == 201
    assert client.get(ENTITY_URL, headers=alpha).json()["phaseVoltage"]["value"]["L1"] == 230.0
    assert client.get(ENTITY_URL, headers=beta).json()["phaseVoltage"]["value"]["L1"] == 240.0
    assert client.delete(ENTITY_URL, headers=alpha).status_code == 204
    assert client.get(ENTITY_URL, headers=beta).status_code == 200


def test_unknown_tenant_reads_are_404_nonexistent_tenant(client: TestClient) -> None:
    ghost = {**ENERGY_LINK, "NGSILD-Tenant": "ghost"}
    assert_problem(client.get(ENTITY_URL, headers=ghost), 404, "NonexistentTenant")
    assert_problem(client.get(f"{BASE}/entities", params={"type": "ThreePhaseAcMeasurement"}, headers=ghost),
                   404, "NonexistentTenant")
    assert_problem(client.delete(ENTITY_URL, headers=ghost), 404, "NonexistentTenant")
    # The default tenant always exists: an empty answer, not an error.
    assert client.get(f"{BASE}/entities", params={"type": "ThreePhaseAcMeasurement"}).json() == []


def test_fiware_service_is_a_lower_cased_synonym(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json=measurement(), headers={**ENERGY_LINK, "Fiware-Service": "Site_A"})
    assert client.get(ENTITY_URL, headers={"NGSILD-Tenant": "site_a"}).status_code == 200
    assert client.get(ENTITY_URL, headers={"NGSILD-Tenant": "SITE_A", "Fiware-Service": "site_a"}).status_code == 200
    assert_problem(client.get(ENTITY_URL, headers={"NGSILD-Tenant": "site_a", "Fiware-Service": "site_b"}),
                   400, "BadRequestData")
    assert_problem(client.get(ENTITY_URL, headers={"NGSILD-Tenant": "bad tenant!"}), 400, "BadRequestData")


def test_state_and_history_survive_restart(make_client: Callable[[], TestClient], data_dir: Path) -> None:
    first = make_client()
    tenant = {**ENERGY_LINK, "NGSILD-Tenant": "site_a"}
    first.post(f"{BASE}/entities", json=measurement(), headers=tenant).raise_for_status()
    first.post(UPSERT, params={"options": "update"}, headers=tenant,
               json=[measurement(voltage_v=231.0, observed_at="2026-11-24T10:00:01.000Z")]).raise_for_status()
    before = first.get(ENTITY_URL, params={"options": "sysAttrs"}, headers=tenant).json()
    first.__exit__(None, None, None)  # lifespan shutdown closes the database

    restarted = make_client()
    assert restarted.get(ENTITY_URL, params={"options": "sysAttrs"}, headers=tenant).json() == before
    assert Store(data_dir).tenants() == ["site_a"]
    assert len(Store(data_dir).history("site_a", MEASUREMENT_ID)) == 6  # 3 attributes x (create + update)
    with sqlite3.connect(data_dir / DATABASE_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_history_of_the_first_layout_is_migrated(data_dir: Path, make_client: Callable[[], TestClient]) -> None:
    """A database written by the broker's first version (one wide attribute_instances table) keeps its history."""
    data_dir.mkdir(parents=True)
    energy = "https://smartdatamodels.org/dataModel.Energy/"
    with sqlite3.connect(data_dir / DATABASE_NAME) as db:
        db.executescript("""
            CREATE TABLE attribute_instances (instance_id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL,
                entity_id TEXT NOT NULL, entity_type TEXT NOT NULL, attr_name TEXT, dataset_id TEXT,
                observed_at TEXT, recorded_at TEXT NOT NULL, operation TEXT NOT NULL, attribute TEXT);
            CREATE TABLE tenants (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
            INSERT INTO tenants VALUES ('site_a', '2026-11-24T09:00:00.000Z');
        """)
        for n, value in enumerate((50.0, 50.1)):
            at = f"2026-11-24T10:00:0{n}.000Z"
            db.execute("INSERT INTO attribute_instances (tenant, entity_id, entity_type, attr_name, observed_at, "
                       "recorded_at, operation, attribute) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       ("site_a", MEASUREMENT_ID, energy + "ThreePhaseAcMeasurement", energy + "frequency", at, at,
                        "update", f'{{"type": "Property", "value": {value}, "observedAt": "{at}"}}'))
    client = make_client()
    body = client.get(f"{BASE}/temporal/entities/{MEASUREMENT_ID}", params={"options": "temporalValues"},
                      headers={**ENERGY_LINK, "NGSILD-Tenant": "site_a"}).json()
    assert body["frequency"]["values"] == [[50.0, "2026-11-24T10:00:00.000Z"], [50.1, "2026-11-24T10:00:01.000Z"]]
    assert body["type"] == "ThreePhaseAcMeasurement"
