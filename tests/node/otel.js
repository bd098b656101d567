// OpenTelemetry for the Node trace scripts: an in-memory exporter behind a
// simple processor, and the async-hooks context manager the client's spans
// need to find their parents. `spans(name)` describes the finished spans of
// one name as the Rust tests read them (W3C hex ids).

'use strict';

const api = require('@opentelemetry/api');
const { AsyncHooksContextManager } = require('@opentelemetry/context-async-hooks');
const {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} = require('@opentelemetry/sdk-trace-base');

function install() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider();
  provider.addSpanProcessor(new SimpleSpanProcessor(exporter));
  api.context.setGlobalContextManager(new AsyncHooksContextManager().enable());
  api.trace.setGlobalTracerProvider(provider);
  return exporter;
}

function describe(span) {
  const context = span.spanContext();
  return {
    name: span.name,
    trace_id: context.traceId,
    span_id: context.spanId,
    parent_span_id: span.parentSpanId || null,
  };
}

function spans(exporter, name) {
  return exporter.getFinishedSpans().filter((s) => s.name === name).map(describe);
}

function parseArgs(argv, defaults) {
  const args = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    args[key] = argv[i + 1];
  }
  return args;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Gives up after `seconds` with a JSON error, so a hung client never hangs
// the test.
function deadline(seconds) {
  setTimeout(() => {
    console.log(JSON.stringify({ error: `timed out after ${seconds} s` }));
    process.exit(3);
  }, seconds * 1000).unref();
}

module.exports = { install, spans, parseArgs, sleep, deadline };
