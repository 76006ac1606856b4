"""The broker as the page service sees it: meters, history, power-quality events and its two subscriptions.

Every request goes through `fiware_client.AsyncNgsiLdClient`, so the same code reads the embedded broker and
Orion-LD (+ Mintaka). What is not there yet (a tenant nothing was written to, a meter that never reported, a
broker without history) reads as empty: the page shows "no data", not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from datamodels.anomaly import ANOMALY_TYPE
from datamodels.context import CORE_CONTEXT, context_for
from datamodels.der import BATTERY_TYPE, PV_TYPE
from datamodels.measures import MEASUREMENT_TYPE, device_entity_id, measurement_id
from fiware_client import AsyncNgsiLdClient, NotFound, TemporalApiMissing

log = logging.getLogger(__name__)

T = TypeVar("T")
MEASUREMENT_SUBSCRIPTION = "urn:ngsi-ld:Subscription:energytwin-web-measurements"
ANOMALY_SUBSCRIPTION = "urn:ngsi-ld:Subscription:energytwin-web-anomalies"
# Batteries and inverters (the SunSpec bridge's entities): SoC and command results live on the control centre's screen.
DER_SUBSCRIPTIONS = {BATTERY_TYPE: "urn:ngsi-ld:Subscription:energytwin-web-batteries",
                     PV_TYPE: "urn:ngsi-ld:Subscription:energytwin-web-inverters"}
FORECAST_TYPE = "EnergyForecast"  # forecasting/: written with the core @context only (docs/forecasts.md)
DEVICE_TYPE = "Device"
# What the overview needs of each meter (the meter page reads the whole entity).
OVERVIEW_ATTRS = ("totalActivePower", "totalActiveEnergyImport", "totalActiveEnergyExport", "phaseVoltage",
                  "frequency")


async def _or_empty(read: Awaitable[T], empty: T) -> T:
    """The answer, or `empty` when the broker has nothing there yet."""
    try:
        return await read
    except (NotFound, TemporalApiMissing):
        return empty


# How far back the last observations that give a device's reporting period are looked for. lastN (6) bounds the
# cost, so the window can cover slow reporters: with 2 h, a meter reporting hourly had one observation in it at
# the end of each hour, no period, and showed offline five minutes before its next reading was due.
PERIOD_WINDOW = timedelta(hours=24)


class TwinClient:
    """One tenant of one broker, in the page's terms."""

    def __init__(self, broker_url: str, tenant: str | None, timeout_s: float = 10.0, *,
                 history: Any | None = None) -> None:
        """`history` answers the history questions (an async `fiware_client.HistoryReader`: QuantumLeap in
        production); by default the broker's own NGSI-LD temporal API does."""
        self.broker_url = broker_url.rstrip("/")
        self.tenant = tenant
        self._broker = AsyncNgsiLdClient(self.broker_url, tenant, timeout=timeout_s)
        self._history = history if history is not None else self._broker

    async def close(self) -> None:
        await self._broker.close()
        if self._history is not self._broker:
            await self._history.close()

    # -- measurements ---------------------------------------------------------------------------------------
    async def measurements(self, attrs: tuple[str, ...] | None = OVERVIEW_ATTRS) -> list[dict[str, Any]]:
        """Every meter's ThreePhaseAcMeasurement of the tenant (normalized)."""
        return await _or_empty(self._broker.query_entities(type=MEASUREMENT_TYPE, attrs=attrs), [])

    async def measurement(self, device_id: str) -> dict[str, Any] | None:
        return await _or_empty(self._broker.get_entity(measurement_id(device_id)), None)

    async def history(self, device_id: str, start: datetime, attrs: tuple[str, ...], methods: tuple[str, ...],
                      period: str) -> dict[str, Any] | None:
        """Aggregated history of one meter since `start` (temporal API, one bucket per `period`)."""
        return await _or_empty(self._history.temporal_entity(
            measurement_id(device_id), timerel="after", time_at=start, attrs=attrs, options=("aggregatedValues",),
            aggr_methods=methods, aggr_period=period), None)

    async def counters_since(self, start: datetime, attrs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """min/max of energy counters since `start` for every meter (one temporal query): entity id -> attrs."""
        found = await _or_empty(self._history.query_temporal(
            type=MEASUREMENT_TYPE, timerel="after", time_at=start, attrs=attrs, options=("aggregatedValues",),
            aggr_methods=("min", "max")), [])
        return {entity["id"]: entity for entity in found}

    async def recent_times(self, since: datetime, attr: str = "totalActivePower",
                           last_n: int = 6) -> dict[str, list[str]]:
        """The last observation times of every meter since `since` (to estimate each meter's period)."""
        found = await _or_empty(self._history.query_temporal(
            type=MEASUREMENT_TYPE, timerel="after", time_at=since, attrs=(attr,), last_n=last_n,
            options=("temporalValues",)), [])
        return {entity["id"]: [t for _, t in (entity.get(attr) or {}).get("values") or []] for entity in found}

    # -- power-quality events -------------------------------------------------------------------------------
    async def open_anomalies(self) -> list[dict[str, Any]]:
        return await _or_empty(self._broker.query_entities(type=ANOMALY_TYPE, q='status=="open"'), [])

    async def anomalies_of(self, device_id: str) -> list[dict[str, Any]]:
        """Every Anomaly the analytics wrote for one meter (open and closed)."""
        device = device_entity_id(device_id)
        return await _or_empty(self._broker.query_entities(type=ANOMALY_TYPE, q=f'detectedBy=="{device}"'), [])

    async def recent_times_of(self, entity_type: str, attr: str, since: datetime,
                              last_n: int = 6) -> dict[str, list[str]]:
        """`recent_times` for any entity type (a battery's statusPercent, an inverter's activePower)."""
        found = await _or_empty(self._history.query_temporal(
            type=entity_type, timerel="after", time_at=since, attrs=(attr,), last_n=last_n,
            options=("temporalValues",)), [])
        return {entity["id"]: [t for _, t in (entity.get(attr) or {}).get("values") or []] for entity in found}

    async def hourly_counters(self, start: datetime, attrs: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every meter's energy counters since `start`, the largest value of each hour (aggregatedValues, PT1H)."""
        return await _or_empty(self._history.query_temporal(
            type=MEASUREMENT_TYPE, timerel="after", time_at=start, attrs=attrs, options=("aggregatedValues",),
            aggr_methods=("max",), aggr_period="PT1H"), [])

    # -- batteries, inverters, devices, forecasts -----------------------------------------------------------
    async def der(self, entity_type: str) -> list[dict[str, Any]]:
        """Every BatteryStatus or PhotovoltaicMeasurement of the tenant (normalized)."""
        return await _or_empty(self._broker.query_entities(type=entity_type), [])

    async def devices(self) -> list[dict[str, Any]]:
        """The SDM Device entities provisioning wrote (a meter that never reported still has one)."""
        return await _or_empty(self._broker.query_entities(type=DEVICE_TYPE), [])

    async def forecast(self, target: str, quantity: str) -> dict[str, Any] | None:
        """The current EnergyForecast of one target (`urn:ngsi-ld:EnergyForecast:<target>:<quantity>`), or None."""
        return await _or_empty(self._broker.get_entity(f"urn:ngsi-ld:{FORECAST_TYPE}:{target}:{quantity}",
                                                       context=CORE_CONTEXT), None)

    async def command(self, entity_id: str, entity_type: str, name: str, value: Any) -> None:
        """Send an IoT Agent command: an NGSI-LD partial update (PATCH) of the command attribute."""
        await self._broker.update_attrs(entity_id, {name: {"type": "Property", "value": value}},
                                        context=context_for(entity_type)[0])

    # -- subscriptions --------------------------------------------------------------------------------------
    async def ensure_subscriptions(self, endpoint: str) -> list[str]:
        """Create (or keep, or replace) the page's subscriptions (meters, events, batteries, inverters)."""
        return [
            await self._ensure(MEASUREMENT_SUBSCRIPTION, MEASUREMENT_TYPE, endpoint,
                               "energytwin live twin page: meter readings"),
            await self._ensure(ANOMALY_SUBSCRIPTION, ANOMALY_TYPE, endpoint,
                               "energytwin live twin page: power-quality events"),
            *[await self._ensure(sub_id, entity_type, endpoint, f"energytwin live twin page: {entity_type}")
              for entity_type, sub_id in DER_SUBSCRIPTIONS.items()],
        ]

    async def _ensure(self, sub_id: str, entity_type: str, endpoint: str, description: str) -> str:
        outcome = await self._broker.ensure_subscription({
            "id": sub_id,
            "type": "Subscription",
            "description": description,
            "entities": [{"type": entity_type}],
            "notification": {"format": "normalized", "endpoint": {"uri": endpoint, "accept": "application/json"}},
            "@context": context_for(entity_type),
        })
        if outcome.action == "replaced":
            log.info("subscription %s differed (%s); replaced it to notify %s", sub_id,
                     ", ".join(outcome.differences), endpoint)
        return outcome.id
