"""The NGSI-LD temporal API (what Orion-LD's TRoE + Mintaka serve), answered from the broker's own history.

observedAt is the time axis (an instance written without observedAt is placed at the time the broker accepted
it). Windows are half-open: `before` is t < timeAt, `after` is t >= timeAt, `between` is timeAt <= t < endTimeAt,
so consecutive `between` windows (settlement periods) never count an instance twice.
Three representations: normalized (every instance), temporalValues (`[[value, time], …]`) and aggregated
(`aggrMethods` over `aggrPeriodDuration` periods; object values such as per-phase `{"L1","L2","L3"}` are
aggregated per key).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from ._api import broker_of, endpoint, existing_tenant, read
from ._context import ActiveContext
from ._errors import NgsiLdError, bad_request, invalid_request
from ._http import JSON_LD, context_link, int_param, link_context, list_param, negotiate
from ._json import RawJson, raw_json_response
from ._model import format_datetime, parse_datetime, render_attribute
from ._store import Bucket, EntityQuery, Store, TimeRange, epoch_seconds

AGGREGATION_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
_OPTIONS = frozenset({"temporalValues", "aggregatedValues", "sysAttrs"})
_FORMATS = {"temporalValues": "temporalValues", "simplified": "temporalValues", "normalized": None,
            "aggregatedValues": "aggregatedValues"}
_DURATION = re.compile(r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
                       r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
                       r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$")
_UNIT_SECONDS = {"weeks": 604800.0, "days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


@dataclass(frozen=True)
class TemporalRequest:
    """A temporal query's URI parameters, validated."""

    window: TimeRange
    origin: float | None  # where aggregation periods start (timeAt for after/between)
    representation: str  # normalized | temporalValues | aggregatedValues
    methods: tuple[str, ...]
    period_s: float | None  # None: one period over the whole window
    sys_attrs: bool
    attrs: tuple[str, ...] | None


def parse_duration(text: str) -> float:
    """Seconds of an ISO 8601 duration without calendar units (PT1H, P1D, P1W, PT15M, PT0.5S)."""
    match = _DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        if re.match(r"^P(\d+Y)?(\d+M)?", text) and re.search(r"\d[YM]", text.split("T")[0]):
            raise NgsiLdError("OperationNotSupported", "Calendar durations are not supported",
                              f"aggrPeriodDuration {text!r}: use weeks, days, hours, minutes or seconds "
                              "(P30D rather than P1M)", status=501)
        raise bad_request("Invalid value for URI parameter aggrPeriodDuration", f"{text!r} is not an ISO 8601 "
                                                                               "duration")
    return sum(float(value) * _UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value)


def _time_param(params: QueryParams, *names: str) -> float | None:
    for name in names:
        raw = params.get(name)
        if raw is not None:
            return epoch_seconds(parse_datetime(raw, name))
    return None


def parse_temporal_request(params: QueryParams, ctx: ActiveContext, *, need_timerel: bool) -> TemporalRequest:
    """Validate timerel/timeAt/endTimeAt (or the old time/endTime), lastN, options and aggregation."""
    timeproperty = params.get("timeproperty", "observedAt")
    if timeproperty == "deletedAt":
        raise NgsiLdError("OperationNotSupported", "timeproperty=deletedAt is not supported",
                          "use observedAt, createdAt or modifiedAt", status=501)
    if timeproperty not in ("observedAt", "createdAt", "modifiedAt"):
        raise bad_request("Invalid value for URI parameter timeproperty",
                          f"{timeproperty!r}: use observedAt, createdAt or modifiedAt")
    axis = "observedAt" if timeproperty == "observedAt" else "modifiedAt"  # an instance is created once, never modified
    timerel = params.get("timerel")
    time_at = _time_param(params, "timeAt", "time")
    end_at = _time_param(params, "endTimeAt", "endTime")
    start = end = None
    if timerel is None:
        if need_timerel:
            raise bad_request("Missing URI parameter timerel", "a temporal query needs timerel and timeAt")
        if time_at is not None:
            raise bad_request("timeAt without timerel", "give timerel=before|after|between")
    elif timerel not in ("before", "after", "between"):
        raise bad_request("Invalid value for URI parameter timerel", f"{timerel!r}: use before, after or between")
    elif time_at is None:
        raise bad_request("Missing URI parameter timeAt", f"timerel={timerel} needs timeAt")
    elif timerel == "before":
        end = time_at
    elif timerel == "after":
        start = time_at
    else:
        if end_at is None:
            raise bad_request("Missing URI parameter endTimeAt", "timerel=between needs endTimeAt")
        if end_at <= time_at:
            raise bad_request("Invalid time window", "endTimeAt must be after timeAt")
        start, end = time_at, end_at
    last_n: int | None = None
    if "lastN" in params:
        last_n = int_param(params, "lastN", 0)
        if last_n == 0:
            raise bad_request("Invalid value for URI parameter lastN", "lastN must be a positive integer")

    options = set(list_param(params, "options") or [])
    fmt = params.get("format")
    unknown = options - _OPTIONS
    if unknown or (fmt is not None and fmt not in _FORMATS):  # a malformed URI parameter: InvalidRequest
        raise invalid_request("Invalid value for URI parameter " + ("options" if unknown else "format"),
                          f"{', '.join(sorted(unknown) or [str(fmt)])}: use temporalValues, aggregatedValues, "
                          "sysAttrs or format=simplified|normalized|temporalValues|aggregatedValues")
    methods = tuple(list_param(params, "aggrMethods") or ())
    bad_methods = [m for m in methods if m not in AGGREGATION_METHODS]
    if bad_methods:
        raise bad_request("Invalid value for URI parameter aggrMethods",
                          f"{', '.join(bad_methods)}: use {', '.join(AGGREGATION_METHODS)}")
    representation = "normalized"
    if "temporalValues" in options or _FORMATS.get(fmt or "") == "temporalValues":
        representation = "temporalValues"
    if "aggregatedValues" in options or fmt == "aggregatedValues" or methods:
        if representation == "temporalValues":
            raise bad_request("Conflicting options", "temporalValues and aggregatedValues exclude each other")
        if not methods:
            raise bad_request("Missing URI parameter aggrMethods", "aggregatedValues needs aggrMethods")
        representation = "aggregatedValues"
    period = params.get("aggrPeriodDuration")
    period_s = parse_duration(period) if period is not None else None
    if period_s is not None and period_s <= 0:
        period_s = None  # PT0S: the spec's "one period over the whole window"
    attrs = list_param(params, "attrs")
    return TemporalRequest(TimeRange(start, end, last_n, axis), start, representation, methods, period_s,
                           "sysAttrs" in options, tuple(ctx.expand(a) for a in attrs) if attrs else None)


def _iso(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def _statistic(bucket: Bucket, method: str) -> float | int | None:
    n = bucket.numeric
    if method == "totalCount":
        return bucket.total
    if method == "distinctCount":
        return bucket.distinct
    if n == 0:
        return None
    if method == "sum":
        return bucket.sum
    if method == "avg":
        return bucket.sum / n if bucket.sum is not None else None
    if method == "min":
        return bucket.min
    if method == "max":
        return bucket.max
    if method == "sumsq":
        return bucket.sumsq
    # stddev: the sample standard deviation, as PostgreSQL's stddev() in TRoE/Mintaka computes it
    if n < 2 or bucket.sum is None or bucket.sumsq is None:
        return None
    variance = (bucket.sumsq - bucket.sum * bucket.sum / n) / (n - 1)
    return math.sqrt(max(variance, 0.0))


def render_temporal_entity(store: Store, tenant: str, entity_id: str, entity_type: str, deleted_at: str | None,
                           request: TemporalRequest, ctx: ActiveContext, raw: RawJson) -> dict[str, Any]:
    """One entity's history in the requested representation (runs on a worker thread)."""
    with store.snapshot():  # every attribute, and rollups with waiting rows, from one state (Store.snapshot)
        return _render_temporal_entity(store, tenant, entity_id, entity_type, deleted_at, request, ctx, raw)


def _render_temporal_entity(store: Store, tenant: str, entity_id: str, entity_type: str, deleted_at: str | None,
                            request: TemporalRequest, ctx: ActiveContext, raw: RawJson) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entity_id, "type": ctx.compact(entity_type)}
    if deleted_at is not None and request.sys_attrs:
        out["deletedAt"] = deleted_at
    series = store.history_attributes(tenant, entity_id)
    if request.attrs is not None:
        series = [(n, s) for n, s in series if n in request.attrs]
    for name, series_id in series:
        short = ctx.compact(name)
        if request.representation == "temporalValues":
            pairs, kind = store.temporal_values_json(series_id, request.window)
            if kind is None:
                continue
            member = "objects" if kind == "Relationship" else "values"
            out[short] = {"type": kind, member: raw.mark(pairs)}
        elif request.representation == "aggregatedValues":
            aggregated = _aggregate(store, series_id, request)
            if aggregated is not None:
                out[short] = aggregated
        else:
            instances = store.instances(series_id, request.window)
            if instances:
                out[short] = [{**render_attribute(attribute, ctx, request.sys_attrs),
                               "instanceId": f"urn:ngsi-ld:attribute:instance:{instance_id}",
                               **({"modifiedAt": recorded_at} if request.sys_attrs else {})}
                              for instance_id, _, recorded_at, attribute in instances]
    return out


def _aggregate(store: Store, series_id: int, request: TemporalRequest) -> dict[str, Any] | None:
    window = request.window
    if request.period_s is None:
        first = window.start if window.start is not None else store.first_observed(series_id)
        if first is None:
            return None
        origin = first
        period = (window.end - first) if window.end is not None else math.inf
    else:
        period = request.period_s
        origin = request.origin if request.origin is not None else 0.0  # epoch: hours and days align on UTC
    buckets = store.aggregate(series_id, window, origin, period if math.isfinite(period) else 1e18,
                              counts=bool({"totalCount", "distinctCount"} & set(request.methods)),
                              distinct="distinctCount" in request.methods)
    if not buckets:
        return None
    out: dict[str, Any] = {"type": "Property"}
    by_index: dict[int, list[Bucket]] = {}
    for bucket in buckets:
        by_index.setdefault(bucket.index, []).append(bucket)
    for method in request.methods:
        series = []
        for index, group in by_index.items():
            start = origin + index * period if math.isfinite(period) else origin
            end = start + period if math.isfinite(period) else (
                window.end if window.end is not None else datetime.now(UTC).timestamp())
            if len(group) == 1 and group[0].key is None:
                value: Any = _statistic(group[0], method)
            else:
                value = {str(b.key): _statistic(b, method) for b in group if b.key is not None}
            series.append([value, _iso(start), _iso(end)])
        out[method] = series
    return out


# -- handlers -------------------------------------------------------------------------------------------
@endpoint
async def retrieve_temporal_entity(request: Request) -> Response:
    """GET /temporal/entities/{id}: one entity's history (404 when it never existed in the tenant)."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    media = negotiate(request)
    ctx = await broker.contexts.activate(link_context(request))
    query = parse_temporal_request(request.query_params, ctx, need_timerel=False)
    entity_id = request.path_params["entity_id"]
    raw = RawJson()

    def run() -> dict[str, Any]:
        found = broker.store.temporal_entity(tenant, entity_id)
        if found is None:
            raise NgsiLdError("ResourceNotFound", "Entity Not Found", entity_id)
        return render_temporal_entity(broker.store, tenant, entity_id, found[0], found[1], query, ctx, raw)

    body = await read(run)
    return _respond(body, raw, media, ctx)


@endpoint
async def query_temporal_entities(request: Request) -> Response:
    """GET /temporal/entities: the history of every entity matching type/id/idPattern/attrs in a window."""
    broker = broker_of(request)
    params = request.query_params
    for name in ("q", "georel", "geometry", "coordinates", "csf", "scopeQ"):
        if name in params:
            raise NgsiLdError("OperationNotSupported", f"URI parameter {name} is not supported on temporal queries",
                              "filter by type, id, idPattern and attrs", status=501)
    types, ids, attrs = list_param(params, "type"), list_param(params, "id"), list_param(params, "attrs")
    id_pattern = params.get("idPattern")
    if types is None and attrs is None and ids is None and id_pattern is None:
        raise bad_request("Too broad query", "give at least one of type, id, idPattern or attrs")
    limit = int_param(params, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
    offset = int_param(params, "offset", 0)
    count = params.get("count", "false").lower() == "true" or "count" in (list_param(params, "options") or [])
    tenant = existing_tenant(request, broker)
    media = negotiate(request)
    ctx = await broker.contexts.activate(link_context(request))
    temporal = parse_temporal_request(_without(params, "count"), ctx, need_timerel=True)
    query = EntityQuery(types=tuple(ctx.expand(t) for t in types) if types else None,
                        ids=tuple(ids) if ids else None, id_pattern=_checked_pattern(id_pattern),
                        attrs=temporal.attrs)
    raw = RawJson()

    def run() -> tuple[list[dict[str, Any]], int]:
        with broker.store.snapshot():  # the page of entities and their histories from one state of the store
            found, total = broker.store.temporal_entities(tenant, query, limit, offset)
            out = []
            for entity_id, entity_type in found:
                deleted = None
                if temporal.sys_attrs:  # deletedAt is shown with sysAttrs only: 2-3 queries per entity otherwise
                    state = broker.store.temporal_entity(tenant, entity_id)
                    deleted = state[1] if state else None
                out.append(render_temporal_entity(broker.store, tenant, entity_id, entity_type, deleted, temporal,
                                                  ctx, raw))
            return out, total

    body, total = await read(run)
    return _respond(body, raw, media, ctx, {"NGSILD-Results-Count": str(total)} if count else None)


def _without(params: QueryParams, option: str) -> QueryParams:
    """The parameters with one value removed from `options` (`options=count` is not a representation)."""
    options = [o for o in (list_param(params, "options") or []) if o != option]
    items = [(k, v) for k, v in params.multi_items() if k != "options"]
    if options:
        items.append(("options", ",".join(options)))
    return QueryParams(items)


def _checked_pattern(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise bad_request("Invalid idPattern", f"{pattern!r}: {exc}") from None
    return pattern


def _respond(body: dict[str, Any] | list[dict[str, Any]], raw: RawJson, media: str, ctx: ActiveContext,
             headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    if media == JSON_LD:
        for item in body if isinstance(body, list) else [body]:
            item["@context"] = ctx.echo
    elif isinstance(ctx.echo, str):
        headers["Link"] = context_link(ctx.echo)
    return raw_json_response(body, raw, media, headers)
