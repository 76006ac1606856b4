"""`energytwin up` / `demo` stopped as an operator stops them: SIGTERM, Ctrl-C (SIGINT) or a closed terminal
(SIGHUP), at several moments of start-up and once running. Afterwards no process the command started may be left.

Every process the command starts (and anything those start) inherits a marker in its environment, so the check
finds survivors even after they were re-parented to init. Ports are ephemeral and data dirs temporary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from energytwin.stack import EmbeddedStack, StackConfig, port_holder
from twin_service.mqtt_server import free_port

REPO = Path(__file__).resolve().parents[2]
MARK = "ENERGYTWIN_TEST_MARK"

pytestmark = pytest.mark.slow


def _marked(marker: str) -> list[psutil.Process]:
    """Every live process whose environment carries the marker."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARK) == marker:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _kill_all(marker: str) -> None:
    for proc in _marked(marker):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except psutil.Error:
            pass


class Run:
    """One `energytwin <command>` in a subprocess, with its marker and output file."""

    def __init__(self, tmp_path: Path, command: str, *extra: str, data_dir: Path | None = None,
                 broker_port: int | None = None) -> None:
        self.marker = uuid.uuid4().hex
        self.data_dir = data_dir or tmp_path / f"var-{self.marker[:6]}"
        self.broker_port = broker_port or free_port()
        self.output = tmp_path / f"out-{self.marker[:6]}.txt"
        argv = [sys.executable, "-m", "energytwin.cli", command, "--data-dir", str(self.data_dir),
                "--mqtt-port", str(free_port()), "--broker-port", str(self.broker_port),
                "--agent-port", str(free_port()), "--quality-port", "0", "--web-port", "0", *extra]
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, MARK: self.marker, "COLUMNS": "200"})

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            assert self.proc.poll() is None, f"exited early with {self.proc.returncode}:\n{self.text()}"
            time.sleep(0.01)
        raise AssertionError(f"condition not reached in {timeout_s} s:\n{self.text()}")

    def survivors_after_exit(self, timeout_s: float = 40.0) -> list[psutil.Process]:
        self.proc.wait(timeout=timeout_s)
        deadline = time.monotonic() + 5.0
        left = _marked(self.marker)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = _marked(self.marker)
        return left


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    started: list[Run] = []

    def start(command: str, *extra: str, **kwargs: object) -> Run:
        run = Run(tmp_path, command, *extra, **kwargs)  # type: ignore[arg-type]
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
        _kill_all(run.marker)


def _moment(run: Run, moment: str) -> None:
    """Block until the command reaches the moment of start-up named."""
    if moment == "interpreter start":  # Python still importing; nothing spawned yet
        time.sleep(0.2)
    elif moment == "first child spawned":
        run.wait_for(lambda: len(run.children()) >= 1)
    elif moment == "half the services spawned":
        run.wait_for(lambda: len(run.children()) >= 3)
    elif moment == "running":
        run.wait_for(lambda: "Ctrl-C to stop." in run.text())
    else:
        raise ValueError(moment)


@pytest.mark.parametrize(("sig", "moment"), [
    (signal.SIGTERM, "interpreter start"),
    (signal.SIGTERM, "first child spawned"),
    (signal.SIGTERM, "half the services spawned"),
    (signal.SIGTERM, "running"),
    (signal.SIGINT, "first child spawned"),
    (signal.SIGINT, "half the services spawned"),
    (signal.SIGHUP, "first child spawned"),
    (signal.SIGHUP, "half the services spawned"),
], ids=lambda v: v.name if isinstance(v, signal.Signals) else v.replace(" ", "-"))
def test_up_stopped_by_a_signal_leaves_no_process(runs: Callable[..., Run], sig: signal.Signals,
                                                  moment: str) -> None:
    run = runs("up")
    _moment(run, moment)
    run.proc.send_signal(sig)
    left = run.survivors_after_exit()
    assert not left, f"{sig.name} at {moment!r} left {[p.cmdline() for p in left]}:\n{run.text()}"
    if moment != "interpreter start":
        assert run.proc.returncode == 0, run.text()
        assert "Traceback" not in run.text()
        assert not (run.data_dir / "stack.json").exists(), "the lock must go with the stack"


def test_demo_stopped_while_its_meters_start_leaves_no_process(runs: Callable[..., Run]) -> None:
    """SIGTERM while the demo provisions and boots its firmware (the stack's five services already run)."""
    run = runs("demo", "--duration-s", "60")
    run.wait_for(lambda: len(run.children()) >= 5)
    run.proc.send_signal(signal.SIGTERM)
    left = run.survivors_after_exit()
    assert not left, f"left {[p.cmdline() for p in left]}:\n{run.text()}"
    assert run.proc.returncode == 0, run.text()


def test_kill_9_of_the_stack_takes_its_services_along_and_the_next_start_works(runs: Callable[..., Run]) -> None:
    """SIGKILL reaches no handler: the kernel stops the services (PR_SET_PDEATHSIG via the child guard), and
    the lock file left behind names only dead processes, so the next start on the same data dir goes ahead."""
    first = runs("up")
    _moment(first, "half the services spawned")
    first.proc.kill()
    first.proc.wait()
    deadline = time.monotonic() + 15
    while _marked(first.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _marked(first.marker), [p.cmdline() for p in _marked(first.marker)]
    assert (first.data_dir / "stack.json").exists()
    EmbeddedStack(StackConfig(data_dir=first.data_dir))._check_not_running()  # the stale lock is no obstacle
    assert not (first.data_dir / "stack.json").exists()


def test_second_start_refuses_a_port_or_data_dir_held_by_a_left_over_service(runs: Callable[..., Run],
                                                                             tmp_path: Path) -> None:
    """A service left over (here a broker started by hand, as one outliving a stack on a system without the
    guard would be) keeps its port: a start on its data dir's lock, or on its port with a fresh data dir, is
    refused with a message naming the process, and says when the data dir it serves no longer exists."""
    marker = uuid.uuid4().hex
    port, old_dir = free_port(), tmp_path / "old-var"
    orphan = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(port), "--data-dir",
                               str(old_dir)], cwd=REPO, env={**os.environ, MARK: marker},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while port_holder("127.0.0.1", port) is None:
            assert time.monotonic() < deadline and orphan.poll() is None, "the broker did not start"
            time.sleep(0.05)
        dead = subprocess.run([sys.executable, "-c", "pass"], check=True)  # a pid that no longer runs
        lock_dir = tmp_path / "locked-var"
        lock_dir.mkdir()
        (lock_dir / "stack.json").write_text(json.dumps({
            "pid": 999_999_999, "children": {"broker": {"pid": orphan.pid,
                                                         "create_time": psutil.Process(orphan.pid).create_time()}}}))
        del dead
        locked = runs("up", data_dir=lock_dir)
        assert locked.proc.wait(timeout=30) != 0
        text = " ".join(locked.text().split())
        assert "stale energytwin stack" in text and f"kill {orphan.pid}" in text, text

        shutil.rmtree(old_dir)
        fresh = runs("up", broker_port=port)
        assert fresh.proc.wait(timeout=30) != 0
        text = " ".join(fresh.text().split())
        assert f"port {port} (NGSI-LD broker)" in text and f"kill {orphan.pid}" in text, text
        assert "no longer exists" in text, text
        assert not _marked(fresh.marker) and not _marked(locked.marker), "a refused start must spawn nothing"
    finally:
        orphan.kill()
        orphan.wait()
        _kill_all(marker)
