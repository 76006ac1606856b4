"""Bridges: field protocols (Modbus/SunSpec) into the twin, speaking to the IoT Agent the way a meter does.

Each bridge lives in its own subpackage and sits in the services layer (docs/architecture.md): it imports
`kernel`, `datamodels` and `fiware_client` only, and reaches the twin through MQTT (IoT Agent JSON) and the
agent's and broker's public APIs, never through another service's modules.
"""
