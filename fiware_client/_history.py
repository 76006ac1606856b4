"""One history interface, two backends: the NGSI-LD temporal API or QuantumLeap, chosen by configuration.

Every history reader in energytwin (the page's "last hour", community accounting, the power-quality report,
forecasts) asks the questions of `HistoryReader`. `NgsiLdClient` answers them from the NGSI-LD temporal API (the
embedded broker, or Orion-LD with TRoE + Mintaka); `QuantumLeapClient` from QuantumLeap's own API, translated into
the same NGSI-LD temporal representation. The reader never knows which one it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from ._ngsi_ld import AsyncNgsiLdClient, NgsiLdClient
from ._quantumleap import AsyncQuantumLeapClient, QuantumLeapClient

HistoryBackend = Literal["ngsi-ld", "mintaka", "quantumleap"]
HISTORY_BACKENDS: tuple[str, ...] = ("ngsi-ld", "mintaka", "quantumleap")


class HistoryReader(Protocol):
    """The history questions, answered in NGSI-LD's temporal representation (ETSI GS CIM 009 §4.5.8-§4.5.9)."""

    def temporal_entity(self, entity_id: str, *, timerel: str | None = None, time_at: datetime | None = None,
                        end_time_at: datetime | None = None, attrs: Sequence[str] | None = None,
                        options: Sequence[str] = (), last_n: int | None = None,
                        aggr_methods: Sequence[str] | None = None, aggr_period: str | None = None,
                        context: str | None = None) -> dict[str, Any]: ...

    def query_temporal(self, *, type: str, timerel: str | None = None, time_at: datetime | None = None,
                       end_time_at: datetime | None = None, attrs: Sequence[str] | None = None,
                       options: Sequence[str] = (), last_n: int | None = None,
                       aggr_methods: Sequence[str] | None = None, aggr_period: str | None = None,
                       q: str | None = None, context: str | None = None) -> list[dict[str, Any]]: ...

    def attribute_history(self, entity_id: str, attrs: Sequence[str], start: datetime,
                          end: datetime) -> dict[str, list[tuple[datetime, Any]]]: ...


def _check(backend: str, history_url: str | None) -> None:
    if backend not in HISTORY_BACKENDS:
        raise ValueError(f"history backend must be one of {', '.join(HISTORY_BACKENDS)}, not {backend!r}")
    if backend != "ngsi-ld" and not history_url:
        example = "http://quantumleap:8668" if backend == "quantumleap" else "http://mintaka:9090"
        raise ValueError(f"the {backend} history backend needs its URL (e.g. {example})")


def history_reader(backend: str, *, broker_url: str, tenant: str | None, history_url: str | None = None,
                   service_path: str = "/", timeout: float = 30.0) -> NgsiLdClient | QuantumLeapClient:
    """A synchronous `HistoryReader` for `backend`: "ngsi-ld" (the broker's own temporal API: the embedded
    broker), "mintaka" (Orion-LD's TRoE history, served by Mintaka at `history_url` under /temporal) or
    "quantumleap" (QuantumLeap at `history_url`). The tenant is QuantumLeap's Fiware-Service (the IoT Agent's
    fiware-service, which QuantumLeap receives from the broker's notifications) and Mintaka's NGSILD-Tenant."""
    _check(backend, history_url)
    if backend == "quantumleap":
        assert history_url is not None
        return QuantumLeapClient(history_url, tenant, service_path, timeout=timeout)
    if backend == "mintaka":
        assert history_url is not None
        return NgsiLdClient(history_url, tenant, timeout=timeout, temporal_path="/temporal")
    return NgsiLdClient(broker_url, tenant, timeout=timeout)


def async_history_reader(backend: str, *, broker_url: str, tenant: str | None, history_url: str | None = None,
                         service_path: str = "/",
                         timeout: float = 30.0) -> AsyncNgsiLdClient | AsyncQuantumLeapClient:
    """The asyncio face of `history_reader`."""
    _check(backend, history_url)
    if backend == "quantumleap":
        assert history_url is not None
        return AsyncQuantumLeapClient(history_url, tenant, service_path, timeout=timeout)
    if backend == "mintaka":
        assert history_url is not None
        return AsyncNgsiLdClient(history_url, tenant, timeout=timeout, temporal_path="/temporal")
    return AsyncNgsiLdClient(broker_url, tenant, timeout=timeout)
