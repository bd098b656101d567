//! A push endpoint that records what the server pushes: an HTTP server on
//! `127.0.0.1:0` that keeps every request (method, path with query,
//! headers, body, arrival time) and answers the statuses a test scripts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long [`PushRecorder::expect`] waits for a push.
const EXPECT_WITHIN: Duration = Duration::from_secs(5);

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct Push {
    /// The HTTP method (the server pushes with POST).
    pub method: Method,
    /// Path and query, as sent.
    pub path: String,
    /// Every header, as sent.
    pub headers: HeaderMap,
    /// The body, as sent.
    pub body: Bytes,
    /// When it arrived (tokio's clock, so gaps follow a paused test clock).
    pub at: Instant,
}

impl Push {
    /// The body as JSON; panics when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The value of header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug)]
struct Shared {
    /// Statuses to answer, in order, before `status`.
    script: Mutex<VecDeque<u16>>,
    /// The status answered once the script is used up.
    status: AtomicU16,
    /// Pushes not yet taken by the test, oldest first.
    pushes: Mutex<VecDeque<Push>>,
    /// Woken on every push.
    arrived: Notify,
}

/// The running endpoint; dropping it stops the server.
#[derive(Debug)]
pub struct PushRecorder {
    origin: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl PushRecorder {
    /// Serves on a free loopback port; panics when it cannot bind.
    pub async fn start() -> Self {
        Self::try_start().await.expect("push endpoint listens")
    }

    /// Serves on a free loopback port, or answers why it cannot.
    pub async fn try_start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            status: AtomicU16::new(200),
            pushes: Mutex::new(VecDeque::new()),
            arrived: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(record)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            origin,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The push endpoint URL for `path` (with any query).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// Answers these statuses to the next requests, in order, then the
    /// standing status (200 unless [`Self::set_status`] changed it).
    pub fn script(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    /// The status answered from now on (after any scripted ones).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// How many pushes wait to be taken.
    pub fn len(&self) -> usize {
        self.shared.pushes.lock().unwrap().len()
    }

    /// Whether no push waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every push received so far, oldest first.
    pub fn drain(&self) -> Vec<Push> {
        self.shared.pushes.lock().unwrap().drain(..).collect()
    }

    /// The oldest push not yet taken, waiting up to `wait` for one.
    pub async fn next(&self, wait: Duration) -> Option<Push> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a push between the look and the
            // wait still wakes it.
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(push) = self.shared.pushes.lock().unwrap().pop_front() {
                return Some(push);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.shared.pushes.lock().unwrap().pop_front();
            }
        }
    }

    /// The next push, which must come within 5 s.
    pub async fn expect(&self) -> Push {
        self.next(EXPECT_WITHIN).await.expect("a push within 5 s")
    }

    /// Asserts that no push arrives within `wait`.
    pub async fn expect_none(&self, wait: Duration) {
        if let Some(push) = self.next(wait).await {
            panic!("unexpected push: {push:?}");
        }
    }
}

impl Drop for PushRecorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let scripted = shared.script.lock().unwrap().pop_front();
    let status = scripted.unwrap_or_else(|| shared.status.load(Ordering::SeqCst));
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    shared.pushes.lock().unwrap().push_back(Push {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    });
    shared.arrived.notify_waiters();
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn records_pushes_and_answers_scripted_then_standing_statuses() {
        let endpoint = PushRecorder::start().await;
        endpoint.script(&[500, 404]);
        endpoint.set_status(204);
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        for n in 0..3 {
            let response = client
                .post(endpoint.url(&format!("/hook?n={n}")))
                .header("content-type", "application/json")
                .body(format!(r#"{{"n":{n}}}"#))
                .send()
                .await
                .unwrap();
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, [500, 404, 204]);
        assert_eq!(endpoint.len(), 3);
        let first = endpoint.expect().await;
        assert_eq!(first.method, Method::POST);
        assert_eq!(first.path, "/hook?n=0");
        assert_eq!(first.header("content-type"), Some("application/json"));
        assert_eq!(first.json()["n"], 0);
        let rest = endpoint.drain();
        assert_eq!(rest.len(), 2);
        assert!(rest[0].at <= rest[1].at);
        assert!(endpoint.is_empty());
        endpoint.expect_none(Duration::from_millis(50)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn next_waits_for_a_push_that_comes_later() {
        let endpoint = PushRecorder::start().await;
        let url = endpoint.url("/late");
        let start = Instant::now();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            reqwest::Client::new().post(url).send().await.unwrap();
        });
        let push = endpoint.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(push.path, "/late");
        // Woken by the push itself, at the (virtual) instant it arrived.
        assert_eq!(push.at - start, Duration::from_secs(3));
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        sender.await.unwrap();
    }
}
