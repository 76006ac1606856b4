"""An embedded broker with the access layer (PEP) in front, each its own process on free ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from access._tokens import LocalIssuer

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(argv: list[str], url: str, probe: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"{argv[1]} exited with {proc.returncode}: {out[-2000:]}")
        try:
            httpx.get(url + probe, timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.terminate()
    pytest.fail(f"{argv[1]} did not answer within 20 s")


@dataclass
class Guarded:
    broker_url: str
    pep_url: str
    issuer: LocalIssuer
    data_dir: Path


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    data_dir = tmp_path_factory.mktemp("access")
    broker_port, pep_port = free_port(), free_port()
    broker_url, pep_url = f"http://127.0.0.1:{broker_port}", f"http://127.0.0.1:{pep_port}"
    broker = _start(["-m", "twin_service.broker", "--host", "127.0.0.1", "--port", str(broker_port),
                     "--data-dir", str(data_dir / "broker")], broker_url, "/version")
    issuer = LocalIssuer(data_dir)
    issuer.verifier()  # creates the key before the PEP reads the JWKS
    pep = _start(["-m", "access", "serve", "--upstream", broker_url, "--port", str(pep_port),
                  "--data-dir", str(data_dir)], pep_url, "/version")
    try:
        yield Guarded(broker_url, pep_url, issuer, data_dir)
    finally:
        for proc in (pep, broker):
            proc.terminate()
            proc.wait(timeout=10)
