//! The recording push endpoint: an HTTP server on 127.0.0.1:0 that keeps every request
//! it gets and answers with a status the program can change (`pushStatus` steps).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

/// Headers kept on a recorded push (STEP_SEMANTICS.md, `pushes`).
const KEPT_HEADERS: &[&str] = &["content-type", "x-goog-version", "authorization"];

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct RecordedPush {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Kept headers, lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

#[derive(Debug)]
struct Shared {
    pushes: Mutex<Vec<RecordedPush>>,
    status: AtomicU16,
}

/// The running endpoint. Dropping it stops the server.
#[derive(Debug)]
pub struct PushEndpoint {
    shared: Arc<Shared>,
    origin: String,
    server: tokio::task::JoinHandle<()>,
}

impl PushEndpoint {
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            pushes: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
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
            shared,
            origin,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, what `{{pushOrigin}}` stands for.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Sets the status answered from now on.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// How many pushes are queued.
    pub fn len(&self) -> usize {
        self.shared.pushes.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Takes every queued push.
    pub fn drain(&self) -> Vec<RecordedPush> {
        self.shared
            .pushes
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

impl Drop for PushEndpoint {
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
    let kept = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            headers.get(*name).map(|v| {
                (
                    (*name).to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
        })
        .collect();
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    if let Ok(mut pushes) = shared.pushes.lock() {
        pushes.push(RecordedPush {
            method: method.as_str().to_owned(),
            path,
            headers: kept,
            body,
        });
    }
    StatusCode::from_u16(shared.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

impl RecordedPush {
    /// `{method, path, headers, body}` with the body parsed as JSON when it is JSON
    /// (not yet normalised).
    pub fn to_json(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let body = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()));
        let mut map = serde_json::Map::new();
        map.insert("method".to_owned(), Value::String(self.method.clone()));
        map.insert("path".to_owned(), Value::String(self.path.clone()));
        map.insert("headers".to_owned(), Value::Object(headers));
        map.insert("body".to_owned(), body);
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_pushes_and_answers_the_set_status() {
        let endpoint = PushEndpoint::start().await.unwrap();
        let client = reqwest::Client::new();
        let url = format!("{}/hook?x=1", endpoint.origin());
        let first = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-goog-version", "v1")
            .header("traceparent", "00-0-0-01")
            .body(r#"{"message":{"data":"eA=="}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(first.status().as_u16(), 200);
        endpoint.set_status(500);
        let second = client.post(&url).body("raw").send().await.unwrap();
        assert_eq!(second.status().as_u16(), 500);
        assert_eq!(endpoint.len(), 2);
        let pushes = endpoint.drain();
        assert_eq!(endpoint.len(), 0);
        assert_eq!(
            pushes[0].to_json(),
            serde_json::json!({"method": "POST", "path": "/hook?x=1",
                "headers": {"content-type": "application/json", "x-goog-version": "v1"},
                "body": {"message": {"data": "eA=="}}})
        );
        assert_eq!(pushes[1].to_json()["body"], "raw");
    }
}
