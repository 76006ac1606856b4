"""The history writer's shortcut for an attribute's rest (type and unitCode only) stores what encoding the rest
gives: attributes in other member orders, with a null unitCode or with sub-attributes read back as written, and
a series deleted then written again is recreated (the per-entity record of known series is dropped with it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twin_service.broker._store import Store

T = "2026-12-07T10:00:00.000Z"
SUB = "https://example.org/accuracy"


def _write(store: Store, entity_id: str, attrs: dict[str, dict[str, Any]], at: str) -> None:
    with store.transaction() as tx:
        tx.append_instances("t", entity_id, "urn:test:Meter", list(attrs.items()), "update", at)


def _read(store: Store, entity_id: str) -> dict[str, dict[str, Any]]:
    return {i.attr_name: i.attribute for i in store.history("t", entity_id) if i.attribute is not None}


def test_rests_read_back_as_written_in_every_member_order(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        written = {
            "urn:a:plain": {"type": "Property", "value": 230.1, "unitCode": "VLT", "observedAt": T},
            "urn:a:unitless": {"type": "Property", "value": {"L1": 1.5, "L2": 2.5}, "observedAt": T},
            "urn:a:unit-first": {"unitCode": "AMP", "type": "Property", "value": 5.0, "observedAt": T},
            "urn:a:null-unit": {"type": "Property", "value": 1.0, "unitCode": None, "observedAt": T},
            "urn:a:sub": {"type": "Property", "value": 2.0, "unitCode": "WTT", "observedAt": T,
                          SUB: {"type": "Property", "value": 0.5}},
            "urn:a:rel": {"type": "Relationship", "object": "urn:ngsi-ld:Device:d1", "observedAt": T},
        }
        _write(store, "urn:e:1", written, T)
        _write(store, "urn:e:2", dict(reversed(list(written.items()))), T)  # same attributes, other entity
        for entity_id in ("urn:e:1", "urn:e:2"):
            back = _read(store, entity_id)
            for name, attribute in written.items():
                stored = back[name]
                expected = {k: v for k, v in attribute.items() if k not in ("observedAt",)}
                assert {k: v for k, v in stored.items() if k in expected} == expected, name
                assert "unitCode" in stored if "unitCode" in attribute else "unitCode" not in stored
    finally:
        store.close()


def test_a_deleted_series_is_created_again_when_written_again(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        attribute = {"type": "Property", "value": 1.0, "unitCode": "VLT", "observedAt": T}
        _write(store, "urn:e:1", {"urn:a:v": attribute}, T)
        with store.transaction() as tx:
            assert tx.delete_history("t", "urn:e:1", "urn:a:v")
        assert _read(store, "urn:e:1") == {}
        later = "2026-12-07T10:00:01.000Z"
        _write(store, "urn:e:1", {"urn:a:v": {**attribute, "value": 2.0, "observedAt": later}}, later)
        assert _read(store, "urn:e:1")["urn:a:v"]["value"] == 2.0
    finally:
        store.close()
