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
from datamodels.context import (
    BATTERY_CONTEXT,
    CORE_CONTEXT,
    ENERGY_CONTEXT,
    GREEN_ENERGY_CONTEXT,
    link_header,
)
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
    with NgsiLdClient(guarded.broker_url, retry=ONCE) as broker:
        broker.upsert_entities([battery])  # provisioning's, not the page's: the page only sends commands
    with NgsiLdClient(guarded.pep_url, token=page, retry=ONCE) as web:
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


BATTERY = "urn:ngsi-ld:BatteryStatus:cmd-home-1"
PV = "urn:ngsi-ld:PhotovoltaicMeasurement:cmd-home-1"


def _der_entities() -> list[dict]:
    battery = {"id": BATTERY, "type": "BatteryStatus",
               "batteryPowerSetpoint": {"type": "Property", "value": ""},
               "chargeState": {"type": "Property", "value": "HOLDING"},
               "stateOfCharge": {"type": "Property", "value": 0.5}}
    pv = {"id": PV, "type": "PhotovoltaicMeasurement", "pvPowerLimit": {"type": "Property", "value": ""},
          "exportLimit": {"type": "Property", "value": ""}, "activePower": {"type": "Property", "value": 900.0}}
    return [battery, pv]


def test_the_page_may_update_only_the_command_attributes(guarded: Guarded):
    """The page's account sends commands (datamodels/der.py COMMANDS) and nothing else: every other write to a
    battery or an inverter is refused before the broker sees it, and the entities keep their values."""

    with NgsiLdClient(guarded.broker_url, retry=ONCE) as broker:
        broker.upsert_entities(_der_entities())
    token = ServiceTokens(guarded.data_dir).issue("web", "page").read_text().strip()
    link = {"Link": link_header(BATTERY_CONTEXT)}
    with NgsiLdClient(guarded.pep_url, token=TokenFile(ServiceTokens(guarded.data_dir).path("web")),
                      retry=ONCE) as web:
        web.update_attrs(BATTERY, {"batteryPowerSetpoint": {"type": "Property", "value": -500}})
        web.update_attrs(PV, {"pvPowerLimit": {"type": "Property", "value": 40},
                              "exportLimit": {"type": "Property", "value": 0}})
    auth = {"Authorization": f"Bearer {token}"}
    setpoint = {"type": "Property", "value": 200}
    with httpx.Client(base_url=guarded.pep_url + "/ngsi-ld/v1", headers=auth, timeout=10) as http:
        allowed = http.patch(f"/entities/{BATTERY}/attrs/batteryPowerSetpoint", json=setpoint, headers=link)
        assert allowed.status_code == 204, allowed.text
        inline = {"@context": [BATTERY_CONTEXT, CORE_CONTEXT], "batteryPowerSetpoint": setpoint}
        assert http.patch(f"/entities/{BATTERY}/attrs", json=inline,
                          headers={"Content-Type": "application/ld+json"}).status_code == 204
        refused = {
            "another attribute": http.patch(f"/entities/{BATTERY}/attrs",
                                            json={"chargeState": {"type": "Property", "value": "FULL"}},
                                            headers=link),
            "a command with another attribute": http.patch(
                f"/entities/{BATTERY}/attrs", headers=link,
                json={"batteryPowerSetpoint": setpoint, "stateOfCharge": {"type": "Property", "value": 0.99}}),
            "another type's command": http.patch(f"/entities/{BATTERY}/attrs/exportLimit", json=setpoint,
                                                 headers=link),
            "another attribute by path": http.patch(f"/entities/{PV}/attrs/activePower", json=setpoint,
                                                    headers={"Link": link_header(GREEN_ENERGY_CONTEXT)}),
            "an expanded name": http.patch(f"/entities/{BATTERY}/attrs", headers=link, json={
                "https://smartdatamodels.org/dataModel.Battery/chargeState": {"type": "Property", "value": "x"}}),
            "an inline context redefining the name": http.patch(
                f"/entities/{BATTERY}/attrs", headers={"Content-Type": "application/ld+json"},
                json={"@context": {"batteryPowerSetpoint": "https://smartdatamodels.org/dataModel.Battery/"
                                                           "chargeState"}, "batteryPowerSetpoint": setpoint}),
            "an unknown context": http.patch(f"/entities/{BATTERY}/attrs", json={"batteryPowerSetpoint": setpoint},
                                             headers={"Link": link_header("https://evil.example/remap.jsonld")}),
            "another known context": http.patch(f"/entities/{BATTERY}/attrs",
                                                json={"batteryPowerSetpoint": setpoint},
                                                headers={"Link": link_header(ENERGY_CONTEXT)}),
            "an append": http.post(f"/entities/{BATTERY}/attrs", json={"batteryPowerSetpoint": setpoint},
                                   headers=link),
            "a replace": http.put(f"/entities/{BATTERY}/attrs/batteryPowerSetpoint", json=setpoint, headers=link),
            "a create": http.post("/entities", json={"id": "urn:ngsi-ld:BatteryStatus:cmd-home-2",
                                                     "type": "BatteryStatus"}, headers=link),
            "a batch upsert": http.post("/entityOperations/upsert", json=_der_entities()[:1], headers=link),
            "a batch update": http.post("/entityOperations/update", json=[
                {"id": BATTERY, "type": "BatteryStatus", "batteryPowerSetpoint": setpoint}], headers=link),
            "an attribute delete": http.delete(f"/entities/{BATTERY}/attrs/chargeState"),
            "an entity delete": http.delete(f"/entities/{BATTERY}"),
            "an empty update": http.patch(f"/entities/{BATTERY}/attrs", json={}, headers=link),
            "a body that is not JSON": http.patch(f"/entities/{BATTERY}/attrs", content=b"{", headers=link),
        }
    wrong = {what: (r.status_code, r.text[:120]) for what, r in refused.items()
             if r.status_code != 403 or "Forbidden" not in r.text}
    assert not wrong
    with httpx.Client(base_url=guarded.pep_url, headers={
            "Authorization": f"Bearer {guarded.issuer.token('ops', 'control-centre')}"}, timeout=10) as ops:
        metrics = ops.get("/pep/metrics").text
    assert 'reason="attribute"' in metrics
    with NgsiLdClient(guarded.broker_url, retry=ONCE) as broker:
        battery, pv = broker.get_entity(BATTERY), broker.get_entity(PV)
    assert battery["batteryPowerSetpoint"]["value"] == 200  # the last allowed command
    assert battery["chargeState"]["value"] == "HOLDING" and battery["stateOfCharge"]["value"] == 0.5
    assert pv["pvPowerLimit"]["value"] == 40 and pv["exportLimit"]["value"] == 0
    assert pv["activePower"]["value"] == 900.0


@pytest.mark.parametrize(("role", "line", "message"), [
    ("    write_types:\n      BatteryStatus: [batteryPowerSetpoint]\n", 4, "need write_contexts"),
    ("    write_types: [BatteryStatus]\n    write_contexts: [https://a.example/c.jsonld]\n", 5,
     "only used with attribute lists"),
    ("    write_types:\n      BatteryStatus: batteryPowerSetpoint\n", 4, "a mapping of types"),
    ("    write_types:\n      BatteryStatus: [x]\n    write_contexts: [not-a-url]\n", 6, "@context URLs"),
])
def test_attribute_lists_in_the_policy_are_checked(tmp_path: Path, role: str, line: int, message: str):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"roles:\n  page:\n    allow: [entities.write]\n{role}    scope: all\n")
    with pytest.raises(PolicyError, match=rf"policy.yaml:{line}: .*{message}"):
        load_policy(policy)
