"""Deliver mapped measures to the NGSI-LD broker through a durable on-disk queue, in batches, in order.

Why on disk: the agent acknowledges a QoS 1 MQTT message only once its upsert is safe, and "safe" must survive a
kill -9 of the agent and a broker that is down for minutes. So the path is

    MQTT thread -> `Intake` (in memory, a few ms) -> one SQLite transaction per batch -> PUBACK for that batch
                                                           |
                                         `Sender` thread <-+-> `POST /ngsi-ld/v1/entityOperations/upsert/`

`Intake` commits every message that arrived since its last commit in one transaction (group commit), then
acknowledges them to MQTT in arrival order (MQTT 3.1.1 §4.6: PUBACKs in the order the PUBLISHes came). Rejected
messages pass through it too, without a row, so the ack order holds for them as well.

`Sender` reads the oldest rows (up to `batch_max_messages`), groups them per tenant / servicepath keeping their
order, and posts one batch upsert per group exactly as the FIWARE agent does in LD mode (docs/compatibility.md,
"What the FIWARE IoT Agent JSON does"): `?options=update`, `application/ld+json`, `NGSILD-Tenant`/`NGSILD-Path` plus the `fiware-service*` headers.
Rows are deleted only once the broker answered. A connection failure, 5xx, 408 or 429 is retried with backoff
for ever (the queue holds the data meanwhile); a 4xx for a multi-message batch is retried message by message so
one bad message cannot take its neighbours down; a 4xx for one message is final (logged, counted, dropped).
Delivery is at-least-once: a crash between the broker's answer and the delete resends that batch.

Bounds: `max_messages` rows (default 1,000,000; a 30-measure meter message is ~2.5 KB, so ~2.5 GB of disk and
~17 min of 1,000 meters at 1 Hz). When full, new messages are rejected (`queue_full`, acknowledged and counted):
the agent sheds the newest data rather than stalling every meter. The database is WAL with `synchronous=NORMAL`:
a committed row survives the agent being killed; surviving power loss too needs `synchronous=FULL`
(`durable_fsync=True`), at a cost of one fsync per group commit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from .metrics import Metrics

log = logging.getLogger("twin_service.agent.northbound")

UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert/"
SUCCESS = (200, 201, 204)  # anything else, 207 included, is an error for the FIWARE agent too
RETRYABLE = (408, 429)  # besides 5xx and connection failures: the broker may take it later
BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)  # then 5 s between attempts until the broker is back
DEFAULT_MAX_MESSAGES = 1_000_000
DEFAULT_BATCH_MESSAGES = 500
BATCH_MAX_BYTES = 512 * 1024  # below Orion-LD's and the embedded broker's 1 MiB request limit (413 otherwise)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, subservice TEXT NOT NULL,
    device_id TEXT NOT NULL, fragments TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Upsert:
    """The fragments one MQTT message became, for one tenant / servicepath (one row of the queue)."""

    service: str
    subservice: str
    device_id: str
    entities: list[dict[str, Any]]


@dataclass(frozen=True)
class _Row:
    seq: int
    service: str
    subservice: str
    device_id: str
    fragments: str  # the JSON array's elements without the brackets, so batches are joined without re-parsing


def upsert_headers(service: str, subservice: str) -> dict[str, str]:
    """The headers the FIWARE agent sends with an NGSI-LD upsert."""
    return {
        "Content-Type": "application/ld+json",
        "NGSILD-Tenant": service,
        "NGSILD-Path": subservice,
        "fiware-service": service,
        "fiware-servicepath": subservice,
    }


def _fragments_text(entities: list[dict[str, Any]]) -> str:
    """The fragments as the comma-joined JSON the sender splices into a batch body (orjson: ~8x cheaper than
    json.dumps for the firmware's message; json.dumps for what orjson refuses, e.g. integers beyond 64 bits)."""
    try:
        return orjson.dumps(entities).decode()[1:-1]
    except TypeError:
        return json.dumps(entities, separators=(",", ":"))[1:-1]


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted, distinct seqs as (first, last) runs of consecutive numbers: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


class DurableQueue:
    """The outbox: upserts waiting for the broker, oldest first, in one SQLite file under the data directory."""

    def __init__(self, path: Path, max_messages: int = DEFAULT_MAX_MESSAGES, durable_fsync: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable_fsync else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        self._depth = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def depth(self) -> int:
        """Messages waiting (a gauge on /metrics)."""
        return self._depth

    def append(self, upserts: list[Upsert]) -> list[bool]:
        """Store upserts in one transaction; per upsert, True if stored, False if the queue was full."""
        stored: list[bool] = []
        rows = []
        for upsert in upserts:
            fits = self._depth + len(rows) < self.max_messages
            stored.append(fits)
            if fits:
                text = _fragments_text(upsert.entities)
                rows.append((upsert.service, upsert.subservice, upsert.device_id, text))
        if rows:
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO outbox (service, subservice, device_id, fragments) VALUES (?,?,?,?)", rows
                )
                self._db.execute("COMMIT")
                self._depth += len(rows)
        return stored

    def oldest(self, limit: int) -> list[_Row]:
        """Up to `limit` rows, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, service, subservice, device_id, fragments FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [_Row(*row) for row in rows]

    def remove(self, seqs: list[int]) -> None:
        """Delete rows the broker has answered for: one range delete per run of consecutive seqs (a batch of one
        tenant is usually one run), not one statement per row."""
        if not seqs:
            return
        ranges = _runs(seqs)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", ranges)
            self._db.execute("COMMIT")
            self._depth -= len(set(seqs))

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()


@dataclass
class _Pending:
    upsert: Upsert | None  # None: a rejected message that only needs its ack
    ack: Callable[[], None] | None
    on_full: Callable[[], None] | None


class Intake:
    """Group-commits mapped messages to the DurableQueue, then acknowledges them in arrival order."""

    def __init__(self, queue: DurableQueue, metrics: Metrics, wake_sender: Callable[[], None]) -> None:
        self._queue = queue
        self._metrics = metrics
        self._wake_sender = wake_sender
        self._pending: list[_Pending] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._busy = False

    def start(self) -> None:
        """Start the commit thread."""
        self._thread = threading.Thread(target=self._run, name="agent-intake", daemon=True)
        self._thread.start()

    def submit(
        self,
        upsert: Upsert | None,
        ack: Callable[[], None] | None = None,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        """Queue a message for the next group commit; `ack` runs once it is on disk (or was only rejected)."""
        with self._cond:
            self._pending.append(_Pending(upsert, ack, on_full))
            self._cond.notify()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything submitted so far is committed and acknowledged."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._cond:
                if not self._pending and not self._busy:
                    return True
            time.sleep(0.005)
        return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Commit and acknowledge what is pending, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    return
                batch, self._pending = self._pending, []
                self._busy = True
            try:
                self._commit(batch)
            except Exception:  # a bug or a full disk: leave the messages unacknowledged so MQTT resends them
                log.exception("could not store %d messages in the outbox; they stay unacknowledged", len(batch))
                time.sleep(1.0)
            finally:
                with self._cond:
                    self._busy = False

    def _commit(self, batch: list[_Pending]) -> None:
        with_rows = [item for item in batch if item.upsert is not None]
        stored = self._queue.append([item.upsert for item in with_rows if item.upsert is not None])
        full = {id(item) for item, ok in zip(with_rows, stored, strict=True) if not ok}
        if len(full) < len(with_rows):
            self._wake_sender()
        for item in batch:
            if id(item) in full and item.on_full is not None:
                item.on_full()
            if item.ack is not None:
                try:
                    item.ack()
                    self._metrics.inc("acked_total")
                except Exception:
                    log.exception("MQTT ack failed; the broker will resend the message")


class Sender:
    """Posts the outbox to the broker in per-tenant batch upserts; deletes rows once the broker answered."""

    def __init__(
        self,
        queue: DurableQueue,
        broker_url: str,
        metrics: Metrics,
        batch_max_messages: int = DEFAULT_BATCH_MESSAGES,
        timeout_s: float = 10.0,
    ) -> None:
        self._queue = queue
        self._url = broker_url.rstrip("/") + UPSERT_PATH
        self._metrics = metrics
        self._batch_max = batch_max_messages
        self._timeout_s = timeout_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self.broker_up = True

    def start(self) -> None:
        """Start the sending thread."""
        self._thread = threading.Thread(target=self._run, name="agent-northbound", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New rows are on disk."""
        self._wake.set()

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until the outbox is empty (every row answered by the broker); True if it happened in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.depth() == 0:
                return True
            self._wake.set()
            time.sleep(0.01)
        return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the batch in flight; what is still queued stays on disk for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout_s) as client:
            failures = 0
            while not self._stop.is_set():
                rows = self._queue.oldest(self._batch_max)
                if not rows:
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                try:
                    delivered = self._deliver(client, rows)
                except Exception:  # a bug here must not end the thread: every later message would wait for ever
                    log.exception("failed to deliver %d queued messages; retrying", len(rows))
                    delivered = False
                if delivered:
                    if failures:
                        log.warning("broker %s reachable again; %d messages queued", self._url, self._queue.depth())
                    failures = 0
                    self.broker_up = True
                    continue
                self.broker_up = False
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                self._stop.wait(delay)

    def _deliver(self, client: httpx.Client, rows: list[_Row]) -> bool:
        """Send rows grouped per tenant; False when the broker is unreachable (nothing after it is removed)."""
        size = 0
        for index, row in enumerate(rows):
            size += len(row.fragments) + 1
            if size > BATCH_MAX_BYTES and index > 0:
                rows = rows[:index]
                break
        groups: dict[tuple[str, str], list[_Row]] = {}
        for row in rows:  # dicts keep insertion order and rows are in seq order: per-device order holds
            groups.setdefault((row.service, row.subservice), []).append(row)
        for (service, subservice), group in groups.items():
            outcome = self._post(client, service, subservice, group)
            if outcome == "retry":
                return False
            if outcome == "done":  # "split" removed its rows one by one
                self._queue.remove([row.seq for row in group])
        return True

    def _post(self, client: httpx.Client, service: str, subservice: str, rows: list[_Row]) -> str:
        body = ("[" + ",".join(row.fragments for row in rows) + "]").encode()
        try:
            response = client.post(
                self._url,
                params={"options": "update"},
                content=body,
                headers=upsert_headers(service, subservice),
            )
        except httpx.TransportError as exc:
            self._metrics.inc("upserts_total", status="unreachable")
            if self.broker_up:
                log.error(
                    "broker %s unreachable (%s); %d messages kept on disk, retrying with backoff",
                    self._url,
                    exc,
                    self._queue.depth(),
                )
            return "retry"
        status = response.status_code
        self._metrics.inc("upserts_total", status=str(status))
        if status in SUCCESS:
            self._metrics.inc("upserted_messages_total", len(rows))
            return "done"
        if status == 207:  # the broker applied part of the batch: resending would duplicate what it applied
            self._metrics.inc("upserted_messages_total", len(rows))
            self._metrics.inc("upsert_dropped_total")
            log.error("broker applied the batch only in part (207): %s; the failed updates are lost",
                      response.text[:1000])
            return "done"
        if status >= 500 or status in RETRYABLE:
            if self.broker_up:
                log.error("broker answered %d (%s); %d messages kept, retrying", status, response.text[:300],
                          self._queue.depth())
            return "retry"
        if len(rows) > 1:  # one bad message must not take its batch neighbours down: resend one by one
            for row in rows:
                if self._post(client, service, subservice, [row]) == "retry":
                    return "retry"
                self._queue.remove([row.seq])
            return "split"
        row = rows[0]
        self._metrics.inc("upsert_dropped_total")
        log.error(
            "broker answered %d to the upsert for device %s (tenant %r): %s; update lost",
            status,
            row.device_id,
            service,
            response.text[:1000],
        )
        return "done"
