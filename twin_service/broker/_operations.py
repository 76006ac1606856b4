"""What each write means: create, upsert, append, update, partial update, merge, replace, delete, batches.

Kept apart from HTTP so the semantics read in one place, and apart from SQL. Every function runs inside the
caller's transaction (`Tx`), records history for the attributes it changes and notes a `Change` that the
subscription manager turns into notifications once the transaction has committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._context import ActiveContext
from ._errors import NgsiLdError, bad_request, not_found
from ._model import (
    VALUE_MEMBER,
    VALUE_MEMBERS,
    Entity,
    attribute_name,
    now_iso,
    parse_attribute,
    parse_entity,
    previous_member,
)
from ._store import Store

log = logging.getLogger(__name__)

NULL = "urn:ngsi-ld:null"  # merge-patch: this value deletes the attribute
_SYSTEM = ("createdAt", "modifiedAt")


class UpsertMode(str, Enum):
    """`options=` of a batch upsert: replace the whole entity (the default) or merge attributes into it."""

    REPLACE = "replace"
    UPDATE = "update"


@dataclass(frozen=True)
class Change:
    """One committed change of one entity: what subscriptions are matched against.

    The kinds follow the notification triggers of ETSI GS CIM 009 V1.8.1 §5.2.12: entity created / updated /
    deleted, attributes created (`new_attrs`), updated (`attrs` minus `new_attrs`) or deleted (`deleted_attrs`).
    """

    tenant: str
    entity: Entity  # the state after the write (before it, for a deleted entity)
    attrs: frozenset[str]  # expanded names of the attributes written
    created: bool = False
    new_attrs: frozenset[str] = frozenset()  # of `attrs`, those the entity did not have before
    deleted_attrs: frozenset[str] = frozenset()
    deleted: bool = False
    at: str = ""  # when (deletedAt of what was deleted)
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)  # overwritten attributes as they were

    def notified(self, show_changes: bool = False) -> Entity:
        """The entity a notification about this change carries (§5.3.1: deletions as deletedAt/urn:ngsi-ld:null;
        with `showChanges`, §5.2.14, each changed attribute also carries its previous value)."""
        if self.deleted:
            return Entity(self.entity.id, self.entity.type, {}, deleted_at=self.at)
        if not self.deleted_attrs and not (show_changes and self.previous):
            return self.entity
        attrs = dict(self.entity.attrs)
        for name in self.deleted_attrs:
            attrs[name] = {"type": "Property", "value": NULL, "deletedAt": self.at}
        if show_changes:
            for name, before in self.previous.items():
                now = attrs.get(name)
                if now is None:
                    continue
                member = VALUE_MEMBER.get(before.get("type", "Property"), "value")
                if before.get(member) != now.get(VALUE_MEMBER.get(now.get("type", "Property"), "value")):
                    attrs[name] = {**now, previous_member(member): before.get(member)}
        return Entity(self.entity.id, self.entity.type, attrs, self.entity.created_at, self.entity.modified_at)


@dataclass
class Tx:
    """A write transaction: the store and the changes it made (published after COMMIT)."""

    store: Store
    changes: list[Change] = field(default_factory=list)


@dataclass
class BatchResult:
    """Outcome of a batch: ids created (in order, once each), ids that succeeded, per-entity errors."""

    created: list[str] = field(default_factory=list)
    success: list[str] = field(default_factory=list)
    errors: list[tuple[str, NgsiLdError]] = field(default_factory=list)


@dataclass
class UpdateResult:
    """Outcome of append/update: attributes updated and those not updated with the reason."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)


def _existing(tx: Tx, tenant: str, entity_id: str) -> Entity:
    current = tx.store.get_entity(tenant, entity_id)
    if current is None:
        raise not_found(entity_id)
    return current


def _commit(tx: Tx, tenant: str, entity: Entity, written: dict[str, dict[str, Any]], operation: str,
            now: str, deleted: frozenset[str] = frozenset(), prior: dict[str, dict[str, Any]] | None = None) -> None:
    """Stamp, store and record the attributes written into an existing entity (`deleted`: removed before;
    `prior`: the attributes before a replace emptied them, for what notifications call created vs updated)."""
    old = entity.attrs if prior is None else prior
    new_attrs = frozenset(name for name in written if name not in old)
    before = {name: old[name] for name in written if name in old}
    for name, attribute in written.items():
        previous = entity.attrs.get(name)
        attribute["createdAt"] = (previous["createdAt"] if previous and "createdAt" in previous
                                  else attribute.get("createdAt", now))
        attribute["modifiedAt"] = now
        entity.attrs[name] = attribute
    entity.modified_at = now
    tx.store.update_entity(tenant, entity)
    tx.store.record_instances(tenant, entity, written, operation, now)
    tx.changes.append(Change(tenant, entity, frozenset(written), new_attrs=new_attrs,
                             deleted_attrs=deleted - frozenset(written), at=now, previous=before))


def create_entity(tx: Tx, tenant: str, entity: Entity) -> None:
    """Create an entity; 409 AlreadyExists when the id is taken in this tenant."""
    if tx.store.get_entity(tenant, entity.id) is not None:
        raise NgsiLdError("AlreadyExists", "Entity already exists", entity.id)
    tx.store.ensure_tenant(tenant)
    _insert(tx, tenant, entity, now_iso())


def upsert_entity(tx: Tx, tenant: str, fragment: Entity, mode: UpsertMode) -> bool:
    """Create the entity or apply a fragment to it; True when it was created."""
    tx.store.ensure_tenant(tenant)
    now = now_iso()
    current = tx.store.get_entity(tenant, fragment.id)
    if current is None:
        _insert(tx, tenant, fragment, now)
        return True
    if current.type != fragment.type:
        raise bad_request("Entity type mismatch",
                          f"{fragment.id} is of type {current.type}, the fragment says {fragment.type}")
    prior = None
    if mode is UpsertMode.REPLACE:
        prior = current.attrs
        kept = {name: a["createdAt"] for name, a in current.attrs.items() if "createdAt" in a}
        current.attrs = {}
        for name, attribute in fragment.attrs.items():
            if name in kept:
                attribute["createdAt"] = kept[name]
    _commit(tx, tenant, current, fragment.attrs, mode.value, now, prior=prior)
    return False


def upsert_batch(tx: Tx, tenant: str, fragments: list[Entity | tuple[str, NgsiLdError]],
                 mode: UpsertMode) -> BatchResult:
    """Apply fragments in order (an offline replay of one entity arrives as several); collect the outcome."""
    return _batch(fragments, lambda entity: upsert_entity(tx, tenant, entity, mode))


def create_batch(tx: Tx, tenant: str, fragments: list[Entity | tuple[str, NgsiLdError]]) -> BatchResult:
    """Create each entity; the ones that exist already are errors (AlreadyExists), the others are created."""

    def create(entity: Entity) -> bool:
        create_entity(tx, tenant, entity)
        return True

    return _batch(fragments, create)


def update_batch(tx: Tx, tenant: str, fragments: list[Entity | tuple[str, NgsiLdError]],
                 no_overwrite: bool) -> BatchResult:
    """Append the attributes of each fragment to its existing entity (404 per entity that does not exist)."""

    def update(entity: Entity) -> bool:
        current = _existing(tx, tenant, entity.id)
        if current.type != entity.type:
            raise bad_request("Entity type mismatch", f"{entity.id} is of type {current.type}")
        append_attributes(tx, tenant, current, entity.attrs, no_overwrite)
        return False

    return _batch(fragments, update)


def delete_batch(tx: Tx, tenant: str, ids: list[str]) -> BatchResult:
    """Delete each entity; the ones that do not exist are errors (ResourceNotFound)."""
    result = BatchResult()
    for entity_id in ids:
        try:
            delete_entity(tx, tenant, entity_id)
        except NgsiLdError as exc:
            result.errors.append((entity_id, exc))
            continue
        result.success.append(entity_id)
    return result


def merge_batch(tx: Tx, tenant: str, items: list[Any]) -> BatchResult:
    """Batch Entity Merge (§5.6.20): merge-patch each (id, body, context); missing entities are errors (404)."""
    result = BatchResult()
    for item in items:
        if isinstance(item[1], NgsiLdError):
            result.errors.append((item[0], item[1]))
            continue
        entity_id, body, ctx = item
        try:
            merge_entity(tx, tenant, entity_id, body, ctx)
        except NgsiLdError as exc:
            result.errors.append((entity_id, exc))
            continue
        if entity_id not in result.success:
            result.success.append(entity_id)
    return result


def purge_entities(tx: Tx, tenant: str, ids: list[str]) -> int:
    """Purge Entities (§5.6.21): delete the selected entities that still exist; how many were deleted."""
    deleted = 0
    for entity_id in ids:
        if tx.store.get_entity(tenant, entity_id) is not None:
            delete_entity(tx, tenant, entity_id)
            deleted += 1
    return deleted


def _batch(fragments: list[Entity | tuple[str, NgsiLdError]], apply: Any) -> BatchResult:
    result = BatchResult()
    for item in fragments:
        if isinstance(item, tuple):
            result.errors.append(item)  # refused at the edge; reported in order with the rest
            continue
        try:
            if apply(item):
                result.created.append(item.id)
        except NgsiLdError as exc:
            result.errors.append((item.id, exc))
            continue
        if item.id not in result.success:
            result.success.append(item.id)
    return result


def append_attributes(tx: Tx, tenant: str, current: Entity, attrs: dict[str, dict[str, Any]],
                      no_overwrite: bool) -> UpdateResult:
    """POST /entities/{id}/attrs: add attributes, overwriting existing ones unless `noOverwrite`."""
    result = UpdateResult()
    written: dict[str, dict[str, Any]] = {}
    for name, attribute in attrs.items():
        if no_overwrite and name in current.attrs:
            result.not_updated.append((name, "attribute exists and options=noOverwrite"))
            continue
        written[name] = attribute
        result.updated.append(name)
    if written:
        _commit(tx, tenant, current, written, "append", now_iso())
    return result


def append_to(tx: Tx, tenant: str, entity_id: str, attrs: dict[str, dict[str, Any]],
              no_overwrite: bool) -> UpdateResult:
    """Append to an entity by id (404 when it does not exist)."""
    return append_attributes(tx, tenant, _existing(tx, tenant, entity_id), attrs, no_overwrite)


def update_attributes(tx: Tx, tenant: str, entity_id: str, attrs: dict[str, dict[str, Any]]) -> UpdateResult:
    """PATCH /entities/{id}/attrs: replace existing attributes only; absent ones are reported, not added."""
    current = _existing(tx, tenant, entity_id)
    result = UpdateResult()
    written: dict[str, dict[str, Any]] = {}
    for name, attribute in attrs.items():
        if name not in current.attrs:
            result.not_updated.append((name, "attribute does not exist"))
            continue
        written[name] = attribute
        result.updated.append(name)
    if written:
        _commit(tx, tenant, current, written, "update", now_iso())
    return result


def merge_attribute(name: str, existing: dict[str, Any], partial: dict[str, Any],
                    ctx: ActiveContext) -> dict[str, Any]:
    """An attribute with the members of a partial one merged in (what PATCH .../attrs/{attr} means)."""
    merged: dict[str, Any] = {k: v for k, v in existing.items() if k not in _SYSTEM}
    given = VALUE_MEMBERS & partial.keys()
    if given:  # a new value (of whatever attribute type) replaces the old one
        for member in VALUE_MEMBERS:
            merged.pop(member, None)
        if "type" not in partial:  # concise partial: the type follows the value member given
            member = next(iter(given))
            if member != "value":
                merged["type"] = next(t for t, m in VALUE_MEMBER.items() if m == member and t != "GeoProperty")
            elif existing.get("type") not in ("Property", "GeoProperty"):
                merged["type"] = "Property"
    for key, value in partial.items():
        if key in ("createdAt", "modifiedAt", "@context", "instanceId"):
            continue
        if key in VALUE_MEMBERS or key in ("type", "unitCode", "observedAt", "datasetId", "objectType"):
            merged[key] = value
        else:
            merged[ctx.expand(key)] = value
    if any(merged.get(member) == NULL for member in VALUE_MEMBERS):
        raise bad_request("Invalid attribute", f"{name}: use DELETE to remove an attribute")
    if merged.get("type") == "VocabProperty" and "vocab" in merged and "vocab" not in partial:
        merged["vocab"] = _compact_terms(merged["vocab"], ctx)  # stored expanded; parse_attribute expands again
    return parse_attribute(ctx.compact(name), merged, ctx)


def _compact_terms(value: Any, ctx: ActiveContext) -> Any:
    return [ctx.compact(v) for v in value] if isinstance(value, list) else ctx.compact(value)


def replace_attribute(tx: Tx, tenant: str, entity_id: str, name: str, attribute: dict[str, Any],
                      ctx: ActiveContext) -> None:
    """PUT /entities/{id}/attrs/{attr}: an existing attribute replaced as a whole (404 when absent)."""
    current = _existing(tx, tenant, entity_id)
    if name not in current.attrs:
        raise NgsiLdError("ResourceNotFound", "Attribute Not Found", f"{entity_id} has no {ctx.compact(name)}")
    _commit(tx, tenant, current, {name: attribute}, "replace", now_iso())


def partial_update(tx: Tx, tenant: str, entity_id: str, name: str, partial: dict[str, Any],
                   ctx: ActiveContext) -> None:
    """PATCH /entities/{id}/attrs/{attr}: merge members into one existing attribute (404 when absent)."""
    current = _existing(tx, tenant, entity_id)
    if name not in current.attrs:
        raise NgsiLdError("ResourceNotFound", "Attribute Not Found", f"{entity_id} has no {ctx.compact(name)}")
    _commit(tx, tenant, current, {name: merge_attribute(name, current.attrs[name], partial, ctx)}, "update",
            now_iso())


def merge_entity(tx: Tx, tenant: str, entity_id: str, body: dict[str, Any], ctx: ActiveContext) -> None:
    """PATCH /entities/{id} (merge-patch): merge attributes in, add new ones, delete those set to urn:ngsi-ld:null."""
    current = _existing(tx, tenant, entity_id)
    if "id" in body and body["id"] != entity_id:
        raise bad_request("Entity id mismatch", f"the body is about {body['id']}, the URL about {entity_id}")
    if "type" in body and ctx.expand(str(body["type"])) != current.type:
        raise bad_request("Entity type mismatch", f"{entity_id} is of type {ctx.compact(current.type)}")
    written: dict[str, dict[str, Any]] = {}
    removed: list[str] = []
    now = now_iso()
    for key, raw in body.items():
        if key in ("id", "type", "@context", "createdAt", "modifiedAt"):
            continue
        name = attribute_name(key, ctx)
        if raw == NULL or (isinstance(raw, dict) and any(raw.get(m) == NULL for m in VALUE_MEMBERS)):
            if name in current.attrs:
                removed.append(name)
            continue
        if name in current.attrs:
            if not isinstance(raw, dict):
                raw = {"value": raw}  # merge-patch of a bare value: the value of the Property
            written[name] = merge_attribute(name, current.attrs[name], raw, ctx)
        else:
            written[name] = parse_attribute(key, raw, ctx)
    for name in removed:
        del current.attrs[name]
        tx.store.record_attribute_deletion(tenant, entity_id, current.type, name, now)
    _commit(tx, tenant, current, written, "merge", now, frozenset(removed))


def replace_entity(tx: Tx, tenant: str, entity_id: str, body: dict[str, Any], ctx: ActiveContext) -> None:
    """PUT /entities/{id}: the entity gets exactly the body's attributes (and type); id and createdAt stay."""
    current = _existing(tx, tenant, entity_id)
    raw = {**body, "id": body.get("id", entity_id), "type": body.get("type", ctx.compact(current.type))}
    if raw["id"] != entity_id:
        raise bad_request("Entity id mismatch", f"the body is about {raw['id']}, the URL about {entity_id}")
    replacement = parse_entity(raw, ctx)
    now = now_iso()
    removed = frozenset(set(current.attrs) - set(replacement.attrs))
    for name in removed:
        tx.store.record_attribute_deletion(tenant, entity_id, current.type, name, now)
    current.type = replacement.type
    prior, current.attrs = current.attrs, {}
    _commit(tx, tenant, current, replacement.attrs, "replace", now, removed, prior)


def delete_attribute(tx: Tx, tenant: str, entity_id: str, name: str, ctx: ActiveContext,
                     dataset_id: str | None = None) -> None:
    """DELETE /entities/{id}/attrs/{attr}[?datasetId=]: 404 when the entity or the attribute (instance) is absent."""
    current = _existing(tx, tenant, entity_id)
    if name not in current.attrs or (dataset_id is not None and current.attrs[name].get("datasetId") != dataset_id):
        raise NgsiLdError("ResourceNotFound", "Attribute Not Found", f"{entity_id} has no {ctx.compact(name)}"
                          + (f" with datasetId {dataset_id}" if dataset_id is not None else ""))
    now = now_iso()
    del current.attrs[name]
    current.modified_at = now
    tx.store.update_entity(tenant, current)
    tx.store.record_attribute_deletion(tenant, entity_id, current.type, name, now)
    tx.changes.append(Change(tenant, current, frozenset(), deleted_attrs=frozenset({name}), at=now))


def delete_entity(tx: Tx, tenant: str, entity_id: str) -> None:
    """Delete an entity; its history stays, ended by a deletion mark."""
    current = _existing(tx, tenant, entity_id)
    now = now_iso()
    tx.store.delete_entity(tenant, entity_id)
    tx.store.record_deletion(tenant, entity_id, current.type, now)
    tx.changes.append(Change(tenant, current, frozenset(), deleted=True, at=now))
    log.info("entity %s deleted from tenant %r", entity_id, tenant)


def _insert(tx: Tx, tenant: str, entity: Entity, now: str) -> None:
    entity.created_at = entity.modified_at = now
    for attribute in entity.attrs.values():
        attribute["createdAt"] = attribute["modifiedAt"] = now
    tx.store.insert_entity(tenant, entity)
    tx.store.record_instances(tenant, entity, entity.attrs, "create", now)
    tx.changes.append(Change(tenant, entity, frozenset(entity.attrs), created=True,
                             new_attrs=frozenset(entity.attrs), at=now))
    log.debug("entity %s created in tenant %r", entity.id, tenant)
