"""`python -m twin_service.agent`: run the embedded IoT Agent JSON until SIGINT / SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from .agent import MAX_PAYLOAD_BYTES, Agent, AgentConfig


def parse_args(argv: list[str] | None = None) -> AgentConfig:
    """Command-line flags -> AgentConfig (defaults: production ports, ./var)."""
    parser = argparse.ArgumentParser(prog="python -m twin_service.agent", description=__doc__)
    parser.add_argument("--north-host", default="127.0.0.1", help="provisioning API bind address")
    parser.add_argument(
        "--north-port", type=int, default=4041, help="provisioning API port (IOTA_NORTH_PORT)"
    )
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--broker-url", default="http://127.0.0.1:1026", help="NGSI-LD context broker")
    parser.add_argument("--data-dir", type=Path, default=Path("var"), help="where the registry lives")
    parser.add_argument("--max-payload-bytes", type=int, default=MAX_PAYLOAD_BYTES)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return AgentConfig(
        data_dir=args.data_dir,
        north_host=args.north_host,
        north_port=args.north_port,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        broker_url=args.broker_url,
        max_payload_bytes=args.max_payload_bytes,
    )


def main(argv: list[str] | None = None) -> None:
    """Start the agent, block until a stop signal, stop cleanly."""
    agent = Agent(parse_args(argv))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    try:
        stop.wait()
    finally:
        agent.stop()


if __name__ == "__main__":
    main()
