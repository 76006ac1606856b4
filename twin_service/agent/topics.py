"""The MQTT topics the agent subscribes to and how a measure topic names its apikey, device and attribute.

Same set as iotagent-json `MQTTBinding.js`: `/json/<apikey>/<device_id>/attrs[/<object_id>]`, the legacy form
without `/json`, and both without the leading slash.
"""

from __future__ import annotations

from dataclasses import dataclass

SUBSCRIPTIONS: tuple[str, ...] = (
    "/json/+/+/attrs",
    "/json/+/+/attrs/+",
    "json/+/+/attrs",
    "json/+/+/attrs/+",
    "/+/+/attrs",
    "/+/+/attrs/+",
    "+/+/attrs",
    "+/+/attrs/+",
)

# Measures are subscribed at QoS 1 (the FIWARE agent uses QoS 0): a meter's QoS 1 publish then reaches the agent
# at least once instead of at most once.
SUBSCRIBE_QOS = 1


@dataclass(frozen=True)
class MeasureTopic:
    """A parsed measure topic; `object_id` is set for the single-attribute form."""

    apikey: str
    device_id: str
    object_id: str | None = None


def parse_topic(topic: str) -> MeasureTopic | None:
    """The apikey / device / attribute a topic names, or None when it is not a measure topic."""
    parts = (topic.removeprefix("/")).split("/")
    if len(parts) in (4, 5) and parts[0] == "json" and parts[3] == "attrs":
        return _checked(parts[1], parts[2], parts[4] if len(parts) == 5 else None)
    if len(parts) in (3, 4) and parts[2] == "attrs":
        return _checked(parts[0], parts[1], parts[3] if len(parts) == 4 else None)
    return None


def _checked(apikey: str, device_id: str, object_id: str | None) -> MeasureTopic | None:
    if not apikey or not device_id or object_id == "":
        return None
    return MeasureTopic(apikey, device_id, object_id)
