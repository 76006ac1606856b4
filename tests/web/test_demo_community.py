"""The demo's community (energytwin/demo_community.py): its file parses with the community loader, the members'
simulated month lands in a real broker's history, and the page's member view then shows a demo member EUR
savings, CO2 and trees from community/'s own accounting, and nothing of the other member."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from access import LocalIssuer
from community.config import load_community
from datamodels.measures import measurement_id
from energytwin.demo_community import (
    backfill,
    cups_control_letters,
    month_start,
    write_demo_community,
)
from energytwin.forecast_targets import SimulatedHistory
from energytwin.page_views import CommunityAccounts
from tests.broker_process import broker_process
from twin_service.web import PageAuth, WebConfig, create_app

TENANT = "demo-community-test"
NOW = datetime(2026, 6, 3, 15, 20, tzinfo=UTC)  # 1 June 00:00 Madrid = 31 May 22:00 UTC: 65 complete hours
METERS = ["meter-001", "meter-002"]


def test_cups_control_letters() -> None:
    # python-stdnum's documented valid CUPS (stdnum.es.cups): ES 1234 1234 5678 9012 JY
    assert cups_control_letters("1234123456789012") == "JY"
    with pytest.raises(ValueError):
        cups_control_letters("12341234")


def test_the_demo_community_parses_and_a_member_sees_savings_in_eur(tmp_path: Path) -> None:
    with broker_process(tmp_path / "broker") as url:
        file = write_demo_community(tmp_path / "community", METERS, url, TENANT, now=NOW)
        community = load_community(file.path).community  # the loader's own validation (CUPS, CAU, rules)
        assert [m.meter for m in community.members] == METERS and community.twin.tenant == TENANT
        assert community.installations[0].peak_power_kwp == pytest.approx(3.0)  # 1.5 kWp a member

        assert backfill(url, TENANT, METERS, now=NOW) == {"meter-001": 65, "meter-002": 65}
        assert backfill(url, TENANT, METERS, now=NOW) == {"meter-001": 0, "meter-002": 0}  # the month is there

        start = month_start(NOW)
        end = NOW.replace(minute=0)
        issuer = LocalIssuer(tmp_path / "access")
        token = issuer.token("member-meter-001", "member", devices=["meter-001"])
        accounts = CommunityAccounts(file.path, period=(start, end))
        app = create_app(WebConfig(broker_url=url, tenant=TENANT, auth=PageAuth(verify=issuer.verifier().verify),
                                   accounts=accounts), subscribe=False)
        with TestClient(app) as client:
            r = client.get("/api/views/member", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        rows = r.json()["accounts"]["members"]
        assert [row["member"] for row in rows] == ["meter-001"] and "meter-002" not in r.text
        mine = rows[0]
        simulated = SimulatedHistory([measurement_id(m) for m in METERS]).load(measurement_id("meter-001"),
                                                                                start, 65)
        assert mine["consumptionKwh"] == pytest.approx(float(simulated.sum()), abs=1e-3)
        assert mine["missingHours"] == 0  # 15-min counters: every hour complete
        assert 0 < mine["selfConsumedKwh"] <= mine["consumptionKwh"]  # two and a half June days of sun
        assert mine["savingsEur"] > 0 and mine["co2AvoidedKg"] > 0 and mine["trees"] > 0
