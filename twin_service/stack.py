"""The embedded stack: MQTT broker, NGSI-LD broker, IoT Agent, power-quality analytics and the live twin page as one
process tree.

Each service is its own child process on the production port (DESIGN.md §4), so a meter, a provisioning script
or a FIWARE app cannot tell it from the Docker stack. A supervisor thread restarts a child that dies (with
backoff) and logs why; `stop()` ends them in reverse start order. State lives under `data_dir`, so starting again
continues from the same data.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from energytwin import ports
from twin_service.mqtt_server import MqttServer, free_port, start_mqtt_server, wait_for_port

log = logging.getLogger(__name__)


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

    @property
    def broker_url(self) -> str:
        return f"http://{self.host}:{self.broker_port}"

    @property
    def agent_url(self) -> str:
        return f"http://{self.host}:{self.agent_port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


@dataclass
class _Child:
    """One supervised Python service process."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0

    def spawn(self) -> None:
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self.started_at = time.monotonic()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedStack:
    """Start, supervise and stop the embedded services."""

    config: StackConfig
    mqtt: MqttServer | None = None
    children: list[_Child] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start every service and return once each accepts connections on its port."""
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        self.mqtt = start_mqtt_server(cfg.data_dir / "mqtt", cfg.host, cfg.mqtt_port, prefer=cfg.mqtt_prefer)
        python = sys.executable
        quality_port = cfg.quality_port or free_port()
        web_port = cfg.web_port or free_port()
        self.children = [
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
            ),
            _Child(
                "quality",
                [python, "-m", "twin_service.quality", "--broker-url", cfg.broker_url,
                 "--tenant", cfg.quality_tenant, "--listen-host", cfg.host, "--listen-port", str(quality_port),
                 "--data-dir", str(cfg.data_dir / "quality")],
                quality_port,
                cfg.log_dir / "quality.log",
            ),
            _Child(
                "web",
                [python, "-m", "twin_service.web", "--broker-url", cfg.broker_url, "--tenant", cfg.quality_tenant,
                 "--host", cfg.host, "--port", str(web_port)],
                web_port,
                cfg.log_dir / "web.log",
            ),
        ]
        try:
            for child in self.children:
                child.spawn()
                try:
                    wait_for_port(cfg.host, child.port, timeout_s=timeout_s, proc=child.process)
                except (TimeoutError, RuntimeError) as exc:
                    tail = child.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{child.name} failed to start: {exc}\n--- {child.log_path} ---\n{tail}")
                log.info("%s listening on %s:%d (log: %s)", child.name, cfg.host, child.port, child.log_path)
        except Exception:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="stack-supervisor", daemon=True)
        self._supervisor.start()

    @property
    def quality_url(self) -> str:
        """Base URL of the power-quality analytics (its port is chosen at start when quality_port is 0)."""
        port = next((c.port for c in self.children if c.name == "quality"), self.config.quality_port)
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
                child.spawn()
            if self.mqtt is not None and self.mqtt.process.poll() is not None:
                log.error("MQTT broker (%s) exited with code %s; restarting it",
                          self.mqtt.kind, self.mqtt.process.returncode)
                cfg = self.config
                try:
                    self.mqtt = start_mqtt_server(cfg.data_dir / "mqtt", cfg.host, cfg.mqtt_port, cfg.mqtt_prefer)
                except RuntimeError as exc:
                    log.error("MQTT broker restart failed: %s", exc)

    def stop(self) -> None:
        """Stop every service, newest first."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        for child in reversed(self.children):
            child.stop()
        if self.mqtt is not None:
            self.mqtt.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
