"""Embedded FIWARE IoT Agent JSON: MQTT measures in, NGSI-LD batch upserts out, /iot provisioning API on 4041.

Public surface: `Agent`, `AgentConfig`, `create_north_app`, `map_payload`. Run it with `python -m twin_service.agent`.
"""

from .agent import Agent, AgentConfig
from .mapping import map_payload
from .north import create_north_app

__all__ = ["Agent", "AgentConfig", "create_north_app", "map_payload"]
