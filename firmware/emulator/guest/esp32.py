# `esp32` for the firmware under MicroPython/wasm: Partition, a block device over the emulated SPI NOR flash of
# the harness (firmware/emulator/harness.py, EmulatedFlash). Same protocol as the ESP32 port's esp32.Partition:
# readblocks/writeblocks with a byte offset program without erasing (NOR: bits only go from 1 to 0),
# ioctl(6, block) erases a 4096-byte block to 0xFF. The flash survives reboots and power cuts; a power cut during
# a write or an erase leaves it torn, as a real one does.
_host = None  # (op, arg) -> value: "flash_read" [block, offset, n] -> hex, "flash_write", "flash_erase", "flash_info"


def bind(host):
    global _host
    _host = host


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, label, blocks, block_bytes):
        self._label = label
        self._blocks = blocks
        self._block_bytes = block_bytes

    @staticmethod
    def find(type=TYPE_APP, subtype=0xFF, label=None):
        info = _host("flash_info", "")
        if type != Partition.TYPE_DATA or not info or (label is not None and label != info[0]):
            return []
        return [Partition(info[0], info[1], info[2])]

    def info(self):
        return (self.TYPE_DATA, 0x81, 0, self._blocks * self._block_bytes, self._label, False)

    def readblocks(self, block, buf, offset=0):
        buf[:] = bytes.fromhex(_host("flash_read", [block, offset, len(buf)]))

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the simple protocol erases first
            _host("flash_erase", block)
            offset = 0
        _host("flash_write", [block, offset, bytes(buf).hex()])

    def ioctl(self, op, arg):
        if op == 4:
            return self._blocks
        if op == 5:
            return self._block_bytes
        if op == 6:
            _host("flash_erase", arg)
            return 0
        return None
