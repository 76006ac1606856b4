"""IoT Agent provisioning bodies (service groups, devices) derived from the measure table.

The same bodies go to the embedded agent and to the production FIWARE IoT Agent JSON, so the attribute mapping
(object id -> attribute, unitCode) is never written by hand anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from datamodels.measures import MEASUREMENT_TYPE, MEASURES, device_entity_id, measurement_id

DEFAULT_RESOURCE = "/iot/json"  # IOTA_DEFAULT_RESOURCE of iotagent-json; MQTT autoprovisioning keys on it


def measure_attributes() -> list[dict]:
    """Group `attributes` entries for every measure of the table, with the unitCode as NGSI-LD metadata."""
    attributes = []
    for measure in MEASURES:
        entry: dict = {"object_id": measure.object_id, "name": measure.attribute, "type": "Property"}
        if measure.unit_code:
            entry["metadata"] = {"unitCode": {"type": "Text", "value": measure.unit_code}}
        attributes.append(entry)
    return attributes


@dataclass(frozen=True)
class Site:
    """Who owns the meters: the IoT Agent service (= NGSI-LD tenant) and service path."""

    service: str
    service_path: str = "/"

    @property
    def headers(self) -> dict[str, str]:
        return {"fiware-service": self.service, "fiware-servicepath": self.service_path}


def service_group(apikey: str, *, cb_host: str | None = None) -> dict:
    """A service group for meters: ThreePhaseAcMeasurement entities, meter timestamps, MQTT transport."""
    group: dict = {
        "apikey": apikey,
        "resource": DEFAULT_RESOURCE,
        "entity_type": MEASUREMENT_TYPE,
        "timestamp": True,
        "transport": "MQTT",
        "protocol": "IoTA-JSON",
        # The FIWARE default is to autoprovision unknown device ids; meters are registered from the inventory,
        # so a typo'd or foreign device id must be rejected (and logged), not become a new entity.
        "autoprovision": False,
        "attributes": measure_attributes(),
    }
    if cb_host:
        group["cbHost"] = cb_host
    return group


def meter_device(device_id: str, apikey: str) -> dict:
    """A device entry for one meter, its entity named as docs/architecture.md ("Identifiers") fixes."""
    return {
        "device_id": device_id,
        "entity_name": measurement_id(device_id),
        "entity_type": MEASUREMENT_TYPE,
        "apikey": apikey,
        "protocol": "IoTA-JSON",
        "transport": "MQTT",
        "timestamp": True,
        # The measurement points to the meter's SDM Device; the embedded agent keeps that Device current.
        "static_attributes": [
            {"name": "refDevice", "type": "Relationship", "value": device_entity_id(device_id)},
        ],
    }
