"""`energytwin provision --check`: does the IoT Agent write to this broker, with the project's @context?

The FIWARE IoT Agent in NGSI-LD mode sends `Content-Type: application/ld+json` and puts `IOTA_JSON_LD_CONTEXT` in
each entity's `@context`; unset, there is no `@context` at all, and Orion-LD (like the embedded broker) refuses
the write, so meters publish and nothing reaches the twin. Its north API does not show its configuration
(`/iot/about` has versions only), so the check makes the agent write, and reads what arrived:

1. a probe device is created in the inventory's first tenant (`energytwin-check-<random>`, type
   `EnergytwinWriteCheck`);
2. it is PUT twice, each time with a static attribute of a new name. iotagent-node-lib upserts a PUT's new
   attributes to its broker before storing them; the first upsert creates the entity and the agent takes the
   broker's 201 for a failure (ENTITY_GENERIC_ERROR), the second one finds the entity and succeeds. The second
   attribute is `refDevice`, a term the SDM Energy context maps to its own IRI;
3. the entity is read from `--broker-url` without a user context, so attribute names come back expanded: the
   Energy IRI of `refDevice` proves the agent wrote with the project's context; the core context's default
   vocabulary (which a broker compacts back to `refDevice`) means some other context; no entity means the agent could not write (no context) or writes to
   another broker;
4. the probe device and entity are deleted.

The embedded agent (its `/iot/about` has an `energytwin` field) always sends the project's per-type context and
does not write on PUT; for it the check reads the broker health the agent reports.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from datamodels.context import CORE_CONTEXT, ENERGY_CONTEXT, load_vendored
from fiware_client import IotAgentClient, IotAgentError, NgsiLdClient, NotFound
from provisioning.inventory import Tenant

PROBE_TYPE = "EnergytwinWriteCheck"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


@dataclass
class CheckResult:
    """What the check found: `ok`, the lines to print, and which agent answered."""

    ok: bool
    agent: str
    findings: list[str] = field(default_factory=list)


def _energy_iri(term: str) -> str:
    return str(load_vendored(ENERGY_CONTEXT)["@context"][term])


def check_agent_writes(agent_url: str, broker_url: str, tenant: Tenant, timeout_s: float = 30.0) -> CheckResult:
    """Run the probe described in the module docstring; never leaves the probe behind."""
    with IotAgentClient(agent_url, tenant.service, tenant.service_path, timeout=timeout_s) as north, \
            NgsiLdClient(broker_url, tenant.service, timeout=timeout_s) as broker:
        about = north.about()
        if "energytwin" in about:
            health = about.get("health", {})
            broker_state = health.get("broker", "unknown")
            return CheckResult(
                broker_state == "up", f"embedded energytwin agent {about['energytwin']}",
                [f"writes every entity with the project's @context; its broker is {broker_state}"])
        name = f"FIWARE IoT Agent (node-lib {about.get('libVersion', '?')}, {about.get('version', '?')})"
        return _probe_fiware_agent(north, broker, tenant, name)


def _probe_fiware_agent(north: IotAgentClient, broker: NgsiLdClient, tenant: Tenant, agent: str) -> CheckResult:
    device_id = f"energytwin-check-{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:{PROBE_TYPE}:{device_id}"
    checked = {"name": "checkedBy", "type": "Text", "value": "energytwin provision --check"}
    relationship = {"name": "refDevice", "type": "Relationship", "value": f"urn:ngsi-ld:Device:{device_id}"}
    put_errors: list[str] = []
    north.create_devices([{"device_id": device_id, "entity_name": entity_id, "entity_type": PROBE_TYPE,
                           "timestamp": False, "protocol": "IoTA-JSON", "transport": "MQTT"}])
    try:
        for statics in ([checked], [checked, relationship]):
            try:
                north.update_device(device_id, {"static_attributes": statics}, again=False)
            except IotAgentError as exc:
                put_errors.append(exc.name or str(exc.status))
        entity: dict[str, Any] | None
        try:  # read without a user context: attribute names come back as the IRIs they were stored under
            entity = broker.get_entity(entity_id, context=CORE_CONTEXT)
        except NotFound:  # no such entity, or not even the tenant
            entity = None
    finally:
        try:
            north.delete_device(device_id, missing_ok=True)
        finally:
            broker.delete_entity(entity_id, missing_ok=True)
    return _verdict(agent, entity, put_errors, broker.base_url)


def _verdict(agent: str, entity: dict | None, put_errors: list[str], broker_url: str) -> CheckResult:
    if entity is None or len(put_errors) == 2:
        return CheckResult(False, agent, [
            (f"the agent did not write its probe entity to {broker_url} (its answers: "
             f"{', '.join(put_errors) or 'accepted'})"),
            ("most likely IOTA_JSON_LD_CONTEXT is unset: the agent then sends application/ld+json without "
             "@context, which Orion-LD and the embedded broker refuse; set it as iot_agent_config/iotagent.env does"),
            "otherwise the agent writes to another broker: compare its IOTA_CB_HOST/IOTA_CB_PORT with --broker-url",
        ])
    energy, default = _energy_iri("refDevice"), f"{DEFAULT_VOCAB}refDevice"
    if energy in entity:
        return CheckResult(True, agent, [f"writes to {broker_url} with the SDM Energy @context (refDevice -> {energy})"])
    if default in entity or "refDevice" in entity:  # the core @vocab IRI, compacted or not
        return CheckResult(False, agent, [
            f"writes to {broker_url}, but with a context that does not define the SDM terms (refDevice -> {default})",
            f"set IOTA_JSON_LD_CONTEXT={ENERGY_CONTEXT}: dashboards and analytics query the SDM names",
        ])
    return CheckResult(False, agent, [
        f"writes to {broker_url}, but refDevice arrived as none of the expected names: {sorted(entity)}",
    ])
