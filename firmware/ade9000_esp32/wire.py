# Every key this firmware puts on the wire (docs/architecture.md, "The meter contract"), in one place so a test can hold it against the
# measure table in datamodels/measures.py. Shapes use the table's names.
TIME_INSTANT = "TimeInstant"  # ISO 8601 UTC of the reading; omitted when the clock is not synced

SHAPES = (
    ("v", "phases"), ("vll", "line"), ("i", "phases_n"), ("p", "phases"), ("q", "phases"), ("s", "phases"),
    ("pt", "scalar"), ("qt", "scalar"), ("st", "scalar"), ("pf", "phases"), ("pft", "scalar"),
    ("thdv", "phases"), ("thdi", "phases"), ("f", "scalar"), ("eai", "phases"), ("eae", "phases"),
    ("eait", "scalar"), ("eaet", "scalar"), ("eri", "phases"), ("ere", "phases"), ("esi", "phases"),
    ("ese", "phases"), ("avv", "line"), ("avi", "phases"), ("pq", "flags"), ("ds", "text"), ("clk", "bool"),
)

DEVICE_STATE = "ds"  # "ok" or "fault:<reason>" (ade9000.py reasons) -> deviceState, also on the Device entity
CLOCK_SYNCED = "clk"  # true: TimeInstant comes from an NTP-synced clock; false: no TimeInstant is sent

# Power-quality flags under "pq", in the bit order of the 8-bit form kept in offline records.
PQ_FLAGS = ("dipL1", "dipL2", "dipL3", "swellL1", "swellL2", "swellL3", "overcurrent", "phaseSequenceError")
# ADE9000 STATUS1 bit of each flag above (docs/ade9000.md §5): DIPA..C 23-25, SWELLA..C 20-22, OI 17, SEQERR 18.
PQ_STATUS_BITS = (23, 24, 25, 20, 21, 22, 17, 18)


def pq_byte(status1):
    """STATUS1 power-quality bits -> the 8-bit form (bit k = PQ_FLAGS[k])."""
    out = 0
    for k in range(8):
        if status1 >> PQ_STATUS_BITS[k] & 1:
            out |= 1 << k
    return out


def pq_flags(byte):
    """8-bit form -> the `pq` object: every flag, true or false."""
    return {PQ_FLAGS[k]: bool(byte >> k & 1) for k in range(8)}
