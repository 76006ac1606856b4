# Energy baselines in flash, so that a power cut (RTC memory gone, the ADE9000's accumulators cleared) does not
# send a member's cumulative import/export back to zero.
#
# The store is a log of fixed-size slots on a NOR-flash block device (MicroPython's block protocol:
# readblocks(block, buf, offset), writeblocks(block, buf, offset) programs without erasing, ioctl(6, block) erases a
# block to 0xFF; esp32.Partition implements it). Slots are written one after the other through every block of the
# device (wear levelling: each erase block is erased once per SLOTS_PER_BLOCK saves, and all blocks take turns);
# a block is erased just before its first slot is written, never the block that holds the newest valid slot.
# Each slot ends in a CRC-16 over everything before it: a write torn by a power cut fails its CRC and the newest
# slot that passes is used, i.e. the previous copy. An erase torn by a power cut only touches a block that holds
# nothing newer than the block before it.
#
# Slot layout, little-endian (_SLOT):
#   2s magic b"EB" | I seq | B flags (PENDING) | B reserved | 18Q counters (xHR_HI LSBs, ade9000.N_COUNTERS)
#   | 18Q announced (the counters the meter restarted from, until the twin has been told) | H crc
#                                                               = 2 + 4 + 1 + 1 + 144 + 144 + 2 = 298 bytes
# SLOT_BYTES = 320 leaves 22 bytes of 0xFF padding, so 12 slots fill a 4096-byte erase block with 256 spare.
#
# Write budget: Meter saves at most every FLASH_SAVE_S (default 900 s: 96 saves a day) plus one save per power-on.
# With a 2-block (8 KiB) partition each block is erased every 24 saves: 4 erases a day. ESP32 modules' SPI NOR
# flash is specified for at least 100,000 program/erase cycles per sector (e.g. Winbond W25Q32JV and GigaDevice
# GD25Q32 datasheets), so the store lasts 100,000 / 4 = 25,000 days, about 68 years, at that rate
# (docs/firmware.md, "Energy across power cuts").
from micropython import const
import struct

from ade9000 import N_COUNTERS, crc16

_SLOT = "<2sIBB18Q18Q"
_BODY_BYTES = const(296)  # struct.calcsize(_SLOT); the CRC follows
SLOT_BYTES = const(320)
_MAGIC = b"EB"
_ERASE = const(6)  # ioctl: erase one block
_BLOCK_COUNT = const(4)
_BLOCK_SIZE = const(5)
PENDING = const(1)  # the meter restarted from `announced` and has not delivered that baseline yet


class EnergyStore:
    """Newest energy baseline in a wear-levelled log of CRC-checked slots on a flash block device."""

    def __init__(self, bdev):
        self._dev = bdev
        self.block_bytes = bdev.ioctl(_BLOCK_SIZE, 0)
        self.blocks = bdev.ioctl(_BLOCK_COUNT, 0)
        self.slots_per_block = self.block_bytes // SLOT_BYTES
        self.slots = self.blocks * self.slots_per_block
        if self.blocks < 2 or self.slots_per_block < 1:
            raise ValueError("energy store needs 2 erase blocks of at least %d bytes" % SLOT_BYTES)
        self._slot = bytearray(SLOT_BYTES)
        self._probe = bytearray(8)
        self.seq = 0  # sequence number of the newest valid slot (0: none)
        self._next = 0  # slot index the next save writes
        self.writes = 0
        self.erases = 0
        self.torn = 0  # slots found written but failing their CRC (a save cut short)
        self.counters = [0] * N_COUNTERS
        self.announced = [0] * N_COUNTERS
        self.flags = 0

    def _read_slot(self, index, buf):
        self._dev.readblocks(index // self.slots_per_block, buf, (index % self.slots_per_block) * SLOT_BYTES)

    def load(self):
        """Scan every slot; keep the newest one that passes its CRC. False when the store holds none."""
        best = -1
        best_seq = 0
        torn = 0
        b = self._slot
        for index in range(self.slots):
            self._read_slot(index, b)
            if b[0] == 0xFF and b[1] == 0xFF and b[SLOT_BYTES - 1] == 0xFF and _blank(b):
                continue
            if b[:2] != _MAGIC or crc16(b, 0, _BODY_BYTES) != (b[_BODY_BYTES] << 8 | b[_BODY_BYTES + 1]):
                torn += 1
                continue
            seq = struct.unpack_from("<I", b, 2)[0]
            if seq > best_seq:
                best_seq = seq
                best = index
        self.torn = torn
        if best < 0:
            self.seq = 0
            self._next = 0
            return False
        self._read_slot(best, b)
        r = struct.unpack_from(_SLOT, b, 0)
        self.seq = r[1]
        self.flags = r[2]
        for k in range(N_COUNTERS):
            self.counters[k] = r[4 + k]
            self.announced[k] = r[4 + N_COUNTERS + k]
        self._next = (best + 1) % self.slots
        return True

    def save(self, counters, flags, announced):
        """Write one slot after the newest; erases the next block first when the slot starts one."""
        dev = self._dev
        spb = self.slots_per_block
        index = self._next
        # Skip slots a torn save left programmed: NOR flash cannot be rewritten without an erase.
        while index % spb:
            self._read_slot(index, self._probe)
            if _blank(self._probe):
                break
            index = (index + 1) % self.slots
        block = index // spb
        if index % spb == 0:
            dev.ioctl(_ERASE, block)
            self.erases += 1
        self.seq += 1
        c = counters
        a = announced
        b = self._slot
        struct.pack_into(_SLOT, b, 0, _MAGIC, self.seq, flags, 0,
                         c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], c[13],
                         c[14], c[15], c[16], c[17],
                         a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
                         a[14], a[15], a[16], a[17])
        crc = crc16(b, 0, _BODY_BYTES)
        b[_BODY_BYTES] = crc >> 8
        b[_BODY_BYTES + 1] = crc & 0xFF
        for k in range(_BODY_BYTES + 2, SLOT_BYTES):
            b[k] = 0xFF
        dev.writeblocks(block, b, (index % spb) * SLOT_BYTES)
        self.writes += 1
        self._next = (index + 1) % self.slots
        for k in range(N_COUNTERS):
            self.counters[k] = c[k]
            self.announced[k] = a[k]
        self.flags = flags


def _blank(buf):
    for x in buf:
        if x != 0xFF:
            return False
    return True


class FileBlockDevice:
    """A flash-like block device in a file of the internal file system, for builds without an `energy` partition.

    LittleFS (the ESP32 port's default) commits a file's data atomically at flush, so a power cut leaves either the
    old or the new slot; the slot CRC still guards FAT and any file system that does not.
    """

    def __init__(self, path, blocks=2, block_bytes=4096):
        self._path = path
        self._blocks = blocks
        self._block_bytes = block_bytes
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
        except OSError:
            size = 0
        if size != blocks * block_bytes:
            with open(path, "wb") as f:
                blank = b"\xff" * block_bytes
                for _ in range(blocks):
                    f.write(blank)

    def readblocks(self, block, buf, offset=0):
        with open(self._path, "rb") as f:
            f.seek(block * self._block_bytes + offset)
            f.readinto(buf)

    def writeblocks(self, block, buf, offset=0):
        with open(self._path, "r+b") as f:
            f.seek(block * self._block_bytes + offset)
            f.write(buf)

    def ioctl(self, op, arg):
        if op == _BLOCK_COUNT:
            return self._blocks
        if op == _BLOCK_SIZE:
            return self._block_bytes
        if op == _ERASE:
            with open(self._path, "r+b") as f:
                f.seek(arg * self._block_bytes)
                f.write(b"\xff" * self._block_bytes)
            return 0
        return 0


def open_device(cfg):
    """The block device for the store: the `energy` data partition if the partition table has one, else a file;
    None when ENERGY_STORE is off."""
    where = getattr(cfg, "ENERGY_STORE", "auto")
    if not where:
        return None
    if where in ("auto", "partition"):
        try:
            import esp32

            found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="energy")
            if found:
                return found[0]
        except ImportError:
            pass
        if where == "partition":
            return None
    try:
        return FileBlockDevice(getattr(cfg, "ENERGY_FILE", "/energy.bin"))
    except OSError as exc:
        print("energy store: no flash file (%s); counters restart at zero after a power cut" % exc)
        return None
