"""A real PostgreSQL per test session, skipped with the reason when the server or psycopg is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.grafana.postgres import PostgresServer, postgres_bin, start_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg", reason="psycopg (PyPI) is needed to talk to PostgreSQL")
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server not installed (make system-deps installs Debian `postgresql`)")
    server = start_postgres()
    yield server
    server.stop()
