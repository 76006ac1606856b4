"""Overcurrent and phase-sequence error: the ADE9000's own detectors open Anomaly records like the other
conditions, with the overcurrent limit the meter is configured with (carried in the twin as overcurrentLimit)."""

from __future__ import annotations

from datetime import UTC, datetime

from datamodels.readings import reading_from_entity
from datamodels.validation import validate_entity
from firmware.emulator.ade9000_model import PhaseInput
from firmware.emulator.harness import MeterConfig, MeterHarness
from provisioning.inventory import Meter, Site
from twin_service.agent.mapping import map_payload
from twin_service.agent.models import StaticAttribute
from twin_service.agent.registry import ResolvedDevice
from twin_service.quality._conditions import QualityTracker
from twin_service.quality._limits import SiteLimits

from .support import T0, entity, seconds


def run(tracker: QualityTracker, entities: list[dict]) -> dict[str, list]:
    records: dict[str, list] = {}
    for e in entities:
        for anomaly in tracker.update(reading_from_entity(e)):
            validate_entity(anomaly.to_normalized())
            records.setdefault(anomaly.id, []).append(anomaly)
    return records


def with_limit(e: dict, amps: float) -> dict:
    e["overcurrentLimit"] = {"type": "Property", "value": amps, "unitCode": "AMP"}
    return e


def test_current_above_the_meters_limit_opens_one_record_per_phase() -> None:
    tracker = QualityTracker(SiteLimits())
    entities = [with_limit(entity("m1", T0 + seconds(k), i=(i1, 10.0, 10.0, None)), 63.0)
                for k, i1 in enumerate((10.0, 70.0, 75.0, 61.0, 40.0))]
    records = run(tracker, entities)
    assert len(records) == 1
    (history,) = records.values()
    first, last = history[0], history[-1]
    assert first.name == "overcurrent" and first.phase == "L1" and first.anomalousProperty == "current"
    assert first.severity == "high" and first.thresholdBreach[0].thresholdValue == 63.0
    # 61 A is inside the 5 % hysteresis: still open; 40 A closes it with the worst value kept.
    assert last.status == "closed" and max(b.measuredValue for b in last.thresholdBreach) == 75.0
    assert last.validTo == T0 + seconds(4)


def test_the_meters_overcurrent_flag_alone_opens_a_record() -> None:
    tracker = QualityTracker(SiteLimits())
    entities = [with_limit(entity("m1", T0, flags={"overcurrent": False}), 63.0),
                with_limit(entity("m1", T0 + seconds(1), flags={"overcurrent": True}), 63.0),
                with_limit(entity("m1", T0 + seconds(2), flags={"overcurrent": False}), 63.0)]
    (history,) = run(tracker, entities).values()
    assert history[0].phase == "all" and "flagged by the meter" in history[0].description
    assert history[-1].status == "closed"


def test_without_a_limit_only_the_flag_counts() -> None:
    tracker = QualityTracker(SiteLimits())
    assert run(tracker, [entity("m1", T0, i=(500.0, 10.0, 10.0, None))]) == {}
    site = QualityTracker(SiteLimits(overcurrent_a=100.0))  # a site-wide default applies
    assert len(run(site, [entity("m1", T0, i=(500.0, 10.0, 10.0, None))])) == 1


def test_phase_sequence_error_opens_and_closes_a_record() -> None:
    tracker = QualityTracker(SiteLimits())
    entities = [entity("m1", T0),
                entity("m1", T0 + seconds(1), avv=(240.0, 240.0, 240.0), flags={"phaseSequenceError": True}),
                entity("m1", T0 + seconds(2), avv=(240.0, 240.0, 240.0), flags={"phaseSequenceError": True}),
                entity("m1", T0 + seconds(3))]
    (history,) = run(tracker, entities).values()
    assert history[0].name == "phaseSequence" and history[0].anomalousProperty == "phaseVoltageAngle"
    assert history[0].thresholdBreach[0].measuredValue == 240.0
    assert history[0].thresholdBreach[0].thresholdValue == 120.0
    assert history[-1].status == "closed" and "Phase-sequence error" in history[-1].description


def test_provisioning_carries_the_meters_overcurrent_limit() -> None:
    from provisioning.inventory import Tenant
    from provisioning.sync import device_body

    meter = Meter(device_id="m1", nominal_voltage_v=230, nominal_frequency_hz=50, ct_primary_a=100,
                  overcurrent_a=80)
    tenant = Tenant(service="t", groups=[{"apikey": "k"}])
    statics = {s["name"]: s for s in device_body(tenant, Site(id="s", meters=[meter]), meter)["static_attributes"]}
    assert statics["overcurrentLimit"]["value"] == 80
    assert statics["overcurrentLimit"]["metadata"]["unitCode"]["value"] == "AMP"


def test_the_chips_flags_travel_from_the_firmware_to_anomaly_records() -> None:
    """ADE9000 model -> real firmware under MicroPython -> agent mapping -> quality: OI and SEQERR records."""
    device = ResolvedDevice("t", "/", "m-hw", "urn:ngsi-ld:ThreePhaseAcMeasurement:m-hw", "ThreePhaseAcMeasurement",
                            True, (), (StaticAttribute(name="overcurrentLimit", type="Number", value=80,
                                                       metadata={"unitCode": {"type": "Text", "value": "AMP"}}),))
    tracker = QualityTracker(SiteLimits())
    kinds: set[tuple[str, str]] = set()
    with MeterHarness(MeterConfig(device_id="m-hw", overcurrent_a=80.0)) as h:
        for k in range(3):
            h.model.set_phase(k, PhaseInput(230.0, 10.0, 0.0))
        h.boot()
        h.cycle(1.0)
        h.model.set_phase(0, PhaseInput(230.0, 95.0, 0.0))  # above OILVL (80 A)
        h.model.set_negative_sequence(True)  # phases wired A-C-B
        for _ in range(2):
            h.cycle(1.0)
        for message in list(h.published):
            mapped = map_payload(device, message.payload, datetime.now(UTC))
            for fragment in mapped.fragments:
                for anomaly in tracker.update(reading_from_entity(fragment)):
                    kinds.add((anomaly.name, anomaly.phase))
                    if anomaly.name == "overcurrent":
                        assert anomaly.thresholdBreach[0].thresholdValue == 80
                        assert "flagged by the meter" in anomaly.description
    assert ("overcurrent", "L1") in kinds and ("phaseSequence", "all") in kinds
