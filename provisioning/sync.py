"""Make the IoT Agent and the NGSI-LD broker match an inventory: plan (what differs), then apply.

Only the public APIs are used (agent north API on 4041, NGSI-LD `/subscriptions` on 1026), through the project's
clients (`fiware_client.IotAgentClient`, which absorbs the FIWARE agent's quirks, and `NgsiLdClient`), so the same
plan runs against the embedded stack and the FIWARE one. Read everything first, compare, then write only what
differs: a second run finds nothing to do. A device's entity name or type is not changed in place (the FIWARE
agent would keep the old entity in the broker): that device is deleted and created again.

Ownership: `--prune` removes groups and devices of the inventory's tenants that the inventory does not list, and
subscriptions whose id starts with `SUBSCRIPTION_PREFIX` (ours); other subscriptions are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

from datamodels.context import CORE_CONTEXT, context_for
from datamodels.measures import MEASUREMENT_TYPE, device_entity_id
from fiware_client import (
    FiwareError,
    IotAgentClient,
    NgsiLdClient,
    NonexistentTenant,
    NotFound,
    OperationNotSupported,
    subscription_differences,
)
from provisioning.agent_bodies import DEFAULT_RESOURCE, meter_device, service_group
from provisioning.inventory import Inventory, Meter, Site, Tenant

__all__ = ["SUBSCRIPTION_PREFIX", "Action", "FiwareError", "Plan", "Provisioner"]

SUBSCRIPTION_PREFIX = "urn:ngsi-ld:Subscription:energytwin:"
CREATE_CHUNK = 250  # devices per POST /iot/devices (the embedded agent stores a chunk all-or-nothing)
# a PUT of these leaves the old entity in the broker (iotagent-node-lib 4.14): delete + create instead
_IDENTITY = ("entity_name", "entity_type")


@dataclass
class Action:
    """One change (or the finding that nothing needs changing) for one resource."""

    verb: str  # create | update | replace | delete | unchanged
    kind: str  # group | device | subscription
    tenant: str
    key: str
    detail: str = ""
    run: Callable[[], None] | None = None
    weight: int = 1  # progress units (a chunk of device creations counts each device)


@dataclass
class Plan:
    """Every action for an inventory, in the order they must run (groups before their devices)."""

    actions: list[Action] = field(default_factory=list)

    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.verb != "unchanged"]

    def counts(self) -> dict[tuple[str, str], int]:
        """(kind, verb) -> number of resources."""
        out: dict[tuple[str, str], int] = {}
        for action in self.actions:
            out[(action.kind, action.verb)] = out.get((action.kind, action.verb), 0) + action.weight
        return out


class Provisioner:
    """Reads the live state of the agent and broker and plans the changes an inventory asks for."""

    def __init__(self, agent_url: str, broker_url: str, timeout_s: float = 30.0) -> None:
        self._agent_url, self._broker_url, self._timeout_s = agent_url, broker_url, timeout_s
        self._agents: dict[tuple[str, str], IotAgentClient] = {}
        self._brokers: dict[str, NgsiLdClient] = {}

    def north(self, tenant: Tenant) -> IotAgentClient:
        """The agent's north API for one tenant (service + service path)."""
        key = (tenant.service, tenant.service_path)
        if key not in self._agents:
            self._agents[key] = IotAgentClient(self._agent_url, *key, timeout=self._timeout_s)
        return self._agents[key]

    def broker(self, tenant: Tenant) -> NgsiLdClient:
        """The NGSI-LD broker for one tenant."""
        if tenant.service not in self._brokers:
            self._brokers[tenant.service] = NgsiLdClient(self._broker_url, tenant.service, timeout=self._timeout_s)
        return self._brokers[tenant.service]

    def close(self) -> None:
        for client in (*self._agents.values(), *self._brokers.values()):
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- planning --------------------------------------------------------------------------------------------

    def plan(self, inventory: Inventory, prune: bool = False) -> Plan:
        """Compare the inventory with what the agent and broker hold now."""
        plan = Plan()
        for tenant in inventory.tenants:
            plan.actions += list(self._plan_groups(tenant, prune))
            plan.actions += list(self._plan_devices(tenant, prune))
            plan.actions += list(self._plan_subscriptions(tenant, prune))
        return plan

    def _plan_groups(self, tenant: Tenant, prune: bool) -> Iterator[Action]:
        north = self.north(tenant)
        existing = {g["apikey"]: g for g in north.service_groups() if g.get("resource") == DEFAULT_RESOURCE}
        for group in tenant.groups:
            body = service_group(group.apikey)
            body.update(entity_type=group.entity_type, autoprovision=group.autoprovision,
                        explicitAttrs=group.explicitAttrs)
            current = existing.pop(group.apikey, None)
            label = f"apikey={group.apikey}"
            if current is None:
                yield Action("create", "group", tenant.service, label, "", _bind(north.create_service_groups, [body]))
                continue
            differs = _differences(body, current)
            if not differs:
                yield Action("unchanged", "group", tenant.service, label)
                continue
            update = {k: v for k, v in body.items() if k not in ("apikey", "resource")}
            yield Action("update", "group", tenant.service, label, ", ".join(differs),
                         _bind(north.update_service_group, DEFAULT_RESOURCE, group.apikey, update))
        if prune:
            for apikey in existing:
                yield Action("delete", "group", tenant.service, f"apikey={apikey}", "not in the inventory",
                             _bind(north.delete_service_group, DEFAULT_RESOURCE, apikey))

    def _plan_devices(self, tenant: Tenant, prune: bool) -> Iterator[Action]:
        north = self.north(tenant)
        existing = {d["device_id"]: d for d in north.devices()}
        to_create: list[dict[str, Any]] = []
        for site, meter in tenant.meters():
            body = device_body(tenant, site, meter)
            current = existing.pop(meter.device_id, None)
            if current is None:
                to_create.append(body)
                continue
            differs = _differences(body, current)
            if not differs:
                yield Action("unchanged", "device", tenant.service, meter.device_id)
            elif any(name in _IDENTITY for name in differs):
                yield Action("replace", "device", tenant.service, meter.device_id, ", ".join(differs),
                             _in_order(_bind(north.delete_device, meter.device_id),
                                       _bind(north.create_devices, [body])))
            else:
                update = {k: v for k, v in body.items() if k != "device_id"}
                yield Action("update", "device", tenant.service, meter.device_id, ", ".join(differs),
                             _bind(north.update_device, meter.device_id, update))
        for start in range(0, len(to_create), CREATE_CHUNK):
            chunk = to_create[start:start + CREATE_CHUNK]
            ids = [d["device_id"] for d in chunk]
            key = ids[0] if len(ids) == 1 else f"{ids[0]} … {ids[-1]} ({len(ids)} devices)"
            yield Action("create", "device", tenant.service, key, "", _bind(north.create_devices, chunk),
                         weight=len(chunk))
        if prune:
            for device_id in existing:
                yield Action("delete", "device", tenant.service, device_id, "not in the inventory",
                             _bind(north.delete_device, device_id))

    def _plan_subscriptions(self, tenant: Tenant, prune: bool) -> Iterator[Action]:
        if not tenant.subscribers and not prune:
            return
        existing = self._our_subscriptions(tenant)
        if existing is None:
            return  # a broker without subscriptions has none of ours to prune
        broker = self.broker(tenant)
        for subscriber in tenant.subscribers:
            body = subscription_body(tenant, subscriber.name, subscriber.url, subscriber.entity_type,
                                     subscriber.attributes, subscriber.format, subscriber.accept)
            current = existing.pop(body["id"], None)
            label = subscriber.name
            if current is None:
                yield Action("create", "subscription", tenant.service, label, subscriber.url,
                             _bind(broker.ensure_subscription, body))
                continue
            differs = subscription_differences(body, current)
            if not differs:
                yield Action("unchanged", "subscription", tenant.service, label)
                continue
            # ensure_subscription replaces (delete + create) what differs, by the same comparison
            yield Action("replace", "subscription", tenant.service, label, ", ".join(differs),
                         _bind(broker.ensure_subscription, body))
        if prune:
            for sub_id in existing:
                yield Action("delete", "subscription", tenant.service, sub_id.removeprefix(SUBSCRIPTION_PREFIX),
                             "not in the inventory", _bind(broker.delete_subscription, sub_id))

    def _our_subscriptions(self, tenant: Tenant) -> dict[str, dict[str, Any]] | None:
        """Our subscriptions in the tenant by id, each read back with its entity type's @context.

        A subscription lists its entity types compacted with the context of the request that reads it, so each
        is read with the context it was created with (as Orion-LD needs too); otherwise a type would come back as
        a full IRI and look changed on every run. A tenant the broker does not know yet has no subscriptions
        (404 NonexistentTenant, spelled NonExistingTenant by Orion-LD). None: the broker offers no subscriptions.
        """
        contexts = {subscriber.entity_type for subscriber in tenant.subscribers} or {MEASUREMENT_TYPE}
        found: dict[str, dict[str, Any]] = {}
        for entity_type in sorted(contexts):
            try:
                listed = self.broker(tenant).query_subscriptions(context=_context_of(entity_type)[0])
            except NonexistentTenant:
                return {}
            except (NotFound, OperationNotSupported):
                if tenant.subscribers:
                    raise
                return None
            for sub in listed:
                sub_id = str(sub.get("id", ""))
                if not sub_id.startswith(SUBSCRIPTION_PREFIX):
                    continue
                if _entity_types(sub) == {entity_type} or sub_id not in found:
                    found[sub_id] = sub
        return found


def _bind(function: Callable[..., Any], *args: Any) -> Callable[[], None]:
    """A request to run later, when the plan is applied."""

    def run() -> None:
        function(*args)

    return run


def _in_order(*steps: Callable[[], None]) -> Callable[[], None]:
    """One action made of several requests (delete, then create again)."""

    def run() -> None:
        for step in steps:
            step()

    return run


def device_body(tenant: Tenant, site: Site, meter: Meter) -> dict[str, Any]:
    """The agent device for a meter: the project's meter body plus its installation facts as static attributes.

    Nominal values and CT ratings go on the measurement entity (with units) because whoever reads the
    measurement (power-quality limits, dashboards) needs them next to the values.
    """
    body = meter_device(meter.device_id, tenant.apikey_of(meter))
    statics: list[dict[str, Any]] = list(body["static_attributes"])
    location = meter.location or site.location
    if location is not None:
        statics.append({"name": "location", "type": "GeoProperty", "value": location.geojson()})
    statics.append(_number("nominalVoltage", meter.nominal_voltage_v, "VLT"))
    statics.append(_number("nominalFrequency", float(meter.nominal_frequency_hz), "HTZ"))
    statics.append(_number("ctPrimaryCurrent", meter.ct_primary_a, "AMP"))
    if meter.ct_secondary_a is not None:
        statics.append(_number("ctSecondaryCurrent", meter.ct_secondary_a, "AMP"))
    statics.append({"name": "wiring", "type": "Text", "value": meter.wiring})
    if meter.overcurrent_a is not None:  # the limit the meter's overcurrent detector trips at (quality reads it)
        statics.append(_number("overcurrentLimit", meter.overcurrent_a, "AMP"))
    statics.append({"name": "site", "type": "Text", "value": site.id})
    if meter.name:
        statics.append({"name": "name", "type": "Text", "value": meter.name})
    if meter.model:
        statics.append({"name": "refDeviceModel", "type": "Relationship", "value": meter.model})
    if meter.firmware_version:
        statics.append({"name": "firmwareVersion", "type": "Text", "value": meter.firmware_version})
    body["static_attributes"] = statics
    assert body["static_attributes"][0]["value"] == device_entity_id(meter.device_id)
    return body


def _number(name: str, value: float, unit: str) -> dict[str, Any]:
    return {"name": name, "type": "Number", "value": value, "metadata": {"unitCode": {"type": "Text", "value": unit}}}


def subscription_body(tenant: Tenant, name: str, url: str, entity_type: str, attributes: list[str],
                      notify_format: str, accept: str) -> dict[str, Any]:
    """An NGSI-LD subscription as FIWARE's time-series tutorial creates it for QuantumLeap."""
    notification: dict[str, Any] = {"format": notify_format, "endpoint": {"uri": url, "accept": accept}}
    if attributes:
        notification["attributes"] = attributes
    if accept == "application/json":  # QuantumLeap reads the tenant from here when it gets no Link
        notification["endpoint"]["receiverInfo"] = [{"key": "fiware-service", "value": tenant.service}]
    return {
        "id": f"{SUBSCRIPTION_PREFIX}{tenant.service}:{name}",
        "type": "Subscription",
        "description": f"energytwin provisioning: notify {name}",
        "entities": [{"type": entity_type}],
        "notification": notification,
        "@context": _context_of(entity_type),
    }


def _context_of(entity_type: str) -> list[str]:
    """The project's @context for the type; the core context alone for a type the project does not model."""
    try:
        return context_for(entity_type)
    except KeyError:
        return [CORE_CONTEXT]


def _entity_types(subscription: dict[str, Any]) -> set[str]:
    return {str(selector.get("type")) for selector in subscription.get("entities", []) if isinstance(selector, dict)}


def _differences(desired: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Fields of `desired` the live resource does not have with the same value."""
    return [key for key, value in desired.items() if current.get(key) != value]
