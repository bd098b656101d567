#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Conformance replay: runs the recorded corpus of the official Pub/Sub emulator's
//! behaviour (`tests/fixtures/pubsub-v1/`, 42 programs, 916 steps) against Baton.
//!
//! Each program gets a fresh server (the testkit's `TestServer` on 127.0.0.1:0), a fresh
//! template registry and a recording push endpoint (the testkit's `PushRecorder`); its
//! steps run in order exactly as
//! `tests/fixtures/pubsub-v1/STEP_SEMANTICS.md` describes. Our answers are normalised
//! like the recorded ones and compared canonically. Steps listed in
//! `conformance/deviations.rs` are compared with our own expected answer instead.
//!
//! Every program runs on virtual time (Tokio's paused clock drives the server's
//! lease deadlines, backoffs and pull waits, and the runner's sleeps; the broker's
//! wall clock and the runner's follow it), so the corpus's waits of up to 20 s
//! take no real time, in memory and on the disk store alike (the store's writer
//! holds the clock while an fsync is under way).
//!
//! A ratchet: every one of the corpus's programs must pass every step, and the
//! corpus must still hold all of them ([`PROGRAMS`], [`STEPS`]); a regression in
//! any program fails the test. Run it with the report on the terminal:
//!
//! ```text
//! cargo test -p baton-server --test conformance -- --nocapture
//! ```
//!
//! `BATON_CONFORMANCE_PROGRAMS=pull-ack,fan-out` runs only those programs. The report is
//! also written to `target/tmp/conformance-report.txt`.

#[path = "conformance/corpus.rs"]
mod corpus;
#[path = "conformance/deviations.rs"]
mod deviations;
#[path = "conformance/grpc.rs"]
mod grpc;
#[path = "conformance/normalize.rs"]
mod normalize;
#[path = "conformance/push.rs"]
mod push;
#[path = "conformance/runner.rs"]
mod runner;
#[path = "conformance/templates.rs"]
mod templates;
#[path = "conformance/wire.rs"]
mod wire;

use std::fmt::Write as _;

/// Programs in the recorded corpus, every one of which must pass.
const PROGRAMS: usize = 42;
/// Steps in the recorded corpus.
const STEPS: usize = 916;

/// Wall-clock time at which each replay's virtual clock starts.
fn start_wall() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
}

/// Longest JSON printed for one side of a failing step.
const MAX_PRINTED: usize = 4000;

fn clip(text: &str) -> String {
    if text.len() <= MAX_PRINTED {
        return text.to_owned();
    }
    let mut end = MAX_PRINTED;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...({} chars)", &text[..end], text.len())
}

#[test]
fn the_corpus_is_complete_and_deviations_name_real_steps() {
    let corpus = corpus::load();
    assert_eq!(corpus.programs.len(), PROGRAMS, "programs in the corpus");
    assert_eq!(
        corpus.programs.iter().map(|p| p.steps.len()).sum::<usize>(),
        STEPS,
        "steps in the corpus"
    );
    for deviation in deviations::DEVIATIONS {
        let program = corpus
            .programs
            .iter()
            .find(|p| p.id == deviation.program)
            .unwrap_or_else(|| panic!("deviation for unknown program {}", deviation.program));
        assert!(
            program.steps.iter().any(|s| s.id == deviation.step),
            "deviation for unknown step {}/{}",
            deviation.program,
            deviation.step
        );
    }
}

#[tokio::test(start_paused = true)]
async fn replay_emulator_corpus() {
    replay(None, "conformance-report.txt").await;
}

/// The same corpus against a server on the disk store: durability must not
/// change a single answer.
#[tokio::test(start_paused = true)]
async fn replay_emulator_corpus_on_the_disk_store() {
    let dir = tempfile::tempdir().expect("temporary directory");
    replay(Some(dir.path()), "conformance-report-disk.txt").await;
}

/// Replays every program (or those named in `BATON_CONFORMANCE_PROGRAMS`),
/// each on a fresh server on virtual time, prints and writes the report, and
/// fails if any program fails a step.
async fn replay(data_dir: Option<&std::path::Path>, report_name: &str) {
    let corpus = corpus::load();
    let only: Option<Vec<String>> = std::env::var("BATON_CONFORMANCE_PROGRAMS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());

    let mut report = String::new();
    let mut failing = Vec::new();
    let (mut passed_total, mut steps_total) = (0, 0);
    for program in &corpus.programs {
        if only.as_ref().is_some_and(|ids| !ids.contains(&program.id)) {
            continue;
        }
        // Each program gets a store of its own, like a fresh emulator.
        let program_dir = data_dir.map(|dir| dir.join(&program.id));
        let clock = baton_broker::Clock::virtual_time(start_wall());
        let result = runner::run_program(program, program_dir.as_deref(), clock).await;
        let passed = result.passed();
        let total = result.steps.len();
        passed_total += passed;
        steps_total += total;
        let mut text = format!("program {}: {passed}/{total} steps\n", result.id);
        for step in result.steps.iter().filter(|s| !s.passed) {
            let marker = step
                .deviation
                .map(|reason| format!(" (deviation: {reason})"))
                .unwrap_or_default();
            let _ = writeln!(text, "  step {} FAILED{marker}", step.id);
            let _ = writeln!(
                text,
                "    expected: {}",
                clip(&normalize::canonical(&step.expected))
            );
            let _ = writeln!(
                text,
                "    actual:   {}",
                clip(&normalize::canonical(&step.actual))
            );
        }
        print!("{text}");
        report.push_str(&text);
        if passed < total {
            failing.push(format!("{} ({passed}/{total})", result.id));
        }
    }
    let store = if data_dir.is_some() {
        " (disk store)"
    } else {
        ""
    };
    let summary = format!(
        "conformance{store}: {passed_total}/{steps_total} steps passed; programs failing: {}\n",
        if failing.is_empty() {
            "none".to_owned()
        } else {
            failing.join(", ")
        }
    );
    print!("{summary}");
    report.push_str(&summary);
    let report_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(report_name);
    if let Err(e) = std::fs::write(&report_path, &report) {
        println!("could not write {}: {e}", report_path.display());
    }
    assert!(
        failing.is_empty(),
        "conformance programs failed: {}",
        failing.join(", ")
    );
    if only.is_none() {
        assert_eq!(steps_total, STEPS, "every step of the corpus ran");
    }
}
