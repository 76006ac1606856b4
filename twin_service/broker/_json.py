"""JSON responses that splice pre-built JSON text (SQLite's json_group_array) into a Python document.

A day of 1 Hz history is 86,400 `[value, time]` pairs; decoding SQLite's text into Python objects only to encode
them again would cost more than the query itself.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

try:  # orjson parses and encodes 3-10x faster; ingestion of ~30-attribute entities is mostly JSON work
    import orjson
except ImportError:  # pragma: no cover - the standard library gives the same results, slower
    orjson = None  # type: ignore[assignment]


def loads(data: bytes | str) -> Any:
    """Parse JSON (ValueError when invalid, as json.loads)."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)


def dumps(value: Any) -> str:
    """Compact JSON text (non-ASCII kept as is)."""
    if orjson is not None:
        return orjson.dumps(value).decode("utf-8")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, for response bodies."""
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class RawJson:
    """Registry of JSON texts to splice: `mark(text)` returns a placeholder to put in the document."""

    def __init__(self) -> None:
        self._texts: list[str] = []

    def mark(self, text: str) -> str:
        """A placeholder string that `dumps` replaces with `text` verbatim."""
        self._texts.append(text)
        return f"\x00raw{len(self._texts) - 1}\x00"

    def dumps(self, document: Any) -> bytes:
        """The document as JSON bytes with every placeholder replaced by its raw text."""
        encoded = json.dumps(document, ensure_ascii=False, separators=(",", ":"))  # escapes \x00 as \u0000
        for index, text in enumerate(self._texts):
            encoded = encoded.replace(f'"\\u0000raw{index}\\u0000"', text, 1)
        return encoded.encode("utf-8")


def raw_json_response(document: Any, raw: RawJson, media_type: str, headers: dict[str, str] | None = None,
                      status_code: int = 200) -> Response:
    """A response whose body is `document` with raw JSON spliced in."""
    return Response(raw.dumps(document), status_code=status_code, media_type=media_type, headers=headers)
