"""One embedded broker for the forecasting tests (each test writes its own tenant): a broker start costs 1-6 s
on the shared machine, once per package instead of once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker_process import broker_process


@pytest.fixture(scope="package")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with broker_process(tmp_path_factory.mktemp("broker")) as url:
        yield url
