/*
 * iotagent-json config.js for energytwin (mount over /opt/iotajson/config.js, or use iotagent.env instead).
 * Same settings as iotagent.env; environment variables, when set, win over this file in the IoT Agent.
 * The attribute mapping is not here: it is provisioned as the service group in service-group.json.
 */
const config = {};

config.mqtt = {
    host: 'mosquitto',
    port: 1883,
    qos: 0, // QoS of what the agent publishes (commands); subscriptions are QoS 0 in iotagent-json
    retain: false,
    retries: 5,
    retryTime: 5,
    keepalive: 60,
    avoidLeadingSlash: false
};

config.iota = {
    logLevel: 'INFO',
    timestamp: true,
    autocast: true,
    contextBroker: {
        host: 'orion',
        port: '1026',
        ngsiVersion: 'ld',
        jsonLdContext: 'https://raw.githubusercontent.com/smart-data-models/dataModel.Energy/master/context.jsonld',
        fallbackTenant: 'energytwin',
        fallbackPath: '/'
    },
    server: {
        port: 4041
    },
    deviceRegistry: {
        type: 'mongodb'
    },
    mongodb: {
        host: 'mongo-db',
        port: '27017',
        db: 'iotagentjson'
    },
    types: {},
    service: 'energytwin',
    subservice: '/',
    providerUrl: 'http://iot-agent:4041',
    defaultResource: '/iot/json',
    defaultType: 'ThreePhaseAcMeasurement',
    defaultKey: 'meterkey'
};

config.http = {
    port: 7896
};

config.amqp = {
    disabled: true
};

module.exports = config;
