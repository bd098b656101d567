//! The recorded corpus: loading, digest check and the typed shape of a step.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Folder of the fixture inside this crate.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pubsub-v1")
}

/// The whole corpus file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Corpus {
    pub program_count: usize,
    pub step_count: usize,
    pub programs: Vec<Program>,
}

/// One program: a fresh server, steps run in order.
#[derive(Debug, Deserialize)]
pub struct Program {
    pub id: String,
    pub steps: Vec<Step>,
}

/// One step: a request and the emulator's normalised answer.
#[derive(Debug, Deserialize)]
pub struct Step {
    pub id: String,
    pub request: Value,
    pub response: Value,
}

/// A step's request, by transport (see STEP_SEMANTICS.md).
#[derive(Debug, Clone)]
pub enum Request {
    Grpc {
        service: String,
        method: String,
        body: Value,
    },
    Http {
        method: String,
        path: String,
        body: Option<Value>,
    },
    Stream {
        service: String,
        method: String,
        actions: Vec<Action>,
    },
    Pushes {
        at_least: usize,
        timeout_ms: u64,
    },
    PushStatus {
        status: u16,
    },
    Sleep {
        sleep_ms: u64,
    },
}

/// One scripted action of a StreamingPull session.
#[derive(Debug, Clone)]
pub enum Action {
    Write(Value),
    WaitMs(u64),
    End,
    Cancel,
}

impl Request {
    /// Reads a step's `request` object.
    pub fn parse(request: &Value) -> Result<Self, String> {
        let transport = str_field(request, "transport")?;
        match transport {
            "grpc" => Ok(Self::Grpc {
                service: str_field(request, "service")?.to_owned(),
                method: str_field(request, "method")?.to_owned(),
                body: request.get("body").cloned().unwrap_or(Value::Null),
            }),
            "http" => Ok(Self::Http {
                method: str_field(request, "method")?.to_owned(),
                path: str_field(request, "path")?.to_owned(),
                body: request.get("body").cloned(),
            }),
            "stream" => {
                let actions = request
                    .get("actions")
                    .and_then(Value::as_array)
                    .ok_or("stream step without actions")?
                    .iter()
                    .map(Action::parse)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Self::Stream {
                    service: str_field(request, "service")?.to_owned(),
                    method: str_field(request, "method")?.to_owned(),
                    actions,
                })
            }
            "pushes" => Ok(Self::Pushes {
                at_least: u64_field(request, "atLeast")? as usize,
                timeout_ms: u64_field(request, "timeoutMs")?,
            }),
            "pushStatus" => Ok(Self::PushStatus {
                status: u16::try_from(u64_field(request, "status")?)
                    .map_err(|e| format!("bad push status: {e}"))?,
            }),
            "sleep" => Ok(Self::Sleep {
                sleep_ms: u64_field(request, "sleepMs")?,
            }),
            other => Err(format!("unknown transport {other:?}")),
        }
    }
}

impl Action {
    fn parse(action: &Value) -> Result<Self, String> {
        if let Some(write) = action.get("write") {
            Ok(Self::Write(write.clone()))
        } else if let Some(ms) = action.get("waitMs") {
            ms.as_u64()
                .map(Self::WaitMs)
                .ok_or_else(|| format!("bad waitMs in {action}"))
        } else if action.get("end").is_some() {
            Ok(Self::End)
        } else if action.get("cancel").is_some() {
            Ok(Self::Cancel)
        } else {
            Err(format!("unknown stream action {action}"))
        }
    }
}

fn str_field<'a>(value: &'a Value, key: &str) -> Result<&'a str, String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("request without string field {key:?}"))
}

fn u64_field(value: &Value, key: &str) -> Result<u64, String> {
    value
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("request without integer field {key:?}"))
}

/// Reads the corpus from the crate's fixture folder and checks its SHA-256 against
/// `SHA256SUMS`. Panics when anything is off: the replay is meaningless without it.
pub fn load() -> Corpus {
    let dir = fixture_dir();
    let bytes = std::fs::read(dir.join("emulator-programs.json")).expect("read fixture");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).expect("read SHA256SUMS");
    let expected = sums
        .lines()
        .find_map(|line| {
            let mut parts = line.split_whitespace();
            let digest = parts.next()?;
            let name = parts.next()?.trim_start_matches('*');
            (name == "emulator-programs.json").then(|| digest.to_ascii_lowercase())
        })
        .expect("SHA256SUMS names emulator-programs.json");
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        actual, expected,
        "emulator-programs.json does not match SHA256SUMS"
    );
    let corpus: Corpus = serde_json::from_slice(&bytes).expect("parse fixture");
    assert_eq!(corpus.programs.len(), corpus.program_count, "program count");
    let steps: usize = corpus.programs.iter().map(|p| p.steps.len()).sum();
    assert_eq!(steps, corpus.step_count, "step count");
    corpus
}
