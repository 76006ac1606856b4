# IoT Agent JSON payloads (docs/architecture.md, "The meter contract"): register codes -> the data model's units, converted here once per
# publish (never per sample). Keys are listed in wire.py, which a test holds against datamodels/measures.py.
import json
from math import cos, sqrt

from ade9000 import ANGL_VI, ANGL_VV, EAE, EAI, ERE, ERI, ESE, ESI, IRMS, ITHD, NIRMS, PER_PHASE, PERIOD, PF
from ade9000 import VA, VAR, VRMS, VTHD, WATT
from wire import CLOCK_SYNCED, DEVICE_STATE, TIME_INSTANT, pq_flags

_PHASES = ("L1", "L2", "L3")
_LINES = ("L12", "L23", "L31")
_DEG_TO_RAD = 0.017453292519943295
# 3-wire delta: only elements A and C (V12*I1, V32*I3) add up to the total, the two-wattmeter method (ADE9000
# Technical Reference Manual UG-1098 Rev. 0, "Applying the ADE9000 to a 3-Wire Delta Service"); what the chip
# computes for B, and each element on its own, is no phase's power, so it is not published.
_ELEMENTS = {"3P4W": (0, 1, 2), "3P3W": (0, 2)}
_E = 9  # energy digits in kWh: 1 uWh, finer than one register LSB (1.35 uWh on ADI's board)
REPLAY_BATCH = 4  # records per replayed JSON array: ~1.3 kB, built in one piece without fragmenting the heap


def _phases(values, digits):
    return {"L1": round(values[0], digits), "L2": round(values[1], digits), "L3": round(values[2], digits)}


def _head(doc, time_instant, state):
    if time_instant is not None:
        doc[TIME_INSTANT] = time_instant
    doc[CLOCK_SYNCED] = time_instant is not None
    doc[DEVICE_STATE] = state
    return doc


def live(chip, scale, time_instant, state, pq, wiring="3P4W"):
    """One JSON object with every measure of the last full sample; time_instant None: clock not synced."""
    raw = chip.raw
    v = [raw(VRMS + p * PER_PHASE) * scale.v_per_code for p in range(3)]
    i = [raw(IRMS + p * PER_PHASE) * scale.a_per_code for p in range(3)]
    w = [raw(WATT + p * PER_PHASE) * scale.w_per_code for p in range(3)]
    q = [raw(VAR + p * PER_PHASE) * scale.w_per_code for p in range(3)]
    s = [raw(VA + p * PER_PHASE) * scale.w_per_code for p in range(3)]
    k527 = scale.fixed_5_27
    f = scale.hz_times_period / (raw(PERIOD) + 1)
    deg = scale.deg_per_angle_count_hz * f
    e = chip.energy
    kwh = scale.kwh_per_energy_lsb
    eai = [e[EAI + p] * kwh for p in range(3)]
    eae = [e[EAE + p] * kwh for p in range(3)]
    elements = _ELEMENTS[wiring]
    pt = sum(w[k] for k in elements)
    qt = sum(q[k] for k in elements)
    # Delta: the elements' VA (a line voltage times a line current) do not add up to S; the vector apparent power
    # sqrt(P^2 + Q^2) does.
    st = sum(s[k] for k in elements) if wiring == "3P4W" else sqrt(pt * pt + qt * qt)
    doc = _head({}, time_instant, state)
    current = _phases(i, 4)
    if wiring == "3P4W":
        # Angles between voltage zero crossings: VA->VB, VB->VC, and VC->VA = 360 - (VA->VC).
        avv = [raw(ANGL_VV) * deg, raw(ANGL_VV + 1) * deg, 360.0 - raw(ANGL_VV + 2) * deg]
        # Line-to-line from the phasors (docs/power-quality.md §2.1), not from a difference of magnitudes.
        vll = [sqrt(max(0.0, v[k] ** 2 + v[(k + 1) % 3] ** 2 - 2 * v[k] * v[(k + 1) % 3] * cos(avv[k] * _DEG_TO_RAD)))
               for k in range(3)]
        doc["v"] = _phases(v, 3)
        doc["avv"] = dict(zip(_LINES, [round(x % 360.0, 2) for x in avv]))
        current["N"] = round(raw(NIRMS) * scale.neutral_a_per_code, 4)
    else:
        # 3-wire delta (VCONSEL 001): VA = V12, VC = V32, VB = VA - VC = V13; there is no neutral.
        vll = [v[0], v[2], v[1]]
    doc["vll"] = dict(zip(_LINES, [round(x, 3) for x in vll]))
    doc["i"] = current  # 3P3W: line currents, L2 computed by the chip (IB = -IA - IC)
    doc["pt"] = round(pt, 2)
    doc["qt"] = round(qt, 2)
    doc["st"] = round(st, 2)
    doc["pft"] = round(pt / st, 4) if st > 0 else 1.0
    doc["f"] = round(f, 3)
    doc["eait"] = round(sum(eai[k] for k in elements), _E)
    doc["eaet"] = round(sum(eae[k] for k in elements), _E)
    doc["pq"] = pq_flags(pq)
    if wiring != "3P4W":
        doc["thdi"] = {"L1": round(raw(ITHD) * k527, 4), "L3": round(raw(ITHD + 2 * PER_PHASE) * k527, 4)}
        return json.dumps(doc)
    doc["p"] = _phases(w, 2)
    doc["q"] = _phases(q, 2)
    doc["s"] = _phases(s, 2)
    doc["pf"] = _phases([raw(PF + p * PER_PHASE) * k527 for p in range(3)], 4)
    doc["thdv"] = _phases([raw(VTHD + p * PER_PHASE) * k527 for p in range(3)], 4)
    doc["thdi"] = _phases([raw(ITHD + p * PER_PHASE) * k527 for p in range(3)], 4)
    doc["eai"] = _phases(eai, _E)
    doc["eae"] = _phases(eae, _E)
    doc["eri"] = _phases([e[ERI + p] * kwh for p in range(3)], _E)
    doc["ere"] = _phases([e[ERE + p] * kwh for p in range(3)], _E)
    doc["esi"] = _phases([e[ESI + p] * kwh for p in range(3)], _E)
    doc["ese"] = _phases([e[ESE + p] * kwh for p in range(3)], _E)
    doc["avi"] = _phases([raw(ANGL_VI + p) * deg for p in range(3)], 2)
    return json.dumps(doc)


def state_only(time_instant, state):
    """A message carrying only the device state (the chip gives no trustworthy values)."""
    return json.dumps(_head({}, time_instant, state))


def record(t_iso, pq, counters, prev, dt_s, kwh, state, wiring="3P4W"):
    """One replayed offline record: cumulative energy, the mean active power over its interval, PQ flags.

    counters / prev: full EAI L1..L3, EAE L1..L3 counters (LSB) at the end / start of the interval.
    """
    eai = [counters[p] * kwh for p in range(3)]
    eae = [counters[3 + p] * kwh for p in range(3)]
    elements = _ELEMENTS[wiring]
    doc = _head({}, t_iso, state)
    if wiring == "3P4W":
        doc["eai"] = _phases(eai, _E)
        doc["eae"] = _phases(eae, _E)
    doc["eait"] = round(sum(eai[k] for k in elements), _E)
    doc["eaet"] = round(sum(eae[k] for k in elements), _E)
    if dt_s > 0:
        w_per_lsb_s = kwh * 3600000.0 / dt_s
        p = [((counters[k] - prev[k]) - (counters[3 + k] - prev[3 + k])) * w_per_lsb_s for k in range(3)]
        if wiring == "3P4W":
            doc["p"] = _phases(p, 2)
        doc["pt"] = round(sum(p[k] for k in elements), 2)
    if pq:  # replayed records carry flags only when one was raised: keeps a batch of 4 near 1.2 kB
        doc["pq"] = pq_flags(pq)
    return doc


def baseline(time_instant, counters, kwh, wiring="3P4W"):
    """The counters a meter restarted from after a power cut, every cumulative energy measure, before any reading.

    counters: all N_COUNTERS (LSB). The twin sees them lower than what it published before the cut (the flash
    copy is older) and continues its published energy from there (docs/firmware.md, "Energy across power cuts").
    """
    doc = _head({}, time_instant, "ok")
    eai = [counters[EAI + p] * kwh for p in range(3)]
    eae = [counters[EAE + p] * kwh for p in range(3)]
    elements = _ELEMENTS[wiring]
    doc["eait"] = round(sum(eai[k] for k in elements), _E)
    doc["eaet"] = round(sum(eae[k] for k in elements), _E)
    if wiring != "3P4W":
        return json.dumps(doc)
    doc["eai"] = _phases(eai, _E)
    doc["eae"] = _phases(eae, _E)
    doc["eri"] = _phases([counters[ERI + p] * kwh for p in range(3)], _E)
    doc["ere"] = _phases([counters[ERE + p] * kwh for p in range(3)], _E)
    doc["esi"] = _phases([counters[ESI + p] * kwh for p in range(3)], _E)
    doc["ese"] = _phases([counters[ESE + p] * kwh for p in range(3)], _E)
    return json.dumps(doc)


def batch(docs):
    """A JSON array of replayed records (the IoT Agent's multi-measure form)."""
    return json.dumps(docs)
