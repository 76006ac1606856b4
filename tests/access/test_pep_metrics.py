"""The PEP's counters at GET /pep/metrics (Prometheus text), and the token cache never outliving a token."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from access._pep import Pep, build_app
from access._policy import load_policy
from access._tokens import LocalIssuer, TokenError

from .conftest import Guarded, free_port

UPSERT = "/ngsi-ld/v1/entityOperations/upsert"


def _series(text: str, name: str, **labels: str) -> float:
    """The value of one series of a Prometheus text answer (labels in any order), 0 when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', head[len(name):]))
        if head.split("{")[0] == name and found == labels:
            return float(value)
    return 0.0


def test_counters_say_what_was_forwarded_and_why_requests_were_refused(guarded: Guarded):
    issuer, url = guarded.issuer, guarded.pep_url
    admin = {"Authorization": f"Bearer {issuer.token('ops', 'admin')}"}
    member = {"Authorization": f"Bearer {issuer.token('ana', 'member', devices=['meter-001'])}"}
    device = {"Authorization": f"Bearer {issuer.token('meter-001', 'device', devices=['meter-001'])}"}
    expired = {"Authorization": f"Bearer {issuer.token('ana', 'member', devices=['meter-001'], lifetime_s=-120)}"}
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/ngsi-ld/v1/entities?type=X").status_code == 401
        assert http.get("/ngsi-ld/v1/entities?type=X", headers=expired).status_code == 401
        body = json.dumps([{"id": "urn:ngsi-ld:Device:meter-001", "type": "Device"}])
        foreign = json.dumps([{"id": "urn:ngsi-ld:Device:meter-002", "type": "Device"}])
        assert http.post(UPSERT, content=foreign, headers={**device, "Content-Type": "application/json"}
                         ).status_code == 403
        assert http.post(UPSERT, content=body, headers={**admin, "Content-Type": "application/json"}).status_code < 300
        assert http.get("/pep/metrics", headers=member).status_code == 403  # members do not read the counters
        assert http.get("/pep/metrics").status_code == 401
        answer = http.get("/pep/metrics", headers=admin)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    pre = "energytwin_pep_"
    assert _series(text, pre + "refused_total", status="401", reason="token_missing") >= 2  # incl. the probe
    assert _series(text, pre + "refused_total", status="401", reason="token_expired") == 1
    assert _series(text, pre + "refused_total", status="403", reason="role") == 1
    assert _series(text, pre + "refused_total", status="403", reason="not_own") == 1
    assert _series(text, pre + "requests_total", outcome="forwarded") >= 1
    assert _series(text, pre + "responses_total", code="2xx") >= 1
    assert _series(text, pre + "upstream_errors_total") == 0
    count = _series(text, pre + "request_seconds_count")
    assert count >= 6 and _series(text, pre + "request_seconds_bucket", le="+Inf") == count
    assert _series(text, pre + "upstream_seconds_count") >= 1
    assert _series(text, pre + "token_cache_entries") >= 2
    for name in ("refused_total", "request_seconds", "relays"):
        assert f"# TYPE {pre}{name} " in text


def test_an_unreachable_upstream_is_a_502_and_counted(tmp_path: Path):
    issuer = LocalIssuer(tmp_path)
    pep = Pep(f"http://127.0.0.1:{free_port()}", issuer.verifier(), load_policy())  # nothing listens there
    app = build_app(pep)
    sent: list[dict] = []
    token = issuer.token("ops", "admin").encode()

    async def call(path: str) -> int:
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"authorization", b"Bearer " + token)]}
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict:
            return messages.pop(0)

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent[-2]["status"]

    async def both() -> tuple[int, str]:
        status = await call("/ngsi-ld/v1/entities")
        await call("/pep/metrics")
        await pep.aclose()
        return status, sent[-1]["body"].decode()

    status, text = asyncio.run(both())
    assert status == 502
    assert _series(text, "energytwin_pep_upstream_errors_total") == 1
    assert _series(text, "energytwin_pep_requests_total", outcome="upstream_error") == 1


def test_a_cached_token_is_refused_once_expired(tmp_path: Path):
    issuer = LocalIssuer(tmp_path)
    verifier = issuer.verifier()
    verifier.leeway_s = 0
    token = issuer.token("ana", "member", devices=["meter-001"], lifetime_s=1)
    expires = json.loads(_claims(token))["exp"]
    assert verifier.verify(token).subject == "ana"  # verified once, now cached
    assert token in verifier._verified
    while time.time() < expires - 0.1:
        assert verifier.verify(token).subject == "ana"  # served from the cache until exp
        time.sleep(0.05)
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(TokenError) as refused:
        verifier.verify(token)
    assert refused.value.kind == "expired" and token not in verifier._verified


def test_the_token_cache_is_bounded(tmp_path: Path):
    issuer = LocalIssuer(tmp_path)
    verifier = issuer.verifier()
    verifier.cache_size = 8
    tokens = [issuer.token(f"user-{i}", "manager") for i in range(20)]
    for token in tokens:
        verifier.verify(token)
        assert len(verifier._verified) <= 8
    assert tokens[-1] in verifier._verified and tokens[0] not in verifier._verified  # the oldest went first
    assert verifier.verify(tokens[0]).subject == "user-0"  # an evicted token is simply verified again


def test_every_counter_is_documented():
    from access._metrics import METRICS, PREFIX

    text = (Path(__file__).parents[2] / "docs" / "access.md").read_text(encoding="utf-8")
    missing = [PREFIX + name for name in METRICS if f"`{PREFIX}{name}`" not in text]
    assert not missing, f"docs/access.md does not list {missing}"


def _claims(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()
