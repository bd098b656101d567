// Google's Node client (@google-cloud/pubsub 5.x) with OpenTelemetry tracing
// on receives --expect distinct messages from --subscription on
// PUBSUB_EMULATOR_HOST and acks them. Prints one JSON object: the message
// ids and the `{subscription} subscribe` spans with their parents (the
// create span named by googclient_traceparent).
//
//   PUBSUB_EMULATOR_HOST=host:port node trace_subscribe.js --project P --subscription S [--expect 3]

'use strict';

const otel = require('./otel');
const exporter = otel.install();
const { PubSub } = require('@google-cloud/pubsub');

async function main() {
  const args = otel.parseArgs(process.argv.slice(2), { expect: '3', timeout: '60' });
  otel.deadline(Number(args.timeout));
  const expect = Number(args.expect);
  const pubsub = new PubSub({ projectId: args.project, enableOpenTelemetryTracing: true });
  const subscription = pubsub.subscription(args.subscription);
  const ids = new Set();
  await new Promise((resolve, reject) => {
    subscription.on('error', reject);
    subscription.on('message', (message) => {
      ids.add(message.id);
      message.ack();
      if (ids.size >= expect) resolve();
    });
  });
  const name = `${args.subscription} subscribe`;
  // A subscribe span ends once its ack has gone out.
  for (let tries = 0; tries < 200 && otel.spans(exporter, name).length < expect; tries++) {
    await otel.sleep(50);
  }
  await subscription.close();
  console.log(JSON.stringify({ message_ids: [...ids], subscribes: otel.spans(exporter, name) }));
  await pubsub.close();
  process.exit(0);
}

main().catch((error) => {
  console.log(JSON.stringify({ error: String(error && error.stack || error) }));
  process.exit(1);
});
