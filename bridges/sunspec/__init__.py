"""The Modbus/SunSpec bridge: inverters and home batteries read and commanded, published like a meter.

docs/inverters.md is the user's guide. Modules, one job each:
`models` (SunSpec definitions from pysunspec2, scale factors), `transport` (pymodbus TCP / RTU clients),
`discovery` (the SunSpec model chain), `registers` (the register -> attribute table), `reader` (one poll of a
device into wire measures), `buffer` (the offline buffer), `uplink` (MQTT, IoT Agent JSON), `controls`
(commands: write, read back, verify; the watchdog), `site` (site.yaml), `bridge` (the polling service),
`provision` (agent device bodies), `simulator` (the simulated SunSpec home), `commands` (`energytwin inverter`).
"""
