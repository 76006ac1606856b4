"""YAML files validated with errors that name the line: parse once into data plus a path -> line index.

The inventory (provisioning/) and the community file (community/) are edited by hand; a validation error is only
useful with the line it is about, so both validate the parsed data and map each error's location back here.
"""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[Any, ...]


class YamlSyntaxError(ValueError):
    """The text is not YAML; the message is `<name>:<line>: not valid YAML: <problem>`."""


def load_with_lines(text: str, name: str) -> tuple[Any, dict[Path_, int]]:
    """The parsed document and the 1-based line of every mapping key and sequence item, by path."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise YamlSyntaxError(f"{name}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return data, (index_lines(node) if node is not None else {})


def index_lines(node: yaml.Node, path: Path_ = ()) -> dict[Path_, int]:
    """Line (1-based) of every mapping key and sequence item under `node`, by path."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            lines[sub] = key.start_mark.line + 1
            for inner, line in index_lines(value, sub).items():
                lines.setdefault(inner, line)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(index_lines(item, (*path, index)))
    return lines


def line_of(lines: dict[Path_, int], loc: Path_) -> int:
    """The line of the deepest part of `loc` the file has (a missing field: its parent's line)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def dotted(loc: Path_, whole: str = "(file)") -> str:
    """`members[2].tariff` for ("members", 2, "tariff"); `whole` for the empty path."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or whole
