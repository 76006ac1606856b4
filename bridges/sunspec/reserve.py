"""Re-serving a device's registers to local readers: the bridge as the inverter's single Modbus TCP client.

Many inverters accept one Modbus TCP connection only, so a home energy manager, a vendor app or a second bridge
cannot read them while the bridge does. With `reserve_port` in site.yaml the bridge serves a read-only mirror of
the device's SunSpec map (the 'SunS' marker, every model as last polled, the end marker) on that port, with the
device's unit id: other local readers read the mirror instead of the device. Writes are refused with Modbus
exception 1 (illegal function): commands go through the twin, so the watchdog and the read-back stay in one place.
Until the first poll succeeds, and while the device is in a fault, the mirror answers exception 6 (busy) rather
than stale values.
"""

from __future__ import annotations

import logging

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from .discovery import DeviceMap
from .models import END_MODEL_ID, SUNS_MARKER

log = logging.getLogger(__name__)

_SPAN = 0x10000  # the whole holding-register address space, so any SunSpec base can be mirrored


class RegisterMirror:
    """A read-only Modbus TCP server holding the last register image of one device."""

    def __init__(self, unit: int, host: str, port: int) -> None:
        self.unit, self.host, self.port = unit, host, port
        self._image: list[int] | None = None
        self._base = 0
        self._server: ModbusTcpServer | None = None
        self.reads = 0
        self.refused = 0

    def update(self, device_map: DeviceMap, blocks: dict[int, list[int]]) -> None:
        """A new image: `blocks` maps each model's address to its registers (ID and L first)."""
        image = list(SUNS_MARKER)
        for model in device_map.models:
            block = blocks.get(model.address)
            if block is None:
                return  # an incomplete image is never served
            image.extend(block)
        image.extend([END_MODEL_ID, 0])
        self._base, self._image = device_map.base, image

    def invalidate(self) -> None:
        self._image = None

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if set_values is not None:
            self.refused += 1
            return ExcCodes.ILLEGAL_FUNCTION
        image = self._image
        if image is None:
            return ExcCodes.DEVICE_BUSY
        offset = address - self._base
        if offset < 0 or offset + count > len(image):
            return ExcCodes.ILLEGAL_ADDRESS
        registers[address - start_address:address - start_address + count] = image[offset:offset + count]
        self.reads += 1
        return None

    async def start(self) -> None:
        device = SimDevice(self.unit, simdata=[SimData(0, count=_SPAN, values=0, datatype=DataType.REGISTERS)],
                           action=self._action)
        self._server = ModbusTcpServer([device], address=(self.host, self.port), ignore_missing_devices=True)
        from .simulator import _KnownUnitsOnly

        self._server.context = _KnownUnitsOnly(self._server.context)  # type: ignore[assignment]
        await self._server.serve_forever(background=True)
        log.info("re-serving unit %d's registers read-only on %s:%d", self.unit, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
