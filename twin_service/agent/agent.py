"""The embedded IoT Agent JSON as one object: registry, north HTTP server, MQTT south, northbound writer.

`Agent(config).start()` returns once the north API listens; `stop()` ends every thread it started. Tests run
it in-process on free ports; `python -m twin_service.agent` and `energytwin up` wrap the same object.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .commands import DEFAULT_TIMEOUT_S, CommandRelay
from .continuity import COUNTERS_FILE, CounterContinuity
from .device_entity import DeviceEntities
from .metrics import Metrics
from .north import create_north_app
from .northbound_writer import DEFAULT_BATCH_MESSAGES, DEFAULT_MAX_MESSAGES, DurableQueue, Intake, Sender
from .registry import Registry
from .rejections import RejectionReporter
from .south import FloodLimit, MeasureHandler, MqttSettings, MqttSouth

log = logging.getLogger("twin_service.agent")

MAX_PAYLOAD_BYTES = 64 * 1024  # a 5-minute offline replay at 1 reading/s of ~25 measures fits well below this
REGISTRY_FILE = "agent-registry.sqlite"
QUEUE_FILE = "agent-queue.sqlite"


@dataclass
class AgentConfig:
    """Where the agent listens and writes; defaults are the production ports (kernel.ports)."""

    data_dir: Path = field(default_factory=lambda: Path("var"))
    north_host: str = "127.0.0.1"
    north_port: int = 4041
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    broker_url: str = "http://127.0.0.1:1026"
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    timestamp_default: bool = True  # IOTA_TIMESTAMP=true, as the project's service groups expect
    reject_log_interval_s: float = 60.0
    max_queued_messages: int = DEFAULT_MAX_MESSAGES  # bound of the on-disk queue (northbound_writer.py)
    batch_max_messages: int = DEFAULT_BATCH_MESSAGES  # MQTT messages per batch upsert at most
    durable_fsync: bool = False  # True: the queue survives power loss too (one fsync per group commit)
    flood_rate_per_s: float = 20.0  # per-device message rate beyond which messages are rejected (0: off)
    flood_burst: int = 200
    device_refresh_s: float = 10.0  # Device entity rewritten at most this often when nothing changed
    mqtt: MqttSettings | None = None  # credentials / TLS; host and port above win over its own
    command_timeout_s: float = DEFAULT_TIMEOUT_S  # a command without /cmdexe answer by then is EXPIRED
    command_notify_url: str | None = None  # where the broker reaches POST /notify/commands (default: north URL)

    def mqtt_settings(self) -> MqttSettings:
        """The MQTT connection settings with `mqtt_host` / `mqtt_port` applied."""
        base = self.mqtt or MqttSettings()
        return MqttSettings(**{**base.__dict__, "host": self.mqtt_host, "port": self.mqtt_port})

    def client_id(self) -> str:
        """A stable MQTT client id per data directory: the persistent session survives a restart."""
        digest = hashlib.sha1(str(Path(self.data_dir).resolve()).encode()).hexdigest()[:12]
        return f"energytwin-agent-{digest}"


class Agent:
    """A running embedded IoT Agent."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.registry = Registry(Path(config.data_dir) / REGISTRY_FILE)
        self.metrics.gauge("devices", self.registry.count_devices)
        self.metrics.gauge("groups", self.registry.count_groups)
        self.queue = DurableQueue(
            Path(config.data_dir) / QUEUE_FILE, config.max_queued_messages, config.durable_fsync
        )
        self.metrics.gauge("upsert_queue_depth", self.queue.depth)
        self.writer = Sender(self.queue, config.broker_url, self.metrics, config.batch_max_messages)
        self.metrics.gauge("broker_up", lambda: 1 if self.writer.broker_up else 0)
        self.intake = Intake(self.queue, self.metrics, self.writer.wake)
        self.continuity = CounterContinuity(Path(config.data_dir) / COUNTERS_FILE)
        reporter = RejectionReporter(self.metrics, config.reject_log_interval_s)
        self.handler = MeasureHandler(
            self.registry,
            self.metrics,
            reporter,
            config.max_payload_bytes,
            config.timestamp_default,
            FloodLimit(config.flood_rate_per_s, config.flood_burst),
            DeviceEntities(config.device_refresh_s),
            self.continuity,
        )
        self.south = MqttSouth(config.mqtt_settings(), self.handler, self.intake, config.client_id())
        self.commands = CommandRelay(self.registry, self.metrics, reporter, config.mqtt_settings(),
                                     config.client_id(), config.broker_url, self._command_notify_url(),
                                     config.command_timeout_s)
        self.app = create_north_app(self.registry, self.metrics, config.north_port, self._health)
        self.app.router.add_route("/notify/commands", self._command_notification, methods=["POST"])
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
        self.intake.start()
        self.south.start()
        self.commands.start()
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

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every message received so far is acknowledged and accepted by the broker (tests, bench)."""
        return self.intake.flush(timeout_s) and self.writer.drain(timeout_s)

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """True once the MQTT subscriptions are acknowledged, i.e. a measure published now will be seen."""
        return self.south.wait_subscribed(timeout_s)

    def stop(self) -> None:
        """Stop taking measures, send what is queued, stop the north server, close the registry."""
        self.intake.stop()  # commit + acknowledge what arrived, then let go of MQTT
        self.south.stop()
        self.commands.stop()
        self.writer.drain(2.0)  # a short grace for the broker; the rest stays on disk for the next start
        self.writer.stop()
        self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(timeout=5)
        self.registry.close()
        self.continuity.close()
        self.queue.close()

    def _command_notify_url(self) -> str:
        if self.config.command_notify_url:
            return self.config.command_notify_url
        host = "127.0.0.1" if self.config.north_host in ("0.0.0.0", "::", "") else self.config.north_host
        return f"http://{host}:{self.config.north_port}/notify/commands"

    async def _command_notification(self, request: Request) -> Response:
        """The broker's notification of a command attribute update (twin_service/agent/commands.py)."""
        try:
            body = await request.json()
            sent = await run_in_threadpool(self.commands.handle_notification,
                                           request.query_params.get("service", ""), body)
        except ValueError as exc:
            log.warning("refused a command notification: %s", exc)
            return JSONResponse({"name": "WRONG_SYNTAX", "message": f"Wrong syntax in request: {exc}"}, 400)
        return JSONResponse({"commands": sent}, status_code=200)

    def _health(self) -> dict[str, object]:
        """Dependency health for /iot/about, as node-lib reports it."""
        return {"broker": "up" if self.writer.broker_up else "down", "queued": self.queue.depth()}
