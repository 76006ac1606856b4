"""Start iotagent-node-lib's own north API (tests/peers/iotagent/launch.js) for a test module.

The npm package is installed by `.ci/system-deps.sh` (`npm ci` in tests/peers/iotagent). Tests that need it skip
only when Node.js itself is absent; Node present without the package is a broken install and fails loudly.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PEER_DIR = Path(__file__).parent / "iotagent"
LIBRARY = PEER_DIR / "node_modules" / "iotagent-node-lib" / "package.json"
VERSION = "4.14.0"


@dataclass
class NodeAgent:
    """A running launch.js: the library's north API at `url`, the measure endpoint at `measure_url`."""

    url: str
    measure_url: str
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def node_or_skip() -> str:
    """The `node` executable; skips the test when Node.js is not installed at all."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (the FIWARE agent library needs it; .ci/system-deps.sh installs it)")
    if not LIBRARY.exists():
        pytest.fail(f"Node.js is installed but iotagent-node-lib is not: run `npm ci --prefix {PEER_DIR}` "
                    "(make test does it through .ci/system-deps.sh)")
    installed = json.loads(LIBRARY.read_text())["version"]
    assert installed == VERSION, f"iotagent-node-lib {installed} installed, tests are written for {VERSION}"
    return node


def start_node_agent(broker_url: str, context: str | None, timeout_s: float = 30.0) -> NodeAgent:
    """Launch the library against `broker_url`; `context` is IOTA_JSON_LD_CONTEXT (None: unset)."""
    node = node_or_skip()
    args = [node, str(PEER_DIR / "launch.js"), "--broker", broker_url, "--log-level", "FATAL"]
    if context is not None:
        args += ["--context", context]
    env = {key: value for key, value in os.environ.items() if not key.startswith("IOTA_")}
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if line.startswith("READY "):
                ports = json.loads(line.removeprefix("READY "))
                return NodeAgent(f"http://127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['measurePort']}",
                                 process)
            if not line:
                break
        if process.poll() is not None:
            break
    stderr = process.stderr.read() if process.poll() is not None and process.stderr else ""
    NodeAgent("", "", process).stop()
    raise RuntimeError(f"launch.js did not start: {stderr[-2000:]}")
