//! The JSON query API over the [`TraceStore`], served on the main port:
//!
//! - `GET /api/traces?service=..&attr=k=v&..&limit=50&cursor=..` -> a
//!   [`SearchPage`](crate::SearchPage): `{"traces":[TraceSummary], "total",
//!   "more", "nextCursor"}`, most recently updated first, filtered as
//!   [`crate::search`] describes (without parameters: the 50 latest
//!   traces, batch RPC traces left out; `kind=all` brings them back)
//! - `GET /api/traces/facets` -> the services, topics and subscriptions
//!   stored, for the search form
//! - `GET /api/traces/last` -> the most recently updated `TraceDetail`
//! - `GET /api/traces/{traceId}` -> `TraceDetail` (hex id)
//!
//! Unknown traces answer 404, malformed searches 400, both with
//! `{"error": ...}`. The shapes are those of `docs/trace-view-design.md`.

use crate::search::SearchRequest;
use crate::store::TraceStore;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The query API's routes, for merging before the REST fallback; they carry
/// their own state, so they fit any router state `S`.
pub(crate) fn routes<S>(store: TraceStore) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/traces", get(list))
        .route("/api/traces/facets", get(facets))
        .route("/api/traces/last", get(last))
        .route("/api/traces/{trace_id}", get(one))
        .with_state(store)
}

async fn list(State(store): State<TraceStore>, RawQuery(query): RawQuery) -> Response {
    match SearchRequest::parse_query(query.as_deref().unwrap_or_default()) {
        Ok(request) => axum::Json(store.search(&request)).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn facets(State(store): State<TraceStore>) -> Response {
    axum::Json(store.facets()).into_response()
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
