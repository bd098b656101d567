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
