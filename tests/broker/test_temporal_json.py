"""temporalValues built column-wise (_temporal_json) is byte for byte what SQLite's json_group_array built.

The store keeps both paths: the SQL one answers whatever the column-wise one declines (JSON text, REALs, times kept
as text, instances without observedAt), so the test checks (1) equality wherever the column-wise path answers and
(2) that it does answer the series it is made for (numbers, per-phase numbers, flags), or the test could not fail.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from twin_service.broker import Store, _temporal_json
from twin_service.broker._model import Entity, format_datetime
from twin_service.broker._store import TimeRange, _encode_number

NS = "https://example.org/"
START = datetime(2026, 11, 23, 23, 58, tzinfo=UTC)  # the window crosses midnight: two date prefixes


def _numbers(rng: random.Random) -> list[float | int]:
    """Numbers of every shape a meter sends, and the edges of the tagged encoding."""
    edge: list[float | int] = [0, 0.0, -0.0, 1, -1, 0.05, -0.05, 228.0, 49.901, 99999999999999.9, 0.000123,
                               123456789.123456, 2 ** 59 - 1, -(2 ** 59) + 1, 2 ** 59, 2 ** 62, 0.1 + 0.2, 1e-7,
                               1e22, 123456.0001, 0.1, 5e-324, 1.5e300]
    drawn = [round(rng.uniform(-1e6, 1e6), rng.randint(0, 9)) for _ in range(150)]
    drawn += [rng.randint(-10 ** 12, 10 ** 12) for _ in range(50)]
    drawn += [rng.uniform(-1000, 1000) for _ in range(30)]  # 16-17 digits: kept as REAL, SQLite prints them
    return edge + drawn


def _fill(store: Store, rng: random.Random) -> dict[str, list[int]]:
    """Five series on one entity; returns which attributes hold only tagged values (the column-wise path's)."""
    numbers = _numbers(rng)
    # tagged values whose sum over the window cannot overflow SQLite's integers (a day of counters in Wh is
    # far below); larger ones send the series to the SQL path (the "mixed" series has them)
    tagged = [n for n in numbers if _encode_number(n) is not None and abs(n) < 1e12]
    entity = Entity("urn:ngsi-ld:X:1", NS + "X", {}, format_datetime(START), format_datetime(START))
    for second in range(240):
        at = START + timedelta(seconds=second, milliseconds=rng.choice((0, 0, 1, 499, 500, 999)))
        text = format_datetime(at)
        attrs = {
            NS + "scalar": {"type": "Property", "value": tagged[second % len(tagged)], "observedAt": text},
            NS + "mixed": {"type": "Property", "value": numbers[second % len(numbers)], "observedAt": text},
            NS + "phases": {"type": "Property", "unitCode": "VLT", "observedAt": text, "value": {
                "L1": round(rng.uniform(200, 250), 2), "L2": rng.choice((230, 230.5, -0.5)), "L3": 231.25}},
            NS + "flags": {"type": "Property", "observedAt": text, "value": {
                "overVoltage": rng.random() < 0.5, "sag": second % 3 == 0}},
            NS + "status": {"type": "Property", "value": rng.choice(("ok", "fault")), "observedAt": text},
        }
        entity.attrs = attrs
        with store.transaction() as tx:
            tx.record_instances("t", entity, list(attrs), "update", format_datetime(at + timedelta(seconds=1)))
    return {"fast": [store_series(store, n) for n in ("scalar", "phases", "flags")]}


def store_series(store: Store, name: str) -> int:
    return dict(store.history_attributes("t", "urn:ngsi-ld:X:1"))[NS + name]


def _windows() -> list[TimeRange]:
    start, end = START.timestamp(), (START + timedelta(minutes=4)).timestamp()
    return [TimeRange(), TimeRange(start + 30, start + 150), TimeRange(start + 200, None), TimeRange(None, start + 1),
            TimeRange(start, end, last_n=17), TimeRange(end + 10, end + 20),
            TimeRange(start + 5, start + 100, axis="modifiedAt")]


@pytest.mark.parametrize("moved", [False, True], ids=["waiting in readings_log", "in readings"])
def test_columnar_pairs_are_byte_for_byte_the_sql_ones(tmp_path: Path, moved: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_temporal_json, "MIN_ROWS", 0)  # small windows too: the test's data is 240 rows
    store = Store(tmp_path)
    try:
        fast = _fill(store, random.Random(15))["fast"]
        if moved:
            assert store.move_history() > 0
        answered = 0
        for name, series in store.history_attributes("t", "urn:ngsi-ld:X:1"):
            for window in _windows():
                reference = store._temporal_values_sql(series, window)
                built = store._temporal_values_columnar(series, window)
                if built is not None:
                    assert built == reference, (name, window)
                    answered += 1
                elif series in fast:
                    pytest.fail(f"{name} {window}: the column-wise path declined a series it is made for")
        assert answered >= 3 * len(_windows())  # mixed and status fall back, per their JSON text and REALs
        series = store_series(store, "scalar")
        text, kind = store.temporal_values_json(series, TimeRange())
        assert kind == "Property" and text == store._temporal_values_sql(series, TimeRange())
    finally:
        store.close()


def test_numbers_print_as_python_wrote_them() -> None:
    """The digit-by-digit printing against repr() on the values the tag keeps exactly."""
    rng = random.Random(7)
    values = [round(rng.uniform(-1e9, 1e9), rng.randint(1, 6)) for _ in range(5000)]
    values += [v / 10 ** d for v in (0, 1, 5, 99, 12345) for d in range(1, 10)] + [228.0, -0.05, 1e14 - 0.5]
    values = [v for v in values if _encode_number(v) is not None and not (v == 0 and math.copysign(1, v) < 0)]
    field = _temporal_json.number_field(np.array([_encode_number(v) for v in values], dtype=np.int64))
    printed = [bytes(row).rstrip(b"\0").replace(b"\0", b"").decode() for row in field]
    assert printed == [repr(v) for v in values]
    ints = [0, 7, -7, 10, 2 ** 59 - 1, -(2 ** 59) + 1]
    field = _temporal_json.number_field(np.array([_encode_number(v) for v in ints], dtype=np.int64))
    assert [bytes(row).replace(b"\0", b"").decode() for row in field] == [str(v) for v in ints]


def test_small_answers_are_left_to_sqlite(tmp_path: Path) -> None:
    """Below MIN_ROWS the arrays' fixed cost is more than SQLite's per-row text: lastN=1 of many meters."""
    store = Store(tmp_path)
    try:
        _fill(store, random.Random(3))
        series = store_series(store, "scalar")
        start = START.timestamp()
        few, many = TimeRange(start, start + 60), TimeRange(start, start + 240)  # 60 and 240 rows
        assert _temporal_json.MIN_ROWS > 60
        assert store._temporal_values_columnar(series, TimeRange(last_n=1)) is None
        assert store._temporal_values_columnar(series, few) is None
        assert store._temporal_values_columnar(series, many) == store._temporal_values_sql(series, many)
        for window in (TimeRange(last_n=1), few, many):
            assert store.temporal_values_json(series, window)[0] == store._temporal_values_sql(series, window)
    finally:
        store.close()


def test_times_print_as_datetime_prints_them() -> None:
    """Store._format_ts (no datetime per instance) against format_datetime(datetime.fromtimestamp(...)),
    on the rounding edges of fromtimestamp (half a microsecond, the end of a second and of a day)."""
    from twin_service.broker._store import _format_ts

    rng = random.Random(11)
    values = [0.0, 1e-7, 5e-7, 1.5e-6, 0.9999995, 0.9999994999, 86399.9999996, 1795392000.123, 253402300799.9999]
    values += [rng.uniform(0, 2.5e11) for _ in range(3000)] + [round(rng.uniform(0, 4e9), 3) for _ in range(3000)]
    values += [round(rng.uniform(0, 4e9), 6) for _ in range(3000)]
    values += [math.nextafter(k + 5e-7, d) for k in range(0, 4_000_000_000, 39_999_999) for d in (0.0, 1e20)]
    for value in values:
        assert _format_ts(value) == format_datetime(datetime.fromtimestamp(value, UTC)), value
