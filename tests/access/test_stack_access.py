"""The embedded stack starts the access layer in front of its broker, and `access=False` starts none."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt

from access._tokens import LocalIssuer
from energytwin.stack import EmbeddedStack, StackConfig

from .conftest import free_port

ROOT = Path(__file__).parents[2]


AGENT_HEADERS = {"fiware-service": "energytwin", "fiware-servicepath": "/"}
GROUP = {"services": [{"apikey": "sitekey", "resource": "/iot/json", "entity_type": "ThreePhaseAcMeasurement"}]}


def _agent_through_its_pep(stack: EmbeddedStack) -> None:
    """The IoT Agent's north API through its PEP: provisioning for the operators (control centre, admin) only."""
    assert stack.agent_access_url and stack.agent_access_url != stack.config.agent_url
    issuer = LocalIssuer(stack.config.data_dir)
    tokens = {role: issuer.token(role, role, devices=["meter-001"] if role in ("member", "device") else None)
              for role in ("member", "device", "public", "manager", "control-centre", "admin")}
    with httpx.Client(base_url=stack.agent_access_url, headers=AGENT_HEADERS, timeout=10) as http:
        refused = http.get("/iot/devices")
        assert refused.status_code == 401 and refused.json()["title"] == "Unauthorized"
        for role in ("member", "device", "public", "manager"):
            auth = {"Authorization": f"Bearer {tokens[role]}"}
            for method, path, body in (("GET", "/iot/devices", None), ("GET", "/iot/services", None),
                                       ("POST", "/iot/services", GROUP), ("GET", "/metrics", None),
                                       ("DELETE", "/iot/devices/meter-001", None)):
                answer = http.request(method, path, json=body, headers=auth)
                assert answer.status_code == 403, (role, method, path, answer.text)
        ops = {"Authorization": f"Bearer {tokens['control-centre']}"}
        assert http.post("/iot/services", json=GROUP, headers=ops).status_code == 201
        device = {"devices": [{"device_id": "meter-009", "protocol": "IoTA-JSON", "transport": "MQTT",
                               "entity_type": "ThreePhaseAcMeasurement"}]}
        assert http.post("/iot/devices", json=device, headers=ops).status_code == 201
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        listed = http.get("/iot/devices", headers=admin)
        assert listed.status_code == 200 and "meter-009" in listed.text
        assert "energytwin_agent_devices" in http.get("/metrics", headers=admin).text  # the agent's, forwarded
        assert http.delete("/iot/devices/meter-009", headers=admin).status_code == 204
        # NGSI-LD paths are not the agent's: refused before the agent sees them, even for admin
        assert http.get("/ngsi-ld/v1/entities?type=ThreePhaseAcMeasurement", headers=admin).status_code == 403
        pep = http.get("/pep/metrics", headers=ops).text  # the PEP's own
        assert 'energytwin_pep_refused_total{reason="role",status="403"} 20' in pep
        assert 'energytwin_pep_refused_total{reason="not_forwarded",status="403"} 1' in pep


def test_the_stack_runs_with_access_control_on(tmp_path: Path):
    cfg = StackConfig(data_dir=tmp_path, mqtt_port=free_port(), broker_port=free_port(), agent_port=free_port(),
                      quality_port=0, web_port=0, access_port=0, mqtt_prefer="amqtt")
    with EmbeddedStack(cfg) as stack:
        assert [c.name for c in stack.children][:4] == ["broker", "access", "agent", "agent-access"]
        _agent_through_its_pep(stack)
        url = f"{stack.access_url}/ngsi-ld/v1/entities?type=ThreePhaseAcMeasurement"
        refused = httpx.get(url, timeout=10)
        assert refused.status_code == 401 and refused.json()["title"] == "Unauthorized"
        out = subprocess.run([sys.executable, "-m", "energytwin.cli", "users", "token", "--data-dir", str(tmp_path),
                              "--role", "member", "--member", "meter-001"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30, check=True).stdout
        token = out.strip().splitlines()[-1]
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        _services_through_the_pep(stack)
        _operator_cli_through_both_peps(stack, tmp_path)


INVENTORY = """tenants:
  - service: energytwin
    service_path: /
    groups:
      - apikey: invkey
        autoprovision: false
    sites:
      - id: plant-x
        meters:
          - device_id: meter-201
            nominal_voltage_v: 230
            nominal_frequency_hz: 50
            ct_primary_a: 63
"""


def _operator_cli_through_both_peps(stack: EmbeddedStack, tmp_path: Path) -> None:
    """`energytwin provision` through the agent's and the broker's PEPs, its token from the environment."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY, encoding="utf-8")
    token_file = tmp_path / "ops.jwt"
    token_file.write_text(LocalIssuer(stack.config.data_dir).token("ops", "control-centre") + "\n")
    argv = [sys.executable, "-m", "energytwin.cli", "provision", str(inventory), "--agent-url",
            str(stack.agent_access_url), "--broker-url", str(stack.access_url)]
    env = {**os.environ, "FIWARE_CLIENT_TOKEN_FILE": str(token_file),
           "FIWARE_CLIENT_TOKEN_ORIGINS": f"{stack.agent_access_url},{stack.access_url}"}
    done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = httpx.get(f"{stack.config.agent_url}/iot/devices", headers=AGENT_HEADERS, timeout=10).text
    assert "meter-201" in listed
    tokenless = {k: v for k, v in env.items() if not k.startswith("FIWARE_CLIENT_TOKEN")}
    refused = subprocess.run([*argv, "--dry-run"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env=tokenless)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr, refused.stdout + refused.stderr


def _services_through_the_pep(stack: EmbeddedStack) -> None:
    """The analytics and the page reach the broker through the PEP with their service accounts, never refused."""
    for name in ("quality", "web"):
        child = next(c for c in stack.children if c.name == name)
        assert child.argv[child.argv.index("--broker-url") + 1] == stack.access_url
        assert child.env and child.env["FIWARE_CLIENT_TOKEN_ORIGINS"] == stack.access_url
        token_file = Path(child.env["FIWARE_CLIENT_TOKEN_FILE"])
        assert token_file.name == f"{name}.jwt"
        claims = jwt.decode(token_file.read_text().strip(), options={"verify_signature": False})
        assert (claims["sub"], claims["role"]) == (f"service:{name}", {"quality": "analytics", "web": "page"}[name])
    subscriptions = f"{stack.config.broker_url}/ngsi-ld/v1/subscriptions"  # straight at the broker: what they made
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        made = {s["id"] for s in httpx.get(subscriptions, headers={"NGSILD-Tenant": stack.config.quality_tenant},
                                            timeout=10).json()}
        if {"urn:ngsi-ld:Subscription:energytwin-quality"} <= made and len(made) >= 2:
            break
        time.sleep(0.2)
    assert "urn:ngsi-ld:Subscription:energytwin-quality" in made and len(made) >= 2, made  # quality's, the page's
    ops = {"Authorization": f"Bearer {LocalIssuer(stack.config.data_dir).token('ops', 'control-centre')}"}
    pep = httpx.get(f"{stack.access_url}/pep/metrics", headers=ops, timeout=10).text
    # the one refusal is the test's own anonymous request: the services' requests were all let through
    assert 'energytwin_pep_refused_total{reason="token_missing",status="401"} 1' in pep, pep
    assert "reason=\"token_" not in pep.replace('reason="token_missing"', ""), pep


def test_access_control_off_is_said_loudly(tmp_path: Path, caplog):
    stack = EmbeddedStack(StackConfig(data_dir=tmp_path, access=False, quality_port=0, web_port=0))
    with caplog.at_level("WARNING"):
        names = [c.name for c in stack._children()]
    assert "access" not in names and "agent-access" not in names
    assert stack.access_url is None and stack.agent_access_url is None
    assert "ACCESS CONTROL IS OFF" in caplog.text
