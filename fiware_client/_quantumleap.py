"""QuantumLeap's history API (`/v2/entities/{id}`, `/v2/types/{type}/attrs/{attr}`), answered in NGSI-LD's shape.

QuantumLeap keeps the production stack's history in CrateDB (or TimescaleDB) and speaks its own API, not the NGSI-LD
temporal API (QuantumLeap API spec, `specification/quantumleap.yml` of orchestracities/ngsi-timeseries-api:
parameters `type`, `attrs`, `fromDate`/`toDate` (inclusive), `lastN`, `limit`/`offset` (page size 10,000 by
default), `aggrMethod` (count|sum|avg|min|max) with `aggrPeriod` (year|month|day|hour|minute|second); tenant in
`Fiware-Service`/`Fiware-ServicePath`; "No records were found" as 404 up to 1.0.0 and as an empty 200 after).

This client answers with the NGSI-LD temporal representation (ETSI GS CIM 009 §4.5.8 temporalValues:
`{"type": "Property", "values": [[value, time], ...]}`, §4.5.19 aggregatedValues: `{"avg": [[value, start, end],
...]}`), so every history reader in energytwin works on either backend through one interface
(`fiware_client.HistoryReader`). Aggregation periods QuantumLeap has (PT1S, PT1M, PT1H, P1D) are asked of it;
others (the page's 10 s buckets), and structured values (per-phase `{"L1": …}` objects, which QuantumLeap does not
aggregate), are aggregated here from the raw series with the same bucket rule as the NGSI-LD broker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from urllib.parse import quote

import httpx

from ._attributes import iso, parse_time
from ._errors import BadRequest, BrokerError, BrokerUnavailable, NotFound

PAGE_SIZE = 10_000  # QuantumLeap's DEFAULT_LIMIT, also the largest page it serves
_QL_PERIODS = {"PT1S": "second", "PT1M": "minute", "PT1H": "hour", "P1D": "day"}
_METHODS = ("count", "sum", "avg", "min", "max")
_UNIT_S = {"S": 1, "M": 60, "H": 3600}


def period_seconds(period: str) -> float:
    """Seconds of an ISO 8601 duration of days/hours/minutes/seconds (PT10S, PT15M, PT1H, P1D, P1DT12H)."""
    text = period.upper()
    if not text.startswith("P") or text == "P":
        raise BadRequest(f"aggregation period {period!r} is not an ISO 8601 duration (PT10S, PT1H, P1D)")
    days_part, _, time_part = text[1:].partition("T")
    total = 0.0
    try:
        if days_part:
            if not days_part.endswith("D"):
                raise ValueError
            total += float(days_part[:-1]) * 86400
        number = ""
        for char in time_part:
            if char.isdigit() or char == ".":
                number += char
            elif char in _UNIT_S and number:
                total += float(number) * _UNIT_S[char]
                number = ""
            else:
                raise ValueError
        if number:
            raise ValueError
    except ValueError:
        raise BadRequest(f"aggregation period {period!r} is not an ISO 8601 duration of D/H/M/S") from None
    if total <= 0:
        raise BadRequest(f"aggregation period {period!r} must be longer than zero")
    return total


@dataclass(frozen=True)
class _Window:
    start: datetime | None
    end: datetime | None


def _window(timerel: str | None, time_at: datetime | None, end_time_at: datetime | None) -> _Window:
    if timerel is None:
        return _Window(None, None)
    if time_at is None:
        raise BadRequest(f"timerel={timerel} needs timeAt")
    if timerel == "after":
        return _Window(time_at, None)
    if timerel == "before":
        return _Window(None, time_at)
    if timerel == "between":
        if end_time_at is None:
            raise BadRequest("timerel=between needs endTimeAt")
        return _Window(time_at, end_time_at)
    raise BadRequest(f"timerel must be before, after or between, not {timerel!r}")


def _ql_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def _ngsi_time(text: str | float) -> str:
    """QuantumLeap's index (ISO 8601 UTC, naive or with an offset, or epoch milliseconds) as an NGSI-LD DateTime."""
    if isinstance(text, (int, float)):
        moment = datetime.fromtimestamp(text / 1000, UTC)
    else:
        moment = parse_time(text)
    return iso(moment)


def _bucket(time_text: str, step_s: float) -> tuple[str, str]:
    """The UTC-aligned bucket [start, end) a QuantumLeap aggregate index falls in."""
    seconds = parse_time(time_text).timestamp()
    start = datetime.fromtimestamp(seconds - seconds % step_s, UTC)
    return iso(start), iso(start + timedelta(seconds=step_s))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _aggregate(method: str, values: list[float]) -> float | int | None:
    if method == "count":
        return len(values)
    if not values:
        return None
    if method == "sum":
        return sum(values)
    if method == "avg":
        return sum(values) / len(values)
    return min(values) if method == "min" else max(values)


def aggregate_series(samples: Sequence[tuple[str, Any]], methods: Sequence[str], period_s: float,
                     origin: datetime) -> dict[str, list[list[Any]]]:
    """NGSI-LD aggregatedValues from raw (time, value) samples: buckets of `period_s` from `origin`.

    Numbers aggregate as they are; objects (per-phase values) aggregate key by key, so a bucket's value is
    `{"L1": …, "L2": …}` as the NGSI-LD broker answers for structured values.
    """
    buckets: dict[int, list[Any]] = {}
    for time_text, value in samples:
        index = int((parse_time(time_text) - origin).total_seconds() // period_s)
        buckets.setdefault(index, []).append(value)
    out: dict[str, list[list[Any]]] = {method: [] for method in methods}
    for index in sorted(buckets):
        start = origin + timedelta(seconds=index * period_s)
        end = start + timedelta(seconds=period_s)
        values = buckets[index]
        for method in methods:
            numbers = [v for v in values if _is_number(v)]
            if numbers or not any(isinstance(v, dict) for v in values):
                result: Any = _aggregate(method, [float(v) for v in numbers])
            else:
                keys = sorted({k for v in values if isinstance(v, dict) for k in v})
                result = {k: _aggregate(method, [float(v[k]) for v in values
                                                 if isinstance(v, dict) and _is_number(v.get(k))]) for k in keys}
            if result is not None:
                out[method].append([result, iso(start), iso(end)])
    return out


class QuantumLeapRequests:
    """Sans-IO: the requests a history question takes, and the NGSI-LD answer built from QuantumLeap's pages."""

    def __init__(self, service: str | None, service_path: str = "/") -> None:
        self.headers: dict[str, str] = {"Accept": "application/json", "Fiware-ServicePath": service_path}
        if service:
            self.headers["Fiware-Service"] = service

    @staticmethod
    def params(window: _Window, *, entity_type: str | None = None, attrs: Sequence[str] | None = None,
               last_n: int | None = None, aggr_method: str | None = None, aggr_period: str | None = None,
               offset: int = 0, limit: int = PAGE_SIZE) -> dict[str, str]:
        out: dict[str, str] = {"limit": str(limit), "offset": str(offset)}
        if entity_type:
            out["type"] = entity_type
        if attrs:
            out["attrs"] = ",".join(attrs)
        if window.start is not None:
            out["fromDate"] = _ql_time(window.start)
        if window.end is not None:
            out["toDate"] = _ql_time(window.end)
        if last_n is not None:
            out["lastN"] = str(last_n)
        if aggr_method:
            out["aggrMethod"] = aggr_method
            if aggr_period:
                out["aggrPeriod"] = aggr_period
        return out

    @staticmethod
    def error(response: httpx.Response) -> BrokerError | None:
        """None for an answer with data (or QuantumLeap's 'no records' 404), else the error to raise."""
        if response.status_code < 400:
            return None
        try:
            body = response.json()
        except ValueError:
            body = {}
        detail = body.get("description") if isinstance(body, dict) else None
        message = f"QuantumLeap {response.request.method} {response.request.url.path}: {response.status_code} " \
                  f"{detail or response.text[:200]}"
        if response.status_code == 404:
            return NotFound(message, status=404, request=response.request)
        if response.status_code in (400, 422):
            return BadRequest(message, status=response.status_code, request=response.request)
        if response.status_code in (502, 503, 504):
            return BrokerUnavailable(message, status=response.status_code, request=response.request)
        return BrokerError(message, status=response.status_code, request=response.request)

    @staticmethod
    def entity_attributes(body: Any) -> dict[str, list[tuple[str, Any]]]:
        """`GET /v2/entities/{id}` page -> attribute -> [(NGSI-LD time, value)]."""
        if isinstance(body, list):  # 1.0.1 answers [] when empty
            return {}
        index = body.get("index") or []
        out: dict[str, list[tuple[str, Any]]] = {}
        for attribute in body.get("attributes") or body.get("values") or []:
            values = attribute.get("values") or []
            out[attribute["attrName"]] = [(_ngsi_time(t), v) for t, v in zip(index, values, strict=False)
                                          if v is not None]
        return out

    @staticmethod
    def type_attribute(body: Any) -> dict[str, list[tuple[str, Any]]]:
        """`GET /v2/types/{type}/attrs/{attr}` page -> entity id -> [(NGSI-LD time, value)]."""
        if isinstance(body, list):
            return {}
        return {entity.get("entityId") or entity["id"]: [
            (_ngsi_time(t), v) for t, v in zip(entity.get("index") or [], entity.get("values") or [], strict=False)
            if v is not None] for entity in body.get("entities") or []}


def _temporal_values(series: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    return {"type": "Property", "values": [[value, time] for time, value in series]}


def _check_methods(methods: Sequence[str]) -> None:
    bad = [m for m in methods if m not in _METHODS]
    if bad:
        raise BadRequest(f"QuantumLeap aggregates with {', '.join(_METHODS)}; not {', '.join(bad)}")


class _QuantumLeapApi:
    """The history questions energytwin asks, on QuantumLeap; subclasses only send requests."""

    def __init__(self, base_url: str, service: str | None = None, service_path: str = "/", *,
                 timeout: float = 30.0, page_size: int = PAGE_SIZE, max_pages: int = 1000) -> None:
        self.base_url = base_url.rstrip("/")
        self._requests = QuantumLeapRequests(service, service_path)
        self._page_size = page_size
        self._max_pages = max_pages

    # Each public method is written once as a generator of (path, params) requests answered with parsed bodies
    # (or None for "no records"); the sync and async faces drive it.
    def _entity_pages(self, entity_id: str, window: _Window, attrs: Sequence[str] | None, last_n: int | None,
                      entity_type: str | None, aggr_method: str | None = None, aggr_period: str | None = None):
        merged: dict[str, list[tuple[str, Any]]] = {}
        for page in range(self._max_pages):
            params = self._requests.params(window, entity_type=entity_type, attrs=attrs, last_n=last_n,
                                           aggr_method=aggr_method, aggr_period=aggr_period,
                                           offset=page * self._page_size, limit=self._page_size)
            body = yield f"/v2/entities/{quote(entity_id, safe=':')}", params
            if body is None:
                break
            found = QuantumLeapRequests.entity_attributes(body)
            for name, series in found.items():
                merged.setdefault(name, []).extend(series)
            if max((len(s) for s in found.values()), default=0) < self._page_size or last_n is not None:
                break
        return merged

    def _temporal_entity(self, entity_id: str, *, timerel: str | None, time_at: datetime | None,
                         end_time_at: datetime | None, attrs: Sequence[str] | None, options: Sequence[str],
                         last_n: int | None, aggr_methods: Sequence[str] | None, aggr_period: str | None,
                         entity_type: str | None):
        window = _window(timerel, time_at, end_time_at)
        entity: dict[str, Any] = {"id": entity_id}
        if entity_type:
            entity["type"] = entity_type
        if "aggregatedValues" not in options:
            series = yield from self._entity_pages(entity_id, window, attrs, last_n, entity_type)
            if not series:
                raise NotFound(f"QuantumLeap holds no history of {entity_id}", status=404)
            for name, samples in series.items():
                entity[name] = _temporal_values(samples)
            return entity
        methods = tuple(aggr_methods or ("avg",))
        _check_methods(methods)
        period = aggr_period or "P1D"
        raw = yield from self._entity_pages(entity_id, window, attrs, last_n, entity_type)
        if not raw:
            raise NotFound(f"QuantumLeap holds no history of {entity_id}", status=404)
        origin = window.start or min(parse_time(s[0][0]) for s in raw.values() if s)
        for name, samples in raw.items():
            numeric = all(_is_number(v) for _, v in samples)
            step_s = period_seconds(period)
            if numeric and period in _QL_PERIODS and window.start is not None \
                    and window.start.timestamp() % step_s == 0:
                # QuantumLeap's own aggregation (one request per method) buckets at calendar boundaries, which are
                # the NGSI-LD buckets when the window starts on one; its index is "a moment in the bucket".
                node: dict[str, Any] = {"type": "Property"}
                for method in methods:
                    done = yield from self._entity_pages(entity_id, window, (name,), None, entity_type, method,
                                                         _QL_PERIODS[period])
                    node[method] = [[value, *_bucket(time, step_s)] for time, value in done.get(name, [])]
                entity[name] = node
            else:
                entity[name] = {"type": "Property",
                                **aggregate_series(samples, methods, period_seconds(period), origin)}
        return entity

    def _query_temporal(self, *, type: str, timerel: str | None, time_at: datetime | None,
                        end_time_at: datetime | None, attrs: Sequence[str] | None, options: Sequence[str],
                        last_n: int | None, aggr_methods: Sequence[str] | None, aggr_period: str | None):
        if not attrs:
            raise BadRequest("QuantumLeap answers a type's history one attribute at a time: name the attrs")
        window = _window(timerel, time_at, end_time_at)
        by_entity: dict[str, dict[str, list[tuple[str, Any]]]] = {}
        if last_n is not None:
            # NGSI-LD's lastN counts per entity; QuantumLeap's limits the whole answer. List the type's entities
            # (GET /v2/entities?type=) and ask each for its own last N.
            listing = yield "/v2/entities", self._requests.params(window, entity_type=type)
            for entity_id in sorted({e.get("id") or e.get("entityId") for e in listing or []} - {None}):
                series = yield from self._entity_pages(entity_id, window, attrs, last_n, type)
                if series:
                    by_entity[entity_id] = series
            attrs = ()  # answered above
        for name in attrs:
            for page in range(self._max_pages):
                params = self._requests.params(window, last_n=last_n, offset=page * self._page_size,
                                               limit=self._page_size)
                body = yield f"/v2/types/{quote(type, safe='')}/attrs/{quote(name, safe='')}", params
                if body is None:
                    break
                found = QuantumLeapRequests.type_attribute(body)
                for entity_id, samples in found.items():
                    by_entity.setdefault(entity_id, {}).setdefault(name, []).extend(samples)
                if max((len(s) for s in found.values()), default=0) < self._page_size or last_n is not None:
                    break
        out = []
        methods = tuple(aggr_methods or ("avg",))
        if "aggregatedValues" in options:
            _check_methods(methods)
        for entity_id in sorted(by_entity):
            entity: dict[str, Any] = {"id": entity_id, "type": type}
            for name, samples in by_entity[entity_id].items():
                samples.sort(key=lambda s: parse_time(s[0]))
                if "aggregatedValues" in options:
                    if aggr_period is None:  # one bucket over the whole window, as NGSI-LD's default
                        origin = window.start or parse_time(samples[0][0])
                        end = window.end or datetime.now(UTC)
                        span = max((end - origin).total_seconds(), 1.0) + 1.0
                        entity[name] = {"type": "Property", **aggregate_series(samples, methods, span, origin)}
                    else:
                        origin = window.start or parse_time(samples[0][0])
                        entity[name] = {"type": "Property",
                                        **aggregate_series(samples, methods, period_seconds(aggr_period), origin)}
                else:
                    entity[name] = _temporal_values(samples)
            out.append(entity)
        return out


def _drive_sync(client: httpx.Client, api: _QuantumLeapApi, program) -> Any:
    try:
        request = next(program)
        while True:
            path, params = request
            try:
                response = client.get(api.base_url + path, params=params, headers=api._requests.headers)
            except httpx.TransportError as exc:
                raise BrokerUnavailable(f"QuantumLeap at {api.base_url} unreachable: {exc}") from exc
            error = QuantumLeapRequests.error(response)
            if error is not None and not isinstance(error, NotFound):
                raise error
            request = program.send(None if error is not None else response.json())
    except StopIteration as done:
        return done.value


async def _drive_async(client: httpx.AsyncClient, api: _QuantumLeapApi, program) -> Any:
    try:
        request = next(program)
        while True:
            path, params = request
            try:
                response = await client.get(api.base_url + path, params=params, headers=api._requests.headers)
            except httpx.TransportError as exc:
                raise BrokerUnavailable(f"QuantumLeap at {api.base_url} unreachable: {exc}") from exc
            error = QuantumLeapRequests.error(response)
            if error is not None and not isinstance(error, NotFound):
                raise error
            request = program.send(None if error is not None else response.json())
    except StopIteration as done:
        return done.value


class QuantumLeapClient(_QuantumLeapApi):
    """History from QuantumLeap with the methods (and NGSI-LD answers) of `NgsiLdClient`'s temporal API.

        with QuantumLeapClient("http://quantumleap:8668", service="energytwin") as history:
            series = history.attribute_history(entity_id, ["totalActivePower"], start, end)
    """

    def __init__(self, base_url: str, service: str | None = None, service_path: str = "/", *,
                 timeout: float = 30.0, page_size: int = PAGE_SIZE, max_pages: int = 1000) -> None:
        super().__init__(base_url, service, service_path, timeout=timeout, page_size=page_size,
                         max_pages=max_pages)
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def temporal_entity(self, entity_id: str, *, timerel: str | None = None, time_at: datetime | None = None,
                        end_time_at: datetime | None = None, attrs: Sequence[str] | None = None,
                        options: Sequence[str] = (), last_n: int | None = None,
                        aggr_methods: Sequence[str] | None = None, aggr_period: str | None = None,
                        context: str | None = None, entity_type: str | None = None) -> dict[str, Any]:
        """One entity's history in NGSI-LD's temporal representation (NotFound when QuantumLeap has none)."""
        return _drive_sync(self._client, self, self._temporal_entity(
            entity_id, timerel=timerel, time_at=time_at, end_time_at=end_time_at, attrs=attrs, options=options,
            last_n=last_n, aggr_methods=aggr_methods, aggr_period=aggr_period, entity_type=entity_type))

    def query_temporal(self, *, type: str, timerel: str | None = None, time_at: datetime | None = None,
                       end_time_at: datetime | None = None, attrs: Sequence[str] | None = None,
                       options: Sequence[str] = (), last_n: int | None = None,
                       aggr_methods: Sequence[str] | None = None, aggr_period: str | None = None,
                       q: str | None = None, context: str | None = None) -> list[dict[str, Any]]:
        """Every entity of a type, its history of `attrs` (QuantumLeap has no q: it is refused)."""
        if q:
            raise BadRequest("QuantumLeap has no q filter; filter the entities by id instead")
        return _drive_sync(self._client, self, self._query_temporal(
            type=type, timerel=timerel, time_at=time_at, end_time_at=end_time_at, attrs=attrs, options=options,
            last_n=last_n, aggr_methods=aggr_methods, aggr_period=aggr_period))

    def attribute_history(self, entity_id: str, attrs: Sequence[str], start: datetime,
                          end: datetime) -> dict[str, list[tuple[datetime, Any]]]:
        """Every instance of `attrs` observed in [start, end], as (time, value) per attribute, in time order."""
        series = _drive_sync(self._client, self, self._entity_pages(entity_id, _Window(start, end), attrs, None,
                                                                      None))
        return _as_instances(series, attrs)


class AsyncQuantumLeapClient(_QuantumLeapApi):
    """`QuantumLeapClient` for asyncio (the page service)."""

    def __init__(self, base_url: str, service: str | None = None, service_path: str = "/", *,
                 timeout: float = 30.0, page_size: int = PAGE_SIZE, max_pages: int = 1000) -> None:
        super().__init__(base_url, service, service_path, timeout=timeout, page_size=page_size,
                         max_pages=max_pages)
        self._client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def temporal_entity(self, entity_id: str, *, timerel: str | None = None, time_at: datetime | None = None,
                              end_time_at: datetime | None = None, attrs: Sequence[str] | None = None,
                              options: Sequence[str] = (), last_n: int | None = None,
                              aggr_methods: Sequence[str] | None = None, aggr_period: str | None = None,
                              context: str | None = None, entity_type: str | None = None) -> dict[str, Any]:
        return await _drive_async(self._client, self, self._temporal_entity(
            entity_id, timerel=timerel, time_at=time_at, end_time_at=end_time_at, attrs=attrs, options=options,
            last_n=last_n, aggr_methods=aggr_methods, aggr_period=aggr_period, entity_type=entity_type))

    async def query_temporal(self, *, type: str, timerel: str | None = None, time_at: datetime | None = None,
                             end_time_at: datetime | None = None, attrs: Sequence[str] | None = None,
                             options: Sequence[str] = (), last_n: int | None = None,
                             aggr_methods: Sequence[str] | None = None, aggr_period: str | None = None,
                             q: str | None = None, context: str | None = None) -> list[dict[str, Any]]:
        if q:
            raise BadRequest("QuantumLeap has no q filter; filter the entities by id instead")
        return await _drive_async(self._client, self, self._query_temporal(
            type=type, timerel=timerel, time_at=time_at, end_time_at=end_time_at, attrs=attrs, options=options,
            last_n=last_n, aggr_methods=aggr_methods, aggr_period=aggr_period))

    async def attribute_history(self, entity_id: str, attrs: Sequence[str], start: datetime,
                                end: datetime) -> dict[str, list[tuple[datetime, Any]]]:
        series = await _drive_async(self._client, self, self._entity_pages(entity_id, _Window(start, end), attrs,
                                                                             None, None))
        return _as_instances(series, attrs)


def _as_instances(series: Mapping[str, list[tuple[str, Any]]], attrs: Sequence[str]) -> dict[str, list]:
    return {name: sorted(((parse_time(t), v) for t, v in series.get(name, [])), key=lambda s: s[0])
            for name in attrs}
