"""Configuration for the production FIWARE IoT Agent JSON, generated from the measure table.

`python -m iot_agent_config` rewrites `service-group.json` (the body to POST to `/iot/services`); a test checks
the committed file, `iotagent.env` and `config.js` against the measure table and provisioning/agent_bodies.py.
"""
