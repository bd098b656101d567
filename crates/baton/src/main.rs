//! The `baton` command line.

/// mimalloc instead of the platform's malloc: the server and the client
/// verbs allocate messages and spans on one thread and free them on another,
/// which glibc's malloc serves slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_cmds;
mod demo;
mod failure;
mod iam_cmd;
mod otel;
mod pubsub_cmds;
mod signals;
mod text;
mod trace_cmd;
mod trace_http;
mod trace_search_cmd;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// Baton: a Pub/Sub-API server, client tools and a trace view that keep
/// traces whole across asynchronous hops.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Pub/Sub-API server (gRPC and REST on one port).
    #[command(
        after_help = "Examples:\n  baton serve\n  baton serve --in-memory --port 0\n  baton serve --tls --auth --data-dir baton-data"
    )]
    Serve(ServeArgs),
    /// Manage topics and publish (like `gcloud pubsub topics`).
    Topics {
        #[command(flatten)]
        client: pubsub_cmds::ClientArgs,
        #[command(subcommand)]
        command: pubsub_cmds::TopicsCommand,
    },
    /// Manage subscriptions and pull (like `gcloud pubsub subscriptions`).
    Subscriptions {
        #[command(flatten)]
        client: pubsub_cmds::ClientArgs,
        #[command(subcommand)]
        command: pubsub_cmds::SubscriptionsCommand,
    },
    /// Manage snapshots (like `gcloud pubsub snapshots`).
    Snapshots {
        #[command(flatten)]
        client: pubsub_cmds::ClientArgs,
        #[command(subcommand)]
        command: admin_cmds::SnapshotsCommand,
    },
    /// Manage schemas and their revisions (like `gcloud pubsub schemas`).
    Schemas {
        #[command(flatten)]
        client: pubsub_cmds::ClientArgs,
        #[command(subcommand)]
        command: admin_cmds::SchemasCommand,
    },
    /// Stream messages from a subscription until Ctrl-C.
    #[command(
        after_help = "Examples:\n  baton subscribe worker\n  baton subscribe worker --format json --nack"
    )]
    Subscribe {
        #[command(flatten)]
        client: pubsub_cmds::ClientArgs,
        #[command(flatten)]
        args: pubsub_cmds::SubscribeArgs,
    },
    /// Run the demo: the server with its trace view, Service A and Service B
    /// in this process, a few orders, and their traces as waterfalls.
    #[command(after_help = "Examples:\n  baton demo\n  baton demo --orders 10 --once")]
    Demo(demo::DemoArgs),
    /// Show and search traces on a running server (`baton trace show <id>`,
    /// `baton trace search subscription=orders-sub`).
    Trace {
        #[command(subcommand)]
        command: trace_cmd::TraceCommand,
    },
    /// Service accounts and their key files (like `gcloud iam`), on a
    /// server started with `--auth`.
    Iam {
        #[command(flatten)]
        admin: iam_cmd::AdminArgs,
        #[command(subcommand)]
        command: iam_cmd::IamCommand,
    },
    /// Project-level IAM bindings (like `gcloud projects
    /// add-iam-policy-binding`).
    Projects {
        #[command(flatten)]
        admin: iam_cmd::AdminArgs,
        #[command(subcommand)]
        command: iam_cmd::ProjectsCommand,
    },
    /// Users' credential files (like `gcloud auth application-default
    /// login`), on a server started with `--auth`.
    Auth {
        #[command(flatten)]
        admin: iam_cmd::AdminArgs,
        #[command(subcommand)]
        command: iam_cmd::AuthCommand,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BATON_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on; 0 picks a free one and prints it.
    #[arg(long, env = "BATON_PORT", default_value_t = 8085)]
    port: u16,
    /// Directory of the durable store: topics, subscriptions, snapshots,
    /// schemas and every acknowledged publish survive restarts and crashes.
    #[arg(long, env = "BATON_DATA_DIR", default_value = "baton-data")]
    data_dir: PathBuf,
    /// Keep everything in memory instead (lost when the server stops);
    /// faster, for tests and throwaway runs. Wins over `--data-dir`.
    #[arg(long, env = "BATON_IN_MEMORY")]
    in_memory: bool,
    /// Do not record the server's own spans (receive, deliver, redeliver,
    /// dead-letter) in the traces of messages that carry a trace context
    /// (same as `BATON_BROKER_SPANS=false`).
    #[arg(long)]
    no_broker_spans: bool,
    /// Port of the OTLP/gRPC trace receiver; 0 picks a free one.
    #[arg(long, env = "BATON_OTLP_GRPC_PORT", default_value_t = 4317)]
    otlp_grpc_port: u16,
    /// Port of the OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf or
    /// JSON); 0 picks a free one.
    #[arg(long, env = "BATON_OTLP_HTTP_PORT", default_value_t = 4318)]
    otlp_http_port: u16,
    /// Do not receive OTLP traces (the trace view still shows the server's
    /// own spans).
    #[arg(long)]
    no_otlp: bool,
    /// Serve every port (gRPC, REST, web view, OTLP) over TLS with a
    /// development certificate Baton makes and keeps in `<data-dir>/tls`
    /// (trust its `ca.pem`; with `--in-memory`, made anew in a temporary
    /// directory each run). Plain text is the default.
    #[arg(long, env = "BATON_TLS")]
    tls: bool,
    /// Serve over TLS with this PEM certificate chain (server certificate
    /// first) instead of a development certificate; needs `--tls-key`.
    #[arg(
        long,
        env = "BATON_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(
        long,
        env = "BATON_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Forward every span received over OTLP (as received) and every span
    /// the server makes, plus OTLP logs and metrics, to this OTLP endpoint
    /// (a collector, Jaeger, Tempo): the generic endpoint, `/v1/traces` and
    /// the like appended for HTTP. Wins over `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// and the signal-specific endpoints, which are read otherwise (with
    /// `_PROTOCOL`, `_HEADERS`, `_COMPRESSION`, `_TIMEOUT`, `_CERTIFICATE`).
    #[arg(long, env = "BATON_FORWARD_OTLP", value_name = "URL")]
    forward_otlp: Option<String>,
    /// The protocol to forward with: grpc, http/protobuf or http/json
    /// (default: `OTEL_EXPORTER_OTLP_PROTOCOL`, else grpc for port 4317 and
    /// http/protobuf otherwise).
    #[arg(long, env = "BATON_FORWARD_OTLP_PROTOCOL", value_name = "PROTOCOL")]
    forward_otlp_protocol: Option<baton_server::baton_trace_store::forward::Protocol>,
    /// Most spans (log records, metric points) queued per signal for the
    /// upstream; more are dropped and counted while it is slow or down.
    #[arg(long, env = "BATON_FORWARD_QUEUE", default_value_t = baton_server::baton_trace_store::forward::config::DEFAULT_QUEUE_ITEMS)]
    forward_queue: usize,
    /// Forward nothing, whatever `OTEL_EXPORTER_OTLP_*` says.
    #[arg(long, conflicts_with = "forward_otlp")]
    no_forward: bool,
    /// How often the broker's metrics (the ones `/metrics` serves, named
    /// after Cloud Monitoring's) go upstream when metrics are forwarded.
    #[arg(long, env = "BATON_METRICS_EXPORT_INTERVAL", default_value = "60s", value_parser = pubsub_cmds::parse_duration)]
    metrics_export_interval: std::time::Duration,
    /// Most spans per second the OTLP trace receivers take (bursts of half a
    /// second's worth pass whole); more are refused with the codes OTLP
    /// exporters retry later, so a flood of spans cannot slow Pub/Sub. 0
    /// takes everything.
    #[arg(
        long,
        env = "BATON_OTLP_MAX_SPANS_PER_SECOND",
        default_value_t = 10_000
    )]
    otlp_max_spans_per_second: u32,
    /// Most spans the trace store keeps; the least recently updated traces
    /// are evicted first.
    #[arg(long, env = "BATON_TRACE_STORE_SPANS", default_value_t = 100_000)]
    trace_store_spans: usize,
    /// Most memory the trace store holds (estimated; the trace file in the
    /// data directory mirrors it and stays below it too): bytes, or with a
    /// unit, e.g. `512MiB`, `2GiB`, `100MB`.
    #[arg(long, env = "BATON_TRACE_STORE_BYTES", default_value = "512MiB", value_parser = parse_bytes)]
    trace_store_bytes: usize,
    /// Traces not updated for this long are evicted (`600s`, `30m`, `24h`,
    /// `7d`; `0` keeps them until the bounds push them out).
    #[arg(long, env = "BATON_TRACE_RETENTION", default_value = "24h", value_parser = pubsub_cmds::parse_duration)]
    trace_retention: std::time::Duration,
    /// Record the server's own spans in message traces (`false` is the same
    /// as `--no-broker-spans`).
    #[arg(
        long,
        env = "BATON_BROKER_SPANS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        hide = true
    )]
    broker_spans: bool,
    /// Require credentials on every Pub/Sub call and enforce IAM policies
    /// (on the resource and on its project), as Google Cloud does. Clients
    /// then authenticate with key files made by `baton iam service-accounts
    /// keys create`, or through the metadata server (`--metadata-port`).
    #[arg(long, env = "BATON_AUTH")]
    auth: bool,
    /// Where `--auth` writes the operator token, the bootstrap admin's
    /// credential that `baton iam` and `baton projects` use (default
    /// `<data-dir>/auth/operator-token`; with `--in-memory` it is logged).
    #[arg(long, env = "BATON_OPERATOR_TOKEN_FILE")]
    operator_token_file: Option<PathBuf>,
    /// Serve the metadata server's token endpoints on this port (0 picks
    /// one), so libraries that honour `GCE_METADATA_HOST` get tokens as if
    /// on GKE or Compute Engine.
    #[arg(long, env = "BATON_METADATA_PORT")]
    metadata_port: Option<u16>,
    /// The service account (email) the metadata server speaks for.
    #[arg(
        long,
        env = "BATON_METADATA_SERVICE_ACCOUNT",
        requires = "metadata_port"
    )]
    metadata_service_account: Option<String>,
    /// Trust a workload identity pool provider in the Security Token
    /// Service (`POST /v1/token`, Workload Identity Federation):
    /// `AUDIENCE=ISSUER[,JWKS_FILE]`, where AUDIENCE is
    /// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`
    /// and ISSUER the OIDC issuer whose RS256 tokens it takes; its keys come
    /// from JWKS_FILE, or else from the issuer's discovery document, fetched
    /// at start. Repeatable.
    #[arg(
        long = "workload-identity-provider",
        env = "BATON_WORKLOAD_IDENTITY_PROVIDERS",
        value_name = "AUDIENCE=ISSUER[,JWKS_FILE]",
        value_delimiter = ';',
        value_parser = parse_workload_identity_provider,
        requires = "auth"
    )]
    workload_identity_providers: Vec<(String, String, Option<PathBuf>)>,
    /// The URL clients reach this server at, when it differs from the bound
    /// address (behind a proxy, say): the issuer of its tokens and the
    /// `token_uri` of the key files it makes.
    #[arg(long, env = "BATON_PUBLIC_URL")]
    public_url: Option<String>,
}

/// mimalloc's setting for transparent huge pages.
const ALLOW_THP_VAR: &str = "MIMALLOC_ALLOW_THP";

/// Runs this `baton serve` again, in place of this process (same pid), with
/// mimalloc's transparent huge pages off, unless `MIMALLOC_ALLOW_THP` is set
/// already. mimalloc marks its regions for huge pages, so on a machine whose
/// kernel honours that, every region it touches becomes a 2 MiB page: an
/// idle server held 24.5 MB instead of 15.8 MB (BENCHMARKS.md, "Idle
/// memory"). mimalloc reads the setting when the process starts, hence the
/// second start. The client verbs, short-lived, keep the default. Returns
/// only when the new start failed; the server then runs as it is.
fn serve_without_huge_pages() -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(ALLOW_THP_VAR, "0")
            .exec(),
        Err(error) => error,
    }
}

/// The resource families whose IAM verbs share [`pubsub_cmds::IamVerb`].
const IAM_FAMILIES: [&str; 4] = ["topics", "subscriptions", "snapshots", "schemas"];

/// The `--help` examples of `baton trace` (its verbs are declared in
/// `trace_cmd`).
const TRACE_EXAMPLES: [(&str, &str); 2] = [
    (
        "show",
        "Examples:\n  baton trace show 4bf92f3577b34da6a3ce929d0e0e4736\n  baton trace show --message 1234567890 --resources\n  baton trace show --last --width 120",
    ),
    (
        "search",
        "Examples:\n  baton trace search subscription=orders-sub\n  baton trace search --service checkout --errors --since 1h\n  baton trace search --topic orders --min-duration 100ms --json",
    ),
];

/// The command line as clap sees it: the derived commands, plus the
/// `--help` examples that depend on where a shared verb sits (the IAM verbs
/// name their own resource kind).
fn cli_command() -> clap::Command {
    let mut command = Cli::command();
    for family in IAM_FAMILIES {
        command = command.mut_subcommand(family, |mut resource| {
            for (verb, example) in pubsub_cmds::iam_examples(family) {
                resource = resource.mut_subcommand(verb, |c| c.after_help(example));
            }
            resource
        });
    }
    command.mut_subcommand("trace", |mut trace| {
        for (verb, example) in TRACE_EXAMPLES {
            trace = trace.mut_subcommand(verb, |c| c.after_help(example));
        }
        trace
    })
}

/// What is wrong with the arguments beyond clap's own rules (an update that
/// changes nothing), found before anything connects anywhere.
fn usage_problem(cli: &Cli) -> Option<&'static str> {
    match &cli.command {
        Command::Topics { command, .. } => command.usage_problem(),
        Command::Subscriptions { command, .. } => command.usage_problem(),
        Command::Snapshots { command, .. } => command.usage_problem(),
        _ => None,
    }
}

/// `message` as clap's usage error of the verb `matches` ran (its usage
/// line, exit status 2), as for a missing or malformed argument.
fn usage_error(matches: &clap::ArgMatches, message: &str) -> clap::Error {
    let mut command = cli_command();
    command.build();
    let mut leaf = command;
    let mut at = matches;
    while let Some((name, sub)) = at.subcommand() {
        match leaf.find_subcommand(name) {
            Some(found) => leaf = found.clone(),
            None => break,
        }
        at = sub;
    }
    leaf.error(clap::error::ErrorKind::MissingRequiredArgument, message)
}

/// Parses the command line; a usage error ends the process with status 2.
fn parse() -> Cli {
    let matches = cli_command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.format(&mut cli_command()).exit(),
    };
    if let Some(problem) = usage_problem(&cli) {
        usage_error(&matches, problem).exit();
    }
    cli
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = parse();
    let restart_failed = (matches!(cli.command, Command::Serve(_))
        && std::env::var_os(ALLOW_THP_VAR).is_none())
    .then(serve_without_huge_pages);
    // Client verbs print results on stdout and their failures as one line
    // (see `failure`); library warnings (a retried call, a credential probe)
    // are noise there, so only errors are logged unless BATON_LOG says more.
    let default_filter = match cli.command {
        Command::Serve(_) | Command::Demo(_) => "info",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(error) = restart_failed {
        tracing::debug!(%error, "could not restart without transparent huge pages; serving as is");
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => failure::exit_with(&error),
    }
}

/// The words of this invocation after `baton`, flags left out: what the
/// user asked for, to name it in an error.
fn invocation() -> String {
    std::env::args()
        .skip(1)
        .take_while(|word| !word.starts_with('-'))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let attempt = |endpoint: String| failure::Attempt {
        action: invocation(),
        endpoint,
    };
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Topics { client, command } => pubsub_cmds::topics(&client, command)
            .await
            .context(attempt(client.endpoint_label())),
        Command::Subscriptions { client, command } => pubsub_cmds::subscriptions(&client, command)
            .await
            .context(attempt(client.endpoint_label())),
        Command::Snapshots { client, command } => admin_cmds::snapshots(&client, command)
            .await
            .context(attempt(client.endpoint_label())),
        Command::Schemas { client, command } => admin_cmds::schemas(&client, command)
            .await
            .context(attempt(client.endpoint_label())),
        Command::Subscribe { client, args } => {
            pubsub_cmds::subscribe(&client, args, signals::shutdown_signal())
                .await
                .context(attempt(client.endpoint_label()))
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Trace { command } => trace_cmd::run(command).await,
        Command::Iam { admin, command } => iam_cmd::iam(&admin, command)
            .await
            .context(attempt(admin.server_url())),
        Command::Projects { admin, command } => iam_cmd::projects(&admin, command)
            .await
            .context(attempt(admin.server_url())),
        Command::Auth { admin, command } => iam_cmd::auth(&admin, command)
            .await
            .context(attempt(admin.server_url())),
    }
}

/// `AUDIENCE=ISSUER[,JWKS_FILE]` of `--workload-identity-provider`.
fn parse_workload_identity_provider(
    text: &str,
) -> Result<(String, String, Option<PathBuf>), String> {
    let usage = || {
        format!(
            "expected AUDIENCE=ISSUER[,JWKS_FILE] (AUDIENCE like //iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/POOL/providers/PROVIDER), got `{text}`"
        )
    };
    let (audience, rest) = text.trim().split_once('=').ok_or_else(usage)?;
    let (issuer, jwks) = match rest.split_once(',') {
        Some((issuer, file)) => (issuer, Some(PathBuf::from(file.trim()))),
        None => (rest, None),
    };
    if audience.trim().is_empty() || issuer.trim().is_empty() {
        return Err(usage());
    }
    baton_auth::federation::parse_provider_audience(audience.trim())
        .map_err(|error| error.to_string())?;
    Ok((audience.trim().to_string(), issuer.trim().to_string(), jwks))
}

/// A byte count: digits with an optional unit (`KB`, `MB`, `GB` are powers of
/// 1000, `KiB`, `MiB`, `GiB` (and `K`, `M`, `G`) of 1024; `B` or none: bytes).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let amount: usize = number
        .parse()
        .map_err(|_| format!("expected a size like 512MiB or 100000000, got `{text}`"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "k" | "kib" => 1024,
        "m" | "mib" => 1024 * 1024,
        "g" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    amount
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.host, args.port);
    let mut config = baton_server::ServerConfig::new(addr);
    config.broker_spans = args.broker_spans && !args.no_broker_spans;
    config = config
        .with_trace_store_spans(args.trace_store_spans)
        .with_trace_store_bytes(args.trace_store_bytes)
        .with_trace_retention(Some(args.trace_retention))
        .with_metrics_export_interval(args.metrics_export_interval);
    if !args.in_memory {
        config = config.with_data_dir(&args.data_dir);
    }
    // Lives until the server stops: the per-run certificate of `--in-memory`.
    let mut _tls_temp_dir = None;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config = config.with_tls(baton_server::TlsSettings::Files {
            cert: cert.clone(),
            key: key.clone(),
        });
    } else if args.tls {
        let dir = if args.in_memory {
            let temp = tempfile::Builder::new()
                .prefix("baton-tls-")
                .tempdir()
                .context("making a temporary directory for the TLS certificate")?;
            let dir = temp.path().to_path_buf();
            tracing::info!(
                dir = %dir.display(),
                "in memory: the development certificate is made anew for this run and deleted when the server stops (without --in-memory it is kept in <data-dir>/tls)"
            );
            _tls_temp_dir = Some(temp);
            dir
        } else {
            args.data_dir.join("tls")
        };
        config = config.with_tls(baton_server::TlsSettings::Development { dir });
    }
    if args.otlp_max_spans_per_second > 0 {
        config = config.with_otlp_span_budget(args.otlp_max_spans_per_second);
    }
    if !args.no_otlp {
        config = config
            .with_otlp_grpc(SocketAddr::new(args.host, args.otlp_grpc_port))
            .with_otlp_http(SocketAddr::new(args.host, args.otlp_http_port));
    }
    if args.auth {
        config = config.with_auth(baton_server::AuthSettings {
            operator_token_file: args.operator_token_file.clone(),
            ..Default::default()
        });
    }
    if let Some(port) = args.metadata_port {
        let service_account = args.metadata_service_account.clone().context(
            "--metadata-port needs --metadata-service-account (the account it speaks for)",
        )?;
        config = config.with_metadata(baton_server::MetadataSettings {
            addr: SocketAddr::new(args.host, port),
            service_account,
        });
    }
    for (audience, issuer, jwks_file) in &args.workload_identity_providers {
        let jwks = match jwks_file {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                Some(
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", file.display()))?,
                )
            }
            None => None,
        };
        config = config.with_workload_identity_provider(
            baton_server::WorkloadIdentityProviderSettings {
                audience: audience.clone(),
                issuer: issuer.clone(),
                jwks,
            },
        );
    }
    if let Some(url) = &args.public_url {
        config = config.with_public_url(url.trim_end_matches('/'));
    }
    if !args.no_forward {
        let vars: std::collections::HashMap<String, String> = std::env::vars().collect();
        let forward = baton_server::ForwardConfig::from_vars(
            &vars,
            args.forward_otlp.as_deref(),
            args.forward_otlp_protocol,
        )
        .context("forwarding configuration (--forward-otlp, OTEL_EXPORTER_OTLP_*)")?;
        if let Some(mut forward) = forward {
            forward.queue_items = args.forward_queue;
            config = config.with_forwarding(forward);
        }
    }
    let server = baton_server::start(config)
        .await
        .with_context(|| format!("starting the server on {addr}"))?;
    let local = server.local_addr();
    let scheme = server.scheme();
    let store = match server.broker().storage() {
        Some(storage) => format!("durable store {}", storage.path().display()),
        None => "in-memory store".to_string(),
    };
    match server.tls_root() {
        None => {
            println!("Baton Pub/Sub server listening on {local} (gRPC and REST, {store})");
            println!("Point Google's client libraries at it with:");
            println!("  export PUBSUB_EMULATOR_HOST={local}");
        }
        Some(root) => {
            let port = local.port();
            println!(
                "Baton Pub/Sub server listening on https://{local} (gRPC and REST over TLS, {store})"
            );
            println!("Trust its certificate with (PUBSUB_EMULATOR_HOST forces plain text):");
            println!(
                "  export GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={}",
                root.display()
            );
            println!("  export SSL_CERT_FILE={}", root.display());
            println!("  export REQUESTS_CA_BUNDLE={}", root.display());
            println!("  export NODE_EXTRA_CA_CERTS={}", root.display());
            let credentials = if args.auth {
                "and a key file, see below"
            } else {
                "anonymous credentials"
            };
            println!(
                "and point Google's client libraries at api_endpoint localhost:{port} ({credentials})"
            );
        }
    }
    println!("Trace view: {scheme}://{local}/ui/");
    println!("Prometheus metrics: {scheme}://{local}/metrics");
    let traces = server.trace_store();
    match traces.path() {
        Some(path) => tracing::info!(
            file = %path.display(),
            spans = traces.span_count(),
            traces = traces.trace_count(),
            "trace store loaded"
        ),
        None => tracing::info!("trace store in memory (lost on stop)"),
    }
    if let (Some(grpc), Some(http)) = (server.otlp_grpc_addr(), server.otlp_http_addr()) {
        println!("OTLP traces: gRPC on {grpc}, HTTP on {http} (POST /v1/traces)");
        println!("Send your services' traces here with:");
        println!("  export OTEL_EXPORTER_OTLP_ENDPOINT={scheme}://{http}");
        println!("  (OTLP/gRPC exporters, like Rust's tonic one: {scheme}://{grpc})");
    } else {
        println!("OTLP receiver off (--no-otlp)");
    }
    let forwarding = server.forwarding().status();
    for (signal, lane) in [
        ("traces", &forwarding.traces),
        ("logs", &forwarding.logs),
        ("metrics", &forwarding.metrics),
    ] {
        if let Some(lane) = lane {
            println!(
                "Forwarding {signal} to {} ({}); status: {scheme}://{local}/api/forwarding",
                lane.endpoint, lane.protocol
            );
        }
    }
    if args.auth {
        let url = server.public_url();
        println!("Authentication on: every call needs a credential; IAM policies are enforced.");
        println!(
            "  Google's clients send credentials over TLS only: use api_endpoint={local} with a key file,"
        );
        println!(
            "  not PUBSUB_EMULATOR_HOST (which sends none). Tokens: {url}/token; ID-token certs: {url}/oauth2/v1/certs"
        );
        println!("  baton iam service-accounts create NAME --project P");
        println!(
            "  baton iam service-accounts keys create key.json --iam-account NAME@P.iam.gserviceaccount.com"
        );
        println!(
            "  baton projects add-iam-policy-binding P --member serviceAccount:NAME@P.iam.gserviceaccount.com --role roles/pubsub.editor"
        );
        println!(
            "  baton auth application-default login --account you@example.com --output adc.json   (a user's credentials)"
        );
        println!(
            "  Impersonation: {url}/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken (roles/iam.serviceAccountTokenCreator)"
        );
        for (audience, issuer, _) in &args.workload_identity_providers {
            println!(
                "  Workload Identity Federation: token_url {url}/v1/token, audience {audience} (issuer {issuer})"
            );
        }
    }
    if let Some(metadata) = server.metadata_addr() {
        println!(
            "Metadata server on {metadata}: export GCE_METADATA_HOST={metadata} GCE_METADATA_IP={metadata}"
        );
    }
    tracing::info!(%local, "ready; press Ctrl-C to stop");
    signals::shutdown_signal().await;
    tracing::info!("shutting down: closing streams with UNAVAILABLE");
    server.shutdown().await.context("shutting down")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{IAM_FAMILIES, cli_command, parse_bytes, parse_workload_identity_provider};

    /// Every leaf command under `command` (`path` naming it), with its path.
    fn leaves(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        let mut subcommands = command
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .peekable();
        if subcommands.peek().is_none() {
            out.push((path.to_string(), command.clone()));
        }
        for sub in subcommands {
            leaves(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        cli_command().debug_assert();
    }

    #[test]
    fn every_verb_shows_an_example_of_itself_in_its_help() {
        let mut found = Vec::new();
        let mut command = cli_command();
        command.build();
        leaves(&command, "baton", &mut found);
        assert!(found.len() > 60, "{} leaf commands", found.len());
        for (path, mut leaf) in found {
            let help = leaf.render_long_help().to_string();
            assert!(help.contains("Example"), "`{path} --help` has no example");
            assert!(
                help.contains(&format!("\n  {path} ")) || help.contains(&format!("\n  {path}\n")),
                "`{path} --help` has no example of `{path}`:\n{help}"
            );
        }
    }

    #[test]
    fn iam_examples_name_their_own_resource_kind() {
        let command = cli_command();
        for family in IAM_FAMILIES {
            let resource = command.find_subcommand(family).unwrap();
            for verb in [
                "get-iam-policy",
                "set-iam-policy",
                "add-iam-policy-binding",
                "remove-iam-policy-binding",
                "test-iam-permissions",
            ] {
                let mut leaf = resource.find_subcommand(verb).unwrap().clone();
                let help = leaf.render_long_help().to_string();
                assert!(
                    help.contains(&format!("baton {family} {verb} ")),
                    "{family} {verb}:\n{help}"
                );
                for other in IAM_FAMILIES.iter().filter(|f| **f != family) {
                    assert!(
                        !help.contains(&format!("baton {other} ")),
                        "{family} {verb} shows a `baton {other}` example:\n{help}"
                    );
                }
            }
        }
    }

    #[test]
    fn workload_identity_providers_parse_with_and_without_a_key_file() {
        let audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci/providers/gh";
        assert_eq!(
            parse_workload_identity_provider(&format!("{audience}=https://issuer.example")),
            Ok((
                audience.to_string(),
                "https://issuer.example".to_string(),
                None
            ))
        );
        assert_eq!(
            parse_workload_identity_provider(&format!(
                "{audience}=https://issuer.example,keys.json"
            )),
            Ok((
                audience.to_string(),
                "https://issuer.example".to_string(),
                Some("keys.json".into())
            ))
        );
        for bad in [
            "no-equals-sign",
            "=https://issuer.example",
            &format!("{audience}="),
            "//iam.googleapis.com/projects/1=https://issuer.example",
        ] {
            assert!(parse_workload_identity_provider(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn byte_sizes_parse_with_and_without_units() {
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("512MiB"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("64k"), Ok(64 * 1024));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }
}
