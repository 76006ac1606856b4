"""The temporal API: windows, lastN, normalized / temporalValues / aggregated, per-phase aggregation, tenants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from datamodels.context import ENERGY_CONTEXT, link_header

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, assert_problem, measurement

UPSERT = f"{BASE}/entityOperations/upsert"
TEMPORAL = f"{BASE}/temporal/entities"
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _at(seconds: float) -> str:
    moment = T0 + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _energy(n: int, voltage: float, import_kwh: float) -> dict:
    return measurement(voltage_v=voltage, observed_at=_at(n * 60), activeEnergyImport={
        "type": "Property", "value": import_kwh, "unitCode": "KWH", "observedAt": _at(n * 60)})


def _feed(client: TestClient, headers: dict[str, str], count: int = 6) -> None:
    """One reading a minute: voltage 230+n on L1, energy 10+n kWh."""
    for n in range(count):
        answer = client.post(UPSERT, params={"options": "update"}, headers=headers,
                             json=[_energy(n, 230.0 + n, 10.0 + n)])
        assert answer.status_code in (201, 204), answer.text


def test_between_with_temporal_values_as_the_community_module_asks(client: TestClient) -> None:
    tenant = {**ENERGY_LINK, "NGSILD-Tenant": "community"}
    _feed(client, tenant)
    answer = client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=tenant, params={
        "timerel": "between", "timeAt": _at(60), "endTimeAt": _at(240),
        "attrs": "activeEnergyImport,frequency", "options": "temporalValues"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["link"] == link_header(ENERGY_CONTEXT)
    body = answer.json()
    assert body["id"] == MEASUREMENT_ID and body["type"] == "ThreePhaseAcMeasurement"
    # [timeAt, endTimeAt): minutes 1, 2, 3
    assert body["activeEnergyImport"] == {"type": "Property", "values": [[11.0, _at(60)], [12.0, _at(120)],
                                                                           [13.0, _at(180)]]}
    assert [v for v, _ in body["frequency"]["values"]] == [50.0, 50.0, 50.0]
    assert "phaseVoltage" not in body and "refDevice" not in body


def test_normalized_instances_before_after_and_last_n(client: TestClient) -> None:
    _feed(client, ENERGY_LINK)
    url = f"{TEMPORAL}/{MEASUREMENT_ID}"
    before = client.get(url, headers=ENERGY_LINK, params={"timerel": "before", "timeAt": _at(120),
                                                          "attrs": "phaseVoltage"}).json()
    instances = before["phaseVoltage"]
    assert [i["value"]["L1"] for i in instances] == [230.0, 231.0]
    assert instances[0]["type"] == "Property" and instances[0]["unitCode"] == "VLT"
    assert instances[0]["observedAt"] == _at(0)
    assert instances[0]["instanceId"].startswith("urn:ngsi-ld:attribute:instance:")
    assert len({i["instanceId"] for i in instances}) == 2
    after = client.get(url, headers=ENERGY_LINK, params={"timerel": "after", "timeAt": _at(240),
                                                         "attrs": "activeEnergyImport"}).json()
    assert [i["value"] for i in after["activeEnergyImport"]] == [14.0, 15.0]
    last = client.get(url, headers=ENERGY_LINK, params={"lastN": "2", "attrs": "activeEnergyImport",
                                                        "options": "temporalValues"}).json()
    assert [v for v, _ in last["activeEnergyImport"]["values"]] == [14.0, 15.0]  # oldest first
    relationship = client.get(url, headers=ENERGY_LINK, params={"options": "temporalValues",
                                                                "attrs": "refDevice"}).json()
    assert relationship["refDevice"]["type"] == "Relationship"
    assert relationship["refDevice"]["objects"][0][0] == "urn:ngsi-ld:Device:meter-001"


def test_aggregation_per_period_and_per_phase(client: TestClient) -> None:
    _feed(client, ENERGY_LINK)  # minutes 0..5
    answer = client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=ENERGY_LINK, params={
        "timerel": "between", "timeAt": _at(0), "endTimeAt": _at(360), "attrs": "activeEnergyImport,phaseVoltage",
        "aggrMethods": "avg,min,max,sum,totalCount,stddev", "aggrPeriodDuration": "PT3M"})
    assert answer.status_code == 200, answer.text
    energy = answer.json()["activeEnergyImport"]
    assert energy["type"] == "Property"
    assert energy["avg"] == [[11.0, _at(0), _at(180)], [14.0, _at(180), _at(360)]]
    assert energy["min"][1][0] == 13.0 and energy["max"][1][0] == 15.0
    assert energy["sum"][0][0] == 33.0 and energy["totalCount"][0][0] == 3
    assert abs(energy["stddev"][0][0] - 1.0) < 1e-9  # sample stddev of 10, 11, 12
    voltage = answer.json()["phaseVoltage"]
    assert voltage["avg"][0] == [{"L1": 231.0, "L2": 232.0, "L3": 230.0}, _at(0), _at(180)]
    assert voltage["max"][1][0] == {"L1": 235.0, "L2": 236.0, "L3": 234.0}


def test_hourly_buckets_align_on_the_hour_without_time_at(client: TestClient) -> None:
    _feed(client, ENERGY_LINK, count=3)
    body = client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=ENERGY_LINK, params={
        "attrs": "activeEnergyImport", "aggrMethods": "max", "aggrPeriodDuration": "PT1H"}).json()
    assert body["activeEnergyImport"]["max"] == [[12.0, _at(0), _at(3600)]]


def test_query_over_entities_with_count_and_tenant_isolation(client: TestClient) -> None:
    site = {**ENERGY_LINK, "NGSILD-Tenant": "site_a"}
    _feed(client, site, count=2)
    second = "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-002"
    client.post(UPSERT, headers=site, json=[measurement(entity_id=second)]).raise_for_status()
    answer = client.get(TEMPORAL, headers=site, params={"type": "ThreePhaseAcMeasurement", "timerel": "after",
                                                        "timeAt": _at(0), "attrs": "frequency", "count": "true"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["ngsild-results-count"] == "2"
    assert [e["id"] for e in answer.json()] == [MEASUREMENT_ID, second]
    assert len(answer.json()[0]["frequency"]) == 2
    # other tenants see nothing of it
    assert client.get(TEMPORAL, headers=ENERGY_LINK, params={"type": "ThreePhaseAcMeasurement",
                                                             "timerel": "after", "timeAt": _at(0)}).json() == []
    assert_problem(client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=ENERGY_LINK), 404, "ResourceNotFound")
    assert_problem(client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers={"NGSILD-Tenant": "ghost"}),
                   404, "NonexistentTenant")


def test_deleted_entities_keep_their_history(client: TestClient) -> None:
    _feed(client, ENERGY_LINK, count=2)
    assert client.delete(f"{BASE}/entities/{MEASUREMENT_ID}").status_code == 204
    body = client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=ENERGY_LINK,
                      params={"options": "temporalValues,sysAttrs", "attrs": "frequency"}).json()
    assert len(body["frequency"]["values"]) == 2
    assert body["deletedAt"].endswith("Z")


def test_a_query_shows_deleted_at_with_sys_attrs_only(client: TestClient) -> None:
    _feed(client, ENERGY_LINK, count=2)
    assert client.delete(f"{BASE}/entities/{MEASUREMENT_ID}").status_code == 204
    params = {"type": "ThreePhaseAcMeasurement", "timerel": "after", "timeAt": _at(0), "attrs": "frequency"}
    plain = client.get(TEMPORAL, headers=ENERGY_LINK, params=params).json()
    with_sys = client.get(TEMPORAL, headers=ENERGY_LINK, params={**params, "options": "sysAttrs"}).json()
    assert "deletedAt" not in plain[0] and with_sys[0]["deletedAt"].endswith("Z")
    assert len(plain[0]["frequency"]) == len(with_sys[0]["frequency"]) == 2


def test_invalid_temporal_parameters_are_problem_details(client: TestClient) -> None:
    _feed(client, ENERGY_LINK, count=1)
    url = f"{TEMPORAL}/{MEASUREMENT_ID}"
    for params, error in [
        ({"timerel": "during", "timeAt": _at(0)}, "BadRequestData"),
        ({"timerel": "before"}, "BadRequestData"),
        ({"timerel": "between", "timeAt": _at(0)}, "BadRequestData"),
        ({"timerel": "between", "timeAt": _at(60), "endTimeAt": _at(0)}, "BadRequestData"),
        ({"timerel": "after", "timeAt": "yesterday"}, "BadRequestData"),
        ({"aggrMethods": "median", "aggrPeriodDuration": "PT1H"}, "BadRequestData"),
        ({"aggrMethods": "avg", "aggrPeriodDuration": "one hour"}, "BadRequestData"),
        ({"options": "aggregatedValues"}, "BadRequestData"),
        ({"lastN": "0"}, "BadRequestData"),
    ]:
        assert_problem(client.get(url, params=params), 400, error)
    assert_problem(client.get(url, params={"aggrMethods": "avg", "aggrPeriodDuration": "P1M"}),
                   501, "OperationNotSupported")
    assert_problem(client.get(TEMPORAL, params={"type": "ThreePhaseAcMeasurement"}), 400, "BadRequestData")


def test_answers_are_the_same_before_and_after_recent_history_is_moved(client: TestClient) -> None:
    """Instances first land in history_log; the background mover sorts them into history. Readers see both."""
    _feed(client, ENERGY_LINK, count=4)
    store = client.app.state.broker.store
    queries = [{"attrs": "phaseVoltage,activeEnergyImport"},
               {"attrs": "activeEnergyImport", "options": "temporalValues", "lastN": "3"},
               {"attrs": "phaseVoltage", "aggrMethods": "avg,max,totalCount", "aggrPeriodDuration": "PT2M"},
               {"attrs": "activeEnergyImport", "aggrMethods": "sum,distinctCount", "timerel": "before",
                "timeAt": _at(3600)}]

    def answers() -> list[dict]:
        return [client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=ENERGY_LINK, params=q).json() for q in queries]

    before = answers()
    assert store.move_history() > 0
    assert answers() == before
    late = _energy(5, 240.0, 20.0)  # one more reading: now in the log while the rest is in history
    client.post(UPSERT, params={"options": "update"}, headers=ENERGY_LINK, json=[late]).raise_for_status()
    values = client.get(f"{TEMPORAL}/{MEASUREMENT_ID}", headers=ENERGY_LINK,
                        params={"attrs": "activeEnergyImport", "options": "temporalValues"}).json()
    assert [v for v, _ in values["activeEnergyImport"]["values"]] == [10.0, 11.0, 12.0, 13.0, 20.0]
    assert store.move_history() == 4 and store.move_history() == 0  # the four attributes of that reading


def test_many_small_periods_and_last_n_use_one_grouped_query(client: TestClient) -> None:
    _feed(client, ENERGY_LINK, count=4)
    url = f"{TEMPORAL}/{MEASUREMENT_ID}"
    window = {"timerel": "between", "timeAt": _at(0), "endTimeAt": _at(240), "attrs": "activeEnergyImport,phaseVoltage"}
    fine = client.get(url, headers=ENERGY_LINK, params={**window, "aggrMethods": "max,totalCount",
                                                        "aggrPeriodDuration": "PT0.1S"}).json()  # 2,400 periods
    assert fine["activeEnergyImport"]["max"] == [[10.0 + n, _at(n * 60), _at(n * 60 + 0.1)] for n in range(4)]
    assert fine["phaseVoltage"]["max"][3][0] == {"L1": 233.0, "L2": 234.0, "L3": 232.0}
    assert [c for c, _, _ in fine["activeEnergyImport"]["totalCount"]] == [1, 1, 1, 1]
    last = client.get(url, headers=ENERGY_LINK, params={**window, "lastN": "2", "aggrMethods": "avg",
                                                        "aggrPeriodDuration": "PT1H"}).json()
    assert last["activeEnergyImport"]["avg"][0][0] == 12.5  # the newest two: 12 and 13
