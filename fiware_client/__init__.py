"""fiware_client: one typed client per FIWARE service, for every part of energytwin that talks to one.

    from fiware_client import NgsiLdClient, NotFound

    with NgsiLdClient("http://127.0.0.1:1026", tenant="energy") as broker:
        broker.upsert_entities([entity])                      # batch, chunked, @context from datamodels
        meters = broker.query_entities(type="ThreePhaseAcMeasurement", attrs=["totalActivePower"])
        history = broker.attribute_history(entity_id, ["totalActiveEnergyImport"], start, end)
        broker.ensure_subscription(body)                      # created / unchanged / replaced

`AsyncNgsiLdClient` has the same methods for asyncio; `IotAgentClient` speaks the IoT Agent north API. Errors
are one hierarchy: `FiwareError` > `BrokerError` (status + ProblemDetails) > `NotFound`, `NonexistentTenant`,
... and `IotAgentError` (name + message). Behind an access layer, `token=` takes a bearer token or a provider of
one (`TokenFile`), refreshed before it expires (_auth.py). docs/architecture.md shows where the client sits.
"""

from ._attributes import attribute_value, instances, observed_at, parse_time, unwrap
from ._auth import BearerAuth, TokenFile, TokenProvider, TokenUnavailable, token_expiry
from ._errors import (
    BadRequest,
    BatchError,
    BrokerError,
    BrokerUnavailable,
    Conflict,
    ContextNotAvailable,
    FiwareError,
    InternalError,
    IotAgentError,
    NonexistentTenant,
    NotFound,
    OperationNotSupported,
    TemporalApiMissing,
    TooManyResults,
)
from ._history import HISTORY_BACKENDS, HistoryReader, async_history_reader, history_reader
from ._http import RetryPolicy
from ._iot_agent import IotAgentClient
from ._models import BatchResult, Measurement, SubscriptionOutcome
from ._ngsi_ld import AsyncNgsiLdClient, NgsiLdClient
from ._quantumleap import AsyncQuantumLeapClient, QuantumLeapClient
from ._requests import subscription_differences, type_of

__all__ = [
    "HISTORY_BACKENDS",
    "AsyncNgsiLdClient",
    "AsyncQuantumLeapClient",
    "BadRequest",
    "BatchError",
    "BatchResult",
    "BearerAuth",
    "BrokerError",
    "BrokerUnavailable",
    "Conflict",
    "ContextNotAvailable",
    "FiwareError",
    "HistoryReader",
    "InternalError",
    "IotAgentClient",
    "IotAgentError",
    "Measurement",
    "NgsiLdClient",
    "NonexistentTenant",
    "NotFound",
    "OperationNotSupported",
    "QuantumLeapClient",
    "RetryPolicy",
    "SubscriptionOutcome",
    "TemporalApiMissing",
    "TokenFile",
    "TokenProvider",
    "TokenUnavailable",
    "TooManyResults",
    "async_history_reader",
    "attribute_value",
    "history_reader",
    "instances",
    "observed_at",
    "parse_time",
    "subscription_differences",
    "token_expiry",
    "type_of",
    "unwrap",
]
