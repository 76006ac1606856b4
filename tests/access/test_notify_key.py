"""Broker -> page notifications authenticated by the key in the page's endpoint (twin_service/web/_notify_key.py):
the real embedded broker notifies the real page through its keyed subscription; a notification without the key
or with a wrong one is refused (401 ProblemDetails) and reaches no viewer; the open /health never shows the key."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from datamodels.context import ENERGY_CONTEXT, link_header
from datamodels.measures import measurement_id
from tests.broker.conftest import live_broker  # noqa: F401  (fixture)
from twin_service.web import WebConfig, create_app
from twin_service.web._notify_key import HEADER, NotifyKeyMiddleware, keyed_endpoint, new_key

from .conftest import free_port

READING = {"id": measurement_id("meter-001"), "type": "ThreePhaseAcMeasurement",
           "totalActivePower": {"type": "Property", "value": 120.0, "observedAt": "2026-12-06T10:00:00Z"}}


def test_only_keyed_notifications_reach_the_page(live_broker):  # noqa: F811
    port, key = free_port(), new_key()
    page_url = f"http://127.0.0.1:{port}"
    config = WebConfig(broker_url=live_broker.url, port=port, tenant="energytwin",
                       notify_url=keyed_endpoint(f"{page_url}/notify", key))
    guarded = NotifyKeyMiddleware(create_app(config), key)
    server = uvicorn.Server(uvicorn.Config(guarded, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
                server.started and httpx.get(page_url + "/health", timeout=2).json()["status"] == "ok"):
            time.sleep(0.1)
        health = httpx.get(page_url + "/health", timeout=2)
        assert health.json()["status"] == "ok", health.text  # subscribed with the keyed endpoint
        assert key not in health.text and "<notify-key>" in health.text

        r = httpx.post(live_broker.url + "/ngsi-ld/v1/entityOperations/upsert", json=[READING],
                       headers={"Link": link_header(ENERGY_CONTEXT), "NGSILD-Tenant": "energytwin"})
        assert r.status_code in (201, 204), r.text
        while time.monotonic() < deadline and httpx.get(page_url + "/health").json()["notifications"] < 1:
            time.sleep(0.05)
        assert httpx.get(page_url + "/health").json()["notifications"] >= 1, "the broker's keyed notification"
        before = httpx.get(page_url + "/health").json()["notifications"]

        note = {"data": [READING], "notifiedAt": "2026-12-06T10:00:01Z"}
        for url, headers in ((f"{page_url}/notify", {}), (f"{page_url}/notify?key=wrong", {}),
                             (f"{page_url}/notify/", {HEADER.decode(): "wrong"})):
            refused = httpx.post(url, json=note, headers=headers)
            assert refused.status_code == 401, (url, refused.text)
            assert refused.json()["status"] == 401 and refused.json()["title"] == "Unauthorized"
        assert httpx.get(page_url + "/health").json()["notifications"] == before  # none reached the page
        assert httpx.post(f"{page_url}/notify", json=note, headers={HEADER.decode(): key}).status_code == 204
        assert guarded.refused == 3
    finally:
        server.should_exit = True
        thread.join(timeout=10)
