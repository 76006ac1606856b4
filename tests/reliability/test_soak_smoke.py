"""The soak's smoke run through the whole embedded stack: kill -9 of the context broker and of the IoT Agent and a
restart of Mosquitto while 10 meters publish at QoS 1, then every published reading is looked up in the history.

Nothing may be lost and nothing stored twice (QoS 1 redelivery at each of these faults is what used to duplicate
readings); every notification arrives and every SQLite file passes integrity_check. ~30 s: the stack's start and
the faults' recoveries, not the load, take the time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from twin_service.mqtt_server import find_mosquitto

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(find_mosquitto() is None,
                    reason="Mosquitto (Debian package) not installed: make test installs it (.ci/system-deps.sh)")
def test_smoke_soak_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak_smoke.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--smoke", "--out", str(out)],
                         check=False, cwd=REPO, capture_output=True, text=True, timeout=220)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [f["fault"] for f in result["faults_injected"]] == ["kill -9 broker", "kill -9 agent",
                                                               "restart mqtt broker"]
    assert result["published"] > 50
    assert result["lost"] == 0, result["lost_by_second"]
    assert result["duplicated"] == 0, result["duplicated_by_second"]
    assert result["landed"] == result["published"]
    assert result["notifications_lost"] == 0, result["notifications_lost_by_second"]
    assert result["faults_not_recovered"] == 0, result["faults_injected"]
    assert all(f["broker_db_quick_check"] == "ok" for f in result["faults_injected"])
    assert set(result["integrity_check"].values()) == {"ok"}, result["integrity_check"]
    assert result["restarts"]["broker"] >= 1 and result["restarts"]["agent"] >= 1
