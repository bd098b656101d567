//! A worker whose handler uses `tracing`: its spans nest under each
//! message's `process` span and every log line carries the message's trace
//! id, so a log search by trace id finds what the handler did for the
//! request that published the message.
//!
//! ```sh
//! baton serve --in-memory &
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 cargo run -p baton-client --example traced_worker
//! ```
//!
//! It creates `orders` and `orders-worker` when missing, publishes one
//! message and handles it, printing lines like
//! `INFO trace_id=4bf92f3577b34da6a3ce929d0e0e4736 reserving inventory`.
//! Point the provider at an OTLP exporter to see the spans in a backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use baton_client::{
    Client, ClientConfig, Endpoint, Message, PublisherConfig, SubscriberConfig, SubscriptionConfig,
    TracingConfig,
};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;

/// Log lines as `LEVEL trace_id=... message fields`: the trace id of the
/// span the event was logged in (the current `tracing` span's OpenTelemetry
/// side, else the current OpenTelemetry context).
struct WithTraceId;

impl<S, N> FormatEvent<S, N> for WithTraceId
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut context = tracing::Span::current().context();
        if !context.span().span_context().is_valid() {
            context = opentelemetry::Context::current();
        }
        let trace_id = context.span().span_context().trace_id();
        write!(writer, "{} trace_id={trace_id} ", event.metadata().level())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Spans go to this provider (add an OTLP exporter to send them on); the
    // `tracing` layer bridges `tracing` spans into it.
    let provider = SdkTracerProvider::builder().build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            // This example's lines and the client's `process` spans (so the
            // handler's own spans nest under them); `RUST_LOG` says otherwise.
            .with(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "traced_worker=info,baton_trace_context=info",
                    )
                }),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("orders-worker")))
            .with(tracing_subscriber::fmt::layer().event_format(WithTraceId)),
    )?;

    let client =
        Client::connect(ClientConfig::new("demo").with_endpoint(Endpoint::from_env())).await?;
    let _ = client.create_topic("orders").await;
    let _ = client
        .create_subscription(SubscriptionConfig::new("orders-worker", "orders"))
        .await;
    let tracing = TracingConfig::enabled().with_tracer_provider(Arc::new(provider.clone()));

    let publisher = client.publisher_with(
        "orders",
        PublisherConfig::default().with_tracing(tracing.clone()),
    );
    let id = publisher.publish(Message::new("order 7")).await?;
    publisher.shutdown().await;
    tracing::info!(%id, "published");

    let (done, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let subscription = client
        .subscriber_with(
            "orders-worker",
            SubscriberConfig::default().with_tracing(tracing),
        )
        .subscribe(move |message| {
            let done = done.clone();
            async move {
                // Runs inside the message's `process` span: this span is its
                // child, and both log lines carry the publisher's trace id.
                async {
                    tracing::info!("reserving inventory");
                }
                .instrument(tracing::info_span!("reserve inventory"))
                .await;
                tracing::info!(message_id = message.message_id(), "handled");
                message.ack();
                let _ = done.send(());
            }
        });
    let _ = tokio::time::timeout(Duration::from_secs(30), handled.recv()).await;
    subscription.shutdown().await?;
    provider.shutdown()?;
    Ok(())
}
