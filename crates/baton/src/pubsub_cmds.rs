//! `baton topics ...`, `baton subscriptions ...` and `baton subscribe`:
//! client verbs named like `gcloud pubsub`, on `baton-client`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use baton_client::{
    CallFamily, Client, ClientConfig, Endpoint, Message, MessageEncoding, PublisherConfig,
    RetrySettings, SubscriptionConfig, SubscriptionUpdate, TopicUpdate, TracingConfig, iam,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::otel;

/// Prints a line on stdout; a closed pipe (`baton ... | head`) ends the
/// program quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(error) = writeln!(stdout, $($arg)*) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// Output format of the client verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document (proto3 JSON) for scripts.
    Json,
}

/// Where the client verbs connect and how they print.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Project of short resource ids.
    #[arg(long, global = true, env = "BATON_PROJECT")]
    project: Option<String>,
    /// Endpoint URI (`http://host:port` or `https://...`); by default
    /// `PUBSUB_EMULATOR_HOST`, else Google Cloud.
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// PEM file of CA certificates an `https` endpoint is trusted by too,
    /// e.g. the `ca.pem` of `baton serve --tls` (`SSL_CERT_FILE` is
    /// honoured as well).
    #[arg(long, global = true, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// How long a client verb keeps retrying a call before it reports the
/// failure.
const COMMAND_RETRY_BUDGET: Duration = Duration::from_secs(5);

impl ClientArgs {
    /// Where the verbs go, for error messages: `--endpoint`, else
    /// `http://$PUBSUB_EMULATOR_HOST`, else Google Cloud.
    pub fn endpoint_label(&self) -> String {
        match (&self.endpoint, std::env::var("PUBSUB_EMULATOR_HOST")) {
            (Some(uri), _) => uri.clone(),
            (None, Ok(host)) if !host.trim().is_empty() => format!("http://{}", host.trim()),
            _ => "https://pubsub.googleapis.com".to_string(),
        }
    }

    /// The output format asked for.
    pub(crate) fn format(&self) -> Format {
        self.format
    }

    pub(crate) async fn connect(&self) -> anyhow::Result<Client> {
        let endpoint = match &self.endpoint {
            Some(uri) => Endpoint::Custom {
                uri: uri.clone(),
                authenticate: uri.starts_with("https://"),
            },
            None => Endpoint::from_env(),
        };
        let project = self
            .project
            .clone()
            .or_else(|| std::env::var("GOOGLE_CLOUD_PROJECT").ok())
            .or_else(|| std::env::var("CLOUDSDK_CORE_PROJECT").ok());
        let project = match (project, &endpoint) {
            (Some(project), _) => project,
            // A local server accepts any project; this one keeps examples short.
            (None, Endpoint::Emulator(_)) => "baton".to_string(),
            (None, _) => {
                return Err(crate::failure::UsageError(
                    "no project: pass --project or set GOOGLE_CLOUD_PROJECT".into(),
                )
                .into());
            }
        };
        let mut config = with_command_retries(ClientConfig::new(project).with_endpoint(endpoint));
        if let Some(path) = &self.ca_file {
            config = config.with_ca_certificate_file(path);
        }
        Client::connect(config)
            .await
            .context("connecting to Pub/Sub")
    }
}

/// `baton topics ...`
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    #[command(
        after_help = "Examples:\n  baton topics create orders\n  baton topics create orders --labels env=prod,team=shop --message-retention-duration 7d --format json\n  baton topics create orders --schema order --message-encoding json\n  baton topics create orders --schema order --message-encoding binary --first-revision-id a1b2 --last-revision-id c3d4"
    )]
    Create {
        /// Topic id or full name.
        topic: String,
        /// Labels, `key=value` (repeatable, or comma-separated).
        #[arg(long = "labels", value_parser = key_value, value_delimiter = ',')]
        labels: Vec<(String, String)>,
        /// Message retention, e.g. `600s`, `7d`.
        #[arg(long = "message-retention-duration", value_parser = parse_duration)]
        retention: Option<Duration>,
        /// Schema id or full name to validate publishes against (needs
        /// `--message-encoding`).
        #[arg(long, requires = "message_encoding")]
        schema: Option<String>,
        /// Encoding of messages validated against the schema.
        #[arg(long, value_enum, requires = "schema")]
        message_encoding: Option<EncodingArg>,
        /// Oldest schema revision messages may be valid against.
        #[arg(long, requires = "schema")]
        first_revision_id: Option<String>,
        /// Newest schema revision messages may be valid against.
        #[arg(long, requires = "schema")]
        last_revision_id: Option<String>,
    },
    /// Show a topic.
    #[command(after_help = "Example:\n  baton topics describe orders --format json")]
    Describe {
        /// Topic id or full name.
        topic: String,
    },
    /// List the project's topics.
    #[command(
        after_help = "Examples:\n  baton topics list\n  baton topics list --project my-project --format json"
    )]
    List,
    /// Delete a topic (its subscriptions stay, on `_deleted-topic_`).
    #[command(after_help = "Example:\n  baton topics delete orders")]
    Delete {
        /// Topic id or full name.
        topic: String,
    },
    /// Change a topic's labels, retention or schema settings; only what is
    /// given changes.
    #[command(
        after_help = "Examples:\n  baton topics update orders --update-labels env=prod --remove-labels tmp\n  baton topics update orders --schema order --message-encoding json\n  baton topics update orders --first-revision-id a1b2 --last-revision-id c3d4\n  baton topics update orders --clear-schema-settings --format json"
    )]
    Update(TopicUpdateArgs),
    /// List the names of a topic's snapshots.
    #[command(
        name = "list-snapshots",
        after_help = "Example:\n  baton topics list-snapshots orders --format json"
    )]
    ListSnapshots {
        /// Topic id or full name.
        topic: String,
    },
    /// List the names of the subscriptions attached to a topic.
    #[command(
        name = "list-subscriptions",
        after_help = "Example:\n  baton topics list-subscriptions orders --format json"
    )]
    ListSubscriptions {
        /// Topic id or full name.
        topic: String,
    },
    /// Detach a subscription from its topic: it stops receiving messages,
    /// its backlog is dropped and pulls fail; it stays, marked detached,
    /// until deleted.
    #[command(
        name = "detach-subscription",
        after_help = "Example:\n  baton topics detach-subscription worker --format json"
    )]
    DetachSubscription {
        /// Subscription id or full name.
        subscription: String,
    },
    /// IAM policy verbs on a topic.
    #[command(flatten)]
    Iam(IamVerb),
    /// Publish one message.
    #[command(
        after_help = "Examples:\n  baton topics publish orders --message hello\n  baton topics publish orders --message '{\"id\":42}' --attribute kind=order --ordering-key customer-7 --format json"
    )]
    Publish {
        /// Topic id or full name.
        topic: String,
        /// The message data.
        #[arg(long)]
        message: String,
        /// An attribute, `key=value` (repeatable).
        #[arg(long = "attribute", value_parser = key_value)]
        attributes: Vec<(String, String)>,
        /// Ordering key.
        #[arg(long)]
        ordering_key: Option<String>,
    },
}

/// Label changes, as gcloud's `--update-labels`, `--remove-labels` and
/// `--clear-labels` make them.
#[derive(Debug, Args, Clone)]
pub struct LabelArgs {
    /// Labels to add or change, `key=value` (repeatable, or comma-separated).
    #[arg(long = "update-labels", value_parser = key_value, value_delimiter = ',')]
    update_labels: Vec<(String, String)>,
    /// Label keys to remove (repeatable, or comma-separated).
    #[arg(long = "remove-labels", value_delimiter = ',')]
    remove_labels: Vec<String>,
    /// Remove every label (before `--update-labels` adds any).
    #[arg(long)]
    clear_labels: bool,
}

impl LabelArgs {
    /// Whether any label flag was given.
    pub(crate) fn any(&self) -> bool {
        self.clear_labels || !self.update_labels.is_empty() || !self.remove_labels.is_empty()
    }

    /// `current` with the changes applied.
    pub(crate) fn apply(&self, current: &HashMap<String, String>) -> HashMap<String, String> {
        let mut labels = if self.clear_labels {
            HashMap::new()
        } else {
            current.clone()
        };
        for key in &self.remove_labels {
            labels.remove(key);
        }
        for (key, value) in &self.update_labels {
            labels.insert(key.clone(), value.clone());
        }
        labels
    }
}

/// The encodings of `--message-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncodingArg {
    /// JSON text.
    Json,
    /// Binary.
    Binary,
}

impl EncodingArg {
    /// The library's encoding.
    pub(crate) fn to_client(self) -> MessageEncoding {
        match self {
            Self::Json => MessageEncoding::Json,
            Self::Binary => MessageEncoding::Binary,
        }
    }
}

/// Settings of `baton topics update`.
#[derive(Debug, Args)]
pub struct TopicUpdateArgs {
    /// Topic id or full name.
    topic: String,
    #[command(flatten)]
    labels: LabelArgs,
    /// How long published messages are kept, e.g. `7d`.
    #[arg(long, value_parser = parse_duration)]
    message_retention_duration: Option<Duration>,
    /// Stop keeping published messages.
    #[arg(long, conflicts_with = "message_retention_duration")]
    clear_message_retention_duration: bool,
    /// Schema id or full name to validate publishes against (needs
    /// `--message-encoding`).
    #[arg(long, requires = "message_encoding")]
    schema: Option<String>,
    /// Encoding of messages validated against the schema.
    #[arg(long, value_enum)]
    message_encoding: Option<EncodingArg>,
    /// Oldest schema revision messages may be valid against.
    #[arg(long)]
    first_revision_id: Option<String>,
    /// Newest schema revision messages may be valid against.
    #[arg(long)]
    last_revision_id: Option<String>,
    /// Remove the schema settings.
    #[arg(long, conflicts_with_all = ["schema", "message_encoding", "first_revision_id", "last_revision_id"])]
    clear_schema_settings: bool,
}

impl TopicUpdateArgs {
    /// Whether any setting to change was given.
    fn changes_anything(&self) -> bool {
        self.labels.any()
            || self.message_retention_duration.is_some()
            || self.clear_message_retention_duration
            || self.schema.is_some()
            || self.message_encoding.is_some()
            || self.first_revision_id.is_some()
            || self.last_revision_id.is_some()
            || self.clear_schema_settings
    }
}

/// What a usage check says when an update names nothing to change.
pub(crate) const NOTHING_TO_UPDATE: &str = "nothing to update: pass at least one setting to change";

impl TopicsCommand {
    /// What is wrong with the arguments beyond clap's own rules (an update
    /// that changes nothing), as a usage error; `None` when nothing is.
    pub(crate) fn usage_problem(&self) -> Option<&'static str> {
        match self {
            Self::Update(update) if !update.changes_anything() => Some(NOTHING_TO_UPDATE),
            _ => None,
        }
    }
}

impl SubscriptionsCommand {
    /// What is wrong with the arguments beyond clap's own rules (an update
    /// that changes nothing), as a usage error; `None` when nothing is.
    pub(crate) fn usage_problem(&self) -> Option<&'static str> {
        match self {
            Self::Update(update) if !update.changes_anything() => Some(NOTHING_TO_UPDATE),
            _ => None,
        }
    }
}

/// Settings of `baton subscriptions update`.
#[derive(Debug, Args)]
pub struct SubscriptionUpdateArgs {
    /// Subscription id or full name.
    subscription: String,
    /// Ack deadline in seconds (10-600).
    #[arg(long)]
    ack_deadline: Option<u64>,
    /// Push endpoint; an empty one switches to pull.
    #[arg(long)]
    push_endpoint: Option<String>,
    #[command(flatten)]
    labels: LabelArgs,
    /// How long messages are kept, e.g. `7d`.
    #[arg(long, value_parser = parse_duration)]
    message_retention_duration: Option<Duration>,
    /// Keep acked messages too (for seek).
    #[arg(long, requires = "message_retention_duration")]
    retain_acked_messages: bool,
    /// Dead-letter topic.
    #[arg(long)]
    dead_letter_topic: Option<String>,
    /// Delivery attempts before dead-lettering (5-100).
    #[arg(long, default_value_t = 5)]
    max_delivery_attempts: i32,
    /// Stop dead-lettering.
    #[arg(long, conflicts_with = "dead_letter_topic")]
    clear_dead_letter_policy: bool,
    /// Retry backoff lower bound, e.g. `10s`.
    #[arg(long, value_parser = parse_duration)]
    min_retry_delay: Option<Duration>,
    /// Retry backoff upper bound, e.g. `600s`.
    #[arg(long, value_parser = parse_duration)]
    max_retry_delay: Option<Duration>,
    /// Delete the subscription after this long without activity, e.g. `31d`.
    #[arg(long, value_parser = parse_duration)]
    expiration_period: Option<Duration>,
}

impl SubscriptionUpdateArgs {
    /// Whether any setting to change was given (`--max-delivery-attempts`
    /// and `--retain-acked-messages` only qualify the dead-letter topic and
    /// the retention).
    fn changes_anything(&self) -> bool {
        self.ack_deadline.is_some()
            || self.push_endpoint.is_some()
            || self.labels.any()
            || self.message_retention_duration.is_some()
            || self.dead_letter_topic.is_some()
            || self.clear_dead_letter_policy
            || self.min_retry_delay.is_some()
            || self.max_retry_delay.is_some()
            || self.expiration_period.is_some()
    }
}

/// IAM policy verbs, the same on topics, subscriptions, snapshots and
/// schemas (gcloud's names). Their `--help` examples name the resource kind
/// they are under: [`iam_examples`] sets them.
#[derive(Debug, Subcommand)]
pub enum IamVerb {
    /// Show the resource's IAM policy.
    #[command(name = "get-iam-policy")]
    GetIamPolicy {
        /// Id or full name.
        name: String,
    },
    /// Replace the resource's IAM policy with the one in FILE (JSON, as
    /// `get-iam-policy --format json` prints it; keep its etag to refuse
    /// overwriting a concurrent change).
    #[command(name = "set-iam-policy")]
    SetIamPolicy {
        /// Id or full name.
        name: String,
        /// The policy file (JSON).
        file: std::path::PathBuf,
    },
    /// Grant a role to a member.
    #[command(name = "add-iam-policy-binding")]
    AddIamPolicyBinding {
        /// Id or full name.
        name: String,
        /// `user:EMAIL`, `serviceAccount:EMAIL`, `group:EMAIL`, `allUsers`...
        #[arg(long)]
        member: String,
        /// `roles/pubsub.publisher`, ...
        #[arg(long)]
        role: String,
    },
    /// Revoke a role from a member.
    #[command(name = "remove-iam-policy-binding")]
    RemoveIamPolicyBinding {
        /// Id or full name.
        name: String,
        /// The member.
        #[arg(long)]
        member: String,
        /// The role.
        #[arg(long)]
        role: String,
    },
    /// Show which of the given permissions the caller has on the resource.
    #[command(name = "test-iam-permissions")]
    TestIamPermissions {
        /// Id or full name.
        name: String,
        /// The permissions to test, e.g. `pubsub.topics.publish`
        /// (repeatable, or comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<String>,
    },
}

/// The `--help` examples of the IAM verbs under `family` (`topics`,
/// `subscriptions`, `snapshots`, `schemas`), each naming a resource of that
/// kind: `(verb, example)`.
pub(crate) fn iam_examples(family: &str) -> [(&'static str, String); 5] {
    let (name, role, permissions) = match family {
        "subscriptions" => (
            "worker",
            "roles/pubsub.subscriber",
            "pubsub.subscriptions.consume,pubsub.subscriptions.get",
        ),
        "snapshots" => (
            "before-deploy",
            "roles/pubsub.viewer",
            "pubsub.snapshots.seek,pubsub.snapshots.get",
        ),
        "schemas" => (
            "order",
            "roles/pubsub.viewer",
            "pubsub.schemas.get,pubsub.schemas.validate",
        ),
        _ => (
            "orders",
            "roles/pubsub.publisher",
            "pubsub.topics.publish,pubsub.topics.get",
        ),
    };
    let binding = format!("{name} --member user:ana@example.com --role {role}");
    [
        (
            "get-iam-policy",
            format!("Example:\n  baton {family} get-iam-policy {name} --format json"),
        ),
        (
            "set-iam-policy",
            format!(
                "Example:\n  baton {family} get-iam-policy {name} --format json > policy.json\n  baton {family} set-iam-policy {name} policy.json"
            ),
        ),
        (
            "add-iam-policy-binding",
            format!("Example:\n  baton {family} add-iam-policy-binding {binding}"),
        ),
        (
            "remove-iam-policy-binding",
            format!("Example:\n  baton {family} remove-iam-policy-binding {binding}"),
        ),
        (
            "test-iam-permissions",
            format!(
                "Example:\n  baton {family} test-iam-permissions {name} --permissions {permissions} --format json"
            ),
        ),
    ]
}

impl IamVerb {
    /// The id or name the verb is about.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::GetIamPolicy { name }
            | Self::SetIamPolicy { name, .. }
            | Self::AddIamPolicyBinding { name, .. }
            | Self::RemoveIamPolicyBinding { name, .. }
            | Self::TestIamPermissions { name, .. } => name,
        }
    }
}

/// Runs an IAM verb on `resource` (a full name).
pub(crate) async fn run_iam(
    client: &Client,
    format: Format,
    resource: &str,
    verb: IamVerb,
) -> anyhow::Result<()> {
    let policy = match verb {
        IamVerb::TestIamPermissions { permissions, .. } => {
            return test_iam_permissions(client, format, resource, &permissions).await;
        }
        IamVerb::GetIamPolicy { .. } => client.get_iam_policy(resource).await?,
        IamVerb::SetIamPolicy { file, .. } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the policy file {}", file.display()))?;
            let policy: iam::Policy = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON IAM policy", file.display()))?;
            let set = client.set_iam_policy(resource, policy).await?;
            eprintln!("Updated IAM policy for [{resource}].");
            set
        }
        IamVerb::AddIamPolicyBinding { member, role, .. } => {
            let mut policy = client.get_iam_policy(resource).await?;
            iam::add_binding(&mut policy, &role, &member);
            let set = client.set_iam_policy(resource, policy).await?;
            eprintln!("Updated IAM policy for [{resource}].");
            set
        }
        IamVerb::RemoveIamPolicyBinding { member, role, .. } => {
            let mut policy = client.get_iam_policy(resource).await?;
            if !iam::remove_binding(&mut policy, &role, &member) {
                bail!("the policy of {resource} has no binding of {role} to {member}");
            }
            let set = client.set_iam_policy(resource, policy).await?;
            eprintln!("Updated IAM policy for [{resource}].");
            set
        }
    };
    print_resource(format, &to_json(&policy)?)
}

/// `test-iam-permissions`: JSON as the API answers it (the granted
/// permissions), or a table of each permission asked for and whether it is
/// granted.
async fn test_iam_permissions(
    client: &Client,
    format: Format,
    resource: &str,
    permissions: &[String],
) -> anyhow::Result<()> {
    let asked: Vec<&str> = permissions.iter().map(String::as_str).collect();
    let granted = client.test_iam_permissions(resource, &asked).await?;
    match format {
        Format::Json => print_json(&serde_json::json!({ "permissions": granted })),
        Format::Table => {
            let rows: Vec<Vec<String>> = asked
                .iter()
                .map(|permission| {
                    let yes = granted.iter().any(|g| g == permission);
                    vec![
                        (*permission).to_string(),
                        if yes { "yes" } else { "no" }.to_string(),
                    ]
                })
                .collect();
            print_table(&["PERMISSION", "GRANTED"], &rows);
            Ok(())
        }
    }
}

/// `baton subscriptions ...`
#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// Create a subscription.
    #[command(
        after_help = "Examples:\n  baton subscriptions create worker --topic orders\n  baton subscriptions create worker --topic orders --ack-deadline 60 --enable-message-ordering --format json\n  baton subscriptions create hook --topic orders --push-endpoint https://example.com/push"
    )]
    Create(CreateSubscriptionArgs),
    /// Show a subscription.
    #[command(after_help = "Example:\n  baton subscriptions describe worker --format json")]
    Describe {
        /// Subscription id or full name.
        subscription: String,
    },
    /// List the project's subscriptions.
    #[command(
        after_help = "Examples:\n  baton subscriptions list\n  baton subscriptions list --project my-project --format json"
    )]
    List,
    /// Delete a subscription.
    #[command(after_help = "Example:\n  baton subscriptions delete worker")]
    Delete {
        /// Subscription id or full name.
        subscription: String,
    },
    /// Change a subscription's settings; only what is given changes.
    #[command(
        after_help = "Examples:\n  baton subscriptions update worker --ack-deadline 60\n  baton subscriptions update worker --push-endpoint https://example.com/push\n  baton subscriptions update worker --update-labels team=core --format json"
    )]
    Update(SubscriptionUpdateArgs),
    /// Replay or skip messages: to a time (earlier messages count as
    /// acked, later as unacked) or to a snapshot.
    #[command(
        after_help = "Examples:\n  baton subscriptions seek worker --time 2024-05-01T12:00:00Z\n  baton subscriptions seek worker --snapshot before-deploy"
    )]
    Seek {
        /// Subscription id or full name.
        subscription: String,
        /// RFC 3339 time, e.g. `2024-05-01T12:00:00Z`.
        #[arg(
            long,
            conflicts_with = "snapshot",
            required_unless_present = "snapshot",
            value_parser = time_arg
        )]
        time: Option<std::time::SystemTime>,
        /// Snapshot id or full name.
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// Switch between push (an endpoint) and pull (an empty endpoint).
    #[command(
        name = "modify-push-config",
        after_help = "Examples:\n  baton subscriptions modify-push-config worker --push-endpoint https://example.com/push\n  baton subscriptions modify-push-config worker --push-endpoint ''"
    )]
    ModifyPushConfig {
        /// Subscription id or full name.
        subscription: String,
        /// The endpoint; empty for pull.
        #[arg(long)]
        push_endpoint: String,
    },
    /// IAM policy verbs on a subscription.
    #[command(flatten)]
    Iam(IamVerb),
    /// Pull messages once.
    #[command(
        after_help = "Examples:\n  baton subscriptions pull worker\n  baton subscriptions pull worker --auto-ack --limit 10 --format json"
    )]
    Pull {
        /// Subscription id or full name.
        subscription: String,
        /// Acknowledge what was pulled.
        #[arg(long)]
        auto_ack: bool,
        /// Most messages to pull.
        #[arg(long, default_value_t = 1)]
        limit: i32,
    },
}

/// Settings of `baton subscriptions create`.
#[derive(Debug, Args)]
pub struct CreateSubscriptionArgs {
    /// Subscription id or full name.
    subscription: String,
    /// Topic id or full name.
    #[arg(long)]
    topic: String,
    /// Ack deadline in seconds (10-600).
    #[arg(long)]
    ack_deadline: Option<u64>,
    /// Deliver messages with one ordering key in order.
    #[arg(long)]
    enable_message_ordering: bool,
    /// Exactly-once delivery.
    #[arg(long)]
    enable_exactly_once_delivery: bool,
    /// Attribute filter, e.g. `attributes.kind = "order"`.
    #[arg(long)]
    message_filter: Option<String>,
    /// Dead-letter topic.
    #[arg(long)]
    dead_letter_topic: Option<String>,
    /// Delivery attempts before dead-lettering (5-100).
    #[arg(long, default_value_t = 5)]
    max_delivery_attempts: i32,
    /// Retry backoff bounds, e.g. `10s`.
    #[arg(long, value_parser = parse_duration)]
    min_retry_delay: Option<Duration>,
    /// Retry backoff bounds, e.g. `600s`.
    #[arg(long, value_parser = parse_duration)]
    max_retry_delay: Option<Duration>,
    /// Keep acked messages (for seek).
    #[arg(long)]
    retain_acked_messages: bool,
    /// How long messages are kept, e.g. `7d`.
    #[arg(long, value_parser = parse_duration)]
    message_retention_duration: Option<Duration>,
    /// Push endpoint (push delivery instead of pull).
    #[arg(long)]
    push_endpoint: Option<String>,
    /// Labels, `key=value`.
    #[arg(long = "labels", value_parser = key_value)]
    labels: Vec<(String, String)>,
}

/// `baton subscribe SUB`
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Subscription id or full name.
    subscription: String,
    /// Leave messages unacked (nack them) instead of acking.
    #[arg(long)]
    nack: bool,
}

pub(crate) fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got `{text}`"))
}

/// `600s`, `10m`, `2h`, `7d`, or plain seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let amount: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 600s or 7d, got `{text}`"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}` (use s, m, h or d)"
            ));
        }
    };
    Ok(Duration::from_secs(amount.saturating_mul(seconds)))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> anyhow::Result<Value> {
    serde_json::to_value(value).context("encoding JSON")
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as aligned columns under a header.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    out!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        out!("{}", line(row.clone()));
    }
}

/// Prints one resource: JSON, or `key: value` lines of its JSON fields.
pub(crate) fn print_resource(format: Format, value: &Value) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(value),
        Format::Table => {
            if let Value::Object(map) = value {
                for (key, field) in map {
                    let text = match field {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    out!("{key}: {text}");
                }
            }
            Ok(())
        }
    }
}

/// Runs `baton topics ...`.
pub async fn topics(args: &ClientArgs, command: TopicsCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    match command {
        TopicsCommand::Create {
            topic,
            labels,
            retention,
            schema,
            message_encoding,
            first_revision_id,
            last_revision_id,
        } => {
            let schema_settings = schema.map(|schema| baton_client::proto::SchemaSettings {
                schema: client.schema_name(&schema),
                encoding: match message_encoding {
                    Some(EncodingArg::Json) => baton_client::proto::Encoding::Json,
                    Some(EncodingArg::Binary) => baton_client::proto::Encoding::Binary,
                    None => baton_client::proto::Encoding::Unspecified,
                } as i32,
                first_revision_id: first_revision_id.unwrap_or_default(),
                last_revision_id: last_revision_id.unwrap_or_default(),
            });
            let created = client
                .create_topic_with(baton_client::proto::Topic {
                    name: topic,
                    labels: labels.into_iter().collect(),
                    message_retention_duration: retention.map(proto_duration),
                    schema_settings,
                    ..Default::default()
                })
                .await?;
            print_resource(args.format, &to_json(&created)?)
        }
        TopicsCommand::Describe { topic } => {
            print_resource(args.format, &to_json(&client.get_topic(&topic).await?)?)
        }
        TopicsCommand::List => {
            let topics = client.list_topics().await?;
            match args.format {
                Format::Json => print_json(&to_json(&topics)?),
                Format::Table => {
                    let rows = topics
                        .iter()
                        .map(|t| {
                            let labels = t
                                .labels
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(",");
                            vec![t.name.clone(), labels]
                        })
                        .collect::<Vec<_>>();
                    print_table(&["NAME", "LABELS"], &rows);
                    Ok(())
                }
            }
        }
        TopicsCommand::Delete { topic } => {
            client.delete_topic(&topic).await?;
            eprintln!("Deleted topic [{}].", client.topic_name(&topic));
            Ok(())
        }
        TopicsCommand::Update(update) => {
            let topic = update_topic(&client, update).await?;
            print_resource(args.format, &to_json(&topic)?)
        }
        TopicsCommand::ListSnapshots { topic } => {
            print_names(args.format, client.list_topic_snapshots(&topic).await?)
        }
        TopicsCommand::ListSubscriptions { topic } => {
            print_names(args.format, client.list_topic_subscriptions(&topic).await?)
        }
        TopicsCommand::DetachSubscription { subscription } => {
            client.detach_subscription(&subscription).await?;
            eprintln!(
                "Detached subscription [{}].",
                client.subscription_name(&subscription)
            );
            let detached = client.get_subscription(&subscription).await?;
            print_resource(args.format, &to_json(&detached)?)
        }
        TopicsCommand::Iam(verb) => {
            let resource = client.topic_name(verb.name());
            run_iam(&client, args.format, &resource, verb).await
        }
        TopicsCommand::Publish {
            topic,
            message,
            attributes,
            ordering_key,
        } => {
            let guard = otel::init("baton-cli")?;
            let config = PublisherConfig::default()
                .with_message_ordering(ordering_key.is_some())
                .with_tracing(TracingConfig::default().with_enabled(guard.enabled()));
            let publisher = client.publisher_with(&topic, config);
            let mut outgoing = Message::new(message);
            for (key, value) in attributes {
                outgoing = outgoing.with_attribute(key, value);
            }
            if let Some(key) = ordering_key {
                outgoing = outgoing.with_ordering_key(key);
            }
            let id = publisher.publish(outgoing).await?;
            publisher.shutdown().await;
            match args.format {
                Format::Json => print_json(&serde_json::json!({ "messageIds": [id] })),
                Format::Table => {
                    out!("messageIds:\n- '{id}'");
                    Ok(())
                }
            }
        }
    }
}

pub(crate) fn proto_duration(d: Duration) -> baton_proto::wkt::Duration {
    baton_proto::wkt::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// Runs `baton subscriptions ...`.
pub async fn subscriptions(args: &ClientArgs, command: SubscriptionsCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    match command {
        SubscriptionsCommand::Create(create) => {
            let mut config = SubscriptionConfig::new(create.subscription, create.topic)
                .with_message_ordering(create.enable_message_ordering)
                .with_exactly_once(create.enable_exactly_once_delivery);
            if let Some(seconds) = create.ack_deadline {
                config = config.with_ack_deadline(Duration::from_secs(seconds));
            }
            if let Some(filter) = create.message_filter {
                config = config.with_filter(filter);
            }
            if let Some(topic) = create.dead_letter_topic {
                config = config.with_dead_letter(topic, create.max_delivery_attempts);
            }
            if create.min_retry_delay.is_some() || create.max_retry_delay.is_some() {
                config = config.with_retry_policy(
                    create.min_retry_delay.unwrap_or(Duration::from_secs(10)),
                    create.max_retry_delay.unwrap_or(Duration::from_secs(600)),
                );
            }
            if create.retain_acked_messages || create.message_retention_duration.is_some() {
                config = config.with_retention(
                    create
                        .message_retention_duration
                        .unwrap_or(Duration::from_secs(7 * 86_400)),
                    create.retain_acked_messages,
                );
            }
            if let Some(endpoint) = create.push_endpoint {
                config = config.with_push_endpoint(endpoint);
            }
            for (key, value) in create.labels {
                config = config.with_label(key, value);
            }
            let created = client.create_subscription(config).await?;
            print_resource(args.format, &to_json(&created)?)
        }
        SubscriptionsCommand::Describe { subscription } => print_resource(
            args.format,
            &to_json(&client.get_subscription(&subscription).await?)?,
        ),
        SubscriptionsCommand::List => {
            let subscriptions = client.list_subscriptions().await?;
            match args.format {
                Format::Json => print_json(&to_json(&subscriptions)?),
                Format::Table => {
                    let rows = subscriptions
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.topic.clone(),
                                s.ack_deadline_seconds.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>();
                    print_table(&["NAME", "TOPIC", "ACK_DEADLINE"], &rows);
                    Ok(())
                }
            }
        }
        SubscriptionsCommand::Delete { subscription } => {
            client.delete_subscription(&subscription).await?;
            eprintln!(
                "Deleted subscription [{}].",
                client.subscription_name(&subscription)
            );
            Ok(())
        }
        SubscriptionsCommand::Update(update) => {
            let subscription = update_subscription(&client, update).await?;
            print_resource(args.format, &to_json(&subscription)?)
        }
        SubscriptionsCommand::Seek {
            subscription,
            time,
            snapshot,
        } => {
            match (time, snapshot) {
                (Some(time), _) => client.seek_to_time(&subscription, time).await?,
                (None, Some(snapshot)) => client.seek_to_snapshot(&subscription, &snapshot).await?,
                (None, None) => bail!("seek needs --time or --snapshot"),
            }
            let name = client.subscription_name(&subscription);
            match args.format {
                Format::Json => print_json(&serde_json::json!({ "subscriptionId": name })),
                Format::Table => {
                    out!("subscriptionId: {name}");
                    Ok(())
                }
            }
        }
        SubscriptionsCommand::ModifyPushConfig {
            subscription,
            push_endpoint,
        } => {
            let push_config = baton_client::proto::PushConfig {
                push_endpoint,
                ..Default::default()
            };
            client
                .modify_push_config(&subscription, push_config)
                .await?;
            let got = client.get_subscription(&subscription).await?;
            print_resource(args.format, &to_json(&got)?)
        }
        SubscriptionsCommand::Iam(verb) => {
            let resource = client.subscription_name(verb.name());
            run_iam(&client, args.format, &resource, verb).await
        }
        SubscriptionsCommand::Pull {
            subscription,
            auto_ack,
            limit,
        } => pull(args, &client, &subscription, auto_ack, limit).await,
    }
}

/// An RFC 3339 time (`2024-05-01T12:00:00Z`, fractions and offsets
/// allowed), as gcloud's `--time` takes it: a value parser, so a bad time is
/// clap's usage error (exit 2).
pub(crate) fn time_arg(text: &str) -> Result<std::time::SystemTime, String> {
    let timestamp: baton_proto::wkt::Timestamp =
        serde_json::from_value(Value::String(text.to_string())).map_err(|_| {
            format!("expected an RFC 3339 time like 2024-05-01T12:00:00Z, got `{text}`")
        })?;
    let seconds =
        u64::try_from(timestamp.seconds).map_err(|_| format!("`{text}` is before 1970"))?;
    let nanos = u32::try_from(timestamp.nanos).unwrap_or(0);
    Ok(std::time::UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// `config` with a command's retry deadlines. A person waits on a command:
/// retry what the official clients retry, but give up within seconds, not
/// the minute (ten for Publish) a long-running service can afford. The
/// stream of `baton subscribe` keeps reopening for as long as it runs.
fn with_command_retries(config: ClientConfig) -> ClientConfig {
    CallFamily::ALL
        .into_iter()
        .filter(|family| *family != CallFamily::StreamingPull)
        .fold(config, |config, family| {
            config.with_retry(
                family,
                RetrySettings::default_for(family).with_total_timeout(COMMAND_RETRY_BUDGET),
            )
        })
}

/// Prints resource names: a JSON array, or a one-column table.
fn print_names(format: Format, names: Vec<String>) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&to_json(&names)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = names.into_iter().map(|n| vec![n]).collect();
            print_table(&["NAME"], &rows);
            Ok(())
        }
    }
}

/// Applies `baton topics update`: labels are merged into the current ones.
async fn update_topic(
    client: &Client,
    args: TopicUpdateArgs,
) -> anyhow::Result<baton_client::proto::Topic> {
    let mut update = TopicUpdate::new(args.topic.clone());
    if args.labels.any() {
        let current = client.get_topic(&args.topic).await?;
        update = update.with_labels(args.labels.apply(&current.labels));
    }
    if let Some(retention) = args.message_retention_duration {
        update = update.with_message_retention(Some(retention));
    }
    if args.clear_message_retention_duration {
        update = update.with_message_retention(None);
    }
    match (args.schema, args.message_encoding) {
        (Some(schema), Some(encoding)) => {
            update = update.with_schema(schema, encoding.to_client());
        }
        (None, Some(encoding)) => update = update.with_message_encoding(encoding.to_client()),
        _ => {}
    }
    if let Some(first) = args.first_revision_id {
        update = update.with_first_revision_id(first);
    }
    if let Some(last) = args.last_revision_id {
        update = update.with_last_revision_id(last);
    }
    if args.clear_schema_settings {
        update = update.without_schema();
    }
    if update.paths().is_empty() {
        bail!("nothing to update: pass at least one setting (see --help)");
    }
    Ok(client.update_topic_with(update).await?)
}

/// Applies `baton subscriptions update`: labels are merged into the
/// current ones.
async fn update_subscription(
    client: &Client,
    args: SubscriptionUpdateArgs,
) -> anyhow::Result<baton_client::proto::Subscription> {
    let mut update = SubscriptionUpdate::new(args.subscription.clone());
    if let Some(seconds) = args.ack_deadline {
        update = update.with_ack_deadline(Duration::from_secs(seconds));
    }
    match args.push_endpoint {
        Some(endpoint) if endpoint.is_empty() => update = update.with_pull_delivery(),
        Some(endpoint) => update = update.with_push_endpoint(endpoint),
        None => {}
    }
    if args.labels.any() {
        let current = client.get_subscription(&args.subscription).await?;
        update = update.with_labels(args.labels.apply(&current.labels));
    }
    if let Some(retention) = args.message_retention_duration {
        update = update.with_retention(retention, args.retain_acked_messages);
    }
    if let Some(topic) = args.dead_letter_topic {
        update = update.with_dead_letter(topic, args.max_delivery_attempts);
    }
    if args.clear_dead_letter_policy {
        update = update.without_dead_letter();
    }
    if args.min_retry_delay.is_some() || args.max_retry_delay.is_some() {
        update = update.with_retry_policy(
            args.min_retry_delay.unwrap_or(Duration::from_secs(10)),
            args.max_retry_delay.unwrap_or(Duration::from_secs(600)),
        );
    }
    if let Some(ttl) = args.expiration_period {
        update = update.with_expiration(ttl);
    }
    if update.paths().is_empty() {
        bail!("nothing to update: pass at least one setting (see --help)");
    }
    Ok(client.update_subscription_with(update).await?)
}

fn message_row(
    data: &[u8],
    id: &str,
    key: &str,
    attributes: &HashMap<String, String>,
    ack_id: &str,
) -> Vec<String> {
    let mut attrs: Vec<String> = attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    attrs.sort();
    vec![
        String::from_utf8_lossy(data).into_owned(),
        id.to_string(),
        key.to_string(),
        attrs.join(","),
        ack_id.to_string(),
    ]
}

async fn pull(
    args: &ClientArgs,
    client: &Client,
    subscription: &str,
    auto_ack: bool,
    limit: i32,
) -> anyhow::Result<()> {
    let limit = usize::try_from(limit.max(1)).unwrap_or(1);
    // Like gcloud: answer promptly, empty when nothing is waiting.
    let config =
        baton_client::SubscriberConfig::default().with_pull_timeout(Duration::from_secs(2));
    let messages = client
        .subscriber_with(subscription, config)
        .pull(limit)
        .await?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for message in messages {
        rows.push(message_row(
            message.data(),
            message.message_id(),
            message.ordering_key(),
            message.attributes(),
            message.ack_id(),
        ));
        json.push(serde_json::json!({
            "ackId": message.ack_id(),
            "message": {
                "data": String::from_utf8_lossy(message.data()),
                "messageId": message.message_id(),
                "orderingKey": message.ordering_key(),
                "attributes": message.attributes(),
            }
        }));
        if auto_ack {
            message.ack_with_result().await?;
        } else {
            // Leave it outstanding until its deadline, as gcloud does.
            message.release();
        }
    }
    match args.format {
        Format::Json => print_json(&Value::Array(json)),
        Format::Table => {
            if rows.is_empty() {
                eprintln!("Listed 0 items.");
            } else {
                print_table(
                    &["DATA", "MESSAGE_ID", "ORDERING_KEY", "ATTRIBUTES", "ACK_ID"],
                    &rows,
                );
            }
            Ok(())
        }
    }
}

/// Runs `baton subscribe SUB` until `stop` resolves.
pub async fn subscribe(
    args: &ClientArgs,
    subscribe: SubscribeArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let guard = otel::init("baton-cli")?;
    let config = baton_client::SubscriberConfig::default()
        .with_tracing(TracingConfig::default().with_enabled(guard.enabled()));
    let format = args.format;
    let nack = subscribe.nack;
    let handle = client
        .subscriber_with(&subscribe.subscription, config)
        .subscribe(move |message| async move {
            let mut attributes: Vec<String> = message
                .attributes()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            attributes.sort();
            match format {
                Format::Json => out!(
                    "{}",
                    serde_json::json!({
                        "messageId": message.message_id(),
                        "data": String::from_utf8_lossy(message.data()),
                        "attributes": message.attributes(),
                        "orderingKey": message.ordering_key(),
                        "deliveryAttempt": message.delivery_attempt(),
                    })
                ),
                Format::Table => out!(
                    "{}  {}  [{}]",
                    message.message_id(),
                    String::from_utf8_lossy(message.data()),
                    attributes.join(",")
                ),
            }
            if nack {
                message.nack();
            } else {
                message.ack();
            }
        });
    eprintln!(
        "Listening on [{}]; press Ctrl-C to stop.",
        client.subscription_name(&subscribe.subscription)
    );
    let failed = handle.wait();
    tokio::select! {
        () = stop => {}
        result = failed => {
            result.context("the subscription ended")?;
            return Ok(());
        }
    }
    handle
        .shutdown()
        .await
        .context("shutting down the subscriber")?;
    Ok(())
}

#[cfg(test)]
mod command_retry_tests {
    use super::*;

    /// Every family a command waits on gives up within the budget, the
    /// families added later included; the subscriber's stream does not.
    #[test]
    fn every_call_a_command_waits_on_gives_up_within_the_budget() {
        let config = with_command_retries(ClientConfig::new("p"));
        for family in CallFamily::ALL {
            let total = config.retry(family).total_timeout();
            if family == CallFamily::StreamingPull {
                assert_eq!(total, Duration::MAX);
            } else {
                assert_eq!(total, COMMAND_RETRY_BUDGET, "{family:?}");
            }
        }
    }
}
