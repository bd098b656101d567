//! The server's trace query API (`/api/traces`, `/api/traces/{id}`,
//! `/api/traces/last`) as tests read it: JSON in, the spans of a trace
//! detail out.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// How often [`wait_for_trace`] asks.
const POLL: Duration = Duration::from_millis(50);
/// How many times [`wait_for_trace`] asks (5 s in all).
const POLLS: usize = 100;

/// `GET http://{addr}{path}`: the status and the JSON answer.
pub async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("query API request");
    let status = response.status().as_u16();
    (
        status,
        response.json().await.expect("query API answers JSON"),
    )
}

/// The detail of `trace` once the query API at `addr` knows it (the store
/// is synchronous, but SDK exporters batch on threads of their own, which
/// the server cannot signal: a short bounded poll, answered at the first ask
/// when the exporter was flushed); panics after 5 s.
pub async fn wait_for_trace(addr: SocketAddr, trace: &str) -> Value {
    for _ in 0..POLLS {
        let (status, body) = get_json(addr, &format!("/api/traces/{trace}")).await;
        if status == 200 {
            return body;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("trace {trace} never arrived");
}

/// The spans of a trace detail under `key`: `"spans"` (its own) or
/// `"linkedSpans"` (other traces' spans linking to it).
pub fn spans<'a>(detail: &'a Value, key: &str) -> Vec<&'a Value> {
    detail[key].as_array().into_iter().flatten().collect()
}

/// The trace's own spans called `name`.
pub fn named<'a>(detail: &'a Value, name: &str) -> Vec<&'a Value> {
    named_in(detail, "spans", name)
}

/// The spans under `key` (see [`spans`]) called `name`.
pub fn named_in<'a>(detail: &'a Value, key: &str, name: &str) -> Vec<&'a Value> {
    spans(detail, key)
        .into_iter()
        .filter(|s| s["name"] == name)
        .collect()
}
