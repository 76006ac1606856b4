"""The embedded stack starts the access layer in front of its broker, and `access=False` starts none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from energytwin.stack import EmbeddedStack, StackConfig

from .conftest import free_port

ROOT = Path(__file__).parents[2]


def test_the_stack_runs_with_access_control_on(tmp_path: Path):
    cfg = StackConfig(data_dir=tmp_path, mqtt_port=free_port(), broker_port=free_port(), agent_port=free_port(),
                      quality_port=0, web_port=0, access_port=0, mqtt_prefer="amqtt")
    with EmbeddedStack(cfg) as stack:
        assert stack.access_url and [c.name for c in stack.children][:2] == ["broker", "access"]
        url = f"{stack.access_url}/ngsi-ld/v1/entities?type=ThreePhaseAcMeasurement"
        refused = httpx.get(url, timeout=10)
        assert refused.status_code == 401 and refused.json()["title"] == "Unauthorized"
        out = subprocess.run([sys.executable, "-m", "energytwin.cli", "users", "token", "--data-dir", str(tmp_path),
                              "--role", "member", "--member", "meter-001"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30, check=True).stdout
        token = out.strip().splitlines()[-1]
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text


def test_access_control_off_is_said_loudly(tmp_path: Path, caplog):
    stack = EmbeddedStack(StackConfig(data_dir=tmp_path, access=False, quality_port=0, web_port=0))
    with caplog.at_level("WARNING"):
        names = [c.name for c in stack._children()]
    assert "access" not in names and stack.access_url is None
    assert "ACCESS CONTROL IS OFF" in caplog.text
