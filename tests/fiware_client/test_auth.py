"""Bearer tokens on fiware_client's clients: sent, refreshed before `exp`, asked again after a 401, only to the
origins the environment names (fiware_client/_auth.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from fiware_client import (
    BearerAuth,
    BrokerError,
    IotAgentClient,
    NgsiLdClient,
    RetryPolicy,
    TokenFile,
    TokenUnavailable,
)
from fiware_client._auth import TOKEN_FILE_ENV, TOKEN_ORIGINS_ENV, token_expiry


def jwt_like(name: str, exp: float | None) -> str:
    """A token shaped like a JWT (the client reads `exp` only; the server verifies, here nobody does)."""
    def part(body: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    claims = {"sub": name} if exp is None else {"sub": name, "exp": exp}
    return f"{part({'alg': 'ES256'})}.{part(claims)}.c2ln"


class Server:
    """A MockTransport answering 200 to the tokens it accepts and 401 ProblemDetails to anything else."""

    def __init__(self, *accepted: str) -> None:
        self.accepted = set(accepted)
        self.seen: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization")
        self.seen.append(auth)
        if auth is not None and auth.removeprefix("Bearer ") in self.accepted:
            return httpx.Response(200, json=[])
        return httpx.Response(401, json={"type": "urn:energytwin:errors:Unauthorized", "title": "Unauthorized",
                                         "status": 401, "detail": "token expired"})


def test_token_expiry_reads_exp_and_tolerates_other_tokens():
    assert token_expiry(jwt_like("a", 1_900_000_000)) == 1_900_000_000
    assert token_expiry(jwt_like("a", None)) is None
    assert token_expiry("opaque-token") is None and token_expiry("a.!!!.c") is None


def test_a_static_token_is_sent_on_every_request_of_both_clients():
    server = Server("s3cret")
    with NgsiLdClient("http://broker:1026", transport=httpx.MockTransport(server), token="s3cret") as broker:
        assert broker.query_entities(type="ThreePhaseAcMeasurement") == []
    with IotAgentClient("http://agent:4041", "energytwin", transport=httpx.MockTransport(server),
                        token="s3cret") as agent:
        agent._call("GET", "/iot/about")
    assert server.seen == ["Bearer s3cret", "Bearer s3cret"]


def test_without_a_token_nothing_is_sent_and_the_401_is_raised():
    server = Server("s3cret")
    with NgsiLdClient("http://broker:1026", transport=httpx.MockTransport(server)) as broker, \
            pytest.raises(BrokerError) as refused:
        broker.query_entities(type="ThreePhaseAcMeasurement")
    assert refused.value.status == 401 and server.seen == [None]


def test_a_provider_is_asked_again_shortly_before_exp():
    now = [1_000_000.0]
    issued = iter([jwt_like("first", 1_000_600), jwt_like("second", 1_003_600)])
    first, second = jwt_like("first", 1_000_600), jwt_like("second", 1_003_600)
    server = Server(first, second)
    auth = BearerAuth(lambda: next(issued), refresh_before_s=60, clock=lambda: now[0])
    with httpx.Client(transport=httpx.MockTransport(server), auth=auth) as http:
        http.get("http://broker/x")
        now[0] = 1_000_500.0  # 100 s before exp: still the first
        http.get("http://broker/x")
        now[0] = 1_000_550.0  # 50 s before exp: within the margin, asked again
        http.get("http://broker/x")
    assert server.seen == [f"Bearer {first}", f"Bearer {first}", f"Bearer {second}"]


def test_a_401_asks_the_provider_once_more_and_resends_only_with_a_new_token():
    rotated, fresh = jwt_like("rotated", None), jwt_like("fresh", None)
    server = Server(fresh)
    tokens = iter([rotated, fresh])
    with NgsiLdClient("http://broker:1026", transport=httpx.MockTransport(server),
                      token=lambda: next(tokens)) as broker:
        assert broker.query_entities(type="Device") == []
    assert server.seen == [f"Bearer {rotated}", f"Bearer {fresh}"]

    stuck = Server()  # the provider keeps giving the refused token: one request, not a loop
    with NgsiLdClient("http://broker:1026", transport=httpx.MockTransport(stuck), token=lambda: rotated) as broker, \
            pytest.raises(BrokerError) as refused:
        broker.query_entities(type="Device")
    assert refused.value.status == 401 and len(stuck.seen) == 1


def test_a_token_file_is_reread_when_it_changes(tmp_path: Path):
    path = tmp_path / "svc.jwt"
    provider = TokenFile(path)
    with pytest.raises(TokenUnavailable, match="svc.jwt"):
        provider()
    path.write_text("one\n")
    assert provider() == "one"
    path.write_text("two-two\n")
    assert provider() == "two-two"
    path.write_text("")
    with pytest.raises(TokenUnavailable, match="empty"):
        provider()


def test_the_environment_token_goes_only_to_the_origins_it_names(tmp_path: Path, monkeypatch):
    path = tmp_path / "svc.jwt"
    path.write_text("from-env\n")
    monkeypatch.setenv(TOKEN_FILE_ENV, str(path))
    monkeypatch.setenv(TOKEN_ORIGINS_ENV, "http://127.0.0.1:1027, http://pep.example")
    server = Server("from-env")
    for url in ("http://127.0.0.1:1027", "http://PEP.example:80/ngsi-ld", "http://127.0.0.1:1026",
                "https://pep.example"):
        with NgsiLdClient(url, transport=httpx.MockTransport(server), retry=_once()) as broker:
            try:
                broker.query_entities(type="Device")
            except BrokerError:
                pass
    assert server.seen == ["Bearer from-env", "Bearer from-env", None, None]
    with NgsiLdClient("http://127.0.0.1:1026", transport=httpx.MockTransport(server), token="explicit") as broker:
        broker._http.get("/x")
    assert server.seen[-1] == "Bearer explicit"  # an explicit token wins over the environment


def _once() -> RetryPolicy:
    return RetryPolicy(attempts=1)
