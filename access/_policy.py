"""The policy file: roles, the actions each may call, the entities each sees (YAML, errors with line numbers)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kernel.yaml_lines import YamlSyntaxError, line_of, load_with_lines

ROLES = ("member", "manager", "public", "control-centre", "device", "admin", "service", "analytics", "page")
ACTIONS = ("version", "entities.read", "entities.write", "temporal.read", "temporal.write", "subscriptions.read",
           "subscriptions.write", "types.read", "contexts.read", "contexts.write", "agent.read", "agent.write",
           "pep.read")
SCOPES = ("all", "own", "none")
DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")


class PolicyError(ValueError):
    """The policy file is invalid; the message names the file and line."""


@dataclass(frozen=True)
class Rule:
    allow: frozenset[str]
    scope: str
    # The entity types the role may write (entities.write, temporal.write); None: any type its scope allows.
    write_types: frozenset[str] | None = None
    # Narrower still, per type: the only attributes the role may update (PATCH /entities/{id}/attrs[/{attr}]),
    # read under one of `write_contexts` (the @context URLs the role writes with); None: any attribute.
    write_attrs: dict[str, frozenset[str]] | None = None
    write_contexts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Decided once per role at load: '*' stands for every action, so a request costs one set lookup.
        object.__setattr__(self, "_allowed", frozenset(ACTIONS) if "*" in self.allow else self.allow)

    def allows(self, action: str) -> bool:
        return action in self._allowed  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Policy:
    rules: dict[str, Rule]

    def rule(self, role: str) -> Rule | None:
        return self.rules.get(role)


def load_policy(path: Path | None = None) -> Policy:
    path = Path(path or DEFAULT_POLICY)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc}") from exc
    try:
        data, lines = load_with_lines(text, str(path))
    except YamlSyntaxError as exc:
        raise PolicyError(str(exc)) from exc

    def where(*keys: object) -> str:
        return f"{path}:{line_of(lines, tuple(keys))}"

    if not isinstance(data, dict) or not isinstance(data.get("roles"), dict):
        raise PolicyError(f"{path}: the policy needs a 'roles:' mapping")
    rules: dict[str, Rule] = {}
    for role, body in data["roles"].items():
        if role not in ROLES:
            raise PolicyError(f"{where('roles', role)}: roles.{role}: unknown role (roles: {', '.join(ROLES)})")
        if not isinstance(body, dict):
            raise PolicyError(f"{where('roles', role)}: roles.{role}: needs allow: and scope:")
        allow = body.get("allow") or []
        bad = [a for a in allow if a != "*" and a not in ACTIONS]
        if not isinstance(allow, list) or bad:
            raise PolicyError(f"{where('roles', role, 'allow')}: roles.{role}.allow: unknown action(s) {bad} "
                              f"(actions: {', '.join(ACTIONS)}, or '*')")
        scope = body.get("scope", "none")
        if scope not in SCOPES:
            raise PolicyError(f"{where('roles', role, 'scope')}: roles.{role}.scope: {scope!r} is not one of "
                              f"{', '.join(SCOPES)}")
        write_types, write_attrs = _write_types(body.get("write_types"), f"{where('roles', role, 'write_types')}: "
                                                                         f"roles.{role}.write_types")
        contexts = body.get("write_contexts")
        if contexts is not None and (not isinstance(contexts, list) or not contexts
                                     or not all(isinstance(c, str) and "://" in c for c in contexts)):
            raise PolicyError(f"{where('roles', role, 'write_contexts')}: roles.{role}.write_contexts: a list of "
                              f"@context URLs")
        if write_attrs is not None and contexts is None:
            raise PolicyError(f"{where('roles', role, 'write_types')}: roles.{role}: attribute lists in write_types "
                              f"need write_contexts: the @context URL(s) the role writes with (the PEP reads the "
                              f"attribute names under them; an unknown context could map a listed name to "
                              f"another attribute)")
        if contexts is not None and write_attrs is None:
            raise PolicyError(f"{where('roles', role, 'write_contexts')}: roles.{role}.write_contexts: only used "
                              f"with attribute lists in write_types (Type: [attribute, ...])")
        rules[role] = Rule(frozenset(allow), scope, write_types, write_attrs, frozenset(contexts or ()))
    return Policy(rules)


def _write_types(value: object, where: str) -> tuple[frozenset[str] | None, dict[str, frozenset[str]] | None]:
    """`write_types`: a list of types (any attribute of them), or a mapping type -> the attributes it may update."""
    if value is None:
        return None, None
    if isinstance(value, list) and value and all(isinstance(t, str) and t for t in value):
        return frozenset(value), None
    if isinstance(value, dict) and value and all(
            isinstance(t, str) and t and isinstance(a, list) and a and all(isinstance(n, str) and n for n in a)
            for t, a in value.items()):
        return frozenset(value), {t: frozenset(a) for t, a in value.items()}
    raise PolicyError(f"{where}: a list of entity type names (the <Type> of urn:ngsi-ld:<Type>:...), e.g. "
                      f"[Anomaly], or a mapping of types to the attributes the role may update, e.g. "
                      f"{{BatteryStatus: [batteryPowerSetpoint]}}")


_NGSI = "/ngsi-ld/v1"
_ROUTES: list[tuple[str, str, str]] = [
    # (methods, path pattern, action); the first match wins. Group 'id' is an entity id, 'sid' a subscription's.
    ("GET", r"^/version$|^/ngsi-ld/ex/v1/version$|^/iot/about$", "version"),
    ("GET", rf"^{_NGSI}/entities$", "entities.read"),
    ("POST", rf"^{_NGSI}/entities$", "entities.write"),
    ("GET", rf"^{_NGSI}/entities/(?P<id>[^/]+)(/attrs(/[^/]+)?)?$", "entities.read"),
    ("POST PATCH PUT DELETE", rf"^{_NGSI}/entities/(?P<id>[^/]+)(/attrs(/[^/]+)?)?$", "entities.write"),
    ("POST", rf"^{_NGSI}/entityOperations/query$", "entities.read"),
    ("POST", rf"^{_NGSI}/entityOperations/(create|update|upsert|delete|merge)$", "entities.write"),
    # The temporal API under the broker's root, and under Mintaka's (/temporal: FIWARE Mintaka serves the
    # NGSI-LD temporal retrieval API there), so a PEP in front of Mintaka classifies the same requests.
    ("GET", rf"^(?:{_NGSI})?/temporal/entities(/(?P<id>[^/]+))?$", "temporal.read"),
    ("POST", rf"^(?:{_NGSI})?/temporal/entityOperations/query$", "temporal.read"),
    ("POST PATCH PUT DELETE", rf"^(?:{_NGSI})?/temporal/entities(/(?P<id>[^/]+)(/.*)?)?$", "temporal.write"),
    ("GET", rf"^{_NGSI}/subscriptions(/(?P<sid>[^/]+))?$", "subscriptions.read"),
    ("POST PATCH DELETE", rf"^{_NGSI}/subscriptions(/(?P<sid>[^/]+))?$", "subscriptions.write"),
    ("GET", rf"^{_NGSI}/(types|attributes)(/.+)?$", "types.read"),
    ("GET", rf"^{_NGSI}/jsonldContexts(/.+)?$", "contexts.read"),
    ("POST DELETE", rf"^{_NGSI}/jsonldContexts(/.+)?$", "contexts.write"),
    # The IoT Agent's north API (FIWARE IoT Agent provisioning API: service groups and devices).
    ("GET", r"^/iot/devices(/(?P<device>[^/]+))?$|^/iot/(services|groups)$|^/metrics$", "agent.read"),
    ("POST PUT DELETE", r"^/iot/(devices(/(?P<device>[^/]+))?|op/delete|services|groups)$", "agent.write"),
    # The PEP's own counters (served by the PEP, never forwarded).
    ("GET", r"^/pep/metrics$", "pep.read"),
]

# Precompiled per method once at import: a request tries only its own method's patterns, in table order.
_BY_METHOD: dict[str, tuple[tuple[re.Pattern[str], str, bool], ...]] = {}
for _methods, _pattern, _action in _ROUTES:
    _compiled = re.compile(_pattern)
    for _method in _methods.split():
        _BY_METHOD[_method] = (*_BY_METHOD.get(_method, ()), (_compiled, _action, bool(_compiled.groupindex)))

_NO_IDS: dict[str, str] = {}


def classify(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The action a request is, and the ids in its path; None for a path the PEP does not know (refused).

    The ids dict of a route without id groups is one shared empty dict: callers read it, never write it."""
    for pattern, action, has_ids in _BY_METHOD.get(method, ()):
        match = pattern.match(path)
        if match:
            if not has_ids:
                return action, _NO_IDS
            return action, {k: v for k, v in match.groupdict().items() if v}
    return None
