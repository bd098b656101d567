//! How the CLI reports a failed command: one line on stderr saying what
//! failed, where (the endpoint, the resource) and what to do next, and an exit
//! status that tells scripts the kind of failure. Never a backtrace or a
//! library's log lines for an expected error.

use std::fmt;
use std::process::ExitCode;

/// What a command was doing, attached as context to its error so the report
/// can name it: `list topics of projects/p` at `http://127.0.0.1:8085`.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// What the command tried, in words (`describe topic orders`).
    pub(crate) action: String,
    /// Where it went (a URL, or `pubsub.googleapis.com`).
    pub(crate) endpoint: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`baton {}` failed at {}", self.action, self.endpoint)
    }
}

/// An HTTP call to the server's REST face answered with an error status.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub(crate) struct HttpFailure {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The server's error message (and any hint added to it).
    pub(crate) message: String,
}

/// The kinds of failure, each with its own exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Bad flags or arguments, or a request the server refused as invalid:
    /// exit 2 (clap's own usage errors exit 2 too).
    Usage,
    /// The resource does not exist: exit 3.
    NotFound,
    /// No or bad credentials, or not allowed: exit 4.
    Permission,
    /// The server could not be reached or did not answer in time: exit 5.
    Unavailable,
    /// Anything else: exit 1.
    Other,
}

impl FailureKind {
    /// The process exit status.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Other => 1,
            Self::Usage => 2,
            Self::NotFound => 3,
            Self::Permission => 4,
            Self::Unavailable => 5,
        }
    }

    fn of_code(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => Self::Usage,
            Code::NotFound => Self::NotFound,
            Code::PermissionDenied | Code::Unauthenticated => Self::Permission,
            Code::Unavailable | Code::DeadlineExceeded => Self::Unavailable,
            _ => Self::Other,
        }
    }
}

/// A failure as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) kind: FailureKind,
    /// The one line, without the `error: ` prefix.
    pub(crate) line: String,
}

/// Why no connection could be made, when a cause of `error` is the I/O
/// error of it (the status keeps the transport's error as its source).
fn unreachable(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cause = error.source();
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            let why = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => Some("connection refused"),
                std::io::ErrorKind::ConnectionReset => Some("connection reset"),
                std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable => Some("no route to it"),
                _ => None,
            };
            if why.is_some() {
                return why;
            }
        }
        cause = error.source();
    }
    None
}

/// Whether `text` looks like a refused or failed TCP connection (for
/// errors whose cause is only text).
fn is_connect_failure(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "connect error",
        "connection refused",
        "tcp connect",
        "error trying to connect",
        "dns error",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Arguments that cannot work, found after clap parsed them (a missing
/// project, say): a usage error, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// The kind of `error` and the most useful words for its cause.
fn classify(error: &anyhow::Error) -> (FailureKind, String) {
    for cause in error.chain() {
        if let Some(usage) = cause.downcast_ref::<UsageError>() {
            return (FailureKind::Usage, usage.0.clone());
        }
        let connect = cause
            .downcast_ref::<baton_client::ConnectError>()
            .or_else(|| match cause.downcast_ref::<baton_client::Error>() {
                Some(baton_client::Error::Connect(connect)) => Some(connect),
                _ => None,
            });
        if let Some(client) = connect {
            return match client {
                baton_client::ConnectError::Credentials { .. }
                | baton_client::ConnectError::KeyFile { .. } => {
                    (FailureKind::Permission, client.to_string())
                }
                baton_client::ConnectError::InvalidEndpoint { .. } => {
                    (FailureKind::Usage, client.to_string())
                }
                baton_client::ConnectError::Transport(_) => {
                    (FailureKind::Unavailable, innermost(cause))
                }
                other => (FailureKind::Other, other.to_string()),
            };
        }
        let status = None
            .or_else(|| cause.downcast_ref::<baton_client::Error>()?.status())
            .or_else(|| cause.downcast_ref::<baton_client::AdminError>()?.status())
            .or_else(|| cause.downcast_ref::<baton_client::PublishError>()?.status())
            .or_else(|| {
                cause
                    .downcast_ref::<baton_client::SubscribeError>()?
                    .status()
            })
            .or_else(|| cause.downcast_ref::<baton_client::AckError>()?.status());
        if let Some(status) = status {
            return rpc(status);
        }
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            return rpc(status);
        }
        if let Some(http) = cause.downcast_ref::<HttpFailure>() {
            let kind = match http.status {
                400 => FailureKind::Usage,
                401 | 403 => FailureKind::Permission,
                404 => FailureKind::NotFound,
                503 | 504 => FailureKind::Unavailable,
                _ => FailureKind::Other,
            };
            return (kind, http.message.clone());
        }
        if let Some(http) = cause.downcast_ref::<reqwest::Error>() {
            if http.is_connect() || http.is_timeout() {
                return (FailureKind::Unavailable, "the server is unreachable".into());
            }
            if let Some(status) = http.status() {
                let kind = match status.as_u16() {
                    400 => FailureKind::Usage,
                    401 | 403 => FailureKind::Permission,
                    404 => FailureKind::NotFound,
                    503 | 504 => FailureKind::Unavailable,
                    _ => FailureKind::Other,
                };
                return (kind, format!("the server answered {status}"));
            }
        }
    }
    let text = innermost(error.as_ref());
    if is_connect_failure(&text) {
        return (FailureKind::Unavailable, "the server is unreachable".into());
    }
    (FailureKind::Other, error.to_string())
}

/// A status's kind and words: the server's message, or what the transport
/// said when it never reached a server, with the causes the status keeps
/// (a TLS failure names the certificate problem).
fn rpc(status: &tonic::Status) -> (FailureKind, String) {
    let kind = FailureKind::of_code(status.code());
    let message = status.message();
    if kind == FailureKind::Unavailable {
        if let Some(why) = unreachable(status) {
            return (kind, format!("the server is unreachable ({why})"));
        }
        if is_connect_failure(message) {
            return (
                kind,
                "the server is unreachable (connection refused)".into(),
            );
        }
    }
    let mut words = if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{}: {message}", code_name(status.code()))
    };
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        let text = error.to_string();
        if !words.contains(&text) {
            words.push_str(": ");
            words.push_str(&text);
        }
        cause = error.source();
    }
    (kind, words)
}

/// gRPC's canonical name of `code` (`NOT_FOUND`), as Google's errors show it.
fn code_name(code: tonic::Code) -> String {
    let words = format!("{code:?}");
    let mut name = String::with_capacity(words.len() + 4);
    for (i, c) in words.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The deepest cause's words (the library's own, without the wrappers).
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// What to do next for a failure of `kind` at `endpoint`.
fn hint(kind: FailureKind, endpoint: Option<&str>) -> &'static str {
    let local = endpoint.is_some_and(|e| !e.contains("googleapis.com"));
    match kind {
        FailureKind::Unavailable if local => {
            "Is the server running? Start one with `baton serve`, or point --endpoint or PUBSUB_EMULATOR_HOST at it."
        }
        FailureKind::Unavailable => "Check the network, then try again.",
        FailureKind::NotFound => {
            "Check the name (`baton topics list`, `baton subscriptions list`) or create it first."
        }
        FailureKind::Permission if local => {
            "Use credentials the server accepts (GOOGLE_APPLICATION_CREDENTIALS with a key file from `baton iam service-accounts keys create`) and a role that allows this (`baton projects add-iam-policy-binding`)."
        }
        FailureKind::Permission => {
            "For a local server set PUBSUB_EMULATOR_HOST; for Google Cloud run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS."
        }
        FailureKind::Usage => "See `--help` for the expected arguments.",
        FailureKind::Other => "Run again with BATON_LOG=debug for details.",
    }
}

/// The report of `error`.
pub(crate) fn report(error: &anyhow::Error) -> Report {
    let attempt = error.downcast_ref::<Attempt>();
    let (kind, cause) = classify(error);
    let what = match attempt {
        Some(attempt) => attempt.to_string(),
        None => error.to_string(),
    };
    let cause = cause.trim_end_matches('.');
    let line = if what == cause {
        format!(
            "{what}. {}",
            hint(kind, attempt.map(|a| a.endpoint.as_str()))
        )
    } else {
        format!(
            "{what}: {cause}. {}",
            hint(kind, attempt.map(|a| a.endpoint.as_str()))
        )
    };
    Report {
        kind,
        line: line.replace('\n', " "),
    }
}

/// Prints `error`'s report on stderr and answers the exit status.
pub(crate) fn exit_with(error: &anyhow::Error) -> ExitCode {
    let report = report(error);
    eprintln!("error: {}", report.line);
    ExitCode::from(report.kind.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> Attempt {
        Attempt {
            action: "topics describe orders".into(),
            endpoint: "http://127.0.0.1:8085".into(),
        }
    }

    #[test]
    fn a_not_found_status_names_the_action_endpoint_and_next_step() {
        let error = anyhow::Error::new(baton_client::AdminError::Rpc(tonic::Status::not_found(
            "Resource not found (resource=orders).",
        )))
        .context(attempt());
        let report = report(&error);
        assert_eq!(report.kind, FailureKind::NotFound);
        assert_eq!(report.kind.exit_code(), 3);
        assert_eq!(
            report.line,
            "`baton topics describe orders` failed at http://127.0.0.1:8085: NOT_FOUND: Resource not found (resource=orders). Check the name (`baton topics list`, `baton subscriptions list`) or create it first."
        );
    }

    #[test]
    fn a_refused_connection_is_unavailable_with_a_hint_to_start_the_server() {
        let error = anyhow::Error::new(baton_client::AdminError::Rpc(tonic::Status::unavailable(
            "tcp connect error",
        )))
        .context(attempt());
        let report = report(&error);
        assert_eq!(report.kind.exit_code(), 5);
        assert!(
            report.line.contains("the server is unreachable")
                && report.line.contains("baton serve"),
            "{}",
            report.line
        );
    }

    /// The cause is found by its type, whatever the status' words say.
    #[test]
    fn a_refused_connection_is_found_in_the_status_source() {
        let mut status = tonic::Status::unavailable("transport error");
        status.set_source(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let error = anyhow::Error::new(baton_client::AdminError::Rpc(status)).context(attempt());
        let report = report(&error);
        assert_eq!(report.kind.exit_code(), 5);
        assert!(
            report
                .line
                .contains("the server is unreachable (connection refused)"),
            "{}",
            report.line
        );
        // The status' other causes are named.
        let mut status = tonic::Status::unavailable("transport error");
        status.set_source(std::sync::Arc::new(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        )));
        let error = anyhow::Error::new(baton_client::AdminError::Rpc(status)).context(attempt());
        assert!(report_line_contains(
            &error,
            "UNAVAILABLE: transport error: invalid peer certificate: UnknownIssuer"
        ));
        // Unavailable for another reason keeps the server's words.
        let error = anyhow::Error::new(baton_client::AdminError::Rpc(tonic::Status::unavailable(
            "the service is draining",
        )))
        .context(attempt());
        assert!(report_line_contains(
            &error,
            "UNAVAILABLE: the service is draining"
        ));
    }

    fn report_line_contains(error: &anyhow::Error, words: &str) -> bool {
        report(error).line.contains(words)
    }

    #[test]
    fn permission_and_usage_have_their_own_statuses() {
        for (status, code) in [
            (
                tonic::Status::permission_denied("User not authorized to perform this action."),
                4,
            ),
            (
                tonic::Status::unauthenticated("Request had invalid authentication credentials."),
                4,
            ),
            (tonic::Status::invalid_argument("Invalid resource name"), 2),
            (tonic::Status::internal("boom"), 1),
        ] {
            let error = anyhow::Error::new(status).context(attempt());
            assert_eq!(report(&error).kind.exit_code(), code);
        }
    }

    #[test]
    fn code_names_are_googles() {
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(
            code_name(tonic::Code::PermissionDenied),
            "PERMISSION_DENIED"
        );
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }
}
