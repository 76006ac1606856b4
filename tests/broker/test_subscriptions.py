"""Subscriptions: CRUD, matching, notification shapes, throttling, periodic, expiry, retries, order, restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from datamodels.context import CORE_CONTEXT, ENERGY_CONTEXT
from twin_service.broker import create_app

from .conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, Receiver, assert_problem, measurement

SUBS = f"{BASE}/subscriptions"
UPSERT = f"{BASE}/entityOperations/upsert"


def _subscription(receiver: Receiver, path: str = "/notify", **extra: Any) -> dict[str, Any]:
    notification = {"endpoint": {"uri": f"{receiver.url}{path}", "accept": "application/json"},
                    **extra.pop("notification", {})}
    return {"type": "Subscription", "entities": [{"type": "ThreePhaseAcMeasurement"}],
            "notification": notification, **extra}


def _subscribe(client: TestClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    answer = client.post(SUBS, json=body, headers={**ENERGY_LINK, **(headers or {})})
    assert answer.status_code == 201, answer.text
    return answer.headers["location"].rsplit("/", 1)[-1]


def _update(client: TestClient, voltage: float, headers: dict[str, str] | None = None, **extra: Any) -> None:
    answer = client.post(UPSERT, params={"options": "update"}, headers={**ENERGY_LINK, **(headers or {})},
                         json=[measurement(voltage_v=voltage, **extra)])
    assert answer.status_code in (201, 204), answer.text


def test_crud_and_status_fields(client: TestClient, receiver: Receiver) -> None:
    sub_id = _subscribe(client, _subscription(receiver, id="urn:ngsi-ld:Subscription:pq",
                                              watchedAttributes=["phaseVoltage"], q="phaseVoltage[L1]>200",
                                              subscriptionName="power quality"))
    assert sub_id == "urn:ngsi-ld:Subscription:pq"
    _update(client, 231.0)
    receiver.wait_for(1)
    deadline = time.monotonic() + 3
    while (got := client.get(f"{SUBS}/{sub_id}", headers=ENERGY_LINK).json())["notification"]["timesSent"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert got["entities"] == [{"type": "ThreePhaseAcMeasurement"}]
    assert got["watchedAttributes"] == ["phaseVoltage"] and got["q"] == "phaseVoltage[L1]>200"
    assert got["subscriptionName"] == "power quality"
    assert got["status"] == "active" and got["isActive"] is True
    assert got["notification"]["status"] == "ok"
    assert got["notification"]["lastNotification"] == got["notification"]["lastSuccess"]
    assert_problem(client.post(SUBS, json=_subscription(receiver, id=sub_id), headers=ENERGY_LINK),
                   409, "AlreadyExists")
    listed = client.get(SUBS, params={"count": "true"}, headers=ENERGY_LINK)
    assert [s["id"] for s in listed.json()] == [sub_id] and listed.headers["ngsild-results-count"] == "1"
    assert client.patch(f"{SUBS}/{sub_id}", json={"isActive": False}, headers=ENERGY_LINK).status_code == 204
    assert client.get(f"{SUBS}/{sub_id}").json()["status"] == "paused"
    assert client.delete(f"{SUBS}/{sub_id}").status_code == 204
    assert_problem(client.get(f"{SUBS}/{sub_id}"), 404, "ResourceNotFound")
    assert_problem(client.delete(f"{SUBS}/{sub_id}"), 404, "ResourceNotFound")


@pytest.mark.parametrize(("change", "error"), [
    ({"throttling": -1}, "BadRequestData"),
    ({"throttling": 5, "timeInterval": 10}, "BadRequestData"),
    ({"notification": None}, "BadRequestData"),
    ({"entities": None}, "BadRequestData"),
    ({"type": "Subscriptions"}, "BadRequestData"),
    ({"expiresAt": "2001-01-01T00:00:00Z"}, "BadRequestData"),
    ({"q": "a>>"}, "BadRequestData"),
    ({"id": "not a uri"}, "BadRequestData"),
])
def test_invalid_subscriptions(client: TestClient, receiver: Receiver, change: dict[str, Any], error: str) -> None:
    body = {k: v for k, v in {**_subscription(receiver), **change}.items() if v is not None}
    assert_problem(client.post(SUBS, json=body, headers=ENERGY_LINK), 400, error)


def test_notification_shapes_filters_and_headers(client: TestClient, receiver: Receiver) -> None:
    _subscribe(client, _subscription(receiver, "/json", notification={
        "attributes": ["phaseVoltage"], "endpoint": {"uri": f"{receiver.url}/json", "accept": "application/json",
                                                     "receiverInfo": [{"key": "X-Auth", "value": "secret"}]}}))
    _subscribe(client, _subscription(receiver, "/ld", notification={
        "format": "keyValues", "endpoint": {"uri": f"{receiver.url}/ld", "accept": "application/ld+json"}}))
    _subscribe(client, _subscription(receiver, "/watched", watchedAttributes=["activeEnergyImport"]))
    _subscribe(client, _subscription(receiver, "/q", q="phaseVoltage[L1]>=240"))
    _subscribe(client, {**_subscription(receiver, "/other"), "entities": [
        {"type": "ThreePhaseAcMeasurement", "idPattern": "meter-00[2-9]$"}]})
    _update(client, 230.0)
    _update(client, 240.0)

    as_json = receiver.wait_for(2, path="/json")
    note = as_json[0].body
    assert note["type"] == "Notification" and note["id"].startswith("urn:ngsi-ld:Notification:")
    assert note["subscriptionId"].startswith("urn:ngsi-ld:Subscription:") and note["notifiedAt"].endswith("Z")
    assert note["data"] == [{"id": MEASUREMENT_ID, "type": "ThreePhaseAcMeasurement", "phaseVoltage": {
        "type": "Property", "value": {"L1": 230.0, "L2": 231.0, "L3": 229.0}, "unitCode": "VLT",
        "observedAt": "2026-11-24T10:00:00.000Z"}}]
    assert "@context" not in note and as_json[0].headers["x-auth"] == "secret"
    assert as_json[0].headers["content-type"].startswith("application/json")
    assert ENERGY_CONTEXT in as_json[0].headers["link"]
    assert "ngsild-tenant" not in as_json[0].headers

    as_ld = receiver.wait_for(2, path="/ld")
    assert as_ld[0].headers["content-type"].startswith("application/ld+json")
    assert as_ld[0].body["@context"] == ENERGY_CONTEXT
    assert as_ld[1].body["data"][0]["frequency"] == 50.0  # keyValues

    q_matches = receiver.wait_for(1, path="/q")
    time.sleep(0.2)
    assert len(receiver.wait_for(1, path="/q")) == 1  # 230 did not match
    assert q_matches[0].body["data"][0]["phaseVoltage"]["value"]["L1"] == 240.0
    assert [r for r in receiver.received if r.path in ("/watched", "/other")] == []
    _update(client, 241.0, activeEnergyImport={"type": "Property", "value": 1.5})
    assert receiver.wait_for(1, path="/watched")[0].body["data"][0]["activeEnergyImport"]["value"] == 1.5


def test_tenants_are_isolated_and_named_in_notifications(client: TestClient, receiver: Receiver) -> None:
    site = {"NGSILD-Tenant": "site_a"}
    _subscribe(client, _subscription(receiver, "/a"), site)
    _subscribe(client, _subscription(receiver, "/default"))
    assert client.get(SUBS, headers=ENERGY_LINK).json()[0]["notification"]["endpoint"]["uri"].endswith("/default")
    assert len(client.get(SUBS, headers=site).json()) == 1
    _update(client, 230.0, site)
    got = receiver.wait_for(1, path="/a")
    assert got[0].headers["ngsild-tenant"] == "site_a"
    time.sleep(0.2)
    assert [r for r in receiver.received if r.path == "/default"] == []
    assert_problem(client.get(SUBS, headers={"NGSILD-Tenant": "ghost"}), 404, "NonexistentTenant")


def test_throttling_drops_notifications_inside_the_period(client: TestClient, receiver: Receiver) -> None:
    _subscribe(client, _subscription(receiver, throttling=30))
    for voltage in (230.0, 231.0, 232.0):
        _update(client, voltage)
    receiver.wait_for(1)
    time.sleep(0.3)
    assert len(receiver.received) == 1


def test_periodic_subscription_notifies_every_interval(client: TestClient, receiver: Receiver) -> None:
    _update(client, 230.0)
    _subscribe(client, _subscription(receiver, timeInterval=0.2))
    got = receiver.wait_for(3, timeout_s=5)
    assert all(r.body["data"][0]["id"] == MEASUREMENT_ID for r in got)
    assert got[2].at - got[0].at >= 0.3


def test_expired_subscription_stops_notifying(client: TestClient, receiver: Receiver) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat().replace("+00:00", "Z")
    sub_id = _subscribe(client, _subscription(receiver, expiresAt=soon))
    _update(client, 230.0)
    receiver.wait_for(1)
    time.sleep(0.7)
    _update(client, 231.0)
    time.sleep(0.3)
    assert len(receiver.received) == 1
    assert client.get(f"{SUBS}/{sub_id}").json()["status"] == "expired"


@pytest.fixture
def fast_retry_client(data_dir: Path) -> Iterator[Callable[[tuple[float, ...]], TestClient]]:
    clients: list[TestClient] = []

    def make(delays: tuple[float, ...]) -> TestClient:
        client = TestClient(create_app(data_dir, notification_retry_delays_s=delays), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_failing_subscriber_is_retried_and_does_not_stall_others(
        fast_retry_client: Callable[[tuple[float, ...]], TestClient], receiver: Receiver) -> None:
    client = fast_retry_client((0.6, 0.6, 0.6))
    healthy = Receiver()
    try:
        sub_id = _subscribe(client, _subscription(receiver, "/flaky"))
        _subscribe(client, _subscription(healthy, "/healthy"))
        receiver.statuses = [500, 503]  # two failures, then success
        started = time.monotonic()
        _update(client, 230.0)
        assert healthy.wait_for(1)[0].at - started < 0.5  # not behind the flaky receiver's retries
        flaky = receiver.wait_for(3, timeout_s=5)
        assert flaky[1].at - flaky[0].at >= 0.55  # backoff between attempts
        assert flaky[0].body["data"] == flaky[2].body["data"]
        deadline = time.monotonic() + 3
        while (status := client.get(f"{SUBS}/{sub_id}").json()["notification"])["timesSent"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert status["status"] == "ok" and status["timesFailed"] == 2
        assert status["lastFailure"] <= status["lastSuccess"]
    finally:
        healthy.close()


def test_unreachable_subscriber_is_reported_failed(
        fast_retry_client: Callable[[tuple[float, ...]], TestClient]) -> None:
    client = fast_retry_client((0.05,))
    body = {"type": "Subscription", "entities": [{"type": "ThreePhaseAcMeasurement"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/nobody"}}}
    sub_id = _subscribe(client, body)
    _update(client, 230.0)
    deadline = time.monotonic() + 5
    while (status := client.get(f"{SUBS}/{sub_id}").json()["notification"])["timesSent"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status["status"] == "failed" and "lastSuccess" not in status and status["lastFailure"]


def test_receiver_away_longer_than_the_retry_schedule_misses_nothing(
        fast_retry_client: Callable[[tuple[float, ...]], TestClient], receiver: Receiver) -> None:
    """Past the schedule the notifier keeps retrying at its longest delay instead of dropping the batch; what
    was written meanwhile is queued and coalesced, in order (the soak's subscriber away for 60 s lost its first
    batches)."""
    client = fast_retry_client((0.05, 0.05))
    _subscribe(client, _subscription(receiver))
    receiver.statuses = [503] * 8  # down for 8 attempts: far past the two retries of the schedule
    voltages = [230.0, 231.0, 232.0]
    for voltage in voltages:
        _update(client, voltage)
    deadline = time.monotonic() + 5
    seen: list[float] = []
    while seen != voltages and time.monotonic() < deadline:
        seen = [e["phaseVoltage"]["value"]["L1"] for r in list(receiver.received)[8:] for e in r.body["data"]]
        time.sleep(0.02)
    assert seen == voltages


def test_notifications_keep_the_order_of_updates(client: TestClient, receiver: Receiver) -> None:
    _subscribe(client, _subscription(receiver))
    voltages = [200.0 + n for n in range(40)]
    for voltage in voltages:
        _update(client, voltage)
    seen: list[float] = []
    deadline = time.monotonic() + 5
    while len(seen) < len(voltages) and time.monotonic() < deadline:
        seen = [e["phaseVoltage"]["value"]["L1"] for r in list(receiver.received) for e in r.body["data"]]
        time.sleep(0.02)
    assert seen == voltages


def test_subscriptions_and_status_survive_restart(make_client: Callable[[], TestClient],
                                                  receiver: Receiver) -> None:
    first = make_client()
    context = {"@context": [ENERGY_CONTEXT, CORE_CONTEXT]}
    answer = first.post(SUBS, json={**_subscription(receiver, "/before", watchedAttributes=["phaseVoltage"]),
                                    **context}, headers={"Content-Type": "application/ld+json",
                                                         "NGSILD-Tenant": "site_a"})
    assert answer.status_code == 201, answer.text
    sub_id = answer.headers["location"].rsplit("/", 1)[-1]
    _update(first, 230.0, {"NGSILD-Tenant": "site_a"})
    receiver.wait_for(1)
    deadline = time.monotonic() + 3
    while first.get(f"{SUBS}/{sub_id}", headers={"NGSILD-Tenant": "site_a"}).json()["notification"]["timesSent"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.__exit__(None, None, None)

    restarted = make_client()
    site = {**ENERGY_LINK, "NGSILD-Tenant": "site_a"}
    got = restarted.get(f"{SUBS}/{sub_id}", headers=site).json()
    assert got["notification"]["timesSent"] == 1 and got["notification"]["lastSuccess"]
    assert got["watchedAttributes"] == ["phaseVoltage"]
    _update(restarted, 231.0, {"NGSILD-Tenant": "site_a"})
    second = receiver.wait_for(2)[1]
    assert second.body["data"][0]["phaseVoltage"]["value"]["L1"] == 231.0
    assert "link" in second.headers and ENERGY_CONTEXT in second.headers["link"]


def test_patched_endpoint_receives_the_next_notifications(client: TestClient, receiver: Receiver) -> None:
    sub_id = _subscribe(client, _subscription(receiver, "/old"))
    _update(client, 230.0)
    receiver.wait_for(1, path="/old")
    patch = {"notification": {"endpoint": {"uri": f"{receiver.url}/new"}}}
    assert client.patch(f"{SUBS}/{sub_id}", json=patch, headers=ENERGY_LINK).status_code == 204
    _update(client, 231.0)
    assert receiver.wait_for(1, path="/new")[0].body["data"][0]["phaseVoltage"]["value"]["L1"] == 231.0
    assert client.get(f"{SUBS}/{sub_id}").json()["notification"]["endpoint"]["accept"] == "application/json"


def test_unsupported_subscription_features_are_501(client: TestClient, receiver: Receiver) -> None:
    for extra in ({"csf": "x"}, {"scopeQ": "/Madrid"}):
        assert_problem(client.post(SUBS, json=_subscription(receiver, **extra), headers=ENERGY_LINK),
                       501, "OperationNotSupported")
    for extra in ({"notificationTrigger": ["entityVanished"]}, {"notificationTrigger": []},
                  {"geoQ": {"georel": "near"}}):
        assert_problem(client.post(SUBS, json=_subscription(receiver, **extra), headers=ENERGY_LINK),
                       400, "BadRequestData")
    fine = _subscription(receiver, notificationTrigger=["entityUpdated", "attributeUpdated"])
    assert client.post(SUBS, json=fine, headers=ENERGY_LINK).status_code == 201


def test_concurrent_writers_are_notified_in_commit_order(live_broker: Any, receiver: Receiver) -> None:
    import threading

    import httpx

    from twin_service.broker import Store

    url = f"{live_broker.url}{BASE}"
    httpx.post(f"{url}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    httpx.post(f"{url}/subscriptions", json=_subscription(receiver), headers=ENERGY_LINK).raise_for_status()

    def writer(offset: float) -> None:
        with httpx.Client() as http:
            for n in range(25):
                http.patch(f"{url}/entities/{MEASUREMENT_ID}/attrs/frequency", headers=ENERGY_LINK,
                           json={"value": offset + n}).raise_for_status()

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in (100.0, 200.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 5
    notified: list[float] = []
    while len(notified) < 50 and time.monotonic() < deadline:
        notified = [e["frequency"]["value"] for r in list(receiver.received) for e in r.body["data"]]
        time.sleep(0.02)
    committed = [h.attribute["value"] for h in Store(live_broker.data_dir).history("", MEASUREMENT_ID)
                 if h.attr_name and h.attr_name.endswith("frequency") and h.operation == "update"]
    assert len(committed) == 50
    assert notified == committed


def test_notification_triggers(client: TestClient, receiver: Receiver) -> None:
    """ETSI GS CIM 009 V1.8.1 §5.2.12 notificationTrigger: each kind of change notifies only the subscriptions
    asking for it; deletions carry deletedAt (entity) or urn:ngsi-ld:null + deletedAt (attribute), §5.3.1."""
    def subscribe(path: str, *triggers: str) -> None:
        _subscribe(client, _subscription(receiver, path, notificationTrigger=list(triggers)))

    subscribe("/created", "entityCreated")
    subscribe("/attr-created", "attributeCreated")
    subscribe("/attr-updated", "attributeUpdated")
    subscribe("/attr-deleted", "attributeDeleted")
    subscribe("/deleted", "entityDeleted")
    assert client.get(SUBS, headers=ENERGY_LINK).json()[0]["notificationTrigger"] == ["entityCreated"]
    entity = f"{BASE}/entities/{MEASUREMENT_ID}"
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    assert receiver.wait_for(1, path="/created")[0].body["data"][0]["id"] == MEASUREMENT_ID
    receiver.wait_for(1, path="/attr-created")
    client.patch(f"{entity}/attrs/frequency", json={"value": 49.9}, headers=ENERGY_LINK).raise_for_status()
    receiver.wait_for(1, path="/attr-updated")
    client.post(f"{entity}/attrs", json={"powerFactor": {"type": "Property", "value": 0.9}},
                headers=ENERGY_LINK).raise_for_status()
    assert len(receiver.wait_for(2, path="/attr-created")) == 2
    client.delete(f"{entity}/attrs/powerFactor", headers=ENERGY_LINK).raise_for_status()
    gone = receiver.wait_for(1, path="/attr-deleted")[0].body["data"][0]["powerFactor"]
    assert gone["value"] == "urn:ngsi-ld:null" and "deletedAt" in gone
    client.delete(entity).raise_for_status()
    deleted = receiver.wait_for(1, path="/deleted")[0].body["data"][0]
    assert set(deleted) == {"id", "type", "deletedAt"}
    time.sleep(0.2)  # nothing else arrives late
    counts = {p: len([r for r in receiver.received if r.path == p])
              for p in ("/created", "/attr-created", "/attr-updated", "/attr-deleted", "/deleted")}
    assert counts == {"/created": 1, "/attr-created": 2, "/attr-updated": 1, "/attr-deleted": 1, "/deleted": 1}


def test_default_triggers_do_not_notify_deletions(client: TestClient, receiver: Receiver) -> None:
    _subscribe(client, _subscription(receiver))
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    receiver.wait_for(1)
    client.delete(f"{BASE}/entities/{MEASUREMENT_ID}/attrs/frequency", headers=ENERGY_LINK).raise_for_status()
    client.delete(f"{BASE}/entities/{MEASUREMENT_ID}").raise_for_status()
    time.sleep(0.2)
    assert len(receiver.received) == 1


def test_geo_query_in_subscription(client: TestClient, receiver: Receiver) -> None:
    """§5.2.12 Subscription.geoQ (§4.10): only entities inside the area notify."""
    area = {"geometry": "Polygon", "georel": "within",
            "coordinates": [[[-3.71, 40.41], [-3.70, 40.41], [-3.70, 40.42], [-3.71, 40.42], [-3.71, 40.41]]]}
    _subscribe(client, _subscription(receiver, geoQ=area))
    assert client.get(SUBS, headers=ENERGY_LINK).json()[0]["geoQ"] == area
    inside = measurement(location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [-3.705, 40.415]}})
    outside = measurement(entity_id="urn:ngsi-ld:ThreePhaseAcMeasurement:far",
                          location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.17, 41.38]}})
    client.post(UPSERT, json=[outside, inside], headers=ENERGY_LINK).raise_for_status()
    got = receiver.wait_for(1)
    time.sleep(0.2)
    assert [e["id"] for r in receiver.received for e in r.body["data"]] == [MEASUREMENT_ID]
    assert got[0].body["data"][0]["id"] == MEASUREMENT_ID


def test_show_changes_and_notification_pick(client: TestClient, receiver: Receiver) -> None:
    """§5.2.14 NotificationParams.showChanges (previousValue beside the new value) and pick."""
    _subscribe(client, _subscription(receiver, notification={"showChanges": True,
                                                             "pick": ["id", "frequency", "refDevice"]}))
    assert client.get(SUBS, headers=ENERGY_LINK).json()[0]["notification"]["pick"] == [
        "id", "frequency", "refDevice"]
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    first = receiver.wait_for(1)[0].body["data"][0]
    assert set(first) == {"id", "frequency", "refDevice"}
    assert "previousValue" not in first["frequency"]  # a new attribute has no previous value
    patch = {"frequency": {"type": "Property", "value": 49.8},
             "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:meter-002"}}
    client.patch(f"{BASE}/entities/{MEASUREMENT_ID}/attrs", json=patch, headers=ENERGY_LINK).raise_for_status()
    second = receiver.wait_for(2)[1].body["data"][0]
    assert second["frequency"]["value"] == 49.8 and second["frequency"]["previousValue"] == 50.0
    assert second["refDevice"]["previousObject"] == "urn:ngsi-ld:Device:meter-001"
    bad = _subscription(receiver, notification={"pick": ["id"], "omit": ["frequency"]})
    assert_problem(client.post(SUBS, json=bad, headers=ENERGY_LINK), 400, "BadRequestData")


def test_query_with_local_true_lists_everything(client: TestClient) -> None:
    """§6.4.3.2: local=true is a selection on its own (this broker has no remote sources)."""
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    assert [e["id"] for e in client.get(f"{BASE}/entities", params={"local": "true"}).json()] == [MEASUREMENT_ID]


def test_replace_upsert_counts_as_attribute_update(client: TestClient, receiver: Receiver) -> None:
    """An upsert in replace mode rewrites attributes the entity had: attributeUpdated, not attributeCreated."""
    client.post(f"{BASE}/entities", json=measurement(), headers=ENERGY_LINK).raise_for_status()
    _subscribe(client, _subscription(receiver, "/updated", notificationTrigger=["attributeUpdated"]))
    _subscribe(client, _subscription(receiver, "/created", notificationTrigger=["attributeCreated"]))
    client.post(UPSERT, json=[measurement(voltage_v=231.0)], headers=ENERGY_LINK).raise_for_status()
    receiver.wait_for(1, path="/updated")
    time.sleep(0.2)
    assert not [r for r in receiver.received if r.path == "/created"]


def test_type_expression_in_subscription(client: TestClient, receiver: Receiver) -> None:
    """§4.17 type expressions in a subscription's entities: `ThreePhaseAcMeasurement|Device` notifies for both."""
    body = _subscription(receiver, entities=[{"type": "ThreePhaseAcMeasurement|Device"}])
    _subscribe(client, body)
    assert client.get(SUBS, headers=ENERGY_LINK).json()[0]["entities"] == [{"type": "ThreePhaseAcMeasurement|Device"}]
    client.post(UPSERT, json=[measurement(), {"id": "urn:ngsi-ld:Device:meter-001", "type": "Device",
                                              "name": {"type": "Property", "value": "meter"}},
                              {"id": "urn:ngsi-ld:Building:b1", "type": "Building",
                               "name": {"type": "Property", "value": "b"}}], headers=ENERGY_LINK).raise_for_status()
    receiver.wait_for(1)
    time.sleep(0.2)
    ids = sorted(e["id"] for r in receiver.received for e in r.body["data"])
    assert ids == ["urn:ngsi-ld:Device:meter-001", MEASUREMENT_ID]


def test_entity_selector_without_type(client: TestClient, receiver: Receiver) -> None:
    """§5.2.33 EntitySelector: an id or an idPattern selects on its own (no type needed)."""
    _subscribe(client, _subscription(receiver, "/by-pattern", entities=[{"idPattern": "meter-00[12]$"}]))
    _subscribe(client, _subscription(receiver, "/by-id", entities=[{"id": "urn:ngsi-ld:Device:meter-001"}]))
    assert_problem(client.post(SUBS, json=_subscription(receiver, entities=[{}]), headers=ENERGY_LINK), 400,
                   "BadRequestData")
    assert_problem(client.post(SUBS, json=_subscription(receiver, entities=[{"type": 3}]), headers=ENERGY_LINK),
                   400, "BadRequestData")
    client.post(UPSERT, json=[measurement(), {"id": "urn:ngsi-ld:Device:meter-001", "type": "Device",
                                              "name": {"type": "Property", "value": "meter"}}],
                headers=ENERGY_LINK).raise_for_status()
    by_pattern = receiver.wait_for(1, path="/by-pattern")
    by_id = receiver.wait_for(1, path="/by-id")
    time.sleep(0.2)
    assert sorted(e["id"] for r in receiver.received if r.path == "/by-pattern" for e in r.body["data"]) == [
        "urn:ngsi-ld:Device:meter-001", MEASUREMENT_ID]
    assert [e["id"] for e in by_id[0].body["data"]] == ["urn:ngsi-ld:Device:meter-001"]
    assert by_pattern
    assert client.get(SUBS, headers=ENERGY_LINK).json()[0]["entities"] == [{"idPattern": "meter-00[12]$"}]
