//! The lane's queue, batching, retry and backoff, over a scripted transport
//! on Tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::transport::{SendError, Transport, grpc_error, status_with_retry_info};
use super::*;

/// Answers each send from a script (success when it runs out), recording
/// what was sent and when.
#[derive(Clone, Default)]
struct Scripted {
    script: Arc<Mutex<VecDeque<Result<(), SendError>>>>,
    sent: Arc<Mutex<Vec<(tokio::time::Instant, usize, String)>>>,
    /// Held until released, to keep the lane busy.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl Transport<ExportTraceServiceRequest> for Scripted {
    fn send(
        &self,
        payload: &ExportTraceServiceRequest,
        chain: &str,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send {
        let this = self.clone();
        let items = payload.items();
        let chain = chain.to_string();
        async move {
            if let Some(gate) = &this.gate {
                gate.acquire().await.unwrap().forget();
            }
            this.sent
                .lock()
                .unwrap()
                .push((tokio::time::Instant::now(), items, chain));
            this.script.lock().unwrap().pop_front().unwrap_or(Ok(()))
        }
    }
}

fn unavailable() -> Result<(), SendError> {
    Err(grpc_error(tonic::Status::unavailable("down")))
}

fn spans(n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn config() -> ForwardConfig {
    let mut config = ForwardConfig::to("http://upstream:4317", Protocol::Grpc).unwrap();
    config.initial_backoff = Duration::from_secs(1);
    config.max_backoff = Duration::from_secs(4);
    config.max_elapsed = Duration::from_secs(60);
    config
}

fn forwarding(config: &ForwardConfig, transport: Scripted) -> Forwarding {
    let mut forwarding = Forwarding::off("me");
    let retry = Retry {
        initial: config.initial_backoff,
        max: config.max_backoff,
        max_elapsed: config.max_elapsed,
        max_batch_items: config.max_batch_items,
    };
    let target = config.traces.clone().unwrap();
    forwarding.traces =
        Some(forwarding.lane_over(Signal::Traces, &target, config, retry, transport));
    forwarding
}

fn traces(f: &Forwarding) -> LaneStatus {
    f.status().traces.unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_with_doubling_backoff_until_the_upstream_is_back() {
    let transport = Scripted::default();
    transport.script.lock().unwrap().extend([
        unavailable(),
        unavailable(),
        unavailable(),
        unavailable(),
    ]);
    let f = forwarding(&config(), transport.clone());
    let start = tokio::time::Instant::now();
    f.traces(&spans(3), None);
    assert!(f.flush(Duration::from_secs(600)).await);
    let sent = transport.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 5);
    // Delays 1, 2, 4, 4 s (capped), each jittered down by at most 20%.
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1].0 - w[0].0).collect();
    for (gap, full) in gaps.iter().zip([1, 2, 4, 4]) {
        let full = Duration::from_secs(full);
        assert!(
            *gap <= full && *gap >= full.mul_f64(0.8),
            "{gap:?} vs {full:?}"
        );
    }
    assert!(start.elapsed() <= Duration::from_secs(11));
    let status = traces(&f);
    assert_eq!(status.state, UpstreamState::Up);
    assert_eq!(
        (status.forwarded, status.dropped, status.failed_attempts),
        (3, 0, 4)
    );
    assert_eq!(status.last_error.as_deref(), Some("gRPC Unavailable: down"));
    assert_eq!(sent[0].2, "me");
}

#[tokio::test(start_paused = true)]
async fn retry_info_sets_the_delay_and_plain_resource_exhausted_is_final() {
    let transport = Scripted::default();
    transport.script.lock().unwrap().extend([
        Err(grpc_error(status_with_retry_info(
            tonic::Code::ResourceExhausted,
            "slow down",
            Duration::from_secs(7),
        ))),
        Ok(()),
        Err(grpc_error(tonic::Status::resource_exhausted(
            "no retry info",
        ))),
        Err(grpc_error(tonic::Status::invalid_argument("bad"))),
    ]);
    let f = forwarding(&config(), transport.clone());
    f.traces(&spans(1), None);
    assert!(f.flush(Duration::from_secs(60)).await);
    {
        let sent = transport.sent.lock().unwrap();
        assert_eq!(sent[1].0 - sent[0].0, Duration::from_secs(7));
    }
    f.traces(&spans(2), None);
    assert!(f.flush(Duration::from_secs(60)).await);
    assert_eq!(traces(&f).state, UpstreamState::Down);
    f.traces(&spans(4), None);
    assert!(f.flush(Duration::from_secs(60)).await);
    let status = traces(&f);
    assert_eq!(
        (status.forwarded, status.dropped, status.failed_attempts),
        (1, 6, 3)
    );
    assert_eq!(
        transport.sent.lock().unwrap().len(),
        4,
        "non-retryable errors are not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_dropped_after_max_elapsed() {
    let transport = Scripted::default();
    transport
        .script
        .lock()
        .unwrap()
        .extend((0..100).map(|_| unavailable()));
    let mut config = config();
    config.max_elapsed = Duration::from_secs(10);
    let f = forwarding(&config, transport.clone());
    f.traces(&spans(2), None);
    assert!(f.flush(Duration::from_secs(60)).await);
    let status = traces(&f);
    assert_eq!(status.state, UpstreamState::Down);
    assert_eq!(status.dropped, 2);
    assert!(
        tokio::time::Instant::now() - transport.sent.lock().unwrap()[0].0
            <= Duration::from_secs(10)
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let transport = Scripted {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let mut config = config();
    config.queue_items = 10;
    config.queue_requests = 100;
    let f = forwarding(&config, transport.clone());
    // The first request is taken and held in the transport; the rest queue
    // up to 10 spans outstanding in all.
    for _ in 0..5 {
        f.traces(&spans(3), None);
    }
    let status = traces(&f);
    assert_eq!(status.queued, 9);
    assert_eq!(status.dropped, 6);
    gate.add_permits(100);
    assert!(f.flush(Duration::from_secs(5)).await);
    let status = traces(&f);
    assert_eq!((status.forwarded, status.dropped, status.queued), (9, 6, 0));
}

#[tokio::test(start_paused = true)]
async fn queued_requests_are_merged_per_chain() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let transport = Scripted {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let f = forwarding(&config(), transport.clone());
    f.traces(&spans(1), None);
    tokio::task::yield_now().await;
    f.traces(&spans(1), None);
    f.traces(&spans(2), None);
    f.traces(&spans(4), Some("other"));
    f.traces(&spans(8), Some("other"));
    gate.add_permits(100);
    assert!(f.flush(Duration::from_secs(5)).await);
    let sent: Vec<(usize, String)> = transport
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(_, n, c)| (*n, c.clone()))
        .collect();
    assert_eq!(
        sent,
        vec![
            (1, "me".to_string()),
            (3, "me".to_string()),
            (12, "other,me".to_string())
        ]
    );
}

#[test]
fn loops_are_recognised_by_id() {
    let f = Forwarding::off("abc");
    assert!(f.is_loop(Some("abc")));
    assert!(f.is_loop(Some("x, abc")));
    assert!(!f.is_loop(Some("abcd,x")));
    assert!(!f.is_loop(None));
    assert_eq!(f.status().loops_refused, 2);
    assert!(!Forwarding::off("").is_loop(Some("")));
}

#[test]
fn grpc_retryable_codes() {
    for code in [
        tonic::Code::Cancelled,
        tonic::Code::DeadlineExceeded,
        tonic::Code::Aborted,
        tonic::Code::OutOfRange,
        tonic::Code::Unavailable,
        tonic::Code::DataLoss,
    ] {
        assert!(
            grpc_error(tonic::Status::new(code, "x")).retryable,
            "{code:?}"
        );
    }
    for code in [
        tonic::Code::InvalidArgument,
        tonic::Code::PermissionDenied,
        tonic::Code::Unauthenticated,
        tonic::Code::ResourceExhausted,
    ] {
        assert!(
            !grpc_error(tonic::Status::new(code, "x")).retryable,
            "{code:?}"
        );
    }
}
