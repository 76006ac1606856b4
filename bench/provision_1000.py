"""Benchmark: `energytwin provision` of 1,000 meters against the embedded agent + broker (target < 30 s).

Prints the time of the first run (everything created) and of the second (nothing to change).
Usage: python bench/provision_1000.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_ingest import inventory

from provisioning.inventory import parse_inventory
from provisioning.sync import Provisioner
from twin_service.mqtt_server import free_port, start_mqtt_server, wait_for_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 meters instead of 1,000")
    meters = 200 if parser.parse_args().quick else 1000
    work = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    mqtt_server = start_mqtt_server(work / "mqtt", port=free_port())
    broker_port, north = free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--host", "127.0.0.1",
                               "--port", str(broker_port), "--data-dir", str(work / "broker")])]
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "twin_service.agent", "--north-port", str(north), "--mqtt-host", mqtt_server.host,
         "--mqtt-port", str(mqtt_server.port), "--broker-url", f"http://127.0.0.1:{broker_port}",
         "--data-dir", str(work / "agent"), "--log-level", "WARNING"]))
    try:
        wait_for_port("127.0.0.1", broker_port, 15, procs[0])
        wait_for_port("127.0.0.1", north, 15, procs[1])
        wanted = parse_inventory(inventory(meters))
        figures: dict[str, float | int] = {"meters": meters}
        for label in ("first run (create)", "second run (no change)"):
            start = time.perf_counter()
            with Provisioner(f"http://127.0.0.1:{north}", f"http://127.0.0.1:{broker_port}") as provisioner:
                plan = provisioner.plan(wanted)
                for action in plan.changes():
                    assert action.run is not None
                    action.run()
            elapsed = time.perf_counter() - start
            print(f"provision {meters} meters, {label}: {elapsed:.2f} s ({len(plan.changes())} requests to write)")
            key = "create" if label.startswith("first") else "rerun_no_change"
            figures[f"{key}_s"] = round(elapsed, 2)
            figures[f"{key}_requests"] = len(plan.changes())
        out = Path(__file__).resolve().parent / "results" / "provision_1000.json"
        out.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(15)
        mqtt_server.stop()


if __name__ == "__main__":
    main()
