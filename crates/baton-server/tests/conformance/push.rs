//! Pushes as the corpus records them: the testkit's recording endpoint
//! (`baton_testkit::push::PushRecorder`) keeps every request whole; a
//! `pushes` step compares only the method, the path, the headers of
//! STEP_SEMANTICS.md and the body.

use baton_testkit::push::Push;
use serde_json::Value;

/// Headers kept on a recorded push (STEP_SEMANTICS.md, `pushes`).
const KEPT_HEADERS: &[&str] = &["content-type", "x-goog-version", "authorization"];

/// `{method, path, headers, body}` of `push`, with the kept headers only
/// (lower-case names) and the body parsed as JSON when it is JSON (not yet
/// normalised).
pub fn to_json(push: &Push) -> Value {
    let headers: serde_json::Map<String, Value> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            push.headers.get(*name).map(|v| {
                (
                    (*name).to_owned(),
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
        })
        .collect();
    let body = serde_json::from_slice(&push.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&push.body).into_owned()));
    let mut map = serde_json::Map::new();
    map.insert(
        "method".to_owned(),
        Value::String(push.method.as_str().to_owned()),
    );
    map.insert("path".to_owned(), Value::String(push.path.clone()));
    map.insert("headers".to_owned(), Value::Object(headers));
    map.insert("body".to_owned(), body);
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_testkit::push::PushRecorder;

    #[tokio::test]
    async fn records_pushes_and_answers_the_set_status() {
        let endpoint = PushRecorder::start().await;
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
            to_json(&pushes[0]),
            serde_json::json!({"method": "POST", "path": "/hook?x=1",
                "headers": {"content-type": "application/json", "x-goog-version": "v1"},
                "body": {"message": {"data": "eA=="}}})
        );
        assert_eq!(to_json(&pushes[1])["body"], "raw");
    }
}
