"""Reads meters' energy counters from the twin's history through the NGSI-LD temporal API.

`GET /ngsi-ld/v1/temporal/entities/{id}?timerel=between&timeAt=..&endTimeAt=..&attrs=..&options=temporalValues`
with the SDM Energy @context in a `Link` header and the tenant in `NGSILD-Tenant` (reference/fiware.md §3), the
same request against the embedded broker and against Orion-LD + Mintaka. A broker that limits the instances it
returns answers 206 with `Content-Range: date-time <from>-<to>/<n>`; the reader then asks again from the last
instant it got, so a year of readings arrives in pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import httpx

from datamodels.context import ENERGY_CONTEXT, link_header
from datamodels.measures import measurement_id

TEMPORAL_PATH = "/ngsi-ld/v1/temporal/entities/"
IMPORT_ATTRS = ("totalActiveEnergyImport", "activeEnergyImport")
EXPORT_ATTRS = ("totalActiveEnergyExport", "activeEnergyExport")


class TwinError(RuntimeError):
    """The broker refused or failed a history request; carries the request, response and ProblemDetails."""

    def __init__(
        self, message: str, request: httpx.Request | None = None, response: httpx.Response | None = None
    ):
        super().__init__(message)
        self.request = request
        self.response = response


class TemporalApiMissing(TwinError):
    """The broker does not serve the temporal API (404 on the path itself, or 501)."""


class EntityNotFound(TwinError):
    """The broker has no history for this entity (404 ResourceNotFound)."""


@dataclass
class CounterSeries:
    """Import and export energy counters of one meter (kWh, all phases), as (time, value) samples."""

    entity_id: str
    import_kwh: list[tuple[datetime, float]] = field(default_factory=list)
    export_kwh: list[tuple[datetime, float]] = field(default_factory=list)


class TwinHistoryClient:
    """A small typed client for the temporal API (one per broker and tenant)."""

    def __init__(
        self,
        base_url: str,
        tenant: str | None = None,
        *,
        context_url: str = ENERGY_CONTEXT,
        timeout_s: float = 30.0,
        max_pages: int = 10_000,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"Accept": "application/json", "Link": link_header(context_url)}
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )
        self._max_pages = max_pages

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attribute_history(
        self, entity_id: str, attrs: tuple[str, ...], start: datetime, end: datetime
    ) -> dict[str, list[tuple[datetime, Any]]]:
        """Every instance of `attrs` observed in [start, end], per attribute, in time order, across pages."""
        out: dict[str, dict[datetime, Any]] = {a: {} for a in attrs}
        page_start = start
        for _ in range(self._max_pages):
            response = self._get(entity_id, attrs, page_start, end)
            body = response.json()
            last_seen: list[datetime] = []
            for attr in attrs:
                samples = _instances(body, attr)
                for t, v in samples:
                    out[attr][t] = v
                if samples:
                    last_seen.append(max(t for t, _ in samples))
            if response.status_code != 206:
                break
            # Partial content: continue after the earliest attribute's last instant so no attribute skips data.
            next_start = min(last_seen) if last_seen else None
            if next_start is None or next_start <= page_start:
                raise TwinError(
                    f"{entity_id}: the broker returned a partial page (206) without advancing past "
                    f"{page_start.isoformat()}; cannot page further",
                    response.request,
                    response,
                )
            page_start = next_start
        else:
            raise TwinError(f"{entity_id}: more than {self._max_pages} pages of history; narrow the period")
        return {a: sorted(values.items()) for a, values in out.items()}

    def energy_counters(
        self, device_id: str, start: datetime, end: datetime, margin: timedelta
    ) -> CounterSeries:
        """A meter's import/export counters over [start - margin, end + margin] (the margin brackets the edges).

        Uses `totalActiveEnergyImport/Export` when the meter reports it, else the sum of the phases of
        `activeEnergyImport/Export` ({L1, L2, L3}, kWh) at each instant.
        """
        entity_id = measurement_id(device_id)
        history = self.attribute_history(entity_id, IMPORT_ATTRS + EXPORT_ATTRS, start - margin, end + margin)
        return CounterSeries(
            entity_id,
            _counter(history, IMPORT_ATTRS),
            _counter(history, EXPORT_ATTRS),
        )

    def _get(self, entity_id: str, attrs: tuple[str, ...], start: datetime, end: datetime) -> httpx.Response:
        params = {
            "timerel": "between",
            "timeAt": _iso(start),
            "endTimeAt": _iso(end),
            "attrs": ",".join(attrs),
            "options": "temporalValues",
        }
        try:
            response = self._client.get(TEMPORAL_PATH + entity_id, params=params)
        except httpx.HTTPError as exc:
            raise TwinError(f"cannot reach the twin at {self._client.base_url}: {exc}") from exc
        if response.status_code in (200, 206):
            return response
        problem = _problem(response)
        kind = problem.get("type", "").rsplit("/", 1)[-1]
        detail = problem.get("detail") or problem.get("title") or response.reason_phrase
        where = f"GET {response.request.url.path}"
        if response.status_code == 501 or (response.status_code == 404 and not problem):
            raise TemporalApiMissing(
                f"{where}: the broker at {self._client.base_url} does not serve the NGSI-LD temporal API "
                f"(HTTP {response.status_code}); run one with history (Orion-LD + Mintaka, or the embedded broker)",
                response.request,
                response,
            )
        if response.status_code == 404 and kind == "ResourceNotFound":
            raise EntityNotFound(
                f"{entity_id}: no history in the twin ({detail})", response.request, response
            )
        if response.status_code == 404 and kind == "NonexistentTenant":
            raise TwinError(
                f"{where}: unknown tenant ({detail}); check twin.tenant", response.request, response
            )
        raise TwinError(
            f"{where}: HTTP {response.status_code} {kind or ''}: {detail}", response.request, response
        )


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) and ("type" in body or "title" in body) else {}


def _instances(entity: Any, attr: str) -> list[tuple[datetime, Any]]:
    """(time, value) pairs of one attribute in a temporal entity, simplified or normalized form."""
    if isinstance(entity, list):  # some brokers answer a one-element array
        entity = entity[0] if entity else {}
    node = entity.get(attr) if isinstance(entity, dict) else None
    if node is None:
        return []
    parts = node if isinstance(node, list) else [node]
    samples: list[tuple[datetime, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if "values" in part:  # temporalValues: [[value, time], ...]
            for pair in part["values"]:
                if isinstance(pair, list) and len(pair) >= 2:
                    samples.append((_parse_time(pair[1]), pair[0]))
        elif "value" in part and "observedAt" in part:  # normalized instance
            samples.append((_parse_time(part["observedAt"]), part["value"]))
    return samples


def _counter(
    history: dict[str, list[tuple[datetime, Any]]], attrs: tuple[str, str]
) -> list[tuple[datetime, float]]:
    total, phases = attrs
    if history.get(total):
        return [(t, float(v)) for t, v in history[total] if isinstance(v, (int, float))]
    out = []
    for t, v in history.get(phases, []):
        if isinstance(v, dict):
            values = [
                float(x) for k, x in v.items() if k in ("L1", "L2", "L3") and isinstance(x, (int, float))
            ]
            if values:
                out.append((t, sum(values)))
    return out


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)  # Python 3.11 reads "Z"
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
