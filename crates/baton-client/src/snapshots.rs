//! Snapshots: a subscription's acknowledgment state at one moment, kept so
//! the subscription (or another on the same topic) can seek back to it.

use std::collections::HashMap;
use std::time::SystemTime;

use baton_proto::pubsub::{
    CreateSnapshotRequest, DeleteSnapshotRequest, GetSnapshotRequest, ListSnapshotsRequest,
    ListTopicSnapshotsRequest, Snapshot, UpdateSnapshotRequest,
};
use baton_proto::wkt;

use crate::admin::timestamp;
use crate::client::Client;
use crate::error::AdminError;
use crate::retry::CallFamily;

type Result<T, E = AdminError> = std::result::Result<T, E>;

/// A new snapshot: `SnapshotConfig::new(id, subscription)` and `with_*`.
///
/// ```
/// use baton_client::SnapshotConfig;
/// let config = SnapshotConfig::new("before-deploy", "worker").with_label("env", "prod");
/// assert_eq!(config.subscription(), "worker");
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SnapshotConfig {
    /// Snapshot id or full name.
    snapshot: String,
    /// The subscription whose state is captured (id or full name).
    subscription: String,
    /// Labels of the snapshot.
    labels: HashMap<String, String>,
}

impl SnapshotConfig {
    /// A snapshot `id` of `subscription`'s backlog (short ids or full names).
    pub fn new(id: impl Into<String>, subscription: impl Into<String>) -> Self {
        Self {
            snapshot: id.into(),
            subscription: subscription.into(),
            labels: HashMap::new(),
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The snapshot id or name as given.
    pub fn snapshot(&self) -> &str {
        &self.snapshot
    }

    /// The subscription as given.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The labels set so far.
    pub fn labels(&self) -> &HashMap<String, String> {
        &self.labels
    }
}

/// Changes to a snapshot: only what a `with_*` method set is sent, and the
/// update mask names exactly those fields.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use baton_client::SnapshotUpdate;
/// let update = SnapshotUpdate::new("before-deploy")
///     .with_label("env", "staging")
///     .with_expire_time(SystemTime::now() + Duration::from_secs(86_400));
/// assert_eq!(update.paths(), ["labels", "expire_time"]);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SnapshotUpdate {
    /// The snapshot with the new values (name may be short).
    snapshot: Snapshot,
    /// The fields set, snake_case, in the order first set.
    paths: Vec<String>,
}

impl SnapshotUpdate {
    /// Changes to snapshot `id` (short id or full name).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            snapshot: Snapshot {
                name: id.into(),
                ..Default::default()
            },
            paths: Vec::new(),
        }
    }

    fn touch(&mut self, path: &str) {
        if !self.paths.iter().any(|p| p == path) {
            self.paths.push(path.to_string());
        }
    }

    /// Replaces every label with `labels`.
    #[must_use]
    pub fn with_labels(mut self, labels: HashMap<String, String>) -> Self {
        self.snapshot.labels = labels;
        self.touch("labels");
        self
    }

    /// Adds a label to the new set of labels (which replaces the old one).
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.snapshot.labels.insert(key.into(), value.into());
        self.touch("labels");
        self
    }

    /// When the snapshot expires (at most 7 days after its oldest message).
    #[must_use]
    pub fn with_expire_time(mut self, time: SystemTime) -> Self {
        self.snapshot.expire_time = Some(timestamp(time));
        self.touch("expire_time");
        self
    }

    /// The field-mask paths this update sends.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }
}

impl Client {
    /// Creates snapshot `config.snapshot()` of the subscription's unacked
    /// messages, so a subscription of the same topic can
    /// [`seek_to_snapshot`](Client::seek_to_snapshot) back to it.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::SnapshotConfig;
    /// let snapshot = client
    ///     .create_snapshot(SnapshotConfig::new("before-deploy", "worker").with_label("env", "prod"))
    ///     .await?;
    /// client.seek_to_snapshot("worker", &snapshot.name).await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_snapshot(&self, config: SnapshotConfig) -> Result<Snapshot> {
        let name = self.snapshot_name(&config.snapshot);
        let request = CreateSnapshotRequest {
            name: name.clone(),
            subscription: self.subscription_name(&config.subscription),
            labels: config.labels,
            ..Default::default()
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.subscriber_stub().create_snapshot(r).await
        })
        .await
    }

    /// Gets a snapshot.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// let snapshot = client.get_snapshot("before-deploy").await?;
    /// println!("{} expires {:?}", snapshot.topic, snapshot.expire_time);
    /// # Ok(()) }
    /// ```
    pub async fn get_snapshot(&self, snapshot: &str) -> Result<Snapshot> {
        let name = self.snapshot_name(snapshot);
        let request = GetSnapshotRequest {
            snapshot: name.clone(),
        };
        self.unary(CallFamily::AdminRead, &name, request, |c, r| async move {
            c.subscriber_stub().get_snapshot(r).await
        })
        .await
    }

    /// Every snapshot of the client's project (all pages).
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// for snapshot in client.list_snapshots().await? {
    ///     println!("{}", snapshot.name);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_snapshots(&self) -> Result<Vec<Snapshot>> {
        let project = self.project_name();
        self.list_all(
            CallFamily::AdminRead,
            &project,
            |page_token| ListSnapshotsRequest {
                project: project.clone(),
                page_size: 1000,
                page_token,
            },
            |c, r| async move { c.subscriber_stub().list_snapshots(r).await },
            |response| (response.snapshots, response.next_page_token),
        )
        .await
    }

    /// Names of the snapshots of a topic (all pages).
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// let names = client.list_topic_snapshots("orders").await?;
    /// # Ok(()) }
    /// ```
    pub async fn list_topic_snapshots(&self, topic: &str) -> Result<Vec<String>> {
        let name = self.topic_name(topic);
        self.list_all(
            CallFamily::AdminRead,
            &name,
            |page_token| ListTopicSnapshotsRequest {
                topic: name.clone(),
                page_size: 1000,
                page_token,
            },
            |c, r| async move { c.publisher_stub().list_topic_snapshots(r).await },
            |response| (response.snapshots, response.next_page_token),
        )
        .await
    }

    /// Changes a snapshot's labels or expiry; the mask names what
    /// `update` set.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::SnapshotUpdate;
    /// let updated = client
    ///     .update_snapshot(SnapshotUpdate::new("before-deploy").with_label("keep", "yes"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_snapshot(&self, update: SnapshotUpdate) -> Result<Snapshot> {
        let mut snapshot = update.snapshot;
        snapshot.name = self.snapshot_name(&snapshot.name);
        let name = snapshot.name.clone();
        let request = UpdateSnapshotRequest {
            snapshot: Some(snapshot),
            update_mask: Some(wkt::FieldMask {
                paths: update.paths,
            }),
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.subscriber_stub().update_snapshot(r).await
        })
        .await
    }

    /// Deletes a snapshot.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// client.delete_snapshot("before-deploy").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_snapshot(&self, snapshot: &str) -> Result<()> {
        let name = self.snapshot_name(snapshot);
        let request = DeleteSnapshotRequest {
            snapshot: name.clone(),
        };
        self.unary(CallFamily::AdminWrite, &name, request, |c, r| async move {
            c.subscriber_stub().delete_snapshot(r).await
        })
        .await?;
        Ok(())
    }
}
