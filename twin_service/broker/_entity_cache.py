"""The write path's copy of current entities: an upsert applies its fragment without reading the entity back.

Why: every fragment of a batch upsert starts from the entity's current state, and reading it from SQLite means
decoding its stored JSON (~30 attributes for a meter): 6-12 % of the broker's CPU at 1,000 meters x 1 Hz
(docs/performance.md, "Ingest"). The state after a write is already in memory (the `Change` handed to the
notifier), so it is kept here and the next write of that entity starts from it.

Correctness rests on three rules, all applied under the store's write lock (there is one writer):
- an entry is only ever the state of a COMMITTED write: entries are added by `committed()`, which the write
  helper calls after COMMIT, from the changes of that transaction; a transaction that rolls back adds nothing;
- writing an entity evicts its entry first (`touch()`), so a write whose commit is never announced (a failed
  COMMIT, a caller that runs operations in its own transaction) leaves no stale entry behind, and inside the
  transaction the store's own read (which sees the transaction's pending writes) answers;
- a hit returns a copy of the entity with its own attribute map: writes replace attribute objects, they never
  change one in place, so the state a queued notification holds is not touched by the next write.
Only the writer uses it; reads served to clients still come from SQLite.

The bound (`MAX_ENTITIES`) keeps memory flat when clients create entities without end: past it the map starts
over (a miss costs one SQLite read, as before).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._model import Entity

if TYPE_CHECKING:
    from ._operations import Change
    from ._store import Store

MAX_ENTITIES = 20_000  # ~2 x a 5,000-meter fleet's measurement entities, or measurements + Device entities

_caches: weakref.WeakKeyDictionary[Store, dict[tuple[str, str], Entity]] = weakref.WeakKeyDictionary()


def _of(store: Store) -> dict[tuple[str, str], Entity]:
    cache = _caches.get(store)
    if cache is None:
        cache = _caches[store] = {}
    return cache


def get(store: Store, tenant: str, entity_id: str, touched: set[tuple[str, str]]) -> Entity | None:
    """The entity's current state for a write: from the cache unless this transaction wrote it already."""
    key = (tenant, entity_id)
    if key not in touched:
        hit = _of(store).get(key)
        if hit is not None:
            return Entity(hit.id, hit.type, dict(hit.attrs), hit.created_at, hit.modified_at)
    return store.get_entity(tenant, entity_id)


def touch(store: Store, tenant: str, entity_id: str, touched: set[tuple[str, str]]) -> None:
    """An entity is being written in the current transaction: forget its committed state until COMMIT."""
    _of(store).pop((tenant, entity_id), None)
    touched.add((tenant, entity_id))


def committed(store: Store, changes: Iterable[Change]) -> None:
    """The transaction holding `changes` committed: remember each entity's state after it (the last change of
    an entity is its newest state); a deleted entity is forgotten."""
    cache = _of(store)
    for change in changes:
        key = (change.tenant, change.entity.id)
        if change.deleted:
            cache.pop(key, None)
            continue
        if len(cache) >= MAX_ENTITIES and key not in cache:
            cache.clear()
        cache[key] = change.entity


def forget(store: Store) -> None:
    """Drop every entry (a store reopened or changed behind the write path's back)."""
    _of(store).clear()
