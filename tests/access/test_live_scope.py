"""The page's live stream (Server-Sent Events) carries only what the caller may see: a member's stream gets its own
meter's readings and events and never another meter's, whatever `?device=` it asks for; the overview of a
caller of scope `all` gets every meter, and the roles that see no meter (public, device) get no reading at all.
The real page service on a real socket with the stack's login (energytwin/page_login.py: the local issuer's
tokens, sent as bearer tokens), notifications posted to /notify."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from access._tokens import LocalIssuer
from datamodels.measures import measurement_id
from energytwin.page_login import page_auth
from twin_service.web import WebConfig, create_app

from .conftest import free_port

ROLES = ("member", "manager", "control-centre", "public", "device")
TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("page")
    issuer = LocalIssuer(data_dir)
    for role in ROLES:
        devices = ["meter-001"] if role in ("member", "device") else None
        TOKENS[role] = issuer.token(f"{role}-user", role, member="ana" if role == "member" else None,
                                    devices=devices)
    port = free_port()
    app = create_app(WebConfig(broker_url="http://127.0.0.1:9", port=port,
                               auth=page_auth(data_dir, secure_cookie=False)), subscribe=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the page did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _reading(device: str, watts: float) -> dict:
    return {"id": measurement_id(device), "type": "ThreePhaseAcMeasurement",
            "totalActivePower": {"type": "Property", "value": watts, "observedAt": "2026-12-06T10:00:00Z"}}


def _anomaly(device: str) -> dict:
    date = {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-12-06T10:00:00Z"}}
    return {"id": f"urn:ngsi-ld:Anomaly:{device}:voltageLow-L1-1", "type": "Anomaly",
            "anomalousProperty": {"type": "Property", "value": "phaseVoltage"},
            "dateDetected": date, "validFrom": date,
            "detectedBy": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{device}"},
            "severity": {"type": "Property", "value": "high"},
            "description": {"type": "Property", "value": "Voltage dip"},
            "phase": {"type": "Property", "value": "L1"},
            "status": {"type": "Property", "value": "open"},
            "name": {"type": "Property", "value": "voltageLow"}}


def _collect(url: str, role: str, out: list[dict], ready: threading.Event, stop: threading.Event) -> None:
    """The stream's reading and event messages as (event, device) until `stop` and the next ping."""
    try:
        _read_stream(url, role, out, ready, stop)
    except httpx.HTTPError:
        if not stop.is_set():
            raise  # the page closing the stream at its shutdown is expected, not before


def _read_stream(url: str, role: str, out: list[dict], ready: threading.Event, stop: threading.Event) -> None:
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {TOKENS[role]}"}, timeout=15) as response:
        if response.status_code != 200:  # a role the page refuses: no stream, nothing carried
            out.append({"event": "refused", "device": None, "raw": f"{response.status_code} {response.read()!r}"})
            ready.set()
            return
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "hello":
                    ready.set()
                elif event == "ping" and stop.is_set():
                    return
            elif line.startswith("data: ") and event in ("reading", "event"):
                out.append({"event": event, "device": json.loads(line[6:])["device"], "raw": line})
            if stop.is_set() and event in ("reading", "event"):
                return


@pytest.mark.parametrize("query", ["", "?device=meter-002"])
def test_a_members_stream_never_carries_another_meter(page: str, query: str):
    streams: dict[str, list[dict]] = {role: [] for role in ROLES}
    stop = threading.Event()
    for role, messages in streams.items():
        ready = threading.Event()
        threading.Thread(target=_collect, args=(page + "/api/stream" + query, role, messages, ready, stop),
                         daemon=True).start()
        assert ready.wait(10), f"no hello on the {role}'s stream"
    for device in ("meter-002", "meter-001", "meter-003"):
        r = httpx.post(page + "/notify", json={"data": [_reading(device, 100.0), _anomaly(device)],
                                                "notifiedAt": "2026-12-06T10:00:01Z"})
        assert r.status_code == 204, r.text
    want = {"": 6, "?device=meter-002": 2}[query]  # the manager's: every meter, or the one asked for
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(streams["manager"]) < want:
        time.sleep(0.05)
    time.sleep(0.3)  # anything else on its way to the member has arrived by now
    stop.set()
    member = streams["member"]
    assert len(streams["manager"]) == want, streams["manager"]
    assert len(streams["control-centre"]) == want, streams["control-centre"]
    for role in ("public", "device"):  # refused by the page, or a stream that carries no meter at all
        assert not [m for m in streams[role] if m["event"] != "refused" or "meter-00" in m["raw"]], streams[role]
    assert not [m for m in member if m["device"] != "meter-001" or "meter-002" in m["raw"]
                or "meter-003" in m["raw"]], member
    expected = [] if query else [("reading", "meter-001"), ("event", "meter-001")]
    assert [(m["event"], m["device"]) for m in member] == expected
    for device in ("meter-001", "meter-002"):  # one more line each, so both streams end now, not at a ping
        httpx.post(page + "/notify", json={"data": [_reading(device, 1.0)]})
