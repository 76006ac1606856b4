"""Which limits a reading breaches, how bad that is, and the open/update/close life of each condition.

`evaluate()` is pure: a reading, the limits and the conditions already open in, the conditions active at this
reading out (an open condition stays active until its value is back inside the limit by the hysteresis, so a
value hovering at the limit does not open and close records on every reading). `QualityTracker` turns that into
Anomaly records: one per (meter, condition, phase), opened at the first breach, rewritten while it lasts when it
worsens (or every `update_interval_s`), closed at the first reading back inside.

Voltage magnitude is one condition per phase and direction: a breach of the supply voltage band (Un ±10 % by
default, which is also the dip/swell threshold) is reported as a dip or swell while it lasts up to one minute and
as an under- or over-voltage beyond that (docs/power-quality.md §1.2: dips and swells last 10 ms … 1 min), so one disturbance is
one record. Interruptions (all phases below 5 %) are one record for the three phases.

Two conditions come from the meter's own hardware detectors (ADE9000 STATUS1, reported in `powerQualityStatus`):
overcurrent (OI: the half-cycle rms current above OILVL, set from the meter's `OVERCURRENT_A`, which provisioning
carries as the measurement's `overcurrentLimit`) and phase-sequence error (SEQERR: voltage zero crossings not in
the order A, B, C; ADE9000 datasheet Rev. B, "Phase Sequence Error Detection"). Both are judged on every reading,
voltage events or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from datamodels.anomaly import Anomaly, ThresholdBreach, severity_rank
from datamodels.readings import PHASES, Reading

from ._limits import SiteLimits

ConditionKey = tuple[str, str]  # (kind, phase)

# Conditions on the rms voltage itself, and those held (neither judged nor closed) while one of them is active.
VOLTAGE_KINDS = frozenset({"voltageLow", "voltageHigh", "interruption"})
HELD_DURING_VOLTAGE_EVENTS = frozenset({"thdVoltage", "voltageUnbalance", "currentUnbalance", "neutralCurrent"})
ThresholdType = Literal["UPPER", "LOWER"]

# kind -> (anomalousProperty, UPPER/LOWER)
KINDS: dict[str, tuple[str, ThresholdType]] = {
    "voltageLow": ("phaseVoltage", "LOWER"),
    "voltageHigh": ("phaseVoltage", "UPPER"),
    "interruption": ("phaseVoltage", "LOWER"),
    "frequencyLow": ("frequency", "LOWER"),
    "frequencyHigh": ("frequency", "UPPER"),
    "thdVoltage": ("thdVoltage", "UPPER"),
    "voltageUnbalance": ("voltageUnbalance", "UPPER"),
    "currentUnbalance": ("currentUnbalance", "UPPER"),
    "neutralCurrent": ("current", "UPPER"),
    "overcurrent": ("current", "UPPER"),
    "phaseSequence": ("phaseVoltageAngle", "UPPER"),
}

# Positive sequence: VA leads VB by 120°. A-C-B wiring puts VB 240° behind VA (phaseVoltageAngle L12).
POSITIVE_SEQUENCE_ANGLE_DEG = 120.0
_SEQUENCE_TOLERANCE_DEG = 60.0


@dataclass(frozen=True)
class Observation:
    """One condition active at one reading: the measured value against the limit it breaches."""

    kind: str
    phase: str
    measured: float
    limit: float
    severity: str
    flagged_by_meter: bool = False

    @property
    def key(self) -> ConditionKey:
        return self.kind, self.phase

    @property
    def anomalous_property(self) -> str:
        return KINDS[self.kind][0]

    @property
    def threshold_type(self) -> ThresholdType:
        return KINDS[self.kind][1]


# --- severity (the SDM Alert enum), always against the EN 50160 figures -----------------------------------------
def voltage_low_severity(voltage_v: float, en: SiteLimits) -> str:
    """Residual voltage u = U/Un: ≥ 90 % low (an in-house limit only), 70–90 % medium, 40–70 % high, < 40 %
    critical. The bands follow the EN 50160 dip table rows (A/B, C, D/X; docs/power-quality.md §1.2)."""
    u = voltage_v / en.nominal_voltage_v
    if u >= en.dip_threshold_fraction:
        return "low"
    if u >= 0.70:
        return "medium"
    if u >= 0.40:
        return "high"
    return "critical"


def voltage_high_severity(voltage_v: float, en: SiteLimits) -> str:
    """u ≤ 110 % low (in-house limit only), 110–120 % medium, ≥ 120 % high (swell table rows, docs/power-quality.md §1.2)."""
    u = voltage_v / en.nominal_voltage_v
    if u <= en.swell_threshold_fraction:
        return "low"
    if u < 1.20:
        return "medium"
    return "high"


def frequency_severity(frequency_hz: float, en: SiteLimits) -> str:
    """Inside ±1 % low (in-house only), outside ±1 % medium, outside +4 %/−6 % (never allowed) critical."""
    if frequency_hz > en.frequency_wide_upper_hz or frequency_hz < en.frequency_wide_lower_hz:
        return "critical"
    if frequency_hz > en.frequency_upper_hz or frequency_hz < en.frequency_lower_hz:
        return "medium"
    return "low"


def ratio_severity(value: float, en_limit: float) -> str:
    """THD or unbalance: within the EN limit low (in-house only), up to twice the limit medium, beyond high."""
    if value <= en_limit:
        return "low"
    if value <= 2.0 * en_limit:
        return "medium"
    return "high"


def dip_class(residual_fraction: float, duration_s: float) -> str:
    """EN 50160 dip table cell (A1 … X5) for a residual voltage u (fraction of Udin) and a duration (docs/power-quality.md §1.2)."""
    if residual_fraction >= 0.80:
        row = "A"
    elif residual_fraction >= 0.70:
        row = "B"
    elif residual_fraction >= 0.40:
        row = "C"
    elif residual_fraction >= 0.05:
        row = "D"
    else:
        row = "X"
    for column, upper_s in enumerate((0.2, 0.5, 1.0, 5.0), start=1):
        if duration_s <= upper_s:
            return f"{row}{column}"
    return f"{row}5"


# --- evaluation -------------------------------------------------------------------------------------------------
def evaluate(reading: Reading, limits: SiteLimits, open_keys: frozenset[ConditionKey] = frozenset()
             ) -> list[Observation]:
    """The conditions active at this reading; those in `open_keys` stay active inside the hysteresis band."""
    en = limits.en50160()
    active: list[Observation] = []
    volts = reading.voltage_v
    hyst_v = limits.hysteresis_v

    interrupted = reading.has_three_voltages() and (
        max(volts.values()) < limits.interruption_threshold_v
        + (hyst_v if ("interruption", "all") in open_keys else 0.0))
    if interrupted:
        active.append(Observation("interruption", "all", min(volts[p] for p in PHASES),
                                  limits.interruption_threshold_v, "critical"))

    for phase in PHASES:
        if phase not in volts:
            continue
        v = volts[phase]
        low_open = ("voltageLow", phase) in open_keys
        dip_flag = reading.flags.get(f"dip{phase}", False)
        low_limit = limits.voltage_lower_v
        if (v < low_limit or dip_flag or (low_open and v < low_limit + hyst_v)) and (low_open or not interrupted):
            active.append(Observation("voltageLow", phase, v, low_limit,
                                      voltage_low_severity(v, en) if v < low_limit else "low",
                                      flagged_by_meter=dip_flag))
        high_open = ("voltageHigh", phase) in open_keys
        swell_flag = reading.flags.get(f"swell{phase}", False)
        high_limit = limits.voltage_upper_v
        if v > high_limit or swell_flag or (high_open and v > high_limit - hyst_v):
            active.append(Observation("voltageHigh", phase, v, high_limit,
                                      voltage_high_severity(v, en) if v > high_limit else "low",
                                      flagged_by_meter=swell_flag))

    f = reading.frequency_hz
    if f is not None:
        hyst_f = limits.frequency_hysteresis_hz
        if f > limits.frequency_upper_hz or (("frequencyHigh", "all") in open_keys
                                            and f > limits.frequency_upper_hz - hyst_f):
            active.append(Observation("frequencyHigh", "all", f, limits.frequency_upper_hz,
                                      frequency_severity(f, en)))
        if f < limits.frequency_lower_hz or (("frequencyLow", "all") in open_keys
                                            and f < limits.frequency_lower_hz + hyst_f):
            active.append(Observation("frequencyLow", "all", f, limits.frequency_lower_hz,
                                      frequency_severity(f, en)))

    active.extend(_hardware_flags(reading, limits, open_keys))
    # Phases wired A-C-B make the negative-sequence component the whole voltage: that is the sequence record, not
    # a 100 % unbalance.
    sequence_error = any(o.kind == "phaseSequence" for o in active)

    # IEC 61000-4-30 flagging applied live: while an rms voltage condition is active, the unbalance and THD it
    # drags along are not judged (a one-phase dip to 50 % is a 20 % unbalance), so one disturbance is one record.
    if any(o.kind in VOLTAGE_KINDS for o in active):
        return active

    for phase in PHASES:
        thd = reading.thd_voltage.get(phase)
        if thd is None:
            continue
        if thd > limits.thd_voltage_max or (("thdVoltage", phase) in open_keys
                                            and thd > limits.thd_voltage_max - limits.thd_hysteresis):
            active.append(Observation("thdVoltage", phase, thd, limits.thd_voltage_max,
                                      ratio_severity(thd, en.thd_voltage_max)))

    u2 = None if sequence_error else reading.voltage_unbalance()
    if u2 is not None and (u2 > limits.unbalance_max or (("voltageUnbalance", "all") in open_keys
                                                         and u2 > limits.unbalance_max - limits.unbalance_hysteresis)):
        active.append(Observation("voltageUnbalance", "all", u2, limits.unbalance_max,
                                  ratio_severity(u2, en.unbalance_max)))

    if limits.current_unbalance_max is not None and not sequence_error:
        i2 = reading.current_unbalance()
        if i2 is not None and (i2 > limits.current_unbalance_max or (
                ("currentUnbalance", "all") in open_keys and i2 > 0.95 * limits.current_unbalance_max)):
            active.append(Observation("currentUnbalance", "all", i2, limits.current_unbalance_max, "medium"))

    ratio_max = limits.neutral_to_phase_ratio_max
    neutral = reading.current_a.get("N")
    phase_currents = [reading.current_a[p] for p in PHASES if p in reading.current_a]
    if ratio_max is not None and neutral is not None and len(phase_currents) == 3 \
            and neutral >= limits.neutral_min_current_a:
        limit_a = ratio_max * max(phase_currents)
        if neutral > limit_a or (("neutralCurrent", "N") in open_keys and neutral > 0.95 * limit_a):
            active.append(Observation("neutralCurrent", "N", neutral, limit_a, "medium"))
    return active


def _hardware_flags(reading: Reading, limits: SiteLimits, open_keys: frozenset[ConditionKey]) -> list[Observation]:
    """Overcurrent per phase (the meter's OI flag or its rms current above the limit) and phase sequence."""
    out: list[Observation] = []
    flagged = reading.flags.get("overcurrent", False)
    limit_a = reading.overcurrent_limit_a or limits.overcurrent_a
    if limit_a is not None:
        over = []
        for phase in PHASES:
            amps = reading.current_a.get(phase)
            if amps is None:
                continue
            held = ("overcurrent", phase) in open_keys and amps > 0.95 * limit_a
            if amps > limit_a or held:
                over.append(Observation("overcurrent", phase, amps, limit_a, "high", flagged_by_meter=flagged))
        if flagged and not over:
            # The chip compares half-cycle rms with OILVL: a peak the one-second rms does not show.
            amps = max((reading.current_a.get(p, 0.0) for p in PHASES), default=0.0)
            over.append(Observation("overcurrent", "all", amps, limit_a, "high", flagged_by_meter=True))
        out.extend(over)
    elif flagged:
        amps = max((reading.current_a.get(p, 0.0) for p in PHASES), default=0.0)
        out.append(Observation("overcurrent", "all", amps, amps, "high", flagged_by_meter=True))
    angle = reading.voltage_angle_deg.get("L12")
    reversed_ = angle is not None and abs(angle - 240.0) < _SEQUENCE_TOLERANCE_DEG
    if reading.flags.get("phaseSequenceError", False) or reversed_:
        measured = angle if angle is not None else 240.0
        out.append(Observation("phaseSequence", "all", measured, POSITIVE_SEQUENCE_ANGLE_DEG, "high",
                               flagged_by_meter=reading.flags.get("phaseSequenceError", False)))
    return out


# --- records ----------------------------------------------------------------------------------------------------
def anomaly_id(device_id: str, kind: str, phase: str, started_at: datetime) -> str:
    """Deterministic id: the same condition start always maps to the same entity (no duplicate on replay)."""
    stamp = started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S") + f"{started_at.microsecond // 1000:03d}Z"
    return f"urn:ngsi-ld:Anomaly:{device_id}:{kind}-{phase}-{stamp}"


def _fmt(value: float, kind: str) -> str:
    prop = KINDS[kind][0]
    if prop in ("thdVoltage", "voltageUnbalance", "currentUnbalance"):
        return f"{value * 100:.2f} %"
    if prop == "frequency":
        return f"{value:.2f} Hz"
    if prop == "current":
        return f"{value:.1f} A"
    if prop == "phaseVoltageAngle":
        return f"{value:.1f}°"
    return f"{value:.1f} V"


def label(kind: str, worst: float, duration_s: float, limits: SiteLimits) -> str:
    """What a building manager calls the condition (dip vs under-voltage by duration, docs/power-quality.md §1.2)."""
    if kind == "voltageLow":
        if worst >= limits.en50160().dip_threshold_v:
            return "Under-voltage (in-house limit)"
        if duration_s <= limits.event_max_duration_s:
            return f"Voltage dip (class {dip_class(worst / limits.nominal_voltage_v, duration_s)})"
        return "Under-voltage"
    if kind == "voltageHigh":
        if worst <= limits.en50160().swell_threshold_v:
            return "Over-voltage (in-house limit)"
        return "Voltage swell" if duration_s <= limits.event_max_duration_s else "Over-voltage"
    return {
        "interruption": "Supply interruption" + (" (short)" if duration_s <= 180 else " (long)"),
        "frequencyLow": "Under-frequency",
        "frequencyHigh": "Over-frequency",
        "thdVoltage": "Voltage harmonic distortion (THD)",
        "voltageUnbalance": "Voltage unbalance",
        "currentUnbalance": "Current unbalance",
        "neutralCurrent": "Neutral current above the largest phase current",
        "overcurrent": "Overcurrent",
        "phaseSequence": "Phase-sequence error (phases not in the order L1, L2, L3)",
    }[kind]


@dataclass
class OpenCondition:
    """A condition in progress and what its record says so far."""

    device_id: str
    kind: str
    phase: str
    entity_id: str
    detected_by: str
    started_at: datetime
    first: ThresholdBreach
    worst: ThresholdBreach
    latest: ThresholdBreach
    severity: str
    flagged_by_meter: bool = False
    last_written_at: datetime | None = None

    def is_worse(self, measured: float) -> bool:
        if KINDS[self.kind][1] == "UPPER":
            return measured > self.worst.measuredValue
        return measured < self.worst.measuredValue

    def to_anomaly(self, limits: SiteLimits, ended_at: datetime | None = None) -> Anomaly:
        last = ended_at or _as_datetime(self.latest.dateObserved)
        duration_s = (last - self.started_at).total_seconds()
        name = label(self.kind, self.worst.measuredValue, duration_s, limits)
        where = "all three phases" if self.phase == "all" else self.phase
        direction = "above" if KINDS[self.kind][1] == "UPPER" else "below"
        worst_word = "highest" if direction == "above" else "lowest"
        meter_note = "; also flagged by the meter's detector" if self.flagged_by_meter else ""
        if ended_at is None:
            text = (f"{name} on {where} at {self.device_id}: {_fmt(self.latest.measuredValue, self.kind)} "
                    f"{direction} the limit {_fmt(self.worst.thresholdValue, self.kind)} ({worst_word} "
                    f"{_fmt(self.worst.measuredValue, self.kind)}), ongoing for {duration_s:.1f} s{meter_note}.")
        else:
            text = (f"{name} on {where} at {self.device_id} ended: {worst_word} "
                    f"{_fmt(self.worst.measuredValue, self.kind)} against the limit "
                    f"{_fmt(self.worst.thresholdValue, self.kind)}, lasted {duration_s:.1f} s{meter_note}.")
        breaches = [self.first]
        for breach in (self.worst, self.latest):
            if breach not in breaches:
                breaches.append(breach)
        return Anomaly(
            id=self.entity_id,
            anomalousProperty=KINDS[self.kind][0],
            dateDetected=self.first.dateObserved,
            detectedBy=self.detected_by,
            thresholdBreach=breaches,
            severity=self.severity,  # type: ignore[arg-type]
            description=text,
            phase=self.phase,
            status="open" if ended_at is None else "closed",
            validFrom=self.first.dateObserved,
            validTo=ended_at,
            name=self.kind,
            source=f"urn:ngsi-ld:ThreePhaseAcMeasurement:{self.device_id}",
        )


def _as_datetime(moment: datetime | str) -> datetime:
    if isinstance(moment, datetime):
        return moment
    return datetime.fromisoformat(moment)


def _breach(observation: Observation, at: datetime) -> ThresholdBreach:
    return ThresholdBreach(dateObserved=at, measuredValue=round(observation.measured, 6),
                           thresholdType=observation.threshold_type, thresholdValue=round(observation.limit, 6))


@dataclass
class QualityTracker:
    """Conditions per meter across readings; `update()` returns the Anomaly records to write."""

    limits: SiteLimits = field(default_factory=SiteLimits)
    open: dict[tuple[str, str, str], OpenCondition] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    evaluations: int = 0

    def open_keys(self, device_id: str) -> frozenset[ConditionKey]:
        return frozenset((k, p) for (d, k, p) in self.open if d == device_id)

    def resume(self, anomalies: list[Anomaly]) -> int:
        """Adopt open records written before a restart so an ongoing condition keeps its record; returns count."""
        adopted = 0
        for anomaly in anomalies:
            if anomaly.status != "open" or anomaly.name not in KINDS or not anomaly.source:
                continue
            device_id = anomaly.source.rsplit(":", 1)[-1]
            breaches = anomaly.thresholdBreach or []
            if not breaches:
                continue
            upper = KINDS[anomaly.name][1] == "UPPER"
            worst = (max if upper else min)(breaches, key=lambda b: b.measuredValue)
            started = _as_datetime(anomaly.validFrom or anomaly.dateDetected)
            latest = max(breaches, key=lambda b: _as_datetime(b.dateObserved))
            self.open[(device_id, anomaly.name, anomaly.phase)] = OpenCondition(
                device_id, anomaly.name, anomaly.phase, anomaly.id, anomaly.detectedBy, started,
                breaches[0], worst, latest, anomaly.severity, last_written_at=_as_datetime(latest.dateObserved))
            last = _as_datetime(latest.dateObserved)
            if device_id not in self.last_seen or self.last_seen[device_id] < last:
                self.last_seen[device_id] = last
            adopted += 1
        return adopted

    def update(self, reading: Reading) -> list[Anomaly]:
        """Evaluate one reading; returns new, changed and closed records (nothing for a stale or repeated one)."""
        device = reading.device_id
        at = reading.observed_at
        previous = self.last_seen.get(device)
        if previous is not None and at <= previous:
            return []  # redelivered or out of order: already judged a later state
        self.last_seen[device] = at
        self.evaluations += 1
        active = {o.key: o for o in evaluate(reading, self.limits, self.open_keys(device))}
        flagged = any(kind in VOLTAGE_KINDS for kind, _ in active)
        out: list[Anomaly] = []
        for key in sorted(self.open_keys(device) - set(active)):
            if flagged and key[0] in HELD_DURING_VOLTAGE_EVENTS:
                continue  # not judged during a voltage event: stays as it was
            condition = self.open.pop((device, *key))
            out.append(condition.to_anomaly(self.limits, ended_at=at))
        for key, observation in active.items():
            breach = _breach(observation, at)
            condition = self.open.get((device, *key))
            if condition is None:
                condition = OpenCondition(device, observation.kind, observation.phase,
                                          anomaly_id(device, observation.kind, observation.phase, at),
                                          reading.detected_by, at, breach, breach, breach, observation.severity,
                                          observation.flagged_by_meter)
                self.open[(device, *key)] = condition
                changed = True
            else:
                changed = False
                condition.latest = breach
                if condition.is_worse(observation.measured):
                    condition.worst = breach
                    changed = True
                if severity_rank(observation.severity) > severity_rank(condition.severity):
                    condition.severity = observation.severity
                    changed = True
                if observation.flagged_by_meter and not condition.flagged_by_meter:
                    condition.flagged_by_meter = True
                    changed = True
                last = condition.last_written_at
                if last is None or (at - last).total_seconds() >= self.limits.update_interval_s:
                    changed = True
            if changed:
                condition.last_written_at = at
                out.append(condition.to_anomaly(self.limits))
        return out
