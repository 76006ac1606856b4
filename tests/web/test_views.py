"""The four role views over HTTP, against the real embedded broker, the local issuer's users and the community's
own accounting (energytwin/page_views.py on the example community, October 2026).

Each role reaches its view and no other; the member's and the public's bodies hold no foreign id (no other
member, meter, battery, CUPS); a community under five members shows the public no figure at all; only the
control centre (and admin) may command, and a command is an NGSI-LD PATCH of the command attribute."""

from __future__ import annotations

import csv
import itertools
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from access import LocalIssuer
from community.accounting import member_prices
from community.config import load_community
from community.data import load_energy
from community.planning import expected_for
from community.revision import revise
from community.sharing import SharingRules, shares_by_method
from energytwin.page_views import CommunityAccounts
from fiware_client import NgsiLdClient
from kernel.hours import year_hour_starts_utc
from tests.broker_process import broker_process
from twin_service.web import PageAuth, WebConfig, create_app
from twin_service.web._views import hourly_meter_energy, public_settled_hours

TENANT = "web-views-test"
EXAMPLE = Path(__file__).resolve().parents[2] / "community" / "examples"
MADRID = ZoneInfo("Europe/Madrid")
OCTOBER = (datetime(2026, 10, 1, tzinfo=MADRID), datetime(2026, 11, 1, tzinfo=MADRID))
FOREIGN = ("meter-002", "meter-003", "meter-004", "meter-005", "meter-006", "home-002", "bernat", "carmen", "dolores", "eva", "ES0031405000000102RK",
           "ES0031405000000103SL", "ES0031405000000104TM0F", "ES0031405000000105UN")
EVA = """  - id: eva
    cups: ES0031405000000105UN
    csv: eva.csv
    tariff: fixed
    investment_eur: 1000
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _prop(value, unit: str | None = None, at: str | None = None) -> dict:
    out = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    if at:
        out["observedAt"] = at
    return out


def _twin(url: str) -> None:
    """Five meters with four hours of counters (001 and 002 with a battery and an inverter each), forecasts, a
    silent meter, a provisioned device that never reported."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    with NgsiLdClient(url, tenant=TENANT) as client:
        for k in range(5):  # a reading 5 min before each of the last 5 hour marks: one history instance each
            at = _iso(hour - timedelta(hours=4 - k, minutes=5))
            client.upsert_entities([
                {"id": f"urn:ngsi-ld:ThreePhaseAcMeasurement:{d}", "type": "ThreePhaseAcMeasurement",
                 "totalActivePower": _prop(1000.0 + i, "WTT", at),
                 "totalActiveEnergyImport": _prop(100.0 + i + 1.5 * k, "KWH", at),
                 "totalActiveEnergyExport": _prop(10.0 + 0.25 * k, "KWH", at)}
                for i, d in enumerate(("meter-001", "meter-002", "meter-004", "meter-005", "meter-006"))])
        for seconds in (3601, 3600):  # a meter reporting every second, silent for an hour
            client.upsert_entities([{"id": "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-003",
                                     "type": "ThreePhaseAcMeasurement",
                                     "totalActivePower": _prop(5.0, "WTT", _iso(now - timedelta(seconds=seconds)))}])
        at = _iso(now)
        client.upsert_entities([
            {"id": f"urn:ngsi-ld:BatteryStatus:{h}", "type": "BatteryStatus",
             "statusPercent": _prop(soc, "C62", at), "batteryPower": _prop(0, "WTT", at),
             "deviceState": _prop("ok", at=at), "batteryPowerSetpoint": _prop(""),
             "batteryPowerSetpoint_status": _prop("UNKNOWN"), "batteryPowerSetpoint_info": _prop("")}
            for h, soc in (("home-001", 0.4), ("home-002", 0.8))])
        client.upsert_entities([
            {"id": f"urn:ngsi-ld:PhotovoltaicMeasurement:{h}", "type": "PhotovoltaicMeasurement",
             "activePower": _prop(2.5, "KWT", at), "deviceState": _prop("ok", at=at),
             "pvPowerLimit": _prop(""), "pvPowerLimit_status": _prop("OK"), "pvPowerLimit_info": _prop("")}
            for h in ("home-001", "home-002")])
        client.upsert_entities([{"id": "urn:ngsi-ld:Device:meter-009", "type": "Device",
                                 "deviceState": _prop("provisioned")}])
        issued = {"@type": "DateTime", "@value": _iso(hour)}
        client.upsert_entities([
            {"id": f"urn:ngsi-ld:EnergyForecast:{d}:{q}", "type": "EnergyForecast",
             "forecastedQuantity": _prop(q), "dateIssued": _prop(issued), "validFrom": _prop(issued),
             "hourlyValues": _prop([0.1 * k for k in range(24)]), "unit": _prop("kWh"), "method": _prop("test"),
             "refTarget": {"type": "Relationship", "object": f"urn:ngsi-ld:ThreePhaseAcMeasurement:{d}"},
             "@context": ["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]}
            for d in ("meter-001", "meter-002") for q in ("load", "pvGeneration")])


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with broker_process(tmp_path_factory.mktemp("broker")) as url:
        _twin(url)
        yield url


@pytest.fixture(scope="module")
def communities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The example community (4 members) and the same with a fifth member, eva."""
    folder = tmp_path_factory.mktemp("community")
    shutil.copytree(EXAMPLE, folder, dirs_exist_ok=True)
    shutil.copy(folder / "bernat.csv", folder / "eva.csv")
    five = folder / "five.yaml"
    five.write_text((folder / "community.yaml").read_text(encoding="utf-8").replace("  - id: dolores", EVA + "  - id: dolores"),
                    encoding="utf-8")
    return {"four": folder / "community.yaml", "five": five}


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    return LocalIssuer(tmp_path_factory.mktemp("access"))


def _client(broker_url: str, issuer: LocalIssuer, community: Path) -> TestClient:
    auth = PageAuth(verify=issuer.verifier().verify, secure_cookie=False)
    accounts = CommunityAccounts(community, period=OCTOBER)
    return TestClient(create_app(WebConfig(broker_url=broker_url, tenant=TENANT, auth=auth, accounts=accounts),
                                 subscribe=False), follow_redirects=False)


@pytest.fixture(scope="module")
def five(broker_url: str, issuer: LocalIssuer, communities) -> Iterator[TestClient]:
    with _client(broker_url, issuer, communities["five"]) as client:
        yield client


@pytest.fixture(scope="module")
def four(broker_url: str, issuer: LocalIssuer, communities) -> Iterator[TestClient]:
    with _client(broker_url, issuer, communities["four"]) as client:
        yield client


@pytest.fixture(scope="module")
def tokens(issuer: LocalIssuer) -> dict[str, dict[str, str]]:
    made = {"member": issuer.token("ana", "member", member="ana", devices=["meter-001", "home-001"],
                                   cups=["ES0031405000000101QJ"]),
            "manager": issuer.token("boss", "manager"), "public": issuer.token("screen", "public"),
            "control-centre": issuer.token("ops", "control-centre"), "admin": issuer.token("root", "admin"),
            "device": issuer.token("meter-001", "device", devices=["meter-001"])}
    return {role: {"Authorization": f"Bearer {token}"} for role, token in made.items()}


VIEWS = {"member": "/api/views/member", "manager": "/api/views/manager", "public": "/api/views/public",
         "control": "/api/views/control"}
REACHES = {"member": {"member", "public"}, "manager": {"manager", "public"}, "public": {"public"},
           "control-centre": {"control", "public"}, "admin": {"manager", "public", "control"}, "device": set()}


def test_each_role_reaches_its_views_and_no_other(five: TestClient, tokens) -> None:
    for role, reaches in REACHES.items():
        for view, path in VIEWS.items():
            r = five.get(path, headers=tokens[role])
            assert r.status_code == (200 if view in reaches else 403), (role, view, r.text)
    assert five.get("/api/views/member").status_code == 401


def test_the_member_view_shows_their_accounts_forecast_and_battery_and_nothing_foreign(five, tokens) -> None:
    r = five.get("/api/views/member", headers=tokens["member"])
    body = r.json()
    assert [row["member"] for row in body["accounts"]["members"]] == ["ana"]
    ana = body["accounts"]["members"][0]
    in_file = sum(float(r["import_kwh"]) for r in csv.DictReader((EXAMPLE / "ana.csv").open()) if r["import_kwh"])
    assert ana["consumptionKwh"] == pytest.approx(in_file, abs=1e-3)  # the CSV's October, as the twin has none
    assert 0 < ana["selfConsumedKwh"] <= ana["assignedKwh"] and ana["savingsEur"] > 0 and ana["missingHours"] == 5
    assert ana["co2AvoidedKg"] > 0 and ana["trees"] > 0 and body["accounts"]["co2"]["factorKgPerKwh"] == 0.331
    assert body["meters"] == ["meter-001"]
    assert body["forecasts"]["meter-001"]["load"]["hourlyValues"][1] == pytest.approx(0.1)
    assert body["forecasts"]["meter-001"]["pvGeneration"]["unit"] == "kWh"
    assert [b["device"] for b in body["batteries"]] == ["home-001"]
    assert body["batteries"][0]["values"]["statusPercent"] == 0.4 and body["batteries"][0]["state"] == "live"
    for foreign in FOREIGN:
        assert foreign not in r.text, foreign


def test_the_manager_sees_every_account_the_coefficients_and_every_device_health(five, tokens) -> None:
    body = five.get("/api/views/manager", headers=tokens["manager"]).json()
    accounts = body["accounts"]
    assert sorted(m["member"] for m in accounts["members"]) == ["ana", "bernat", "carmen", "dolores", "eva"]
    assert accounts["totals"]["savingsEur"] == pytest.approx(sum(m["savingsEur"] for m in accounts["members"]),
                                                             abs=0.05)
    assert all(m["paybackYears"] > 0 for m in accounts["members"])
    shares = accounts["coefficients"][0]["shares"]
    assert set(shares) == {"ana", "bernat", "carmen", "dolores", "eva"} and sum(shares.values()) == pytest.approx(1, abs=1e-5)
    health = {(h["device"], h["kind"]): h for h in body["health"]}
    assert health[("meter-001", "meter")]["state"] == "live"  # hourly readings, the last 5 min ago
    assert health[("meter-001", "meter")]["periodS"] == 3600
    assert health[("meter-003", "meter")]["state"] == "offline"  # every second, silent for an hour
    assert health[("home-002", "battery")]["state"] == "live" and health[("home-002", "battery")]["deviceState"] == "ok"
    assert health[("meter-009", "device")]["state"] == "never"
    assert body["healthCounts"]["never"] == 1


def test_the_manager_compares_a_coefficient_revision_member_by_member(four, tokens, communities, broker_url,
                                                                     issuer) -> None:
    """The revision the page shows is community/revision.py's own, on the expected 2027 learnt from October."""
    for role in ("member", "public", "control-centre", "device"):
        assert four.get("/api/views/manager/revision", headers=tokens[role]).status_code == 403, role
    r = four.get("/api/views/manager/revision?method=chaos", headers=tokens["manager"])
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    # proportional: a tenth of the optimal LP's time, and it breaks the example's fairness rule, so the page must
    # say so and offer no command (the browser test runs the optimal one)
    body = four.get("/api/views/manager/revision?method=proportional", headers=tokens["manager"]).json()
    assert body["unavailable"] is None, body
    (inst,) = body["revision"]["installations"]
    assert inst["year"] == 2027 and inst["inForce"].startswith("fixed shares (investment)")
    assert inst["violations"] and inst["adopt"] is None

    loaded = load_community(communities["four"])  # the same revision, straight from community/
    c = loaded.community
    target = year_hour_starts_utc(2027, c.timezone)
    expected = expected_for(loaded, c.installations[0], load_energy(loaded, *OCTOBER), target)
    rules = SharingRules.from_community(c)
    fixed = shares_by_method("fixed", expected.consumption_kwh, expected.generation_kwh, rules)
    result = revise(fixed, expected, rules, c.timezone, member_prices(loaded, target, strict=False), "proportional")
    assert inst["violations"] == result.proposed.violations
    rows = {m["member"]: m for m in inst["members"]}
    assert list(rows) == [m.id for m in c.members]
    for i, m in enumerate(c.members):
        row = rows[m.id]
        assert row["savingsEur"] == pytest.approx(result.current.savings_eur[i], abs=0.01)
        assert row["proposedSavingsEur"] == pytest.approx(result.proposed.savings_eur[i], abs=0.01)
        assert row["proposedSelfConsumedKwh"] == pytest.approx(result.proposed.self_consumed_kwh[i], abs=0.1)
        # simple payback on the expected year: investment / yearly savings
        assert row["paybackYears"] == pytest.approx(m.investment_eur / result.current.savings_eur[i], abs=0.05)
    with TestClient(create_app(WebConfig(broker_url=broker_url, tenant=TENANT, accounts=None,
                                         auth=PageAuth(verify=issuer.verifier().verify)), subscribe=False)) as bare:
        none = bare.get("/api/views/manager/revision", headers=tokens["manager"]).json()
    assert none["revision"] is None and "no community file" in none["unavailable"]


def test_the_public_sees_hourly_aggregates_only(five, tokens) -> None:
    r = five.get("/api/views/public", headers=tokens["public"])
    body = r.json()
    assert body["members"] == 5 and body["withheld"] is None and body["resolution"] == "PT1H"
    hours = [datetime.fromisoformat(h["start"]) for h in body["hourly"]]
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(hours))
    assert hours[-1] + timedelta(hours=1) <= datetime.now(UTC)  # complete hours only
    imported = [h["importKwh"] for h in body["hourly"] if h["importKwh"] is not None]
    assert imported[-4:] == [7.5, 7.5, 7.5, 7.5]  # five meters, 1.5 kWh each per hour
    assert body["totals"]["savingsEur"] > 0 and len(body["settled"]) == 24 and body["membersWithData"] == 5
    assert all(h["consumptionKwh"] is not None for h in body["settled"][-20:])  # five CSV members every hour
    for key in ('"member":', '"cups"', '"meter"', "meter-0", "home-0", '"ana"', *FOREIGN):
        assert key not in r.text, key


def test_a_community_under_five_members_shows_the_public_no_figure(four, tokens) -> None:
    r = four.get("/api/views/public", headers=tokens["public"])
    body = r.json()
    assert body["members"] == 4 and "fewer than 5" in body["withheld"]
    assert body["hourly"] == [] and body["settled"] == [] and body["totals"] is None


def test_the_public_never_gets_an_hour_of_fewer_than_five_homes() -> None:
    """The file counts five members, but an hour only one or two have data in is one or two homes' own."""
    hours = [datetime(2026, 12, 7, h, tzinfo=UTC) for h in range(3)]

    def meter(n: int) -> dict:
        return {"totalActiveEnergyImport": {"max": [[10.0 * n + k, _iso(h)] for k, h in enumerate(hours)]}}

    assert hourly_meter_energy([meter(1), meter(2)], hours, 5)["totalActiveEnergyImport"] == [None, None, None]
    five_meters = hourly_meter_energy([meter(n) for n in range(5)], hours, 5)["totalActiveEnergyImport"]
    assert five_meters == [None, 5.0, 5.0]  # the first hour has no previous hour to difference
    rows = [{"start": "a", "consumptionKwh": 9.0, "members": 5}, {"start": "b", "consumptionKwh": 2.0, "members": 1},
            {"start": "c", "consumptionKwh": 2.0}]
    assert [r["consumptionKwh"] for r in public_settled_hours(rows)] == [9.0, None, None]


def test_the_public_role_reaches_no_meter_endpoint(five, tokens) -> None:
    for path in ("/api/meters", "/api/meters/meter-001", "/api/meters/meter-001/history", "/meters/meter-001",
                 "/api/stream", "/api/measures", "/api/views/member", "/api/views/manager", "/api/views/control"):
        r = five.get(path, headers=tokens["public"])
        assert r.status_code == 403 and "meter-0" not in r.text, path
    home = five.get("/", headers=tokens["public"])
    assert home.status_code == 200 and 'id="public"' in home.text
    assert five.post("/api/control/commands", headers=tokens["public"], json={}).status_code == 403


def test_the_control_centre_sees_every_battery_and_the_fleet_mean(five, tokens) -> None:
    body = five.get("/api/views/control", headers=tokens["control-centre"]).json()
    assert [b["device"] for b in body["batteries"]] == ["home-001", "home-002"]
    assert body["fleetMeanStatusPercent"] == pytest.approx(0.6) and body["fleetMeanCounted"] == 2
    assert body["inverters"][0]["commands"]["pvPowerLimit"]["status"] == "OK"


def test_only_the_control_centre_commands_and_a_command_is_a_patch(five, tokens, broker_url) -> None:
    command = {"entity": "urn:ngsi-ld:BatteryStatus:home-001", "command": "batteryPowerSetpoint", "value": 1500.4}
    for role in ("member", "manager", "public"):
        assert five.post("/api/control/commands", headers=tokens[role], json=command).status_code == 403, role
    r = five.post("/api/control/commands", headers=tokens["control-centre"], json=command)
    assert r.status_code == 202, r.text
    with NgsiLdClient(broker_url, tenant=TENANT) as client:
        entity = client.get_entity("urn:ngsi-ld:BatteryStatus:home-001")
    assert entity["batteryPowerSetpoint"]["value"] == 1500  # whole watts, as the bridge takes them
    bad = [({**command, "command": "selfDestruct"}, 400, "unknown command"),
           ({**command, "entity": "urn:ngsi-ld:PhotovoltaicMeasurement:home-001"}, 400, "BatteryStatus"),
           ({**command, "value": "max"}, 400, "takes a number"),
           ({"entity": "urn:ngsi-ld:PhotovoltaicMeasurement:home-001", "command": "pvPowerLimit", "value": 120}, 400,
            "above its maximum"),
           ({**command, "entity": "urn:ngsi-ld:BatteryStatus:home-404"}, 404, "")]
    for body, status, reason in bad:
        r = five.post("/api/control/commands", headers=tokens["admin"], json=body)
        assert r.status_code == status and reason in r.json()["detail"], (body, r.text)
    form = five.post("/api/control/commands", headers=tokens["control-centre"], data={"entity": "x"})
    assert form.status_code == 415
