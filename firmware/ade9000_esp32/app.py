# The meter application: ADE9000 driver, timer-driven sampler, offline buffer, clock and MQTT uplink.
# main.py runs `Meter.step()` forever; the emulator harness calls start()/step() itself.
#
# Each sample ends in exactly one place: published live (online, buffer empty), or written into the offline
# buffer (which replays it, oldest first, as soon as the link and the clock allow). Energy is cumulative, so a
# sample that never travels alone still arrives inside the counters of the next one.
import time

import machine
import network

import payload
import wire
from ade9000 import ADE9000, CHIP_RESET, EAE, EAI, N_COUNTERS, Calibration, ChipError
from clock import Clock, iso
from energy_store import PENDING, EnergyStore, open_device
from offline import FAULT, UNSYNCED, OfflineBuffer
from persist import Persisted
from sampler import Sampler
from uplink import Uplink

_WIFI_RETRY_MS = 30000
_REINIT_RETRY_MS = 10000
_MAX_OFFLINE_PERIOD_MS = 3600000  # never sample less than once an hour, whatever the current rating allows
_FLASH_SAVE_S = 900  # default flash save interval: 96 writes a day (energy_store.py has the flash-life arithmetic)
OK = "ok"


def calibration(cfg):
    """The driver's Calibration from the config module's board and grid settings."""
    return Calibration(cfg.CURRENT_TF_V_PER_A, cfg.NEUTRAL_TF_V_PER_A, cfg.VOLTAGE_TF_V_PER_V, cfg.PGA_CURRENT,
                       cfg.PGA_NEUTRAL, cfg.PGA_VOLTAGE, cfg.IGAIN, cfg.VGAIN, cfg.PGAIN, cfg.PHCAL, cfg.IRMSOS,
                       cfg.VRMSOS, cfg.WATTOS, cfg.NIGAIN, cfg.NIRMSOS, cfg.NOMINAL_HZ, cfg.NOMINAL_V, cfg.WIRING,
                       cfg.DIP_PCT, cfg.SWELL_PCT, cfg.PQ_CYCLES, cfg.OVERCURRENT_A)


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
        self.cal = calibration(cfg)
        self.scale = self.cal.scale
        self.period_ms = int(cfg.PERIOD_S * 1000)
        # Offline the period stretches, but never so far that the chip's energy register could wrap between two
        # reads at the rated current (+20 %): see Scale.max_period_s.
        safe_ms = int(self.scale.max_period_s(cfg.NOMINAL_V * cfg.RATED_CURRENT_A * 1.2) * 1000)
        self.max_period_ms = max(self.period_ms, min(safe_ms, _MAX_OFFLINE_PERIOD_MS))
        self.sampler = Sampler(self.chip, self.period_ms, cfg.TIMER_ID)
        self.wlan = network.WLAN(network.STA_IF)
        self.uplink = Uplink(cfg)
        self.clock = Clock(cfg.NTP_HOST)
        self.buffer = OfflineBuffer(cfg.PERIOD_S)
        self.persisted = Persisted()
        dev = open_device(cfg)
        self.store = EnergyStore(dev) if dev is not None else None  # energy baselines in flash (power cuts)
        self._flash_ms = int(getattr(cfg, "FLASH_SAVE_S", _FLASH_SAVE_S) * 1000)
        self._flash_at_ms = time.ticks_ms()
        self.announced = [0] * N_COUNTERS  # counters the meter restarted from (sent first after a power cut)
        self.announcing = False  # True until that baseline has been delivered: nothing else is sent before it
        self.flash_restored = False  # a cold start continued from the counters saved in flash
        self.base = [0] * 6  # full EAI L1..3, EAE L1..3 counters of the last delivered reading
        self.base_t = [0, 0]  # its (t_s, t_ms)
        self._base_unsynced = True
        self.state = "starting"  # "ok" or "fault:<reason>": the Device entity's deviceState
        self.chip_up = False
        self.restored = False  # state came back from RTC memory (soft reset)
        self.warm_start = False  # ...and the chip kept running, so not a single count was lost
        self.replayed = 0
        self.live_sent = 0
        self._pq = 0  # PQ flags (wire 8-bit form) not delivered yet
        self._fault_flag = 0
        self._wifi_retry_at_ms = time.ticks_ms()
        self._reinit_at_ms = time.ticks_ms()

    # ------------------------------------------------------------------ start-up
    def start(self):
        """Join WiFi (without waiting), restore what survived a reboot, start the ADE9000 and the timer."""
        self.wlan.active(True)
        self._join_wifi()
        self.restored = self.persisted.restore(self.chip, self.base, self.base_t, self.buffer)
        if self.restored:
            self._base_unsynced = False
        else:
            self.base_t[0], self.base_t[1] = Clock.now()
        self._restore_flash()
        try:
            self.chip.identify()
            if self.restored and self.chip.configured(self.cal):
                self.warm_start = True  # the chip kept accumulating: continue from the saved readings
            else:
                self.chip.begin(self.cal)
            self._chip_ok()
        except ChipError as exc:
            self._fault(exc.args[0])
        if self.wlan.isconnected():
            self._online()  # NTP now, so that the first reading already has a true time
        self._set_period()
        self.sampler.start()
        print("meter %s: %s, sampling every %d ms%s" % (
            self.cfg.DEVICE_ID, self.state, self.sampler.period_ms, " (state restored)" if self.restored else ""))

    def _restore_flash(self):
        """Power cut: continue the counters from flash and announce them before anything else is sent.

        The twin may have seen higher counters than the flash copy (saves are rare), so the first message after a
        power-on carries exactly the counters the meter restarted from: the twin sees them go backwards, once, and
        keeps its published energy continuous from there (twin_service/agent/continuity.py).
        """
        store = self.store
        if store is None:
            return
        try:
            stored = store.load()
        except OSError as exc:
            print("meter %s: energy store unreadable (%s); counters not restored" % (self.cfg.DEVICE_ID, exc))
            self.store = None
            return
        if self.restored:
            # Soft reset: RTC memory is newer than flash; only a baseline still owed to the twin is taken over.
            if stored and store.flags & PENDING:
                self.announced[:] = store.announced
                self.announcing = True
            return
        if not stored:  # first power-on with this store: counters start at zero, nothing to announce
            self._save_flash(0)
            print("meter %s: energy store empty, counters start at zero" % self.cfg.DEVICE_ID)
            return
        self.chip.energy[:] = store.counters
        self.flash_restored = True
        # A second power cut before the first baseline was delivered: the twin still waits for that one.
        self.announced[:] = store.announced if store.flags & PENDING else store.counters
        base = self.base
        a = self.announced
        base[0], base[1], base[2] = a[EAI], a[EAI + 1], a[EAI + 2]
        base[3], base[4], base[5] = a[EAE], a[EAE + 1], a[EAE + 2]
        self.announcing = True
        self._save_flash(PENDING)
        print("meter %s: power-on, energy counters %s flash (store seq %d, %d torn slot(s) skipped)" % (
            self.cfg.DEVICE_ID, "restored from", store.seq, store.torn))

    def _save_flash(self, flags):
        self._flash_at_ms = time.ticks_ms()
        try:
            self.store.save(self.chip.energy, flags, self.announced)
        except OSError as exc:
            print("meter %s: energy store write failed (%s); retried at the next save" % (self.cfg.DEVICE_ID, exc))

    def _flash_due(self):
        store = self.store
        if store is None or time.ticks_diff(time.ticks_ms(), self._flash_at_ms) < self._flash_ms:
            return False
        if store.flags & PENDING and not self.announcing:
            return True
        energy = self.chip.energy
        for k in range(N_COUNTERS):
            if energy[k] != store.counters[k]:
                return True
        return False

    def _announce(self):
        """Deliver the restart baseline, stamped with the boot time (arrival time while unsynced); True when
        delivered."""
        t_s, t_ms = self.base_t
        when = iso(t_s, t_ms) if self.clock.synced else None
        if not self.uplink.send(payload.baseline(when, self.announced, self.scale.kwh_per_energy_lsb, self.cfg.WIRING)):
            return False
        self.announcing = False
        self._flash_at_ms = time.ticks_add(time.ticks_ms(), -self._flash_ms)  # clear PENDING at the end of step()
        return True

    def _chip_ok(self):
        self.state = OK
        self.chip_up = True
        self.sampler.enabled = True

    def _fault(self, reason):
        state = "fault:" + reason
        if state != self.state:
            print("meter %s: ADE9000 %s; values withheld, %s" % (
                self.cfg.DEVICE_ID, reason, "re-initialising" if not self.chip_up or reason == CHIP_RESET
                else "retrying every sample"))
        self.state = state
        if reason == CHIP_RESET or not self.chip_up:
            self.chip_up = False
            self.sampler.enabled = False
            if reason == CHIP_RESET:
                self._fault_flag = FAULT

    def _try_reinit(self):
        if time.ticks_diff(time.ticks_ms(), self._reinit_at_ms) < 0:
            return
        try:
            self.chip.begin(self.cal)
            self._chip_ok()
            print("meter %s: ADE9000 re-initialised" % self.cfg.DEVICE_ID)
        except ChipError as exc:
            self._fault(exc.args[0])
            self._reinit_at_ms = time.ticks_add(time.ticks_ms(), _REINIT_RETRY_MS)
            self._publish_state()

    def _publish_state(self):
        """Tell the twin the device state when there are no values to carry it; True when delivered."""
        if not self._online():
            return False
        t_s, t_ms = Clock.now()
        if self.clock.synced:
            t_s, t_ms = self.clock.stamp(t_s, t_ms, time.ticks_ms())
        return self.uplink.send(payload.state_only(iso(t_s, t_ms) if self.clock.synced else None, self.state))

    # ------------------------------------------------------------------ links
    def _join_wifi(self):
        self._wifi_retry_at_ms = time.ticks_add(time.ticks_ms(), _WIFI_RETRY_MS)
        if not self.wlan.isconnected():
            self.wlan.connect(self.cfg.WIFI_SSID, self.cfg.WIFI_PASSWORD)

    def _online(self):
        """WiFi up (rejoined every 30 s otherwise), clock synced when due, MQTT allowed by its backoff."""
        if not self.wlan.isconnected():
            self.uplink.connected = False
            if time.ticks_diff(time.ticks_ms(), self._wifi_retry_at_ms) >= 0:
                self._join_wifi()
            return False
        if self.clock.due():
            delta = self.clock.sync()
            if delta is not None:
                doubt = not self.clock.synced  # a large step waits for the next answer (clock.py)
                self.buffer.shift_unsynced(delta, doubt)
                if self._base_unsynced:
                    self.base_t[0] += delta
                    self._base_unsynced = doubt
        return self.uplink.may_try()

    # ------------------------------------------------------------------ main loop
    def step(self):
        """One main-loop iteration: deliver or buffer the newest sample; True when something was delivered."""
        sampler = self.sampler
        self.uplink.keep_alive()
        if not sampler.ready:
            if not self.chip_up:
                self._try_reinit()
            return False
        sampler.ready = False
        if sampler.fault is not None:
            self._fault(sampler.fault)
            delivered = self._publish_state()
            if not self.chip_up:
                self._reinit_at_ms = time.ticks_ms()
                self._try_reinit()
            return delivered
        self.state = OK
        chip = self.chip
        if chip.pq:
            self._pq |= wire.pq_byte(chip.pq)
            chip.pq = 0
        online = self._online()
        # The reading's time is when the timer tick read the chip, from the clock as it is now (after a sync).
        t_s, t_ms = Clock.now()
        age_ms = time.ticks_diff(time.ticks_ms(), sampler.taken_ms)
        t_ms -= age_ms
        t_s += t_ms // 1000
        t_ms %= 1000
        synced = self.clock.check(t_s, t_ms, sampler.taken_ms)  # a jumped RTC: this reading goes unstamped
        if synced:  # never before a time already sent: a small step back is slewed off (clock.py)
            t_s, t_ms = self.clock.stamp(t_s, t_ms, sampler.taken_ms)
        delivered = False
        live = False
        if online and self.announcing:
            online = delivered = self._announce()  # the baseline first; this sample follows it or waits
        if online and not self.buffer.count and sampler.full:
            message = payload.live(chip, self.scale, iso(t_s, t_ms) if synced else None, self.state, self._pq,
                                   self.cfg.WIRING)
            if self.uplink.send(message):
                self._delivered(t_s, t_ms, chip.energy, synced)
                self.live_sent += 1
                delivered = live = True
        if not live:
            self.buffer.add(t_s, t_ms, self._pq, (0 if synced else UNSYNCED) | self._fault_flag, chip.energy)
            self._pq = 0
            self._fault_flag = 0
            if online:
                delivered = self._replay()
        self._set_period()
        self.persisted.save(chip, self.base, self.base_t, self.buffer)
        # Flash is written after this step's delivery, so a cut during the write loses no delivered energy.
        if self._flash_due():
            self._save_flash(PENDING if self.announcing else 0)
        return delivered

    def _delivered(self, t_s, t_ms, counters, synced=True):
        base = self.base
        base[0], base[1], base[2] = counters[EAI], counters[EAI + 1], counters[EAI + 2]
        base[3], base[4], base[5] = counters[EAE], counters[EAE + 1], counters[EAE + 2]
        self.base_t[0] = t_s
        self.base_t[1] = t_ms
        self._base_unsynced = not synced
        self._pq = 0

    def _replay(self):
        """Publish buffered records oldest-first in batches; stops at the first failure (kept for later)."""
        buf = self.buffer
        if not buf.count or buf.unsynced() or self.announcing:
            return False  # wait for NTP: a record is never sent with a time that is not true
        kwh = self.scale.kwh_per_energy_lsb
        while buf.count:
            n = min(payload.REPLAY_BATCH, buf.count)
            docs = []
            prev = list(self.base)
            prev_t = self.base_t
            last = None
            for i in range(n):
                t_s, t_ms, pq, flags, c = buf.get(i, prev)
                dt = (t_s - prev_t[0]) + (t_ms - prev_t[1]) / 1000
                state = "fault:" + CHIP_RESET if flags & FAULT else OK
                docs.append(payload.record(iso(t_s, t_ms), pq, c, prev, dt, kwh, state, self.cfg.WIRING))
                prev = list(c)
                prev_t = (t_s, t_ms)
                last = (t_s, t_ms)
            if not self.uplink.send(payload.batch(docs)):
                return False
            buf.drop(n)
            self._delivered(last[0], last[1], prev)  # prev: EAI L1..3, EAE L1..3, the positions _delivered reads
            self.replayed += n
        return True

    def _set_period(self):
        sampler = self.sampler
        if self.buffer.count:
            sampler.full = False
            sampler.set_period(int(min(self.buffer.interval_s * 1000, self.max_period_ms)))
        else:
            sampler.full = True
            sampler.set_period(self.period_ms)

    def stop(self):
        self.sampler.stop()
        self.uplink.close()
