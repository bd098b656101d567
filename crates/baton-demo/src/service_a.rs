//! Service A of the demo: `POST /orders` takes a JSON order and publishes it
//! as an event, with tracing on, inside its own `POST /orders` server span.
//! The message carries the trace context, so Service B's processing joins
//! the same trace.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::telemetry::tracer_provider;
use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use baton_client::{
    Client, ClientConfig, Endpoint, Message, Publisher, PublisherConfig, TracingConfig,
};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{
    SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The service name in the traces.
pub const SERVICE_NAME: &str = "service-a";

/// Settings of Service A.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the HTTP endpoint; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The Pub/Sub endpoint (`host:port` of Baton or an emulator).
    pub pubsub_host: String,
    /// Project of the topic.
    pub project: String,
    /// Topic the order events go to.
    pub topic: String,
    /// OTLP/gRPC endpoint for the spans; `None` uses `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (default `http://localhost:4317`).
    pub otlp_endpoint: Option<String>,
}

impl Config {
    /// Settings from `SERVICE_A_ADDR`, `PUBSUB_EMULATOR_HOST`, `PUBSUB_PROJECT_ID`
    /// and `ORDERS_TOPIC`, with demo defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
        Ok(Self {
            listen: var("SERVICE_A_ADDR", "127.0.0.1:8080")
                .parse()
                .context("SERVICE_A_ADDR")?,
            pubsub_host: var("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
            project: var("PUBSUB_PROJECT_ID", "demo"),
            topic: var("ORDERS_TOPIC", "orders"),
            otlp_endpoint: None,
        })
    }
}

/// An order as posted to `POST /orders`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// Order number.
    pub id: u64,
    /// What was ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// The `202 Accepted` answer: where the order event went.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// Pub/Sub message id of the order event.
    pub message_id: String,
    /// The trace the request belongs to (hex).
    pub trace_id: String,
}

#[derive(Clone)]
struct AppState {
    publisher: Publisher,
    tracer: Arc<SdkTracer>,
}

/// `POST /orders`: publish the order inside a `POST /orders` server span.
async fn post_order(
    State(state): State<AppState>,
    Json(order): Json<Order>,
) -> Result<(StatusCode, Json<Accepted>), (StatusCode, String)> {
    let span = state
        .tracer
        .span_builder("POST /orders")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/orders"),
            KeyValue::new("order.id", order.id.to_string()),
        ])
        .start(state.tracer.as_ref());
    let cx = Context::current_with_span(span);
    let trace_id = cx.span().span_context().trace_id().to_string();
    let result = publish(&state.publisher, &order)
        .with_context(cx.clone())
        .await;
    let span = cx.span();
    match result {
        Ok(message_id) => {
            span.set_attribute(KeyValue::new("http.response.status_code", 202));
            span.end();
            Ok((
                StatusCode::ACCEPTED,
                Json(Accepted {
                    message_id,
                    trace_id,
                }),
            ))
        }
        Err(error) => {
            span.set_attribute(KeyValue::new("http.response.status_code", 503));
            span.set_status(Status::error(error.to_string()));
            span.end();
            Err((StatusCode::SERVICE_UNAVAILABLE, error.to_string()))
        }
    }
}

/// Publishes the order event; the client's `create` span is a child of the
/// current (server) span.
async fn publish(publisher: &Publisher, order: &Order) -> anyhow::Result<String> {
    let body = serde_json::to_vec(order)?;
    let message = Message::new(body).with_attribute("order_id", order.id.to_string());
    Ok(publisher.publish(message).await?)
}

/// Service A serving in the background.
#[derive(Debug)]
pub struct ServiceA {
    local_addr: SocketAddr,
    provider: SdkTracerProvider,
    publisher: Publisher,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ServiceA {
    /// Where `POST /orders` is served.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends the spans recorded so far (waiting on a blocking thread, as
    /// the exporter needs the async runtime to make progress).
    pub async fn flush(&self) -> anyhow::Result<()> {
        let provider = self.provider.clone();
        Ok(tokio::task::spawn_blocking(move || provider.force_flush()).await??)
    }

    /// Stops serving, sends what is still queued and flushes the spans.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        self.publisher.shutdown().await;
        let provider = self.provider;
        tokio::task::spawn_blocking(move || provider.shutdown()).await??;
        Ok(())
    }
}

/// Starts Service A: connects to Pub/Sub, sets up tracing and serves
/// `POST /orders` until [`ServiceA::shutdown`].
pub async fn run(config: Config) -> anyhow::Result<ServiceA> {
    let provider = tracer_provider(SERVICE_NAME, config.otlp_endpoint.as_deref())?;
    let client = Client::connect(
        ClientConfig::new(config.project).with_endpoint(Endpoint::Emulator(config.pubsub_host)),
    )
    .await?;
    let tracing = TracingConfig::enabled().with_tracer_provider(Arc::new(provider.clone()));
    let publisher = client.publisher_with(
        &config.topic,
        PublisherConfig::default().with_tracing(tracing),
    );
    let state = AppState {
        publisher: publisher.clone(),
        tracer: Arc::new(provider.tracer(SERVICE_NAME)),
    };
    let app = Router::new()
        .route("/orders", post(post_order))
        .with_state(state);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| anyhow::anyhow!("binding {}: {error}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(ServiceA {
        local_addr,
        provider,
        publisher,
        stop,
        task,
    })
}
