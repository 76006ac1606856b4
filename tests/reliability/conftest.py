"""Reliability tests reuse the broker's fixtures (the app in-process over a data directory)."""

from tests.broker.conftest import client, data_dir, make_client, receiver  # noqa: F401
