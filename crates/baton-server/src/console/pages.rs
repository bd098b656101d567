//! The console's pages: static HTML, CSS and JavaScript compiled into the
//! binary (no front-end toolchain), drawn from the console's JSON API. They
//! use the trace view's stylesheet (`/ui/assets/ui.css`) plus their own.
//! Every page is one shell (`assets/console/shell.html`: head, navigation,
//! the sign-in form, the status line) around its own content, put together
//! once when first served.
//!
//! - `/ui/topics` and `/ui/subscriptions`: paged lists with stats.
//! - `/ui/topics/{project}/{topic}`: stats, subscriptions, a publish form.
//! - `/ui/subscriptions/{project}/{subscription}`: stats, filter and
//!   policies, push health, dead-lettered messages, peek and seek.
//! - `/ui/messages/{project}/{topic}/{message_id}`: a message's timeline.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use baton_trace_store::web_ui::with_type;

use crate::api::PubSubApi;

const SHELL_HTML: &str = include_str!("../../assets/console/shell.html");

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Topics,
    Subscriptions,
    Neither,
}

/// A page: the shell around `content`, titled `title`, with `data-page` set
/// to `page` (what `console.js` draws).
fn render(page: &str, title: &str, section: Section, content: &str) -> String {
    let current = |of: Section| {
        if of == section {
            " class=\"current\""
        } else {
            ""
        }
    };
    SHELL_HTML
        .replace("{{title}}", title)
        .replace("{{page}}", page)
        .replace("{{topics_current}}", current(Section::Topics))
        .replace("{{subscriptions_current}}", current(Section::Subscriptions))
        .replace("{{content}}\n", content)
}

static TOPICS_HTML: LazyLock<String> = LazyLock::new(|| {
    render(
        "topics",
        "topics",
        Section::Topics,
        include_str!("../../assets/console/topics.html"),
    )
});
static TOPIC_HTML: LazyLock<String> = LazyLock::new(|| {
    render(
        "topic",
        "topic",
        Section::Topics,
        include_str!("../../assets/console/topic.html"),
    )
});
static SUBSCRIPTIONS_HTML: LazyLock<String> = LazyLock::new(|| {
    render(
        "subscriptions",
        "subscriptions",
        Section::Subscriptions,
        include_str!("../../assets/console/subscriptions.html"),
    )
});
static SUBSCRIPTION_HTML: LazyLock<String> = LazyLock::new(|| {
    render(
        "subscription",
        "subscription",
        Section::Subscriptions,
        include_str!("../../assets/console/subscription.html"),
    )
});
static MESSAGE_HTML: LazyLock<String> = LazyLock::new(|| {
    render(
        "message",
        "message",
        Section::Neither,
        include_str!("../../assets/console/message.html"),
    )
});
const CONSOLE_CSS: &str = include_str!("../../assets/console/console.css");
const CONSOLE_JS: &str = include_str!("../../assets/console/console.js");

pub(super) fn routes() -> Router<PubSubApi> {
    Router::new()
        .route("/ui/topics", get(|| async { page(&TOPICS_HTML) }))
        .route(
            "/ui/topics/{project}/{topic}",
            get(|| async { page(&TOPIC_HTML) }),
        )
        .route(
            "/ui/subscriptions",
            get(|| async { page(&SUBSCRIPTIONS_HTML) }),
        )
        .route(
            "/ui/subscriptions/{project}/{subscription}",
            get(|| async { page(&SUBSCRIPTION_HTML) }),
        )
        .route(
            "/ui/messages/{project}/{topic}/{message_id}",
            get(|| async { page(&MESSAGE_HTML) }),
        )
        .route("/ui/console/{file}", get(asset))
}

fn page(body: &'static str) -> Response {
    with_type(body, "text/html; charset=utf-8")
}

async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "console.css" => with_type(CONSOLE_CSS, "text/css; charset=utf-8"),
        "console.js" => with_type(CONSOLE_JS, "text/javascript; charset=utf-8"),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
