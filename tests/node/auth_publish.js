// Google's Node client (@google-cloud/pubsub 5.x) against `baton serve
// --auth` over TLS, the way it reaches the real service: with a
// service-account key file Baton made, not in emulator mode.
//
//   GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=ca.pem NODE_EXTRA_CA_CERTS=ca.pem node auth_publish.js --endpoint localhost:PORT \
//       --ca ca.pem --key-file key.json --topic T --denied-topic D [--timeout S]
//
// Publishes to T (granted), to D (not granted), and to T again without any
// credential. Prints one JSON object: each step's outcome, "ok" with the
// message id, or the gRPC status code and details of the error.

'use strict';

const fs = require('fs');
const { PubSub } = require('@google-cloud/pubsub');
// The grpc-js the client itself uses (through google-gax).
const { grpc } = require('google-gax');

function parseArgs(argv) {
  const args = { timeout: 60 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    args[key] = argv[i + 1];
  }
  for (const required of ['endpoint', 'ca', 'keyFile', 'topic', 'deniedTopic']) {
    if (!args[required]) {
      console.error(`missing --${required}`);
      process.exit(2);
    }
  }
  return args;
}

async function outcome(fn) {
  try {
    return { outcome: 'ok', value: await fn() };
  } catch (error) {
    console.error(`error: code ${error.code}: ${error.message}`);
    return { outcome: 'error', code: error.code, details: error.details };
  }
}

async function publish(pubsub, topic, data) {
  return outcome(() => pubsub.topic(topic).publishMessage({ data: Buffer.from(data) }));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (process.env.PUBSUB_EMULATOR_HOST) {
    console.error('PUBSUB_EMULATOR_HOST must not be set: it makes the client send no credentials');
    process.exit(2);
  }
  // Hard limit for the whole script.
  setTimeout(() => {
    console.error(`still running after ${args.timeout} s`);
    process.exit(1);
  }, Number(args.timeout) * 1000).unref();

  // A non-googleapis endpoint means emulator mode (plain text, no
  // credentials) unless emulatorMode is false.
  const common = { apiEndpoint: args.endpoint, emulatorMode: false };

  const withKey = new PubSub({ ...common, keyFilename: args.keyFile });
  const granted = await publish(withKey, args.topic, 'from node');
  const denied = await publish(withKey, args.deniedTopic, 'not allowed');
  await withKey.close();

  // TLS trusting the CA, and no call credentials at all (sslCreds replaces
  // the channel credentials google-gax would build with the auth client).
  const ca = fs.readFileSync(args.ca);
  const anonymous = new PubSub({ ...common, projectId: 'p', sslCreds: grpc.credentials.createSsl(ca) });
  const unauthenticated = await publish(anonymous, args.topic, 'anonymous');
  await anonymous.close();

  console.log(JSON.stringify({
    publish: granted,
    publish_denied_topic: denied,
    publish_without_credential: unauthenticated,
  }));
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
