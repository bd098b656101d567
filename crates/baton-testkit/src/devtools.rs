//! Headless Chromium driven over the DevTools protocol, for the web view's
//! tests that need a person's actions: typing into a form and submitting
//! it, clicking a toggle, going back and forward in the history. (Tests
//! that only read what a page renders use [`crate::chromium::run_chromium`]
//! with `--dump-dom`.)
//!
//! [`Browser::launch`] starts Chromium (the binary [`crate::chromium::chromium`]
//! finds) with a DevTools port, on one page at a URL; [`Page::eval`] runs a
//! JavaScript expression in it and answers its value as JSON;
//! [`Page::wait_for`] polls an expression until it is truthy. The WebSocket
//! the protocol runs on is written here, for loopback only: text frames,
//! masked as a client must, no extensions.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long Chromium may take to open its DevTools port.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A headless Chromium with its DevTools port; killed (and its profile
/// removed) on drop.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Browser {
    /// Starts headless Chromium on `url` (1366x900), its DevTools on a free
    /// loopback port. Panics when it does not start within 30 s.
    pub fn launch(url: &str) -> Self {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let profile = std::env::temp_dir().join(format!(
            "baton-devtools-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(crate::chromium::chromium())
            .args(crate::chromium::HEADLESS_FLAGS)
            .args([
                "--window-size=1366,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        let stderr = child.stderr.take().unwrap();
        let (found, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sent {
                    continue; // keep draining, so Chromium never blocks on it
                }
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1)
                    && let Some(port) = rest.split('/').next().and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = found.send(port);
                    sent = true;
                }
            }
        });
        let port = match port.recv_timeout(START_LIMIT) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("chromium did not open its DevTools port within {START_LIMIT:?}");
            }
        };
        Self {
            child,
            port,
            profile,
        }
    }

    /// The page Chromium opened, connected.
    pub async fn page(&self) -> Page {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let targets: Value =
                match reqwest::get(format!("http://127.0.0.1:{}/json/list", self.port)).await {
                    Ok(response) => response.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
            let ws = targets
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string);
            if let Some(ws) = ws {
                return Page::connect(&ws).await;
            }
            assert!(
                Instant::now() < deadline,
                "chromium opened no page: {targets}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One page of a [`Browser`], over its DevTools WebSocket.
#[derive(Debug)]
pub struct Page {
    stream: TcpStream,
    next_id: u64,
}

impl Page {
    async fn connect(ws_url: &str) -> Self {
        let rest = ws_url
            .strip_prefix("ws://")
            .unwrap_or_else(|| panic!("not a ws:// URL: {ws_url}"));
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = TcpStream::connect(host).await.unwrap();
        let request = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: YmF0b24tZGV2dG9vbHMtaw==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "no WebSocket: {head}");
        Self { stream, next_id: 1 }
    }

    async fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x5a, 0x17, 0xc3, 0x88];
        let mut frame = vec![0x81];
        match payload.len() {
            len if len < 126 => frame.push(0x80 | u8::try_from(len).unwrap()),
            len if len <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend(u16::try_from(len).unwrap().to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend(u64::try_from(len).unwrap().to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next text message (fragments joined; pings answered).
    async fn read_text(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await.unwrap();
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    self.stream.read_exact(&mut ext).await.unwrap();
                    u64::from(u16::from_be_bytes(ext))
                }
                127 => {
                    let mut ext = [0u8; 8];
                    self.stream.read_exact(&mut ext).await.unwrap();
                    u64::from_be_bytes(ext)
                }
                len => u64::from(len),
            };
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).await.unwrap();
            match opcode {
                0x8 => panic!("the DevTools connection was closed"),
                0x9 => {
                    // Ping: answer with a masked pong of the same payload.
                    let mask = [1, 2, 3, 4];
                    let mut pong = vec![0x8a, 0x80 | u8::try_from(payload.len()).unwrap_or(0)];
                    pong.extend(mask);
                    pong.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                    self.stream.write_all(&pong).await.unwrap();
                }
                0xa => {}
                _ => {
                    message.extend(payload);
                    if fin {
                        return String::from_utf8(message).unwrap();
                    }
                }
            }
        }
    }

    /// Sends the DevTools command `method` with `params`; its `result`, or
    /// its `error`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({"id": id, "method": method, "params": params});
        self.send_text(&command.to_string()).await;
        loop {
            let reply: Value = serde_json::from_str(&self.read_text().await).unwrap();
            if reply["id"] == id {
                return match reply.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(reply["result"].clone()),
                };
            }
            // An event: not asked for, left.
        }
    }

    /// Evaluates `expression`; its value, or what went wrong (an exception,
    /// or no document while the page navigates).
    async fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "awaitPromise": true,
                    "returnByValue": true,
                }),
            )
            .await?;
        match result.get("exceptionDetails") {
            Some(exception) => Err(exception.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Evaluates the JavaScript `expression` in the page (awaiting a
    /// promise); its value as JSON. Panics on a JavaScript exception.
    pub async fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// The page as a PNG of its 1366x900 viewport.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await
            .unwrap_or_else(|e| panic!("Page.captureScreenshot: {e}"));
        let data = shot["data"].as_str().unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("the screenshot is not base64: {e}"))
    }

    /// Evaluates `expression` every 50 ms until its value is truthy (not
    /// `false`, `null`, `0` or empty); that value. Panics after `limit`,
    /// showing `debug` (another expression) evaluated then.
    pub async fn wait_for(&mut self, expression: &str, limit: Duration, debug: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            // Failing (the page navigating, an element not there yet)
            // counts as not yet.
            let value = self.try_eval(expression).await.unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let seen = self.try_eval(debug).await;
                panic!("{expression} not true within {limit:?}; {debug} = {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
