"""The distributor's hourly file into the twin's history (the real embedded broker): a member without a meter is
accounted from it, its hours equal to the CSV route, a later month continues the counter, an overlap is refused,
and the community report lists the member."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from community.config import load_community
from community.data import load_energy
from community.distributor_history import HistoryOverlap, estimated_hours, write_to_twin
from community.distributor_import import TZ, read_distributor_csv
from datamodels.measures import measurement_id
from fiware_client import NgsiLdClient, history_reader
from tests.broker.conftest import live_broker  # noqa: F401  (fixture)

EXAMPLES = Path(__file__).parents[2] / "community" / "examples"
TENANT = "energy"
START = datetime(2026, 9, 30, 22, 0, tzinfo=UTC)  # 1 October 00:00 in Madrid
DAYS = 3


def _distributor_csv(path: Path, cups: str, member_csv: Path, first_day: int, days: int) -> None:
    """The member's hourly kWh as the distributor publishes them (CUPS;Fecha;Hora;AE_kWh;REAL/ESTIMADO)."""
    lines = ["CUPS;Fecha;Hora;AE_kWh;REAL/ESTIMADO"]
    for row in member_csv.read_text().splitlines()[1:]:
        start, kwh = row.split(",")[:2]
        local = datetime.fromisoformat(start).astimezone(TZ)
        if local.month == 10 and first_day <= local.day < first_day + days:
            flag = "E" if local.hour == 3 else "R"
            lines.append(f"{cups};{local:%d/%m/%Y};{local.hour + 1};{kwh.replace('.', ',')};{flag}")
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")


def test_a_member_without_a_meter_is_accounted_from_the_twin(live_broker, tmp_path):  # noqa: F811
    for item in EXAMPLES.iterdir():
        if item.suffix == ".csv":
            shutil.copy(item, tmp_path / item.name)
    data = yaml.safe_load((EXAMPLES / "community.yaml").read_text())
    bernat = next(m for m in data["members"] if m["id"] == "bernat")
    cups = bernat["cups"]
    _distributor_csv(tmp_path / "oct-1.csv", cups, tmp_path / bernat["csv"], 1, 1)
    _distributor_csv(tmp_path / "oct-2-3.csv", cups, tmp_path / bernat["csv"], 2, 2)

    with NgsiLdClient(live_broker.url, TENANT) as client:
        first = write_to_twin(read_distributor_csv(tmp_path / "oct-1.csv"), client, source="oct-1.csv")
        later = write_to_twin(read_distributor_csv(tmp_path / "oct-2-3.csv"), client, source="oct-2-3.csv")
        assert (first[0].hours, later[0].hours) == (24, 48) and first[0].estimated_hours == 1
        assert later[0].continued_from_kwh == pytest.approx(
            sum(read_distributor_csv(tmp_path / "oct-1.csv").hours[cups][h][0]
                for h in read_distributor_csv(tmp_path / "oct-1.csv").hours[cups]))
        with pytest.raises(HistoryOverlap, match="already has its hours"):
            write_to_twin(read_distributor_csv(tmp_path / "oct-1.csv"), client)
        entity = client.get_entity(measurement_id(cups))
        assert entity["totalActiveEnergyImport"]["unitCode"] == "KWH"
        assert entity["readingMethod"]["value"] == "measured"  # the last hour's flag (R)
    with history_reader("ngsi-ld", broker_url=live_broker.url, tenant=TENANT) as reader:
        estimated = estimated_hours(reader, cups, START, START + timedelta(days=DAYS))
    assert [h.astimezone(TZ).hour for h in estimated] == [3, 3, 3]  # the E rows, one a day, from the twin

    from_csv = load_energy(load_community(_write(tmp_path, data, "csv.yaml")), START,
                           START + timedelta(days=DAYS))
    bernat.pop("csv")
    bernat["distributor"] = True
    data["twin"] = {"url": live_broker.url, "tenant": TENANT, "max_sample_gap_min": 15}
    twin_file = _write(tmp_path, data, "twin.yaml")
    from_twin = load_energy(load_community(twin_file), START, START + timedelta(days=DAYS))
    index = [m["id"] for m in data["members"]].index("bernat")
    got, want = from_twin.import_kwh[index], from_csv.import_kwh[index]
    assert not np.isnan(got).any(), "an hour of the distributor's data is missing in the accounts"
    assert np.allclose(got, want), (got[:5], want[:5])
    assert not [g for g in from_twin.gaps if "bernat" in str(g) or cups in str(g)]

    from community.commands import community

    result = CliRunner().invoke(community, ["report", "--month", "2026-10", "-c", str(twin_file),
                                            "--chart", str(tmp_path / "report.png")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "bernat" in result.output
    assert "bernat: 3 of 745 h estimated by the distributor" in result.output  # October: 745 h (DST), result.output[-1500:]


def _write(tmp_path: Path, data: dict, name: str) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_cli_writes_to_the_twin_and_refuses_an_overlap(live_broker, tmp_path):  # noqa: F811
    from community.commands import community

    cups = "ES0031405000000102RK"
    path = tmp_path / "curve.csv"
    path.write_text(f"CUPS;Fecha;Hora;AE_kWh;AS_kWh\n{cups};01/10/2026;1;0,5;0\n{cups};01/10/2026;2;0,25;0,1\n",
                    encoding="utf-8")
    args = ["import-distributor", str(path), "--to-twin", live_broker.url, "--tenant", TENANT]
    ok = CliRunner().invoke(community, args)
    assert ok.exit_code == 0, ok.output
    assert f"urn:ngsi-ld:ThreePhaseAcMeasurement:{cups}: 2 hours" in ok.output
    with NgsiLdClient(live_broker.url, TENANT) as client:
        entity = client.get_entity(measurement_id(cups))
    assert entity["totalActiveEnergyImport"]["value"] == pytest.approx(0.75)
    assert entity["totalActiveEnergyExport"]["value"] == pytest.approx(0.1)
    again = CliRunner().invoke(community, args)
    assert again.exit_code != 0 and "already has its hours" in again.output
    neither = CliRunner().invoke(community, ["import-distributor", str(path)])
    assert neither.exit_code != 0 and "--to-twin" in neither.output
