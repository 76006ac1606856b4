"""Keep each meter's Smart Data Models `Device` entity current from the measures the agent sees.

The FIWARE IoT Agent writes only the measurement entity; the twin also needs to know when a meter last reported
and whether its data is sane, on the `Device` the measurement points to. A device opts in by provisioning the
static attribute `refDevice` (a Relationship to `urn:ngsi-ld:Device:<device_id>`, as provisioning/agent_bodies.py
does for meters); `firmwareVersion` and `refDeviceModel` static attributes, when present, are copied over.

Writing the Device with every 1 Hz measure would double the broker's load for a timestamp, so a device's entity is
written on its first message after start, whenever `deviceState` changes, and otherwise at most every
`refresh_s` seconds: `dateLastValueReported` lags real time by at most that much.
"""

from __future__ import annotations

import threading
from typing import Any

from datamodels.entities import METER_CONTROLLED_PROPERTIES, Device

from .registry import ResolvedDevice

STATE_OK = "ok"
STATE_BAD_DATA = "badData"  # the last message carried measures the agent had to drop (wrong type, range, time)


def device_ref(device: ResolvedDevice) -> str | None:
    """The Device entity id the device's measurement points to (`refDevice` static attribute), if any."""
    for static in device.static_attributes:
        if static.name == "refDevice" and isinstance(static.value, str):
            return static.value
    return None


class DeviceEntities:
    """Decides when a meter's Device entity is due and renders its fragment."""

    def __init__(self, refresh_s: float = 10.0) -> None:
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, str]] = {}  # entity id -> (monotonic time written, state written)

    def fragment(
        self, device: ResolvedDevice, observed_at: str, had_rejections: bool, now: float,
        meter_state: str | None = None,
    ) -> dict[str, Any] | None:
        """The Device fragment to upsert with this message, or None when the last one is recent enough.

        The meter's own state (`ds` on the wire, e.g. "fault:spi-crc") wins: it knows its hardware; otherwise
        the state says whether the agent had to drop anything from the message.
        """
        entity_id = device_ref(device)
        if entity_id is None:
            return None
        if meter_state and meter_state != STATE_OK:
            state = meter_state
        else:
            state = STATE_BAD_DATA if had_rejections else STATE_OK
        with self._lock:
            last = self._last.get(entity_id)
            if last is not None and last[1] == state and now - last[0] < self._refresh_s:
                return None
            if len(self._last) > 200_000:
                self._last.clear()
            self._last[entity_id] = (now, state)
        statics = {static.name: static.value for static in device.static_attributes}
        twin = Device(
            id=entity_id,
            controlledProperty=list(METER_CONTROLLED_PROPERTIES),
            deviceState=state,
            dateLastValueReported=observed_at,
            firmwareVersion=_text(statics.get("firmwareVersion")),
            refDeviceModel=_text(statics.get("refDeviceModel")),
        )
        return twin.to_normalized(observed_at=observed_at)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
