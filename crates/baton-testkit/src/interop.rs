//! Scenarios that run against Baton and the gcloud emulator at once: the
//! same resource names on a fresh in-process Baton and on the shared
//! emulator, Python scripts pointed at each, and one report of every failure
//! (the emulator's log included, since it is the reference).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use baton_proto::pubsub::publisher_client::PublisherClient;
use baton_proto::pubsub::subscriber_client::SubscriberClient;
use baton_proto::pubsub::{Subscription, Topic};
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

use crate::emulator::Emulator;
use crate::python::{PROJECT, python, run_script, unique_prefix};
use crate::server::TestServer;

/// Hard limit of one Python script (it exits by itself at this timeout).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// One server a scenario runs against.
#[derive(Debug, Clone)]
pub struct InteropServer {
    /// `Baton` or `gcloud emulator`, for messages.
    pub name: &'static str,
    /// `host:port`, as `PUBSUB_EMULATOR_HOST` names it.
    pub host: String,
    /// The Python of the interop venv.
    pub python: PathBuf,
    /// The scenario's resource-id prefix.
    pub prefix: String,
}

impl InteropServer {
    /// A resource id of this scenario: `{prefix}-{suffix}`.
    pub fn id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// The full name of topic `{prefix}-{suffix}`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("projects/{PROJECT}/topics/{}", self.id(suffix))
    }

    /// The full name of subscription `{prefix}-{suffix}`.
    pub fn subscription(&self, suffix: &str) -> String {
        format!("projects/{PROJECT}/subscriptions/{}", self.id(suffix))
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    async fn channel(&self) -> Result<Channel> {
        Ok(Endpoint::from_shared(self.url())?.connect().await?)
    }

    /// Creates `{prefix}-topic` and a subscription `{prefix}-{sub}` per
    /// suffix (30 s ack deadline), over plain gRPC.
    pub async fn topic_and_subscriptions(&self, subs: &[&str]) -> Result<()> {
        let channel = self.channel().await?;
        let topic = self.topic("topic");
        PublisherClient::new(channel.clone())
            .create_topic(Topic {
                name: topic.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating {topic} on {}", self.name))?;
        let mut subscriber = SubscriberClient::new(channel);
        for sub in subs {
            subscriber
                .create_subscription(Subscription {
                    name: self.subscription(sub),
                    topic: topic.clone(),
                    ack_deadline_seconds: 30,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating subscription {sub} on {}", self.name))?;
        }
        Ok(())
    }

    /// Runs `python/<script>` against this server; its last JSON line.
    pub async fn script(&self, script: &str, extra: &[&str]) -> Result<Value> {
        let run = run_script(
            &self.python,
            script,
            &self.host,
            &self.prefix,
            SCRIPT_TIMEOUT,
            extra,
        )
        .await?;
        eprintln!(
            "[{}] {script} ({:.1?}): {}",
            self.name, run.elapsed, run.result
        );
        Ok(run.result)
    }
}

/// Runs `scenario` against a fresh Baton server and the shared gcloud
/// emulator at once (same resource names); panics with every failure.
/// `cargo_target_tmpdir` is the test's `CARGO_TARGET_TMPDIR`.
pub async fn on_both<F, Fut>(cargo_target_tmpdir: &'static str, name: &str, scenario: F)
where
    F: Fn(InteropServer) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let python = tokio::task::spawn_blocking(move || python(cargo_target_tmpdir))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let emulator = tokio::task::spawn_blocking(move || Emulator::shared(cargo_target_tmpdir))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let baton = TestServer::start().await;
    let baton_host = baton.host();
    let prefix = unique_prefix(name);
    let server = |name, host: &str| InteropServer {
        name,
        host: host.to_owned(),
        python: python.clone(),
        prefix: prefix.clone(),
    };
    let (ours, theirs) = tokio::join!(
        scenario(server("Baton", &baton_host)),
        scenario(server("gcloud emulator", emulator.host())),
    );
    baton.shutdown().await;
    let mut failures = Vec::new();
    if let Err(e) = theirs {
        failures.push(format!(
            "against the gcloud emulator (the reference): {e:#}\n--- emulator log\n{}",
            emulator.log_tail()
        ));
    }
    if let Err(e) = ours {
        failures.push(format!("against Baton: {e:#}"));
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n\n"));
}
