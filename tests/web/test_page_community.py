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
from pathlib import Path

import click
import httpx
import psutil
import pytest

from energytwin.demo import DEMO_SITE
from energytwin.demo_community import COMMUNITY_ENV, DemoCommunityFile, backfill, write_demo_community
from energytwin.page_web import community_accounts, web
from energytwin.stack import EmbeddedStack, StackConfig
from twin_service.mqtt_server import free_port

METERS = ["meter-001", "meter-002"]
EXAMPLE = Path(__file__).resolve().parents[2] / "community" / "examples" / "community.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    data = tmp_path_factory.mktemp("page-community")
    broker_port = free_port()
    file = write_demo_community(data / "community", METERS, f"http://127.0.0.1:{broker_port}", DEMO_SITE.service)
    cfg = StackConfig(data_dir=data, mqtt_port=free_port(), broker_port=broker_port, agent_port=free_port(),
                      quality_port=0, web_port=0, quality_tenant=DEMO_SITE.service, access=False,
                      community=file.path)
    saved = os.environ.pop(COMMUNITY_ENV, None)  # the option alone must carry it
    running = EmbeddedStack(cfg)
    try:
        running.start()
        assert set(backfill(cfg.broker_url, DEMO_SITE.service, METERS)) == set(METERS)
        yield running
    finally:
        running.stop()
        if saved is not None:
            os.environ[COMMUNITY_ENV] = saved


def _manager(stack: EmbeddedStack) -> dict:
    r = httpx.get(f"{stack.web_url}/api/views/manager", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _web_child(stack: EmbeddedStack):  # type: ignore[no-untyped-def]
    return next(c for c in stack.children if c.name == "web")


def test_without_access_control_the_page_gets_the_community_as_an_option(stack: EmbeddedStack) -> None:
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
