"""temporalValues `[[value, time], …]` JSON built column-wise with numpy instead of row by row in SQLite.

A day of 1 Hz history of one attribute is 86,400 pairs. Built inside SQLite (`json_group_array(json_array(value,
strftime(...)))`) it cost ~90 ms on a quiet machine: the decode of the tagged numbers ~13 ms, `strftime` of every
observedAt ~33 ms and the JSON functions ~30 ms on top of the ~13 ms index range read (2026-12-07, SQLite 3.40).
Here SQLite only concatenates the stored integers (the tagged values and the times in milliseconds: one
`group_concat` each) and the text is made over whole arrays: every row laid out in one byte matrix (the number's
digits a column each, the time gathered from tables of day prefixes, `HH:MM:SS` and `.mmm`), the padding dropped
once at the end. No Python object is made per value.

The answer is byte for byte the one SQLite builds; the store keeps that path for every row this one does not
cover, and tests/broker/test_temporal_json.py compares both on random data:
- a tagged number (see `_store._encoded`) is sign * (|m| * 10 + d) for the float m / 10**d, made from Python's
  repr of the value; its shortest text (repr, and SQLite's 15 significant digits, which is exact for a tagged
  number) is m's digits with the point before the last d of them, which is what is printed here; n * 10 is the int n;
- a time is what `strftime('%Y-%m-%dT%H:%M:%fZ', ts, 'unixepoch')` prints: SQLite rounds to whole milliseconds
  on its Julian-day clock (`(int64)(ts*1000.0 + 210866760000000.0 + 0.5)`) and the store computes that same
  integer in SQL, so only the printing moves here (1970 to 9999; other years take the SQLite path).
"""

from __future__ import annotations

import warnings
from datetime import date
from functools import lru_cache

import numpy as np

JULIAN_EPOCH_MS = 210_866_760_000_000  # SQLite's Julian day number of 1970-01-01T00:00Z, in milliseconds
# the millisecond clock as SQLite's strftime(..., 'unixepoch') computes it, for a Unix-seconds SQL expression
MS_SQL = "CAST({ts} * 1000.0 + 210866760000000.0 + 0.5 AS INTEGER)"
# the same for a time the store prints back exactly (`observed` = 1: a text with milliseconds, whose Unix seconds
# are the double nearest that many milliseconds, within ~1e-4 ms of it up to year 9999): ts * 1000 rounded, two
# digits shorter to print and parse
EXACT_MS_SQL = "CAST({ts} * 1000.0 + 0.5 AS INTEGER)"
MAX_TS = 253_402_300_799  # 9999-12-31T23:59:59Z: strftime prints 4-digit years only up to there
# Below this many rows SQLite's row-by-row text is cheaper than the arrays' fixed cost (~0.1-0.2 ms): measured
# 2026-12-07 per answer, SQL ~20 us + 1.0 us per number (2.3 us per 3-phase object), here ~115 us + 0.4 us
# (~210 us + 0.8 us): even at ~150 rows
MIN_ROWS = 150
_DAY_MS = 86_400_000
_POWERS = np.array([10 ** k for k in range(19)], dtype=np.int64)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_BOOLEANS = np.frombuffer(b"false" + b"true\0", dtype=np.uint8).reshape(2, 5)


def plain_key(key: str) -> bool:
    """Whether a member name prints in JSON as itself between quotes (printable ASCII, no quote, no backslash)."""
    return all(" " <= c <= "~" and c not in '"\\' for c in key)


def integers(text: str | None, count: int) -> np.ndarray | None:
    """The integers of a `group_concat` (comma-separated), or None when the text does not hold `count` of them."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    if not text:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (and stops) at text it cannot read: treat that as refusal
        try:
            out = np.fromstring(text, dtype=np.int64, sep=",")
        except (ValueError, DeprecationWarning):
            return None
    return out if len(out) == count else None


def number_field(tagged: np.ndarray) -> np.ndarray:
    """The JSON text of each tagged integer's number, one row of bytes each (NUL where nothing prints).

    n * 10 is the int n; sign * (|m| * 10 + d) is the float m / 10**d, whose shortest text (Python's repr, which
    the tag was made from, and SQLite's 15 digits) is m's digits with the point before the last d of them and at
    least one digit before it: printed here digit by digit, a column per decimal position, no float formatted.
    """
    magnitude = np.abs(tagged)
    decimals = magnitude % 10
    digits = magnitude // 10
    width = max(len(str(int(digits.max()))), int(decimals.max()) + 1)
    powers = _POWERS[:width]
    # column 0 the sign, then digit k (from the most significant) and, after digit k >= 1, the point if d == k
    out = np.zeros((len(tagged), 2 * width), dtype=np.uint8)
    out[:, 0] = np.where(tagged < 0, ord("-"), 0)
    rest = digits.copy()
    for k in range(width):
        column = 1 + 2 * (width - 1 - k)
        printed = (digits >= powers[k]) | (decimals >= k)  # not a leading zero, or one before the point (0.05)
        out[:, column] = np.where(printed, rest % 10 + 48, 0)
        rest //= 10
        if k:
            out[:, column + 1] = np.where(decimals == k, ord("."), 0)
    return out


def boolean_field(stored: np.ndarray) -> np.ndarray:
    """`true` for a stored 1, `false` for anything else (as the store's SQL rebuilds a boolean member)."""
    return _BOOLEANS[(stored == 1).astype(np.intp)]


def pairs_json(fields: list[np.ndarray], keys: tuple[str, ...] | None, ms: np.ndarray) -> str:
    """`[[value, "time"], …]` from each member's field (number_field / boolean_field; keys None: a scalar) and
    the Unix times in milliseconds (0 to MAX_TS seconds).

    Every row is laid out in one byte matrix (constant pieces, NUL-padded values, the time) and the NULs are
    dropped at the end: no Python object per value or per row."""
    n = len(ms)
    if n == 0:
        return "[]"
    if keys is None:
        pieces = [b"["]
    else:
        names = [b'"' + key.encode() + b'":' for key in keys]
        pieces = [b"[{" + names[0], *(b"," + name for name in names[1:])]
    closing = b',"' if keys is None else b'},"'
    width = sum(len(p) for p in pieces) + sum(f.shape[1] for f in fields) + len(closing) + 24 + 3
    buffer = np.empty(1 + n * width, dtype=np.uint8)  # "[" then the rows: the whole answer in one buffer
    buffer[0] = ord("[")
    rows = buffer[1:].reshape(n, width)
    at = 0
    for piece, field in zip(pieces, fields, strict=True):
        rows[:, at:at + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
        at += len(piece)
        rows[:, at:at + field.shape[1]] = field
        at += field.shape[1]
    rows[:, at:at + len(closing)] = np.frombuffer(closing, dtype=np.uint8)
    at += len(closing)
    _write_times(rows, at, ms)
    rows[:, at + 24:] = np.frombuffer(b'"],', dtype=np.uint8)
    rows[-1, -1] = ord("]")  # instead of the last row's comma
    return buffer.tobytes().translate(None, b"\0").decode("ascii")  # the values' padding goes


def _write_times(rows: np.ndarray, at: int, ms: np.ndarray) -> None:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` of each time into columns at..at+24, gathered from tables: a prefix per day,
    the 86,400 `HH:MM:SS` of a day (8 bytes: one uint64 each) and the 1,000 `.mmm` (one uint32 each)."""
    n = len(ms)
    days = ms // _DAY_MS
    low, high = int(days.min()), int(days.max())
    if low == high:  # one day: one prefix for every row
        rows[:, at:at + 11] = _prefixes(range(low, low + 1))[0]
    elif high - low < 4096:  # a window of up to ~11 years: one prefix per day of it
        rows[:, at:at + 11] = _prefixes(range(low, high + 1))[days - low]
    else:  # sparse history over longer spans: one prefix per day that has data
        unique, index = np.unique(days, return_inverse=True)
        rows[:, at:at + 11] = _prefixes(unique.tolist())[index]
    seconds, millis = np.divmod(ms - days * _DAY_MS, 1000)
    clock, thousandths = _clock_tables()
    rows[:, at + 11:at + 19] = clock[seconds].view(np.uint8).reshape(n, 8)
    rows[:, at + 19:at + 23] = thousandths[millis].view(np.uint8).reshape(n, 4)
    rows[:, at + 23] = ord("Z")


@lru_cache(maxsize=1)
def _clock_tables() -> tuple[np.ndarray, np.ndarray]:
    """`HH:MM:SS` of every second of a day (86,400 uint64 of 8 bytes each) and `.mmm` of every millisecond
    (1,000 uint32)."""
    second = np.arange(86_400)
    clock = np.empty((86_400, 8), dtype=np.uint8)
    for offset, value in ((0, second // 3600), (3, second // 60 % 60), (6, second % 60)):
        clock[:, offset] = value // 10 + 48
        clock[:, offset + 1] = value % 10 + 48
    clock[:, 2] = clock[:, 5] = ord(":")
    milli = np.arange(1000)
    thousandths = np.empty((1000, 4), dtype=np.uint8)
    thousandths[:, 0] = ord(".")
    thousandths[:, 1:] = np.stack([milli // 100, milli // 10 % 10, milli % 10], axis=1) + 48
    return clock.view(np.uint64).ravel(), thousandths.view(np.uint32).ravel()


def _prefixes(days: range | list[int]) -> np.ndarray:
    """`YYYY-MM-DDT` of each day number (days since 1970-01-01) as rows of 11 bytes."""
    text = b"".join(date.fromordinal(_EPOCH_ORDINAL + day).isoformat().encode() + b"T" for day in days)
    return np.frombuffer(text, dtype=np.uint8).reshape(-1, 11)
