"""The policy file: roles, the actions each may call, the entities each sees (YAML, errors with line numbers)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kernel.yaml_lines import YamlSyntaxError, line_of, load_with_lines

ROLES = ("member", "manager", "public", "control-centre", "device", "admin")
ACTIONS = ("version", "entities.read", "entities.write", "temporal.read", "temporal.write", "subscriptions.read",
           "subscriptions.write", "types.read", "contexts.read", "contexts.write", "agent.read", "agent.write")
SCOPES = ("all", "own", "none")
DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")


class PolicyError(ValueError):
    """The policy file is invalid; the message names the file and line."""


@dataclass(frozen=True)
class Rule:
    allow: frozenset[str]
    scope: str

    def allows(self, action: str) -> bool:
        return "*" in self.allow or action in self.allow


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
        rules[role] = Rule(frozenset(allow), scope)
    return Policy(rules)


_NGSI = "/ngsi-ld/v1"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    # (methods, path pattern, action); the first match wins. Group 'id' is an entity id, 'sid' a subscription's.
    ("GET", re.compile(r"^/version$|^/ngsi-ld/ex/v1/version$|^/iot/about$"), "version"),
    ("GET", re.compile(rf"^{_NGSI}/entities$"), "entities.read"),
    ("POST", re.compile(rf"^{_NGSI}/entities$"), "entities.write"),
    ("GET", re.compile(rf"^{_NGSI}/entities/(?P<id>[^/]+)(/attrs(/[^/]+)?)?$"), "entities.read"),
    ("POST PATCH PUT DELETE", re.compile(rf"^{_NGSI}/entities/(?P<id>[^/]+)(/attrs(/[^/]+)?)?$"),
     "entities.write"),
    ("POST", re.compile(rf"^{_NGSI}/entityOperations/query$"), "entities.read"),
    ("POST", re.compile(rf"^{_NGSI}/entityOperations/(create|update|upsert|delete|merge)$"), "entities.write"),
    ("GET", re.compile(rf"^{_NGSI}/temporal/entities(/(?P<id>[^/]+))?$"), "temporal.read"),
    ("POST", re.compile(rf"^{_NGSI}/temporal/entityOperations/query$"), "temporal.read"),
    ("POST PATCH PUT DELETE", re.compile(rf"^{_NGSI}/temporal/entities(/(?P<id>[^/]+)(/.*)?)?$"),
     "temporal.write"),
    ("GET", re.compile(rf"^{_NGSI}/subscriptions(/(?P<sid>[^/]+))?$"), "subscriptions.read"),
    ("POST PATCH DELETE", re.compile(rf"^{_NGSI}/subscriptions(/(?P<sid>[^/]+))?$"), "subscriptions.write"),
    ("GET", re.compile(rf"^{_NGSI}/(types|attributes)(/.+)?$"), "types.read"),
    ("GET", re.compile(rf"^{_NGSI}/jsonldContexts(/.+)?$"), "contexts.read"),
    ("POST DELETE", re.compile(rf"^{_NGSI}/jsonldContexts(/.+)?$"), "contexts.write"),
    ("GET", re.compile(r"^/iot/devices(/(?P<device>[^/]+))?$|^/metrics$"), "agent.read"),
    ("POST PUT DELETE", re.compile(r"^/iot/(devices(/(?P<device>[^/]+))?|op/delete)$"), "agent.write"),
]


def classify(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The action a request is, and the ids in its path; None for a path the PEP does not know (refused)."""
    for methods, pattern, action in _ROUTES:
        if method in methods.split():
            match = pattern.match(path)
            if match:
                return action, {k: v for k, v in match.groupdict().items() if v}
    return None
