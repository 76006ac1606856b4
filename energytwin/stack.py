"""The embedded stack: MQTT broker, NGSI-LD broker, IoT Agent, power-quality analytics and the live twin page as one
process tree.

Each service is its own child process on the production port (the ports in kernel/ports.py), so a meter, a
provisioning script or a FIWARE app cannot tell it from the Docker stack. A supervisor thread restarts a child
that dies (with backoff) and logs why; `stop()` ends them in reverse start order. State lives under `data_dir`,
so starting again continues from the same data.

Process hygiene, because an operator stops this with SIGTERM, Ctrl-C or by closing the terminal at any moment:
- every child is recorded before anything can interrupt the start (`Shutdown.deferred`), and each runs in its own
  process group, which `stop()` terminates (then kills) as a whole, grandchildren included;
- `<data_dir>/stack.json` names the running stack (its pid and each child's); a second start on the same data
  dir, or on a port that a left-over service still holds, refuses with a message naming the process to stop.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import psutil

from energytwin.shutdown import Shutdown
from kernel import ports
from twin_service.mqtt_server import MqttServer, free_port, spawn_mqtt_server, wait_for_port

log = logging.getLogger(__name__)

LOCK_NAME = "stack.json"


class StackBusy(RuntimeError):
    """The stack cannot start: its data dir or one of its ports belongs to another (possibly stale) process."""


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and listens. Defaults are the production ports on loopback."""

    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    mqtt_port: int = ports.MQTT_PORT
    broker_port: int = ports.BROKER_PORT
    agent_port: int = ports.AGENT_NORTH_PORT
    mqtt_prefer: str = "auto"  # "auto" (Mosquitto if installed), "mosquitto" or "amqtt"
    quality_port: int = ports.QUALITY_PORT  # power-quality analytics; 0: a free port
    quality_tenant: str = "energytwin"  # the tenant the analytics watch (the demo site's)
    web_port: int = ports.WEB_PORT  # the live twin page (twin_service.web); 0: a free port
    access: bool = True  # the access layer (access/, a PEP) in front of the broker; False only for development
    access_port: int = 0  # where the PEP listens (`energytwin up`: 1027); 0: a free port
    agent_access_port: int = 0  # a second PEP, in front of the IoT Agent's north API; 0: a free port
    # Per-device MQTT credentials (access/_mqtt_auth.py): Mosquitto/amqtt refuse anonymous clients, each device
    # logs in as itself and publishes only its own topics. `energytwin up`/`demo` turn it on with access control.
    mqtt_auth: bool = False
    # The community file whose accounts the page's views show, passed to the page as --community (so a page the
    # supervisor restarts keeps it); None: the page reads ENERGYTWIN_COMMUNITY if set. `community_month`: YYYY-MM.
    community: Path | None = None
    community_month: str | None = None

    @property
    def broker_url(self) -> str:
        return f"http://{self.host}:{self.broker_port}"

    @property
    def agent_url(self) -> str:
        return f"http://{self.host}:{self.agent_port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / LOCK_NAME


def guard(stay: bool = False) -> list[str]:
    """The launcher every child starts through (energytwin/_child_guard.py): on Linux it asks the kernel to
    SIGTERM the child when this process dies, even by SIGKILL, then execs the service in its place (`stay`:
    remains its parent, for Mosquitto, whose change of user clears that request)."""
    return [sys.executable, "-m", "energytwin._child_guard", *(["--stay"] if stay else []), str(os.getpid()), "--"]


def _stop_group(process: subprocess.Popen, name: str, timeout_s: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after timeout_s, and reap the child."""
    pgid = process.pid  # each child leads its own session, so its group id is its pid
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", name, timeout_s)
    # Whatever is left of the group (the leader after a timeout, or a grandchild it spawned) is killed.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)


@dataclass
class _Child:
    """One supervised Python service process."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None  # extra environment (the agent's MQTT login)
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0

    def spawn(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [*guard(), *self.argv], stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        self.started_at = time.monotonic()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is not None:
            _stop_group(self.process, self.name, timeout_s)


def _process_summary(pid: int) -> str:
    """`pid 123 (python -m twin_service.broker --port 1026 …)`, or just the pid when it cannot be read."""
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):
        return f"pid {pid}"
    if len(cmdline) > 200:
        cmdline = cmdline[:197] + "..."
    return f"pid {pid} ({cmdline})"


def _alive(pid: int, create_time: float | None) -> bool:
    """The process exists and is the one recorded (not a later process that reused the pid)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 1.0
    except (psutil.Error, OSError):
        return False


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def port_holder(host: str, port: int) -> str | None:
    """Who listens on host:port: a description naming the process, "" when it cannot be named, None if free."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    try:
        with socket.create_connection((probe_host, port), timeout=0.5):
            pass
    except OSError:
        return None
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return ""
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return _process_summary(conn.pid)
    return ""


def _stale_hint(description: str) -> str:
    """Say why a port holder looks like a left-over energytwin service (and if its data dir is gone)."""
    if not any(name in description for name in ("twin_service.", "energytwin.page_", "mosquitto", "amqtt")):
        return ""
    words = description.rstrip(")").split()
    hint = " It looks like a service left over from an earlier energytwin stack"
    if "--data-dir" in words and words.index("--data-dir") + 1 < len(words):
        data_dir = Path(words[words.index("--data-dir") + 1])
        if not data_dir.exists():
            hint += f", serving the data dir {data_dir}, which no longer exists"
    return hint + "."


@dataclass
class EmbeddedStack:
    """Start, supervise and stop the embedded services."""

    config: StackConfig
    shutdown: Shutdown = field(default_factory=Shutdown)
    mqtt: MqttServer | None = None
    children: list[_Child] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _spawn_lock: threading.Lock = field(default_factory=threading.Lock)
    _supervisor: threading.Thread | None = None
    _owns_lock: bool = False
    service_tokens: Any = None  # access._service_accounts.ServiceTokens: the services' accounts at the PEP

    # --- the lock file: who runs on this data dir ---

    def _check_not_running(self) -> None:
        """Refuse when the data dir's lock names a live stack, or live children of a dead one."""
        cfg = self.config
        try:
            lock = json.loads(cfg.lock_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", cfg.lock_path, exc)
            return
        owner = lock.get("pid")
        if isinstance(owner, int) and owner != os.getpid() and _alive(owner, lock.get("create_time")):
            raise StackBusy(
                f"another energytwin stack, {_process_summary(owner)}, runs on the data dir "
                f"{cfg.data_dir.resolve()} since {lock.get('started', '?')}; stop it (kill {owner}) "
                "or pick another --data-dir"
            )
        left = [(name, info["pid"]) for name, info in (lock.get("children") or {}).items()
                if isinstance(info, dict) and isinstance(info.get("pid"), int)
                and _alive(info["pid"], info.get("create_time"))]
        if left:
            names = ", ".join(f"{name} {_process_summary(pid)}" for name, pid in left)
            raise StackBusy(
                f"a stale energytwin stack (pid {owner}, which no longer runs) left services running on "
                f"{cfg.data_dir.resolve()}: {names}; stop them with: kill {' '.join(str(p) for _, p in left)}"
            )
        cfg.lock_path.unlink(missing_ok=True)

    def _check_ports_free(self) -> None:
        cfg = self.config
        wanted = [("MQTT", cfg.mqtt_port), ("NGSI-LD broker", cfg.broker_port), ("IoT Agent", cfg.agent_port),
                  ("power-quality analytics", cfg.quality_port), ("live twin page", cfg.web_port),
                  ("access layer", cfg.access_port if cfg.access else 0),
                  ("IoT Agent access layer", cfg.agent_access_port if cfg.access else 0)]
        for service, port in wanted:
            if not port:
                continue
            holder = port_holder(cfg.host, port)
            if holder is None:
                continue
            who = f"by {holder}" if holder else "by another program"
            raise StackBusy(
                f"port {port} ({service}) is already held {who}.{_stale_hint(holder)} Stop it"
                + (f" (kill {holder.split()[1]})" if holder else "") + " or choose another port"
            )

    def _write_lock(self) -> None:
        children = {}
        if self.mqtt is not None:
            children[f"mqtt ({self.mqtt.kind})"] = self.mqtt.process.pid
        children.update({c.name: c.process.pid for c in self.children if c.process is not None})
        body = {
            "pid": os.getpid(),
            "create_time": _create_time(os.getpid()),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "ports": {"mqtt": self.config.mqtt_port, "broker": self.config.broker_port,
                      "agent": self.config.agent_port},
            "children": {name: {"pid": pid, "create_time": _create_time(pid)} for name, pid in children.items()},
        }
        tmp = self.config.lock_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        tmp.replace(self.config.lock_path)
        self._owns_lock = True

    def _remove_lock(self) -> None:
        if not self._owns_lock:
            return
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.config.lock_path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                self.config.lock_path.unlink()
        self._owns_lock = False

    # --- start / supervise / stop ---

    def start(self, timeout_s: float = 30.0) -> None:
        """Start every service and return once each accepts connections on its port.

        Raises StackBusy (nothing started) when the data dir or a port is taken. If anything fails or a stop
        signal arrives part-way, every child started so far is stopped before the exception propagates.
        """
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        self._check_not_running()
        self._check_ports_free()
        atexit.register(self.stop)
        try:
            with self.shutdown.deferred():
                self._write_lock()
                self.mqtt = spawn_mqtt_server(cfg.data_dir / "mqtt", cfg.host, cfg.mqtt_port, prefer=cfg.mqtt_prefer,
                                              launcher=guard(stay=True), auth=self._mqtt_auth_files())
                self._write_lock()
            self.mqtt.wait_ready()
            self.children = self._children()
            for child in self.children:
                with self.shutdown.deferred():
                    child.spawn()
                    self._write_lock()
                assert child.process is not None
                try:
                    wait_for_port(cfg.host, child.port, timeout_s=timeout_s, proc=child.process)
                except (TimeoutError, RuntimeError) as exc:
                    tail = child.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{child.name} failed to start: {exc}\n--- {child.log_path} ---\n{tail}")
                log.info("%s listening on %s:%d (log: %s)", child.name, cfg.host, child.port, child.log_path)
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="stack-supervisor", daemon=True)
        self._supervisor.start()

    def _children(self) -> list[_Child]:
        cfg = self.config
        python = sys.executable
        quality_port = cfg.quality_port or free_port()
        web_port = cfg.web_port or free_port()
        guarded, agent_guard = [], []
        service_broker, service_env = cfg.broker_url, {"quality": None, "web": None}
        if cfg.access:
            access_port = cfg.access_port or free_port()
            # The analytics and the page reach the broker through the access layer, each with its service
            # account's token (access/_service_accounts.py); the agent's ingest keeps the loopback port.
            service_broker = f"http://{cfg.host}:{access_port}"
            from access._service_accounts import ServiceTokens

            self.service_tokens = ServiceTokens(cfg.data_dir)
            service_env = {name: self.service_tokens.env(name, [service_broker], role=role)
                           for name, role in (("quality", "analytics"), ("web", "page"))}
            self.service_tokens.start()
            guarded = [_Child(
                "access",
                [python, "-m", "access", "serve", "--upstream", cfg.broker_url, "--host", cfg.host,
                 "--port", str(access_port), "--data-dir", str(cfg.data_dir)],
                access_port,
                cfg.log_dir / "access.log",
            )]
            # The agent's north API (provisioning) through its own PEP: the policy's agent.* actions.
            agent_access_port = cfg.agent_access_port or free_port()
            agent_guard = [_Child(
                "agent-access",
                [python, "-m", "access", "serve", "--upstream", cfg.agent_url, "--host", cfg.host,
                 "--port", str(agent_access_port), "--data-dir", str(cfg.data_dir),
                 "--actions", "version", "--actions", "agent.read", "--actions", "agent.write"],  # the north API only
                agent_access_port,
                cfg.log_dir / "agent-access.log",
            )]
        else:
            log.warning("ACCESS CONTROL IS OFF (development only): no access layer runs in front of the broker; "
                        "anyone who reaches %s sees and changes every entity", cfg.broker_url)
        children = [
            _Child(
                "broker",
                [python, "-m", "twin_service.broker", "--host", cfg.host, "--port", str(cfg.broker_port),
                 "--data-dir", str(cfg.data_dir)],
                cfg.broker_port,
                cfg.log_dir / "broker.log",
            ),
            _Child(
                "agent",
                [python, "-m", "twin_service.agent", "--north-port", str(cfg.agent_port),
                 "--mqtt-host", cfg.host, "--mqtt-port", str(cfg.mqtt_port),
                 "--broker-url", cfg.broker_url, "--data-dir", str(cfg.data_dir)],
                cfg.agent_port,
                cfg.log_dir / "agent.log",
                env=self._agent_mqtt_env(),
            ),
            _Child(
                "quality",
                [python, "-m", "twin_service.quality", "--broker-url", service_broker,
                 "--tenant", cfg.quality_tenant, "--listen-host", cfg.host, "--listen-port", str(quality_port),
                 "--data-dir", str(cfg.data_dir / "quality")],
                quality_port,
                cfg.log_dir / "quality.log",
                env=service_env["quality"],
            ),
            _Child(
                "web",
                # With access control the page asks for a login (the access layer's users, energytwin/page_login.py).
                [python, "-m", *(("energytwin.page_login", "--data-dir", str(cfg.data_dir)) if cfg.access
                                 else ("energytwin.page_web",)),  # `energytwin web`: both take --community
                 "--broker-url", service_broker, "--tenant", cfg.quality_tenant, "--host", cfg.host,
                 "--port", str(web_port), *self._community_args()],
                web_port,
                cfg.log_dir / "web.log",
                env=service_env["web"],
            ),
        ]
        # each PEP right after the service it guards
        return children[:1] + guarded + children[1:2] + agent_guard + children[2:]

    def _community_args(self) -> list[str]:
        cfg = self.config
        args = ["--community", str(Path(cfg.community).resolve())] if cfg.community is not None else []
        return args + (["--community-month", cfg.community_month] if cfg.community_month else [])

    # --- per-device MQTT credentials ---

    def _mqtt_auth_files(self) -> tuple[Path, Path] | None:
        if not self.config.mqtt_auth:
            return None
        from access._mqtt_auth import MqttCredentials

        creds = MqttCredentials(self.config.data_dir)
        creds.ensure()  # at least the agent's account; devices are added by mqtt_login / `energytwin access mqtt`
        return creds.password_file, creds.acl_file

    def _agent_mqtt_env(self) -> dict[str, str] | None:
        if not self.config.mqtt_auth:
            return None
        from access._mqtt_auth import AGENT_USER, MqttCredentials

        login = MqttCredentials(self.config.data_dir).login(AGENT_USER)
        assert login is not None  # created by _mqtt_auth_files before any child starts
        return {"IOTA_MQTT_USERNAME": login[0], "IOTA_MQTT_PASSWORD": login[1]}

    def mqtt_login(self, apikey: str, device_id: str) -> tuple[str, str] | None:
        """The (username, secret) a device logs in to the stack's MQTT broker with; None when MQTT is anonymous.

        A device without an account gets one, and the running broker re-reads its files.
        """
        if not self.config.mqtt_auth:
            return None
        from access._mqtt_auth import MqttCredentials

        creds = MqttCredentials(self.config.data_dir)
        login = creds.login(device_id)
        if login is None:
            creds.ensure([(apikey, device_id)])
            if self.mqtt is not None:
                self.mqtt.reload_credentials()
            login = creds.login(device_id)
        return login

    def mqtt_gateway_login(self, name: str, devices: list[tuple[str, str]]) -> tuple[str, str] | None:
        """The login of a gateway (one MQTT connection publishing for several devices: a SunSpec bridge) that
        may publish and read the topics of exactly `devices` ((apikey, device_id) pairs); None when anonymous."""
        if not self.config.mqtt_auth:
            return None
        from access._mqtt_auth import MqttCredentials

        creds = MqttCredentials(self.config.data_dir)
        creds.ensure(gateways={name: devices})
        if self.mqtt is not None:
            self.mqtt.reload_credentials()
        return creds.login(name)

    @property
    def quality_url(self) -> str:
        """Base URL of the power-quality analytics (its port is chosen at start when quality_port is 0)."""
        port = next((c.port for c in self.children if c.name == "quality"), self.config.quality_port)
        return f"http://{self.config.host}:{port}"

    @property
    def access_url(self) -> str | None:
        """Base URL of the access layer (the PEP in front of the broker); None when access control is off."""
        if not self.config.access:
            return None
        port = next((c.port for c in self.children if c.name == "access"), self.config.access_port)
        return f"http://{self.config.host}:{port}"

    @property
    def agent_access_url(self) -> str | None:
        """Base URL of the PEP in front of the IoT Agent's north API; None when access control is off."""
        if not self.config.access:
            return None
        port = next((c.port for c in self.children if c.name == "agent-access"), self.config.agent_access_port)
        return f"http://{self.config.host}:{port}"

    @property
    def web_url(self) -> str:
        """Base URL of the live twin page (its port is chosen at start when web_port is 0)."""
        port = next((c.port for c in self.children if c.name == "web"), self.config.web_port)
        return f"http://{self.config.host}:{port}"

    def _supervise(self) -> None:
        """Restart a child that exits on its own; back off when it keeps dying."""
        while not self._stopping.wait(0.5):
            for child in self.children:
                proc = child.process
                if proc is None or proc.poll() is None:
                    continue
                ran_s = time.monotonic() - child.started_at
                child.restarts += 1
                backoff_s = min(30.0, 2.0 ** min(child.restarts, 5)) if ran_s < 10 else 0.5
                log.error(
                    "%s exited with code %s after %.1f s; restarting in %.1f s (restart #%d, log: %s)",
                    child.name, proc.returncode, ran_s, backoff_s, child.restarts, child.log_path,
                )
                if self._stopping.wait(backoff_s):
                    return
                with self._spawn_lock:
                    if self._stopping.is_set():
                        return
                    child.spawn()
                    self._write_lock()
            if self.mqtt is not None and self.mqtt.process.poll() is not None:
                log.error("MQTT broker (%s) exited with code %s; restarting it",
                          self.mqtt.kind, self.mqtt.process.returncode)
                cfg = self.config
                with self._spawn_lock:
                    if self._stopping.is_set():
                        return
                    self.mqtt = spawn_mqtt_server(cfg.data_dir / "mqtt", cfg.host, cfg.mqtt_port, cfg.mqtt_prefer,
                                                  launcher=guard(stay=True), auth=self._mqtt_auth_files())
                    self._write_lock()
                try:
                    self.mqtt.wait_ready()
                except RuntimeError as exc:
                    log.error("MQTT broker restart failed: %s", exc)

    def stop(self) -> None:
        """Stop every service, newest first (idempotent; signals arriving meanwhile do not interrupt it)."""
        with self.shutdown.stopping():
            self._stopping.set()
            with self._spawn_lock:  # no restart can begin after this
                pass
            if self._supervisor is not None and self._supervisor is not threading.current_thread():
                self._supervisor.join(timeout=5)
            for child in reversed(self.children):
                child.stop()
            if self.mqtt is not None:
                _stop_group(self.mqtt.process, f"MQTT broker ({self.mqtt.kind})", 5.0)
            if self.service_tokens is not None:
                self.service_tokens.stop()
            self._remove_lock()
            atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
