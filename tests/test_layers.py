"""The layers hold: kernel <- datamodels, simulation <- fiware_client <- services, bridges, apps <- the CLI
(docs/architecture.md).

A part may import the layers below it and itself, never another part of its own layer: services talk to each
other through the broker's API (with fiware_client), not through each other's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BELOW = {"kernel": set(), "datamodels": {"kernel"}, "simulation": {"kernel"}, "fiware_client": {"kernel", "datamodels"}}
SHARED = {"kernel", "datamodels", "simulation", "fiware_client"}
PARTS = {"twin_service", "provisioning", "community", "grafana", "fleet", "bridges", "forecasting", "access",
         "firmware", "energytwin", *SHARED}
# Known crossings, each with its reason; a new one fails the test.
ALLOWED: dict[tuple[str, str], str] = {}


def part_of(module: str) -> str:
    """The part a module belongs to: twin_service's services (broker, agent, quality, web) each count alone."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("twin_service", "bridges") and len(parts) > 1 else parts[0]


def crossings() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in PARTS or rel.parts[:2] == ("firmware", "ade9000_esp32") or "guest" in rel.parts:
            continue  # the device code runs on MicroPython and imports only itself
        source = part_of(".".join(rel.with_suffix("").parts))
        if source.startswith("energytwin"):
            continue  # the CLI wires every part
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                target = part_of(name)
                if target.split(".")[0] not in PARTS or target == source:
                    continue
                allowed = BELOW.get(source.split(".")[0], SHARED)
                if target not in allowed and (source.split(".")[0], target.split(".")[0]) not in ALLOWED:
                    found.append((str(rel), source, name))
    return found


def test_no_part_imports_another_of_its_layer() -> None:
    assert crossings() == []


def test_the_rule_catches_a_crossing() -> None:
    assert part_of("twin_service.web._readings") == "twin_service.web"
    assert part_of("twin_service.quality.readings") != part_of("twin_service.web._app")
    assert "twin_service.quality" not in BELOW.get("twin_service", SHARED)


# Modules that speak HTTP themselves rather than through fiware_client, each with its reason; a new one fails.
OWN_HTTP: dict[str, str] = {
    "twin_service/agent/northbound_writer.py": "the ingest hot path: one kept-alive client posting bytes built "
                                               "by orjson in the FIWARE agent's own batch-upsert shape",
    "twin_service/broker/_context.py": "fetches remote JSON-LD @context documents, not a FIWARE service",
    "access/_pep.py": "the PEP is a reverse proxy: it forwards whatever request it authorises",
    "access/_upstream.py": "the PEP's upstream connection (same reason)",
    "fleet/service.py": "passes a bearer-token transport into fiware_client's NgsiLdClient (no request of its own)",
}


def speaks_http(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in {"httpx", "requests"} for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {"httpx", "requests"}:
            return True
    return False


def test_only_the_client_speaks_http_to_fiware_services() -> None:
    """Every consumer of the broker and the agent goes through fiware_client (issue: one client for all)."""
    found = []
    for part in sorted(PARTS - {"fiware_client", "firmware"}):
        for path in sorted((ROOT / part).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if speaks_http(path) and rel not in OWN_HTTP:
                found.append(rel)
    assert found == [], f"talk to FIWARE services through fiware_client, or list the module in OWN_HTTP: {found}"
    stale = [rel for rel in OWN_HTTP if not speaks_http(ROOT / rel)]
    assert stale == [], f"listed in OWN_HTTP but no longer speaks HTTP: {stale}"
