"""The agent's message decoder (orjson first) accepts and refuses exactly what json.loads does."""

from __future__ import annotations

import json
import math

import pytest

from twin_service.agent.south import decode_json

SAME = [b'{"v":{"L1":230.1},"f":50.01,"TimeInstant":"2026-12-07T09:00:00.000Z"}', b'[{"f":50},{"f":49.9}]',
        b'{"a":1,"a":2}', b"\xef\xbb\xbf{}", b'"\\ud800"', b"123456789012345678901234567890", b'{"n":[-18446744073709551617]}', b"1e400",
        '{"f":1}'.encode("utf-16")]


@pytest.mark.parametrize("payload", SAME)
def test_accepts_what_json_loads_accepts_with_the_same_value(payload: bytes) -> None:
    assert decode_json(payload) == json.loads(payload)


def test_nan_parses_as_json_loads_does() -> None:
    assert math.isnan(decode_json(b'{"f":NaN}')["f"])


@pytest.mark.parametrize("payload", [b"{", b"[1,]", b"", b"{\"a\":}"])
def test_refuses_with_the_standard_library_message(payload: bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        decode_json(payload)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(payload)
    assert str(ours.value) == str(theirs.value)
