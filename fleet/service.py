"""`energytwin fleet run`: the live fleet controller, a FIWARE app like any other.

It subscribes (NGSI-LD subscriptions, ETSI GS CIM 009 clause 5.8) to the batteries' `BatteryStatus` entities and
to the homes' `PhotovoltaicMeasurement` entities, with notifications to its own HTTP endpoint (`POST /notify`),
and also queries them at start and every few periods (a lost notification costs at most that long). Each period
it runs the mean-SoC rule (fleet/rule.py) over the live batteries and sends every one its setpoint as the
`batteryPowerSetpoint` command through the twin: a plain attribute update, `PATCH /ngsi-ld/v1/entities/{id}/attrs`,
which the broker forwards to the IoT Agent that registered the command, and the agent to the device (the FIWARE
IoT Agent command pattern). It also writes, on each battery entity, the mean it steered to and its decision
(`fleetMeanStatusPercent`, `fleetControlState`), so a page or a dashboard shows both.

Failure handling, in one place: the broker unreachable -> the cycle is skipped, retried with a doubling backoff
(up to `max_backoff_s`), one log line per outage and one when it is back; the subscriptions are idempotent
(fiware_client.ensure_subscription with fixed ids), so a restart reuses them; a battery silent for
`stale_periods` periods leaves the mean (logged when it leaves and when it returns, counted); a setpoint is
always inside the battery's reported limits, and a battery without known limits gets no command at all.
On a clean stop every battery the controller commanded is released (`batteryPowerSetpoint` = the NGSI-LD null, back to the
inverter's own mode), so a stopped controller does not leave setpoints held by the bridge's watchdog.

Routes: POST /notify, GET /health (JSON: every battery, the last cycle), GET /metrics (Prometheus text).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from datamodels.context import context_for
from fiware_client import (
    BatchError,
    BrokerError,
    BrokerUnavailable,
    FiwareError,
    NgsiLdClient,
    NonexistentTenant,
    RetryPolicy,
)
from fleet.controller import (
    BATTERY_ATTRIBUTES,
    BATTERY_TYPE,
    COMMAND,
    METER_ATTRIBUTES,
    METER_TYPE,
    PV_ATTRIBUTES,
    PV_TYPE,
    Command,
    Cycle,
    FleetState,
)
from fleet.rule import DEFAULT_DEADBAND, DEFAULT_GAIN_PER_H

log = logging.getLogger("energytwin.fleet")

# NGSI-LD has no JSON null in an attribute update; ETSI GS CIM 009 v1.8.1 clause 4.5 names this literal for it. The
# agent forwards it as the command's null ("back to the inverter's own mode", docs/inverters.md).
RELEASE_VALUE = "urn:ngsi-ld:null"
SUBSCRIPTION_IDS = {BATTERY_TYPE: "urn:ngsi-ld:Subscription:energytwin-fleet-batteries",
                    PV_TYPE: "urn:ngsi-ld:Subscription:energytwin-fleet-pv"}
MEAN_ATTRIBUTE = "fleetMeanStatusPercent"
DECISION_ATTRIBUTE = "fleetControlState"
# The fleet as one entity (one per tenant: one controller per tenant), for views that want the mean without
# reading every battery. Our own type, written with the core @context only (docs/batteries.md has its shape).
FLEET_TYPE = "BatteryFleet"
FLEET_ENTITY_ID = "urn:ngsi-ld:BatteryFleet:fleet"


@dataclass
class ControllerConfig:
    """Where the twin is, how often to steer, and the rule's knobs (see `energytwin fleet run --help`)."""

    broker_url: str
    tenant: str | None = None
    period_s: float = 60.0
    stale_periods: int = 3
    resync_periods: int = 5
    reserve: float = 0.05
    fleet_power_w: float = 0.0
    gain_per_h: float = DEFAULT_GAIN_PER_H
    deadband: float = DEFAULT_DEADBAND
    listen_host: str = "127.0.0.1"
    listen_port: int = 0  # 0: a free port
    notify_url: str | None = None  # default http://<listen host>:<port>/notify
    token: str | None = None  # bearer token for the access layer
    token_file: Path | None = None  # re-read when it changes (a rotated token)
    publish: bool = True  # write fleetMeanStatusPercent / fleetControlState on each battery entity
    release_on_exit: bool = True
    dry_run: bool = False  # compute and log, send nothing
    max_backoff_s: float = 60.0
    timeout_s: float = 5.0
    # Commands in flight at once. One PATCH per battery is the IoT Agent command pattern (Orion-LD forwards an
    # entity's attribute update to the agent that registered the command, not a batch); sent one at a time they
    # cost a round trip each (bench/fleet_cycle.py), so a large fleet's period is spent waiting on the socket.
    send_concurrency: int = 8
    use_meters: bool = True  # read each battery's refMeter and store the community's metered surplus


class _BearerTransport(httpx.HTTPTransport):
    """Adds `Authorization: Bearer <token>` to every request (RFC 6750), the token read fresh from its source."""

    def __init__(self, token: Callable[[], str]) -> None:
        super().__init__()
        self._token = token

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Authorization"] = f"Bearer {self._token()}"
        return super().handle_request(request)


def _token_source(config: ControllerConfig) -> Callable[[], str] | None:
    if config.token:
        token = config.token
        return lambda: token
    if config.token_file is None:
        return None
    path, cache = config.token_file, {"mtime": -1.0, "token": ""}

    def read() -> str:
        mtime = path.stat().st_mtime
        if mtime != cache["mtime"]:
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            cache.update(mtime=mtime, token=lines[-1] if lines else "")  # `users token` prints it last
        return str(cache["token"])

    return read


@dataclass
class Metrics:
    cycles: int = 0
    cycles_skipped: int = 0
    commands_sent: int = 0
    commands_refused: int = 0  # the broker did not take the PATCH (207 / 4xx)
    command_results_failed: int = 0  # batteryPowerSetpoint_status ERROR or EXPIRED seen
    notifications: int = 0
    notifications_invalid: int = 0
    entities_refused: int = 0
    broker_errors: int = 0
    batteries_left_mean: int = 0  # transitions live -> excluded
    last_cycle_s: float = 0.0
    last_send_s: float = 0.0  # of which sending the commands
    last_publish_s: float = 0.0  # and writing the mean for views

    def prometheus(self, state: FleetState, cycle: Cycle | None) -> str:
        lines = []
        for name, value, kind, help_ in (
            ("cycles_total", self.cycles, "counter", "controller cycles run"),
            ("cycles_skipped_total", self.cycles_skipped, "counter", "cycles skipped (broker unreachable)"),
            ("commands_sent_total", self.commands_sent, "counter", "batteryPowerSetpoint commands accepted by the twin"),
            ("commands_refused_total", self.commands_refused, "counter", "commands the twin refused"),
            ("command_results_failed_total", self.command_results_failed, "counter",
             "command results ERROR or EXPIRED"),
            ("notifications_total", self.notifications, "counter", "notifications received"),
            ("notifications_invalid_total", self.notifications_invalid, "counter", "notifications refused (400)"),
            ("entities_refused_total", state.refused_entities, "counter", "entities that could not be read"),
            ("broker_errors_total", self.broker_errors, "counter", "failed broker requests"),
            ("batteries_left_mean_total", self.batteries_left_mean, "counter", "times a battery left the mean"),
            ("batteries_live", cycle.live if cycle else 0, "gauge", "batteries steered in the last cycle"),
            ("batteries_excluded", len(cycle.excluded) if cycle else 0, "gauge", "batteries left out of it"),
            ("mean_soc", cycle.mean_soc if cycle else float("nan"), "gauge", "capacity-weighted mean SoC, 0..1"),
            ("last_cycle_seconds", self.last_cycle_s, "gauge", "duration of the last cycle"),
        ):
            lines += [f"# HELP energytwin_fleet_{name} {help_}", f"# TYPE energytwin_fleet_{name} {kind}",
                      f"energytwin_fleet_{name} {value}"]
        return "\n".join(lines) + "\n"


@dataclass
class FleetController:
    """The running controller: the HTTP endpoint, the state, and the periodic loop (two threads)."""

    config: ControllerConfig
    clock: Callable[[], float] = time.time
    state: FleetState = field(init=False)
    metrics: Metrics = field(default_factory=Metrics)
    last_cycle: Cycle | None = None
    subscribed: bool = False
    broker_up: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _excluded: dict[str, str] = field(default_factory=dict)
    _failed_results: dict[str, str] = field(default_factory=dict)
    _commanded: set[str] = field(default_factory=set)
    _refusals: dict[str, str] = field(default_factory=dict)
    _tenant_missing: bool = False
    _pool: ThreadPoolExecutor | None = None  # send_concurrency threads, started as commands need them

    def __post_init__(self) -> None:
        c = self.config
        if c.period_s <= 0 or c.stale_periods < 1 or c.resync_periods < 1 or c.send_concurrency < 1:
            raise ValueError("period_s must be > 0, stale_periods, resync_periods and send_concurrency >= 1")
        self.state = FleetState(period_s=c.period_s, stale_periods=c.stale_periods, reserve=c.reserve,
                                fleet_power_w=c.fleet_power_w, gain_per_h=c.gain_per_h, deadband=c.deadband,
                                use_meters=c.use_meters)
        token = _token_source(c)
        self.client = NgsiLdClient(c.broker_url, tenant=c.tenant, timeout=c.timeout_s,
                                   retry=RetryPolicy(attempts=2, backoff_s=0.2, max_backoff_s=1.0),
                                   transport=_BearerTransport(token) if token else None)

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def notify_url(self) -> str:
        return self.config.notify_url or f"http://{self.config.listen_host}:{self.port}/notify"

    def start(self) -> FleetController:
        self._server = ThreadingHTTPServer((self.config.listen_host, self.config.listen_port), _handler(self))
        self._server.daemon_threads = True
        for target, name in ((self._server.serve_forever, "fleet-http"), (self._run, "fleet-loop")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("fleet controller: broker %s (tenant %s), every %.0f s, notifications to %s",
                 self.config.broker_url, self.config.tenant or "default", self.config.period_s, self.notify_url)
        return self

    def stop(self) -> None:
        """Stop the loop, release what was commanded, close the endpoint; a second call does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._threads:
            self._threads[1].join(timeout=self.config.timeout_s * 3)
        if self.config.release_on_exit and not self.config.dry_run and self._commanded:
            self._release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.client.close()

    def wake(self) -> None:
        """Run the next cycle now (tests, and a battery that just came back)."""
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = min(self.config.period_s, 1.0)
        since_resync = self.config.resync_periods  # query at the first cycle
        while not self._stop.is_set():
            try:
                if not self.subscribed:
                    self._subscribe()
                if since_resync >= self.config.resync_periods:
                    self._resync()
                    since_resync = 0
                self.run_cycle()
                since_resync += 1
                if not self.broker_up:
                    log.info("broker %s answers again; steering resumed", self.config.broker_url)
                    self.broker_up = True
                backoff = min(self.config.period_s, 1.0)
                wait = self.config.period_s
            except (BrokerUnavailable, httpx.HTTPError) as exc:
                self.metrics.broker_errors += 1
                self.metrics.cycles_skipped += 1
                if self.broker_up:
                    log.warning("broker %s unreachable (%s): no commands until it answers; retrying with backoff "
                                "up to %.0f s", self.config.broker_url, exc, self.config.max_backoff_s)
                self.broker_up = False
                since_resync = self.config.resync_periods  # it may have lost notifications: query again
                wait, backoff = backoff, min(backoff * 2, self.config.max_backoff_s)
            except FiwareError as exc:
                self.metrics.broker_errors += 1
                self.metrics.cycles_skipped += 1
                log.warning("broker refused a request: %s; next try in %.0f s", exc, self.config.period_s)
                wait = self.config.period_s
            except Exception:  # a bug must not stop the steering for good
                self.metrics.cycles_skipped += 1
                log.exception("fleet cycle failed; next try in %.0f s", self.config.period_s)
                wait = self.config.period_s
            self._wake.wait(wait)
            self._wake.clear()

    def _subscribe(self) -> None:
        for entity_type, attributes in ((BATTERY_TYPE, BATTERY_ATTRIBUTES), (PV_TYPE, PV_ATTRIBUTES)):
            outcome = self.client.ensure_subscription({
                "id": SUBSCRIPTION_IDS[entity_type],
                "type": "Subscription",
                "description": f"energytwin fleet controller: {entity_type} updates",
                "entities": [{"type": entity_type}],
                "watchedAttributes": list(attributes),
                "notification": {"attributes": list(attributes), "format": "normalized",
                                 "endpoint": {"uri": self.notify_url, "accept": "application/json"}},
                "@context": context_for(entity_type),
            })
            log.info("subscription %s %s (%s)", outcome.id, outcome.action,
                     ", ".join(outcome.differences) if outcome.differences else entity_type)
        self.subscribed = True

    def _resync(self) -> None:
        try:
            batteries = self.client.query_entities(type=BATTERY_TYPE, attrs=list(BATTERY_ATTRIBUTES))
            pv = self.client.query_entities(type=PV_TYPE, attrs=list(PV_ATTRIBUTES))
        except NonexistentTenant:  # nothing written to the tenant yet: no battery so far
            if not self._tenant_missing:
                log.info("tenant %s has no entities yet; waiting for the first battery", self.config.tenant)
            self._tenant_missing = True
            return
        self._tenant_missing = False
        self.take(batteries + pv)

    def take(self, entities: list[Any]) -> None:
        """Fold entities in (from a query or a notification), logging what cannot be read and failed results."""
        with self._lock:
            for entity in entities:
                if not isinstance(entity, Mapping):
                    self.state.refused_entities += 1
                    continue
                problem = self.state.take(entity)
                if problem is not None:
                    log.warning("%s: %s (not used)", entity.get("id"), problem)
                battery = self.state.batteries.get(str(entity.get("id")))
                if battery is not None and f"{COMMAND}_status" in entity:
                    self._check_result(battery.entity_id, battery.command_status, battery.command_info)

    def _check_result(self, entity_id: str, status: Any, info: Any) -> None:
        if status in ("ERROR", "EXPIRED"):
            key = f"{status}:{info}"
            if self._failed_results.get(entity_id) != key:
                self._failed_results[entity_id] = key
                self.metrics.command_results_failed += 1
                log.warning("%s: %s %s: %s", entity_id, COMMAND, status, info)
        else:
            self._failed_results.pop(entity_id, None)

    def run_cycle(self) -> Cycle:
        """One period: decide, send every command, publish the mean. Raises when the broker is unreachable."""
        started = time.perf_counter()
        self._read_meters()
        with self._lock:
            cycle = self.state.cycle(self.clock())
        self._report_membership(cycle)
        sending = time.perf_counter()
        self._send_all(cycle.commands)
        publishing = time.perf_counter()
        if self.config.publish and not self.config.dry_run:
            self._publish(cycle)
        done = time.perf_counter()
        self.last_cycle = cycle
        self.metrics.cycles += 1
        self.metrics.last_cycle_s = done - started
        self.metrics.last_send_s = publishing - sending
        self.metrics.last_publish_s = done - publishing
        log.info("cycle: %d batteries steered to mean SoC %s, %d left out", cycle.live,
                 f"{cycle.mean_soc:.1%}" if cycle.live else "n/a", len(cycle.excluded))
        return cycle

    def _read_meters(self) -> None:
        """The grid meters the batteries refer to (refMeter), read by id each cycle: their value at decision time,
        one paged query per 100 meters, rather than a subscription notified at every meter reading."""
        if not self.config.use_meters:
            return
        with self._lock:
            ids = self.state.meter_ids
        for start in range(0, len(ids), 100):
            try:
                meters = self.client.query_entities(type=METER_TYPE, ids=ids[start:start + 100],
                                                    attrs=list(METER_ATTRIBUTES))
            except NonexistentTenant:
                return
            self.take(meters)

    def _send_all(self, commands: Sequence[Command]) -> None:
        """Every command, up to `send_concurrency` in flight; a BrokerUnavailable from any is raised after all."""
        if self.config.send_concurrency == 1 or len(commands) <= 1 or self.config.dry_run:
            for command in commands:
                self._send(command.entity_id, command.power_w, command.reason)
            return
        if self._pool is None:  # one pool for the controller's life; it never runs more than there are commands
            self._pool = ThreadPoolExecutor(self.config.send_concurrency, thread_name_prefix="fleet-send")
        futures = [self._pool.submit(self._send, c.entity_id, c.power_w, c.reason) for c in commands]
        unavailable: BaseException | None = None
        for future in futures:
            error = future.exception()
            if error is not None and unavailable is None:
                unavailable = error
        if unavailable is not None:
            raise unavailable

    def _report_membership(self, cycle: Cycle) -> None:
        for entity_id, reason in cycle.excluded.items():
            if entity_id not in self._excluded:
                self.metrics.batteries_left_mean += 1
                log.warning("%s leaves the mean: %s; no command until it reports again", entity_id, reason)
        for entity_id in list(self._excluded):
            if entity_id not in cycle.excluded:
                log.info("%s rejoins the mean", entity_id)
        self._excluded = dict(cycle.excluded)

    def _send(self, entity_id: str, power_w: int | str, reason: str) -> bool:
        if self.config.dry_run:
            log.info("%s: would send %s %s W (%s)", entity_id, COMMAND, power_w, reason)
            return False
        try:
            self.client.update_attrs(entity_id, {COMMAND: {"type": "Property", "value": power_w}})
        except BatchError as exc:
            self._refused(entity_id, f"the twin did not take it ({exc}): is the device provisioned with the "
                                     "command (its IoT Agent registers it with the broker)?")
            return False
        except BrokerError as exc:
            if isinstance(exc, BrokerUnavailable):
                raise
            self._refused(entity_id, str(exc))
            return False
        with self._lock:
            if self._refusals.pop(entity_id, None) is not None:
                log.info("%s: %s accepted again", entity_id, COMMAND)
            self.metrics.commands_sent += 1
            self._commanded.add(entity_id)
            if entity_id in self.state.batteries:
                self.state.batteries[entity_id].last_sent_w = power_w if isinstance(power_w, int) else None
        log.debug("%s: %s %s W (%s)", entity_id, COMMAND, power_w, reason)
        return True

    def _refused(self, entity_id: str, why: str) -> None:
        """Count every refusal; log it when it starts or its reason changes (not every period)."""
        with self._lock:
            self.metrics.commands_refused += 1
            changed = self._refusals.get(entity_id) != why
            self._refusals[entity_id] = why
        if changed:
            log.warning("%s: %s refused: %s", entity_id, COMMAND, why)

    def _publish(self, cycle: Cycle) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        decisions = {c.entity_id: f"steered: {c.reason} ({c.power_w} W)" for c in cycle.commands}
        decisions.update({entity_id: f"excluded: {why}" for entity_id, why in cycle.excluded.items()})
        entities = []
        for entity_id, decision in sorted(decisions.items()):
            entity: dict[str, Any] = {"id": entity_id, "type": BATTERY_TYPE,
                                      DECISION_ATTRIBUTE: {"type": "Property", "value": decision, "observedAt": now}}
            if cycle.live:
                entity[MEAN_ATTRIBUTE] = {"type": "Property", "value": round(cycle.mean_soc, 4),
                                          "unitCode": "C62", "observedAt": now}
            entities.append(entity)
        entities.append(self.fleet_entity(cycle, now))
        try:
            self.client.upsert_entities(entities, update=True)
        except BatchError as exc:
            log.warning("could not write the fleet mean on every battery: %s", exc)

    def fleet_entity(self, cycle: Cycle, now: str) -> dict[str, Any]:
        """The `BatteryFleet` entity: the mean it steered to, the spread, who is in and out, the fleet's power."""
        with self._lock:
            live = [self.state.batteries[c.entity_id] for c in cycle.commands if c.entity_id in self.state.batteries]
        socs = [b.soc for b in live if b.soc is not None]
        total_w = sum(c.power_w for c in cycle.commands)

        def prop(value: Any, unit: str | None = None) -> dict[str, Any]:
            attribute: dict[str, Any] = {"type": "Property", "value": value, "observedAt": now}
            if unit:
                attribute["unitCode"] = unit
            return attribute

        entity: dict[str, Any] = {
            "id": FLEET_ENTITY_ID, "type": FLEET_TYPE,
            "batteriesLive": prop(cycle.live),
            "batteriesExcluded": prop(len(cycle.excluded)),
            # Text, not an object or list: a JSON-LD array may not be empty, and an object's keys would be expanded.
            "excludedBatteries": prop("; ".join(f"{k}: {v}" for k, v in sorted(cycle.excluded.items())) or "none"),
            "fleetPowerSetpoint": prop(total_w, "WTT"),
            "controlPeriod": prop(self.config.period_s, "SEC"),
            "meteredHomes": prop(cycle.metered_homes),
            DECISION_ATTRIBUTE: prop(f"steering {cycle.live} batteries to mean SoC {cycle.mean_soc:.1%}, "
                                     f"{len(cycle.excluded)} left out" if cycle.live
                                     else f"no live battery, {len(cycle.excluded)} left out"),
        }
        if cycle.live:
            entity[MEAN_ATTRIBUTE] = prop(round(cycle.mean_soc, 4), "C62")
            entity["fleetStatusPercentSpread"] = prop(round(max(socs) - min(socs), 4) if socs else 0.0, "C62")
            entity["energyCapacity"] = prop(round(sum(b.capacity_wh or 0.0 for b in live), 1), "WHR")
        return entity

    def _release(self) -> None:
        released = 0
        for entity_id in sorted(self._commanded):
            try:
                if self._send(entity_id, RELEASE_VALUE, "controller stopping: back to the inverter's own mode"):
                    released += 1
            except FiwareError as exc:
                log.warning("%s: could not release (%s); the bridge keeps its last setpoint", entity_id, exc)
                break
        log.info("released %d of %d batteries (batteryPowerSetpoint %s)", released, len(self._commanded), RELEASE_VALUE)

    def health(self) -> dict[str, Any]:
        with self._lock:
            batteries = {entity_id: {
                "soc": b.soc, "observedAt": datetime.fromtimestamp(b.observed_at_s, UTC).isoformat()
                if b.observed_at_s else None, "capacityWh": b.capacity_wh, "maxChargePowerW": b.max_charge_w,
                "pvKw": self.state.pv_kw.get(entity_id.split(":", 3)[-1]), "lastSentW": b.last_sent_w,
                "commandStatus": b.command_status, "excluded": self._excluded.get(entity_id),
            } for entity_id, b in sorted(self.state.batteries.items())}
        cycle = self.last_cycle
        return {"status": "ok" if self.broker_up else "broker-unreachable", "subscribed": self.subscribed,
                "notifyEndpoint": self.notify_url if self._server else None,
                "meanSoc": cycle.mean_soc if cycle and cycle.live else None,
                "live": cycle.live if cycle else 0, "batteries": batteries,
                "fleetPowerW": cycle.fleet_power_w if cycle else None,
                "meteredHomes": cycle.metered_homes if cycle else 0,
                "metrics": {k: v for k, v in vars(self.metrics).items()}}


def _handler(controller: FleetController) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

        def _answer(self, status: int, body: Any, media: str = "application/json") -> None:
            data = (body if isinstance(body, str) else json.dumps(body, default=str)).encode()
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._answer(200, controller.health())
            elif self.path == "/metrics":
                self._answer(200, controller.metrics.prometheus(controller.state, controller.last_cycle),
                             "text/plain; version=0.0.4")
            else:
                self._problem(404, "Not found", f"no route {self.path}; try /health, /metrics, POST /notify")

        def do_POST(self) -> None:
            if self.path != "/notify":
                self._problem(404, "Not found", f"no route {self.path}; notifications go to /notify")
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (ValueError, UnicodeDecodeError):
                body = None
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                controller.metrics.notifications_invalid += 1
                log.warning("notification refused: not an NGSI-LD Notification with a data array")
                self._problem(400, "Invalid notification", "expected {\"type\": \"Notification\", \"data\": [...]}")
                return
            controller.metrics.notifications += 1
            controller.take(data)
            self.send_response(204)
            self.end_headers()

        def _problem(self, status: int, title: str, detail: str) -> None:
            kind = "BadRequestData" if status == 400 else "ResourceNotFound"
            self._answer(status, {"type": f"https://uri.etsi.org/ngsi-ld/errors/{kind}", "title": title,
                                  "detail": detail}, "application/problem+json")

    return Handler
