"""The page's community file by configuration: `StackConfig.community` reaches the page's process as its
`--community` option, with access control off as well (what `energytwin demo --no-access-control` runs);
`energytwin web --community` standalone; ENERGYTWIN_COMMUNITY only when no option is given. (A page the
supervisor restarts keeps it: tests/web/test_live_page.py kills the page of a stack with access control on.)

The stack here is the real one (broker, agent, analytics and page as processes) with access control off; the
community is the demo's (energytwin/demo_community.py) with two members whose month is backfilled into the twin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import click
import httpx
import psutil
import pytest

from datamodels.measures import measurement_id
from energytwin.demo import DEMO_APIKEY, DEMO_SITE, DemoContext, DemoOptions
from energytwin.demo_community import (
    COMMUNITY_ENV,
    SEED_DELAY,
    DemoCommunity,
    DemoCommunityFile,
    write_demo_community,
)
from energytwin.page_web import community_accounts, web
from energytwin.stack import EmbeddedStack, StackConfig
from firmware.emulator.simulated_meter import SimulatedMeter
from fiware_client import NgsiLdClient, parse_time
from tests.polling import wait_until
from twin_service.mqtt_server import free_port

METERS = ["meter-001", "meter-002"]
EXAMPLE = Path(__file__).resolve().parents[2] / "community" / "examples" / "community.yaml"


@dataclass
class Site:
    stack: EmbeddedStack
    meter: SimulatedMeter
    community: DemoCommunity
    backfilled: dict  # meter-001's totalActiveEnergyImport after the backfill, before the meter started


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("page-community")
    broker_port = free_port()
    file = write_demo_community(data / "community", METERS, f"http://127.0.0.1:{broker_port}", DEMO_SITE.service)
    cfg = StackConfig(data_dir=data, mqtt_port=free_port(), broker_port=broker_port, agent_port=free_port(),
                      quality_port=0, web_port=0, quality_tenant=DEMO_SITE.service, access=False,
                      community=file.path)
    saved = os.environ.pop(COMMUNITY_ENV, None)  # the option alone must carry it
    running = EmbeddedStack(cfg)
    meter = SimulatedMeter(device_id=METERS[0], apikey=DEMO_APIKEY, mqtt_host=cfg.host, mqtt_port=cfg.mqtt_port,
                           period_s=0.5)
    try:
        running.start()
        # the demo's community part: provisioning, the month's backfill, the agent told where the counters stand
        part = DemoCommunity(file)
        part.start(DemoContext(DemoOptions(stack=cfg, meters=len(METERS), community=file), running))
        assert set(part.written) == set(METERS)
        before = _counter(cfg.broker_url)
        meter.start()  # the real firmware, its counters from zero
        yield Site(running, meter, part, before)
    finally:
        meter.stop()
        running.stop()
        if saved is not None:
            os.environ[COMMUNITY_ENV] = saved


def _counter(broker_url: str) -> dict:
    with NgsiLdClient(broker_url, tenant=DEMO_SITE.service) as twin:
        return twin.get_entity(measurement_id(METERS[0]), attrs=["totalActiveEnergyImport"])["totalActiveEnergyImport"]


def _manager(stack: EmbeddedStack) -> dict:
    r = httpx.get(f"{stack.web_url}/api/views/manager", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _web_child(stack: EmbeddedStack):  # type: ignore[no-untyped-def]
    return next(c for c in stack.children if c.name == "web")


def test_without_access_control_the_page_gets_the_community_as_an_option(site: Site) -> None:
    stack = site.stack
    child = _web_child(stack)
    argv = psutil.Process(child.process.pid).cmdline()
    assert argv[argv.index("-m") + 1] == "energytwin.page_web"
    assert argv[argv.index("--community") + 1] == str(stack.config.community.resolve())
    assert COMMUNITY_ENV not in psutil.Process(child.process.pid).environ()
    me = httpx.get(f"{stack.web_url}/api/me", timeout=10).json()
    assert me["accessControl"] is False  # the page's header says so (common.js: #who[data-access=off])
    body = _manager(stack)
    assert body["accountsUnavailable"] is None
    accounts = body["accounts"]
    assert accounts["community"] == "energytwin demo community"
    assert [m["member"] for m in accounts["members"]] == METERS
    if accounts["hourly"]:  # 0 complete hours only in the first hour of a month
        assert all(m["consumptionKwh"] > 0 for m in accounts["members"])
    # no login (development): the member view holds every member's rows
    member = httpx.get(f"{stack.web_url}/api/views/member", timeout=30).json()
    assert [m["member"] for m in member["accounts"]["members"]] == METERS


def test_the_page_without_login_says_so_and_draws_the_accounts(site: Site, browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        tab = context.new_page()
        tab.goto(f"{site.stack.web_url}/")
        tab.locator('#who[data-access="off"]').wait_for(timeout=10_000)
        assert tab.locator("#who").inner_text().startswith("NO LOGIN: access control is off")
        tab.locator('#accounts [data-account="meter-002"]').wait_for(timeout=30_000)
        assert tab.locator("#accounts [data-account]").count() == len(METERS) + 1  # and the community's row
    finally:
        context.close()


def test_the_meters_restart_at_zero_is_bridged_so_the_cumulative_goes_on(site: Site) -> None:
    """The simulated meter starts at 0 kWh after the backfilled month: the agent, told where the counters stand
    (demo_community.seed_agent_counters), continues them, so the community's accounts see no counter reset."""
    backfilled = site.backfilled
    assert site.community.seeded == METERS
    start = parse_time(backfilled["observedAt"])
    assert backfilled["value"] > 0 and "meterReading" not in backfilled  # simulated, written by the backfill

    def live() -> dict | None:
        counter = _counter(site.stack.config.broker_url)
        return counter if parse_time(counter["observedAt"]) > start + SEED_DELAY else None

    first = wait_until(live, 60, "the meter's first reading in the twin", poll_s=0.2)
    # what the twin keeps: the month's cumulative, continued by what the meter counted since its first reading
    # (the meter's own count, from zero, is `meterReading`; only its first interval is not counted)
    raw = first["meterReading"]["value"]
    assert raw < 1.0 and backfilled["value"] <= first["value"] <= backfilled["value"] + raw + 1e-6
    assert parse_time(first["observedAt"]) - start < timedelta(minutes=5)  # no gap: the backfill reaches 'now'
    with NgsiLdClient(site.stack.config.broker_url, tenant=DEMO_SITE.service) as twin:
        history = twin.temporal_entity(measurement_id(METERS[0]), attrs=["totalActiveEnergyImport"],
                                       timerel="after", time_at=start - timedelta(hours=2))
    instances = history["totalActiveEnergyImport"]
    values = [i["value"] for i in instances]
    assert len(values) > 2 and values == sorted(values)  # never a step back from the backfill into live
    # the step back is marked where it happened: the meter's first reading, 0 kWh after the backfill's counters
    marked = [i for i in instances if "counterReset" in i]
    assert len(marked) == 1 and marked[0]["counterReset"]["value"]["after"] < 0.01, marked


def test_energytwin_web_takes_community_and_the_env_only_without_the_option(monkeypatch, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv(COMMUNITY_ENV, str(other))
    with web.make_context("web", ["--community", str(EXAMPLE)]) as ctx:
        assert ctx.params["community"] == EXAMPLE  # the option wins
    with web.make_context("web", []) as ctx:
        assert ctx.params["community"] == other  # the environment, when no option is given
    monkeypatch.delenv(COMMUNITY_ENV)
    with web.make_context("web", []) as ctx:
        assert ctx.params["community"] is None
    assert community_accounts(EXAMPLE, "2026-10").month == "2026-10"
    with pytest.raises(click.BadParameter, match="YYYY-MM"):
        community_accounts(EXAMPLE, "October")
    with pytest.raises(click.UsageError, match="needs --community"):
        community_accounts(None, "2026-10")


def test_the_demo_page_shows_the_users_community_file_if_set(monkeypatch, tmp_path: Path) -> None:
    file = DemoCommunityFile(tmp_path / "community.yaml", METERS, 3.0)
    monkeypatch.delenv(COMMUNITY_ENV, raising=False)
    assert file.page_file() == file.path.resolve()
    monkeypatch.setenv(COMMUNITY_ENV, str(EXAMPLE))
    assert file.page_file() == EXAMPLE
