"""Modbus transport for the bridge: pymodbus async clients over TCP, RTU on a serial line, or RTU over TCP.

One `ModbusLink` per endpoint (a TCP address, or a serial line shared by several unit ids). Every failure comes
back as a `ModbusFault` whose `kind` is the counter label and the state written to the twin, so an operator sees
"no-response" or "exception-2 (illegal data address)" rather than a traceback:
- `no-response`: nothing answered (connection refused, timeout, closed socket, silent unit id on a serial line);
- `exception-<code>`: the device answered with a Modbus exception (1 illegal function, 2 illegal data address,
  3 illegal data value, 4 server device failure, 6 busy, 11 gateway target failed to respond, ...).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

log = logging.getLogger(__name__)
# pymodbus logs every timeout with a frame dump at ERROR; the bridge logs each fault once, with its reason and a
# counter, so pymodbus' own lines are kept for -vv debugging only.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

MAX_READ = 125  # registers per read request (Modbus Application Protocol v1.1b3, 6.3)
MAX_WRITE = 123  # registers per write-multiple request (6.12)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusFault(Exception):
    """A Modbus request failed; `kind` is a short label ('no-response', 'exception-2', ...)."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


@dataclass(frozen=True)
class Endpoint:
    """Where a device is: `tcp` (host, port), `rtu-over-tcp` (a serial gateway's socket) or `rtu` (a serial port)."""

    transport: Literal["tcp", "rtu", "rtu-over-tcp"] = "tcp"
    host: str = "127.0.0.1"
    port: int = 502
    serial_port: str = ""
    baudrate: int = 9600
    timeout_s: float = 1.0

    def describe(self) -> str:
        if self.transport == "rtu":
            return f"rtu {self.serial_port} @{self.baudrate}"
        return f"{self.transport} {self.host}:{self.port}"


class ModbusLink:
    """An async pymodbus client for one endpoint, reconnecting on demand; requests are serialised."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._lock = asyncio.Lock()

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        ep = self.endpoint
        if ep.transport == "rtu":
            return AsyncModbusSerialClient(ep.serial_port, framer=FramerType.RTU, baudrate=ep.baudrate,
                                           timeout=ep.timeout_s, retries=0, reconnect_delay=0)
        framer = FramerType.RTU if ep.transport == "rtu-over-tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(ep.host, port=ep.port, framer=framer, timeout=ep.timeout_s, retries=0,
                                    reconnect_delay=0)

    async def _connected(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        if self._client is not None:
            self._client.close()
        self._client = self._new_client()
        try:
            ok = await asyncio.wait_for(self._client.connect(), timeout=self.endpoint.timeout_s + 1)
        except (TimeoutError, OSError) as exc:
            ok = False
            log.debug("connect %s: %s", self.endpoint.describe(), exc)
        if not ok:
            self._client.close()
            self._client = None
            raise ModbusFault("no-response", f"cannot connect to {self.endpoint.describe()}")
        return self._client

    async def read(self, address: int, count: int, unit: int) -> list[int]:
        """Read `count` holding registers from `address` (split into requests of at most 125)."""
        values: list[int] = []
        async with self._lock:
            while count > 0:
                chunk = min(count, MAX_READ)
                values.extend(await self._request("read", address, chunk, unit))
                address += chunk
                count -= chunk
        return values

    async def write(self, address: int, values: list[int], unit: int) -> None:
        """Write holding registers (FC 16, one request per 123 registers)."""
        async with self._lock:
            for start in range(0, len(values), MAX_WRITE):
                await self._request("write", address + start, values[start:start + MAX_WRITE], unit)

    async def _request(self, op: str, address: int, arg: int | list[int], unit: int) -> list[int]:
        client = await self._connected()
        try:
            if op == "read":
                response = await client.read_holding_registers(address, count=int(arg), device_id=unit)  # type: ignore[arg-type]
            else:
                response = await client.write_registers(address, list(arg), device_id=unit)  # type: ignore[arg-type]
        except (ModbusException, TimeoutError, OSError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and asyncio.current_task() and \
                    asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            self.close()
            raise ModbusFault("no-response", f"{op} {address} unit {unit} on {self.endpoint.describe()}: "
                                             f"{exc or type(exc).__name__}") from None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise ModbusFault(f"exception-{code}", f"{op} {address} unit {unit}: exception {code} ({name})")
        return list(getattr(response, "registers", []) or [])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
