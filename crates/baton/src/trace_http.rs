//! How the trace commands reach a running server's query API: one JSON GET
//! with the server's error message on failure, and finding the trace of a
//! message id through the search.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// A client for the query API (10 s timeout).
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")
}

/// GETs `url` as JSON; a non-2xx answer is an error carrying the server's
/// `{"error": ...}` message.
pub async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("fetching {url} (is `baton serve` running? see --server)"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("error").map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            })
            .unwrap_or(body);
        bail!("{url}: {status}: {message}");
    }
    serde_json::from_str(&body).with_context(|| format!("{url} did not return JSON"))
}

/// The id of the most recently updated trace holding message `message_id`
/// (`messaging.message.id`), searched on the server at `base`; how many
/// traces hold it.
pub async fn trace_of_message(
    client: &reqwest::Client,
    base: &str,
    message_id: &str,
) -> anyhow::Result<(String, usize)> {
    let request = baton_trace_store::SearchRequest {
        filter: baton_trace_store::TraceFilter {
            message_id: Some(message_id.to_string()),
            ..Default::default()
        },
        limit: 1,
        cursor: None,
    };
    let url = format!("{base}/api/traces?{}", request.to_query());
    let page = get_json(client, &url).await?;
    let total = page.get("total").and_then(Value::as_u64).unwrap_or(0);
    match page
        .get("traces")
        .and_then(|t| t.get(0))
        .and_then(|t| t.get("traceId"))
        .and_then(Value::as_str)
    {
        Some(id) => Ok((id.to_string(), usize::try_from(total).unwrap_or(usize::MAX))),
        None => bail!("no stored trace holds message {message_id:?}"),
    }
}
