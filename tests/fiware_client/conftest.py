"""The client against the real embedded broker on uvicorn (the broker tests' fixture) and the embedded agent."""

from __future__ import annotations

from tests.broker.conftest import LiveBroker, Receiver, live_broker, receiver

__all__ = ["LiveBroker", "Receiver", "live_broker", "receiver"]
