"""The live twin page in a real browser against a running embedded stack and a simulated meter.

Every part is the real one: the firmware under MicroPython publishes over MQTT, the agent writes the broker, the
analytics raise power-quality events, the page service relays the broker's notifications, and Debian's Chromium
renders the page. The tests only change what the meter measures and look at what the page shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from access import LocalIssuer
from access._users import UserStore
from datamodels.measures import measurement_id
from energytwin.demo import DEMO_APIKEY, DEMO_SITE, provision_demo, twin_headers
from energytwin.stack import EmbeddedStack, StackConfig
from firmware.emulator.simulated_meter import PhaseLoad, SimulatedMeter
from fiware_client import NgsiLdClient
from tests.polling import wait_until
from twin_service.mqtt_server import free_port

pytestmark = pytest.mark.slow

DEVICE = "meter-web"
PERIOD_S = 0.5
USERS = {"boss": "boss-secret-1", "ana": "ana-secret-1", "screen": "screen-secret-1",  # manager, member, public
         "ops": "ops-secret-1"}  # control centre
# The page shows the example community's accounts (four members: too few for the public screen's figures).
COMMUNITY = Path(__file__).resolve().parents[2] / "community" / "examples" / "community.yaml"
COMMUNITY_MONTH = "2026-10"
LOADS = (
    PhaseLoad(voltage_v=230.0, current_a=10.0, angle_deg=0.0),
    PhaseLoad(voltage_v=230.0, current_a=5.0, angle_deg=30.0),
    PhaseLoad(voltage_v=230.0, current_a=8.0, angle_deg=180.0),
)


@dataclass
class Site:
    stack: EmbeddedStack
    meter: SimulatedMeter

    @property
    def url(self) -> str:
        return self.stack.web_url



def _wait(predicate, timeout_s: float, what: str):
    return wait_until(predicate, timeout_s, what, poll_s=0.1)


def _entity(stack: EmbeddedStack, **params: str) -> dict | None:
    r = httpx.get(f"{stack.config.broker_url}/ngsi-ld/v1/entities/{measurement_id(DEVICE)}", params=params,
                  headers=twin_headers(), timeout=5)
    return r.json() if r.status_code == 200 else None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    cfg = StackConfig(data_dir=tmp_path_factory.mktemp("web-stack"), mqtt_port=free_port(), broker_port=free_port(),
                      agent_port=free_port(), quality_port=0, web_port=0, quality_tenant=DEMO_SITE.service,
                      # the page's --community, at start and at each restart by the stack's supervisor
                      # (test_the_page_reconnects_... kills it and checks the accounts are still there)
                      community=COMMUNITY, community_month=COMMUNITY_MONTH)
    stack = EmbeddedStack(cfg)
    stack.start()
    users = UserStore(cfg.data_dir)  # access control is on: the page asks for a login
    users.add("boss", "manager", secret=USERS["boss"])
    users.add("ana", "member", secret=USERS["ana"], devices=[DEVICE, "home-web"])
    users.add("screen", "public", secret=USERS["screen"])
    users.add("ops", "control-centre", secret=USERS["ops"])
    meter = SimulatedMeter(device_id=DEVICE, apikey=DEMO_APIKEY, mqtt_host=cfg.host, mqtt_port=cfg.mqtt_port,
                           period_s=PERIOD_S, loads=LOADS)
    try:
        provision_demo(cfg.agent_url, cfg.broker_url, [DEVICE])
        _wait(lambda: httpx.get(f"{stack.web_url}/health", timeout=5).json()["status"] == "ok", 30,
              "the page service's subscriptions")
        meter.start()
        _wait(lambda: _entity(stack), 60, "the meter's first reading in the twin")
        # a few readings of history, so the period estimate and the chart have something to show
        _wait(lambda: len(meter.published) >= 4, 30, "four published readings")
        yield Site(stack, meter)
    finally:
        meter.stop()
        stack.stop()


def log_in(tab, site: Site, user: str, secret: str) -> None:
    """The login form, as a person fills it (the page's session cookie is then the context's)."""
    tab.goto(f"{site.url}/login")
    tab.fill("input[name=user]", user)
    tab.fill("input[name=secret]", secret)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{site.url}/")


@pytest.fixture
def page(browser, site: Site):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    log_in(tab, site, "boss", USERS["boss"])
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.expected_errors = []  # substrings of errors a test causes on purpose
    yield tab
    context.close()
    unexpected = [e for e in errors if not any(x in e for x in tab.expected_errors)]
    assert not unexpected, f"the page logged errors: {unexpected}"


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def test_overview_shows_the_meter_and_links_to_its_page(site: Site, page) -> None:
    page.goto(f"{site.url}/")
    card = page.locator(f'a.meter-card[data-device="{DEVICE}"]')
    card.wait_for(timeout=10_000)
    page.wait_for_function(f'document.querySelector(\'[data-device="{DEVICE}"] [data-role="state"]\')'
                           '.dataset.state === "live"', timeout=10_000)
    # 10 A·230 V + 5 A·230 V·cos 30° − 8 A·230 V = 2300 + 995.9 − 1840 = 1455.9 W
    assert card.locator('[data-role="power"]').inner_text() == "1.46 kW"
    assert card.locator('[data-role="voltage"]').inner_text() == "230.0 / 230.0 / 230.0 V"
    assert "kWh" in card.locator('[data-role="energy"]').inner_text()
    card.click()
    page.wait_for_url(f"**/meters/{DEVICE}")
    page.locator('[data-cell="phaseVoltage.L1"]').filter(has_text="230.0 V").wait_for(timeout=10_000)
    assert _text(page, '[data-cell="current.L2"]') == "5.00 A"
    assert _text(page, '[data-cell="powerFactor.L2"]') == "0.866"  # cos 30°
    assert _text(page, '[data-cell="phaseToPhaseVoltage.L12"]') == "398.4 V"  # 230·√3
    assert _text(page, '[data-field="frequency"]') == "50.00 Hz"
    # the phasor diagram draws three voltage and three current phasors; I3 exports (V3 at 120°, I3 at −60°)
    assert page.locator("#phasors line.phasor.voltage").count() == 3
    assert page.locator("#phasors line.phasor.current").count() == 3
    assert "∠-60.0°" in _text(page, "#phasor-legend li:nth-child(3)")
    # the last hour comes from the temporal API: the power chart has a drawn series
    page.wait_for_function('document.querySelector("#chart-power path.series")?.getAttribute("d")?.length > 0',
                           timeout=10_000)


def test_a_load_change_reaches_the_page_live(site: Site, page, artifacts) -> None:
    page.goto(f"{site.url}/meters/{DEVICE}")
    page.locator('[data-cell="current.L2"]').filter(has_text="5.00 A").wait_for(timeout=10_000)
    page.locator("#connection[data-state='live']").wait_for(timeout=10_000)
    # the page must not reload to see it: remember when the cell changes, in the browser
    page.evaluate("""() => {
        const cell = document.querySelector('[data-cell="current.L2"]');
        new MutationObserver(() => { if (cell.textContent === "12.50 A" && !window.changedAt) window.changedAt = Date.now(); })
            .observe(cell, { childList: true, characterData: true, subtree: true });
    }""")
    site.meter.set_load(2, PhaseLoad(voltage_v=230.0, current_a=12.5, angle_deg=30.0))
    written = _wait(lambda: (e := _entity(site.stack, options="sysAttrs", attrs="current"))
                    and e["current"]["value"]["L2"] == 12.5 and e, 10, "the new current in the twin")
    page.wait_for_function("() => window.changedAt", timeout=10_000)
    assert _text(page, '[data-cell="current.L2"]') == "12.50 A"
    # P2 = 230 V · 12.5 A · cos 30° = 2489.9 W
    assert _text(page, '[data-cell="activePower.L2"]') == "2.49 kW"
    changed_ms = page.evaluate("() => window.changedAt")
    modified = datetime.fromisoformat(written["current"]["modifiedAt"]).timestamp()
    latency_s = changed_ms / 1000 - modified
    (artifacts / "live-latency.json").write_text(json.dumps({"brokerWriteToScreen_s": round(latency_s, 3)}))
    print(f"broker write -> value on screen: {latency_s * 1000:.0f} ms")


def test_a_voltage_dip_shows_as_a_power_quality_event(site: Site, page, artifacts) -> None:
    page.goto(f"{site.url}/meters/{DEVICE}")
    page.locator("#connection[data-state='live']").wait_for(timeout=10_000)
    assert page.locator('#events-open .event:has-text("voltageLow · L1")').count() == 0
    # a dip to 150 V on L1 (65 %): the analytics open a voltageLow Anomaly, the page shows it without reloading
    site.meter.set_load(1, PhaseLoad(voltage_v=150.0, current_a=10.0, angle_deg=0.0))
    event = page.locator('#events-open .event:has-text("voltageLow · L1")')
    event.wait_for(timeout=15_000)
    assert event.get_attribute("data-severity") == "high"  # residual 65 %: EN 50160 row C
    assert "150.0 V" in event.inner_text() and "207.0 V" in event.inner_text()
    page.locator('[data-cell="phaseVoltage.L1"]').filter(has_text="150.0 V").wait_for(timeout=5_000)
    page.screenshot(path=str(artifacts / "meter-page.png"), full_page=True)
    # the supply recovers: the event closes and moves to the recent list
    site.meter.set_load(1, LOADS[0])
    page.locator('#events-recent .event:has-text("voltageLow · L1")').wait_for(timeout=15_000)
    assert page.locator('#events-open .event:has-text("voltageLow · L1")').count() == 0


def test_phone_sized_screen_has_no_sideways_scrolling(site: Site, browser, artifacts) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    try:
        phone = context.new_page()
        log_in(phone, site, "boss", USERS["boss"])
        phone.goto(f"{site.url}/meters/{DEVICE}")
        phone.locator('[data-cell="phaseVoltage.L1"]').filter(has_text=" V").wait_for(timeout=10_000)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        box = phone.locator("#phasors").bounding_box()
        assert box is not None and box["width"] <= 390
        phone.screenshot(path=str(artifacts / "meter-page-phone.png"), full_page=True)
        phone.goto(f"{site.url}/")
        phone.locator(f'a.meter-card[data-device="{DEVICE}"]').wait_for(timeout=10_000)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_the_page_reconnects_after_the_page_service_restarts(site: Site, page) -> None:
    page.goto(f"{site.url}/meters/{DEVICE}")
    page.locator("#connection[data-state='live']").wait_for(timeout=10_000)
    web = next(c for c in site.stack.children if c.name == "web")
    old_pid = web.process.pid
    page.expected_errors.append("ERR_INCOMPLETE_CHUNKED_ENCODING")  # the open stream breaks: that is the test
    # and a reconnect attempt may land before the supervisor has restarted the service
    page.expected_errors.append("ERR_CONNECTION_REFUSED")
    web.process.kill()  # the stack's supervisor starts it again on the same port
    page.locator("#connection[data-state='reconnecting']").wait_for(timeout=10_000)
    page.locator("#connection[data-state='live']").wait_for(timeout=30_000)
    assert web.process.pid != old_pid
    # the restarted page still has its community (StackConfig.community, passed as --community), env or not
    token = LocalIssuer(site.stack.config.data_dir).token("boss", "manager")
    r = httpx.get(f"{site.url}/api/views/manager", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200 and r.json()["accounts"]["period"]["label"] == COMMUNITY_MONTH, r.text
    # live again: a new value arrives over the new stream
    site.meter.set_load(3, PhaseLoad(voltage_v=230.0, current_a=6.0, angle_deg=180.0))
    page.locator('[data-cell="current.L3"]').filter(has_text="6.00 A").wait_for(timeout=20_000)


# The meter stops for good here; the role test after it sees its health as no longer live. (Before the
# community was the page's --community, the page restarted by test_the_page_reconnects_... lost it when the
# env was restored, and the manager's accounts never rendered in the role test.)
def test_stale_and_offline_state_shows_when_the_meter_stops(site: Site, page) -> None:
    page.goto(f"{site.url}/meters/{DEVICE}")
    page.locator("#meter-state[data-state='live']").wait_for(timeout=10_000)
    assert page.locator("#banner").is_hidden()
    site.meter.stop()
    # three periods or period + 5 s without a reading: stale, with the banner saying the values are old
    page.locator("#meter-state[data-state='stale']").wait_for(timeout=15_000)
    assert _text(page, "#meter-state") == "Stale"
    assert "No reading from meter-web" in _text(page, "#banner")
    overview = page.context.new_page()
    overview.goto(f"{site.url}/")
    overview.locator(f'[data-device="{DEVICE}"][data-state="stale"]').wait_for(timeout=10_000)
    # no meter live in the overview either
    overview.wait_for_function("document.querySelector('#count-live').textContent === '0'", timeout=30_000)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _battery(home: str, soc: float, **extra: object) -> dict:
    at = _now()
    entity = {"id": f"urn:ngsi-ld:BatteryStatus:{home}", "type": "BatteryStatus",
              "statusPercent": {"type": "Property", "value": soc, "unitCode": "C62", "observedAt": at},
              "batteryPower": {"type": "Property", "value": 0, "unitCode": "WTT", "observedAt": at}}
    entity.update({k: {"type": "Property", "value": v} for k, v in extra.items()})
    return entity


def test_each_role_sees_its_view_and_never_a_foreign_id(site: Site, browser) -> None:
    """A real browser logs in as member, manager, public and control centre and sees each one's view."""
    foreign = "meter-foreign"
    twin = NgsiLdClient(site.stack.config.broker_url, tenant=DEMO_SITE.service)
    twin.upsert_entities([{"id": measurement_id(foreign), "type": "ThreePhaseAcMeasurement",
                           "totalActivePower": {"type": "Property", "value": 1234.0, "unitCode": "WTT",
                                                "observedAt": _now()}}])
    command = {"batteryPowerSetpoint": "", "batteryPowerSetpoint_status": "UNKNOWN", "batteryPowerSetpoint_info": ""}
    twin.upsert_entities([_battery("home-web", 0.5, **command), _battery("home-foreign", 0.7, **command)])
    context = browser.new_context()
    try:
        tab = context.new_page()
        assert tab.goto(f"{site.url}/").url == f"{site.url}/login"  # no session: the login form

        log_in(tab, site, "boss", USERS["boss"])  # the manager: every meter, the accounts, device health
        tab.locator(f'[data-device="{foreign}"]').wait_for(timeout=10_000)
        # the first view computes the community's month from its history (cached afterwards): slow on a busy machine
        tab.locator('#accounts [data-account="bernat"]').wait_for(timeout=30_000)
        assert tab.locator('#accounts [data-account="community"]').count() == 1
        assert tab.locator("#accounts [data-share]").count() == 4  # the coefficients in force, one per member
        # the meter stopped in the test before: stale or offline, never live
        state = tab.locator(f'#health [data-health="{DEVICE}:meter"]').get_attribute("data-state")
        assert state in ("stale", "offline"), state
        assert tab.locator("#who").inner_text().startswith("boss (manager)")
        assert tab.locator("#batteries").count() == 0  # commands are the control centre's
        tab.select_option("#revision-method", "optimal")  # the coefficient revision, on demand
        tab.click("#revision-run")
        tab.locator('#revision-result [data-revision="bernat"]').wait_for(timeout=30_000)
        assert tab.locator("#revision-result [data-revision]").count() == 4
        assert "energytwin community coefficients" in tab.locator("#revision-result code.adopt").inner_text()
        tab.click("#logout")
        tab.wait_for_url(f"{site.url}/login")
        assert tab.goto(f"{site.url}/api/meters").status == 401  # the session is over

        log_in(tab, site, "ana", USERS["ana"])  # the member: their meter, their savings, their battery
        tab.locator('#my-energy [data-account="ana"]').wait_for(timeout=10_000)
        assert "€" in tab.locator("#my-savings").inner_text() and tab.locator("#my-trees").inner_text() != "–"
        tab.locator('#my-battery [data-battery="home-web"]').wait_for(timeout=10_000)
        assert "50 %" in tab.locator('#my-battery [data-battery="home-web"]').inner_text()
        assert tab.locator("[data-device]").count() == 1
        for other in (foreign, "home-foreign", "bernat", "carmen", "dolores", "ES0031405000000102RK"):
            assert other not in tab.content(), other
        for api in ("/api/meters", "/api/views/member"):
            body = tab.goto(f"{site.url}{api}").text()
            assert DEVICE in body and all(o not in body for o in (foreign, "home-foreign", "bernat")), api
        refused = tab.goto(f"{site.url}/api/meters/{foreign}")
        assert refused.status == 403 and foreign not in refused.text()
        assert tab.goto(f"{site.url}/api/views/control").status == 403
        tab.goto(f"{site.url}/logout")

        log_in(tab, site, "screen", USERS["screen"])  # the public: four members, so no figure, and why
        tab.locator("#withheld").wait_for(timeout=10_000)
        assert "fewer than 5" in tab.locator("#withheld").inner_text() and tab.locator("#headline").is_hidden()
        assert DEVICE not in tab.content() and "ana" not in tab.locator("main").inner_text()
        for api in ("/api/meters", f"/api/meters/{DEVICE}", "/api/stream", "/api/views/manager"):
            answer = tab.goto(f"{site.url}{api}")
            assert answer.status == 403 and DEVICE not in answer.text(), api
        tab.goto(f"{site.url}/logout")

        # fresh readings: one reading is live for ~15 s, and the views above may take longer than that
        twin.upsert_entities([_battery("home-web", 0.5), _battery("home-foreign", 0.7)], update=True)
        log_in(tab, site, "ops", USERS["ops"])  # the control centre: every battery live, and commands
        row = tab.locator('#batteries [data-battery="home-web"]')
        row.wait_for(timeout=10_000)
        assert tab.locator("#batteries [data-battery]").count() == 2
        tab.wait_for_function("document.querySelector('#fleet-mean').textContent.includes('60')", timeout=10_000)
        row.locator('input[data-command="batteryPowerSetpoint"]').fill("1200")
        row.locator('button[data-send="batteryPowerSetpoint"]').click()
        row.locator('[data-role="status-batteryPowerSetpoint"][data-status="sent"]').wait_for(timeout=10_000)
        sent = twin.get_entity("urn:ngsi-ld:BatteryStatus:home-web")["batteryPowerSetpoint"]["value"]
        assert sent == 1200  # the PATCH of the command attribute reached the twin
        # the device's answer and a new SoC arrive over the live stream, without a reload
        twin.upsert_entities([_battery("home-web", 0.9, batteryPowerSetpoint_status="OK",
                                       batteryPowerSetpoint_info={"ok": True, "written": 1200})], update=True)
        row.locator('[data-role="status-batteryPowerSetpoint"][data-status="OK"]').wait_for(timeout=10_000)
        tab.wait_for_function("document.querySelector('#fleet-mean').textContent.includes('80')", timeout=10_000)
        assert "90 %" in row.locator('[data-role="soc"]').inner_text()
    finally:
        context.close()
        twin.close()
