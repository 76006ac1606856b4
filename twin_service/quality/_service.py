"""The analytics service: an NGSI-LD subscriber that evaluates each measurement update and writes Anomaly entities.

Like any FIWARE app it talks to the broker only through the NGSI-LD API: at start it reads the Anomaly records
still open (so a restart continues them instead of opening duplicates), then creates (or reuses) one subscription
to `ThreePhaseAcMeasurement` whose notifications arrive on `POST /notify`. Each notified entity becomes a
`Reading`, the `QualityTracker` judges it, and new, changed and closed records go back in one batch upsert after
being checked against the official Smart Data Models schema. `GET /health` says what the service is doing.

Routes: POST /notify, GET /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from datamodels.anomaly import ANOMALY_TYPE, Anomaly
from datamodels.context import context_for
from datamodels.measures import MEASUREMENT_TYPE
from datamodels.readings import ATTRIBUTES, reading_from_entity
from datamodels.validation import EntityValidationError, validate_entity
from fiware_client import AsyncNgsiLdClient, BrokerError, NonexistentTenant, parse_time
from kernel.ports import QUALITY_PORT

from ._conditions import QualityTracker
from ._limits import SiteLimits

log = logging.getLogger(__name__)

SUBSCRIPTION_ID = "urn:ngsi-ld:Subscription:energytwin-quality"
STATE_FILE = "quality-state.json"


@dataclass
class ServiceConfig:
    """Where the broker is, which tenant to watch, where notifications should come to."""

    broker_url: str
    tenant: str | None
    listen_host: str = "127.0.0.1"
    listen_port: int = QUALITY_PORT
    notify_url: str | None = None  # default: http://<listen host or this host's name>:<port>/notify
    limits: SiteLimits = field(default_factory=SiteLimits)
    data_dir: Path | None = None
    retry_s: float = 2.0

    def endpoint(self) -> str:
        if self.notify_url:
            return self.notify_url
        host = self.listen_host
        if host in ("0.0.0.0", "::", ""):
            # In a container the hostname resolves on the compose network; override with --notify-url otherwise.
            host = socket.gethostname()
        return f"http://{host}:{self.listen_port}/notify"


class AnomalyStore:
    """The broker as the service sees it: open Anomaly records, batch upserts, the subscription."""

    def __init__(self, broker_url: str, tenant: str | None, client: AsyncNgsiLdClient | None = None) -> None:
        self._broker = client or AsyncNgsiLdClient(broker_url, tenant, timeout=15.0)
        self.broker_url = broker_url

    async def close(self) -> None:
        await self._broker.close()

    async def open_anomalies(self) -> list[Anomaly]:
        """Every Anomaly this service left open (status "open"), across pages."""
        try:
            entities = await self._broker.query_entities(type=ANOMALY_TYPE, q='status=="open"')
        except NonexistentTenant:
            return []  # nothing written to this tenant yet
        found: list[Anomaly] = []
        for entity in entities:
            try:
                anomaly = Anomaly.from_entity(entity)
            except ValueError as exc:
                log.warning("ignoring Anomaly %s the service cannot read: %s", entity.get("id"), exc)
                continue
            if anomaly.status == "open":
                found.append(anomaly)
        return found

    async def upsert(self, anomalies: list[Anomaly]) -> None:
        """Write records in one batch upsert, each checked against the official schema first."""
        entities = []
        for anomaly in anomalies:
            entity = anomaly.to_normalized()
            validate_entity(entity)  # a record that breaks the SDM schema is a bug here, not something to send
            entities.append(entity)
        await self._broker.upsert_entities(entities)

    async def ensure_subscription(self, endpoint: str) -> str:
        """Create the subscription, keep it when it is already as wanted, replace it when it is not."""
        outcome = await self._broker.ensure_subscription({
            "id": SUBSCRIPTION_ID,
            "type": "Subscription",
            "description": "energytwin power-quality analytics (EN 50160)",
            "entities": [{"type": MEASUREMENT_TYPE}],
            "notification": {
                "attributes": list(ATTRIBUTES),
                "format": "normalized",
                "endpoint": {"uri": endpoint, "accept": "application/json"},
            },
            "@context": context_for(MEASUREMENT_TYPE),
        })
        if outcome.action == "replaced":
            log.info("subscription %s differed (%s); replaced it", outcome.id, ", ".join(outcome.differences))
        return outcome.id


@dataclass
class ServiceState:
    """What /health reports, and what the handlers share."""

    config: ServiceConfig
    store: AnomalyStore
    tracker: QualityTracker
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    subscription: str | None = None
    subscription_detail: str = "not yet created"
    recovered: int = 0
    notifications: int = 0
    written: int = 0
    write_errors: int = 0
    last_error: str | None = None

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ready.is_set() else "starting",
            "broker": self.config.broker_url,
            "tenant": self.config.tenant,
            "notifyEndpoint": self.config.endpoint(),
            "subscription": {"id": self.subscription, "detail": self.subscription_detail},
            "recoveredOpenAnomalies": self.recovered,
            "notifications": self.notifications,
            "evaluations": self.tracker.evaluations,
            "openAnomalies": len(self.tracker.open),
            "written": self.written,
            "writeErrors": self.write_errors,
            "lastError": self.last_error,
            "meters": {device: at.isoformat().replace("+00:00", "Z")
                       for device, at in sorted(self.tracker.last_seen.items())},
        }

    # -- persistence (a cache for a restart while the broker cannot answer) ---------------------------------
    def save(self) -> None:
        if self.config.data_dir is None:
            return
        path = self.config.data_dir / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        records = [c.to_anomaly(self.config.limits).to_key_values() for c in self.tracker.open.values()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"open": records}, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def load_saved(self) -> list[Anomaly]:
        if self.config.data_dir is None:
            return []
        path = self.config.data_dir / STATE_FILE
        if not path.exists():
            return []
        return [Anomaly.model_validate(r) for r in json.loads(path.read_text(encoding="utf-8")).get("open", [])]


async def recover(state: ServiceState, attempts: int = 5) -> None:
    """Adopt open records from the broker (the truth); fall back to the data-dir copy if it cannot answer."""
    for attempt in range(attempts):
        try:
            anomalies = await state.store.open_anomalies()
            state.recovered = state.tracker.resume(anomalies)
            log.info("resumed %d open Anomaly record(s) from %s", state.recovered, state.config.broker_url)
            return
        except BrokerError as exc:
            state.last_error = f"reading open Anomaly records: {exc}"
            log.warning("cannot read open Anomaly records from %s (attempt %d/%d): %s; retrying",
                        state.config.broker_url, attempt + 1, attempts, exc)
            await asyncio.sleep(state.config.retry_s)
    saved = state.load_saved()
    state.recovered = state.tracker.resume(saved)
    log.error("broker did not answer; resumed %d open record(s) from %s instead", state.recovered,
              state.config.data_dir)


async def keep_subscribed(state: ServiceState) -> None:
    """Create the subscription, retrying until the broker accepts it (it may start after us)."""
    endpoint = state.config.endpoint()
    while True:
        try:
            state.subscription = await state.store.ensure_subscription(endpoint)
            state.subscription_detail = f"notifying {endpoint}"
            log.info("subscribed to %s updates at %s (tenant %s); notifications to %s", MEASUREMENT_TYPE,
                     state.config.broker_url, state.config.tenant, endpoint)
            return
        except BrokerError as exc:
            state.subscription_detail = f"pending: {exc}"
            log.warning("cannot subscribe at %s: %s; retrying in %.0f s", state.config.broker_url, exc,
                        state.config.retry_s)
            await asyncio.sleep(state.config.retry_s)


async def handle_entities(state: ServiceState, entities: list[dict[str, Any]],
                          notified_at: datetime | None = None) -> list[Anomaly]:
    """Evaluate notified measurement entities in time order and write what changed; returns what was written."""
    readings = [r for e in entities if isinstance(e, dict)
                and (r := reading_from_entity(e, fallback_time=notified_at)) is not None]
    readings.sort(key=lambda r: r.observed_at)
    records: dict[str, Anomaly] = {}
    for reading in readings:
        for anomaly in state.tracker.update(reading):
            records[anomaly.id] = anomaly  # a later state of the same record replaces the earlier one
    if records:
        try:
            await state.store.upsert(list(records.values()))
            state.written += len(records)
            for anomaly in records.values():
                log.info("%s %s: %s", "closed" if anomaly.status == "closed" else "open", anomaly.id,
                         anomaly.description)
        except (BrokerError, EntityValidationError) as exc:
            state.write_errors += 1
            state.last_error = str(exc)
            log.error("could not write %d Anomaly record(s) to %s: %s; they are written again with the next "
                      "change", len(records), state.config.broker_url, exc)
            for condition in state.tracker.open.values():
                if condition.entity_id in records:
                    condition.last_written_at = None  # force a rewrite on the next reading
        state.save()
    return list(records.values())


async def notify(request: Request) -> Response:
    """POST /notify: an NGSI-LD notification (or a bare entity list)."""
    state: ServiceState = request.app.state.quality
    try:  # orjson: a notification of a meter is ~4 KB of JSON, decoded ~3x faster than by the json module
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return JSONResponse({"title": "Invalid notification", "detail": "body is not JSON"}, status_code=400)
    if isinstance(body, dict):
        entities = body.get("data", [])
        notified_at = parse_time(body["notifiedAt"]) if isinstance(body.get("notifiedAt"), str) else None
    else:
        entities, notified_at = body, None
    if not isinstance(entities, list):
        return JSONResponse({"title": "Invalid notification", "detail": "data must be a list"}, status_code=400)
    await state.ready.wait()
    async with state.lock:
        state.notifications += 1
        await handle_entities(state, entities, notified_at or datetime.now(UTC))
    return Response(status_code=204)


async def health(request: Request) -> Response:
    """GET /health: 200 with what the service is doing."""
    state: ServiceState = request.app.state.quality
    return JSONResponse(state.health())


ROUTES = [
    Route("/notify", notify, methods=["POST"]),
    Route("/health", health, methods=["GET"]),
]


def create_app(config: ServiceConfig, store: AnomalyStore | None = None, *, subscribe: bool = True) -> Starlette:
    """The service as an ASGI app; `subscribe=False` for tests that post notifications themselves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        state = ServiceState(config, store or AnomalyStore(config.broker_url, config.tenant),
                             QualityTracker(config.limits))
        app.state.quality = state
        await recover(state)
        state.ready.set()
        task = asyncio.create_task(keep_subscribed(state)) if subscribe else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            await state.store.close()

    return Starlette(routes=ROUTES, lifespan=lifespan)
