"""The embedded IoT Agent JSON as one object: registry, north HTTP server, MQTT south, northbound writer.

`Agent(config).start()` returns once the north API listens; `stop()` ends every thread it started. Tests run
it in-process on free ports; `python -m twin_service.agent` and `energytwin up` wrap the same object.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from .metrics import Metrics
from .north import create_north_app
from .northbound_writer import NorthboundWriter
from .registry import Registry
from .rejections import RejectionReporter
from .south import MeasureHandler, MqttSouth

log = logging.getLogger("twin_service.agent")

MAX_PAYLOAD_BYTES = 64 * 1024  # a 5-minute offline replay at 1 reading/s of ~25 measures fits well below this
REGISTRY_FILE = "agent-registry.sqlite"


@dataclass
class AgentConfig:
    """Where the agent listens and writes; defaults are the production ports (DESIGN.md §4)."""

    data_dir: Path = field(default_factory=lambda: Path("var"))
    north_host: str = "127.0.0.1"
    north_port: int = 4041
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    broker_url: str = "http://127.0.0.1:1026"
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    timestamp_default: bool = True  # IOTA_TIMESTAMP=true, as the project's service groups expect
    reject_log_interval_s: float = 60.0
    max_queued_upserts: int = 10_000


class Agent:
    """A running embedded IoT Agent."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.registry = Registry(Path(config.data_dir) / REGISTRY_FILE)
        self.metrics.gauge("devices", self.registry.count_devices)
        self.metrics.gauge("groups", self.registry.count_groups)
        self.writer = NorthboundWriter(config.broker_url, self.metrics, max_queued=config.max_queued_upserts)
        self.handler = MeasureHandler(
            self.registry,
            self.writer,
            self.metrics,
            RejectionReporter(self.metrics, config.reject_log_interval_s),
            config.max_payload_bytes,
            config.timestamp_default,
        )
        self.south = MqttSouth(config.mqtt_host, config.mqtt_port, self.handler)
        self.app = create_north_app(self.registry, self.metrics, config.north_port)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app, host=config.north_host, port=config.north_port, log_level="warning", lifespan="off"
            )
        )
        self._server_thread: threading.Thread | None = None

    @property
    def north_url(self) -> str:
        """Base URL of the provisioning API."""
        return f"http://{self.config.north_host}:{self.config.north_port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start writer, MQTT client and north server; return when the north API accepts connections."""
        self.writer.start()
        self.south.start()
        self._server_thread = threading.Thread(target=self._server.run, name="agent-north", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"north API did not start on {self.config.north_host}:{self.config.north_port}"
                )
            time.sleep(0.02)
        log.info(
            "IoT Agent JSON up: north %s, MQTT %s:%d, broker %s, registry %s",
            self.north_url,
            self.config.mqtt_host,
            self.config.mqtt_port,
            self.config.broker_url,
            Path(self.config.data_dir) / REGISTRY_FILE,
        )

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """True once the MQTT subscriptions are acknowledged, i.e. a measure published now will be seen."""
        return self.south.wait_subscribed(timeout_s)

    def stop(self) -> None:
        """Stop taking measures, send what is queued, stop the north server, close the registry."""
        self.south.stop()
        self.writer.stop()
        self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        self.registry.close()
