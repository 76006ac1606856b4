"""The agent's counter-reset rule: cumulative energy stays continuous, resets are marked, redeliveries change nothing."""

from __future__ import annotations

from pathlib import Path

from twin_service.agent.continuity import CounterContinuity

ENTITY = "urn:ngsi-ld:ThreePhaseAcMeasurement:m1"


def fragment(l1: float, total: float, when: str) -> dict:
    return {
        "id": ENTITY,
        "type": "ThreePhaseAcMeasurement",
        "activeEnergyImport": {"type": "Property", "value": {"L1": l1, "L2": 1.0}, "observedAt": when},
        "totalActiveEnergyImport": {"type": "Property", "value": total, "observedAt": when},
        "frequency": {"type": "Property", "value": 50.0, "observedAt": when},
    }


def test_a_counter_going_back_is_bridged_and_marked(tmp_path: Path) -> None:
    rule = CounterContinuity(tmp_path / "c.sqlite")
    rule.apply("t", [fragment(10.0, 11.0, "2026-12-06T10:00:00Z")])
    after = fragment(4.0, 5.0, "2026-12-06T10:00:05Z")  # restarted from an older copy
    resets = rule.apply("t", [after])
    assert {(r.attribute, r.key) for r in resets} == {("activeEnergyImport", "L1"), ("totalActiveEnergyImport", "")}
    energy = after["activeEnergyImport"]
    assert energy["value"] == {"L1": 10.0, "L2": 1.0}
    assert energy["counterReset"]["value"] == {"before": {"L1": 10.0}, "after": {"L1": 4.0}}
    assert energy["meterReading"]["value"] == {"L1": 4.0, "L2": 1.0}
    assert after["totalActiveEnergyImport"]["value"] == 11.0
    assert after["frequency"]["value"] == 50.0  # not a counter
    later = fragment(4.5, 5.5, "2026-12-06T10:00:06Z")
    assert rule.apply("t", [later]) == []
    assert later["activeEnergyImport"]["value"]["L1"] == 10.5
    assert "counterReset" not in later["activeEnergyImport"]
    rule.close()
    # The offset survives an agent restart.
    again = CounterContinuity(tmp_path / "c.sqlite")
    nxt = fragment(5.0, 6.0, "2026-12-06T10:00:07Z")
    assert again.apply("t", [nxt]) == []
    assert nxt["activeEnergyImport"]["value"]["L1"] == 11.0
    again.close()


def test_a_redelivery_changes_nothing_and_gets_the_offset_of_its_time() -> None:
    rule = CounterContinuity(None)
    rule.apply("t", [fragment(10.0, 11.0, "2026-12-06T10:00:00Z")])
    rule.apply("t", [fragment(12.0, 13.0, "2026-12-06T10:00:01Z")])
    duplicate = fragment(10.0, 11.0, "2026-12-06T10:00:00Z")
    assert rule.apply("t", [duplicate]) == []
    assert duplicate["activeEnergyImport"]["value"]["L1"] == 10.0
    reset = fragment(1.0, 2.0, "2026-12-06T10:00:00.500Z")  # a boot time stamped before the last reading
    assert len(rule.apply("t", [reset])) == 2
    assert reset["activeEnergyImport"]["value"]["L1"] == 12.0
    redelivered = fragment(12.0, 13.0, "2026-12-06T10:00:01Z")  # before the reset: no offset then
    assert rule.apply("t", [redelivered]) == []
    assert redelivered["activeEnergyImport"]["value"]["L1"] == 12.0


def test_tenants_and_entities_are_kept_apart() -> None:
    rule = CounterContinuity(None)
    rule.apply("a", [fragment(10.0, 11.0, "2026-12-06T10:00:00Z")])
    other = fragment(1.0, 2.0, "2026-12-06T10:00:01Z")
    assert rule.apply("b", [other]) == []
    assert other["activeEnergyImport"]["value"]["L1"] == 1.0


def test_a_redelivery_from_before_a_reset_does_not_pass_for_progress() -> None:
    rule = CounterContinuity(None)
    rule.apply("t", [fragment(12.0, 13.0, "2026-12-06T10:00:01Z")])
    rule.apply("t", [fragment(1.0, 2.0, "2026-12-06T10:00:02Z")])  # reset: offset 11
    old = fragment(12.0, 13.0, "2026-12-06T10:00:01Z")  # higher than the last value, but seen before
    assert rule.apply("t", [old]) == []
    assert old["activeEnergyImport"]["value"]["L1"] == 12.0
    nxt = fragment(1.5, 2.5, "2026-12-06T10:00:03Z")
    assert rule.apply("t", [nxt]) == []
    assert nxt["activeEnergyImport"]["value"]["L1"] == 12.5


def test_state_is_one_row_per_entity_and_the_per_counter_layout_converts(tmp_path: Path) -> None:
    import json
    import sqlite3

    path = tmp_path / "c.sqlite"
    old = sqlite3.connect(path)  # the layout before 2026-12-07: one row per counter, offsets after a reset
    old.execute("CREATE TABLE counters (key TEXT PRIMARY KEY, last REAL NOT NULL, last_when TEXT,"
                " offset REAL NOT NULL, epochs TEXT NOT NULL)")
    old.executemany("INSERT INTO counters VALUES (?, ?, ?, ?, ?)", [
        (f"t\x1f{ENTITY}\x1factiveEnergyImport\x1fL1", 4.5, "2026-12-06T10:00:06+00:00", 6.0,
         json.dumps([["2026-12-06T10:00:05Z", 6.0]])),
        (f"t\x1f{ENTITY}\x1factiveEnergyImport\x1fL2", 1.0, "2026-12-06T10:00:06+00:00", 0.0, "[]"),
        (f"t\x1f{ENTITY}\x1ftotalActiveEnergyImport\x1f", 5.5, "2026-12-06T10:00:06+00:00", 6.0,
         json.dumps([["2026-12-06T10:00:05Z", 6.0]])),
    ])
    old.commit()
    old.close()
    rule = CounterContinuity(path)
    nxt = fragment(5.0, 6.0, "2026-12-06T10:00:07Z")
    assert rule.apply("t", [nxt]) == []  # the old rows' last values and offsets are in force
    assert nxt["activeEnergyImport"]["value"] == {"L1": 11.0, "L2": 1.0}
    assert nxt["totalActiveEnergyImport"]["value"] == 12.0
    rule.close()
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    rows = db.execute("SELECT entity, counters FROM entity_counters").fetchall()
    db.close()
    assert "counters" not in tables  # converted in the same transaction as the new rows
    assert [entity for entity, _ in rows] == [f"t\x1f{ENTITY}"]
    stored = json.loads(rows[0][1])
    assert stored["activeEnergyImport\x1fL1"][0] == 5.0 and stored["totalActiveEnergyImport\x1f"][2] == 6.0
    again = CounterContinuity(path)  # the new layout reads back: the same state
    later = fragment(2.0, 3.0, "2026-12-06T10:00:08Z")  # a second reset, on top of the first offset
    resets = again.apply("t", [later])
    assert {(r.attribute, r.key) for r in resets} == {("activeEnergyImport", "L1"), ("totalActiveEnergyImport", "")}
    assert later["activeEnergyImport"]["value"]["L1"] == 11.0
    assert later["totalActiveEnergyImport"]["value"] == 12.0
    again.close()
