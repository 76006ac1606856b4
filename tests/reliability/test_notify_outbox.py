"""What a write owes the subscriptions is kept in its own transaction (_outbox.py): a crash between the COMMIT and
the journaling of its notifications loses none of them, a write undone owes nothing, and nothing delivered is
sent again after a restart."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.broker.conftest import BASE, ENERGY_LINK, Receiver, measurement
from tests.reliability.test_notify_backlog import _owed_rows, _wait
from twin_service.broker import _notify_backlog, _outbox, create_app
from twin_service.broker._notifier import SubscriptionManager

SUBS = f"{BASE}/subscriptions"
UPSERT = f"{BASE}/entityOperations/upsert"
SUB_ID = "urn:ngsi-ld:Subscription:outbox"


def _subscription(uri: str, sub_id: str = SUB_ID) -> dict:
    return {"type": "Subscription", "id": sub_id, "entities": [{"type": "ThreePhaseAcMeasurement"}],
            "notification": {"attributes": ["phaseVoltage"], "endpoint": {"uri": uri, "accept": "application/json"}}}


def _voltages(receiver: Receiver) -> list[float]:
    return [e["phaseVoltage"]["value"]["L1"] for r in list(receiver.received) for e in r.body["data"]]


def _update(client: TestClient, voltage: float, status: int | None = None) -> None:
    response = client.post(UPSERT, params={"options": "update"}, headers=ENERGY_LINK,
                           json=[measurement(voltage_v=voltage)])
    assert response.status_code in ((201, 204) if status is None else (status,)), response.text


def _outbox_rows(data_dir: Path) -> int:
    with closing(sqlite3.connect(data_dir / "twin.sqlite")) as db:
        return db.execute(f"SELECT count(*) FROM {_outbox.TABLE}").fetchone()[0]


def _app(data_dir: Path) -> TestClient:
    return TestClient(create_app(data_dir, notification_retry_delays_s=(0.05,)), raise_server_exceptions=False)


def test_changes_committed_but_never_journaled_are_notified_after_the_restart(
        monkeypatch: pytest.MonkeyPatch, data_dir: Path, receiver: Receiver) -> None:
    monkeypatch.setattr(_notify_backlog, "DURABLE_EVERY_S", 0.0)  # every watermark synced: rows freed at once
    voltages = [220.0 + n for n in range(12)]
    with _app(data_dir) as client:
        assert client.post(SUBS, json=_subscription(f"{receiver.url}/n"), headers=ENERGY_LINK).status_code == 201
        _update(client, 219.0)
        _wait(lambda: _voltages(receiver) == [219.0])
        # the process dies after each COMMIT, before the dispatcher ever sees the change: nothing is journaled
        with monkeypatch.context() as patch:
            patch.setattr(SubscriptionManager, "publish", lambda self, changes, outbox_seq=None: None)
            for voltage in voltages:
                _update(client, voltage)
            time.sleep(0.2)
    assert _voltages(receiver) == [219.0]
    with closing(sqlite3.connect(data_dir / _notify_backlog.FILE_NAME)) as db:
        assert db.execute("SELECT count(*) FROM owed").fetchone()[0] == 0  # the backlog never heard of them
    assert _outbox_rows(data_dir) >= len(voltages)
    with _app(data_dir) as client:
        _wait(lambda: _voltages(receiver) == [219.0, *voltages])  # in commit order, before anything newer
        _update(client, 300.0)
        _wait(lambda: _voltages(receiver)[-1] == 300.0)
        _wait(lambda: client.app.state.broker.subscriptions.outbox.done > 0)
        _update(client, 301.0)  # deletes the rows the backlog journaled, in its own transaction
        _wait(lambda: _voltages(receiver)[-1] == 301.0)
        assert _outbox_rows(data_dir) <= 1  # the last write's row, until the next write
    assert _voltages(receiver) == [219.0, *voltages, 300.0, 301.0]


def test_nothing_journaled_is_matched_again_after_a_restart(data_dir: Path, receiver: Receiver) -> None:
    with _app(data_dir) as client:
        assert client.post(SUBS, json=_subscription(f"{receiver.url}/n"), headers=ENERGY_LINK).status_code == 201
        for voltage in (230.0, 231.0, 232.0):
            _update(client, voltage)
        _wait(lambda: _voltages(receiver) == [230.0, 231.0, 232.0])
        # the receiver's 2xx for the last one must have been taken in too: a stop while that answer is still on its
        # way leaves the entity owed and sends it again (at-least-once), which is not what this test is about
        _wait(lambda: _owed_rows(data_dir) == 0)
    with _app(data_dir) as client:
        _update(client, 233.0)
        _wait(lambda: _voltages(receiver)[-1] == 233.0)
        time.sleep(0.2)
    assert _voltages(receiver) == [230.0, 231.0, 232.0, 233.0]


def test_a_write_undone_owes_nothing_and_a_tenant_without_subscriptions_writes_no_row(
        data_dir: Path, receiver: Receiver) -> None:
    with _app(data_dir) as client:
        _update(client, 240.0)  # no subscription yet: nothing owed, no row
        assert _outbox_rows(data_dir) == 0
        assert client.post(SUBS, json=_subscription(f"{receiver.url}/n"), headers=ENERGY_LINK).status_code == 201
        store = client.app.state.broker.store
        store._db.execute("PRAGMA query_only=1")  # the data directory turned read-only: the write is refused
        _update(client, 241.0, status=503)
        store._db.execute("PRAGMA query_only=0")
        _update(client, 242.0)
        _wait(lambda: _voltages(receiver) == [242.0])
    with _app(data_dir):
        time.sleep(0.3)
    assert _voltages(receiver) == [242.0]  # the refused write was never announced, before or after the restart


def test_outbox_rows_are_freed_only_up_to_a_watermark_synced_to_disk(
        monkeypatch: pytest.MonkeyPatch, data_dir: Path, receiver: Receiver) -> None:
    monkeypatch.setattr(_notify_backlog, "DURABLE_EVERY_S", 3600.0)  # after the first, no synced flush for an hour
    with _app(data_dir) as client:
        assert client.post(SUBS, json=_subscription(f"{receiver.url}/n"), headers=ENERGY_LINK).status_code == 201
        outbox = client.app.state.broker.subscriptions.outbox
        _update(client, 250.0)
        _wait(lambda: outbox.done > 0)  # the first watermark is synced at once
        first = outbox.done
        for voltage in (251.0, 252.0, 253.0):
            _update(client, voltage)
        _wait(lambda: _voltages(receiver) == [250.0, 251.0, 252.0, 253.0])
        assert outbox.done == first  # journaled with synchronous=NORMAL only: a power cut could lose that
        backlog = client.app.state.broker.subscriptions._backlog
        assert backlog.outbox_journaled() > first  # ... though the journal holds them
        assert _outbox_rows(data_dir) >= 3  # so their rows stay in the outbox


def test_only_the_attributes_the_subscriptions_notify_are_kept(
        monkeypatch: pytest.MonkeyPatch, data_dir: Path, receiver: Receiver) -> None:
    monkeypatch.setattr(_notify_backlog, "DURABLE_EVERY_S", 3600.0)  # keep the rows to look at

    def last_row_attrs() -> set[str]:
        with closing(sqlite3.connect(data_dir / "twin.sqlite")) as db:
            blob = db.execute(f"SELECT changes FROM {_outbox.TABLE} ORDER BY seq DESC LIMIT 1").fetchone()[0]
        (change,) = _outbox.decode(blob)
        return {name.rsplit("/", 1)[-1] for name in change.entity.attrs}

    with _app(data_dir) as client:
        assert client.post(SUBS, json=_subscription(f"{receiver.url}/n"), headers=ENERGY_LINK).status_code == 201
        _update(client, 260.0)
        assert last_row_attrs() == {"phaseVoltage"}  # what the one subscription notifies
        everything = {**_subscription(f"{receiver.url}/all", "urn:ngsi-ld:Subscription:all"), "q": "frequency>1"}
        assert client.post(SUBS, json=everything, headers=ENERGY_LINK).status_code == 201
        _update(client, 261.0)
        assert last_row_attrs() == {"phaseVoltage", "frequency", "refDevice"}  # a q needs the whole entity
