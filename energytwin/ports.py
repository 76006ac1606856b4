"""The production ports, one table: the embedded stack listens where the FIWARE stack does.

Every part (CLI, tests, docs, docker-compose.fiware.yml checks) reads these names instead of repeating numbers.
"""

MQTT_PORT = 1883  # Mosquitto / amqtt
AGENT_NORTH_PORT = 4041  # IoT Agent provisioning API (/iot/services, /iot/devices)
AGENT_HTTP_SOUTH_PORT = 7896  # IoT Agent JSON HTTP measures (/iot/json)
BROKER_PORT = 1026  # NGSI-LD context broker (Orion-LD)
WEB_PORT = 8080  # live twin page

ALL = {
    "mqtt": MQTT_PORT,
    "agent_north": AGENT_NORTH_PORT,
    "agent_http_south": AGENT_HTTP_SOUTH_PORT,
    "broker": BROKER_PORT,
    "web": WEB_PORT,
}
