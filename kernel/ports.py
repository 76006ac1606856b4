"""The production ports, one table: the embedded stack listens where the FIWARE stack does.

Every part (CLI, tests, docs, docker-compose.fiware.yml checks) reads these names instead of repeating numbers.
"""

MQTT_PORT = 1883  # Mosquitto / amqtt
AGENT_NORTH_PORT = 4041  # IoT Agent provisioning API (/iot/services, /iot/devices)
AGENT_HTTP_SOUTH_PORT = 7896  # IoT Agent JSON HTTP measures (/iot/json)
BROKER_PORT = 1026  # NGSI-LD context broker (Orion-LD)
WEB_PORT = 8080  # live twin page
QUALITY_PORT = 8070  # power-quality analytics (POST /notify from the broker, GET /health)
ACCESS_PORT = 1027  # the access layer (PEP, `energytwin access serve`) in front of the NGSI-LD broker

ALL = {
    "mqtt": MQTT_PORT,
    "agent_north": AGENT_NORTH_PORT,
    "agent_http_south": AGENT_HTTP_SOUTH_PORT,
    "broker": BROKER_PORT,
    "web": WEB_PORT,
    "quality": QUALITY_PORT,
}

# Production-only services (docker-compose.fiware.yml); the embedded stack does not run these.
MQTT_TLS_PORT = 8883  # Mosquitto TLS listener (optional)
QUANTUMLEAP_PORT = 8668  # QuantumLeap (POST /v2/notify, GET /health)
CRATE_HTTP_PORT = 4200  # CrateDB HTTP (/_sql, admin UI)
CRATE_PG_PORT = 5432  # CrateDB PostgreSQL wire protocol (Grafana's datasource)
GRAFANA_PORT = 3000
MINTAKA_PORT = 9090  # Mintaka, the NGSI-LD temporal API over Orion-LD's TRoE history (compose profile "temporal")
TIMESCALE_PORT = 5432  # TimescaleDB (PostgreSQL) that Orion-LD's TRoE writes to; inside the network only

PRODUCTION = {
    **ALL,
    "mqtt_tls": MQTT_TLS_PORT,
    "quantumleap": QUANTUMLEAP_PORT,
    "crate_http": CRATE_HTTP_PORT,
    "crate_pg": CRATE_PG_PORT,
    "grafana": GRAFANA_PORT,
    "mintaka": MINTAKA_PORT,
    "timescale": TIMESCALE_PORT,
}
