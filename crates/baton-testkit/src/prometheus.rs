//! A real Prometheus server (Debian's `prometheus`) scraping a Baton server's
//! `/metrics`, for the tests that hold the metrics to what Prometheus itself
//! reads: started on a free port with a one-second scrape of one target, and
//! asked through its HTTP query API.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::Error;

/// How long Prometheus may take to answer `/-/ready`.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// A Prometheus server scraping one target every second.
///
/// It runs under a small `sh` watchdog that kills it as soon as the
/// watchdog's stdin closes, so it never outlives the test process, even one
/// that is killed; drop stops it at once.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The `prometheus` binary, or an error saying how to get it.
fn binary() -> Result<String, Error> {
    let found = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    if path.is_empty() {
        return Err(Error::Script(
            "no `prometheus` on PATH: install Debian's package (`apt-get install prometheus`), \
             as scripts/test does"
                .into(),
        ));
    }
    Ok(path)
}

impl Prometheus {
    /// Starts Prometheus scraping `http://{target}/metrics` every second and
    /// waits until it is ready.
    pub async fn start(target: SocketAddr) -> Result<Self, Error> {
        let binary = binary()?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: baton\n    scrape_interval: 1s\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        // The watchdog: Prometheus in the background, killed when stdin
        // closes (this process ended, or drop).
        let script = format!(
            "\"$0\" --config.file={config} --storage.tsdb.path={data} \
             --web.listen-address={addr} --log.level=warn & pid=$!; \
             cat >/dev/null; kill $pid 2>/dev/null; wait $pid",
            config = config.display(),
            data = dir.path().join("data").display(),
        );
        let mut child = Command::new("sh")
            .args(["-c", &script, &binary])
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let stdin = child.stdin.take();
        let mut prometheus = Self {
            child,
            stdin,
            addr,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| Error::Script(e.to_string()))?,
            _dir: dir,
        };
        prometheus.wait_ready().await?;
        Ok(prometheus)
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_LIMIT;
        let url = format!("http://{}/-/ready", self.addr);
        loop {
            if let Ok(response) = self.http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Script(format!(
                    "prometheus exited ({status}): {}",
                    self.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Script(format!(
                    "prometheus not ready within {} s: {}",
                    READY_LIMIT.as_secs(),
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An instant query: each series' labels and value.
    pub async fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>, Error> {
        let answer: Value = self
            .http
            .get(format!("http://{}/api/v1/query", self.addr))
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| Error::Script(format!("querying prometheus: {e}")))?
            .json()
            .await
            .map_err(|e| Error::Script(format!("prometheus answer: {e}")))?;
        if answer["status"] != "success" {
            return Err(Error::Script(format!(
                "prometheus refused {promql}: {answer}"
            )));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|series| {
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (series["metric"].clone(), value)
            })
            .collect())
    }

    /// The value of the one series `promql` answers, once it equals
    /// `expected`; waits (up to `limit`) for the scrapes to catch up and
    /// fails with the last answer otherwise.
    pub async fn wait_for_value(
        &self,
        promql: &str,
        expected: f64,
        limit: Duration,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + limit;
        loop {
            let answer = self.query(promql).await?;
            if let [(_, value)] = answer.as_slice()
                && (*value - expected).abs() < f64::EPSILON
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Script(format!(
                    "{promql}: wanted {expected}, Prometheus answers {answer:?} after {} s; its log: {}",
                    limit.as_secs(),
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Closing stdin makes the watchdog kill Prometheus.
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.wait();
    }
}
