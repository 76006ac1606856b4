"""`python -m twin_service.agent`: run the embedded IoT Agent JSON until SIGINT / SIGTERM.

Flags win over environment variables; the variables carry the FIWARE IoT Agent's names where one exists, so a
container's env file works for either agent (docs/provisioning.md lists them):

    IOTA_NORTH_PORT, IOTA_MQTT_HOST, IOTA_MQTT_PORT, IOTA_MQTT_USERNAME, IOTA_MQTT_PASSWORD,
    IOTA_MQTT_PROTOCOL (mqtt | mqtts), IOTA_MQTT_CA, IOTA_MQTT_CERT, IOTA_MQTT_KEY,
    IOTA_MQTT_REJECT_UNAUTHORIZED, IOTA_MQTT_KEEPALIVE, IOTA_MQTT_CLIENT_ID, IOTA_TIMESTAMP,
    IOTA_CB_URL (else IOTA_CB_HOST + IOTA_CB_PORT)
and the agent's own: ENERGYTWIN_AGENT_QUEUE_MAX, ENERGYTWIN_AGENT_BATCH_MAX, ENERGYTWIN_AGENT_FSYNC,
ENERGYTWIN_AGENT_FLOOD_RATE, ENERGYTWIN_AGENT_FLOOD_BURST, ENERGYTWIN_AGENT_DEVICE_REFRESH_S.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path

from kernel.gc_tuning import tune_for_service

from .agent import MAX_PAYLOAD_BYTES, Agent, AgentConfig
from .northbound_writer import DEFAULT_BATCH_MESSAGES, DEFAULT_MAX_MESSAGES
from .south import MqttSettings


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def mqtt_settings_from_env(env: Mapping[str, str]) -> MqttSettings:
    """Credentials and TLS from the IoT Agent's variable names."""
    return MqttSettings(
        username=env.get("IOTA_MQTT_USERNAME") or None,
        password=env.get("IOTA_MQTT_PASSWORD") or None,
        protocol=env.get("IOTA_MQTT_PROTOCOL", "mqtt") or "mqtt",
        ca_file=env.get("IOTA_MQTT_CA") or None,
        cert_file=env.get("IOTA_MQTT_CERT") or None,
        key_file=env.get("IOTA_MQTT_KEY") or None,
        reject_unauthorized=_flag(env.get("IOTA_MQTT_REJECT_UNAUTHORIZED"), True),
        keepalive_s=int(env.get("IOTA_MQTT_KEEPALIVE", "60") or 60),
        client_id=env.get("IOTA_MQTT_CLIENT_ID") or None,
    )


def _broker_from_env(env: Mapping[str, str]) -> str:
    if env.get("IOTA_CB_URL"):
        return env["IOTA_CB_URL"]
    return f"http://{env.get('IOTA_CB_HOST', '127.0.0.1')}:{env.get('IOTA_CB_PORT', '1026')}"


def parse_args(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Command-line flags (defaults from the environment) -> AgentConfig."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m twin_service.agent", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--north-host", default="127.0.0.1", help="provisioning API bind address")
    parser.add_argument(
        "--north-port", type=int, default=int(env.get("IOTA_NORTH_PORT", 4041)), help="provisioning API port"
    )
    parser.add_argument("--mqtt-host", default=env.get("IOTA_MQTT_HOST", "127.0.0.1"))
    parser.add_argument("--mqtt-port", type=int, default=int(env.get("IOTA_MQTT_PORT", 1883)))
    parser.add_argument("--broker-url", default=_broker_from_env(env), help="NGSI-LD context broker")
    parser.add_argument("--data-dir", type=Path, default=Path("var"), help="registry and queue live here")
    parser.add_argument("--max-payload-bytes", type=int, default=MAX_PAYLOAD_BYTES)
    parser.add_argument(
        "--queue-max", type=int, default=int(env.get("ENERGYTWIN_AGENT_QUEUE_MAX", DEFAULT_MAX_MESSAGES)),
        help="messages the on-disk queue holds while the broker is down",
    )
    parser.add_argument(
        "--batch-max", type=int, default=int(env.get("ENERGYTWIN_AGENT_BATCH_MAX", DEFAULT_BATCH_MESSAGES)),
        help="messages per batch upsert at most",
    )
    parser.add_argument("--flood-rate", type=float, default=float(env.get("ENERGYTWIN_AGENT_FLOOD_RATE", 20)))
    parser.add_argument("--flood-burst", type=int, default=int(env.get("ENERGYTWIN_AGENT_FLOOD_BURST", 200)))
    parser.add_argument(
        "--device-refresh-s", type=float, default=float(env.get("ENERGYTWIN_AGENT_DEVICE_REFRESH_S", 10))
    )
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
        timestamp_default=_flag(env.get("IOTA_TIMESTAMP"), True),
        max_queued_messages=args.queue_max,
        batch_max_messages=args.batch_max,
        durable_fsync=_flag(env.get("ENERGYTWIN_AGENT_FSYNC"), False),
        flood_rate_per_s=args.flood_rate,
        flood_burst=args.flood_burst,
        device_refresh_s=args.device_refresh_s,
        mqtt=mqtt_settings_from_env(env),
    )


def main(argv: list[str] | None = None) -> None:
    """Start the agent, block until a stop signal, stop cleanly."""
    agent = Agent(parse_args(argv))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    tune_for_service()  # the cyclic collector out of the ingest path's way (kernel/gc_tuning.py)
    try:
        stop.wait()
    finally:
        agent.stop()


if __name__ == "__main__":
    main()
