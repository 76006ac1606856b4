"""The public view's differencing defence (access/_disclosure.py): an attacker comparing public answers around
one member's join recovers nothing of that member's hours; the answers move only by >= k homes at once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from access import LocalIssuer
from access._disclosure import PublicRelease, hourly_contributions
from fiware_client import NgsiLdClient
from tests.broker_process import broker_process
from twin_service.web import PageAuth, WebConfig, create_app
from twin_service.web._views import hourly_meter_energy

T0 = datetime(2026, 12, 6, 0, tzinfo=UTC)
HOURS = [T0 + timedelta(hours=k) for k in range(1, 25)]
IMPORT = "totalActiveEnergyImport"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def home(n: int, seed: int = 7) -> tuple[dict, list[float]]:
    """A meter's hourly counters as the twin answers them (`max` per hour) and its hourly kWh."""
    rng = random.Random(seed * 1000 + n)
    kwh = [round(rng.uniform(0.1, 2.5), 3) for _ in HOURS]
    counter, maxima = 1000.0 + n, [[1000.0 + n, iso(T0), iso(T0 + timedelta(hours=1))]]
    for hour, used in zip(HOURS, kwh, strict=True):
        counter = round(counter + used, 6)
        maxima.append([counter, iso(hour), iso(hour + timedelta(hours=1))])
    entity = {"id": f"urn:ngsi-ld:ThreePhaseAcMeasurement:meter-{n:03d}", "type": "ThreePhaseAcMeasurement",
              IMPORT: {"type": "Property", "max": maxima}, "totalActiveEnergyExport": {"type": "Property", "max": []}}
    return entity, kwh


def public(release: PublicRelease, entities: list[dict]) -> list[float | None]:
    """The public hourly import as the view answers it with the defence."""
    body = {"hourly": [{"start": iso(h), "importKwh": None, "exportKwh": None} for h in HOURS]}
    return [row["importKwh"] for row in release.apply(body, entities=entities, hours=HOURS)["hourly"]]


def test_the_contributions_add_up_to_the_pages_hourly_sums():
    entities = [home(n)[0] for n in range(7)]
    sums = hourly_meter_energy(entities, HOURS, 5)[IMPORT]
    contributions = hourly_contributions(entities, HOURS)[IMPORT]
    assert [round(sum(c.values()), 6) for c in contributions] == sums
    assert all(len(c) == 7 for c in contributions)


def test_differencing_around_one_join_recovers_nothing(tmp_path: Path):
    homes = [home(n) for n in range(10)]
    before, newcomer, later = [e for e, _ in homes[:5]], homes[5], [e for e, _ in homes[6:]]

    # Without the defence the attack is exact: the same hours with and without the new member's history.
    plain = [b - a for a, b in zip(hourly_meter_energy(before, HOURS, 5)[IMPORT],
                                   hourly_meter_energy([*before, newcomer[0]], HOURS, 5)[IMPORT], strict=True)]
    assert plain == pytest.approx(newcomer[1], abs=1e-6)

    release = PublicRelease(tmp_path / "ledger.json")
    first = public(release, before)
    assert first == pytest.approx(hourly_meter_energy(before, HOURS, 5)[IMPORT])  # nothing changed: same answer
    second = public(release, [*before, newcomer[0]])
    assert [b - a for a, b in zip(first, second, strict=True)] == [0.0] * len(HOURS)  # recovered: nothing

    # A restart does not forget: the ledger file gives the same answers.
    assert public(PublicRelease(tmp_path / "ledger.json"), [*before, newcomer[0]]) == first

    # Three more newcomers: still fewer than k = 5 new homes, still left out.
    assert public(release, [*before, newcomer[0], *later[:3]]) == first
    # The fifth newcomer: the five enter together; the answers move by the five's sum, never by one home's.
    third = public(release, [*before, newcomer[0], *later])
    five = [sum(kwh[k] for _, kwh in homes[5:]) for k in range(len(HOURS))]
    assert [b - a for a, b in zip(first, third, strict=True)] == pytest.approx(five, abs=1e-6)
    assert all(abs((b - a) - newcomer[1][k]) > 0.05 for k, (a, b) in enumerate(zip(first, third, strict=True)))


def test_adjacent_hours_do_not_carry_a_lone_newcomer(tmp_path: Path):
    """A new hour after the join is summed over the released set: the newcomer is in no public figure."""
    homes = [home(n) for n in range(6)]
    release = PublicRelease(tmp_path / "ledger.json")
    old, new = HOURS[:12], HOURS[12:]
    body = {"hourly": [{"start": iso(h), "importKwh": None} for h in old]}
    release.apply(body, entities=[e for e, _ in homes[:5]], hours=old)
    body = {"hourly": [{"start": iso(h), "importKwh": None} for h in new]}  # the joiner's first hours
    shown = [r["importKwh"] for r in release.apply(body, entities=[e for e, _ in homes], hours=new)["hourly"]]
    assert shown == pytest.approx([sum(kwh[12 + k] for _, kwh in homes[:5]) for k in range(12)], abs=1e-6)


def test_a_released_home_whose_data_is_gone_freezes_the_period_and_fewer_than_five_show_nothing(tmp_path: Path):
    entities = [home(n)[0] for n in range(6)]
    release = PublicRelease(tmp_path / "ledger.json")
    first = public(release, entities)
    assert public(release, entities[1:]) == first  # a member left: the answer does not drop by their hours
    assert public(PublicRelease(tmp_path / "other.json"), entities[:4]) == [None] * len(HOURS)


def test_an_hour_is_released_once_every_home_reported_it_or_after_the_settling_time(tmp_path: Path):
    homes = [home(n) for n in range(10)]
    release = PublicRelease(tmp_path / "ledger.json", settle_s=900)
    earlier, last = HOURS[:-1], HOURS[-1]

    def answer(entities: list[dict], hours: list[datetime], now: datetime) -> list[float | None]:
        body = {"hourly": [{"start": iso(h), "importKwh": None, "exportKwh": None} for h in hours]}
        return [r["importKwh"] for r in release.apply(body, entities=entities, hours=hours, now=now)["hourly"]]

    answer([e for e, _ in homes], earlier, now=last + timedelta(days=1))  # released over the ten
    late = [dict(e) for e, _ in homes]
    late[9] = {**late[9], IMPORT: {"max": homes[9][0][IMPORT]["max"][:-1]}}  # meter 9's last hour not in yet
    end = last + timedelta(hours=1)
    assert answer(late, [last], now=end + timedelta(minutes=5)) == [None]  # a released home is missing: wait
    # Settled without meter 9: released, but over 5 homes, not 9 (the departure rule: the hour before was over all ten,
    # so one missing home takes four companions out with it and the two hours differ by five homes).
    released = answer(late, [last], now=end + timedelta(minutes=16))
    members = _released(release, last)
    assert len(members) == 5 and "meter-009" not in " ".join(members)
    assert released == [pytest.approx(sum(kwh[-1] for e, kwh in homes if e["id"] in members))]
    # Meter 9's reading comes: it and its four companions are five newcomers, so the hour moves by five homes
    # (rule 3) to the sum of all ten, the same set as the hour before it.
    assert answer([e for e, _ in homes], [last], now=end + timedelta(hours=1)) == \
        [pytest.approx(sum(kwh[-1] for _, kwh in homes))]
    assert len(_released(release, last)) == 10


def _released(release: PublicRelease, hour: datetime) -> list[str]:
    """The homes an hour of the public import was released over (the ledger)."""
    return release._series[f"hourly:{IMPORT}"].periods[iso(hour)].members


def _without_hours(entity: dict, gone: set[int]) -> dict:
    """`entity` without its hourly maxima of HOURS[k] for k in `gone` (no data: left, or offline)."""
    maxima = entity[IMPORT]["max"]
    return {**entity, IMPORT: {"type": "Property", "max": [maxima[0], *[m for k, m in enumerate(maxima[1:])
                                                                      if k not in gone]]}}


def test_a_departure_moves_the_hours_by_k_homes_not_by_the_one_who_left(tmp_path: Path):
    """Without the departure rule the hour after a member leaves is the hour before minus that member (plus the others'
    change); with it, the two hours' sets differ by five homes and stay so."""
    homes = [home(n) for n in range(10)]
    entities = [e for e, _ in homes]
    entities[3] = _without_hours(entities[3], set(range(12, len(HOURS))))  # meter 3 leaves after hour 11
    release = PublicRelease(tmp_path / "ledger.json")
    shown = public(release, entities)
    assert shown[:12] == pytest.approx([sum(kwh[k] for _, kwh in homes) for k in range(12)])
    before, after = set(_released(release, HOURS[11])), set(_released(release, HOURS[12]))
    assert len(before) == 10 and len(after) == 5 and len(before ^ after) == 5
    assert not any(m.endswith("meter-003") for m in after)
    assert all(set(_released(release, h)) == after for h in HOURS[12:])  # the same five from then on
    assert shown[12:] == pytest.approx([sum(kwh[k] for e, kwh in homes if e["id"] in after)
                                        for k in range(12, len(HOURS))])
    assert public(PublicRelease(tmp_path / "ledger.json"), entities) == shown  # the ledger keeps it


def test_an_offline_meter_comes_back_together_with_its_companions(tmp_path: Path):
    homes = [home(n) for n in range(10)]
    entities = [e for e, _ in homes]
    entities[7] = _without_hours(entities[7], {12, 13})  # offline: no hourly energy for hours 12, 13 and 14
    release = PublicRelease(tmp_path / "ledger.json")
    public(release, entities)
    counts = [len(_released(release, h)) for h in HOURS]
    assert counts == [10] * 12 + [5] * 3 + [10] * 9  # back: meter 7 and its four companions, a batch of five
    # Fewer homes than five companions can make up: nothing is released rather than a lone difference.
    six = [e for e, _ in homes[:6]]
    six[2] = _without_hours(six[2], {12})
    shown = public(PublicRelease(tmp_path / "six.json"), six)
    assert shown[12] is None and shown[11] is not None


def test_counted_rows_and_totals(tmp_path: Path):
    release = PublicRelease(tmp_path / "ledger.json")
    row = {"consumptionKwh": 40.0}
    assert release.release_counted("settled", "h1", 5, row) == row
    assert release.release_counted("settled", "h1", 6, {"consumptionKwh": 41.2}) == row  # one more: pinned
    assert release.release_counted("settled", "h1", 10, {"consumptionKwh": 80.0}) == {"consumptionKwh": 80.0}
    assert release.release_counted("settled", "h2", 4, row) is None
    # a new hour with one member more than ever released: withheld (the summed figures leave a lone newcomer out)
    assert release.release_counted("settled", "h3", 11, {"consumptionKwh": 88.0}) is None
    assert release.release_counted("settled", "h4", 9, {"consumptionKwh": 70.0}) == {"consumptionKwh": 70.0}
    assert release.release_counted("settled", "h5", 15, {"consumptionKwh": 120.0}) == {"consumptionKwh": 120.0}
    release.save()
    assert PublicRelease(tmp_path / "ledger.json").release_counted("settled", "h6", 16, row) is None  # kept

    # the month so far grows over the released members; a lone newcomer's month is not in it
    members = {f"m{n}": 100.0 + n for n in range(5)}
    assert release.release_sum("totals:consumptionKwh", "2026-12", members, pin=False) == 510.0
    grown = {name: value + 1 for name, value in members.items()}
    assert release.release_sum("totals:consumptionKwh", "2026-12", {**grown, "m5": 300.0}, pin=False) == 515.0


def test_an_unreadable_ledger_refuses_to_start(tmp_path: Path):
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    with pytest.raises(RuntimeError, match="public release ledger"):
        PublicRelease(path)


# --- the real public view (twin_service/web) with the defence wired as energytwin/page_login.py does -------------
TENANT = "disclosure-test"


def _readings(client, devices: list[str], per_hour_kwh: float, base: float) -> None:
    """A reading 5 min before each of the last 5 hour marks: four complete hours of counters per meter."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for k in range(5):
        at = (hour - timedelta(hours=4 - k, minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        client.upsert_entities([
            {"id": f"urn:ngsi-ld:ThreePhaseAcMeasurement:{d}", "type": "ThreePhaseAcMeasurement",
             "totalActivePower": {"type": "Property", "value": 900.0, "unitCode": "WTT", "observedAt": at},
             IMPORT: {"type": "Property", "value": base + i + per_hour_kwh * (i + 1) * k, "unitCode": "KWH",
                      "observedAt": at}}
            for i, d in enumerate(devices)])


def test_the_public_view_answers_the_same_hours_the_same_after_a_join(tmp_path: Path):
    issuer = LocalIssuer(tmp_path / "issuer")
    screen = {"Authorization": f"Bearer {issuer.token('screen', 'public')}"}
    with broker_process(tmp_path / "broker") as url, NgsiLdClient(url, tenant=TENANT) as twin:
        _readings(twin, [f"meter-{n:03d}" for n in range(1, 6)], 0.5, 100.0)

        def page(guard: PublicRelease | None) -> TestClient:
            auth = PageAuth(verify=issuer.verifier().verify, secure_cookie=False)
            return TestClient(create_app(WebConfig(broker_url=url, tenant=TENANT, auth=auth, public_guard=guard),
                                         subscribe=False))

        def hourly(client: TestClient) -> dict[str, float | None]:
            answer = client.get("/api/views/public", headers=screen)
            assert answer.status_code == 200, answer.text
            return {row["start"]: row["importKwh"] for row in answer.json()["hourly"]}

        with page(None) as plain, page(PublicRelease(tmp_path / "ledger.json")) as guarded:
            plain_before, guarded_before = hourly(plain), hourly(guarded)
            assert guarded_before == plain_before and sum(v is not None for v in plain_before.values()) == 4
            # meter-006 joins, its last four hours imported after the fact: 3.0 kWh in each
            _readings(twin, ["meter-006"], 3.0, 500.0)
            plain_after, guarded_after = hourly(plain), hourly(guarded)
        leaked = {h: round(plain_after[h] - v, 6) for h, v in plain_before.items() if v is not None}
        assert set(leaked.values()) == {3.0}  # without the defence: the newcomer's every hour, exactly
        assert guarded_after == guarded_before  # with it: the same answers, nothing to subtract


def test_the_period_totals_leave_a_lone_newcomer_out(tmp_path: Path):
    def accounts(members: dict[str, float]) -> dict:
        rows = [{"member": name, "missingHours": 0, "consumptionKwh": kwh, "assignedKwh": kwh / 2,
                 "selfConsumedKwh": kwh / 4, "gridImportKwh": kwh * 0.75, "surplusKwh": 1.0, "savingsEur": kwh / 10,
                 "co2AvoidedKg": kwh / 20, "trees": 0.1} for name, kwh in members.items()]
        return {"period": {"start": "2026-12-01T00:00:00Z"}, "hourly": [{}] * 10, "members": rows}

    release = PublicRelease(tmp_path / "ledger.json")
    five = {f"m{n}": 100.0 + n for n in range(5)}
    body = release.apply({"totals": {"consumptionKwh": 510.0}}, accounts=accounts(five))
    assert body["totals"]["consumptionKwh"] == 510.0 and body["totals"]["surplusKwh"] == 5.0
    later = release.apply({"totals": {"consumptionKwh": 900.0}}, accounts=accounts({**five, "m5": 390.0}))
    assert later["totals"]["consumptionKwh"] == 510.0  # the newcomer's month is in no public total
    missing = accounts(five)
    missing["members"][0]["savingsEur"] = None
    assert release.apply({"totals": {}}, accounts=missing)["totals"]["savingsEur"] is None  # withheld, not shown


def test_the_metered_and_the_settled_hour_are_not_both_shown_over_sets_a_few_homes_apart(tmp_path: Path):
    """Five meters and a sixth member accounted from the distributor's file: the settled hour (six) minus the
    metered hour (five) would be that member's hour, so only the first released of the two is shown."""
    entities = [home(n)[0] for n in range(5)]

    def answer(release: PublicRelease, members: int) -> tuple[list, list]:
        body = {"hourly": [{"start": iso(h), "importKwh": None, "exportKwh": None} for h in HOURS],
                "settled": [{"start": iso(h), "consumptionKwh": 10.0 + k} for k, h in enumerate(HOURS)]}
        accounts = {"hourly": [{"start": iso(h), "members": members} for h in HOURS]}
        body = release.apply(body, entities=entities, hours=HOURS, accounts=accounts, now=HOURS[-1] + timedelta(days=1))
        return [r["importKwh"] for r in body["hourly"]], [r["consumptionKwh"] for r in body["settled"]]

    metered, settled = answer(PublicRelease(tmp_path / "six.json"), 6)
    assert None not in metered and settled == [None] * len(HOURS)
    metered, settled = answer(PublicRelease(tmp_path / "five.json"), 5)  # the same five: both shown
    assert None not in metered and settled == [10.0 + k for k in range(len(HOURS))]
    metered, settled = answer(PublicRelease(tmp_path / "ten.json"), 10)  # five homes apart: both shown
    assert None not in metered and None not in settled
