"""The agent's registry of service groups and devices, in SQLite under the data directory.

Provisioning must survive a restart (the FIWARE agent keeps it in MongoDB), and the MQTT thread reads what the
HTTP thread writes, so every access goes through one connection guarded by a lock. Bodies are stored as the JSON
the API accepted; the columns are only the keys lookups need.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import errors
from .models import AttributeSpec, Device, DeviceUpdate, GroupUpdate, ServiceGroup, StaticAttribute

DEFAULT_ENTITY_TYPE = "Thing"  # iotagent-node-lib `defaultType` when neither device nor group name one
DEFAULT_RESOURCE = "/iot/json"  # IOTA_DEFAULT_RESOURCE: preferred when several groups share an apikey
NGSI_LD_URN = "urn:ngsi-ld:"
ALL_SUBSERVICES = "/*"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS service_group (
    service TEXT NOT NULL, subservice TEXT NOT NULL, resource TEXT NOT NULL, apikey TEXT NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (resource, apikey));
CREATE INDEX IF NOT EXISTS service_group_apikey ON service_group (apikey);
CREATE TABLE IF NOT EXISTS device (
    service TEXT NOT NULL, subservice TEXT NOT NULL, device_id TEXT NOT NULL, apikey TEXT,
    body TEXT NOT NULL, created INTEGER NOT NULL, PRIMARY KEY (service, subservice, device_id));
CREATE INDEX IF NOT EXISTS device_id_apikey ON device (device_id, apikey);
"""


@dataclass(frozen=True)
class ResolvedDevice:
    """Everything the mapper needs about the sender of a measure: device settings merged over its group's."""

    service: str
    subservice: str
    device_id: str
    entity_id: str
    entity_type: str
    timestamp: bool | None  # None: neither device nor group set it; the agent default applies
    attributes: tuple[AttributeSpec, ...]  # device entries first, so they win over the group's
    static_attributes: tuple[StaticAttribute, ...]  # device entries first, so they win over the group's
    explicit_attrs: bool | frozenset[str] = False  # True: provisioned only; a set: those names / object ids
    autoprovisioned: bool = False  # this very lookup created the device (the group allowed it)


class UnknownSender(Exception):
    """A measure's (apikey, device_id) does not lead to a provisioned device; `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def entity_id_for(entity_name: str, entity_type: str) -> str:
    """The NGSI-LD id the agent writes: names not already URNs become `urn:ngsi-ld:<type>:<name>` (node-lib LD)."""
    if entity_name.startswith(NGSI_LD_URN):
        return entity_name
    return f"{NGSI_LD_URN}{entity_type}:{entity_name}"


def parse_explicit_attrs(value: bool | str | None) -> bool | frozenset[str]:
    """`explicitAttrs` as the mapper uses it: False, True, or the set of names / object ids a JEXL array lists.

    The FIWARE agent evaluates the string as a JEXL expression; the form used in practice is a literal array,
    e.g. `"['v', {object_id:'f'}]"`, which is what this accepts. Any other expression is read as `true`
    (only provisioned attributes pass), the safe side of "explicit".
    """
    if value is None or value is False:
        return False
    if value is True:
        return True
    text = value.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    as_json = re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:", r'\1"\2":', text.replace("'", '"'))
    try:
        items = json.loads(as_json)
    except json.JSONDecodeError:
        return True
    if not isinstance(items, list):
        return True
    names: set[str] = set()
    for item in items:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, dict) and isinstance(item.get("object_id"), str):
            names.add(item["object_id"])
    return frozenset(names)


class Registry:
    """Service groups and devices, keyed like the FIWARE agent keys them.

    `resolve()` runs once per MQTT message, so its answers are cached in memory; every write through this class
    clears the cache (the registry is the only writer of its file), so a provisioning change applies to the next
    message.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._cache: dict[tuple[str, str], ResolvedDevice | UnknownSender] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _invalidate(self) -> None:
        """Called under the lock by every write: cached answers may be stale now."""
        self._cache.clear()
        self._generation += 1

    def close(self) -> None:
        """Close the database; the registry must not be used afterwards."""
        with self._lock:
            self._db.close()

    # ---- service groups -------------------------------------------------------------------------------------

    def create_groups(self, service: str, subservice: str, groups: list[ServiceGroup]) -> None:
        """Store groups atomically; DUPLICATE_GROUP if any (resource, apikey) exists or repeats in the request."""
        with self._lock:
            self._invalidate()
            seen: set[tuple[str, str]] = set()
            for group in groups:
                key = (group.resource, group.apikey)
                exists = self._db.execute(
                    "SELECT 1 FROM service_group WHERE resource=? AND apikey=?", key
                ).fetchone()
                if exists or key in seen:
                    raise errors.duplicate_group(*key)
                seen.add(key)
            self._db.execute("BEGIN")
            try:
                for group in groups:
                    self._db.execute(
                        "INSERT INTO service_group VALUES (?,?,?,?,?)",
                        (service, subservice, group.resource, group.apikey, json.dumps(group.to_json())),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def list_groups(
        self, service: str, subservice: str, limit: int | None = None, offset: int = 0
    ) -> list[dict]:
        """Groups of a service (all its servicepaths when `subservice` is `/*`), in API form."""
        sql = "SELECT service, subservice, body FROM service_group WHERE service=?"
        args: list[Any] = [service]
        if subservice != ALL_SUBSERVICES:
            sql += " AND subservice=?"
            args.append(subservice)
        sql += " ORDER BY rowid LIMIT ? OFFSET ?"
        args += [-1 if limit is None else limit, offset]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{**json.loads(body), "service": svc, "subservice": sub} for svc, sub, body in rows]

    def update_group(
        self, service: str, subservice: str, resource: str, apikey: str, update: GroupUpdate
    ) -> None:
        """Merge `update` into the group; DEVICE_GROUP_NOT_FOUND when it is not in this service/servicepath."""
        with self._lock:
            self._invalidate()
            row = self._db.execute(
                "SELECT body FROM service_group WHERE service=? AND subservice=? AND resource=? AND apikey=?",
                (service, subservice, resource, apikey),
            ).fetchone()
            if row is None:
                raise errors.group_not_found(resource, apikey)
            body = {**json.loads(row[0]), **update.to_json(), "resource": resource, "apikey": apikey}
            ServiceGroup.model_validate(body)  # the merge must still be a valid group
            self._db.execute(
                "UPDATE service_group SET body=? WHERE resource=? AND apikey=?",
                (json.dumps(body), resource, apikey),
            )

    def delete_group(self, service: str, subservice: str, resource: str, apikey: str) -> None:
        """Remove a group (its devices stay, as in the FIWARE agent); DEVICE_GROUP_NOT_FOUND if absent."""
        with self._lock:
            self._invalidate()
            cursor = self._db.execute(
                "DELETE FROM service_group WHERE service=? AND subservice=? AND resource=? AND apikey=?",
                (service, subservice, resource, apikey),
            )
            if cursor.rowcount == 0:
                raise errors.group_not_found(resource, apikey)

    def count_groups(self) -> int:
        """Number of groups across all services (a gauge on /metrics)."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM service_group").fetchone()[0]

    # ---- devices ---------------------------------------------------------------------------------------------

    def create_devices(self, service: str, subservice: str, devices: list[Device]) -> None:
        """Store devices atomically, filling entity_type / entity_name defaults as the FIWARE agent does."""
        with self._lock:
            self._invalidate()
            seen: set[str] = set()
            for device in devices:
                exists = self._db.execute(
                    "SELECT 1 FROM device WHERE service=? AND subservice=? AND device_id=?",
                    (service, subservice, device.device_id),
                ).fetchone()
                if exists or device.device_id in seen:
                    raise errors.duplicate_device(device.device_id)
                seen.add(device.device_id)
            rows = []
            for device in devices:
                body = device.to_json()
                group = self._group_for_device(service, subservice, device.apikey, device.entity_type)
                entity_type = device.entity_type or (group or {}).get("entity_type") or DEFAULT_ENTITY_TYPE
                body["entity_type"] = entity_type
                # node-lib in LD mode names the entity urn:ngsi-ld:<type>:<id> when no entity_name is given.
                body.setdefault("entity_name", f"{NGSI_LD_URN}{entity_type}:{device.device_id}")
                rows.append((service, subservice, device.device_id, device.apikey, json.dumps(body)))
            self._db.execute("BEGIN")
            try:
                for row in rows:
                    self._db.execute(
                        "INSERT INTO device VALUES (?,?,?,?,?,(SELECT coalesce(max(created),0)+1 FROM device))",
                        row,
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def list_devices(
        self, service: str, subservice: str, limit: int | None = None, offset: int = 0
    ) -> tuple[int, list[dict]]:
        """(total count, one page of devices in API form) for a service / servicepath."""
        where = "service=?"
        args: list[Any] = [service]
        if subservice != ALL_SUBSERVICES:
            where += " AND subservice=?"
            args.append(subservice)
        with self._lock:
            total = self._db.execute(f"SELECT count(*) FROM device WHERE {where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT service, subservice, body FROM device WHERE {where} ORDER BY created LIMIT ? OFFSET ?",
                [*args, -1 if limit is None else limit, offset],
            ).fetchall()
        return total, [_device_api_form(svc, sub, body) for svc, sub, body in rows]

    def get_device(self, service: str, subservice: str, device_id: str) -> dict:
        """One device in API form; DEVICE_NOT_FOUND when absent from this service / servicepath."""
        with self._lock:
            row = self._db.execute(
                "SELECT service, subservice, body FROM device WHERE service=? AND subservice=? AND device_id=?",
                (service, subservice, device_id),
            ).fetchone()
        if row is None:
            raise errors.device_not_found(device_id)
        return _device_api_form(*row)

    def update_device(self, service: str, subservice: str, device_id: str, update: DeviceUpdate) -> None:
        """Merge `update` into the device; the FIWARE agent refuses a body that names a device_id."""
        if update.device_id is not None:
            raise errors.bad_request("Can't change the ID of a preprovisioned device")
        with self._lock:
            self._invalidate()
            row = self._db.execute(
                "SELECT body FROM device WHERE service=? AND subservice=? AND device_id=?",
                (service, subservice, device_id),
            ).fetchone()
            if row is None:
                raise errors.device_not_found(device_id)
            body = {**json.loads(row[0]), **update.to_json()}
            Device.model_validate(body)
            self._db.execute(
                "UPDATE device SET body=?, apikey=? WHERE service=? AND subservice=? AND device_id=?",
                (json.dumps(body), body.get("apikey"), service, subservice, device_id),
            )

    def delete_device(self, service: str, subservice: str, device_id: str, apikey: str | None = None) -> None:
        """Remove a device (only the one with `apikey` when given); DEVICE_NOT_FOUND when absent."""
        sql = "DELETE FROM device WHERE service=? AND subservice=? AND device_id=?"
        args: list[Any] = [service, subservice, device_id]
        if apikey is not None:
            sql += " AND (apikey=? OR apikey IS NULL)"
            args.append(apikey)
        with self._lock:
            self._invalidate()
            cursor = self._db.execute(sql, args)
        if cursor.rowcount == 0:
            raise errors.device_not_found(device_id)

    def delete_devices(self, service: str, subservice: str, keys: list[tuple[str, str | None]]) -> list[str]:
        """`/iot/op/delete`: remove every (device_id, apikey) found; return the ids that were not found."""
        missing = []
        for device_id, apikey in keys:
            try:
                self.delete_device(service, subservice, device_id, apikey)
            except errors.ProvisioningError:
                missing.append(device_id)
        return missing

    def count_devices(self) -> int:
        """Number of devices across all services (a gauge on /metrics)."""
        with self._lock:
            return self._db.execute("SELECT count(*) FROM device").fetchone()[0]

    # ---- the south side's question ---------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Grows with every write: a reader holding derived state (the command relay) knows when to refresh."""
        return self._generation

    def command_devices(self) -> list[tuple[str, ResolvedDevice, tuple[str, ...]]]:
        """Every device provisioned with `commands`: (the apikey its commands go to, the device as `resolve()`
        sees it, the command names). A device without its own apikey takes its group's."""
        with self._lock:
            rows = self._db.execute("SELECT service, subservice, apikey, body FROM device ORDER BY created").fetchall()
        out = []
        for service, subservice, apikey, body_text in rows:
            body = json.loads(body_text)
            names = tuple(c["name"] for c in body.get("commands") or []
                          if isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"])
            if not names:
                continue
            if apikey is None:
                with self._lock:
                    group = self._group_for_device(service, subservice, None, body.get("entity_type"))
                apikey = group.get("apikey") if group else None
            if apikey is None:
                continue
            try:
                out.append((apikey, self.resolve(apikey, body["device_id"]), names))
            except UnknownSender:
                continue
        return out

    def resolve(self, apikey: str, device_id: str) -> ResolvedDevice:
        """The device a measure on `/json/<apikey>/<device_id>/attrs` belongs to, merged with its group.

        A device provisioned with this apikey matches directly; a device provisioned without one belongs to the
        group holding the apikey when both share service and servicepath (how FIWARE tutorials provision). An
        unknown device of a group on the default resource is autoprovisioned unless the group says
        `autoprovision: false` (the FIWARE agent's default is to autoprovision).
        Raises UnknownSender with reason `unknown_apikey` or `unknown_device`.
        """
        key = (apikey, device_id)
        cached = self._cache.get(key)
        if cached is None:
            with self._lock:
                generation = self._generation
                cached = self._lookup(apikey, device_id)
                if generation == self._generation and not (
                    isinstance(cached, ResolvedDevice) and cached.autoprovisioned
                ):
                    if len(self._cache) > 200_000:  # random device ids must not grow memory without end
                        self._cache.clear()
                    self._cache[key] = cached
        if isinstance(cached, UnknownSender):
            raise cached
        return cached

    def _lookup(self, apikey: str, device_id: str) -> ResolvedDevice | UnknownSender:
        """resolve() without the cache; called under the lock."""
        group_row = self._db.execute(
            "SELECT service, subservice, body FROM service_group WHERE apikey=? "
            "ORDER BY resource != ?, rowid LIMIT 1",
            (apikey, DEFAULT_RESOURCE),
        ).fetchone()
        row = self._db.execute(
            "SELECT service, subservice, body FROM device WHERE device_id=? AND apikey=? LIMIT 1",
            (device_id, apikey),
        ).fetchone()
        if row is None and group_row is not None:
            row = self._db.execute(
                "SELECT service, subservice, body FROM device "
                "WHERE device_id=? AND apikey IS NULL AND service=? AND subservice=? LIMIT 1",
                (device_id, group_row[0], group_row[1]),
            ).fetchone()
        autoprovisioned = False
        if row is None:
            if group_row is None:
                return UnknownSender("unknown_apikey", f"no service group or device has apikey {apikey!r}")
            group_body = json.loads(group_row[2])
            if group_body.get("autoprovision") is False or group_body.get("resource") != DEFAULT_RESOURCE:
                return UnknownSender(
                    "unknown_device",
                    f"device {device_id!r} is not provisioned in service {group_row[0]!r} {group_row[1]!r} "
                    "and its group does not autoprovision",
                )
            try:
                row = self._autoprovision(group_row[0], group_row[1], group_body, device_id)
            except ValueError as exc:
                return UnknownSender("unknown_device", f"device {device_id!r} cannot be autoprovisioned: {exc}")
            autoprovisioned = True
        service, subservice, body_text = row
        device = Device.model_validate(json.loads(body_text))
        group = ServiceGroup.model_validate(json.loads(group_row[2])) if group_row is not None else None
        if group is not None and (group_row[0], group_row[1]) != (service, subservice):
            group = None  # the apikey's group belongs to another tenant: do not mix its settings in
        entity_type = device.entity_type or (group.entity_type if group else None) or DEFAULT_ENTITY_TYPE
        entity_name = device.entity_name or f"{NGSI_LD_URN}{entity_type}:{device_id}"
        timestamp = device.timestamp if device.timestamp is not None else (group.timestamp if group else None)
        explicit = device.explicitAttrs if device.explicitAttrs is not None else (
            group.explicitAttrs if group else None
        )
        return ResolvedDevice(
            service=service,
            subservice=subservice,
            device_id=device_id,
            entity_id=entity_id_for(entity_name, entity_type),
            entity_type=entity_type,
            timestamp=timestamp,
            attributes=tuple(device.attributes) + (tuple(group.attributes) if group else ()),
            static_attributes=tuple(device.static_attributes)
            + (tuple(group.static_attributes) if group else ()),
            explicit_attrs=parse_explicit_attrs(explicit),
            autoprovisioned=autoprovisioned,
        )

    def _autoprovision(
        self, service: str, subservice: str, group: dict[str, Any], device_id: str
    ) -> tuple[str, str, str]:
        """Register an unknown device of an autoprovisioning group, as node-lib does on its first measure."""
        entity_type = group.get("entity_type") or DEFAULT_ENTITY_TYPE
        body = {
            "device_id": device_id,
            "apikey": group["apikey"],
            "entity_name": f"{NGSI_LD_URN}{entity_type}:{device_id}",
            "entity_type": entity_type,
            "protocol": "IoTA-JSON",
            "transport": "MQTT",
        }
        Device.model_validate(body)  # a device id with topic characters cannot get here, but check anyway
        text = json.dumps(body)
        self._db.execute(
            "INSERT INTO device VALUES (?,?,?,?,?,(SELECT coalesce(max(created),0)+1 FROM device))",
            (service, subservice, device_id, group["apikey"], text),
        )
        self._invalidate()  # negative answers for this device are cached
        return service, subservice, text

    def _group_for_device(
        self, service: str, subservice: str, apikey: str | None, entity_type: str | None
    ) -> dict | None:
        """The group whose defaults a new device inherits: by apikey, else by type, else the only one."""
        rows = self._db.execute(
            "SELECT body FROM service_group WHERE service=? AND subservice=? ORDER BY rowid",
            (service, subservice),
        ).fetchall()
        groups = [json.loads(body) for (body,) in rows]
        for key, value in (("apikey", apikey), ("entity_type", entity_type)):
            if value is not None:
                for group in groups:
                    if group.get(key) == value:
                        return group
        return groups[0] if len(groups) == 1 else None


def _device_api_form(service: str, subservice: str, body_text: str) -> dict:
    """A stored device as the FIWARE agent returns it (`toProvisioningAPIFormat`): service, service_path, lists."""
    body = json.loads(body_text)
    body["service"] = service
    body["service_path"] = subservice
    for key in ("attributes", "lazy", "commands", "static_attributes"):
        body.setdefault(key, [])
    return body
