"""The stack's services through the PEP: a fiware_client with its service account's token works, without one
it gets 401, and the role `service` is refused what it does not need (access/_service_accounts.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from access._pep import Call, Pep
from access._policy import PolicyError, load_policy
from access._service_accounts import ServiceTokens
from access._tokens import LocalIssuer
from datamodels.measures import measurement_id
from fiware_client import BrokerError, NgsiLdClient, RetryPolicy, TokenFile

from .conftest import Guarded

ONCE = RetryPolicy(attempts=1)


def measurement(device: str) -> dict:
    return {"id": measurement_id(device), "type": "ThreePhaseAcMeasurement",
            "totalActivePower": {"type": "Property", "value": 1200.0, "unitCode": "WTT"}}


def test_a_service_with_its_token_works_through_the_pep_and_without_one_gets_401(guarded: Guarded):
    tokens = ServiceTokens(guarded.data_dir)
    env = tokens.env("quality", [guarded.pep_url])
    assert env["FIWARE_CLIENT_TOKEN_ORIGINS"] == guarded.pep_url
    token_file = tokens.path("quality")
    assert token_file.stat().st_mode & 0o777 == 0o600
    with NgsiLdClient(guarded.pep_url, token=TokenFile(env["FIWARE_CLIENT_TOKEN_FILE"]), retry=ONCE) as service:
        service.upsert_entities([measurement("svc-meter-1")])
        assert [e["id"] for e in service.query_entities(type="ThreePhaseAcMeasurement")] == \
            [measurement_id("svc-meter-1")]
    with NgsiLdClient(guarded.pep_url, retry=ONCE) as anonymous, pytest.raises(BrokerError) as refused:
        anonymous.query_entities(type="ThreePhaseAcMeasurement")
    assert refused.value.status == 401 and refused.value.title == "Unauthorized"


def test_the_service_role_is_refused_what_it_does_not_need(guarded: Guarded):
    token = ServiceTokens(guarded.data_dir).issue("web")
    auth = {"Authorization": f"Bearer {token.read_text().strip()}"}
    with httpx.Client(base_url=guarded.pep_url, headers=auth, timeout=10) as http:
        assert http.get("/pep/metrics").status_code == 403  # the PEP's counters: operators only
        assert http.get("/iot/devices").status_code == 403  # provisioning: operators only
        history = {"id": measurement_id("svc-meter-1"), "type": "ThreePhaseAcMeasurement",
                   "totalActivePower": [{"type": "Property", "value": 1.0, "observedAt": "2026-12-07T10:00:00Z"}]}
        assert http.post("/ngsi-ld/v1/temporal/entities", json=history).status_code == 403  # no history rewrites
        assert http.get("/ngsi-ld/v1/types").status_code == 200


def test_tokens_are_rewritten_before_they_expire_and_the_client_takes_the_new_one(guarded: Guarded):
    # 30 s tokens: inside the client's 60 s refresh margin, so it reads the file before every request.
    tokens = ServiceTokens(guarded.data_dir, lifetime_s=30, refresh_every_s=0.1)
    path = tokens.issue("forecast")
    provider = TokenFile(path)
    with NgsiLdClient(guarded.pep_url, token=provider, retry=ONCE) as service:
        service.query_entities(type="ThreePhaseAcMeasurement")
        first = provider()
        tokens.start()
        deadline = time.monotonic() + 5
        while provider() == first and time.monotonic() < deadline:
            time.sleep(0.05)
        tokens.stop()
        rewritten = provider()
        assert rewritten != first
        service.query_entities(type="ThreePhaseAcMeasurement")
        assert service._http.auth._token == rewritten
    with pytest.raises(ValueError, match="service account name"):
        tokens.path("../users")


def test_a_refusal_log_line_names_the_caller(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    issuer = LocalIssuer(tmp_path)
    pep = Pep("http://127.0.0.1:9", issuer.verifier(), load_policy())
    token = issuer.token("service:web", "service")
    call = Call("GET", "/pep/metrics", b"", [(b"authorization", f"Bearer {token}".encode())], b"")
    with caplog.at_level("WARNING", logger="access"):
        answer = asyncio.run(pep.handle(call))
    assert answer.status == 403
    assert "refused GET /pep/metrics for service:web (service): 403 role 'service' may not pep.read" in caplog.text


def test_the_stacks_services_write_only_their_entity_types(guarded: Guarded):
    tokens = ServiceTokens(guarded.data_dir)
    analytics = TokenFile(tokens.issue("quality", "analytics"))
    page = TokenFile(tokens.issue("web", "page"))
    anomaly = {"id": "urn:ngsi-ld:Anomaly:svc-meter-1:voltageLow-L1-20261207T1000Z", "type": "Anomaly",
               "severity": {"type": "Property", "value": "low"}}
    battery = {"id": "urn:ngsi-ld:BatteryStatus:svc-home-1", "type": "BatteryStatus",
               "batteryPowerSetpoint": {"type": "Property", "value": ""}}
    with NgsiLdClient(guarded.pep_url, token=analytics, retry=ONCE) as quality:
        quality.upsert_entities([anomaly])  # its own type
        for write in (lambda: quality.upsert_entities([measurement("svc-meter-2")]),
                      lambda: quality.upsert_entities([anomaly, measurement("svc-meter-2")]),  # one outside: refused
                      lambda: quality.update_attrs(measurement_id("svc-meter-1"),
                                                   {"totalActivePower": {"type": "Property", "value": 1.0}}),
                      lambda: quality.upsert_entities([{"id": "not-a-urn", "type": "Anomaly"}])):  # fails closed
            with pytest.raises(BrokerError) as refused:
                write()
            assert refused.value.status == 403 and "writes only Anomaly" in str(refused.value.detail)
    with NgsiLdClient(guarded.pep_url, token=page, retry=ONCE) as web:
        web.upsert_entities([battery])
        web.update_attrs(battery["id"], {"batteryPowerSetpoint": {"type": "Property", "value": "-500"}})
        with pytest.raises(BrokerError) as refused:
            web.upsert_entities([anomaly])
        assert refused.value.status == 403
        assert [e["id"] for e in web.query_entities(type="Anomaly")] == [anomaly["id"]]  # reads everything


def test_write_types_must_be_a_list_of_type_names(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("roles:\n  analytics:\n    allow: [entities.write]\n    write_types: Anomaly\n    scope: all\n")
    with pytest.raises(PolicyError, match=r"policy.yaml:4: roles.analytics.write_types"):
        load_policy(policy)
