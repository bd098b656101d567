"""OpenTelemetry for the trace scenarios: an SDK TracerProvider with an
in-memory exporter, installed as the global provider (Google's client takes
its tracer from the global provider), and spans reduced to JSON."""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def install():
    """Installs a global SDK provider (sample everything); returns its exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def trace_hex(trace_id):
    return format(trace_id, "032x")


def span_hex(span_id):
    return format(span_id, "016x")


def describe(span):
    """One finished span as JSON: ids in W3C hex, parent (None for a root)."""
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": trace_hex(span.context.trace_id),
        "span_id": span_hex(span.context.span_id),
        "sampled": span.context.trace_flags.sampled,
        "parent_span_id": span_hex(parent.span_id) if parent is not None else None,
        "parent_is_remote": bool(parent.is_remote) if parent is not None else None,
        "message_id": (span.attributes or {}).get("messaging.message.id"),
        "links": [{"trace_id": trace_hex(link.context.trace_id),
                   "span_id": span_hex(link.context.span_id)} for link in span.links],
    }


def finished(exporter, name):
    """The finished spans called `name`."""
    return [s for s in exporter.get_finished_spans() if s.name == name]
