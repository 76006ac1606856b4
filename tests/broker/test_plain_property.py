"""The write path's shortcut for a meter's plain Property gives exactly what the general attribute parser gives.

`parse_attribute` takes `{"type": "Property", "value": ..., "unitCode": ..., "observedAt": ...}` through
`_plain_property` (the ~30 attributes of every meter message); a dict subclass is not `dict` itself, so it
takes the general path: every case is parsed both ways and must agree, answers and errors alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from twin_service.broker._context import ContextResolver
from twin_service.broker._errors import NgsiLdError
from twin_service.broker._model import parse_attribute, parse_datetime
from twin_service.broker._store import Store


class _General(dict):  # type: ignore[type-arg]
    """Same content, but not exactly a dict: parse_attribute's shortcut does not apply."""


CASES: list[dict[str, Any]] = [
    {"type": "Property", "value": 230.1},
    {"type": "Property", "value": {"L1": 230.1, "L2": 229.8, "L3": 231.0}, "unitCode": "VLT",
     "observedAt": "2026-12-07T15:20:24.023Z"},
    {"type": "Property", "observedAt": "2026-12-07T15:20:24Z", "value": True},
    {"type": "Property", "unitCode": "KWH", "value": 0, "observedAt": "2026-12-07T15:20:24.123456z"},
    {"type": "Property", "value": "ok", "observedAt": "2026-12-07T15:20:24.5Z"},
    {"type": "Property", "value": [1, 2, 3]},
    {"type": "Property", "value": None},
    {"type": "Property"},
    {"type": "Property", "value": 1, "unitCode": ""},
    {"type": "Property", "value": 1, "unitCode": 7},
    {"type": "Property", "value": 1, "observedAt": "2026-12-07T15:20:24+02:00"},
    {"type": "Property", "value": 1, "observedAt": "yesterdayTZ"},
    {"type": "Property", "value": 1, "observedAt": 12},
    {"type": "Property", "value": 1, "observedAt": "2026-13-07T15:20:24Z"},
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = Store(Path(tmp_path_factory.mktemp("plain")))
    try:
        yield asyncio.run(ContextResolver(store).activate(None))
    finally:
        store.close()


def _outcome(raw: dict[str, Any], ctx: Any) -> Any:
    try:
        return ("ok", parse_attribute("voltage", raw, ctx))
    except NgsiLdError as exc:
        return ("error", exc.error_type, exc.title, exc.detail)


@pytest.mark.parametrize("raw", CASES, ids=range(len(CASES)))
def test_shortcut_and_general_path_agree(raw: dict[str, Any], ctx: Any) -> None:
    fast = _outcome(dict(raw), ctx)
    general = _outcome(_General(raw), ctx)
    assert fast == general
    if fast[0] == "ok":
        assert list(fast[1]) == list(general[1])  # same member order: stored and rendered as written


def test_a_datetime_error_names_the_attribute_even_when_the_text_was_seen_before() -> None:
    # the normalized DateTime is cached by its text; the error must still name the attribute at hand
    for what in ("a.observedAt", "b.observedAt"):
        with pytest.raises(NgsiLdError) as caught:
            parse_datetime("2026-12-07T25:00:00Z", what, utc_z=True)
        assert caught.value.detail.startswith(f"{what}: ")
    assert parse_datetime("2026-12-07T10:00:00.5Z", "x") == "2026-12-07T10:00:00.500Z"
