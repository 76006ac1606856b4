"""Send batch upserts to the NGSI-LD broker exactly as the FIWARE IoT Agent JSON does in LD mode.

`POST {broker}/ngsi-ld/v1/entityOperations/upsert/?options=update` (slash before `?` included), body = array of
entity fragments each with its `@context`, `Content-Type: application/ld+json`, tenant in `NGSILD-Tenant` and
`fiware-service`, path in `NGSILD-Path` and `fiware-servicepath` (reference/fiware.md §1, §8).

A worker thread owns the HTTP client so the MQTT network loop never waits on the broker. The queue is in memory
and bounded; surviving a broker outage across a restart (on-disk queue) is the next issue's job.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .metrics import Metrics

log = logging.getLogger("twin_service.agent.northbound")

UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert/"
SUCCESS = (200, 201, 204)  # anything else, 207 included, is an error for the FIWARE agent too
RETRY_DELAYS_S = (0.2, 1.0, 3.0)  # connection failures only; an HTTP answer is final


@dataclass(frozen=True)
class Upsert:
    """One batch upsert: the fragments of one MQTT message, for one tenant / servicepath."""

    service: str
    subservice: str
    device_id: str
    entities: list[dict[str, Any]]


def upsert_headers(service: str, subservice: str) -> dict[str, str]:
    """The headers the FIWARE agent sends with an NGSI-LD upsert."""
    return {
        "Content-Type": "application/ld+json",
        "NGSILD-Tenant": service,
        "NGSILD-Path": subservice,
        "fiware-service": service,
        "fiware-servicepath": subservice,
    }


class NorthboundWriter:
    """A bounded queue of upserts and the thread that posts them to the broker."""

    _STOP = object()

    def __init__(
        self, broker_url: str, metrics: Metrics, max_queued: int = 10_000, timeout_s: float = 10.0
    ) -> None:
        self._url = broker_url.rstrip("/") + UPSERT_PATH
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        metrics.gauge("upsert_queue_depth", self._queue.qsize)

    def start(self) -> None:
        """Start the sending thread."""
        self._thread = threading.Thread(target=self._run, name="agent-northbound", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to `timeout_s`), then stop the thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(self._STOP, timeout=timeout_s)
        except queue.Full:
            log.warning("upsert queue still full at shutdown; %d upserts are lost", self._queue.qsize())
        self._thread.join(timeout=timeout_s)
        self._thread = None

    def submit(self, upsert: Upsert) -> bool:
        """Queue an upsert; False (nothing queued) when the queue is full."""
        try:
            self._queue.put_nowait(upsert)
            return True
        except queue.Full:
            return False

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued upsert has been sent (or given up on); True if that happened in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout_s) as client:
            while True:
                item = self._queue.get()
                try:
                    if item is self._STOP:
                        return
                    self._send(client, item)
                except Exception:  # a bug here must not end the thread: every later upsert would be lost
                    log.exception(
                        "failed to send upsert for device %s; continuing", getattr(item, "device_id", "?")
                    )
                finally:
                    self._queue.task_done()

    def _send(self, client: httpx.Client, upsert: Upsert) -> None:
        headers = upsert_headers(upsert.service, upsert.subservice)
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
            try:
                response = client.post(
                    self._url, params={"options": "update"}, json=upsert.entities, headers=headers
                )
                break
            except httpx.TransportError as exc:
                if delay is None:
                    self._metrics.inc("upserts_total", status="unreachable")
                    log.error(
                        "broker %s unreachable after %d attempts (%s); upsert for device %s (%s) dropped",
                        self._url,
                        attempt + 1,
                        exc,
                        upsert.device_id,
                        upsert.entities[0]["id"],
                    )
                    return
                time.sleep(delay)
        self._metrics.inc("upserts_total", status=str(response.status_code))
        if response.status_code not in SUCCESS:
            log.error(
                "broker answered %d to the upsert for device %s (%s, tenant %r): %s; update lost",
                response.status_code,
                upsert.device_id,
                upsert.entities[0]["id"],
                upsert.service,
                response.text[:1000],
            )
