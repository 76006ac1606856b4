# MicroPython manifest of the ADE9000 driver alone, as micropython-lib packages have one: `include()` it from a
# board manifest to freeze the driver into a firmware image. mip installs from package.json beside it (the same
# file list; tests/firmware/test_package.py keeps the two equal):
#
#   mpremote mip install ./firmware/ade9000_esp32/package.json     (or github:ORG/REPO/firmware/ade9000_esp32)
#
# The meter application (app.py, main.py, config.py, ...) is copied with mpremote as docs/firmware.md shows.
metadata(
    description="ADE9000 three-phase energy metering IC: CRC-checked SPI driver, calibration, energy counters.",
    version="0.1.0",
    license="Apache-2.0",
)

module("ade9000.py", opt=3)
