# The meter application: wires the ADE9000 driver, the timer-driven sampler and the MQTT uplink together.
# main.py runs `Meter.step()` forever; the emulator harness calls start()/step() itself.
import time

import machine
import network

import payload
from ade9000 import ADE9000, Scale
from sampler import Sampler
from uplink import Uplink

_WIFI_RETRY_MS = 30000


class Meter:
    """One ADE9000 meter publishing to the IoT Agent; `cfg` is the config module (or an object like it)."""

    def __init__(self, cfg):
        self.cfg = cfg
        Pin = machine.Pin
        if cfg.PIN_PM1 is not None:
            self._pm1 = Pin(cfg.PIN_PM1, Pin.OUT, value=0)  # PSM0: normal metering mode
        spi = machine.SPI(cfg.SPI_ID, baudrate=cfg.SPI_BAUDRATE, polarity=0, phase=0,
                          sck=Pin(cfg.PIN_SCK), mosi=Pin(cfg.PIN_MOSI), miso=Pin(cfg.PIN_MISO))
        cs = Pin(cfg.PIN_CS, Pin.OUT, value=1)
        reset = Pin(cfg.PIN_RESET, Pin.OUT, value=1) if cfg.PIN_RESET is not None else None
        self.chip = ADE9000(spi, cs, reset)
        self.scale = Scale(cfg.CURRENT_TF_V_PER_A, cfg.NEUTRAL_TF_V_PER_A, cfg.VOLTAGE_TF_V_PER_V,
                           cfg.PGA_CURRENT, cfg.PGA_NEUTRAL, cfg.PGA_VOLTAGE)
        self.sampler = Sampler(self.chip, int(cfg.PERIOD_S * 1000), cfg.TIMER_ID)
        self.wlan = network.WLAN(network.STA_IF)
        self.uplink = Uplink(cfg.DEVICE_ID, cfg.APIKEY, cfg.MQTT_HOST, cfg.MQTT_PORT, cfg.MQTT_KEEPALIVE_S)
        self.dropped = 0  # samples not delivered (the offline buffer of the next issue will keep them)
        self._wifi_attempt_ms = 0

    def start(self):
        """Join WiFi (without waiting), start the ADE9000 and the sampling timer."""
        self.wlan.active(True)
        self._join_wifi()
        cfg = self.cfg
        self.chip.begin(nominal_hz=cfg.NOMINAL_HZ, pga=(cfg.PGA_CURRENT, cfg.PGA_NEUTRAL, cfg.PGA_VOLTAGE),
                        gains={"igain": cfg.IGAIN, "vgain": cfg.VGAIN, "pgain": cfg.PGAIN, "nigain": cfg.NIGAIN})
        self.sampler.start()
        print("meter %s: ADE9000 running, sampling every %s s" % (cfg.DEVICE_ID, cfg.PERIOD_S))

    def _join_wifi(self):
        self._wifi_attempt_ms = time.ticks_ms()
        if not self.wlan.isconnected():
            self.wlan.connect(self.cfg.WIFI_SSID, self.cfg.WIFI_PASSWORD)

    def step(self):
        """One main-loop iteration: publish the newest sample if there is one; True when it was delivered."""
        sampler = self.sampler
        if not sampler.ready:
            return False
        sampler.ready = False
        age_ms = time.ticks_diff(time.ticks_ms(), sampler.taken_ms)
        if not self.wlan.isconnected():
            self.dropped += 1
            if time.ticks_diff(time.ticks_ms(), self._wifi_attempt_ms) > _WIFI_RETRY_MS:
                self._join_wifi()
            return False
        message = payload.build(self.chip, self.scale, payload.time_instant(age_ms))
        if not self.uplink.send(message):
            self.dropped += 1
            return False
        return True

    def stop(self):
        self.sampler.stop()
        self.uplink.close()
