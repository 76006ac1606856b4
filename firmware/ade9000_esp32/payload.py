# IoT Agent JSON payload of one sample (DESIGN.md §3.1): register codes -> the data model's units.
# Object ids and shapes must match datamodels/measures.py (a test checks SHAPES and real payloads against it).
import json
import time
from math import cos, sqrt

from ade9000 import ANGL_VI, ANGL_VV, EAE, EAI, ERE, ERI, IRMS, ITHD, NIRMS, PER_PHASE, PERIOD, PF, VA, VAR
from ade9000 import VRMS, VTHD, WATT

SHAPES = (
    ("v", "phases"), ("vll", "line"), ("i", "phases_n"), ("p", "phases"), ("q", "phases"), ("s", "phases"),
    ("pt", "scalar"), ("qt", "scalar"), ("st", "scalar"), ("pf", "phases"), ("pft", "scalar"),
    ("thdv", "phases"), ("thdi", "phases"), ("f", "scalar"), ("eai", "phases"), ("eae", "phases"),
    ("eait", "scalar"), ("eaet", "scalar"), ("eri", "phases"), ("ere", "phases"), ("avv", "line"),
    ("avi", "phases"),
)
_PHASES = ("L1", "L2", "L3")
_LINES = ("L12", "L23", "L31")
_DEG_TO_RAD = 0.017453292519943295


def time_instant(age_ms=0):
    """ISO 8601 UTC with milliseconds, `age_ms` before now: the IoT Agent's TimeInstant."""
    ns = time.time_ns() - age_ms * 1000000
    t = time.gmtime(ns // 1000000000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], (ns // 1000000) % 1000)


def _phases(values, digits):
    return {"L1": round(values[0], digits), "L2": round(values[1], digits), "L3": round(values[2], digits)}


def build(chip, scale, taken_at):
    """One JSON object with every measure of the last sample, converted once here (not per sample)."""
    raw = chip.raw
    v = [raw(p * PER_PHASE + VRMS) * scale.v_per_code for p in range(3)]
    i = [raw(p * PER_PHASE + IRMS) * scale.a_per_code for p in range(3)]
    w = [raw(p * PER_PHASE + WATT) * scale.w_per_code for p in range(3)]
    q = [raw(p * PER_PHASE + VAR) * scale.w_per_code for p in range(3)]
    s = [raw(p * PER_PHASE + VA) * scale.w_per_code for p in range(3)]
    k527 = scale.fixed_5_27
    f = scale.hz_times_period / (raw(PERIOD) + 1)
    deg = scale.deg_per_angle_count_hz * f
    # Angles between voltage zero crossings: VA->VB, VB->VC, and VC->VA = 360 - (VA->VC).
    avv = [raw(ANGL_VV) * deg, raw(ANGL_VV + 1) * deg, 360.0 - raw(ANGL_VV + 2) * deg]
    vll = [sqrt(max(0.0, v[k] ** 2 + v[(k + 1) % 3] ** 2 - 2 * v[k] * v[(k + 1) % 3] * cos(avv[k] * _DEG_TO_RAD)))
           for k in range(3)]
    e = chip.energy
    kwh = scale.kwh_per_energy_lsb
    eai = [e[EAI + p] * kwh for p in range(3)]
    eae = [e[EAE + p] * kwh for p in range(3)]
    pt = w[0] + w[1] + w[2]
    st = s[0] + s[1] + s[2]
    current = _phases(i, 4)
    current["N"] = round(raw(NIRMS) * scale.neutral_a_per_code, 4)
    doc = {
        "TimeInstant": taken_at,
        "v": _phases(v, 3),
        "vll": dict(zip(_LINES, [round(x, 3) for x in vll])),
        "i": current,
        "p": _phases(w, 2),
        "q": _phases(q, 2),
        "s": _phases(s, 2),
        "pt": round(pt, 2),
        "qt": round(q[0] + q[1] + q[2], 2),
        "st": round(st, 2),
        "pf": _phases([raw(p * PER_PHASE + PF) * k527 for p in range(3)], 4),
        "pft": round(pt / st, 4) if st > 0 else 1.0,
        "thdv": _phases([raw(p * PER_PHASE + VTHD) * k527 for p in range(3)], 4),
        "thdi": _phases([raw(p * PER_PHASE + ITHD) * k527 for p in range(3)], 4),
        "f": round(f, 3),
        "eai": _phases(eai, 6),
        "eae": _phases(eae, 6),
        "eait": round(eai[0] + eai[1] + eai[2], 6),
        "eaet": round(eae[0] + eae[1] + eae[2], 6),
        "eri": _phases([e[ERI + p] * kwh for p in range(3)], 6),
        "ere": _phases([e[ERE + p] * kwh for p in range(3)], 6),
        "avv": dict(zip(_LINES, [round(x % 360.0, 2) for x in avv])),
        "avi": _phases([raw(ANGL_VI + p) * deg for p in range(3)], 2),
    }
    return json.dumps(doc)
