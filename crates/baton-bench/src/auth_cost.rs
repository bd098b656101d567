//! `baton-bench --auth-cost`: what authentication and IAM enforcement cost
//! the server, measured as Pub/Sub throughput with them on against off, in
//! one run on one machine.
//!
//! Three in-process servers: one plain; one plain that is sent the token
//! anyway (what carrying a credential costs HTTP/2, which never indexes
//! `authorization` headers, so each request carries the 1 KB token whole);
//! and one with `--auth` (a service account holding `roles/pubsub.editor` on
//! the project, calling with a self-signed JWT as Google's libraries do).
//! Against each, interleaved per round: publish N messages as unary Publish calls of a small batch from
//! several concurrent callers (small batches put the per-call cost of
//! verifying the credential and checking the policies in front), then pull
//! and acknowledge them all. Every call carries the same token, so after
//! the first call the server's verified-token cache answers; that cache is
//! what keeps the cost small.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};
use baton_proto::iam::{Binding, Policy};
use baton_server::{AuthSettings, ServerConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::trace_load::{BATCH, CALLERS, Credential, PROJECT, PULL_MAX, measured_round, median};

/// One server under test and a channel to it.
struct Target {
    label: &'static str,
    server: baton_server::RunningServer,
    channel: Channel,
    credential: Credential,
}

async fn connect(server: &baton_server::RunningServer) -> Result<Channel> {
    crate::trace_load::connect(server.local_addr()).await
}

/// A server without authentication.
async fn open_server() -> Result<Target> {
    let server = baton_server::start(loopback()).await?;
    let channel = connect(&server).await?;
    Ok(Target {
        label: "auth off",
        server,
        channel,
        credential: Credential(None),
    })
}

fn loopback() -> ServerConfig {
    let mut config = ServerConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    config.broker_spans = false;
    config
}

/// A server with authentication on, and the self-signed JWT of a service
/// account that may publish and consume in the project.
async fn guarded_server() -> Result<Target> {
    let server = baton_server::start(loopback().with_auth(AuthSettings::default())).await?;
    let accounts = server.identity().accounts().clone();
    let token_uri = server.identity().token_uri();
    let (email, key_file) = tokio::task::spawn_blocking(move || -> Result<_> {
        let account = accounts.create(PROJECT, "bench-caller", "bench", "")?;
        let (_, file) = accounts.create_key(&account.email, &token_uri, SystemTime::now())?;
        Ok((account.email, file))
    })
    .await??;
    server.broker().set_iam_policy(
        &format!("projects/{PROJECT}"),
        Policy {
            bindings: vec![Binding {
                role: "roles/pubsub.editor".into(),
                members: vec![format!("serviceAccount:{email}")],
                ..Default::default()
            }],
            ..Default::default()
        },
        &[],
    )?;
    let iat = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key_file.private_key_id.clone());
    let claims = serde_json::json!({
        "iss": email, "sub": email, "iat": iat, "exp": iat + 3600,
        "aud": "https://pubsub.googleapis.com/",
    });
    let key = EncodingKey::from_rsa_pem(key_file.private_key.as_bytes())?;
    let token = jsonwebtoken::encode(&header, &claims, &key)?;
    let value: MetadataValue<Ascii> = format!("Bearer {token}").parse()?;
    let channel = connect(&server).await?;
    Ok(Target {
        label: "auth on",
        server,
        channel,
        credential: Credential(Some(value)),
    })
}

/// The server-side cost of one call's check, measured directly: verifying
/// the (cached) credential and checking the publish permission against the
/// policies, on one thread, in nanoseconds per call.
fn check_cost(target: &Target, calls: u32) -> Result<f64> {
    let Some(credential) = &target.credential.0 else {
        return Ok(0.0);
    };
    let header = http::HeaderValue::from_bytes(credential.as_encoded_bytes())?;
    let access = baton_server::AccessControl::new(target.server.identity().authenticator()?);
    let broker = target.server.broker();
    let topic = format!("projects/{PROJECT}/topics/any");
    let started = Instant::now();
    for _ in 0..calls {
        let principal = access.authenticate(broker, Some(&header))?;
        access.authorize(
            broker,
            &principal,
            baton_server::api::access::Checks::one("pubsub.topics.publish", &topic),
        )?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e9 / f64::from(calls))
}

/// Runs the comparison and prints the report.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub async fn run(messages: usize, size: usize, rounds: usize) -> Result<()> {
    ensure!(
        messages > 0 && rounds > 0,
        "--messages and --rounds must be positive"
    );
    let guarded = guarded_server().await?;
    // The same token sent to a server that ignores it: what carrying a
    // credential costs the transport (HTTP/2 never indexes `authorization`,
    // so every request carries the token as a literal), apart from what
    // checking it costs the server.
    let mut carrying = open_server().await?;
    carrying.label = "auth off, token sent";
    carrying.credential = guarded.credential.clone();
    let targets = [open_server().await?, carrying, guarded];
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); targets.len()];
    // Round 0 warms both servers up and is not counted.
    for round_no in 0..=rounds {
        // Alternate which server goes first, so neither always runs on a
        // heap or a CPU the other just warmed.
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round_no % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (target, result) = (&targets[index], &mut results[index]);
            let prefix = format!("r{round_no}-t{index}");
            measured_round(
                target.label,
                round_no,
                &target.channel,
                &target.credential,
                &prefix,
                messages,
                size,
                false,
                result,
            )
            .await?;
        }
    }
    println!();
    println!(
        "Authentication cost: {messages} x {size} B per round, {rounds} rounds (medians), \
         {CALLERS} callers, Publish batches of {BATCH}, Pull of up to {PULL_MAX}"
    );
    let medians: Vec<(f64, f64)> = results
        .into_iter()
        .map(|(p, r)| (median(&p), median(&r)))
        .collect();
    for (target, (publish, receive)) in targets.iter().zip(&medians) {
        println!(
            "  {:<21} publish {publish:>9.0} msg/s   pull+ack {receive:>9.0} msg/s",
            target.label
        );
    }
    let per_call = check_cost(&targets[2], 200_000)?;
    println!(
        "  server-side check per call (verify the cached token + IAM check, one thread): {per_call:.0} ns"
    );
    let change = |to: (f64, f64), from: (f64, f64)| {
        (100.0 * (to.0 / from.0 - 1.0), 100.0 * (to.1 / from.1 - 1.0))
    };
    let (off, carrying, on) = (medians[0], medians[1], medians[2]);
    let (publish, receive) = change(on, off);
    println!("  auth on vs auth off: publish {publish:+.1}%   pull+ack {receive:+.1}%");
    let (publish, receive) = change(carrying, off);
    println!(
        "  of which carrying the token (auth off, token sent vs auth off): publish {publish:+.1}%   pull+ack {receive:+.1}%"
    );
    let (publish, receive) = change(on, carrying);
    println!(
        "  checking it (auth on vs auth off, token sent): publish {publish:+.1}%   pull+ack {receive:+.1}%"
    );
    let within = publish >= -10.0 && receive >= -10.0;
    println!(
        "target: checking credentials within 10% of not checking them: {}",
        if within { "met" } else { "NOT met" }
    );
    for target in targets {
        drop(target.channel);
        target.server.shutdown().await?;
    }
    Ok(())
}
