"""The NGSI-LD clients: `NgsiLdClient` (sync) and `AsyncNgsiLdClient` (async), one tenant of one broker each.

Both faces share every method: each builds its operation with `NgsiLdRequests` and hands it to `_run`, which
the sync face drives to a result and the async face to an awaitable of that result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from datamodels.measures import measurement_id

from ._attributes import instances
from ._auth import TokenProvider
from ._errors import broker_error
from ._http import DEFAULT_RETRY, AsyncBase, Call, RetryPolicy, SyncBase
from ._models import BatchResult, Measurement, SubscriptionOutcome
from ._requests import EntityQuery, NgsiLdRequests, TemporalQuery

DEFAULT_BATCH = 100  # entities per batch request: under Orion-LD's default request size limits


def _broker_error(response: httpx.Response, call: Call) -> Exception:
    return broker_error(response, temporal=call.temporal)


class _NgsiLdApi:
    """The operations; `_run` (from the face) turns each into a result or an awaitable of it."""

    _face: Any  # SyncBase or AsyncBase: the class that sends
    _run: Any  # SyncBase._run or AsyncBase._run

    def __init__(self, base_url: str, tenant: str | None = None, *, context: str | None = None,
                 timeout: float = 15.0, retry: RetryPolicy = DEFAULT_RETRY, page_size: int = 1000,
                 batch_size: int = DEFAULT_BATCH, max_pages: int = 10_000,
                 transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
                 temporal_path: str | None = None, token: str | TokenProvider | None = None) -> None:
        """`temporal_path` moves the temporal API (default /ngsi-ld/v1/temporal): "/temporal" for Mintaka.

        `token`: a bearer token, or a provider of one (a callable, e.g. `TokenFile`), for a broker behind an
        access layer (PEP); None: the environment's token for this origin, if any (fiware_client/_auth.py).
        """
        self._face.__init__(self, base_url, {}, timeout=timeout, retry=retry, error=_broker_error,
                            transport=transport, token=token)
        self._ops = NgsiLdRequests(tenant, context, page_size, batch_size)
        if temporal_path is not None:
            self._ops.temporal_path = temporal_path.rstrip("/")
        self._max_pages = max_pages

    @property
    def tenant(self) -> str | None:
        return self._ops.tenant

    # -- entities -------------------------------------------------------------------------------------------
    def get_entity(self, entity_id: str, *, attrs: Sequence[str] | None = None, key_values: bool = False,
                   context: str | None = None) -> dict[str, Any]:
        """One entity (normalized unless `key_values`); NotFound when the broker has none with that id."""
        return self._run(self._ops.get_entity(entity_id, attrs, key_values, context))

    def query_entities(self, *, type: str | None = None, q: str | None = None, attrs: Sequence[str] | None = None,
                       ids: Sequence[str] | None = None, id_pattern: str | None = None, key_values: bool = False,
                       context: str | None = None) -> list[dict[str, Any]]:
        """Every matching entity, across as many pages as the broker needs (limit/offset + Results-Count)."""
        return self._run(self._ops.query_entities(EntityQuery(type, q, attrs, ids, id_pattern, key_values,
                                                              context)))

    def upsert_entities(self, entities: Iterable[Mapping[str, Any]], *, update: bool = False,
                        context: str | None = None) -> BatchResult:
        """Batch upsert (replace the attributes given; `update=True` merges them), chunked; BatchError on refusals.

        An entity without `@context` is sent with the one datamodels gives its type (or the client's).
        """
        return self._run(self._ops.upsert_entities(entities, update, context))

    def update_attrs(self, entity_id: str, attrs: Mapping[str, Any], *, context: str | None = None) -> None:
        """Update existing attributes of one entity (normalized fragments: `{"name": {"type": ..., ...}}`)."""
        return self._run(self._ops.update_attrs(entity_id, attrs, context))

    def delete_entity(self, entity_id: str, *, missing_ok: bool = False) -> bool:
        """Delete one entity; with `missing_ok`, False instead of NotFound when there was none."""
        return self._run(self._ops.delete_entity(entity_id, missing_ok))

    def get_measurement(self, device_id: str) -> Measurement:
        """A meter's ThreePhaseAcMeasurement, typed; NotFound when the meter never reported."""
        return self._then(self.get_entity(measurement_id(device_id)), Measurement.from_entity)

    # -- temporal -------------------------------------------------------------------------------------------
    def temporal_entity(self, entity_id: str, *, timerel: str | None = None, time_at: datetime | None = None,
                        end_time_at: datetime | None = None, attrs: Sequence[str] | None = None,
                        options: Sequence[str] = (), last_n: int | None = None,
                        aggr_methods: Sequence[str] | None = None, aggr_period: str | None = None,
                        context: str | None = None) -> dict[str, Any]:
        """One entity's history; partial answers (206) are followed until the interval is covered, then merged.

        TemporalApiMissing when the broker serves no temporal API, NotFound when it has no such entity.
        """
        query = TemporalQuery(timerel, time_at, end_time_at, attrs, tuple(options), last_n, aggr_methods,
                              aggr_period, None, None, context)
        return self._run(self._ops.temporal_entity(entity_id, query, self._max_pages))

    def query_temporal(self, *, type: str, timerel: str | None = None, time_at: datetime | None = None,
                       end_time_at: datetime | None = None, attrs: Sequence[str] | None = None,
                       options: Sequence[str] = (), last_n: int | None = None,
                       aggr_methods: Sequence[str] | None = None, aggr_period: str | None = None,
                       q: str | None = None, context: str | None = None) -> list[dict[str, Any]]:
        """History of every entity of a type (GET /temporal/entities), across limit/offset pages."""
        query = TemporalQuery(timerel, time_at, end_time_at, attrs, tuple(options), last_n, aggr_methods,
                              aggr_period, type, q, context)
        return self._run(self._ops.query_temporal(query))

    def attribute_history(self, entity_id: str, attrs: Sequence[str], start: datetime,
                          end: datetime) -> dict[str, list[tuple[datetime, Any]]]:
        """Every instance of `attrs` observed in [start, end], as (time, value) per attribute, in time order."""
        entity = self.temporal_entity(entity_id, timerel="between", time_at=start, end_time_at=end, attrs=attrs,
                                      options=("temporalValues",))
        return self._then(entity, lambda found: {name: instances(found, name) for name in attrs})

    # -- subscriptions --------------------------------------------------------------------------------------
    def ensure_subscription(self, body: Mapping[str, Any], *, context: str | None = None) -> SubscriptionOutcome:
        """Idempotent: create the subscription `body` describes (its `id` is required), keep it when the broker
        already holds it with the same meaningful fields, replace it when one differs (see
        `subscription_differences`)."""
        return self._run(self._ops.ensure_subscription(body, context))

    def get_subscription(self, subscription_id: str, *, context: str | None = None) -> dict[str, Any]:
        return self._run(self._ops.get_subscription(subscription_id, context))

    def query_subscriptions(self, *, context: str | None = None) -> list[dict[str, Any]]:
        """Every subscription of the tenant (types and attributes compacted with `context`)."""
        return self._run(self._ops.query_subscriptions(context))

    def delete_subscription(self, subscription_id: str, *, missing_ok: bool = True) -> bool:
        """Delete a subscription; False when there was none (NotFound instead when `missing_ok=False`)."""
        return self._run(self._ops.delete_subscription(subscription_id, missing_ok))

    def _then(self, result: Any, convert: Any) -> Any:
        return convert(result)


class NgsiLdClient(_NgsiLdApi, SyncBase):
    """A synchronous NGSI-LD client for one tenant of one broker (Orion-LD or the embedded one).

    `context` fixes the user @context of every request; left None, each request uses the context datamodels
    gives the entity type it names (by `type=` or by the type in the entity's URN), so ThreePhaseAcMeasurement,
    Device and Anomaly each read with their own Smart Data Models context.
    """

    _face = SyncBase

    def iter_entities(self, *, type: str | None = None, q: str | None = None, attrs: Sequence[str] | None = None,
                      key_values: bool = False, context: str | None = None) -> Iterator[dict[str, Any]]:
        """Matching entities one by one, fetching the next page only when the caller gets there."""
        query = EntityQuery(type, q, attrs, None, None, key_values, context)
        offset: int | None = 0
        while offset is not None:
            page, offset = self._run(self._ops.entity_page(query, offset))
            yield from page


class AsyncNgsiLdClient(_NgsiLdApi, AsyncBase):
    """The same client for asyncio: every method of `NgsiLdClient`, returning an awaitable of its result."""

    _face = AsyncBase

    async def _then(self, result: Any, convert: Any) -> Any:
        return convert(await result)

    async def iter_entities(self, *, type: str | None = None, q: str | None = None,
                            attrs: Sequence[str] | None = None, key_values: bool = False,
                            context: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Matching entities one by one, fetching the next page only when the caller gets there."""
        query = EntityQuery(type, q, attrs, None, None, key_values, context)
        offset: int | None = 0
        while offset is not None:
            page, offset = await self._run(self._ops.entity_page(query, offset))
            for entity in page:
                yield entity


__all__ = ["AsyncNgsiLdClient", "NgsiLdClient"]
