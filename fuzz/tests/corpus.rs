//! Replays every committed input of every fuzz target (`fuzz/corpus/`):
//! the seeds and whatever a fuzzing run found worth keeping, including the
//! inputs of crashes since fixed. None may panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};

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
fn trace_search_corpus() {
    replay("trace_search", baton_fuzz::trace_search);
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
fn publish_request_corpus() {
    replay("publish_request", baton_fuzz::publish_request);
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

/// The keys the fixture generates are the keys the committed seeds were
/// signed with. If this fails, the `rsa` (or `chacha20`) crate now
/// generates different keys from the same seed: regenerate the seeds
/// (`regenerate_credential_seeds`) and update the two ids in
/// `fuzz/src/lib.rs` to the ones printed here.
#[test]
fn credential_keys_are_the_ones_the_seeds_were_signed_with() {
    let keys = baton_fuzz::credential_keys();
    let hint = "key generation from a fixed seed changed (rsa or chacha20 upgrade?): \
        regenerate the credential_verifier seeds and update the key ids in fuzz/src/lib.rs";
    assert_eq!(
        keys.account.key_id,
        baton_fuzz::CREDENTIAL_ACCOUNT_KEY_ID,
        "account key: {hint}"
    );
    assert_eq!(
        keys.signing.key_id,
        baton_fuzz::CREDENTIAL_SIGNING_KEY_ID,
        "signing key: {hint}"
    );
    // And they are the keys the fixture uses.
    let authenticator = baton_fuzz::credential_authenticator();
    assert_eq!(
        authenticator.signing_key().key_id(),
        baton_fuzz::CREDENTIAL_SIGNING_KEY_ID
    );
    let (owner, _) = authenticator
        .accounts()
        .public_key(baton_fuzz::CREDENTIAL_ACCOUNT_KEY_ID)
        .expect("the account key is uploaded");
    assert_eq!(owner, ACCOUNT_EMAIL);
}

/// The committed credential seeds are byte for byte what
/// [`credential_seeds`] makes (RS256 and HS256 signatures are
/// deterministic), so none names or was signed with a stale key.
#[test]
fn committed_credential_seeds_are_the_regenerated_ones() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/credential_verifier");
    for (name, seed) in credential_seeds() {
        let committed = std::fs::read(corpus.join(name)).unwrap();
        assert!(
            committed == seed,
            "corpus/credential_verifier/{name} is stale: regenerate the seeds \
             (`regenerate_credential_seeds`)"
        );
    }
}

/// Writes the credential seeds that are signed or name a key into
/// `corpus/credential_verifier/`, signed with the fixture's keys. After a
/// change to the fixture's keys or to the seeds below, run
///
/// ```text
/// cargo test -p baton-fuzz --test corpus -- --ignored regenerate_credential_seeds
/// ```
///
/// and commit the result (the keys themselves are never written anywhere).
#[test]
#[ignore = "writes the committed corpus; run by hand"]
fn regenerate_credential_seeds() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/credential_verifier");
    for (name, seed) in credential_seeds() {
        std::fs::write(corpus.join(name), seed).unwrap();
        eprintln!("wrote corpus/credential_verifier/{name}");
    }
}

/// The fixture's service account (`baton_fuzz::credential_authenticator`).
const ACCOUNT_EMAIL: &str = "fuzz-robot@fuzz-project.iam.gserviceaccount.com";

/// The credential seeds that are signed or name a key, by file name: the
/// account's self-signed JWTs (valid, and expired), its token-endpoint
/// assertions (with and without `kid`), and two forgeries naming its key
/// (`alg: none`, and HS256 keyed with its public key).
fn credential_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let account = &baton_fuzz::credential_keys().account;
    let kid = &account.key_id;
    let now = baton_fuzz::CREDENTIAL_NOW_UNIX;
    let rs256 = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#);
    let self_signed = |aud_or_scope: &str, iat: u64| {
        format!(
            r#"{{"iss":"{ACCOUNT_EMAIL}","sub":"{ACCOUNT_EMAIL}",{aud_or_scope},"iat":{iat},"exp":{}}}"#,
            iat + 3600
        )
    };
    let pubsub_aud = self_signed(r#""aud":"https://pubsub.googleapis.com/""#, now);
    let assertion = format!(
        r#"{{"iss":"{ACCOUNT_EMAIL}","aud":"{}","scope":"https://www.googleapis.com/auth/pubsub","iat":{now},"exp":{}}}"#,
        baton_fuzz::CREDENTIAL_TOKEN_URI,
        now + 3600
    );
    let rsa_key = EncodingKey::from_rsa_pem(account.private_pkcs8_pem.as_bytes()).unwrap();
    let hmac_key = EncodingKey::from_secret(account.public_key_pem.as_bytes()).unwrap();
    let jwt = |header: &str, claims: &str, key: Option<(&EncodingKey, Algorithm)>| {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = key
            .map(|(key, algorithm)| {
                jsonwebtoken::crypto::sign(message.as_bytes(), key, algorithm).unwrap()
            })
            .unwrap_or_default();
        format!("{message}.{signature}")
    };
    let rs256_key = Some((&rsa_key, Algorithm::RS256));
    let bearer = |token: String| format!("Bearer {token}").into_bytes();
    let token_request = |token: String| {
        format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={token}"
        )
        .into_bytes()
    };
    vec![
        (
            "self-signed-aud",
            bearer(jwt(&rs256, &pubsub_aud, rs256_key)),
        ),
        (
            "self-signed-scope",
            bearer(jwt(
                &rs256,
                &self_signed(
                    r#""scope":"https://www.googleapis.com/auth/cloud-platform""#,
                    now,
                ),
                rs256_key,
            )),
        ),
        (
            "self-signed-expired",
            bearer(jwt(
                &rs256,
                &self_signed(r#""aud":"https://pubsub.googleapis.com/""#, now - 7200),
                rs256_key,
            )),
        ),
        (
            "assertion",
            token_request(jwt(&rs256, &assertion, rs256_key)),
        ),
        (
            "assertion-no-kid",
            token_request(jwt(r#"{"alg":"RS256","typ":"JWT"}"#, &assertion, rs256_key)),
        ),
        (
            "alg-none",
            bearer(jwt(
                &format!(r#"{{"alg":"none","kid":"{kid}"}}"#),
                &pubsub_aud,
                None,
            )),
        ),
        (
            "hs256-public-key",
            bearer(jwt(
                &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
                &pubsub_aud,
                Some((&hmac_key, Algorithm::HS256)),
            )),
        ),
    ]
}
