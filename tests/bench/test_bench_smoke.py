"""Smoke run of every benchmark in bench/ with --quick: each must exit 0 and write its JSON under bench/results/.

Nothing asserts a figure (the figures are in docs/performance.md); this only keeps `make bench` from rotting.
The scripts start their own services on free ports and write separate result files, and most of their time is
service start-up, so they are launched together and each test waits for its own: the smoke run costs about as
long as its slowest script instead of the sum.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "run_all.py" and not p.name.startswith("_"))


@dataclass
class Run:
    process: subprocess.Popen
    log_path: Path
    started: float


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    logs = tmp_path_factory.mktemp("bench-logs")
    started: dict[str, Run] = {}
    for script in SCRIPTS:
        log_path = logs / f"{script}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, str(BENCH / script), "--quick"], cwd=BENCH.parent,
                                       stdout=log, stderr=subprocess.STDOUT)
        started[script] = Run(process, log_path, time.time())
    yield started
    for run in started.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def test_every_benchmark_is_covered() -> None:
    assert len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_quick_and_writes_json(script: str, runs: dict[str, Run]) -> None:
    run = runs[script]
    result = BENCH / "results" / f"{Path(script).stem}.json"
    try:
        code = run.process.wait(timeout=240)
    except subprocess.TimeoutExpired:
        run.process.kill()
        pytest.fail(f"{script} --quick did not finish in 240 s:\n{run.log_path.read_text(errors='replace')[-3000:]}")
    output = run.log_path.read_text(errors="replace")
    assert code == 0, f"{script} failed:\n{output[-4000:]}"
    assert result.exists() and result.stat().st_mtime >= run.started - 1, f"{script} wrote no {result.name}"
    json.loads(result.read_text())
