"""A second PEP in front of a Mintaka-style temporal API (production: Orion-LD's history is Mintaka's, on its own
port and root `/temporal`): `access serve --actions temporal.read` forwards temporal reads only, filtered as
the broker's PEP filters them; everything else is refused before the upstream sees it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from access._tokens import LocalIssuer
from datamodels.context import context_for
from datamodels.measures import MEASUREMENT_TYPE, measurement_id
from fiware_client import NgsiLdClient, RetryPolicy
from tests.broker.conftest import LiveBroker, live_broker  # noqa: F401  (fixture)
from tests.fiware_client.mintaka_standin import MintakaStandIn
from tests.fiware_client.quantumleap_standin import Running

from .conftest import _start, free_port

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _history(broker_url: str) -> None:
    with NgsiLdClient(broker_url, tenant="energytwin") as twin:
        for minutes in (0, 15, 30):
            at = (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
            twin.upsert_entities([
                {"id": measurement_id(device), "type": "ThreePhaseAcMeasurement",
                 "totalActivePower": {"type": "Property", "value": 1000.0 + minutes, "unitCode": "WTT",
                                      "observedAt": at}}
                for device in ("meter-001", "meter-002")])


def test_the_temporal_pep_forwards_temporal_reads_only(live_broker: LiveBroker, tmp_path: Path):  # noqa: F811
    _history(live_broker.url)
    issuer = LocalIssuer(tmp_path)
    issuer.verifier()  # the key exists before the PEP reads the JWKS
    link = f'<{context_for(MEASUREMENT_TYPE)[0]}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    member = {"Authorization": f"Bearer {issuer.token('ana', 'member', devices=['meter-001'])}",
              "NGSILD-Tenant": "energytwin", "Link": link}
    admin = {"Authorization": f"Bearer {issuer.token('root', 'admin')}", "NGSILD-Tenant": "energytwin"}
    with Running(MintakaStandIn(live_broker.url)) as mintaka:
        port = free_port()
        pep_url = f"http://127.0.0.1:{port}"
        pep = _start(["-m", "access", "serve", "--upstream", mintaka.url, "--port", str(port), "--actions",
                      "temporal.read", "--data-dir", str(tmp_path)], pep_url, "/temporal/entities")
        try:
            with httpx.Client(base_url=pep_url, timeout=10) as http:
                assert http.get("/temporal/entities?type=ThreePhaseAcMeasurement").status_code == 401
                seen_before = len(mintaka.requests)
                own = http.get(f"/temporal/entities/{measurement_id('meter-001')}", headers=member)
                assert own.status_code == 200 and len(own.json()["totalActivePower"]) == 3, own.text
                listed = http.get("/temporal/entities", headers=member, params={
                    "type": "ThreePhaseAcMeasurement", "timerel": "after", "timeAt": "2026-12-07T00:00:00Z"})
                assert listed.status_code == 200, listed.text
                assert [e["id"] for e in listed.json()] == [measurement_id("meter-001")]
                assert "meter-002" not in listed.text
                foreign = http.get(f"/temporal/entities/{measurement_id('meter-002')}", headers=member)
                assert foreign.status_code == 403 and "meter-002" not in foreign.text
                assert len(mintaka.requests) == seen_before + 3  # those three reached Mintaka
                # not temporal.read: refused by the PEP, whatever the role (admin may do everything elsewhere)
                for method, path in (("GET", "/ngsi-ld/v1/entities?type=ThreePhaseAcMeasurement"),
                                     ("POST", "/temporal/entities"), ("GET", "/ngsi-ld/v1/subscriptions"),
                                     ("DELETE", f"/temporal/entities/{measurement_id('meter-001')}"),
                                     ("GET", "/iot/devices")):
                    answer = http.request(method, path, headers=admin, json={} if method == "POST" else None)
                    assert answer.status_code == 403 and "forwards only temporal.read" in answer.text, (path,
                                                                                                        answer.text)
                assert len(mintaka.requests) == seen_before + 3  # none of them reached it
                metrics = http.get("/pep/metrics", headers=admin).text
                assert 'energytwin_pep_refused_total{reason="not_forwarded",status="403"} 5' in metrics
            # fiware_client's "mintaka" history backend (root /temporal) through the PEP, with a token
            with NgsiLdClient(pep_url, "energytwin", temporal_path="/temporal", retry=RetryPolicy(attempts=1),
                              token=issuer.token("svc", "service")) as history:
                series = history.attribute_history(measurement_id("meter-002"), ["totalActivePower"], T0,
                                                   T0 + timedelta(hours=1))
            assert [value for _, value in series["totalActivePower"]] == [1000.0, 1015.0, 1030.0]
            assert {method for method, _ in mintaka.requests} == {"GET"}
        finally:
            pep.terminate()
            pep.wait(timeout=10)
