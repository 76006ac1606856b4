"""The distributor's hourly sharing-coefficient file `<CAU>_<YYYY>.txt`: write, read, validate.

Format (docs/community.md, "The distributor file"; normative text: Annex of Orden TED/1247/2021, BOE-A-2021-18706):
one line `CUPS;HHHH;C` per member and hour, no header; all hours of the first CUPS, then the next;
HHHH = hour of the year 0001..8760 (8784 in leap years), hour 1 = 00:00-01:00 on 1 January;
C = beta with six decimals and a decimal comma (`0,250000`); per hour the betas add up to exactly 1,000000.
Lines end in CRLF with no newline after the last line (as the Som Energia file test expects); the validator
also accepts LF and a final newline, since distributors' portals differ.

Hour numbering across daylight saving time is not confirmed from the normative text. Here hour k is the k-th
elapsed hour from local midnight on 1 January: local midnights of 1 January are both in winter time, so a year
always has 8760/8784 elapsed hours, and the spring-forward and fall-back days simply have 23 and 25 of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.hours import hours_in_year

MICRO = 1_000_000  # six decimals: coefficients are handled as integer millionths so sums are exact
LINE_END = "\r\n"
_LINE_RE = re.compile(r"^(?P<cups>[^;]+);(?P<hour>\d{4});(?P<coef>\d,\d{6})$")


def file_name(cau: str, year: int) -> str:
    """`<CAU>_<YYYY>.txt`."""
    return f"{cau}_{year:04d}.txt"


def round_coefficients(
    beta: np.ndarray,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    reserve: float = 0.0,
    reserve_members: Sequence[bool] | None = None,
) -> np.ndarray:
    """Round betas (members x hours) to integer millionths that add up to exactly 1 000 000 every hour.

    Largest-remainder rounding: floor everything, then give the missing millionths to the members with the
    largest remainders. Values within 1e-9 of a millionth count as on it (solver tolerance), and the result
    keeps each member inside [lower, upper] and the reserve group at or above `reserve`, so rounding never
    breaks a rule the betas satisfied (the community's rules are given with at most six decimals).
    """
    beta = np.asarray(beta, float)
    n = beta.shape[0]
    lo = (
        np.zeros(n, np.int64) if lower is None else np.ceil(np.asarray(lower) * MICRO - 1e-6).astype(np.int64)
    )
    hi = (
        np.full(n, MICRO, np.int64)
        if upper is None
        else np.floor(np.asarray(upper) * MICRO + 1e-6).astype(np.int64)
    )
    group = np.zeros(n, bool) if reserve_members is None else np.asarray(reserve_members, bool)
    reserve_micro = int(np.ceil(reserve * MICRO - 1e-6))
    scaled = beta * MICRO
    out = np.floor(scaled + 1e-3).astype(np.int64)
    out = np.clip(out, lo[:, None], hi[:, None])
    remainder = scaled - out
    deficit = MICRO - out.sum(axis=0)
    for k in np.flatnonzero(deficit != 0):
        col = out[:, k]
        rem = remainder[:, k]
        d = int(deficit[k])
        if d > 0:
            for i in np.argsort(-rem, kind="stable"):
                room = int(hi[i] - col[i])
                step = min(room, d)
                col[i] += step
                d -= step
                if d == 0:
                    break
        else:
            for i in np.argsort(rem, kind="stable"):
                room = int(col[i] - lo[i])
                step = min(room, -d)
                col[i] -= step
                d += step
                if d == 0:
                    break
        if d != 0:
            raise ValueError(f"hour {k + 1}: the bounds cannot hold betas adding up to 1")
    if reserve_micro and group.any():
        short = reserve_micro - out[group].sum(axis=0)
        for k in np.flatnonzero(short > 0):
            col, need = out[:, k], int(short[k])
            takers = [i for i in np.flatnonzero(group) if col[i] < hi[i]]
            givers = [i for i in np.flatnonzero(~group) if col[i] > lo[i]]
            while need > 0 and takers and givers:
                t, g = takers[0], givers[0]
                step = min(need, int(hi[t] - col[t]), int(col[g] - lo[g]))
                col[t] += step
                col[g] -= step
                need -= step
                takers = [i for i in takers if col[i] < hi[i]]
                givers = [i for i in givers if col[i] > lo[i]]
            if need > 0:
                raise ValueError(f"hour {k + 1}: cannot keep the energy-poverty reserve after rounding")
    return out


def format_coefficient(micro: int) -> str:
    """Millionths as the file writes them: 250000 -> '0,250000', 1000000 -> '1,000000'."""
    return f"{micro // MICRO},{micro % MICRO:06d}"


def render(cups: Sequence[str], beta_micro: np.ndarray) -> str:
    """The file's text for integer-millionth betas (members x hours), in the file's line order (all hours of one CUPS, then the next)."""
    beta_micro = np.asarray(beta_micro)
    if beta_micro.shape[0] != len(cups):
        raise ValueError(f"{len(cups)} CUPS but {beta_micro.shape[0]} rows of coefficients")
    sums = beta_micro.sum(axis=0)
    if (sums != MICRO).any():
        k = int(np.flatnonzero(sums != MICRO)[0])
        raise ValueError(
            f"hour {k + 1}: coefficients add up to {format_coefficient(int(sums[k]))}, not 1,000000"
        )
    lines = [
        f"{c};{hour:04d};{format_coefficient(int(v))}"
        for c, row in zip(cups, beta_micro, strict=True)
        for hour, v in enumerate(row, start=1)
    ]
    return LINE_END.join(lines)


def write(path: Path, cups: Sequence[str], beta_micro: np.ndarray) -> Path:
    """Write the file (bytes exactly as `render` gives them: ASCII, CRLF, no final newline)."""
    path.write_bytes(render(cups, beta_micro).encode("ascii"))
    return path


@dataclass(frozen=True)
class CoefficientFile:
    """A parsed coefficient file: CUPS in file order and integer-millionth betas (members x hours)."""

    cups: tuple[str, ...]
    beta_micro: np.ndarray

    @property
    def beta(self) -> np.ndarray:
        return self.beta_micro / MICRO


class CoefficientFileError(ValueError):
    """The file breaks the format; `errors` are "file:line: what" strings (at most `max_errors` of them)."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


def read(
    path: Path,
    *,
    year: int | None = None,
    expected_cups: Sequence[str] | None = None,
    cau: str | None = None,
    max_errors: int = 50,
) -> CoefficientFile:
    """Parse and validate a coefficient file; raise CoefficientFileError naming each bad line.

    Checks: line syntax, hours 1..N in order for every CUPS (N from the year, taken from the file name when
    not given), CUPS blocks in one piece, each beta in [0, 1], every hour adding up to exactly 1,000000, and,
    when given, the CUPS being exactly the community's members and the name being `<CAU>_<YYYY>.txt`.
    """
    name = path.name
    errors: list[str] = []
    m = re.match(r"^(?P<cau>.+)_(?P<year>\d{4})\.txt$", name)
    if m is None:
        errors.append(f"{name}: the file name must be <CAU>_<YYYY>.txt")
    else:
        if year is None:
            year = int(m["year"])
        elif int(m["year"]) != year:
            errors.append(f"{name}: the name says year {m['year']}, expected {year}")
        if cau is not None and m["cau"] != cau:
            errors.append(f"{name}: the name says CAU {m['cau']}, expected {cau}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CoefficientFileError([f"{name}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        line_no = raw[: exc.start].count(b"\n") + 1
        raise CoefficientFileError([f"{name}:{line_no}: non-ASCII byte"]) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a final newline
    n_hours = hours_in_year(year) if year is not None else None

    def err(line_no: int, msg: str) -> None:
        if len(errors) < max_errors:
            errors.append(f"{name}:{line_no}: {msg}")

    cups_order: list[str] = []
    values: dict[str, list[int]] = {}
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        match = _LINE_RE.match(line)
        if match is None:
            err(line_no, f"expected CUPS;HHHH;0,000000 (six decimals, decimal comma), got {line[:60]!r}")
            continue
        c, hour = match["cups"], int(match["hour"])
        micro = int(match["coef"].replace(",", ""))
        if c not in values:
            cups_order.append(c)
            values[c] = []
            first_line[c] = line_no
        elif cups_order[-1] != c:
            err(line_no, f"{c} appears again after other CUPS (each CUPS's hours must be one block)")
            continue
        expected_hour = len(values[c]) + 1
        if hour != expected_hour:
            err(line_no, f"hour {hour:04d} where {expected_hour:04d} was expected for {c}")
        if micro > MICRO:
            err(line_no, f"coefficient {match['coef']} is above 1")
        values[c].append(micro)

    if not cups_order and not errors:
        errors.append(f"{name}: the file is empty")
    for c in cups_order:
        got = len(values[c])
        if n_hours is not None and got != n_hours:
            err(first_line[c], f"{c} has {got} hours, {year} has {n_hours}")
    if expected_cups is not None:
        missing = [c for c in expected_cups if c not in values]
        extra = [c for c in cups_order if c not in set(expected_cups)]
        for c in missing:
            errors.append(f"{name}: member CUPS {c} has no lines")
        for c in extra:
            err(first_line[c], f"CUPS {c} is not a member of the community")
    if errors:
        raise CoefficientFileError(errors)
    beta_micro = np.array([values[c] for c in cups_order], dtype=np.int64)
    sums = beta_micro.sum(axis=0)
    for k in np.flatnonzero(sums != MICRO)[:max_errors]:
        # Point at the hour's line of the first CUPS: that is where a reader starts looking.
        err(
            first_line[cups_order[0]] + int(k),
            f"hour {k + 1:04d}: coefficients add up to {format_coefficient(int(sums[k]))}, not 1,000000",
        )
    if errors:
        raise CoefficientFileError(errors)
    return CoefficientFile(tuple(cups_order), beta_micro)
