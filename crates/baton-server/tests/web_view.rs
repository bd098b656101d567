//! The trace web view's pages and assets as `baton serve` serves them (their
//! rendering in a real browser is the full tier's `tests/tests/web_ui.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_testkit::server::TestServer;

#[tokio::test]
async fn baton_serve_serves_the_view() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    for (path, ty, needle) in [
        ("/ui/", "text/html", "recent traces"),
        ("/ui/trace/abc", "text/html", "/ui/assets/trace.js"),
        ("/ui/assets/trace.js", "text/javascript", "waiting in queue"),
        ("/ui/assets/list.js", "text/javascript", "/api/traces"),
        ("/ui/assets/ui.css", "text/css", ".gap"),
    ] {
        let resp = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let content_type = resp.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(content_type.starts_with(ty), "{path}: {content_type}");
        assert!(resp.text().await.unwrap().contains(needle), "{path}");
    }
    let missing = client
        .get(server.url("/ui/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.shutdown().await;
}
