"""`energytwin quality report --history …`: the weekly EN 50160 report reads the same readings from QuantumLeap
and from Mintaka as from the broker's own temporal API (production has no temporal API on Orion-LD alone), and
prints the same table."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner

from fiware_client import NgsiLdClient
from tests.broker.conftest import live_broker  # noqa: F401  (fixture)
from tests.fiware_client.mintaka_standin import MintakaStandIn
from tests.fiware_client.quantumleap_standin import QuantumLeapStandIn, Running
from twin_service.quality.commands import quality

from .support import T0, entity

TENANT = "energytwin"
DEVICE = "pq-history"


def test_report_is_the_same_from_every_history_backend(live_broker, tmp_path):  # noqa: F811
    standin = QuantumLeapStandIn()
    fragments = []
    for k in range(2 * 144):  # two days, one reading per 10 min, one swell-free wobble
        at = T0 + timedelta(minutes=10 * k)
        wobble = (k % 7 - 3) * 1.5
        fragment = entity(DEVICE, at, v=(230 + wobble, 231 - wobble, 229 + wobble / 2), f=50 + (k % 5 - 2) * 0.02,
                          thd=(0.03, 0.04, 0.05))
        fragments.append(fragment)
        standin.insert(TENANT, fragment["id"], fragment["type"], at.isoformat(),
                       {name: attr["value"] for name, attr in fragment.items() if isinstance(attr, dict)})
    with NgsiLdClient(live_broker.url, TENANT) as broker:
        for start in range(0, len(fragments), 50):
            broker.upsert_entities(fragments[start:start + 50], update=True)
    chart = tmp_path / "week.png"
    base = ["report", "--meter", DEVICE, "--week", "2026-W02", "--broker-url", live_broker.url, "--tenant", TENANT,
            "--chart", str(chart)]
    with Running(standin), Running(MintakaStandIn(live_broker.url)) as mintaka:
        outputs = {}
        for backend, url in (("ngsi-ld", None), ("quantumleap", standin.url), ("mintaka", mintaka.url)):
            extra = ["--history", backend] + (["--history-url", url] if url else [])
            result = CliRunner().invoke(quality, base + extra)
            assert result.exit_code == 0, (backend, result.output)
            outputs[backend] = result.output
    assert any(path.startswith("/v2/entities/") for path, _, _ in standin.requests)
    assert mintaka.requests and all(m == "GET" for m, _ in mintaka.requests)
    assert "(288 readings;" in outputs["ngsi-ld"] and "100.00%" in outputs["ngsi-ld"]
    assert outputs["ngsi-ld"] == outputs["quantumleap"] == outputs["mintaka"]


def test_a_history_server_needs_its_url():
    result = CliRunner().invoke(quality, ["report", "--meter", "m", "--week", "2026-W02", "--history", "mintaka"])
    assert result.exit_code != 0 and "--history mintaka needs --history-url" in result.output
