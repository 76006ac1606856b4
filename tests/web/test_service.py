"""The page service without a browser: units, derived phasors and unbalance, events, the relay, the API errors."""

from __future__ import annotations

import asyncio

import pytest
from starlette.testclient import TestClient

from datamodels.measures import MEASURES
from twin_service.web import WebConfig, create_app
from twin_service.web._app import period_s
from twin_service.web._live import LiveHub
from twin_service.web._measures import UNIT_SYMBOLS, measures_json
from twin_service.web._readings import event_json, reading_json

T = "2026-01-26T12:00:00.000Z"


def _prop(value, unit=None):
    out = {"type": "Property", "value": value, "observedAt": T}
    if unit:
        out["unitCode"] = unit
    return out


def measurement(**attrs):
    return {"id": "urn:ngsi-ld:ThreePhaseAcMeasurement:m1", "type": "ThreePhaseAcMeasurement", **attrs}


def test_every_unit_of_the_measure_table_has_a_readable_symbol() -> None:
    for measure in MEASURES:
        if measure.unit_code is not None:
            assert measure.unit_code in UNIT_SYMBOLS, f"{measure.attribute}: no symbol for {measure.unit_code}"
    table = measures_json()
    assert table["phaseVoltage"]["unit"] == "V" and table["reactivePower"]["unit"] == "var"
    assert table["current"]["keys"] == ["L1", "L2", "L3", "N"]
    assert set(table) == {m.attribute for m in MEASURES}


def test_phasor_angles_follow_the_meter_angles() -> None:
    # V→I angles 0°, 30° (lagging), 180° (exporting); voltages 120° apart: I1 at 0°, I2 at −120−30 = −150°,
    # I3 at 120−180 = −60°.
    entity = measurement(
        phaseVoltage=_prop({"L1": 230.0, "L2": 230.0, "L3": 230.0}, "VLT"),
        current=_prop({"L1": 10.0, "L2": 5.0, "L3": 8.0}, "AMP"),
        phaseVoltageAngle=_prop({"L12": 120.0, "L23": 120.0, "L31": 120.0}, "DD"),
        phaseCurrentAngle=_prop({"L1": 0.0, "L2": 30.0, "L3": 180.0}, "DD"),
    )
    reading = reading_json(entity)
    assert reading is not None and reading["device"] == "m1" and reading["observedAt"] == T
    assert reading["derived"]["voltagePhasorDeg"] == {"L1": 0.0, "L2": -120.0, "L3": 120.0}
    assert reading["derived"]["currentPhasorDeg"] == {"L1": 0.0, "L2": -150.0, "L3": -60.0}
    assert reading["derived"]["voltageUnbalance"] == pytest.approx(0.0, abs=1e-9)


def test_voltage_unbalance_of_a_one_phase_dip() -> None:
    # L1 at 115 V, L2 and L3 at 230 V, 120° apart: V1 = (115 + 2·230)/3 = 191.67, V2 = (115 − 230)/3 = −38.33,
    # so u2 = 38.33 / 191.67 = 0.2 exactly.
    entity = measurement(phaseVoltage=_prop({"L1": 115.0, "L2": 230.0, "L3": 230.0}, "VLT"),
                         phaseVoltageAngle=_prop({"L12": 120.0, "L23": 120.0, "L31": 120.0}, "DD"))
    assert reading_json(entity)["derived"]["voltageUnbalance"] == pytest.approx(0.2, abs=1e-6)


def test_only_measurements_become_readings() -> None:
    assert reading_json({"id": "urn:ngsi-ld:Anomaly:x", "type": "Anomaly"}) is None
    reading = reading_json(measurement(frequency=_prop(50.01, "HTZ"), somethingElse=_prop(1)))
    assert reading["values"] == {"frequency": 50.01}


def anomaly(status: str = "open") -> dict:
    date = {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-01-26T12:00:00Z"}}
    return {
        "id": "urn:ngsi-ld:Anomaly:m1:voltageLow-L1-1", "type": "Anomaly",
        "anomalousProperty": {"type": "Property", "value": "phaseVoltage"},
        "dateDetected": date, "validFrom": date,
        "detectedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Device:m1"},
        "thresholdBreach": {"type": "Property", "value": [{"dateObserved": "2026-01-26T12:00:00Z",
                                                           "measuredValue": 150.0, "thresholdType": "LOWER",
                                                           "thresholdValue": 207.0}]},
        "severity": {"type": "Property", "value": "high"},
        "description": {"type": "Property", "value": "Voltage dip"},
        "phase": {"type": "Property", "value": "L1"},
        "status": {"type": "Property", "value": status},
        "name": {"type": "Property", "value": "voltageLow"},
    }


def test_an_anomaly_becomes_an_event_of_its_meter() -> None:
    event = event_json(anomaly())
    assert event["device"] == "m1" and event["status"] == "open" and event["severity"] == "high"
    assert event["measuredValue"] == 150.0 and event["thresholdValue"] == 207.0
    assert event["dateDetected"].startswith("2026-01-26T12:00:00")
    assert event_json({"id": "urn:ngsi-ld:Anomaly:broken", "type": "Anomaly"}) is None


def test_period_is_the_median_interval() -> None:
    times = ["2026-01-26T12:00:00Z", "2026-01-26T12:00:01Z", "2026-01-26T12:00:02Z", "2026-01-26T12:00:07Z"]
    assert period_s(times) == 1.0
    assert period_s(times[:1]) is None


def test_the_hub_sends_each_page_only_its_meter_and_cuts_off_a_page_that_falls_behind() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        meter_page = hub.stream("m1")
        overview = hub.stream(None)
        assert "event: hello" in await anext(meter_page)
        assert "event: hello" in await anext(overview)
        hub.publish("reading", "m2", {"device": "m2"})
        hub.publish("reading", "m1", {"device": "m1"})
        assert '"device":"m1"' in await anext(meter_page)
        assert '"device":"m2"' in await anext(overview)
        for i in range(600):  # more than a page's queue holds: that page must reconnect, not silently skip
            hub.publish("reading", "m1", {"device": "m1", "i": i})
        assert hub.cut_off == 2
        with pytest.raises(StopAsyncIteration):
            await anext(meter_page)

    asyncio.run(scenario())


def test_notify_relays_and_errors_have_one_shape() -> None:
    # broker on a closed port: the API answers 503 with a reason instead of a stack trace
    app = create_app(WebConfig(broker_url="http://127.0.0.1:9", tenant="t"), subscribe=False)
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "degraded"
        r = client.get("/api/meters/m1")
        assert r.status_code == 503 and r.json()["title"] == "Twin unavailable"
        assert client.get("/api/meters?dayStart=yesterday").status_code == 400
        assert client.post("/notify", content=b"not json").status_code == 400
        assert client.post("/notify", json={"data": [measurement(frequency=_prop(50.0))]}).status_code == 204
        assert client.get("/health").json()["notifications"] == 1
        assert client.get("/").headers["content-type"].startswith("text/html")
        assert client.get("/static/meter.js").status_code == 200
        assert len(client.get("/api/measures").json()) == len(MEASURES)
