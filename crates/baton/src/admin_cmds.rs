//! `baton snapshots ...` and `baton schemas ...`: verbs named like
//! `gcloud pubsub snapshots` and `gcloud pubsub schemas`, on `baton-client`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use baton_client::{SchemaDefinition, SchemaType, SchemaView, SnapshotConfig, SnapshotUpdate};
use clap::{Args, Subcommand, ValueEnum};

use crate::pubsub_cmds::{
    ClientArgs, EncodingArg, Format, IamVerb, LabelArgs, NOTHING_TO_UPDATE, key_value,
    parse_duration, print_json, print_resource, print_table, run_iam, time_arg, to_json,
};

/// `baton snapshots ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// Capture a subscription's unacked messages, to seek back to later.
    #[command(
        after_help = "Example:\n  baton snapshots create before-deploy --subscription worker --labels env=prod"
    )]
    Create {
        /// Snapshot id or full name.
        snapshot: String,
        /// The subscription whose backlog is captured.
        #[arg(long)]
        subscription: String,
        /// Labels, `key=value` (repeatable, or comma-separated).
        #[arg(long = "labels", value_parser = key_value, value_delimiter = ',')]
        labels: Vec<(String, String)>,
    },
    /// Show a snapshot.
    #[command(after_help = "Example:\n  baton snapshots describe before-deploy --format json")]
    Describe {
        /// Snapshot id or full name.
        snapshot: String,
    },
    /// List the project's snapshots.
    #[command(after_help = "Example:\n  baton snapshots list --format json")]
    List,
    /// Change a snapshot's labels or expiry; only what is given changes.
    #[command(
        after_help = "Examples:\n  baton snapshots update before-deploy --update-labels keep=yes --remove-labels tmp\n  baton snapshots update before-deploy --expire-time 3d --format json\n  baton snapshots update before-deploy --expire-time 2030-01-01T00:00:00Z"
    )]
    Update {
        /// Snapshot id or full name.
        snapshot: String,
        #[command(flatten)]
        labels: LabelArgs,
        /// When the snapshot expires: an RFC 3339 time
        /// (`2030-01-01T00:00:00Z`) or a duration from now (`36h`, `3d`).
        /// Google Cloud keeps a snapshot at most 7 days after its oldest
        /// unacked message.
        #[arg(long, value_parser = expiry_arg)]
        expire_time: Option<std::time::SystemTime>,
    },
    /// Delete a snapshot.
    #[command(after_help = "Example:\n  baton snapshots delete before-deploy")]
    Delete {
        /// Snapshot id or full name.
        snapshot: String,
    },
    /// IAM policy verbs on a snapshot.
    #[command(flatten)]
    Iam(IamVerb),
}

impl SnapshotsCommand {
    /// What is wrong with the arguments beyond clap's own rules (an update
    /// that changes nothing), as a usage error; `None` when nothing is.
    pub(crate) fn usage_problem(&self) -> Option<&'static str> {
        match self {
            Self::Update {
                labels,
                expire_time: None,
                ..
            } if !labels.any() => Some(NOTHING_TO_UPDATE),
            _ => None,
        }
    }
}

/// The schema types of `--type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaTypeArg {
    /// Apache Avro (JSON definition).
    Avro,
    /// Protocol Buffer (`.proto` text).
    ProtocolBuffer,
}

/// A definition given inline or in a file.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct DefinitionSource {
    /// The definition's text.
    #[arg(long)]
    definition: Option<String>,
    /// A file holding the definition.
    #[arg(long)]
    definition_file: Option<PathBuf>,
}

/// A schema type and definition.
#[derive(Debug, Args)]
pub struct DefinitionArgs {
    /// The schema type.
    #[arg(long = "type", value_enum)]
    schema_type: SchemaTypeArg,
    #[command(flatten)]
    source: DefinitionSource,
}

impl DefinitionArgs {
    fn definition(&self) -> anyhow::Result<SchemaDefinition> {
        let text = match (&self.source.definition, &self.source.definition_file) {
            (Some(text), _) => text.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the definition file {}", path.display()))?,
            (None, None) => bail!("pass --definition or --definition-file"),
        };
        let schema_type = match self.schema_type {
            SchemaTypeArg::Avro => SchemaType::Avro,
            SchemaTypeArg::ProtocolBuffer => SchemaType::ProtocolBuffer,
        };
        Ok(SchemaDefinition::new(schema_type, text))
    }
}

/// The views of `--view`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ViewArg {
    /// Name and type only.
    #[default]
    Basic,
    /// The definition too.
    Full,
}

impl ViewArg {
    fn to_client(self) -> SchemaView {
        match self {
            Self::Basic => SchemaView::Basic,
            Self::Full => SchemaView::Full,
        }
    }
}

/// `baton schemas ...`
#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Create a schema.
    #[command(
        after_help = "Examples:\n  baton schemas create order --type avro --definition-file order.avsc\n  baton schemas create line --type protocol-buffer --definition 'syntax = \"proto3\"; message Line { string sku = 1; }'"
    )]
    Create {
        /// Schema id or full name.
        schema: String,
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Show a schema (its newest revision, or `NAME@REVISION`), in full.
    #[command(after_help = "Example:\n  baton schemas describe order --format json")]
    Describe {
        /// Schema id, full name, or `id@revision`.
        schema: String,
    },
    /// List the project's schemas.
    #[command(after_help = "Example:\n  baton schemas list --view full --format json")]
    List {
        /// How much of each schema to show.
        #[arg(long, value_enum, default_value_t = ViewArg::Basic)]
        view: ViewArg,
    },
    /// List a schema's revisions, newest first.
    #[command(
        name = "list-revisions",
        after_help = "Example:\n  baton schemas list-revisions order --format json"
    )]
    ListRevisions {
        /// Schema id or full name.
        schema: String,
        /// How much of each revision to show.
        #[arg(long, value_enum, default_value_t = ViewArg::Basic)]
        view: ViewArg,
    },
    /// Commit a new revision.
    #[command(
        after_help = "Example:\n  baton schemas commit order --type avro --definition-file order-v2.avsc"
    )]
    Commit {
        /// Schema id or full name.
        schema: String,
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Make a copy of an older revision the newest.
    #[command(after_help = "Example:\n  baton schemas rollback order --revision-id a1b2c3d4")]
    Rollback {
        /// Schema id or full name.
        schema: String,
        /// The revision to copy.
        #[arg(long)]
        revision_id: String,
    },
    /// Delete a schema and all its revisions.
    #[command(after_help = "Example:\n  baton schemas delete order")]
    Delete {
        /// Schema id or full name.
        schema: String,
    },
    /// Delete one revision, named `SCHEMA@REVISION`.
    #[command(
        name = "delete-revision",
        after_help = "Example:\n  baton schemas delete-revision order@a1b2c3d4"
    )]
    DeleteRevision {
        /// `id@revision`.
        #[arg(value_parser = schema_revision_arg, value_name = "SCHEMA@REVISION")]
        schema_revision: (String, String),
    },
    /// Check a definition without creating a schema.
    #[command(
        name = "validate-schema",
        after_help = "Example:\n  baton schemas validate-schema --type avro --definition-file order.avsc"
    )]
    ValidateSchema {
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Check a message against a schema (an existing one, or a definition).
    #[command(
        name = "validate-message",
        group = clap::ArgGroup::new("schema").required(true).args(["schema_name", "schema_type"]),
        after_help = "Examples:\n  baton schemas validate-message --schema-name order --message '{\"id\":\"42\"}' --message-encoding json\n  baton schemas validate-message --type avro --definition-file order.avsc --message '{\"id\":\"42\"}' --message-encoding json"
    )]
    ValidateMessage {
        /// The message (text).
        #[arg(long)]
        message: String,
        /// Its encoding.
        #[arg(long, value_enum)]
        message_encoding: EncodingArg,
        /// An existing schema (id, full name or `id@revision`).
        #[arg(long, conflicts_with_all = ["schema_type", "definition", "definition_file"])]
        schema_name: Option<String>,
        /// Type of an inline definition.
        #[arg(long = "type", value_enum, requires = "inline")]
        schema_type: Option<SchemaTypeArg>,
        /// Inline definition.
        #[arg(long, group = "inline")]
        definition: Option<String>,
        /// Definition file.
        #[arg(long, group = "inline")]
        definition_file: Option<PathBuf>,
    },
    /// IAM policy verbs on a schema.
    #[command(flatten)]
    Iam(IamVerb),
}

/// `--expire-time`: a duration from now (`36h`, `3d`), or else an RFC 3339
/// time.
fn expiry_arg(text: &str) -> Result<std::time::SystemTime, String> {
    match parse_duration(text) {
        Ok(after) => Ok(std::time::SystemTime::now() + after),
        Err(_) => time_arg(text).map_err(|_| {
            format!(
                "expected an RFC 3339 time like 2030-01-01T00:00:00Z or a duration like 3d, got `{text}`"
            )
        }),
    }
}

/// `SCHEMA@REVISION` of `delete-revision`: a value parser, so a name
/// without a revision is clap's usage error (exit 2).
fn schema_revision_arg(text: &str) -> Result<(String, String), String> {
    match text.rsplit_once('@') {
        Some((schema, revision)) if !schema.is_empty() && !revision.is_empty() => {
            Ok((schema.to_string(), revision.to_string()))
        }
        _ => Err(format!(
            "name the revision as SCHEMA@REVISION, got `{text}`"
        )),
    }
}

/// Prints a list of resources: JSON, or a table of `columns` (JSON field
/// names) under their upper-cased names.
fn print_list<T: serde::Serialize>(
    format: Format,
    items: &[T],
    columns: &[&str],
) -> anyhow::Result<()> {
    let value = to_json(&items)?;
    match format {
        Format::Json => print_json(&value),
        Format::Table => {
            let rows: Vec<Vec<String>> = value
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|item| {
                    columns
                        .iter()
                        .map(|column| match &item[*column] {
                            serde_json::Value::Null => String::new(),
                            serde_json::Value::String(text) => text.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            print_table(&header, &rows);
            Ok(())
        }
    }
}

/// Runs `baton snapshots ...`.
pub async fn snapshots(args: &ClientArgs, command: SnapshotsCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let format = args.format();
    match command {
        SnapshotsCommand::Create {
            snapshot,
            subscription,
            labels,
        } => {
            let mut config = SnapshotConfig::new(snapshot, subscription);
            for (key, value) in labels {
                config = config.with_label(key, value);
            }
            print_resource(format, &to_json(&client.create_snapshot(config).await?)?)
        }
        SnapshotsCommand::Describe { snapshot } => {
            print_resource(format, &to_json(&client.get_snapshot(&snapshot).await?)?)
        }
        SnapshotsCommand::List => print_list(
            format,
            &client.list_snapshots().await?,
            &["name", "topic", "expireTime"],
        ),
        SnapshotsCommand::Update {
            snapshot,
            labels,
            expire_time,
        } => {
            let mut update = SnapshotUpdate::new(snapshot.clone());
            if labels.any() {
                let current = client.get_snapshot(&snapshot).await?;
                update = update.with_labels(labels.apply(&current.labels));
            }
            if let Some(time) = expire_time {
                update = update.with_expire_time(time);
            }
            if update.paths().is_empty() {
                bail!("{NOTHING_TO_UPDATE}");
            }
            print_resource(format, &to_json(&client.update_snapshot(update).await?)?)
        }
        SnapshotsCommand::Delete { snapshot } => {
            client.delete_snapshot(&snapshot).await?;
            eprintln!("Deleted snapshot [{}].", client.snapshot_name(&snapshot));
            Ok(())
        }
        SnapshotsCommand::Iam(verb) => {
            let resource = client.snapshot_name(verb.name());
            run_iam(&client, format, &resource, verb).await
        }
    }
}

/// Runs `baton schemas ...`.
pub async fn schemas(args: &ClientArgs, command: SchemasCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let format = args.format();
    match command {
        SchemasCommand::Create { schema, definition } => {
            let created = client
                .create_schema(&schema, definition.definition()?)
                .await?;
            print_resource(format, &to_json(&created)?)
        }
        SchemasCommand::Describe { schema } => print_resource(
            format,
            &to_json(&client.get_schema(&schema, SchemaView::Full).await?)?,
        ),
        SchemasCommand::List { view } => print_list(
            format,
            &client.list_schemas(view.to_client()).await?,
            &["name", "type", "revisionId"],
        ),
        SchemasCommand::ListRevisions { schema, view } => print_list(
            format,
            &client
                .list_schema_revisions(&schema, view.to_client())
                .await?,
            &["name", "revisionId", "revisionCreateTime"],
        ),
        SchemasCommand::Commit { schema, definition } => {
            let committed = client
                .commit_schema(&schema, definition.definition()?)
                .await?;
            print_resource(format, &to_json(&committed)?)
        }
        SchemasCommand::Rollback {
            schema,
            revision_id,
        } => print_resource(
            format,
            &to_json(&client.rollback_schema(&schema, &revision_id).await?)?,
        ),
        SchemasCommand::Delete { schema } => {
            client.delete_schema(&schema).await?;
            eprintln!("Deleted schema [{}].", client.schema_name(&schema));
            Ok(())
        }
        SchemasCommand::DeleteRevision {
            schema_revision: (schema, revision),
        } => {
            let deleted = client.delete_schema_revision(&schema, &revision).await?;
            print_resource(format, &to_json(&deleted)?)
        }
        SchemasCommand::ValidateSchema { definition } => {
            client.validate_schema(definition.definition()?).await?;
            print_valid(format)
        }
        SchemasCommand::ValidateMessage {
            message,
            message_encoding,
            schema_name,
            schema_type,
            definition,
            definition_file,
        } => {
            let encoding = message_encoding.to_client();
            match (schema_name, schema_type) {
                (Some(name), _) => {
                    client
                        .validate_message(&name, message.as_bytes(), encoding)
                        .await?
                }
                (None, Some(schema_type)) => {
                    let inline = DefinitionArgs {
                        schema_type,
                        source: DefinitionSource {
                            definition,
                            definition_file,
                        },
                    };
                    client
                        .validate_message_with_definition(
                            inline.definition()?,
                            message.as_bytes(),
                            encoding,
                        )
                        .await?
                }
                (None, None) => {
                    bail!("pass --schema-name, or --type with --definition or --definition-file")
                }
            }
            print_valid(format)
        }
        SchemasCommand::Iam(verb) => {
            let resource = client.schema_name(verb.name());
            run_iam(&client, format, &resource, verb).await
        }
    }
}

/// What a successful validation prints (gcloud prints an empty object).
fn print_valid(format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(&serde_json::json!({})),
        Format::Table => {
            eprintln!("Valid.");
            Ok(())
        }
    }
}
