//! Replays every committed input of every fuzz target (`fuzz/corpus/`):
//! the seeds and whatever a fuzzing run found worth keeping, including the
//! inputs of crashes since fixed. None may panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus for {target}");
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        // A panic names the input that caused it.
        eprintln!("{target}: {}", input.display());
        harness(&data);
    }
}

#[test]
fn filter_corpus() {
    replay("filter", baton_fuzz::filter);
}

#[test]
fn schema_corpus() {
    replay("schema", baton_fuzz::schema);
}

#[test]
fn trace_context_corpus() {
    replay("trace_context", baton_fuzz::trace_context);
}

#[test]
fn rest_corpus() {
    replay("rest", baton_fuzz::rest);
}

#[test]
fn otlp_http_corpus() {
    replay("otlp_http", baton_fuzz::otlp_http);
}

#[test]
fn credential_verifier_corpus() {
    replay("credential_verifier", baton_fuzz::credential_verifier);
}

/// The valid seeds are valid for the fixture, so fuzzing starts from inputs
/// that reach the signature and claim checks and the success path.
#[test]
fn credential_seeds_reach_the_success_path() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/credential_verifier");
    let read = |name: &str| std::fs::read(corpus.join(name)).unwrap();
    let authenticator = baton_fuzz::credential_authenticator();
    let now = baton_fuzz::credential_now();
    for seed in ["self-signed-aud", "self-signed-scope", "operator"] {
        authenticator
            .verify_bearer(Some(&read(seed)), now)
            .unwrap_or_else(|e| panic!("{seed}: {e:?}"));
    }
    for seed in ["assertion", "assertion-no-kid"] {
        authenticator
            .exchange_jwt_bearer(&read(seed), baton_fuzz::CREDENTIAL_TOKEN_URI, now)
            .unwrap_or_else(|e| panic!("{seed}: {e:?}"));
    }
    for seed in [
        "self-signed-expired",
        "alg-none",
        "hs256-public-key",
        "bearer-empty",
        "not-utf8",
    ] {
        assert!(
            authenticator.verify_bearer(Some(&read(seed)), now).is_err(),
            "{seed}"
        );
    }
}
