"""The NGSI-LD query language (`q`), parsed once and evaluated against stored (expanded) entities.

Grammar (ETSI GS CIM 009 §4.9): terms joined by `;` (AND, binds tighter) and `|` (OR), parentheses; a term is
an attribute path alone (existence) or `path op value` with `== != > >= < <= ~= !~=`. Values: numbers, quoted
strings, true/false, DateTimes and URIs unquoted, lists `a==1,2,3` and ranges `a==1..5` (inclusive).
Paths: `a.b` names a sub-attribute (or observedAt/unitCode/datasetId/createdAt/modifiedAt), `a[L1]` a key
inside a JSON value, so `phaseVoltage[L1]>250` reads one phase of a per-phase value.
The same compiled query serves `GET /entities?q=` and subscriptions, so both agree on what matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ._context import ActiveContext
from ._errors import bad_request
from ._model import VALUE_MEMBERS, Entity, check_name, value_of

_OPERATORS = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")
_STOP = set("=!<>~;|()[].")
_KEYWORD_MEMBERS = frozenset({"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "type"}) | VALUE_MEMBERS
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_COMPARABLE_BARE = re.compile(r"^(\d{4}-\d{2}-\d{2}|\d{2}:\d{2})")  # DateTime, Date or Time
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_MISSING = object()


class QuerySyntaxError(ValueError):
    """`q` does not follow the grammar; the message says where."""


@dataclass(frozen=True)
class Range:
    """`low..high`, both ends included."""

    low: Any
    high: Any


Predicate = Callable[[Entity], bool]


@dataclass(frozen=True)
class Query:
    """A compiled `q`: call `matches(entity)`."""

    text: str
    matches: Predicate


def compile_q(text: str, ctx: ActiveContext) -> Query:
    """Parse `q` with the request's context (attribute names are terms); 400 BadRequestData when invalid."""
    try:
        parser = _Parser(text, ctx)
        predicate = parser.expression()
        if parser.pos != len(text):
            raise QuerySyntaxError(f"unexpected {text[parser.pos:][:20]!r} at position {parser.pos}")
    except QuerySyntaxError as exc:
        raise bad_request("Invalid q", f"{text!r}: {exc}") from None
    return Query(text, predicate)


class _Parser:
    def __init__(self, text: str, ctx: ActiveContext) -> None:
        self.text = text
        self.ctx = ctx
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expression(self) -> Predicate:
        alternatives = [self._conjunction()]
        while self._peek() == "|":
            self.pos += 1
            alternatives.append(self._conjunction())
        if len(alternatives) == 1:
            return alternatives[0]
        return lambda entity: any(p(entity) for p in alternatives)

    def _conjunction(self) -> Predicate:
        parts = [self._factor()]
        while self._peek() == ";":
            self.pos += 1
            parts.append(self._factor())
        if len(parts) == 1:
            return parts[0]
        return lambda entity: all(p(entity) for p in parts)

    def _factor(self) -> Predicate:
        if self._peek() == "(":
            self.pos += 1
            inner = self.expression()
            if self._peek() != ")":
                raise QuerySyntaxError(f"missing ')' at position {self.pos}")
            self.pos += 1
            return inner
        return self._term()

    def _name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _STOP:
            self.pos += 1
        name = self.text[start:self.pos].strip()
        if not name:
            raise QuerySyntaxError(f"attribute name expected at position {start}")
        return name

    def _term(self) -> Predicate:
        attribute = self.ctx.expand(self._name())
        steps: list[tuple[str, str]] = []
        while self._peek() in (".", "["):
            if self._peek() == ".":
                self.pos += 1
                name = self._name()
                steps.append(("member", name) if name in _KEYWORD_MEMBERS else ("sub", self.ctx.expand(name)))
            else:
                self.pos += 1
                end = self.text.find("]", self.pos)
                if end < 0:
                    raise QuerySyntaxError(f"missing ']' after position {self.pos}")
                steps.append(("key", self.text[self.pos:end].strip()))
                self.pos = end + 1
        operator = next((op for op in _OPERATORS if self.text.startswith(op, self.pos)), None)
        path = _path_reader(attribute, tuple(steps))
        if operator is None:
            return lambda entity: path(entity) is not _MISSING
        self.pos += len(operator)
        raw = self._raw_value()
        return _comparison(path, operator, raw)

    def _raw_value(self) -> str:
        start = self.pos
        quoted = False
        depth = 0
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"' and (self.pos == start or self.text[self.pos - 1] != "\\"):
                quoted = not quoted
            elif not quoted:
                if char == "(":
                    depth += 1
                elif char == ")":
                    if depth == 0:
                        break
                    depth -= 1
                elif char in ";|" and depth == 0:
                    break
            self.pos += 1
        if quoted:
            raise QuerySyntaxError(f"unterminated string starting at position {start}")
        raw = self.text[start:self.pos]
        if not raw:
            raise QuerySyntaxError(f"value expected at position {start}")
        return raw


def _path_reader(attribute: str, steps: tuple[tuple[str, str], ...]) -> Callable[[Entity], Any]:
    """A function reading the path's value from an entity (_MISSING when any step is absent)."""

    def read(entity: Entity) -> Any:
        current: Any = entity.attrs.get(attribute, _MISSING)
        if current is _MISSING:
            return _MISSING
        in_attribute = True  # `current` is a normalized attribute (not yet its value)
        for kind, name in steps:
            if in_attribute:
                if kind == "member":
                    current = current.get(name, _MISSING)
                    in_attribute = False
                    if current is _MISSING:
                        return _MISSING
                    continue
                if kind == "sub" and name in current and isinstance(current[name], dict):
                    current = current[name]
                    continue
                current = _value_of(current)
                in_attribute = False
                if kind == "sub":
                    # not a sub-attribute: Orion-LD reads `a.b` as a key of a's JSON value as well
                    name = _short_key(name)
            if not isinstance(current, dict) or name not in current:
                if isinstance(current, dict) and kind == "sub" and _short_key(name) in current:
                    name = _short_key(name)
                else:
                    return _MISSING
            current = current[name]
        if in_attribute and current.get("type") == "LanguageProperty":
            # `name=="Grote Markt"` matches the text in any language (`name[nl]` reads one language)
            texts = current.get("languageMap", {}).values()
            return [t for text in texts for t in (text if isinstance(text, list) else [text])]
        return _value_of(current) if in_attribute else current

    return read


def _short_key(iri: str) -> str:
    """A key as the client wrote it: the last IRI segment (JSON value keys are never expanded)."""
    return re.split(r"[/#]", iri)[-1]


def _value_of(attribute: dict[str, Any]) -> Any:
    value = value_of(attribute)
    return _MISSING if value is None else value


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"')
    if raw in ("true", "false"):
        return raw == "true"
    if _NUMBER.match(raw):
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    return raw


def _split_top(raw: str, separator: str) -> list[str]:
    parts, quoted, current = [], False, []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == '"':
            quoted = not quoted
        if not quoted and raw.startswith(separator, i):
            parts.append("".join(current))
            current = []
            i += len(separator)
            continue
        current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def _parse_value(raw: str) -> Any:
    items = _split_top(raw, ",")
    if len(items) > 1:
        return [_parse_value(item) for item in items]
    bounds = _split_top(raw, "..")
    if len(bounds) == 2:
        return Range(_scalar(bounds[0]), _scalar(bounds[1]))
    if len(bounds) > 2:
        raise QuerySyntaxError(f"invalid range {raw!r}")
    return _scalar(raw)


@lru_cache(maxsize=1024)
def _as_time(text: str) -> float | None:
    if not _DATETIME.match(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # a bare DateTime is UTC


def _comparable(target: Any, wanted: Any) -> tuple[Any, Any] | None:
    """Both sides in one ordered domain (numbers, DateTimes, strings), or None when they cannot compare."""
    if isinstance(target, bool) or isinstance(wanted, bool):
        return (target, wanted) if isinstance(target, bool) and isinstance(wanted, bool) else None
    if isinstance(target, int | float) and isinstance(wanted, int | float):
        return target, wanted
    if isinstance(target, str) and isinstance(wanted, str):
        t, w = _as_time(target), _as_time(wanted)
        if t is not None and w is not None:
            return t, w
        return target, wanted
    return None


def _equals(target: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        return any(_equals(target, w) for w in wanted)
    if isinstance(wanted, Range):
        low, high = _comparable(target, wanted.low), _comparable(target, wanted.high)
        return low is not None and high is not None and low[1] <= low[0] and high[0] <= high[1]
    pair = _comparable(target, wanted)
    return pair is not None and pair[0] == pair[1]


def _order(target: Any, wanted: Any, operator: str) -> bool:
    pair = _comparable(target, wanted)
    if pair is None:
        return False
    left, right = pair
    try:
        return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[operator]
    except TypeError:
        return False


def _comparison(path: Callable[[Entity], Any], operator: str, raw: str) -> Predicate:
    if operator in ("~=", "!~="):
        wanted = raw.strip()
        if len(wanted) >= 2 and wanted[0] == wanted[-1] == '"':
            wanted = wanted[1:-1]
        try:
            pattern = re.compile(wanted)
        except re.error as exc:
            raise QuerySyntaxError(f"invalid pattern {wanted!r}: {exc}") from None

        def test(target: Any) -> bool:
            hit = isinstance(target, str) and pattern.search(target) is not None
            return hit if operator == "~=" else isinstance(target, str) and not hit
        return _predicate(path, test, negative=operator == "!~=")
    wanted = _parse_value(raw)
    if operator == "==":
        def test(target: Any) -> bool:
            return _equals(target, wanted)
    elif operator == "!=":
        def test(target: Any) -> bool:
            return not _equals(target, wanted)
    else:
        if isinstance(wanted, list | Range):
            raise QuerySyntaxError(f"{operator} takes one value, not a list or range")
        text = raw.strip()
        if not (text.startswith('"') or _NUMBER.match(text) or _COMPARABLE_BARE.match(text)):
            raise QuerySyntaxError(f"{operator} compares with a number, a quoted string, a date or a time, "
                                   f"not {raw!r}")

        def test(target: Any) -> bool:
            return _order(target, wanted, operator)

    return _predicate(path, test, negative=operator == "!=")


def _predicate(path: Callable[[Entity], Any], test: Callable[[Any], bool], negative: bool) -> Predicate:
    def predicate(entity: Entity) -> bool:
        target = path(entity)
        if target is _MISSING:
            return False
        if isinstance(target, list):  # an array value matches when an element does (none, for != and !~=)
            hits = [test(item) for item in target]
            return all(hits) if negative else any(hits)
        return test(target)

    return predicate


def type_selection(raw: str | None, ctx: ActiveContext) -> tuple[str, ...] | None:
    """The expanded types an entity type expression (§4.17: `,` and `|` OR, `;` AND, parentheses) selects.

    An entity here has one type, so an AND of two different types selects nothing, and the expression reduces
    to the set of single types it accepts (possibly empty). None when there is no `type` parameter.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        raise bad_request("Empty URI parameter type")
    pos = 0

    def peek() -> str:
        return text[pos] if pos < len(text) else ""

    def expression() -> set[str]:
        nonlocal pos
        selected = conjunction()
        while peek() in (",", "|"):
            pos += 1
            selected |= conjunction()
        return selected

    def conjunction() -> set[str]:
        nonlocal pos
        selected = factor()
        while peek() == ";":
            pos += 1
            selected &= factor()
        return selected

    def factor() -> set[str]:
        nonlocal pos
        if peek() == "(":
            pos += 1
            inner = expression()
            if peek() != ")":
                raise bad_request("Invalid type expression", f"{raw!r}: missing ')' at position {pos}")
            pos += 1
            return inner
        start = pos
        while pos < len(text) and text[pos] not in ",|;()":
            pos += 1
        name = text[start:pos].strip()
        if not name:
            raise bad_request("Invalid type expression", f"{raw!r}: type name expected at position {start}")
        return {ctx.expand(check_name(name, "entity type"))}

    selected = expression()
    if pos != len(text):
        raise bad_request("Invalid type expression", f"{raw!r}: unexpected {text[pos:][:20]!r}")
    return tuple(sorted(selected))
