"""What each write means: create, upsert (update or replace), delete, with system timestamps and history.

Kept apart from HTTP so the next issue's PATCH/append and notifications reuse the same steps, and apart from
SQL so the semantics read in one place. Every function runs inside the caller's store transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum

from ._errors import NgsiLdError, bad_request, not_found
from ._model import Entity, now_iso
from ._store import Store

log = logging.getLogger(__name__)


class UpsertMode(str, Enum):
    """`options=` of a batch upsert: replace the whole entity (the default) or merge attributes into it."""

    REPLACE = "replace"
    UPDATE = "update"


@dataclass
class BatchResult:
    """Outcome of a batch: ids created (in order, once each), ids that succeeded, per-entity errors."""

    created: list[str] = field(default_factory=list)
    success: list[str] = field(default_factory=list)
    errors: list[tuple[str, NgsiLdError]] = field(default_factory=list)


def create_entity(store: Store, tenant: str, entity: Entity) -> None:
    """Create an entity; 409 AlreadyExists when the id is taken in this tenant."""
    if store.get_entity(tenant, entity.id) is not None:
        raise NgsiLdError("AlreadyExists", "Entity already exists", entity.id)
    store.ensure_tenant(tenant)
    _insert(store, tenant, entity, now_iso())


def upsert_entity(store: Store, tenant: str, fragment: Entity, mode: UpsertMode) -> bool:
    """Create the entity or apply a fragment to it; True when it was created."""
    store.ensure_tenant(tenant)
    now = now_iso()
    current = store.get_entity(tenant, fragment.id)
    if current is None:
        _insert(store, tenant, fragment, now)
        return True
    if current.type != fragment.type:
        raise bad_request("Entity type mismatch",
                          f"{fragment.id} is of type {current.type}, the fragment says {fragment.type}")
    if mode is UpsertMode.REPLACE:
        current.attrs = {}
    for name, attribute in fragment.attrs.items():
        previous = current.attrs.get(name)
        attribute["createdAt"] = previous["createdAt"] if previous else now
        attribute["modifiedAt"] = now
        current.attrs[name] = attribute
    current.modified_at = now
    store.update_entity(tenant, current)
    store.record_instances(tenant, current, fragment.attrs, mode.value, now)
    return False


def upsert_batch(store: Store, tenant: str, fragments: list[Entity | tuple[str, NgsiLdError]],
                 mode: UpsertMode) -> BatchResult:
    """Apply fragments in order (an offline replay of one entity arrives as several); collect the outcome.

    Items already refused at the edge come as (entity id, error) and are reported in order with the rest.
    """
    result = BatchResult()
    for item in fragments:
        if isinstance(item, tuple):
            result.errors.append(item)
            continue
        try:
            if upsert_entity(store, tenant, item, mode):
                result.created.append(item.id)
        except NgsiLdError as exc:
            result.errors.append((item.id, exc))
            continue
        if item.id not in result.success:
            result.success.append(item.id)
    return result


def delete_entity(store: Store, tenant: str, entity_id: str) -> None:
    """Delete an entity; its history stays, ended by a deletion mark."""
    current = store.get_entity(tenant, entity_id)
    if current is None:
        raise not_found(entity_id)
    store.delete_entity(tenant, entity_id)
    store.record_deletion(tenant, entity_id, current.type, now_iso())
    log.info("entity %s deleted from tenant %r", entity_id, tenant)


def _insert(store: Store, tenant: str, entity: Entity, now: str) -> None:
    entity.created_at = entity.modified_at = now
    for attribute in entity.attrs.values():
        attribute["createdAt"] = attribute["modifiedAt"] = now
    store.insert_entity(tenant, entity)
    store.record_instances(tenant, entity, entity.attrs, "create", now)
    log.info("entity %s created in tenant %r", entity.id, tenant)
