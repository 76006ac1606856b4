"""Benchmark: one live fleet-controller cycle for 1,000 batteries against the real embedded agent and broker.

Run: `.venv/bin/python bench/fleet_cycle.py` (`--quick`: 200 batteries, `--batteries N`, `--repeats R`).
Figures are printed and written to bench/results/fleet_cycle.json.

The issue's target is "one controller cycle for 1,000 batteries < 100 ms". bench/fleet_batteries.py times the
decision alone (the rule over 1,000 batteries); this bench times what `energytwin fleet run` actually does each
period, on the same stack the demo runs (the embedded IoT Agent and NGSI-LD broker as processes, an MQTT
broker), with 1,000 batteries provisioned in the agent with their `batteryPowerSetpoint` command:

- query: every BatteryStatus through fiware_client (paged, 1,000 a page at most), as at start and every
  `--resync-periods`;
- decide: `FleetState.cycle` (the rule, clamped to whole watts), the decision-only figure, in the same run;
- send: 1,000 `PATCH /entities/{id}/attrs {batteryPowerSetpoint}`, the IoT Agent command pattern (the broker
  notifies the agent's command subscription, the agent publishes `/cmd`): one request per battery, because
  Orion-LD forwards a command only from an entity or attribute update to the registered agent, not from a batch;
  sent sequentially (one connection) and with `send_concurrency` requests in flight (the controller's default);
- publish: the batch upsert of `fleetMeanStatusPercent` / `fleetControlState` on each battery and the fleet
  entity (`--no-publish` drops it).

For comparison, not as the controller's path, it also times the same 1,000 setpoints as one
`POST /entityOperations/update` batch: what the embedded broker could take if commands could be batched.
Every figure is a median over `--repeats` cycles; the decision-only figure is the in-run baseline (a ratio).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridges.sunspec.provision import device_body, service_group
from bridges.sunspec.site import GeoPoint
from datamodels.der import BATTERY_TYPE, battery_entity_id
from fiware_client import IotAgentClient, NgsiLdClient, RetryPolicy
from fleet.service import ControllerConfig, FleetController
from twin_service.mqtt_server import free_port, start_mqtt_server, wait_for_port

RESULTS = Path(__file__).resolve().parent / "results" / "fleet_cycle.json"
TENANT = "fleetbench"
APIKEY = "bench-fleet"
COMMAND = "batteryPowerSetpoint"


def _now_iso(offset_s: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


def _batteries(n: int, seed: int) -> list[dict]:
    """BatteryStatus as the agent writes them from the bridge's readings (SoC spread 10-90 %)."""
    at = _now_iso()
    out = []
    for i in range(n):
        soc = 0.1 + 0.8 * ((i * 7919 + seed) % 1000) / 1000
        out.append({"id": battery_entity_id(f"home-{i:04d}"), "type": BATTERY_TYPE,
                    "statusPercent": {"type": "Property", "value": round(soc, 3), "unitCode": "C62",
                                      "observedAt": at},
                    "energyCapacity": {"type": "Property", "value": 5000 + 2500 * (i % 4), "unitCode": "WHR",
                                       "observedAt": at},
                    "maxChargePower": {"type": "Property", "value": 5000, "unitCode": "WTT", "observedAt": at},
                    "deviceState": {"type": "Property", "value": "ok", "observedAt": at}})
    return out


class CmdCounter:
    """Counts the `/cmd` messages the agent publishes (proof the commands went through the agent)."""

    def __init__(self, host: str, port: int) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-fleet-cmd")
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe(f"/{APIKEY}/+/cmd", qos=0)
        self.client.loop_start()

    def _on_message(self, *_: object) -> None:
        with self._lock:
            self.count += 1

    def wait_for(self, n: int, timeout_s: float) -> float | None:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            if self.count >= n:
                return time.perf_counter() - started
            time.sleep(0.01)
        return None

    def settle(self, quiet_s: float = 1.0, timeout_s: float = 60) -> None:
        """Wait until no /cmd arrived for `quiet_s` (what the agent had queued is out)."""
        deadline, last, since = time.monotonic() + timeout_s, -1, time.monotonic()
        while time.monotonic() < deadline:
            if self.count != last:
                last, since = self.count, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds (proc(5))."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 batteries, 2 repeats (smoke run)")
    parser.add_argument("--batteries", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.batteries or (200 if args.quick else 1000)
    repeats = args.repeats or (2 if args.quick else 5)
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-cycle-"))
    mqtt_server = start_mqtt_server(work / "mqtt", port=free_port())
    broker_port, north = free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--host", "127.0.0.1", "--port",
                               str(broker_port), "--data-dir", str(work / "broker"), "--log-level", "warning"])]
    broker_url = f"http://127.0.0.1:{broker_port}"
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "twin_service.agent", "--north-port", str(north), "--mqtt-host", mqtt_server.host,
         "--mqtt-port", str(mqtt_server.port), "--broker-url", broker_url, "--data-dir", str(work / "agent"),
         "--log-level", "WARNING"]))
    counter: CmdCounter | None = None
    try:
        wait_for_port("127.0.0.1", broker_port, 20, procs[0])
        wait_for_port("127.0.0.1", north, 20, procs[1])
        load_before = os.getloadavg()
        started = time.perf_counter()
        location = GeoPoint(type="Point", coordinates=[-3.7, 40.4])
        with IotAgentClient(f"http://127.0.0.1:{north}", TENANT, "/") as agent:
            agent.create_service_groups([service_group(APIKEY)])
            agent.create_devices([device_body(f"home-{i:04d}", BATTERY_TYPE, APIKEY, location) for i in range(n)])
        with NgsiLdClient(broker_url, TENANT, retry=RetryPolicy(attempts=5, backoff_s=0.5)) as broker:
            broker.upsert_entities(_batteries(n, 0), update=True)
            # The agent adds each device's command attributes in the background after provisioning; a PATCH
            # before that is refused (207), so wait until every battery carries the command.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ready = [e for e in broker.query_entities(type=BATTERY_TYPE, attrs=[f"{COMMAND}_status"])
                         if f"{COMMAND}_status" in e]
                if len(ready) >= n:
                    break
                time.sleep(0.5)
            else:
                raise SystemExit(f"the agent prepared the command on {len(ready)} of {n} batteries in 120 s")
        setup_s = time.perf_counter() - started
        print(f"{n} batteries provisioned in the agent (with {COMMAND}) and reported to the broker in {setup_s:.1f} s")
        counter = CmdCounter(mqtt_server.host, mqtt_server.port)
        time.sleep(1.0)  # the agent's command subscription is in place once provisioning returned; settle

        fleet_log = logging.getLogger("energytwin.fleet")
        fleet_log.addFilter(lambda r: "EXPIRED" not in r.getMessage())  # nothing answers /cmd: results expire
        refusals: list[str] = []
        fleet_log.addFilter(lambda r: not ("refused" in r.getMessage() and refusals.append(r.getMessage()) is None))
        controller = FleetController(ControllerConfig(broker_url, TENANT, period_s=60.0, stale_periods=100))
        phases: dict[str, list[float]] = {k: [] for k in ("query", "decide", "send", "send_sequential", "publish",
                                                          "cycle", "batch_update")}
        sent_before = 0
        pids = {"broker": procs[0].pid, "agent": procs[1].pid, "controller (this process)": os.getpid()}
        cpu: dict[str, list[float]] = {name: [] for name in pids}
        cmd_latency: list[float] = []
        for r in range(repeats):
            with NgsiLdClient(broker_url, TENANT) as broker:  # a new SoC reading, so each cycle decides anew
                broker.upsert_entities(_batteries(n, r + 1), update=True)
            t0 = time.perf_counter()
            controller._resync()
            t1 = time.perf_counter()
            cycle = controller.state.cycle(time.time())
            t2 = time.perf_counter()
            phases["query"].append(t1 - t0)
            phases["decide"].append(t2 - t1)
            counter.settle()
            before = counter.count
            cpu0 = {name: _cpu_s(pid) for name, pid in pids.items()}
            controller.run_cycle()
            waited = counter.wait_for(before + len(cycle.commands), 60)
            for name, pid in pids.items():  # CPU spent by each process while the cycle's commands went through
                cpu[name].append(_cpu_s(pid) - cpu0[name])  # decide + send (concurrent) + publish: the controller's own cycle
            phases["cycle"].append(controller.metrics.last_cycle_s)
            phases["send"].append(controller.metrics.last_send_s)
            phases["publish"].append(controller.metrics.last_publish_s)
            cmd_latency.append(waited if waited is not None else float("nan"))
            # The same commands one after the other on one connection (the controller before this bench).
            t3 = time.perf_counter()
            for command in cycle.commands:
                controller.client.update_attrs(command.entity_id, {COMMAND: {"type": "Property",
                                                                             "value": command.power_w}})
            phases["send_sequential"].append(time.perf_counter() - t3)
            counter.settle()
            # Not the controller's path: the same setpoints as one batch update (embedded broker only).
            body = [{"id": c.entity_id, "type": BATTERY_TYPE, COMMAND: {"type": "Property", "value": c.power_w}}
                    for c in cycle.commands]
            t4 = time.perf_counter()
            controller.client.upsert_entities(body, update=True)
            phases["batch_update"].append(time.perf_counter() - t4)
            counter.settle()
        refused = controller.metrics.commands_refused
        for reason in sorted({r.split(": ", 1)[-1] for r in refusals})[:5]:
            print(f"  refused: {reason}")
        print(f"  /cmd messages seen: {counter.count}")
        sent = controller.metrics.commands_sent - sent_before
        controller.client.close()
        load_after = os.getloadavg()

        med = {k: _median_ms(v) for k, v in phases.items()}
        live_ms = med["query"] + med["cycle"]
        print(f"live controller cycle, {n} batteries (median of {repeats}):")
        print(f"  query (paged GET, fiware_client)     {med['query']:9.1f} ms")
        print(f"  decide (the rule; decision only)     {med['decide']:9.2f} ms   <- baseline, same run")
        print(f"  send {n} PATCHes, {controller.config.send_concurrency} in flight      {med['send']:9.1f} ms"
              f"   ({med['send'] / n:.2f} ms per command)")
        print(f"  send {n} PATCHes, one at a time     {med['send_sequential']:9.1f} ms")
        print(f"  publish (batch upsert, {n + 1} entities) {med['publish']:9.1f} ms")
        print(f"  cycle without query (decide+send+publish) {med['cycle']:9.1f} ms; with the resync query "
              f"{live_ms:.1f} ms; ratio to the decision alone {med['cycle'] / med['decide']:.0f}x")
        print(f"  for comparison: the setpoints as one batch update {med['batch_update']:.1f} ms (not forwarded "
              f"to an agent by Orion-LD)")
        print(f"  every command on the agent's /cmd {statistics.median(cmd_latency):.2f} s after the cycle began"
              f" sending; {sent} accepted, {refused} refused")
        cpu_med = {name: round(statistics.median(v), 2) for name, v in cpu.items()}
        print("  CPU seconds per cycle until every /cmd was out: "
              + ", ".join(f"{name} {v:.2f}" for name, v in cpu_med.items()))
        print(f"  load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (2-core shared machine)")
        figures = {"batteries": n, "repeats": repeats, "quick": args.quick, "setup_s": round(setup_s, 1),
                   "median_ms": med, "live_cycle_with_query_ms": round(live_ms, 1),
                   "cycle_to_decision_ratio": round(med["cycle"] / med["decide"], 1),
                   "send_concurrency": controller.config.send_concurrency,
                   "cmd_all_published_s": round(statistics.median(cmd_latency), 2),
                   "cpu_s_per_cycle": cpu_med, "commands_accepted": sent, "commands_refused": refused,
                   "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
                   "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)  # a --quick run says so in "quick"
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {RESULTS}")
        return 0 if refused == 0 else 1
    finally:
        if counter is not None:
            counter.close()
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        mqtt_server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
