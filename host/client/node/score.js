#!/usr/bin/env node
// Scores images on an onda service from Node.js and prints the top 5 of each: gRPC over TLS channel
// credentials with the key in the `authorization` metadata, as Brainwave's C# and Go users called it.
//
// The messages come from the repository's protos/ (the same .proto files any language compiles), loaded at
// run time by @grpc/proto-loader; nothing is generated ahead. The certificate to trust is either given
// (--ca FILE: explicit root certificates) or taken from gRPC's default roots, which grpc-js reads from the
// file named by GRPC_DEFAULT_SSL_ROOTS_FILE_PATH when that is set.
//
//   node score.js HOST:PORT IMAGE... [--key KEY] [--ca CERT.pem] [--model NAME] [--labels FILE]
//                 [--plaintext] [--timeout SECONDS] [--protos DIR]
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const USAGE = 'usage: node score.js HOST:PORT IMAGE... [--key KEY] [--ca CERT.pem] [--model NAME] ' +
  '[--labels FILE] [--plaintext] [--timeout SECONDS] [--protos DIR]';
const OPTIONS = {'--key': 'key', '--ca': 'ca', '--model': 'model', '--labels': 'labels', '--timeout': 'timeout',
  '--protos': 'protos'};

function parseArgs(argv) {
  const args = {positional: [], timeout: '30', protos: path.join(__dirname, '..', '..', '..', 'protos')};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--plaintext') args.plaintext = true;
    else if (a === '-h' || a === '--help') { console.log(USAGE); process.exit(0); }
    else if (OPTIONS[a]) {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      args[OPTIONS[a]] = argv[++i];
    } else if (a.startsWith('--')) fail(`unknown option ${a}`);
    else args.positional.push(a);
  }
  if (args.positional.length < 2) fail(USAGE);
  return args;
}

function fail(message) {
  console.error(message);
  process.exit(2);
}

// The PredictionService client, its messages read from protos/ (field names as written there).
function predictionService(protos) {
  const definition = protoLoader.loadSync('tensorflow_serving/apis/prediction_service.proto', {
    includeDirs: [protos], keepCase: true, longs: Number, enums: String, defaults: false, oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).tensorflow.serving.PredictionService;
}

// TLS channel credentials, plus call credentials that put the key in every call's `authorization`.
function credentials(args) {
  if (args.plaintext) return grpc.credentials.createInsecure();
  const roots = args.ca ? fs.readFileSync(args.ca) : null; // null: default roots (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH)
  const tls = grpc.credentials.createSsl(roots);
  if (!args.key) return tls;
  const key = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const md = new grpc.Metadata();
    md.add('authorization', `Bearer ${args.key}`);
    callback(null, md);
  });
  return grpc.credentials.combineChannelCredentials(tls, key);
}

function request(image, model) {
  const r = {inputs: {images: {dtype: 'DT_STRING', tensor_shape: {dim: [{size: 1}]}, string_val: [image]}}};
  if (model) r.model_spec = {name: model};
  return r;
}

function predict(client, req, metadata, timeoutS) {
  return new Promise((resolve, reject) => {
    let requestId = null;
    const call = client.Predict(req, metadata, {deadline: Date.now() + timeoutS * 1000}, (err, response) => {
      if (err) reject(err);
      else resolve({response, requestId});
    });
    call.on('metadata', (md) => { requestId = (md.get('request_id')[0] || '').toString(); });
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const [target, ...images] = args.positional;
  const labels = args.labels ? fs.readFileSync(args.labels, 'utf8').split('\n') : null;
  const Service = predictionService(args.protos);
  const client = new Service(target, credentials(args));
  const metadata = new grpc.Metadata(); // plaintext: the key goes per call (call credentials need TLS)
  if (args.plaintext && args.key) metadata.add('authorization', `Bearer ${args.key}`);
  let status = 0;
  for (const file of images) {
    const started = process.hrtime.bigint();
    let answer;
    try {
      answer = await predict(client, request(fs.readFileSync(file), args.model), metadata, Number(args.timeout));
    } catch (err) {
      const code = err.code !== undefined ? Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) : null;
      console.error(`${file}: ${code || 'error'}: ${err.details || err.message}`);
      status = 1;
      continue;
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const out = answer.response.outputs.output_alias;
    const scores = out.float_val;
    const dims = out.tensor_shape.dim.map((d) => Number(d.size));
    console.log(`${file}: ${ms.toFixed(1)} ms (request ${answer.requestId}), model ` +
      `${answer.response.model_spec.name}:${answer.response.model_spec.version.value}, output [${dims}]`);
    const top = scores.map((s, i) => [s, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, 5);
    for (const [s, i] of top) {
      const label = labels && labels[i] ? labels[i] : `class ${i}`;
      console.log(`  ${s.toFixed(6).padStart(9)}  ${String(i).padStart(5)}  ${label}`);
    }
  }
  client.close();
  process.exit(status);
}

main().catch((err) => { console.error(err.stack || String(err)); process.exit(1); });
