"""IoT Agent provisioning bodies for the bridge's devices, from the DER table; sent through fiware_client.

Each physical device becomes one agent device per entity it has (`<id>-pv` -> PhotovoltaicMeasurement,
`<id>-battery` -> BatteryStatus), with the DER table's attributes (object_id -> name, unitCode metadata), its
commands (the IoT Agent provisioning API's `commands`), and static attributes the SDM schemas require: the
PV entity's `location` and `dateEnergyMeteringStarted`, and the reference to the physical inverter
(`refPhotovoltaicDevice` / `refBattery` -> `urn:ngsi-ld:Device:<id>`). The bodies are those of the FIWARE IoT
Agent north API, so production's iotagent-json takes them unchanged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from datamodels.der import (
    BATTERY_TYPE,
    PV_TYPE,
    agent_device_id,
    battery_entity_id,
    commands_of,
    der_device_entity_id,
    measures_of,
    pv_entity_id,
)
from datamodels.measures import measurement_id
from fiware_client import IotAgentClient, IotAgentError

from .site import GeoPoint

log = logging.getLogger(__name__)

RESOURCE = "/iot/json"


def service_group(apikey: str) -> dict[str, Any]:
    """The group the bridge's devices publish under: timestamps from the bridge, no autoprovisioning."""
    return {"apikey": apikey, "resource": RESOURCE, "entity_type": PV_TYPE, "timestamp": True,
            "transport": "MQTT", "protocol": "IoTA-JSON", "autoprovision": False}


def device_body(site_device: str, entity_type: str, apikey: str, location: GeoPoint,
                metering_started: str | None = None, meter: str | None = None) -> dict[str, Any]:
    """The agent device for one of a physical device's entities."""
    attributes = []
    for measure in measures_of(entity_type):
        entry: dict[str, Any] = {"object_id": measure.object_id, "name": measure.attribute,
                                 "type": measure.value_type}
        if measure.unit_code:
            entry["metadata"] = {"unitCode": {"type": "Text", "value": measure.unit_code}}
        attributes.append(entry)
    physical = der_device_entity_id(site_device)
    if entity_type == PV_TYPE:
        entity_name = pv_entity_id(site_device)
        started = metering_started or datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        statics = [
            {"name": "refPhotovoltaicDevice", "type": "Relationship", "value": physical},
            {"name": "location", "type": "geo:json", "value": location.model_dump(mode="json")},
            {"name": "dateEnergyMeteringStarted", "type": "DateTime", "value": started},
        ]
    else:
        entity_name = battery_entity_id(site_device)
        statics = [
            {"name": "refBattery", "type": "Relationship", "value": physical},
            {"name": "location", "type": "geo:json", "value": location.model_dump(mode="json")},
        ]
        if meter:  # the home's grid meter (site.yaml `meter:`), read by the fleet controller
            statics.append({"name": "refMeter", "type": "Relationship", "value": measurement_id(meter)})
    return {
        "device_id": agent_device_id(site_device, entity_type),
        "entity_name": entity_name,
        "entity_type": entity_type,
        "apikey": apikey,
        "protocol": "IoTA-JSON",
        "transport": "MQTT",
        "timestamp": True,
        "attributes": attributes,
        "commands": [{"object_id": c.name, "name": c.name, "type": "command"} for c in commands_of(entity_type)],
        "static_attributes": statics,
    }


def ensure_provisioned(agent: IotAgentClient, apikey: str, bodies: list[dict[str, Any]]) -> list[str]:
    """Create the group and any missing device (existing ones are updated to the bodies); what changed."""
    changed = []
    groups = agent.service_groups()
    if not any(g.get("apikey") == apikey and g.get("resource") == RESOURCE for g in groups):
        try:
            agent.create_service_groups([service_group(apikey)])
            changed.append(f"created service group {apikey}")
        except IotAgentError as exc:  # another bridge of the site created it between our look and our POST
            if exc.name != "DUPLICATE_GROUP":
                raise
    for body in bodies:
        existing = agent.find_device(body["device_id"])
        if existing is None:
            agent.create_devices([body])
            changed.append(f"created device {body['device_id']}")
            continue
        wanted = {key: body[key] for key in ("attributes", "commands", "entity_type", "entity_name")}
        if any(existing.get(key) != value for key, value in wanted.items()):
            try:
                agent.update_device(body["device_id"], wanted)
                changed.append(f"updated device {body['device_id']}")
            except IotAgentError as exc:
                log.warning("device %s: the agent refused the update (%s); keeping it as provisioned",
                            body["device_id"], exc)
    return changed


__all__ = ["BATTERY_TYPE", "PV_TYPE", "device_body", "ensure_provisioned", "service_group"]
