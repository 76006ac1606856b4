"""Benchmark: the agent's counter-continuity stage on the MQTT thread, this tree against the previous code.

`CounterContinuity.apply` runs on the agent's MQTT thread for every message. The previous version wrote the
whole counter state (one row per meter, cumulative attribute and phase: ~12,000 rows at 1,000 meters) inside
`apply` every 2 s, stalling the intake of every meter; this tree writes it from its own thread. Both versions are
fed the same firmware-shaped fragments (1,000 meters x 1 Hz, 4 cumulative attributes x 3 phases, simulated
time) in the same run; the figure is the time `apply` holds the MQTT thread, per message and its p99/max (the
stall a meter sees), with the state on disk as in the agent.

Also: the CPU of one periodic write of the counter state, one row per counter and phase (a9bb370) against one
row per entity (this tree), alternating in the same run.

Usage: python bench/agent_continuity.py [--quick] [--meters N] [--seconds S]
Writes bench/results/agent_continuity.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._e2e import RESULTS, percentile
from twin_service.agent import continuity as current

BASELINE_COMMIT = "f38d2f5"  # the last commit with the flush inside apply()
FLUSH_BASELINE_COMMIT = "a9bb370"  # the last commit writing one row per counter and phase (4acf108: one per entity)
ATTRIBUTES = ("activeEnergyImport", "activeEnergyExport", "reactiveEnergyImport", "reactiveEnergyExport")


def baseline_module(commit: str = BASELINE_COMMIT) -> types.ModuleType | None:
    """twin_service/agent/continuity.py as it was at `commit` (None in a clone without that history)."""
    try:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:twin_service/agent/continuity.py"],
                                capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    module = types.ModuleType(f"bench_continuity_{commit}")
    module.__dict__["__name__"] = module.__name__
    sys.modules[module.__name__] = module
    exec(compile(source, "continuity@" + commit, "exec"), module.__dict__)  # noqa: S102
    return module


def _stamp(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_780_000_000 + second)) + ".000Z"


def _fragment(meter: int, second: int, stamp: str, attributes: list[str]) -> dict[str, Any]:
    """One meter's counters at `second`: each rising slowly, per phase, as the agent maps them."""
    value = 1000.0 + second * 0.01 + meter
    fragment: dict[str, Any] = {"id": f"urn:ngsi-ld:ThreePhaseAcMeasurement:m{meter:04d}",
                                "type": "ThreePhaseAcMeasurement"}
    for name in attributes:
        fragment[name] = {"type": "Property", "observedAt": stamp,
                          "value": {"L1": round(value, 3), "L2": round(value + 1, 3), "L3": round(value + 2, 3)}}
    return fragment


def _feed(rule: Any, meters: int, second: int, attributes: list[str]) -> None:
    stamp = _stamp(second)
    for meter in range(meters):
        rule.apply("bench", [_fragment(meter, second, stamp, attributes)])


def flush_cost(modules: dict[str, Any], meters: int, rounds: int, tmp: Path) -> dict[str, float]:
    """CPU of one periodic write of the counter state (every counter moved since the last one), per module:
    the versions alternate round by round, so they see the same machine minutes; median ms per flush."""
    rules = {}
    for name, module in modules.items():
        attributes = [a for a in ATTRIBUTES if a in module.CUMULATIVE_ATTRIBUTES]
        rules[name] = (module.CounterContinuity(tmp / f"flush-{name}.sqlite", flush_interval_s=3600), attributes)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for second in range(rounds + 1):
        for name, (rule, attributes) in rules.items():
            _feed(rule, meters, second, attributes)
            started = time.thread_time()
            rule._write(rule._dirty_rows())  # what the flusher thread does every 2 s
            if second:  # the first write creates the rows
                times[name].append((time.thread_time() - started) * 1000)
    for rule, _ in rules.values():
        rule.close()
    return {name: round(sorted(values)[len(values) // 2], 2) for name, values in times.items()}


def run(module: Any, meters: int, seconds: int, tmp: Path) -> dict[str, Any]:
    attributes = [a for a in ATTRIBUTES if a in module.CUMULATIVE_ATTRIBUTES] or sorted(module.CUMULATIVE_ATTRIBUTES)[:4]
    rule = module.CounterContinuity(tmp / f"{module.__name__}.sqlite")
    times: list[float] = []
    started = time.monotonic()
    for second in range(seconds):
        stamp = _stamp(second)
        for meter in range(meters):
            fragment = _fragment(meter, second, stamp, attributes)
            t0 = time.perf_counter()
            rule.apply("bench", [fragment])
            times.append((time.perf_counter() - t0) * 1000)
        # real time passes between seconds of readings: the 2 s flush interval is wall-clock
        time.sleep(max(0.0, (second + 1) * 1.0 - (time.monotonic() - started)))
    rule.close()
    return {"messages": len(times), "mean_us": round(sum(times) / len(times) * 1000, 1),
            "p99_ms": round(percentile(times, 99), 3), "max_ms": round(max(times), 1),
            "total_s_on_mqtt_thread": round(sum(times) / 1000, 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 meters x 2 s (CI smoke run)")
    parser.add_argument("--meters", type=int)
    parser.add_argument("--seconds", type=int)
    args = parser.parse_args(argv)
    meters = args.meters or (200 if args.quick else 1000)
    seconds = args.seconds or (2 if args.quick else 8)
    result: dict[str, Any] = {"meters": meters, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="bench-continuity-") as tmp:
        old = baseline_module()
        if old is None:
            print(f"baseline skipped: commit {BASELINE_COMMIT} not in this clone's history")
        else:
            result["previous"] = run(old, meters, seconds, Path(tmp))
        result["current"] = run(current, meters, seconds, Path(tmp))
        flush_old = baseline_module(FLUSH_BASELINE_COMMIT)
        if flush_old is not None:
            result["flush_ms"] = flush_cost({"previous": flush_old, "current": current}, meters,
                                            3 if args.quick else 8, Path(tmp))
            result["flush_baseline"] = FLUSH_BASELINE_COMMIT
    for name in ("previous", "current"):
        if name in result:
            r = result[name]
            print(f"{name:>9}: apply() on the MQTT thread {r['mean_us']:.1f} us/message mean, p99 {r['p99_ms']} ms, "
                  f"max {r['max_ms']} ms, {r['total_s_on_mqtt_thread']} s in total for {r['messages']:,} messages")
    if "previous" in result:
        result["ratio_total"] = round(result["previous"]["total_s_on_mqtt_thread"]
                                      / max(result["current"]["total_s_on_mqtt_thread"], 1e-9), 2)
        result["ratio_max"] = round(result["previous"]["max_ms"] / max(result["current"]["max_ms"], 1e-9), 1)
        print(f"previous / current: x{result['ratio_total']} time on the MQTT thread, x{result['ratio_max']} longest stall")
    if "flush_ms" in result:
        flush = result["flush_ms"]
        result["ratio_flush"] = round(flush["current"] / max(flush["previous"], 1e-9), 2)
        print(f"counter-state flush ({meters:,} meters x 12 counters): {flush['previous']} ms CPU one row per counter "
              f"({FLUSH_BASELINE_COMMIT}), {flush['current']} ms one row per entity: x{result['ratio_flush']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "agent_continuity.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
