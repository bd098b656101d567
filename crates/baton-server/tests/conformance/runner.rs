//! Runs one program against a fresh Baton server, step by step, exactly as
//! STEP_SEMANTICS.md describes, and compares each normalised answer canonically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use baton_broker::Clock;

use baton_proto::pubsub::StreamingPullRequest;
use baton_testkit::push::PushRecorder;
use baton_testkit::server::{TestServer, loopback};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tonic::transport::Channel;

use super::corpus::{Action, Program, Request, Step};
use super::deviations;
use super::grpc::{self, StreamEvent, StreamSession};
use super::normalize::{self, Registry, canonical};
use super::push;
use super::templates::{Bindings, TimeShape, resolve_str, resolve_value};
use super::wire;

/// The default unary deadline of the recording client.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// Slack on top of a step's own time budget before the runner gives up on it.
const STEP_SLACK: Duration = Duration::from_secs(10);
/// How long a stream may take to settle after its last action.
const STREAM_SETTLE: Duration = Duration::from_secs(2);
/// Extra wait for stragglers once a `pushes` step has seen enough pushes.
const PUSH_STRAGGLERS: Duration = Duration::from_millis(150);

/// Client deadlines of the plan that the fixture does not carry:
/// `(program, step, deadline in ms)`. `pull-times-out` is a pull without
/// `returnImmediately` on an empty subscription: the server must answer `{}` shortly
/// before the caller's deadline (it reads `grpc-timeout`).
const PLAN_DEADLINES: &[(&str, &str, u64)] = &[("blocking-pull", "pull-times-out", 5_000)];

/// Steps whose `receivedMessages` are sorted by message id before normalisation,
/// because the delivery order is not a contract there (the plan's `sortReceived`).
const SORT_RECEIVED: &[&str] = &["pull-ordered", "pull-more", "pull-after-deadline"];

/// The outcome of one step.
#[derive(Debug)]
pub struct StepResult {
    pub id: String,
    pub passed: bool,
    pub expected: Value,
    pub actual: Value,
    /// Set when the expected answer came from the deviation table.
    pub deviation: Option<&'static str>,
}

/// The outcome of one program.
#[derive(Debug)]
pub struct ProgramResult {
    pub id: String,
    pub steps: Vec<StepResult>,
}

impl ProgramResult {
    pub fn passed(&self) -> usize {
        self.steps.iter().filter(|s| s.passed).count()
    }
}

/// Milliseconds since the epoch on the server's (virtual) wall clock.
fn now_ms(clock: &Clock) -> i64 {
    clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn runner_error(message: impl Into<String>) -> Value {
    json!({"runnerError": message.into()})
}

/// Everything a program's steps share.
struct Ctx<'p> {
    program: &'p Program,
    addr: SocketAddr,
    channel: Channel,
    http: reqwest::Client,
    push: PushRecorder,
    registry: Registry,
    finish_times: HashMap<String, i64>,
    /// The server's clock, whose wall-clock time the step templates use.
    clock: Clock,
}

/// Runs one program against a fresh server on `clock`: in memory, or on a
/// disk store in `data_dir`.
pub async fn run_program(
    program: &Program,
    data_dir: Option<&std::path::Path>,
    clock: Clock,
) -> ProgramResult {
    let fail_all = |message: String| ProgramResult {
        id: program.id.clone(),
        steps: program
            .steps
            .iter()
            .map(|step| StepResult {
                id: step.id.clone(),
                passed: false,
                expected: expected_for(program, step).0,
                actual: runner_error(message.clone()),
                deviation: None,
            })
            .collect(),
    };
    let mut config = baton_server::ServerConfig::new(loopback()).with_clock(clock);
    if let Some(dir) = data_dir {
        config = config.with_data_dir(dir);
    }
    let mut server = match TestServer::try_start_with(config).await {
        Ok(server) => server,
        Err(e) => return fail_all(format!("server did not start: {e}")),
    };
    let addr = server.addr;
    let push = match PushRecorder::try_start().await {
        Ok(push) => push,
        Err(e) => return fail_all(format!("push endpoint did not start: {e}")),
    };
    let channel = server.channel.clone();
    let http = match reqwest::Client::builder().build() {
        Ok(http) => http,
        Err(e) => return fail_all(format!("http client: {e}")),
    };
    let mut ctx = Ctx {
        program,
        addr,
        channel,
        http,
        push,
        registry: Registry::new(program.steps.iter().map(|s| &s.request)),
        finish_times: HashMap::new(),
        clock,
    };
    let mut steps = Vec::with_capacity(program.steps.len());
    for step in &program.steps {
        steps.push(ctx.run_step(step).await);
    }
    drop(ctx);
    if let Err(e) = server.take_server().shutdown().await {
        println!("program {}: server shutdown failed: {e:?}", program.id);
    }
    ProgramResult {
        id: program.id.clone(),
        steps,
    }
}

/// The answer a step is compared with: the recorded one or our deviation.
fn expected_for(program: &Program, step: &Step) -> (Value, Option<&'static str>) {
    match deviations::find(&program.id, &step.id) {
        Some(deviation) => ((deviation.expected)(), Some(deviation.reason)),
        None => (step.response.clone(), None),
    }
}

impl Ctx<'_> {
    async fn run_step(&mut self, step: &Step) -> StepResult {
        // 1. A step only sees the pushes it caused.
        self.push.drain();
        // 2. Run it; its finish time is kept under its id.
        let request = Request::parse(&step.request);
        let mut actual = match &request {
            Err(e) => runner_error(format!("bad step: {e}")),
            Ok(request) => {
                let budget = self.budget(step, request);
                match timeout(budget, self.execute(step, request)).await {
                    Ok(Ok(value)) => value,
                    Ok(Err(e)) => runner_error(e),
                    Err(_) => runner_error(format!(
                        "step did not finish within {} ms",
                        budget.as_millis()
                    )),
                }
            }
        };
        self.finish_times
            .insert(step.id.clone(), now_ms(&self.clock));
        // 3. Pushes that arrived during the step are recorded on it.
        if !matches!(request, Ok(Request::Pushes { .. })) {
            let late = self.push.drain();
            if !late.is_empty() {
                let records: Vec<Value> = late
                    .iter()
                    .map(|p| {
                        let mut record = push::to_json(p);
                        normalize::normalize(&mut record, &mut self.registry, &step.id);
                        record
                    })
                    .collect();
                if let Value::Object(map) = &mut actual {
                    map.insert("pushes".to_owned(), Value::Array(records));
                }
            }
        }
        // 4. The live push origin becomes {{pushOrigin}}.
        normalize::replace_origin(&mut actual, self.push.origin());
        let (expected, deviation) = expected_for(self.program, step);
        StepResult {
            id: step.id.clone(),
            passed: canonical(&expected) == canonical(&actual),
            expected,
            actual,
            deviation,
        }
    }

    fn deadline(&self, step: &Step) -> Duration {
        PLAN_DEADLINES
            .iter()
            .find(|(program, id, _)| *program == self.program.id && *id == step.id)
            .map_or(DEFAULT_DEADLINE, |(_, _, ms)| Duration::from_millis(*ms))
    }

    /// The most a step may take before the runner fails it.
    fn budget(&self, step: &Step, request: &Request) -> Duration {
        let own = match request {
            Request::Grpc { .. } => self.deadline(step),
            Request::Http { .. } => DEFAULT_DEADLINE,
            Request::Stream { actions, .. } => {
                let waits: u64 = actions
                    .iter()
                    .map(|a| match a {
                        Action::WaitMs(ms) => *ms,
                        _ => 0,
                    })
                    .sum();
                Duration::from_millis(waits) + STREAM_SETTLE
            }
            Request::Pushes { timeout_ms, .. } => {
                Duration::from_millis(*timeout_ms) + PUSH_STRAGGLERS
            }
            Request::PushStatus { .. } => Duration::ZERO,
            Request::Sleep { sleep_ms } => Duration::from_millis(*sleep_ms),
        };
        own + STEP_SLACK
    }

    fn bindings(&self) -> Bindings<'_> {
        Bindings {
            registry: &self.registry,
            push_origin: self.push.origin(),
            finish_times: &self.finish_times,
        }
    }

    async fn execute(&mut self, step: &Step, request: &Request) -> Result<Value, String> {
        match request {
            Request::Grpc {
                service,
                method,
                body,
            } => self.grpc(step, service, method, body).await,
            Request::Http { method, path, body } => {
                self.http(step, method, path, body.as_ref()).await
            }
            Request::Stream {
                service,
                method,
                actions,
            } => {
                if service != "Subscriber" || method != "streamingPull" {
                    return Err(format!("unknown stream method {service}.{method}"));
                }
                self.stream(step, actions).await
            }
            Request::Pushes {
                at_least,
                timeout_ms,
            } => Ok(self.pushes(step, *at_least, *timeout_ms).await),
            Request::PushStatus { status } => {
                self.push.set_status(*status);
                Ok(json!({}))
            }
            Request::Sleep { sleep_ms } => {
                sleep(Duration::from_millis(*sleep_ms)).await;
                Ok(json!({}))
            }
        }
    }

    async fn grpc(
        &mut self,
        step: &Step,
        service: &str,
        method: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let mut body = resolve_value(body, &self.bindings(), TimeShape::Object)?;
        wire::to_proto_json(&mut body)?;
        let deadline = self.deadline(step);
        if deviations::publishes_split_by_ordering_key(&self.program.id, &step.id) {
            return self
                .split_publish(step, service, method, body, deadline)
                .await;
        }
        match grpc::call_unary(&self.channel, service, method, body, deadline).await? {
            Ok(mut response) => {
                wire::to_recorded_json(&mut response);
                if SORT_RECEIVED.contains(&step.id.as_str()) {
                    sort_received(&mut response);
                }
                normalize::normalize(&mut response, &mut self.registry, &step.id);
                Ok(json!({ "body": response }))
            }
            Err(status) => Ok(json!({ "error": wire::status_json(&status) })),
        }
    }

    /// A Publish mixing ordering keys: we answer FAILED_PRECONDITION as the
    /// real service does (checked against the deviation table), then publish
    /// the same messages one ordering key per request, in order, so the
    /// program's later steps see the messages the recording expects.
    async fn split_publish(
        &mut self,
        step: &Step,
        service: &str,
        method: &str,
        body: Value,
        deadline: Duration,
    ) -> Result<Value, String> {
        let rejected =
            match grpc::call_unary(&self.channel, service, method, body.clone(), deadline).await? {
                Ok(response) => return Err(format!("mixed-key publish was accepted: {response}")),
                Err(status) => json!({ "error": wire::status_json(&status) }),
            };
        let topic = body["topic"].clone();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let mut ids = Vec::new();
        let mut run: Vec<Value> = Vec::new();
        let key = |m: &Value| m.get("orderingKey").cloned().unwrap_or(Value::Null);
        for message in messages.into_iter().chain(std::iter::once(Value::Null)) {
            let ends_run =
                message.is_null() || run.first().is_some_and(|first| key(first) != key(&message));
            if ends_run && !run.is_empty() {
                let request = json!({ "topic": topic, "messages": std::mem::take(&mut run) });
                match grpc::call_unary(&self.channel, service, method, request, deadline).await? {
                    Ok(response) => ids.extend(
                        response["messageIds"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    ),
                    Err(status) => return Err(format!("single-key publish failed: {status:?}")),
                }
            }
            if !message.is_null() {
                run.push(message);
            }
        }
        let mut published = json!({ "messageIds": ids });
        normalize::normalize(&mut published, &mut self.registry, &step.id);
        Ok(rejected)
    }

    async fn http(
        &mut self,
        step: &Step,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let path = resolve_str(path, &self.bindings())?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| format!("bad HTTP method {method:?}: {e}"))?;
        let url = format!("http://{}{path}", self.addr);
        let mut builder = self.http.request(method, &url).timeout(DEFAULT_DEADLINE);
        match body {
            None => {}
            // A string body is sent as raw text (how malformed JSON is sent), with the
            // content type a fetch() of a string gets.
            Some(Value::String(text)) => {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                    .body(resolve_str(text, &self.bindings())?);
            }
            Some(value) => {
                let value = resolve_value(value, &self.bindings(), TimeShape::Rfc3339)?;
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(serde_json::to_vec(&value).map_err(|e| e.to_string())?);
            }
        }
        let response = builder
            .send()
            .await
            .map_err(|e| format!("HTTP {url}: {e}"))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .unwrap_or(Value::Null);
        let text = response
            .text()
            .await
            .map_err(|e| format!("HTTP {url}: reading the body: {e}"))?;
        Ok(match serde_json::from_str::<Value>(&text) {
            Ok(mut body) => {
                normalize::normalize(&mut body, &mut self.registry, &step.id);
                json!({"status": status, "contentType": content_type, "body": body})
            }
            Err(_) => json!({"status": status, "contentType": content_type, "text": text}),
        })
    }

    async fn stream(&mut self, step: &Step, actions: &[Action]) -> Result<Value, String> {
        let mut session = StreamSession::open(&self.channel);
        let mut received = Received::default();
        for action in actions {
            match action {
                Action::Write(write) => {
                    let mut value = resolve_value(write, &self.bindings(), TimeShape::Object)?;
                    wire::to_proto_json(&mut value)?;
                    let request: StreamingPullRequest = serde_json::from_value(value)
                        .map_err(|e| format!("write does not fit StreamingPullRequest: {e}"))?;
                    session.write(request).await;
                }
                Action::WaitMs(ms) => {
                    sleep(Duration::from_millis(*ms)).await;
                    self.drain_events(&mut session, &mut received, &step.id);
                }
                Action::End => session.end(),
                Action::Cancel => {
                    self.drain_events(&mut session, &mut received, &step.id);
                    if received.status.is_none() {
                        session.cancel();
                        received.status = Some(cancelled_on_client());
                    }
                }
            }
        }
        // Let the stream settle, then take what is left.
        let settle_until = Instant::now() + STREAM_SETTLE;
        while received.status.is_none() {
            match timeout_at(settle_until, session.events.recv()).await {
                Ok(Some(event)) => self.take_event(event, &mut received, &step.id),
                Ok(None) | Err(_) => break,
            }
        }
        self.drain_events(&mut session, &mut received, &step.id);
        if received.status.is_none() {
            session.cancel();
            received.status = Some(cancelled_on_client());
        }
        Ok(json!({
            "received": {"messages": received.messages, "properties": received.properties},
            "status": received.status,
        }))
    }

    fn drain_events(&mut self, session: &mut StreamSession, received: &mut Received, step: &str) {
        while let Ok(event) = session.events.try_recv() {
            self.take_event(event, received, step);
        }
    }

    fn take_event(&mut self, event: StreamEvent, received: &mut Received, step: &str) {
        match event {
            StreamEvent::Status(status) => {
                if received.status.is_none() {
                    received.status = Some(wire::status_json(&status));
                }
            }
            StreamEvent::Response(response) => {
                let mut value = match serde_json::to_value(&*response) {
                    Ok(value) => value,
                    Err(e) => runner_error(format!("serialising a StreamingPullResponse: {e}")),
                };
                wire::to_recorded_json(&mut value);
                normalize::normalize(&mut value, &mut self.registry, step);
                if let Some(Value::Array(messages)) = value.get("receivedMessages") {
                    received.messages.extend(messages.iter().cloned());
                }
                if let Some(properties) = value.get("subscriptionProperties") {
                    received.add_property(properties.clone());
                }
                for key in ["acknowledgeConfirmation", "modifyAckDeadlineConfirmation"] {
                    if let Some(confirmation) = value.get(key) {
                        received.add_property(json!({ key: confirmation }));
                    }
                }
                if let Some(error) = value.get("runnerError") {
                    received.add_property(json!({ "runnerError": error }));
                }
            }
        }
    }

    async fn pushes(&mut self, step: &Step, at_least: usize, timeout_ms: u64) -> Value {
        let window = Duration::from_millis(timeout_ms);
        if at_least == 0 {
            sleep(window).await;
        } else {
            let until = Instant::now() + window;
            loop {
                if self.push.len() >= at_least {
                    sleep(PUSH_STRAGGLERS).await;
                    break;
                }
                if Instant::now() >= until {
                    break;
                }
                sleep(Duration::from_millis(20)).await;
            }
        }
        let pushes = self.push.drain();
        let count = pushes.len();
        // Distinct envelopes, sorted by their JSON text (keys in the recorder's order:
        // method, path, headers, body).
        let mut distinct: BTreeMap<String, Value> = BTreeMap::new();
        for push in &pushes {
            let mut record = push::to_json(push);
            normalize::normalize(&mut record, &mut self.registry, &step.id);
            normalize::replace_origin(&mut record, self.push.origin());
            let text = format!(
                "{{\"method\":{},\"path\":{},\"headers\":{},\"body\":{}}}",
                canonical(&record["method"]),
                canonical(&record["path"]),
                canonical(&record["headers"]),
                canonical(&record["body"]),
            );
            distinct.entry(text).or_insert(record);
        }
        let mut response = json!({
            "atLeastSatisfied": count >= at_least,
            "distinct": distinct.into_values().collect::<Vec<_>>(),
        });
        if at_least == 0 {
            response["count"] = json!(count);
        }
        response
    }
}

/// What a stream step collected.
#[derive(Debug, Default)]
struct Received {
    messages: Vec<Value>,
    properties: Vec<Value>,
    seen: HashSet<String>,
    status: Option<Value>,
}

impl Received {
    /// Adds a property unless its JSON text was seen (the first one is kept).
    fn add_property(&mut self, property: Value) {
        if self.seen.insert(canonical(&property)) {
            self.properties.push(property);
        }
    }
}

/// The status grpc-js reports for a call the client cancelled.
fn cancelled_on_client() -> Value {
    json!({"code": 1, "status": "CANCELLED", "message": "Cancelled on client"})
}

/// Sorts `receivedMessages` numerically by `message.messageId`.
fn sort_received(response: &mut Value) {
    if let Some(Value::Array(messages)) = response.get_mut("receivedMessages") {
        messages.sort_by(|a, b| {
            let id = |m: &Value| {
                m.pointer("/message/messageId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let (a, b) = (id(a), id(b));
            match (a.parse::<u128>(), b.parse::<u128>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(&b),
            }
        });
    }
}
