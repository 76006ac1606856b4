"""EN 50160 low-voltage limits, configurable per site (nominal voltage, 50/60 Hz, stricter in-house thresholds).

Defaults are EN 50160:2010 clause 4 for an LV interconnected system (docs/power-quality.md §1):
Un ±10 % for 95 % of a week's 10-min values and +10 %/−15 % always; frequency ±1 % for 99.5 % and +4 %/−6 %
always (island systems ±2 % / ±15 %); voltage THD ≤ 8 % and negative-sequence unbalance ≤ 2 % for 95 %;
dips below 90 %, swells above 110 %, interruptions below 5 % of Un (docs/power-quality.md §1.2).

A site file (TOML) may set any field under `[quality]`; a stricter in-house value narrows the live alerting band
while `severity` and the compliance report still name the EN 50160 figure (see docs/quality.md):

    [quality]
    nominal_voltage_v = 230.0
    nominal_frequency_hz = 50.0
    voltage_upper_fraction = 0.06   # in-house: alert above +6 %
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SiteLimits:
    """Every threshold the analytics use, as fractions of the nominal values unless the name says a unit."""

    nominal_voltage_v: float = 230.0
    nominal_frequency_hz: float = 50.0
    island: bool = False  # a system not synchronously connected to an interconnected one (wider frequency band)

    # Supply voltage variation, 10-min rms per phase (EN 50160 4.2.2 for LV).
    voltage_upper_fraction: float = 0.10  # +10 % for 95 % of the week (and always: the upper bound is the same)
    voltage_lower_fraction: float = 0.10  # −10 % for 95 % of the week
    voltage_lower_always_fraction: float = 0.15  # −15 %: never below
    voltage_share_required: float = 0.95

    # Frequency, 10-s mean.
    frequency_narrow_fraction: float = 0.01  # ±1 % (±2 % island)
    frequency_wide_upper_fraction: float = 0.04  # +4 % always (+15 % island)
    frequency_wide_lower_fraction: float = 0.06  # −6 % always (−15 % island)
    frequency_share_required: float = 0.995  # (95 % island)

    # Harmonics and unbalance, 10-min values.
    thd_voltage_max: float = 0.08
    thd_share_required: float = 0.95
    unbalance_max: float = 0.02
    unbalance_share_required: float = 0.95

    # RMS events (docs/power-quality.md §1.2), on each reading.
    dip_threshold_fraction: float = 0.90
    swell_threshold_fraction: float = 1.10
    interruption_threshold_fraction: float = 0.05
    event_hysteresis_fraction: float = 0.02  # of Un
    event_max_duration_s: float = 60.0  # longer than this a dip/swell is a supply voltage variation

    # Hysteresis for closing steady-state conditions, in the quantity's own unit.
    frequency_hysteresis_hz: float = 0.05
    thd_hysteresis: float = 0.005
    unbalance_hysteresis: float = 0.002

    # Neutral and current checks (no EN 50160 figure; in-house defaults).
    neutral_to_phase_ratio_max: float | None = 1.0  # neutral above the largest phase current
    neutral_min_current_a: float = 1.0  # ignore the ratio below this neutral current (noise at light load)
    current_unbalance_max: float | None = None  # off unless a site sets it
    overcurrent_a: float | None = None  # used when a meter's entity carries no overcurrentLimit of its own

    # Live records: rewrite an ongoing record at least this often even if nothing worsened.
    update_interval_s: float = 60.0

    # --- derived limits -------------------------------------------------------------------------------------
    @property
    def voltage_upper_v(self) -> float:
        return self.nominal_voltage_v * (1.0 + self.voltage_upper_fraction)

    @property
    def voltage_lower_v(self) -> float:
        return self.nominal_voltage_v * (1.0 - self.voltage_lower_fraction)

    @property
    def voltage_lower_always_v(self) -> float:
        return self.nominal_voltage_v * (1.0 - self.voltage_lower_always_fraction)

    @property
    def frequency_upper_hz(self) -> float:
        return self.nominal_frequency_hz * (1.0 + self.frequency_narrow_fraction)

    @property
    def frequency_lower_hz(self) -> float:
        return self.nominal_frequency_hz * (1.0 - self.frequency_narrow_fraction)

    @property
    def frequency_wide_upper_hz(self) -> float:
        return self.nominal_frequency_hz * (1.0 + self.frequency_wide_upper_fraction)

    @property
    def frequency_wide_lower_hz(self) -> float:
        return self.nominal_frequency_hz * (1.0 - self.frequency_wide_lower_fraction)

    @property
    def dip_threshold_v(self) -> float:
        return self.nominal_voltage_v * self.dip_threshold_fraction

    @property
    def swell_threshold_v(self) -> float:
        return self.nominal_voltage_v * self.swell_threshold_fraction

    @property
    def interruption_threshold_v(self) -> float:
        return self.nominal_voltage_v * self.interruption_threshold_fraction

    @property
    def hysteresis_v(self) -> float:
        return self.nominal_voltage_v * self.event_hysteresis_fraction

    def en50160(self) -> SiteLimits:
        """The plain EN 50160 limits at this site's nominal voltage and frequency (what severity refers to)."""
        return en50160_limits(self.nominal_voltage_v, self.nominal_frequency_hz, island=self.island)


def en50160_limits(nominal_voltage_v: float = 230.0, nominal_frequency_hz: float = 50.0, *,
                   island: bool = False) -> SiteLimits:
    """EN 50160 LV limits for a nominal voltage and frequency; island systems get the wider frequency band."""
    if nominal_frequency_hz not in (50.0, 60.0):
        raise ValueError(f"nominal frequency {nominal_frequency_hz} Hz: EN 50160 applies to 50 Hz (60 Hz by analogy)")
    limits = SiteLimits(nominal_voltage_v=nominal_voltage_v, nominal_frequency_hz=nominal_frequency_hz)
    if island:
        limits = replace(limits, island=True, frequency_narrow_fraction=0.02, frequency_wide_upper_fraction=0.15,
                         frequency_wide_lower_fraction=0.15, frequency_share_required=0.95)
    return limits


class SiteConfigError(ValueError):
    """A site file names an unknown key or a value of the wrong type."""


def load_site_limits(path: Path | None) -> SiteLimits:
    """SiteLimits from a TOML file's `[quality]` table (EN 50160 defaults for anything it leaves out)."""
    if path is None:
        return SiteLimits()
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SiteConfigError(f"{path}: cannot read the site file: {exc}") from exc
    table: dict[str, Any] = document.get("quality", document)
    return limits_from_mapping(table, where=str(path))


def limits_from_mapping(table: dict[str, Any], where: str = "site config") -> SiteLimits:
    """Apply a mapping of field -> value over the EN 50160 defaults (island first, since it moves defaults)."""
    known = {f.name: f for f in fields(SiteLimits)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SiteConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    base = en50160_limits(float(table.get("nominal_voltage_v", 230.0)),
                          float(table.get("nominal_frequency_hz", 50.0)), island=bool(table.get("island", False)))
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key == "island":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SiteConfigError(f"{where}: {key} = {value!r} is not a number")
        if value < 0:
            raise SiteConfigError(f"{where}: {key} = {value!r} must not be negative")
        changes[key] = float(value)
    return replace(base, **changes)
