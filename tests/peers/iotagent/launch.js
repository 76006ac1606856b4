#!/usr/bin/env node
// Test peer: the FIWARE IoT Agent library (iotagent-node-lib, npm) serving its own north API.
//
//   node launch.js --broker http://127.0.0.1:PORT [--context URL[,URL]] [--port N] [--measure-port N]
//
// What runs is the library as the FIWARE IoT Agents (iotagent-json, iotagent-ul) embed it: memory registry,
// NGSI-LD mode (`contextBroker.ngsiVersion: 'ld'`), `/iot/services`, `/iot/devices`, `/iot/about` on --port.
// --context is IOTA_JSON_LD_CONTEXT (left out: the agent sends application/ld+json without @context, as the real
// agent does when that variable is unset).
//
// iotagent-json itself is not on npm, so its south side (MQTT / HTTP measures) is not here. --measure-port opens
// a small HTTP endpoint shaped like iotagent-json's HTTP binding, `POST /iot/json?k=<apikey>&i=<device_id>` with a
// JSON measure object (or an array of them), that does what that binding does with a measure: find the device
// with `iotAgentLib.retrieveDevice` and hand the values to `iotAgentLib.update`, so the entity the broker
// receives is built and sent by the library's own NGSI-LD code (entities-NGSI-LD.js).
//
// Prints one line `READY {"port":…,"measurePort":…}` on stdout once both listen; exits on SIGTERM/SIGINT or when
// stdin closes (the test process died), so no agent outlives its test.
'use strict';

const http = require('http');
const net = require('net');
const path = require('path');

const iotAgentLib = require(path.join(__dirname, 'node_modules', 'iotagent-node-lib'));

function parseArgs(argv) {
    const args = { port: 0, measurePort: 0, broker: null, context: null, logLevel: 'FATAL' };
    for (let i = 0; i < argv.length; i += 2) {
        const key = argv[i].replace(/^--/, '');
        const value = argv[i + 1];
        if (key === 'port' || key === 'measure-port') {
            args[key === 'port' ? 'port' : 'measurePort'] = Number(value);
        } else if (key === 'broker' || key === 'context') {
            args[key] = value;
        } else if (key === 'log-level') {
            args.logLevel = value;
        } else {
            throw new Error('unknown option --' + key);
        }
    }
    if (!args.broker) {
        throw new Error('--broker URL is required');
    }
    return args;
}

function freePort() {
    return new Promise((resolve, reject) => {
        const probe = net.createServer();
        probe.once('error', reject);
        probe.listen(0, '127.0.0.1', () => {
            const port = probe.address().port;
            probe.close(() => resolve(port));
        });
    });
}

// iotagent-json's type guess for a measure key: the provisioned attribute's type, DateTime for TimeInstant.
function guessType(key, device) {
    for (const attribute of device.active || []) {
        if (attribute.object_id === key || attribute.name === key) {
            return attribute.type;
        }
    }
    return key === 'TimeInstant' ? 'DateTime' : 'None';
}

function toValues(measure, device) {
    return Object.keys(measure).map((key) => ({ name: key, type: guessType(key, device), value: measure[key] }));
}

function answer(res, status, body) {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
}

function measureServer() {
    return http.createServer((req, res) => {
        const url = new URL(req.url, 'http://localhost');
        if (req.method !== 'POST' || url.pathname !== '/iot/json') {
            answer(res, 404, { name: 'NOT_FOUND', message: 'POST /iot/json?k=<apikey>&i=<device_id>' });
            return;
        }
        const apikey = url.searchParams.get('k');
        const deviceId = url.searchParams.get('i');
        let raw = '';
        req.on('data', (chunk) => (raw += chunk));
        req.on('end', () => {
            let payload;
            try {
                payload = JSON.parse(raw);
            } catch (e) {
                answer(res, 400, { name: 'WRONG_SYNTAX', message: String(e) });
                return;
            }
            iotAgentLib.retrieveDevice(deviceId, apikey, (error, device) => {
                if (error) {
                    answer(res, error.code || 404, { name: error.name, message: error.message });
                    return;
                }
                const values = Array.isArray(payload)
                    ? payload.map((measure) => toValues(measure, device))
                    : toValues(payload, device);
                iotAgentLib.update(device.name, device.type, '', values, device, (updateError) => {
                    if (updateError) {
                        // node-lib puts the broker's status in `code`, a 207 too: an error is never a 2xx here
                        const status = updateError.code >= 400 ? updateError.code : 500;
                        answer(res, status, {
                            name: updateError.name,
                            message: updateError.message,
                            details: updateError.details || null
                        });
                    } else {
                        answer(res, 200, {});
                    }
                });
            });
        });
    });
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const port = args.port || (await freePort());
    const contextBroker = { url: args.broker, ngsiVersion: 'ld' };
    if (args.context) {
        const contexts = args.context.split(',').map((c) => c.trim());
        contextBroker.jsonLdContext = contexts.length === 1 ? contexts[0] : contexts;
    }
    const config = {
        logLevel: args.logLevel,
        contextBroker,
        server: { port, host: '127.0.0.1' },
        deviceRegistry: { type: 'memory' },
        types: {},
        service: 'energytwin',
        subservice: '/',
        providerUrl: 'http://127.0.0.1:' + port,
        defaultResource: '/iot/json',
        iotaVersion: 'node-lib-peer',
        dieOnUnexpectedError: false
    };
    await new Promise((resolve, reject) => iotAgentLib.activate(config, (e) => (e ? reject(e) : resolve())));
    const south = measureServer();
    await new Promise((resolve) => south.listen(args.measurePort, '127.0.0.1', resolve));
    process.stdout.write('READY ' + JSON.stringify({ port, measurePort: south.address().port }) + '\n');

    const stop = () => {
        south.close();
        iotAgentLib.deactivate(() => process.exit(0));
        setTimeout(() => process.exit(0), 2000).unref();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.stdin.on('end', stop);
    process.stdin.resume();
}

main().catch((error) => {
    process.stderr.write('launch.js: ' + (error && error.stack ? error.stack : error) + '\n');
    process.exit(1);
});
