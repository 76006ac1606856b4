"""Smoke run of every benchmark in bench/ with --quick: each must exit 0 and write its JSON under bench/results/.

No speed figure is asserted (those are in docs/performance.md): this keeps `make bench` from rotting, and checks
the soak's correctness figures (`FIGURES`: nothing lost or duplicated). The scripts start their own services on
free ports and write separate result files, so they run several at a time (`MAX_AT_ONCE`, the slowest first) and
each test waits for its own.

The run is CPU-bound (~3.5 CPU-minutes) while the rest of the suite leaves about one of this machine's two cores
idle (it waits on services, sockets and browsers), so tests/conftest.py starts the scripts in the background as soon
as collection ends (`start_in_background()`), at a lower CPU priority (`NICE`) so that they take the idle core
rather than the tests' time, and these tests run last. Run alone, the module starts them itself. All at once (24
scripts, each a stack of processes) overloaded a 2-core machine: services missed their start-up deadlines and
benches failed; hence `MAX_AT_ONCE`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name != "run_all.py" and not p.name.startswith("_"))
MAX_AT_ONCE = 4
NICE = 10  # CPU weight ~1/10 of the tests' when both want a core (Linux CFS), the whole idle core otherwise
SCRIPT_TIMEOUT_S = 240
# The slowest --quick runs start first, so the smoke run ends soon after the longest one.
FIRST = ("soak.py", "inverters.py", "soak_memory.py", "e2e_history.py", "fleet_cycle.py", "peer_baseline.py",
         "e2e_ingest.py")


def soak_figures_hold(result: dict) -> None:
    """`soak.py --quick` is the soak's make-test run (issue: "a shorter smoke version in make test"): all eight
    faults (kill -9 of broker, agent, analytics and page, Mosquitto restart, a subscriber away, SIGSTOP of the
    broker and of Mosquitto) while 20 meters publish at QoS 1; nothing may be lost or stored twice (QoS 1
    redelivery at these faults is what used to duplicate readings), every notification arrives, every SQLite file
    passes integrity_check. A kill -9 of the broker between a write's commit and the journaling of its
    notifications loses none either (the outbox, twin_service/broker/_outbox.py; before it a clean-clone run lost
    1 there, and bench/soak_kill.py showed 400 lost over 30 kills)."""
    assert len(result["faults_injected"]) == 8, [f["fault"] for f in result["faults_injected"]]
    assert result["published"] > 100
    assert result["lost"] == 0, result.get("lost_by_second")
    assert result["duplicated"] == 0, result.get("duplicated_by_second")
    assert result["landed"] == result["published"]
    assert result["notifications_lost"] == 0, result.get("notifications_lost_by_second")
    assert result["faults_not_recovered"] == 0, result["faults_injected"]
    assert all(f["broker_db_quick_check"] == "ok" for f in result["faults_injected"])
    assert set(result["integrity_check"].values()) == {"ok"}, result["integrity_check"]


# What a script's --quick result must also show, beyond "it ran and wrote its JSON".
FIGURES = {"soak.py": soak_figures_hold}


@dataclass
class Run:
    script: str
    log_path: Path
    done: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen | None = None
    started: float = 0.0
    code: int | None = None  # None when it was killed at SCRIPT_TIMEOUT_S


def _run_one(run: Run, slots: threading.Semaphore) -> None:
    try:
        with run.log_path.open("wb") as log:
            run.started = time.time()
            run.process = subprocess.Popen(["nice", "-n", str(NICE), sys.executable, str(BENCH / run.script), "--quick"],
                                           cwd=BENCH.parent,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                run.code = run.process.wait(timeout=SCRIPT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _stop(run.process)
    finally:
        run.done.set()
        slots.release()


def _stop(process: subprocess.Popen) -> None:
    """Stop a benchmark and the services it started (its process group): SIGTERM lets it stop its stack, then
    SIGKILL. Killing the script alone left its broker, agent and Mosquitto running after pytest had exited."""
    for sig, grace_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _schedule(runs: dict[str, Run], stop: threading.Event) -> None:
    slots = threading.Semaphore(MAX_AT_ONCE)
    for script in sorted(runs, key=lambda s: (FIRST.index(s) if s in FIRST else len(FIRST), s)):
        slots.acquire()
        if stop.is_set():
            runs[script].done.set()
            continue
        threading.Thread(target=_run_one, args=(runs[script], slots), daemon=True).start()


_BACKGROUND: tuple[dict[str, Run], threading.Event] | None = None


def start_in_background(scripts: Iterable[str] = SCRIPTS) -> dict[str, Run]:
    """Start the scheduler once, for the scripts whose tests were selected (from tests/conftest.py after
    collection, or from the fixture, with every script, when this module runs alone)."""
    global _BACKGROUND
    if _BACKGROUND is None:
        logs = Path(tempfile.mkdtemp(prefix="energytwin-bench-logs-"))
        started = {script: Run(script, logs / f"{script}.log") for script in scripts}
        stop = threading.Event()
        threading.Thread(target=_schedule, args=(started, stop), daemon=True).start()
        _BACKGROUND = (started, stop)
    return _BACKGROUND[0]


def stop_background() -> None:
    """Stop what still runs (the session ended early, or the module's tests are done)."""
    if _BACKGROUND is None:
        return
    started, stop = _BACKGROUND
    stop.set()
    for run in started.values():
        if run.process is not None and run.process.poll() is None:
            _stop(run.process)
    for run in started.values():  # a failing test has already shown the end of its log
        run.log_path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        next(iter(started.values())).log_path.parent.rmdir()


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    yield start_in_background()
    stop_background()


def test_every_benchmark_is_covered() -> None:
    assert len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_quick_and_writes_json(script: str, runs: dict[str, Run]) -> None:
    run = runs[script]
    result = BENCH / "results" / f"{Path(script).stem}.json"
    # its turn comes after at most len(SCRIPTS) // MAX_AT_ONCE rounds of others, each bounded by SCRIPT_TIMEOUT_S
    assert run.done.wait(timeout=SCRIPT_TIMEOUT_S * (len(SCRIPTS) // MAX_AT_ONCE + 2)), f"{script} never ran"
    output = run.log_path.read_text(errors="replace") if run.log_path.exists() else ""
    assert run.code is not None, f"{script} --quick did not finish in {SCRIPT_TIMEOUT_S} s:\n{output[-3000:]}"
    assert run.code == 0, f"{script} failed:\n{output[-4000:]}"
    assert result.exists() and result.stat().st_mtime >= run.started - 1, f"{script} wrote no {result.name}"
    figures = json.loads(result.read_text())
    if script in FIGURES:
        FIGURES[script](figures)
