"""The page's "last hour" drawn from QuantumLeap is the one drawn from the NGSI-LD temporal API (issue: history
in production). Same readings in the embedded broker and in the QuantumLeap stand-in (QuantumLeap's documented
query API, tests/fiware_client/quantumleap_standin.py), and through a Mintaka stand-in (the temporal API under
Mintaka's root); the page service asked through each backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from starlette.testclient import TestClient

from fiware_client import NgsiLdClient
from tests.broker.conftest import live_broker  # noqa: F401  (fixture)
from tests.fiware_client.mintaka_standin import MintakaStandIn
from tests.fiware_client.quantumleap_standin import QuantumLeapStandIn, Running
from twin_service.web import WebConfig, create_app

TENANT = "energytwin"
ENTITY = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"


def test_last_hour_is_the_same_from_quantumleap(live_broker):  # noqa: F811
    # Constant readings every 2 s over the last 5 minutes: every 10 s bucket has the same avg/min/max, whatever
    # the exact second each request computes its window from.
    now = datetime.now(UTC).replace(microsecond=0)
    standin = QuantumLeapStandIn()
    fragments = []
    for k in range(150):
        at = now - timedelta(seconds=300 - 2 * k)
        values = {"totalActivePower": 2300.0, "phaseVoltage": {"L1": 230.0, "L2": 231.0, "L3": 229.0}}
        standin.insert(TENANT, ENTITY, "ThreePhaseAcMeasurement", at.isoformat(), values)
        fragments.append({"id": ENTITY, "type": "ThreePhaseAcMeasurement",
                          "totalActivePower": {"type": "Property", "value": 2300.0, "unitCode": "WTT",
                                               "observedAt": at.isoformat().replace("+00:00", "Z")},
                          "phaseVoltage": {"type": "Property", "value": values["phaseVoltage"], "unitCode": "VLT",
                                           "observedAt": at.isoformat().replace("+00:00", "Z")}})
    with NgsiLdClient(live_broker.url, TENANT) as broker:
        broker.upsert_entities(fragments, update=True)
    answers = []
    with Running(standin), Running(MintakaStandIn(live_broker.url)) as mintaka:
        for config in (WebConfig(broker_url=live_broker.url, tenant=TENANT),
                       WebConfig(broker_url=live_broker.url, tenant=TENANT, history="quantumleap",
                                 history_url=standin.url),
                       WebConfig(broker_url=live_broker.url, tenant=TENANT, history="mintaka",
                                 history_url=mintaka.url)):
            with TestClient(create_app(config, subscribe=False)) as client:
                response = client.get("/api/meters/meter-001/history", params={"minutes": 10})
                assert response.status_code == 200, response.text
                answers.append(response.json())
    assert any(path.startswith("/v2/entities/") for path, _, _ in standin.requests)  # QuantumLeap was asked
    assert mintaka.requests and all(m == "GET" and p.startswith("/temporal/entities") for m, p in mintaka.requests)
    ngsi, ql, mk = answers
    # the same temporal API under Mintaka's root: the same buckets (each request takes its window from its own now)
    assert abs(len(mk["totalActivePower"]) - len(ngsi["totalActivePower"])) <= 1
    assert {tuple(p[1:]) for p in mk["totalActivePower"]} == {(2300.0, 2300.0, 2300.0)}
    assert mk["phaseVoltage"].keys() == ngsi["phaseVoltage"].keys()
    assert 28 <= len(ngsi["totalActivePower"]) <= 31 and abs(len(ngsi["totalActivePower"]) -
                                                             len(ql["totalActivePower"])) <= 1
    assert {tuple(p[1:]) for p in ngsi["totalActivePower"]} == {tuple(p[1:]) for p in ql["totalActivePower"]} \
        == {(2300.0, 2300.0, 2300.0)}
    assert ngsi["phaseVoltage"].keys() == ql["phaseVoltage"].keys()


def test_quantumleap_history_needs_its_url():
    from twin_service.web.commands import web

    for backend in ("quantumleap", "mintaka"):
        result = CliRunner().invoke(web, ["--history", backend])
        assert result.exit_code != 0 and f"--history {backend} needs --history-url" in result.output
