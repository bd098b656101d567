//! The one error type of the crate: why a credential was refused, or why the
//! service-account registry or a key operation failed.

/// Google's message when a request carries no credential at all.
pub const MISSING_CREDENTIAL_MESSAGE: &str = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// Google's message when a request carries a credential that is bad in any
/// way (malformed, expired, wrong signature, unknown key, ...).
pub const INVALID_CREDENTIAL_MESSAGE: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// What went wrong. The verifier variants (`Missing` to `TooLarge`) say
/// precisely why a credential was refused, for logs and tests; callers
/// answer with [`AuthError::wire_message`], which, like Google, tells the
/// client only "missing" or "invalid".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `authorization` header, or one without a bearer credential.
    #[error("no authentication credential")]
    Missing,
    /// The credential is not a well-formed bearer token or JWT.
    #[error("malformed credential: {0}")]
    Malformed(String),
    /// The token's `exp` is not in the future.
    #[error("the credential has expired")]
    Expired,
    /// `iat` lies in the future (beyond the allowed skew) or the token lives
    /// longer than Google allows (one hour).
    #[error("the credential's iat/exp are not a short-lived token in a reasonable timeframe: {0}")]
    BadTimeframe(String),
    /// The signature does not verify with the key the token names.
    #[error("the credential's signature does not verify")]
    BadSignature,
    /// The token names a key (`kid`) that no enabled key of an enabled
    /// account (nor Baton's signing key) has.
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// The `aud` (or, lacking it, the `scope`) is not one this API accepts.
    #[error("wrong audience or scope: {0}")]
    WrongAudience(String),
    /// The `iss`/`sub` claims do not name the account that owns the key, or
    /// an access token was not issued by this Baton.
    #[error("wrong issuer or subject: {0}")]
    WrongIssuer(String),
    /// Any algorithm other than RS256 (`none`, HS256, ES256, ...).
    #[error("unsupported JWT algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The account the credential belongs to was deleted or disabled, or its
    /// key was.
    #[error("the service account is disabled or deleted: {0}")]
    AccountDisabledOrDeleted(String),
    /// The `authorization` header is larger than 16 KiB.
    #[error("the authorization header is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A service-account id that Google would refuse; the text is Google's.
    #[error("{0}")]
    InvalidAccountId(String),
    /// The account already exists.
    #[error("service account {0} already exists")]
    AlreadyExists(String),
    /// No such account or key.
    #[error("{0} not found")]
    NotFound(String),
    /// Reading or writing the state directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and to which file.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A persisted file could not be parsed.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Generating, encoding or using a key failed.
    #[error("key operation failed: {0}")]
    Crypto(String),
}

impl AuthError {
    /// Whether this error means the request is unauthenticated (HTTP 401,
    /// gRPC `UNAUTHENTICATED`), rather than a registry or internal failure.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthError::Missing
                | AuthError::Malformed(_)
                | AuthError::Expired
                | AuthError::BadTimeframe(_)
                | AuthError::BadSignature
                | AuthError::UnknownKey(_)
                | AuthError::WrongAudience(_)
                | AuthError::WrongIssuer(_)
                | AuthError::UnsupportedAlgorithm(_)
                | AuthError::AccountDisabledOrDeleted(_)
                | AuthError::TooLarge { .. }
        )
    }

    /// The message Google's front end sends for this refusal, word for word:
    /// one for an absent credential, one for a bad one (the client learns
    /// nothing about *why*). For errors that are not refusals of a credential
    /// ([`AuthError::is_unauthenticated`] is false) it is a generic internal
    /// error message; those are meant to be mapped by the caller.
    pub fn wire_message(&self) -> &'static str {
        match self {
            AuthError::Missing => MISSING_CREDENTIAL_MESSAGE,
            e if e.is_unauthenticated() => INVALID_CREDENTIAL_MESSAGE,
            _ => "Internal error encountered.",
        }
    }
}

/// A refused token request, serialised as Google's token endpoint answers
/// it (HTTP 400): `{"error": "...", "error_description": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{error}: {error_description}")]
pub struct TokenEndpointError {
    /// `invalid_grant`, `unsupported_grant_type`, `invalid_request`,
    /// `invalid_scope`, `invalid_client` or (Security Token Service)
    /// `invalid_target`.
    pub error: String,
    /// Google's human-readable explanation.
    pub error_description: String,
}

impl TokenEndpointError {
    pub(crate) fn new(error: &str, description: impl Into<String>) -> Self {
        TokenEndpointError {
            error: error.to_string(),
            error_description: description.into(),
        }
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    /// The HTTP status Google's endpoints answer this refusal with: 401 for
    /// a client that failed to authenticate (`invalid_client`, RFC 6749
    /// section 5.2), 400 for everything else.
    pub fn http_status(&self) -> u16 {
        if self.error == "invalid_client" {
            401
        } else {
            400
        }
    }
}

/// An `Io` error with its context.
pub(crate) fn io_error(context: impl Into<String>, source: std::io::Error) -> AuthError {
    AuthError::Io {
        context: context.into(),
        source,
    }
}
