"""`energytwin community report` reads a meter's counters from QuantumLeap as it does from the NGSI-LD temporal
API and from Mintaka: the same October of readings in the embedded broker, in the QuantumLeap stand-in (QuantumLeap's
documented query API) and behind a Mintaka stand-in (the temporal API under Mintaka's root), the same hourly
energy and the same report table."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from community.config import CommunityFileError, load_community
from community.data import load_energy
from datamodels.measures import measurement_id
from fiware_client import NgsiLdClient
from tests.broker.conftest import live_broker  # noqa: F401  (fixture)
from tests.fiware_client.mintaka_standin import MintakaStandIn
from tests.fiware_client.quantumleap_standin import QuantumLeapStandIn, Running

EXAMPLES = Path(__file__).parents[2] / "community" / "examples"
TENANT = "energy"
START = datetime(2026, 9, 30, 22, 0, tzinfo=UTC)  # 1 October 00:00 in Madrid
DAYS = 3


def _community_file(tmp_path: Path, twin: dict) -> Path:
    for item in EXAMPLES.iterdir():
        if item.suffix == ".csv":
            shutil.copy(item, tmp_path / item.name)
    data = yaml.safe_load((EXAMPLES / "community.yaml").read_text())
    data["twin"] = twin
    member = data["members"][0]
    member.pop("csv")
    member["meter"] = "meter-ana"
    path = tmp_path / "community.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _readings() -> list[tuple[datetime, float]]:
    # ana's import counter every 15 min over three days: 0.2 kWh per quarter hour at night, 0.05 by day.
    out, counter = [], 5000.0
    for k in range(DAYS * 96 + 1):
        at = START + timedelta(minutes=15 * k)
        out.append((at, counter))
        counter += 0.2 if (at.hour + 2) % 24 >= 19 or (at.hour + 2) % 24 < 7 else 0.05
    return out


def test_report_from_quantumleap_equals_report_from_the_temporal_api(live_broker, tmp_path):  # noqa: F811
    entity = measurement_id("meter-ana")
    standin = QuantumLeapStandIn()
    fragments = []
    for at, kwh in _readings():
        values = {"totalActiveEnergyImport": kwh, "totalActiveEnergyExport": 0.0}
        standin.insert(TENANT, entity, "ThreePhaseAcMeasurement", at.isoformat(), values)
        fragments.append({"id": entity, "type": "ThreePhaseAcMeasurement", **{
            name: {"type": "Property", "value": value, "unitCode": "KWH",
                   "observedAt": at.isoformat().replace("+00:00", "Z")} for name, value in values.items()}})
    with NgsiLdClient(live_broker.url, TENANT) as broker:
        broker.upsert_entities(fragments, update=True)
    end = START + timedelta(days=DAYS)
    with Running(standin), Running(MintakaStandIn(live_broker.url)) as mintaka:
        for name in ("a", "q", "m"):
            (tmp_path / name).mkdir()
        files = {"ngsi-ld": _community_file(tmp_path / "a", {"url": live_broker.url, "tenant": TENANT}),
                 "quantumleap": _community_file(tmp_path / "q", {"url": "http://127.0.0.1:9", "tenant": TENANT,
                                                                 "history": "quantumleap",
                                                                 "quantumleap_url": standin.url}),
                 "mintaka": _community_file(tmp_path / "m", {"url": "http://127.0.0.1:9", "tenant": TENANT,
                                                             "history": "mintaka", "history_url": mintaka.url})}
        energy = {name: load_energy(load_community(path), START, end) for name, path in files.items()}
        assert any(p.startswith("/v2/entities/") for p, _, _ in standin.requests)
        assert mintaka.requests and all(m == "GET" and p.startswith("/temporal/entities")
                                        for m, p in mintaka.requests)
        a = energy["ngsi-ld"].import_kwh[0]
        assert np.nansum(a) == pytest.approx(DAYS * (12 * 0.8 + 12 * 0.2))
        for other in ("quantumleap", "mintaka"):
            assert np.allclose(a, energy[other].import_kwh[0], equal_nan=True), other

        from community.commands import community

        reports = [CliRunner().invoke(community, ["report", "--month", "2026-10", "-c", str(path),
                                                  "--chart", str(tmp_path / "report.png")],
                                      env={"COLUMNS": "200"}) for path in files.values()]
    for result in reports:
        assert result.exit_code == 0, result.output
    assert reports[0].output == reports[1].output == reports[2].output


def test_quantumleap_history_needs_its_url(tmp_path):
    path = _community_file(tmp_path, {"url": "http://x", "tenant": TENANT, "history": "quantumleap"})
    with pytest.raises(CommunityFileError, match="quantumleap_url"):
        load_community(path)
