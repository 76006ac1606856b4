"""docker-compose.fiware.yml: valid Compose, and consistent with every config that names its hosts, ports, variables."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from kernel import ports

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.fiware.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = Path(__file__).with_name("compose-spec.json")
_VAR = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:[:?-][^}]*)?\}")

# Which port constant each service publishes (container side).
PUBLISHED = {
    "orion": {ports.BROKER_PORT},
    "mosquitto": {ports.MQTT_PORT, ports.MQTT_TLS_PORT},
    "iot-agent": {ports.AGENT_NORTH_PORT, ports.AGENT_HTTP_SOUTH_PORT},
    "crate": {ports.CRATE_HTTP_PORT},
    "quantumleap": {ports.QUANTUMLEAP_PORT},
    "grafana": {ports.GRAFANA_PORT},
    "quality": {ports.QUALITY_PORT},
    "web": {ports.WEB_PORT},
    "mintaka": {ports.MINTAKA_PORT},
}
# Ports each service listens on inside the network (what other containers use).
LISTENS = {
    **PUBLISHED,
    "crate": {ports.CRATE_HTTP_PORT, ports.CRATE_PG_PORT},
    "mongo-db": {27017},
    "redis": {6379},
    "timescale": {ports.TIMESCALE_PORT},
}
# Variables Docker Compose itself reads from .env (not interpolated in the file).
COMPOSE_OWN = {"COMPOSE_PROFILES"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_validates_against_the_compose_specification(compose) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_file(compose) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = {
        **compose,
        "services": {
            **compose["services"],
            "orion": {**compose["services"]["orion"], "healthcheck": {"test": 1}},
        },
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_every_service_is_pinned_checked_and_restarted(compose) -> None:
    services = compose["services"]
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    awaited = {
        dep
        for s in services.values()
        for dep, cond in (s.get("depends_on") or {}).items()
        if isinstance(cond, dict) and cond["condition"] == "service_completed_successfully"
    }
    assert one_shots == awaited == {"crate-init"}
    for name, service in services.items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: pin the image version ({image})"
        if "build" not in service:
            assert re.search(r"\d", tag), f"{name}: {image} is not a pinned version"
        if name in one_shots:
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_named_volumes_are_declared(compose) -> None:
    declared = set(compose["volumes"])
    used = {
        v.split(":", 1)[0]
        for s in compose["services"].values()
        for v in s.get("volumes", [])
        if not v.startswith((".", "/", "$"))
    }
    assert used == declared


def test_bind_mounts_and_env_files_exist(compose) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        for env_file in service.get("env_file", []):
            assert (ROOT / env_file).is_file(), f"{name}: env_file {env_file} missing"


def test_every_variable_is_in_env_example_and_back() -> None:
    used = set(_VAR.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    documented = _env_example()
    assert COMPOSE_OWN <= set(documented)
    used |= COMPOSE_OWN
    assert used == set(documented), (
        f"only in compose: {used - set(documented)}; only in .env.example: {set(documented) - used}"
    )
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            block = lines[:index][::-1]
            comment = next((b for b in block if b and not b.startswith(tuple(documented))), "")
            assert comment.startswith("#"), f"{line.split('=')[0]} has no comment explaining it"


def test_no_secret_in_the_compose_file(compose) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "TOKEN")):
                assert str(value).startswith("${") and ":?" in str(value), f"{name}.{key} must come from .env"


def test_published_ports_follow_the_port_table(compose) -> None:
    for name, expected in PUBLISHED.items():
        published = {int(p.rsplit(":", 1)[1]) for p in compose["services"][name].get("ports", [])}
        assert published == expected, name
    hosts = {int(p.split(":")[-2]) for s in compose["services"].values() for p in s.get("ports", [])}
    # Grafana reaches CrateDB, Orion-LD and Mintaka reach TimescaleDB inside the network; neither is published
    internal_only = {ports.CRATE_PG_PORT, ports.TIMESCALE_PORT}
    assert (
        ports.PRODUCTION.keys() >= ports.ALL.keys()
        and hosts == set(ports.PRODUCTION.values()) - internal_only
    )


def _assert_endpoint(compose, host: str, port: int, where: str) -> None:
    assert host in compose["services"], f"{where}: host {host!r} is not a service"
    assert port in LISTENS.get(host, set()), f"{where}: {host} does not listen on {port}"


def test_iot_agent_config_hosts_exist(compose) -> None:
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "iot_agent_config" / "iotagent.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    _assert_endpoint(compose, env["IOTA_CB_HOST"], int(env["IOTA_CB_PORT"]), "IOTA_CB_*")
    _assert_endpoint(compose, env["IOTA_MONGO_HOST"], int(env["IOTA_MONGO_PORT"]), "IOTA_MONGO_*")
    _assert_endpoint(compose, env["IOTA_MQTT_HOST"], int(env["IOTA_MQTT_PORT"]), "IOTA_MQTT_*")
    provider = urlsplit(env["IOTA_PROVIDER_URL"])
    _assert_endpoint(compose, provider.hostname, provider.port, "IOTA_PROVIDER_URL")
    assert provider.hostname == "iot-agent" and int(env["IOTA_NORTH_PORT"]) == ports.AGENT_NORTH_PORT
    assert int(env["IOTA_HTTP_PORT"]) == ports.AGENT_HTTP_SOUTH_PORT


def test_service_settings_name_real_hosts(compose) -> None:
    services = compose["services"]
    ql = services["quantumleap"]["environment"]
    _assert_endpoint(compose, ql["CRATE_HOST"], int(ql["CRATE_PORT"]), "quantumleap CRATE_*")
    _assert_endpoint(compose, ql["REDIS_HOST"], int(ql["REDIS_PORT"]), "quantumleap REDIS_*")
    assert "-dbhost mongo-db" in services["orion"]["command"]
    for name in ("quality", "web"):
        url = urlsplit(re.search(r"--broker-url (\S+)", services[name]["command"]).group(1))
        _assert_endpoint(compose, url.hostname, url.port, f"{name} --broker-url")
        assert f"localhost:{next(iter(PUBLISHED[name]))}/health" in " ".join(
            services[name]["healthcheck"]["test"]
        )
    history = urlsplit(re.search(r"--history-url (\S+)", services["web"]["command"]).group(1))
    _assert_endpoint(compose, history.hostname, history.port, "web --history-url")
    crate_url = urlsplit(services["crate-init"]["environment"]["CRATE_URL"])
    _assert_endpoint(compose, crate_url.hostname, crate_url.port, "crate-init CRATE_URL")


def test_grafana_provisioning_matches_the_stack(compose) -> None:
    datasources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/cratedb.yaml").read_text())
    [crate] = datasources["datasources"]
    host, port = crate["url"].split(":")
    _assert_endpoint(compose, host, int(port), "Grafana datasource")
    assert int(port) == ports.CRATE_PG_PORT and crate["uid"] == "cratedb"
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/energytwin.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    assert mounts[path] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_inventory_endpoints_exist(compose) -> None:
    inventories = sorted((ROOT / "provisioning" / "examples").glob("*.yaml"))
    if not inventories:
        pytest.skip("no provisioning/examples/*.yaml yet (issue 6 writes the example inventory)")
    default_tenant = _env_example()["TENANT"]
    for path in inventories:
        inventory = yaml.safe_load(path.read_text(encoding="utf-8"))
        text = path.read_text(encoding="utf-8")
        for url in re.findall(r"https?://[^\s\"']+", text):
            parts = urlsplit(url)
            if parts.hostname not in ("localhost", "127.0.0.1"):
                _assert_endpoint(compose, parts.hostname, parts.port or 80, f"{path.name} {url}")
        for variable in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text):
            assert variable in _env_example(), f"{path.name} uses ${variable}, not in .env.example"
        services = [t["service"] for t in inventory["tenants"]]
        assert default_tenant in services, (
            f".env.example TENANT={default_tenant} is not a tenant of {path.name}"
        )


def test_shell_scripts_parse(compose) -> None:
    script = compose["configs"]["mosquitto-start"]["content"].replace("$$", "$")
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    subprocess.run(["sh", "-n", str(ROOT / "grafana/quantumleap/init-crate.sh")], check=True)


def test_dockerfile_runs_the_energytwin_cli() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    assert '\nENTRYPOINT ["energytwin"]' in text


@pytest.mark.parametrize(
    ("service", "argv", "options"),
    [
        ("quality", ["quality", "run"], ["--broker-url", "--tenant", "--listen-host", "--listen-port"]),
        ("web", ["web"], ["--broker-url", "--history", "--history-url", "--host", "--port"]),
    ],
)
def test_project_service_commands_exist(compose, service, argv, options) -> None:
    from click.testing import CliRunner

    from energytwin.cli import cli

    if argv[0] not in cli.list_commands(None):  # type: ignore[arg-type]
        pytest.skip(f"`energytwin {argv[0]}` is not registered yet (another issue builds it)")
    result = CliRunner().invoke(cli, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output, f"energytwin {' '.join(argv)} has no {option}"
        assert option in compose["services"][service]["command"]


def test_the_temporal_profile_wires_troe_to_mintaka(compose) -> None:
    """Profile "temporal": Orion-LD's TRoE writes to TimescaleDB and Mintaka reads the same database, with the
    same account; both services come and go together, and Orion-LD only waits for TimescaleDB when it runs."""
    services = compose["services"]
    profiled = {name: s["profiles"] for name, s in services.items() if "profiles" in s}
    assert profiled == {"timescale": ["temporal"], "mintaka": ["temporal"]}
    orion, mintaka = services["orion"], services["mintaka"]
    assert orion["depends_on"]["timescale"] == {"condition": "service_healthy", "required": False}
    env = orion["environment"]
    assert env["ORIONLD_TROE"] == "${ORION_TROE:-FALSE}" and _env_example()["ORION_TROE"] == "FALSE"
    _assert_endpoint(compose, env["ORIONLD_TROE_HOST"], int(env["ORIONLD_TROE_PORT"]), "orion ORIONLD_TROE_*")
    source = mintaka["environment"]
    _assert_endpoint(compose, source["DATASOURCES_DEFAULT_HOST"], int(source["DATASOURCES_DEFAULT_PORT"]),
                     "mintaka DATASOURCES_DEFAULT_*")
    account = services["timescale"]["environment"]
    assert env["ORIONLD_TROE_USER"] == source["DATASOURCES_DEFAULT_USERNAME"] == account["POSTGRES_USER"]
    assert env["ORIONLD_TROE_PWD"].split(":?")[0] == source["DATASOURCES_DEFAULT_PASSWORD"].split(":?")[0] \
        == account["POSTGRES_PASSWORD"].split(":?")[0] == "${TIMESCALE_PASSWORD"
    # Orion-LD's database for the default tenant is "orion"; Mintaka must read that one
    assert source["DATASOURCES_DEFAULT_DATABASE"] == "orion"
    port = str(ports.MINTAKA_PORT)
    assert source["MICRONAUT_SERVER_PORT"] == source["ENDPOINTS_ALL_PORT"] == port
    probe = mintaka["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "bash", "-c"] and f"/dev/tcp/127.0.0.1/{port}" in probe[3]
    subprocess.run(["bash", "-n", "-c", probe[3]], check=True)
    assert all(p.startswith("${BIND_ADDRESS:-127.0.0.1}:") for p in mintaka["ports"])  # loopback by default
