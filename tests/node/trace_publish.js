// Google's Node client (@google-cloud/pubsub 5.x) with OpenTelemetry tracing
// on publishes --count messages to --topic on PUBSUB_EMULATOR_HOST. Prints
// one JSON object: the message ids and the `{topic} create` spans (their
// contexts are what the messages carry in googclient_traceparent).
//
//   PUBSUB_EMULATOR_HOST=host:port node trace_publish.js --project P --topic T [--count 3]

'use strict';

const otel = require('./otel');
const exporter = otel.install();
const { PubSub } = require('@google-cloud/pubsub');

async function main() {
  const args = otel.parseArgs(process.argv.slice(2), { count: '3', timeout: '60' });
  otel.deadline(Number(args.timeout));
  const pubsub = new PubSub({ projectId: args.project, enableOpenTelemetryTracing: true });
  const topic = pubsub.topic(args.topic);
  const ids = [];
  for (let i = 0; i < Number(args.count); i++) {
    ids.push(await topic.publishMessage({ data: Buffer.from(`from node ${i}`), attributes: { i: String(i) } }));
  }
  await topic.flush();
  const name = `${args.topic} create`;
  for (let tries = 0; tries < 100 && otel.spans(exporter, name).length < ids.length; tries++) {
    await otel.sleep(50);
  }
  console.log(JSON.stringify({ message_ids: ids, creates: otel.spans(exporter, name) }));
  await pubsub.close();
  process.exit(0);
}

main().catch((error) => {
  console.log(JSON.stringify({ error: String(error && error.stack || error) }));
  process.exit(1);
});
