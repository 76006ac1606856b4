"""Home-battery fleet: the mean state-of-charge rule, its controller and a year-long strategy simulation.

Public surface:
- `BatterySpec`, `BatteryReading`, `Setpoint` (battery.py): what a battery is, what it reports, what it is told.
- `mean_soc_setpoints` (rule.py): one controller cycle, pure and limit-safe.
- `simulate_fleet` (simulate.py): the strategy ladder none / greedy / mean_soc / lp on the same data.
"""

from fleet.battery import BatteryReading, BatterySpec, Setpoint
from fleet.rule import FleetDecision, mean_soc_setpoints

__all__ = ["BatteryReading", "BatterySpec", "FleetDecision", "Setpoint", "mean_soc_setpoints"]
