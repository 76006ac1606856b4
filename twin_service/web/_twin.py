"""The broker as the page service sees it: meters, history, power-quality events and its two subscriptions.

Only the public NGSI-LD API is used, so the same code reads the embedded broker and Orion-LD (+ Mintaka).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import httpx

from datamodels.anomaly import ANOMALY_TYPE
from datamodels.context import ALERT_CONTEXT, ENERGY_CONTEXT, context_for, link_header
from datamodels.measures import MEASUREMENT_TYPE, device_entity_id, measurement_id

log = logging.getLogger(__name__)

NGSI_LD = "/ngsi-ld/v1"
PAGE = 1000  # the broker's largest page
MEASUREMENT_SUBSCRIPTION = "urn:ngsi-ld:Subscription:energytwin-web-measurements"
ANOMALY_SUBSCRIPTION = "urn:ngsi-ld:Subscription:energytwin-web-anomalies"
# What the overview needs of each meter (the meter page reads the whole entity).
OVERVIEW_ATTRS = ("totalActivePower", "totalActiveEnergyImport", "totalActiveEnergyExport", "phaseVoltage",
                  "frequency")


class TwinError(RuntimeError):
    """The broker answered with an error; carries the response."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class TwinClient:
    """One tenant of one broker."""

    def __init__(self, broker_url: str, tenant: str | None, timeout_s: float = 10.0) -> None:
        headers = {"Accept": "application/json"}
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        self.broker_url = broker_url.rstrip("/")
        self.tenant = tenant
        self._client = httpx.AsyncClient(base_url=self.broker_url, headers=headers, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, context: str, params: dict[str, Any] | None = None) -> Any | None:
        """GET a JSON body; None for 404 (unknown entity or a tenant nothing was written to yet)."""
        response = await self._client.get(f"{NGSI_LD}{path}", params=params, headers={"Link": link_header(context)})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TwinError(f"GET {path}: HTTP {response.status_code} {response.text[:300]}", response)
        return response.json()

    async def _query_all(self, context: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            batch = await self._get("/entities", context, {**params, "limit": PAGE, "offset": offset})
            if not batch:
                return found
            found.extend(batch)
            if len(batch) < PAGE:
                return found
            offset += PAGE

    # -- measurements ---------------------------------------------------------------------------------------
    async def measurements(self, attrs: tuple[str, ...] | None = OVERVIEW_ATTRS) -> list[dict[str, Any]]:
        """Every meter's ThreePhaseAcMeasurement of the tenant (normalized)."""
        params: dict[str, Any] = {"type": MEASUREMENT_TYPE}
        if attrs:
            params["attrs"] = ",".join(attrs)
        return await self._query_all(ENERGY_CONTEXT, params)

    async def measurement(self, device_id: str) -> dict[str, Any] | None:
        return await self._get(f"/entities/{measurement_id(device_id)}", ENERGY_CONTEXT)

    async def history(self, device_id: str, start: datetime, attrs: tuple[str, ...], methods: tuple[str, ...],
                      period: str) -> dict[str, Any] | None:
        """Aggregated history of one meter since `start` (temporal API, one bucket per `period`)."""
        return await self._get(f"/temporal/entities/{measurement_id(device_id)}", ENERGY_CONTEXT, {
            "timerel": "after", "timeAt": iso(start), "attrs": ",".join(attrs),
            "options": "aggregatedValues", "aggrMethods": ",".join(methods), "aggrPeriodDuration": period,
        })

    async def counters_since(self, start: datetime, attrs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """min/max of energy counters since `start` for every meter (one temporal query): entity id -> attrs."""
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            batch = await self._get("/temporal/entities", ENERGY_CONTEXT, {
                "type": MEASUREMENT_TYPE, "timerel": "after", "timeAt": iso(start), "attrs": ",".join(attrs),
                "options": "aggregatedValues", "aggrMethods": "min,max", "limit": PAGE, "offset": offset,
            })
            if not batch:
                return out
            for entity in batch:
                out[entity["id"]] = entity
            if len(batch) < PAGE:
                return out
            offset += PAGE

    async def recent_times(self, since: datetime, attr: str = "totalActivePower",
                           last_n: int = 6) -> dict[str, list[str]]:
        """The last observation times of every meter since `since` (to estimate each meter's period)."""
        out: dict[str, list[str]] = {}
        offset = 0
        while True:
            batch = await self._get("/temporal/entities", ENERGY_CONTEXT, {
                "type": MEASUREMENT_TYPE, "timerel": "after", "timeAt": iso(since), "attrs": attr,
                "lastN": last_n, "options": "temporalValues", "limit": PAGE, "offset": offset,
            })
            if not batch:
                return out
            for entity in batch:
                values = (entity.get(attr) or {}).get("values") or []
                out[entity["id"]] = [t for _, t in values]
            if len(batch) < PAGE:
                return out
            offset += PAGE

    # -- power-quality events -------------------------------------------------------------------------------
    async def open_anomalies(self) -> list[dict[str, Any]]:
        return await self._query_all(ALERT_CONTEXT, {"type": ANOMALY_TYPE, "q": 'status=="open"'})

    async def anomalies_of(self, device_id: str) -> list[dict[str, Any]]:
        """Every Anomaly the analytics wrote for one meter (open and closed)."""
        device = device_entity_id(device_id)
        return await self._query_all(ALERT_CONTEXT, {"type": ANOMALY_TYPE, "q": f'detectedBy=="{device}"'})

    # -- subscriptions --------------------------------------------------------------------------------------
    async def ensure_subscriptions(self, endpoint: str) -> list[str]:
        """Create (or keep, or repoint) the measurement and Anomaly subscriptions notifying `endpoint`."""
        return [
            await self._ensure(MEASUREMENT_SUBSCRIPTION, MEASUREMENT_TYPE, endpoint,
                               "energytwin live twin page: meter readings"),
            await self._ensure(ANOMALY_SUBSCRIPTION, ANOMALY_TYPE, endpoint,
                               "energytwin live twin page: power-quality events"),
        ]

    async def _ensure(self, sub_id: str, entity_type: str, endpoint: str, description: str) -> str:
        body = {
            "id": sub_id,
            "type": "Subscription",
            "description": description,
            "entities": [{"type": entity_type}],
            "notification": {"format": "normalized", "endpoint": {"uri": endpoint, "accept": "application/json"}},
            "@context": context_for(entity_type),
        }
        path = f"{NGSI_LD}/subscriptions"
        existing = await self._client.get(f"{path}/{sub_id}")
        if existing.status_code == 200:
            found = existing.json()
            uri = found.get("notification", {}).get("endpoint", {}).get("uri")
            if uri == endpoint and found.get("status", "active") == "active" and found.get("isActive", True):
                return sub_id
            log.info("subscription %s notifies %s (status %s); replacing it to notify %s", sub_id, uri,
                     found.get("status"), endpoint)
            await self._client.delete(f"{path}/{sub_id}")
        response = await self._client.post(path, content=json.dumps(body),
                                           headers={"Content-Type": "application/ld+json"})
        if response.status_code == 409:  # created meanwhile by another instance of this service
            await self._client.delete(f"{path}/{sub_id}")
            response = await self._client.post(path, content=json.dumps(body),
                                               headers={"Content-Type": "application/ld+json"})
        if response.status_code != 201:
            raise TwinError(f"POST /subscriptions ({sub_id}): HTTP {response.status_code} {response.text[:300]}",
                            response)
        return sub_id
