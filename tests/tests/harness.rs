//! The testkit's gcloud emulator harness itself: the emulator it starts
//! really goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use baton_testkit::emulator::Emulator;
use baton_testkit::python::PROJECT;

#[test]
fn emulator_starts_and_its_process_group_dies_on_drop() {
    let emulator = Emulator::start(PROJECT, Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap();
    let host = emulator.host().to_owned();
    TcpStream::connect(&host).expect("the emulator listens once started");
    drop(emulator);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&host).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the emulator (java) still listens on {host} 10 s after drop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
