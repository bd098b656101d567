//! The JSON query API over the [`TraceStore`], served on the main port:
//!
//! - `GET /api/traces?limit=50` -> `{"traces":[TraceSummary]}`, newest first
//! - `GET /api/traces/last` -> the most recently updated `TraceDetail`
//! - `GET /api/traces/{traceId}` -> `TraceDetail` (hex id)
//!
//! Unknown traces answer 404 with `{"error": ...}`. The shapes are those of
//! `docs/trace-view-design.md`.

use crate::store::TraceStore;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

/// Default and largest `limit` of `GET /api/traces`.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// The query API's routes, for merging before the REST fallback; they carry
/// their own state, so they fit any router state `S`.
pub(crate) fn routes<S>(store: TraceStore) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/traces", get(list))
        .route("/api/traces/last", get(last))
        .route("/api/traces/{trace_id}", get(one))
        .with_state(store)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

async fn list(State(store): State<TraceStore>, Query(params): Query<ListParams>) -> Response {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    axum::Json(serde_json::json!({ "traces": store.list(limit) })).into_response()
}

async fn last(State(store): State<TraceStore>) -> Response {
    match store.last() {
        Some(detail) => axum::Json(detail).into_response(),
        None => not_found("no traces stored yet".to_string()),
    }
}

async fn one(State(store): State<TraceStore>, Path(trace_id): Path<String>) -> Response {
    match store.trace(&trace_id) {
        Some(detail) => axum::Json(detail).into_response(),
        None => not_found(format!("trace {trace_id} not found")),
    }
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
