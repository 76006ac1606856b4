"""How many meter readings the power-quality analytics judge per second.

1. In process: entity -> Reading -> QualityTracker.update() (the work done per notified entity), over clean
   readings and over readings that keep conditions open and records being written (rendered + schema-validated).
2. The service: NGSI-LD notifications of N entities each posted to `POST /notify` of `python -m
   twin_service.quality` running against the embedded broker (the same path the broker's subscription uses).
Also writes an example weekly report chart. Prints a table; JSON and the PNG go under bench/results/.
Compare with the agent's ingest rate (bench/agent_ingest.py): the analytics must keep up with it.

    python bench/quality_eval.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datamodels.measures import measurement_id
from datamodels.readings import reading_from_entity
from datamodels.validation import validate_entity
from twin_service.mqtt_server import free_port, wait_for_port
from twin_service.quality import QualityTracker, SiteLimits, build_report, draw_chart

RESULTS = ROOT / "bench" / "results"
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def entity(device: str, at: datetime, v1: float = 230.0, f: float = 50.0, thd3: float = 0.03) -> dict:
    observed = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def prop(value):
        return {"type": "Property", "value": value, "observedAt": observed}

    return {
        "id": measurement_id(device), "type": "ThreePhaseAcMeasurement",
        "phaseVoltage": prop({"L1": v1, "L2": 231.0, "L3": 229.0}),
        "phaseToPhaseVoltage": prop({"L12": 398.4, "L23": 398.4, "L31": 398.4}),
        "current": prop({"L1": 10.0, "L2": 12.0, "L3": 8.0, "N": 3.5}),
        "frequency": prop(f),
        "thdVoltage": prop({"L1": 0.03, "L2": 0.03, "L3": thd3}),
        "phaseVoltageAngle": prop({"L12": 120.0, "L23": 120.0, "L31": 120.0}),
        "phaseCurrentAngle": prop({"L1": 10.0, "L2": 25.0, "L3": 180.0}),
        "powerQualityStatus": prop({"dipL1": False, "swellL1": False}),
    }


def in_process(n: int, meters: int, disturbed: bool) -> dict:
    entities = []
    for k in range(n):
        device = f"bench-{k % meters:04d}"
        at = T0 + timedelta(seconds=k // meters)
        if disturbed:  # conditions open and close every few readings: records rendered and validated
            phase = (k // meters) % 6
            entities.append(entity(device, at, v1=262.0 if phase < 3 else 230.0, f=50.6 if phase < 2 else 50.0,
                                   thd3=0.09 if phase < 4 else 0.03))
        else:
            entities.append(entity(device, at))
    tracker = QualityTracker(SiteLimits())
    written = 0
    started = time.perf_counter()
    for e in entities:
        for anomaly in tracker.update(reading_from_entity(e)):
            validate_entity(anomaly.to_normalized())
            written += 1
    elapsed = time.perf_counter() - started
    return {"readings": n, "meters": meters, "records_written": written, "seconds": elapsed,
            "evaluations_per_s": n / elapsed}


def through_service(n: int, per_notification: int, meters: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        broker_port, port = free_port(), free_port()
        broker = subprocess.Popen([sys.executable, "-m", "twin_service.broker", "--port", str(broker_port),
                                   "--data-dir", tmp, "--log-level", "warning"], cwd=ROOT)
        service = None
        try:
            wait_for_port("127.0.0.1", broker_port, timeout_s=30, proc=broker)
            service = subprocess.Popen([sys.executable, "-m", "twin_service.quality", "--broker-url",
                                        f"http://127.0.0.1:{broker_port}", "--tenant", "bench", "--listen-port",
                                        str(port), "--log-level", "warning"], cwd=ROOT)
            wait_for_port("127.0.0.1", port, timeout_s=30, proc=service)
            bodies = []
            for b in range(n // per_notification):
                data = [entity(f"bench-{(b * per_notification + j) % meters:04d}",
                               T0 + timedelta(seconds=(b * per_notification + j) // meters),
                               v1=262.0 if b % 50 == 0 else 230.0)
                        for j in range(per_notification)]
                bodies.append(json.dumps({"id": f"urn:ngsi-ld:Notification:{b}", "type": "Notification",
                                          "notifiedAt": "2026-01-05T00:00:00Z", "data": data}))
            with httpx.Client(timeout=30) as client:
                started = time.perf_counter()
                for body in bodies:
                    r = client.post(f"http://127.0.0.1:{port}/notify", content=body,
                                    headers={"Content-Type": "application/json"})
                    r.raise_for_status()
                elapsed = time.perf_counter() - started
                health = client.get(f"http://127.0.0.1:{port}/health").json()
        finally:
            for proc in (service, broker):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
    evaluated = health["evaluations"]
    return {"readings": evaluated, "entities_per_notification": per_notification, "meters": meters,
            "records_written": health["written"], "seconds": elapsed, "evaluations_per_s": evaluated / elapsed}


def example_chart() -> Path:
    """A week with breaches and a dip, drawn as the report draws it."""
    readings = []
    for k in range(1008):
        at = T0 + timedelta(minutes=10 * k)
        e = entity("meter-001", at, v1=256.0 if 200 <= k < 260 else 230.0 + 4.0 * ((k % 144) / 144 - 0.5),
                   f=50.6 if 700 <= k < 706 else 50.0, thd3=0.09 if 800 <= k < 840 else 0.03)
        readings.append(reading_from_entity(e))
    dip = T0 + timedelta(minutes=4000, seconds=30)
    readings += [reading_from_entity(entity("meter-001", dip, v1=150.0)),
                 reading_from_entity(entity("meter-001", dip + timedelta(seconds=2)))]
    readings.sort(key=lambda r: r.observed_at)
    report = build_report(readings, "meter-001", T0, T0 + timedelta(days=7), SiteLimits())
    print(report.text())
    return draw_chart(report, RESULTS / "quality_report_example.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    args = parser.parse_args()
    n = 2_000 if args.quick else 50_000
    rows = {
        "in-process, clean readings": in_process(n, 100, disturbed=False),
        "in-process, conditions opening/closing": in_process(n, 100, disturbed=True),
        "service /notify, 1 entity per notification": through_service(n // 10, 1, 100),
        "service /notify, 50 entities per notification": through_service(n // 2, 50, 100),
    }
    print(f"\n{'case':<48} {'readings':>9} {'written':>8} {'seconds':>8} {'eval/s':>10}")
    for name, row in rows.items():
        print(f"{name:<48} {row['readings']:>9} {row['records_written']:>8} {row['seconds']:>8.2f} "
              f"{row['evaluations_per_s']:>10.0f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality_eval.json").write_text(json.dumps({"quick": args.quick, "results": rows}, indent=2))
    chart = example_chart()
    print(f"\nresults: {RESULTS / 'quality_eval.json'}\nexample report chart: {chart}")


if __name__ == "__main__":
    main()
