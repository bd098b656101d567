//! The trace web view: static HTML, CSS and JavaScript compiled into the
//! binary (no front-end toolchain), served under `/ui/`.
//!
//! - `GET /ui/` lists recent traces (from `GET /api/traces`), refreshing itself.
//! - `GET /ui/trace/{traceId}` shows one trace as a waterfall (from
//!   `GET /api/traces/{traceId}`; `last` shows the most recent trace).
//!
//! The pages only fetch the JSON query API from the same origin; the
//! rendering lives in `assets/trace.js` and `assets/list.js`.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const TRACE_HTML: &str = include_str!("../assets/trace.html");
const UI_CSS: &str = include_str!("../assets/ui.css");
const LIST_JS: &str = include_str!("../assets/list.js");
const TRACE_JS: &str = include_str!("../assets/trace.js");

/// Routes of the web view, for merging into the server's router before its
/// REST fallback. Stateless, so they fit any router state `S`.
pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { page(INDEX_HTML) }))
        .route("/ui/trace/{trace_id}", get(|| async { page(TRACE_HTML) }))
        .route("/ui/assets/{file}", get(asset))
}

/// An HTML page of the view.
fn page(body: &'static str) -> Response {
    with_type(body, "text/html; charset=utf-8")
}

/// One of the embedded CSS/JS files, by name.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match file.as_str() {
        "ui.css" => with_type(UI_CSS, "text/css; charset=utf-8"),
        "list.js" => with_type(LIST_JS, "text/javascript; charset=utf-8"),
        "trace.js" => with_type(TRACE_JS, "text/javascript; charset=utf-8"),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `body` with its content type, never cached (the binary is the version),
/// and a content security policy allowing only same-origin resources (no
/// inline scripts: data shown on a page can never run). Every page and
/// asset of Baton's web views (this one and the server's console) is served
/// this way.
pub fn with_type(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
