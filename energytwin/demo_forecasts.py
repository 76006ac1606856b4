"""The forecast service as a part of `energytwin demo`: load and PV forecasts for every demo meter, hourly.

It is the service `energytwin forecast run` starts (forecasting.service.run_round), pointed at the demo's broker
and tenant. A fresh demo's twin holds minutes of readings, not the 7 days a forecast needs, so a meter with less
history is forecast from a simulated household's history (energytwin.forecast_targets.SimulatedHistory) and its
entities say `historySource: simulation`; once the twin holds 7 days of a meter, its own history is used.
Entities: urn:ngsi-ld:EnergyForecast:<meter>:load and :pvGeneration (docs/forecasts.md).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodels.measures import measurement_id
from energytwin.forecast_targets import SimulatedHistory
from fiware_client import FiwareError, NgsiLdClient
from forecasting.entity import current_forecast_id
from forecasting.service import RoundResult, Targets, run_round

log = logging.getLogger("energytwin.forecast")


@dataclass
class ForecastPart:
    """A demo part: one forecast round at start, then one every hour on the hour, in a background thread."""

    name: str = "forecasts"
    period_s: float = 3600.0
    rounds: list[RoundResult] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _first: threading.Event = field(default_factory=threading.Event)

    def start(self, ctx: Any) -> list[str]:
        from energytwin.demo import demo_device_id

        meters = [measurement_id(demo_device_id(i + 1)) for i in range(ctx.options.meters)]
        history = SimulatedHistory(meters)
        targets = Targets(pv=[history.pv_target(m) for m in meters], meters=meters, load_fallback=history.load)
        data_dir = getattr(getattr(ctx.options, "stack", None), "data_dir", None)
        if data_dir is not None:  # the daily live scores of the archive, beside the stack's state
            targets.scores_file = Path(data_dir) / "forecast-live-scores.json"
        tenant = ctx.site.service
        self._thread = threading.Thread(target=self._loop, args=(ctx.broker_url, tenant, targets),
                                        name="demo-forecasts", daemon=True)
        self._thread.start()
        first = demo_device_id(1)
        return [(f"forecasts: load and PV for the next 24 h per meter, every hour (entities "
                f"{current_forecast_id(first, 'load')} and :pvGeneration; docs/forecasts.md)"),
                f"  same as: energytwin forecast run --broker-url {ctx.broker_url} --tenant {tenant}"]

    def _loop(self, broker_url: str, tenant: str, targets: Targets) -> None:
        with NgsiLdClient(broker_url, tenant=tenant) as client:
            while not self._stop.is_set():
                try:
                    self.rounds.append(run_round(client, None, targets))
                except (FiwareError, ValueError, OSError) as exc:  # broker busy or down: try again next round
                    log.warning("demo forecasts: round failed: %s", exc)
                finally:
                    self._first.set()
                self._stop.wait(self.period_s - time.time() % self.period_s + 5)

    def wait_first_round(self, timeout_s: float = 60.0) -> bool:
        return self._first.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
