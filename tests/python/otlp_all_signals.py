"""The Python OpenTelemetry SDK exports traces, metrics and logs over
OTLP/HTTP (protobuf) to the endpoint in OTEL_EXPORTER_OTLP_ENDPOINT (Baton's
receiver), as an instrumented service configured only by the standard
variables does. Prints whether each flush succeeded and every warning or
error the SDK logged (an export failure is logged, not raised).

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 python otlp_all_signals.py --project P --prefix X
"""

import logging

from common import finish, parse_args

args = parse_args(default_timeout=60)

problems = []


class Collect(logging.Handler):
    def emit(self, record):
        problems.append(f"{record.name}: {record.getMessage()}")


logging.getLogger().addHandler(Collect(level=logging.WARNING))

from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry._logs import SeverityNumber  # noqa: E402
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: E402
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

resource = Resource.create({"service.name": "python-all-signals"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
meter_provider = MeterProvider(
    resource=resource,
    metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=60_000)],
)
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))

with tracer_provider.get_tracer("all-signals").start_as_current_span("work"):
    meter_provider.get_meter("all-signals").create_counter("orders").add(3)
    app_log = logging.getLogger("app")
    app_log.propagate = False
    app_log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    app_log.setLevel(logging.INFO)
    app_log.info("an order came in")

flushed = {
    "traces": tracer_provider.force_flush(10_000),
    "metrics": meter_provider.force_flush(10_000),
    "logs": logger_provider.force_flush(10_000),
}
finish({"flushed": flushed, "problems": problems})
