"""Run the embedded NGSI-LD broker: `python -m twin_service.broker --host 127.0.0.1 --port 1026 --data-dir ./var`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from kernel.gc_tuning import tune_for_service
from kernel.ports import BROKER_PORT

from ._app import DEFAULT_ROLLUP_1MIN_RETENTION_DAYS, create_app

log = logging.getLogger("twin_service.broker")
SWITCH_INTERVAL_S = 0.0005


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number of days") from None


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m twin_service.broker",
                                     description="Embedded NGSI-LD context broker (Orion-LD compatible API).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=BROKER_PORT, help="TCP port (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=Path("var"),
                        help="directory holding twin.sqlite (default: %(default)s)")
    parser.add_argument("--retention-days", "--raw-retention-days", dest="retention_days", type=float,
                        default=_env_float("ENERGYTWIN_BROKER_RETENTION_DAYS"),
                        help="keep raw history observed within this many days; the rollups stay (the 1-min ones as "
                             "--rollup-1min-retention-days says) and keep answering aligned aggregations (env "
                             "ENERGYTWIN_BROKER_RETENTION_DAYS; default: keep everything)")
    rollup_env = _env_float("ENERGYTWIN_BROKER_ROLLUP_1MIN_RETENTION_DAYS")
    parser.add_argument("--rollup-1min-retention-days", type=float,
                        default=rollup_env if rollup_env is not None else DEFAULT_ROLLUP_1MIN_RETENTION_DAYS,
                        help="keep the 1-minute rollups of this many days ('inf': all); the 10-min and hourly ones "
                             "are kept for good, and where raw history is kept longer it answers 1-minute "
                             "aggregations instead (env ENERGYTWIN_BROKER_ROLLUP_1MIN_RETENTION_DAYS; "
                             "default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.retention_days is not None and args.retention_days <= 0:
        parser.error("--retention-days must be positive")
    if not args.rollup_1min_retention_days > 0:  # also refuses nan
        parser.error("--rollup-1min-retention-days must be positive ('inf' keeps them all)")
    app = create_app(args.data_dir, retention_days=args.retention_days,
                     rollup_1min_retention_days=args.rollup_1min_retention_days)
    # Writes run on a worker thread holding the GIL for long stretches of Python work; a shorter switch interval
    # lets the event loop answer reads (GET one entity) between them instead of after up to 5 ms slices.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    tune_for_service()  # the cyclic collector out of the write path's way (kernel/gc_tuning.py)
    log.info("NGSI-LD broker listening on http://%s:%d/ngsi-ld/v1 (data in %s)", args.host, args.port,
             args.data_dir.resolve())
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
