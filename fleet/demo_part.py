"""The fleet controller as a part of `energytwin demo` (started when the demo has 2 homes or more).

It is the same controller `energytwin fleet run` starts, pointed at the demo's broker and tenant: it finds the
simulated homes' batteries by their BatteryStatus entities (subscription + query), never by a list handed over
by the homes part, so it steers exactly what a real deployment's controller would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet.service import ControllerConfig, FleetController

DEMO_PERIOD_S = 5.0
# The demo runs in real time: at the default 0.5/h a 30-point spread takes hours to close. At 3/h a simulated
# 10 kWh battery moves at its 5 kW rating (0.8 points a minute) until near the mean: about an hour for 30 points.
DEMO_GAIN_PER_H = 3.0


@dataclass
class FleetControllerPart:
    """A demo part: the live mean-SoC controller over the demo tenant's batteries."""

    period_s: float = DEMO_PERIOD_S
    gain_per_h: float = DEMO_GAIN_PER_H
    name: str = "fleet"
    controller: FleetController | None = None

    def start(self, ctx: Any) -> list[str]:
        config = ControllerConfig(ctx.broker_url, ctx.site.service, period_s=self.period_s, stale_periods=6,
                                  gain_per_h=self.gain_per_h, listen_host=ctx.options.stack.host)
        self.controller = FleetController(config).start()
        health = f"http://{config.listen_host}:{self.controller.port}/health"
        return [(f"fleet controller: every {self.period_s:g} s, each home battery steered toward the fleet's mean "
                f"state of charge (batteryPowerSetpoint through the twin); state {health}"),
                (f"  same as: energytwin fleet run --broker {ctx.broker_url} --tenant {ctx.site.service} "
                f"--period {self.period_s:g} --gain-per-h {self.gain_per_h:g}")]

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
