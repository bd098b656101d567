//! The credential verifier, on the hot path of every Pub/Sub call when
//! authentication is on: the operator token, Baton's own access tokens and
//! the self-signed service-account JWTs Google's client libraries send; the
//! OAuth 2.0 JWT-bearer token exchange (RFC 7523) as Google's token endpoint
//! answers it; and the access and ID tokens Baton mints.
//!
//! Time is always passed in (`now`), never read here, so the server can run
//! on a virtual clock and tests are exact.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use crate::accounts::ServiceAccounts;
use crate::error::AuthError;
pub use crate::error::TokenEndpointError;
use crate::federation::{
    ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, INVALID_TARGET_DESCRIPTION, JWT_TOKEN_TYPE, StsTokenResponse,
    TOKEN_EXCHANGE_GRANT_TYPE, WorkloadIdentityProvider,
};
use crate::jwt::Jwt;
use crate::keys::random_hex;
use crate::signing::SigningKey;
use crate::users::{UserGrant, UserGrants};

/// The largest `authorization` header (and token request body) looked at;
/// anything larger is refused before any parsing.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// The audience of self-signed JWTs for the Pub/Sub API (also accepted
/// without the trailing slash).
pub const PUBSUB_AUDIENCE: &str = "https://pubsub.googleapis.com/";

/// Google's token endpoint, which some libraries hard-code as the audience
/// of their assertions; accepted besides the key file's `token_uri`.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Scopes that grant access to Pub/Sub.
pub const PUBSUB_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/pubsub",
];

/// How far in the future an `iat` may lie (clock skew between client and
/// Baton), in seconds.
pub const CLOCK_SKEW_SECONDS: u64 = 300;

/// The longest lifetime (`exp - iat`) of a self-signed JWT or assertion, in
/// seconds: Google's one hour, plus a minute of slack. Google's Rust
/// library (`google-cloud-auth`) backdates `iat` and extends `exp` by 10 s
/// each (a 3620 s lifetime), and Google accepts those.
pub const MAX_JWT_LIFETIME_SECONDS: u64 = 3660;

/// The lifetime of the access and ID tokens Baton mints, in seconds.
pub const TOKEN_LIFETIME_SECONDS: u64 = 3600;

/// The IAM member of the operator.
pub const OPERATOR_MEMBER: &str = "user:operator@baton.local";

/// The `grant_type` of the JWT-bearer grant.
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The `grant_type` of the refresh-token grant (authorized users).
pub const REFRESH_TOKEN_GRANT_TYPE: &str = "refresh_token";

/// The longest lifetime of an access token `generateAccessToken` mints, in
/// seconds (Google's default limit, without the organisation policy that
/// extends it to 12 hours).
pub const MAX_GENERATED_TOKEN_LIFETIME_SECONDS: u64 = 3600;

/// The `kind` claim of a user's access token.
const USER_KIND: &str = "user";
/// The `kind` claim of a federated access token.
const FEDERATED_KIND: &str = "federated";

/// The `token_use` claim of Baton's access tokens; ID tokens have none, so
/// neither kind passes for the other.
const ACCESS_TOKEN_USE: &str = "access";

/// How many verified tokens the cache keeps.
pub const CACHE_CAPACITY: usize = 10_000;

/// Google's description of an assertion whose `iat`/`exp` are off.
const BAD_TIMEFRAME_DESCRIPTION: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";

/// Who a verified credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A service account, by email.
    ServiceAccount {
        /// The account's email.
        email: String,
    },
    /// Baton's bootstrap administrator, holder of the operator token.
    Operator,
    /// A person, through an authorized-user credential (a refresh token
    /// Baton issued), by email.
    User {
        /// The user's email.
        email: String,
    },
    /// A workload identity federated through a pool provider: the
    /// `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/subject/SUB`
    /// member.
    Federated {
        /// The principal identifier, as IAM bindings name it.
        principal: String,
    },
}

impl Principal {
    /// The principal as an IAM policy member: `serviceAccount:EMAIL`, or
    /// `user:operator@baton.local` for the operator.
    pub fn member(&self) -> String {
        match self {
            Principal::ServiceAccount { email } => format!("serviceAccount:{email}"),
            Principal::Operator => OPERATOR_MEMBER.to_string(),
            Principal::User { email } => format!("user:{email}"),
            Principal::Federated { principal } => principal.clone(),
        }
    }
}

/// A successful token response, the JSON Google's token endpoint (and the
/// metadata server) answers: `{"access_token","expires_in","token_type"}`,
/// plus the granted `scope` for a refresh-token grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// A Baton access token.
    pub access_token: String,
    /// Seconds until it expires (3600).
    pub expires_in: u64,
    /// Always `"Bearer"`.
    pub token_type: String,
    /// The scopes granted (space-separated); only refresh-token grants
    /// answer it, as Google's endpoint does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Claims of Baton's access tokens.
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    scope: String,
    iat: u64,
    exp: u64,
    token_use: &'a str,
    jti: String,
    /// `user` or `federated`; absent for a service account.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    /// A user's token: the grant that bought it (revoking it stops the
    /// token).
    #[serde(skip_serializing_if = "Option::is_none")]
    grant: Option<&'a str>,
}

/// Claims of the ID tokens Baton mints.
#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    azp: &'a str,
    sub: &'a str,
    email: &'a str,
    email_verified: bool,
    iat: u64,
    exp: u64,
}

/// A verified token in the cache.
#[derive(Debug, Clone)]
struct Cached {
    principal: Principal,
    /// The token's `exp`, Unix seconds.
    exp: u64,
    /// The registry's generation when verification started.
    generation: u64,
}

/// Verifies credentials and mints tokens. Thread-safe; share it in an `Arc`.
pub struct Authenticator {
    signing: Arc<SigningKey>,
    accounts: ServiceAccounts,
    /// Authorized users' refresh-token grants.
    grants: UserGrants,
    /// Workload identity pool providers the token exchange trusts.
    providers: Vec<WorkloadIdentityProvider>,
    issuer: String,
    operator_token: Option<String>,
    /// Verified tokens, by the token itself: a lookup costs one SipHash
    /// pass and a comparison (a SHA-256 of a 1 KB token cost more than the
    /// rest of an RPC's authorization), and equal keys are equal tokens, so
    /// no collision can stand in for a verified token. Only verified tokens
    /// (at most 16 KiB each) are kept.
    cache: RwLock<HashMap<Box<[u8]>, Cached>>,
}

/// Never prints the operator token.
impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("signing", &self.signing)
            .field("issuer", &self.issuer)
            .field(
                "operator_token",
                &self.operator_token.as_ref().map(|_| "<set>"),
            )
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch (0 before it).
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl Authenticator {
    /// An authenticator whose tokens are signed by `signing` and name
    /// `issuer` (Baton's public base URL, e.g. `https://127.0.0.1:8085`, no
    /// trailing slash), accepting the keys of `accounts` and, if set, the
    /// operator token.
    pub fn new(
        signing: Arc<SigningKey>,
        accounts: ServiceAccounts,
        issuer: String,
        operator_token: Option<String>,
    ) -> Self {
        Authenticator {
            signing,
            accounts,
            grants: UserGrants::in_memory(),
            providers: Vec::new(),
            issuer: issuer.trim_end_matches('/').to_string(),
            operator_token,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Redeems refresh tokens against `grants` (by default an empty
    /// in-memory store).
    pub fn with_user_grants(mut self, grants: UserGrants) -> Self {
        self.grants = grants;
        self
    }

    /// Trusts `providers` in the token exchange (by default none).
    pub fn with_workload_identity_providers(
        mut self,
        providers: Vec<WorkloadIdentityProvider>,
    ) -> Self {
        self.providers = providers;
        self
    }

    /// The authorized users' grants.
    pub fn user_grants(&self) -> &UserGrants {
        &self.grants
    }

    /// The workload identity pool providers trusted.
    pub fn workload_identity_providers(&self) -> &[WorkloadIdentityProvider] {
        &self.providers
    }

    /// A counter that changes whenever an account, key or user grant
    /// changes: cached verifications older than it are stale.
    fn generation(&self) -> u64 {
        self.accounts
            .generation()
            .wrapping_add(self.grants.generation())
    }

    /// The issuer (Baton's public base URL).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing key.
    pub fn signing_key(&self) -> &Arc<SigningKey> {
        &self.signing
    }

    /// The service-account registry.
    pub fn accounts(&self) -> &ServiceAccounts {
        &self.accounts
    }

    /// Verifies the raw value of an `authorization` header, which may be
    /// absent, garbage, non-UTF-8 or huge (over 16 KiB is refused before any
    /// parsing). Accepts `Bearer` with the operator token, a Baton access
    /// token, or a service account's self-signed JWT (RS256, `kid` = its key
    /// id, `iss` = `sub` = its email, `aud` the Pub/Sub API or, without
    /// `aud`, a `scope` granting Pub/Sub; `exp` in the future, `iat` at most
    /// 300 s ahead, lifetime at most an hour). Verified tokens are cached
    /// until their `exp` or the next change of the registry.
    pub fn verify_bearer(
        &self,
        authorization: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        if header.len() > MAX_CREDENTIAL_BYTES {
            return Err(AuthError::TooLarge {
                limit: MAX_CREDENTIAL_BYTES,
            });
        }
        let header = header.trim_ascii();
        if header.is_empty() {
            return Err(AuthError::Missing);
        }
        let token = bearer_token(header)?;
        if let Some(operator) = &self.operator_token
            && !operator.is_empty()
            && bool::from(operator.as_bytes().ct_eq(token))
        {
            return Ok(Principal::Operator);
        }
        let now = unix_seconds(now);
        // Read before verifying: a change during verification leaves an
        // entry that is already stale.
        let generation = self.generation();
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            && hit.generation == generation
            && now < hit.exp
        {
            return Ok(hit.principal.clone());
        }
        let key: Box<[u8]> = token.into();
        let token = std::str::from_utf8(token)
            .map_err(|_| AuthError::Malformed("the token is not UTF-8".to_string()))?;
        let jwt = Jwt::parse(token)?;
        let (principal, exp) = if jwt.kid.as_deref() == Some(self.signing.key_id()) {
            self.verify_access_token(&jwt, now)?
        } else {
            self.verify_self_signed(&jwt, now)?
        };
        self.remember(
            key,
            Cached {
                principal: principal.clone(),
                exp,
                generation,
            },
        );
        Ok(principal)
    }

    /// A Baton access token: our key, our issuer, `token_use: access`, not
    /// expired, its account still active.
    fn verify_access_token(&self, jwt: &Jwt<'_>, now: u64) -> Result<(Principal, u64), AuthError> {
        jwt.verify(self.signing.decoding_key())?;
        if jwt.string("iss") != Some(self.issuer.as_str()) {
            return Err(AuthError::WrongIssuer(
                "not issued by this Baton".to_string(),
            ));
        }
        if jwt.string("token_use") != Some(ACCESS_TOKEN_USE) {
            return Err(AuthError::Malformed("not an access token".to_string()));
        }
        let exp = jwt
            .seconds("exp")
            .ok_or_else(|| AuthError::Malformed("no exp".to_string()))?;
        if exp <= now {
            return Err(AuthError::Expired);
        }
        let subject = jwt
            .string("sub")
            .ok_or_else(|| AuthError::Malformed("no sub".to_string()))?;
        let principal = match jwt.string("kind") {
            None => {
                if !self.accounts.is_active(subject) {
                    return Err(AuthError::AccountDisabledOrDeleted(subject.to_string()));
                }
                Principal::ServiceAccount {
                    email: subject.to_string(),
                }
            }
            Some(USER_KIND) => {
                let grant = jwt.string("grant").unwrap_or_default();
                if !self.grants.is_active(grant) {
                    return Err(AuthError::AccountDisabledOrDeleted(format!(
                        "user {subject}: the grant was revoked"
                    )));
                }
                Principal::User {
                    email: subject.to_string(),
                }
            }
            Some(FEDERATED_KIND) => Principal::Federated {
                principal: subject.to_string(),
            },
            Some(other) => {
                return Err(AuthError::Malformed(format!(
                    "unknown token kind {other:?}"
                )));
            }
        };
        Ok((principal, exp))
    }

    /// A JWT a service account signed itself, for the Pub/Sub API.
    fn verify_self_signed(&self, jwt: &Jwt<'_>, now: u64) -> Result<(Principal, u64), AuthError> {
        let email = self.verify_account_signature(jwt)?;
        for claim in ["iss", "sub"] {
            if !jwt
                .string(claim)
                .is_some_and(|v| v.eq_ignore_ascii_case(&email))
            {
                return Err(AuthError::WrongIssuer(format!(
                    "{claim} is not the key's account {email}"
                )));
            }
        }
        match jwt.audiences() {
            Some(audiences) => {
                if !audiences
                    .iter()
                    .any(|a| a.trim_end_matches('/') == PUBSUB_AUDIENCE.trim_end_matches('/'))
                {
                    return Err(AuthError::WrongAudience(format!("{audiences:?}")));
                }
            }
            None => {
                let scope = jwt.string("scope").unwrap_or_default();
                if !scope.split(' ').any(|s| PUBSUB_SCOPES.contains(&s)) {
                    return Err(AuthError::WrongAudience(format!(
                        "no aud, and scope {scope:?} grants no Pub/Sub access"
                    )));
                }
            }
        }
        let exp = check_timeframe(jwt, now)?;
        Ok((Principal::ServiceAccount { email }, exp))
    }

    /// Checks the signature of a JWT signed by a service-account key (the
    /// one named by `kid`, or, without one, any key of the `iss` account)
    /// and returns the key's account.
    fn verify_account_signature(&self, jwt: &Jwt<'_>) -> Result<String, AuthError> {
        match &jwt.kid {
            Some(kid) => {
                let (email, key) = self
                    .accounts
                    .public_key(kid)
                    .ok_or_else(|| AuthError::UnknownKey(kid.clone()))?;
                jwt.verify(&key)?;
                Ok(email)
            }
            None => {
                let iss = jwt
                    .string("iss")
                    .ok_or_else(|| AuthError::Malformed("no kid and no iss".to_string()))?;
                let keys = self.accounts.public_keys_of(iss);
                if keys.is_empty() {
                    return Err(AuthError::UnknownKey(String::new()));
                }
                if keys.iter().any(|(_, key)| jwt.verify(key).is_ok()) {
                    // The canonical spelling of the email.
                    self.accounts
                        .get(iss)
                        .map(|a| a.email)
                        .ok_or_else(|| AuthError::AccountDisabledOrDeleted(iss.to_string()))
                } else {
                    Err(AuthError::BadSignature)
                }
            }
        }
    }

    fn remember(&self, token: Box<[u8]>, entry: Cached) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_CAPACITY && !cache.contains_key(&token) {
            // Evict an arbitrary entry (stale ones first would need a scan).
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(token, entry);
    }

    /// How many verified tokens the cache holds (for tests and metrics).
    pub fn cached_tokens(&self) -> usize {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The OAuth 2.0 JWT-bearer grant (RFC 7523), as Google's token endpoint
    /// answers it: `form_body` is the `application/x-www-form-urlencoded`
    /// request (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`);
    /// the assertion is signed by a service-account key (`kid`, or any key
    /// of the `iss` account), has `iss` = that account, `aud` = `token_uri`
    /// (or Google's own token endpoint), a `scope`, and `iat`/`exp` as for
    /// self-signed JWTs. The answer carries a Baton access token.
    pub fn exchange_jwt_bearer(
        &self,
        form_body: &[u8],
        token_uri: &str,
        now: SystemTime,
    ) -> Result<TokenResponse, TokenEndpointError> {
        if form_body.len() > MAX_CREDENTIAL_BYTES {
            return Err(TokenEndpointError::new(
                "invalid_request",
                "The request body is too large.",
            ));
        }
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(form_body)
            .map_err(|_| TokenEndpointError::new("invalid_request", "Invalid request body."))?;
        self.exchange_jwt_bearer_fields(&form, token_uri, now)
    }

    /// The token endpoint (`POST /token`): a request as a form or as JSON
    /// (Google's endpoint takes both), dispatched on its `grant_type`: the
    /// JWT-bearer grant of service-account key files, or the refresh-token
    /// grant of authorized users. `basic` is the client id and secret of an
    /// HTTP Basic `authorization` header (RFC 6749 section 2.3.1), used
    /// when the body carries none.
    pub fn token_endpoint(
        &self,
        body: &[u8],
        basic: Option<(String, String)>,
        token_uri: &str,
        now: SystemTime,
    ) -> Result<TokenResponse, TokenEndpointError> {
        let mut fields = request_fields(body)?;
        if let Some((id, secret)) = basic
            && field(&fields, "client_id").is_none()
        {
            fields.push(("client_id".to_string(), id));
            fields.push(("client_secret".to_string(), secret));
        }
        match field(&fields, "grant_type") {
            Some(REFRESH_TOKEN_GRANT_TYPE) => self.exchange_refresh_token(&fields, now),
            _ => self.exchange_jwt_bearer_fields(&fields, token_uri, now),
        }
    }

    /// The refresh-token grant (RFC 6749 section 6) for an authorized
    /// user's credential: `refresh_token`, `client_id`, `client_secret`,
    /// optionally `scope` (at most the grant's; by default all of them).
    pub fn exchange_refresh_token(
        &self,
        fields: &[(String, String)],
        now: SystemTime,
    ) -> Result<TokenResponse, TokenEndpointError> {
        let required = |name: &str| {
            field(fields, name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    TokenEndpointError::invalid_request(format!(
                        "Missing required parameter: {name}"
                    ))
                })
        };
        let refresh_token = required("refresh_token")?;
        let client_id = field(fields, "client_id").ok_or_else(|| {
            TokenEndpointError::new(
                "invalid_request",
                "Could not determine client ID from request.",
            )
        })?;
        let client_secret = field(fields, "client_secret").unwrap_or_default();
        let grant = self
            .grants
            .redeem(refresh_token, client_id, client_secret)?;
        let asked = scopes_of(field(fields, "scope").unwrap_or_default());
        let scopes = if asked.is_empty() {
            grant.scopes.clone()
        } else if grant.covers(&asked) {
            asked
        } else {
            return Err(TokenEndpointError::new(
                "invalid_scope",
                "Some requested scopes were invalid. The requested scopes must be a subset of the grant's.",
            ));
        };
        let mut response = self
            .mint_user_token(&grant, &scopes, now)
            .map_err(|_| TokenEndpointError::invalid_grant("Could not issue a token."))?;
        response.scope = Some(scopes.join(" "));
        Ok(response)
    }

    /// The Security Token Service's token exchange (RFC 8693, Google's
    /// `POST https://sts.googleapis.com/v1/token`) for Workload Identity
    /// Federation: `grant_type` token-exchange, `audience` a trusted pool
    /// provider, `subject_token` an OIDC token its issuer signed
    /// (`subject_token_type` jwt or id_token), `requested_token_type`
    /// access_token, `scope`. Answers a Baton access token for the
    /// federated principal.
    pub fn exchange_sts(
        &self,
        body: &[u8],
        now: SystemTime,
    ) -> Result<StsTokenResponse, TokenEndpointError> {
        let fields = request_fields(body)?;
        match field(&fields, "grant_type") {
            Some(TOKEN_EXCHANGE_GRANT_TYPE) => {}
            None => {
                return Err(TokenEndpointError::invalid_request(
                    "Missing required parameter: grant_type",
                ));
            }
            Some(other) => {
                return Err(TokenEndpointError::new(
                    "unsupported_grant_type",
                    format!("Invalid value for \"grant_type\": {other}"),
                ));
            }
        }
        match field(&fields, "requested_token_type") {
            Some(ACCESS_TOKEN_TYPE) => {}
            other => {
                return Err(TokenEndpointError::invalid_request(format!(
                    "Invalid value for \"requested_token_type\": {}. Expected {ACCESS_TOKEN_TYPE}.",
                    other.unwrap_or_default()
                )));
            }
        }
        match field(&fields, "subject_token_type") {
            Some(JWT_TOKEN_TYPE | ID_TOKEN_TYPE) => {}
            other => {
                return Err(TokenEndpointError::invalid_request(format!(
                    "Invalid value for \"subject_token_type\": {}. Expected {JWT_TOKEN_TYPE} or {ID_TOKEN_TYPE}.",
                    other.unwrap_or_default()
                )));
            }
        }
        let audience = field(&fields, "audience")
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                TokenEndpointError::invalid_request("Missing required parameter: audience")
            })?;
        let subject_token = field(&fields, "subject_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TokenEndpointError::invalid_request("Missing required parameter: subject_token")
            })?;
        let provider = self
            .providers
            .iter()
            .find(|p| p.answers_to(audience))
            .ok_or_else(|| TokenEndpointError::new("invalid_target", INVALID_TARGET_DESCRIPTION))?;
        let subject = provider.verify_subject_token(subject_token, unix_seconds(now))?;
        let mut scopes = scopes_of(field(&fields, "scope").unwrap_or_default());
        if scopes.is_empty() {
            scopes.push(PUBSUB_SCOPES[0].to_string());
        }
        let principal = provider.principal(&subject);
        let iat = unix_seconds(now);
        let access_token = self
            .signing
            .sign(&AccessClaims {
                iss: &self.issuer,
                sub: &principal,
                email: None,
                scope: scopes.join(" "),
                iat,
                exp: iat + TOKEN_LIFETIME_SECONDS,
                token_use: ACCESS_TOKEN_USE,
                jti: random_hex(16),
                kind: Some(FEDERATED_KIND),
                grant: None,
            })
            .map_err(|_| TokenEndpointError::invalid_grant("Could not issue a token."))?;
        Ok(StsTokenResponse {
            access_token,
            issued_token_type: ACCESS_TOKEN_TYPE.to_string(),
            token_type: "Bearer".to_string(),
            expires_in: TOKEN_LIFETIME_SECONDS,
        })
    }

    /// The JWT-bearer grant of [`Self::exchange_jwt_bearer`], its request
    /// already split into fields.
    fn exchange_jwt_bearer_fields(
        &self,
        form: &[(String, String)],
        token_uri: &str,
        now: SystemTime,
    ) -> Result<TokenResponse, TokenEndpointError> {
        let field = |name: &str| field(form, name);
        match field("grant_type") {
            None => {
                return Err(TokenEndpointError::new(
                    "invalid_request",
                    "Missing required parameter: grant_type",
                ));
            }
            Some(JWT_BEARER_GRANT_TYPE) => {}
            Some(other) => {
                return Err(TokenEndpointError::new(
                    "unsupported_grant_type",
                    format!("Invalid grant_type: {other}"),
                ));
            }
        }
        let assertion = field("assertion").ok_or_else(|| {
            TokenEndpointError::new("invalid_request", "Missing required parameter: assertion")
        })?;
        let jwt = Jwt::parse(assertion).map_err(|e| match e {
            AuthError::UnsupportedAlgorithm(_) | AuthError::BadSignature => {
                TokenEndpointError::invalid_grant("Invalid JWT Signature.")
            }
            _ => TokenEndpointError::invalid_grant("Invalid JWT."),
        })?;
        let email = self.verify_account_signature(&jwt).map_err(|e| match e {
            AuthError::BadSignature => TokenEndpointError::invalid_grant("Invalid JWT Signature."),
            _ => TokenEndpointError::invalid_grant("Invalid grant: account not found"),
        })?;
        if !jwt
            .string("iss")
            .is_some_and(|iss| iss.eq_ignore_ascii_case(&email))
        {
            return Err(TokenEndpointError::invalid_grant("Invalid JWT Signature."));
        }
        let audience_ok = jwt.audiences().is_some_and(|audiences| {
            audiences
                .iter()
                .any(|a| *a == token_uri || *a == GOOGLE_TOKEN_URI)
        });
        if !audience_ok {
            return Err(TokenEndpointError::invalid_grant(format!(
                "Invalid JWT: Failed audience check. The right audience is {token_uri}"
            )));
        }
        let now_seconds = unix_seconds(now);
        check_timeframe(&jwt, now_seconds)
            .map_err(|_| TokenEndpointError::invalid_grant(BAD_TIMEFRAME_DESCRIPTION))?;
        let scopes: Vec<String> = jwt
            .string("scope")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if scopes.is_empty() {
            return Err(TokenEndpointError::new(
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            ));
        }
        self.mint_access_token(&email, &scopes, now)
            .map_err(|_| TokenEndpointError::invalid_grant("Invalid grant: account not found"))
    }

    /// Mints a Baton access token (one hour) for an active account: what the
    /// token endpoint and the metadata server's token endpoint answer.
    pub fn mint_access_token(
        &self,
        email: &str,
        scopes: &[String],
        now: SystemTime,
    ) -> Result<TokenResponse, AuthError> {
        self.mint_access_token_for(email, scopes, now, TOKEN_LIFETIME_SECONDS)
    }

    /// Mints a Baton access token for an active account, living
    /// `lifetime_seconds`: what IAM Credentials' `generateAccessToken`
    /// answers (the caller's right to it is checked by the server).
    pub fn mint_access_token_for(
        &self,
        email: &str,
        scopes: &[String],
        now: SystemTime,
        lifetime_seconds: u64,
    ) -> Result<TokenResponse, AuthError> {
        let account = self.active_account(email)?;
        let iat = unix_seconds(now);
        let access_token = self.signing.sign(&AccessClaims {
            iss: &self.issuer,
            sub: &account.email,
            email: Some(&account.email),
            scope: scopes.join(" "),
            iat,
            exp: iat + lifetime_seconds,
            token_use: ACCESS_TOKEN_USE,
            jti: random_hex(16),
            kind: None,
            grant: None,
        })?;
        Ok(TokenResponse {
            access_token,
            expires_in: lifetime_seconds,
            token_type: "Bearer".to_string(),
            scope: None,
        })
    }

    /// An authorized user's access token (one hour), bought with `grant`.
    fn mint_user_token(
        &self,
        grant: &UserGrant,
        scopes: &[String],
        now: SystemTime,
    ) -> Result<TokenResponse, AuthError> {
        let iat = unix_seconds(now);
        let access_token = self.signing.sign(&AccessClaims {
            iss: &self.issuer,
            sub: &grant.account,
            email: Some(&grant.account),
            scope: scopes.join(" "),
            iat,
            exp: iat + TOKEN_LIFETIME_SECONDS,
            token_use: ACCESS_TOKEN_USE,
            jti: random_hex(16),
            kind: Some(USER_KIND),
            grant: Some(&grant.id),
        })?;
        Ok(TokenResponse {
            access_token,
            expires_in: TOKEN_LIFETIME_SECONDS,
            token_type: "Bearer".to_string(),
            scope: None,
        })
    }

    /// Mints an OIDC ID token for an active account, as Google signs them
    /// for push subscriptions and the metadata server's identity endpoint:
    /// `iss` (the issuer), `aud`, `azp` and `sub` (the account's unique id),
    /// `email`, `email_verified: true`, `iat`, `exp` (`iat` + one hour).
    /// Verifiable with [`SigningKey::jwks`] or [`SigningKey::x509_certs`].
    pub fn mint_id_token(
        &self,
        email: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<String, AuthError> {
        let account = self.active_account(email)?;
        let iat = unix_seconds(now);
        self.signing.sign(&IdClaims {
            iss: &self.issuer,
            aud: audience,
            azp: &account.unique_id,
            sub: &account.unique_id,
            email: &account.email,
            email_verified: true,
            iat,
            exp: iat + TOKEN_LIFETIME_SECONDS,
        })
    }

    fn active_account(&self, email: &str) -> Result<crate::accounts::ServiceAccount, AuthError> {
        let account = self
            .accounts
            .get(email)
            .ok_or_else(|| AuthError::NotFound(format!("Service account {email}")))?;
        if account.disabled {
            return Err(AuthError::AccountDisabledOrDeleted(account.email));
        }
        Ok(account)
    }

    /// The OpenID Connect discovery document
    /// (`/.well-known/openid-configuration`).
    pub fn openid_configuration(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/oauth2/v3/certs", self.issuer),
            "token_endpoint": format!("{}/token", self.issuer),
            "grant_types_supported": [JWT_BEARER_GRANT_TYPE, REFRESH_TOKEN_GRANT_TYPE],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "claims_supported": [
                "aud", "azp", "email", "email_verified", "exp", "iat", "iss", "sub"
            ],
        })
    }
}

/// A field of a token request.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Space-separated scopes.
fn scopes_of(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A token request's fields, from a JSON object (strings as they are,
/// arrays of strings joined with spaces, numbers as text) or a form.
fn request_fields(body: &[u8]) -> Result<Vec<(String, String)>, TokenEndpointError> {
    if body.len() > MAX_CREDENTIAL_BYTES {
        return Err(TokenEndpointError::invalid_request(
            "The request body is too large.",
        ));
    }
    let invalid = || TokenEndpointError::invalid_request("Invalid request body.");
    if body.trim_ascii_start().starts_with(b"{") {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|_| invalid())?;
        return Ok(object
            .into_iter()
            .filter_map(|(key, value)| {
                let text = match value {
                    serde_json::Value::String(text) => text,
                    serde_json::Value::Number(number) => number.to_string(),
                    serde_json::Value::Bool(flag) => flag.to_string(),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .filter_map(serde_json::Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => return None,
                };
                Some((key, text))
            })
            .collect());
    }
    serde_urlencoded::from_bytes(body).map_err(|_| invalid())
}

/// The token of a `Bearer` authorization (scheme case-insensitive).
fn bearer_token(header: &[u8]) -> Result<&[u8], AuthError> {
    let split = header
        .iter()
        .position(|b| *b == b' ')
        .unwrap_or(header.len());
    let (scheme, rest) = header.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::Malformed("not a Bearer credential".to_string()));
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(AuthError::Malformed("an empty Bearer token".to_string()));
    }
    Ok(token)
}

/// `exp` in the future, `iat` not beyond the allowed skew, `exp` after
/// `iat`, lifetime at most an hour (and a minute); returns `exp`.
fn check_timeframe(jwt: &Jwt<'_>, now: u64) -> Result<u64, AuthError> {
    let (Some(iat), Some(exp)) = (jwt.seconds("iat"), jwt.seconds("exp")) else {
        return Err(AuthError::Malformed("iat and exp are required".to_string()));
    };
    if exp <= now {
        return Err(AuthError::Expired);
    }
    if iat > now.saturating_add(CLOCK_SKEW_SECONDS) {
        return Err(AuthError::BadTimeframe("iat is in the future".to_string()));
    }
    if exp <= iat || exp - iat > MAX_JWT_LIFETIME_SECONDS {
        return Err(AuthError::BadTimeframe(format!(
            "lifetime {}s is not within (0, {MAX_JWT_LIFETIME_SECONDS}]",
            exp.saturating_sub(iat)
        )));
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::OnceLock;

    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::error::{INVALID_CREDENTIAL_MESSAGE, MISSING_CREDENTIAL_MESSAGE};
    use crate::keys::ServiceAccountKeyFile;

    const ISSUER: &str = "https://127.0.0.1:8085";
    const TOKEN_URI: &str = "https://127.0.0.1:8085/token";
    const OPERATOR: &str = "operator-secret-token";
    const NOW: u64 = 1_700_000_000;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    /// One signing key for all tests (key generation is the slow part).
    fn signing() -> Arc<SigningKey> {
        static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
        KEY.get_or_init(|| Arc::new(SigningKey::load_or_create(None).unwrap()))
            .clone()
    }

    struct Fixture {
        auth: Authenticator,
        file: ServiceAccountKeyFile,
        email: String,
    }

    fn fixture() -> Fixture {
        let accounts = ServiceAccounts::open(None).unwrap();
        let account = accounts.create("proj", "robot-1", "Robot", "").unwrap();
        let (_, file) = accounts
            .create_key(&account.email, TOKEN_URI, at(NOW))
            .unwrap();
        let auth = Authenticator::new(
            signing(),
            accounts,
            ISSUER.to_string(),
            Some(OPERATOR.to_string()),
        );
        Fixture {
            auth,
            file,
            email: account.email,
        }
    }

    fn sign_with(pem: &str, kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    impl Fixture {
        fn self_signed(&self, claims: serde_json::Value) -> String {
            sign_with(
                &self.file.private_key,
                Some(&self.file.private_key_id),
                &claims,
            )
        }

        fn verify(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
            self.auth
                .verify_bearer(Some(format!("Bearer {token}").as_bytes()), at(now))
        }

        fn principal(&self) -> Principal {
            Principal::ServiceAccount {
                email: self.email.clone(),
            }
        }

        fn aud_claims(&self) -> serde_json::Value {
            json!({
                "iss": self.email, "sub": self.email,
                "aud": PUBSUB_AUDIENCE, "iat": NOW, "exp": NOW + 3600,
            })
        }

        fn assertion(&self, claims: serde_json::Value) -> Vec<u8> {
            let jwt = self.self_signed(claims);
            format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
            )
            .into_bytes()
        }

        fn assertion_claims(&self) -> serde_json::Value {
            json!({
                "iss": self.email, "aud": TOKEN_URI,
                "scope": "https://www.googleapis.com/auth/pubsub",
                "iat": NOW, "exp": NOW + 3600,
            })
        }
    }

    #[test]
    fn a_key_file_round_trips_and_its_jwts_verify() {
        let f = fixture();
        let json = f.file.to_json().unwrap();
        let parsed = ServiceAccountKeyFile::from_json(json.as_bytes()).unwrap();
        assert_eq!(parsed.client_email, f.email);
        let token = sign_with(
            &parsed.private_key,
            Some(&parsed.private_key_id),
            &f.aud_claims(),
        );
        assert_eq!(f.verify(&token, NOW).unwrap(), f.principal());
        assert_eq!(
            f.principal().member(),
            "serviceAccount:robot-1@proj.iam.gserviceaccount.com"
        );
    }

    #[test]
    fn both_self_signed_shapes_are_accepted() {
        let f = fixture();
        // Python google-auth, always_use_jwt_access with scopes: no aud.
        for scope in [
            "https://www.googleapis.com/auth/cloud-platform",
            "openid https://www.googleapis.com/auth/pubsub",
        ] {
            let token = f.self_signed(json!({
                "iss": f.email, "sub": f.email, "scope": scope,
                "iat": NOW, "exp": NOW + 3600,
            }));
            assert_eq!(f.verify(&token, NOW).unwrap(), f.principal());
        }
        // With aud, with or without the trailing slash.
        for aud in [
            json!("https://pubsub.googleapis.com/"),
            json!("https://pubsub.googleapis.com"),
            json!(["https://pubsub.googleapis.com/"]),
        ] {
            let mut claims = f.aud_claims();
            claims["aud"] = aud;
            assert_eq!(
                f.verify(&f.self_signed(claims), NOW).unwrap(),
                f.principal()
            );
        }
        // Wrong audience, or no aud and no Pub/Sub scope.
        let mut claims = f.aud_claims();
        claims["aud"] = json!("https://storage.googleapis.com/");
        assert!(matches!(
            f.verify(&f.self_signed(claims), NOW),
            Err(AuthError::WrongAudience(_))
        ));
        let token = f.self_signed(json!({
            "iss": f.email, "sub": f.email,
            "scope": "https://www.googleapis.com/auth/devstorage.read_only",
            "iat": NOW, "exp": NOW + 3600,
        }));
        let error = f.verify(&token, NOW).unwrap_err();
        assert!(matches!(error, AuthError::WrongAudience(_)), "{error}");
        assert_eq!(error.wire_message(), INVALID_CREDENTIAL_MESSAGE);
        // iss/sub must be the key's account.
        let mut claims = f.aud_claims();
        claims["sub"] = json!("other@proj.iam.gserviceaccount.com");
        assert!(matches!(
            f.verify(&f.self_signed(claims), NOW),
            Err(AuthError::WrongIssuer(_))
        ));
    }

    #[test]
    fn time_is_checked_exactly_against_now() {
        let f = fixture();
        let token = f.self_signed(f.aud_claims());
        assert!(f.verify(&token, NOW + 3599).is_ok());
        assert!(matches!(
            f.verify(&token, NOW + 3600),
            Err(AuthError::Expired)
        ));
        // iat up to 300 s ahead is clock skew; further is refused.
        let mut claims = f.aud_claims();
        claims["iat"] = json!(NOW + 300);
        claims["exp"] = json!(NOW + 900);
        assert!(f.verify(&f.self_signed(claims.clone()), NOW).is_ok());
        claims["iat"] = json!(NOW + 301);
        assert!(matches!(
            f.verify(&f.self_signed(claims), NOW),
            Err(AuthError::BadTimeframe(_))
        ));
        // At most an hour long (and a minute: google-cloud-auth's 3620 s
        // pass).
        let mut claims = f.aud_claims();
        claims["exp"] = json!(NOW + 3620);
        assert!(f.verify(&f.self_signed(claims), NOW).is_ok());
        let mut claims = f.aud_claims();
        claims["exp"] = json!(NOW + 3661);
        assert!(matches!(
            f.verify(&f.self_signed(claims), NOW),
            Err(AuthError::BadTimeframe(_))
        ));
        let mut claims = f.aud_claims();
        claims.as_object_mut().unwrap().remove("iat");
        assert!(matches!(
            f.verify(&f.self_signed(claims), NOW),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn bad_credentials_get_the_right_error_and_wire_message() {
        let f = fixture();
        let missing = f.auth.verify_bearer(None, at(NOW)).unwrap_err();
        assert!(matches!(missing, AuthError::Missing));
        assert_eq!(missing.wire_message(), MISSING_CREDENTIAL_MESSAGE);
        assert!(missing.is_unauthenticated());
        let b64 = |v: serde_json::Value| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let claims = b64(f.aud_claims());
        // alg none.
        let none = format!(
            "{}.{claims}.",
            b64(json!({"alg": "none", "kid": f.file.private_key_id}))
        );
        // HS256 with the public key as the secret (key confusion).
        let public_pem = f
            .auth
            .accounts()
            .get(&f.email)
            .unwrap()
            .keys
            .remove(0)
            .public_key_pem;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(f.file.private_key_id.clone());
        let hs256 = jsonwebtoken::encode(
            &header,
            &f.aud_claims(),
            &EncodingKey::from_secret(public_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        // Signed by another key, naming this key.
        let other = crate::keys::generate_rsa_key().unwrap();
        let wrong_key = sign_with(
            &other.private_pkcs8_pem,
            Some(&f.file.private_key_id),
            &f.aud_claims(),
        );
        let unknown_kid = sign_with(
            &other.private_pkcs8_pem,
            Some(&other.key_id),
            &f.aud_claims(),
        );
        type Expect = fn(&AuthError) -> bool;
        let cases: Vec<(Vec<u8>, Expect)> = vec![
            (
                format!("Bearer {none}").into_bytes(),
                |e| matches!(e, AuthError::UnsupportedAlgorithm(a) if a == "none"),
            ),
            (
                format!("Bearer {hs256}").into_bytes(),
                |e| matches!(e, AuthError::UnsupportedAlgorithm(a) if a == "HS256"),
            ),
            (format!("Bearer {wrong_key}").into_bytes(), |e| {
                matches!(e, AuthError::BadSignature)
            }),
            (format!("Bearer {unknown_kid}").into_bytes(), |e| {
                matches!(e, AuthError::UnknownKey(_))
            }),
            (vec![b'a'; MAX_CREDENTIAL_BYTES + 1], |e| {
                matches!(e, AuthError::TooLarge { .. })
            }),
            (b"Bearer \xff\xfe.\x80".to_vec(), |e| {
                matches!(e, AuthError::Malformed(_))
            }),
            (b"Basic dXNlcjpwYXNz".to_vec(), |e| {
                matches!(e, AuthError::Malformed(_))
            }),
            (b"Bearer ".to_vec(), |e| {
                matches!(e, AuthError::Malformed(_))
            }),
            (b"Bearer a.b".to_vec(), |e| {
                matches!(e, AuthError::Malformed(_))
            }),
            (b"Bearer not-the-operator".to_vec(), |e| {
                matches!(e, AuthError::Malformed(_))
            }),
        ];
        for (header, expected) in cases {
            let error = f
                .auth
                .verify_bearer(Some(&header), at(NOW))
                .expect_err(&String::from_utf8_lossy(&header));
            assert!(expected(&error), "{error:?}");
            assert!(error.is_unauthenticated());
            assert_eq!(error.wire_message(), INVALID_CREDENTIAL_MESSAGE);
        }
    }

    #[test]
    fn the_operator_token_is_the_operator() {
        let f = fixture();
        for header in [
            "Bearer operator-secret-token",
            "bearer  operator-secret-token ",
        ] {
            assert_eq!(
                f.auth
                    .verify_bearer(Some(header.as_bytes()), at(NOW))
                    .unwrap(),
                Principal::Operator
            );
        }
        assert_eq!(Principal::Operator.member(), "user:operator@baton.local");
        let without = Authenticator::new(
            signing(),
            ServiceAccounts::open(None).unwrap(),
            ISSUER.to_string(),
            None,
        );
        assert!(
            without
                .verify_bearer(Some(b"Bearer operator-secret-token"), at(NOW))
                .is_err()
        );
    }

    #[test]
    fn cached_tokens_still_expire_and_die_with_their_key() {
        let f = fixture();
        let token = f.self_signed(f.aud_claims());
        assert!(f.verify(&token, NOW).is_ok());
        assert_eq!(f.auth.cached_tokens(), 1);
        // Served from the cache (still one entry), then refused at exp.
        assert!(f.verify(&token, NOW + 10).is_ok());
        assert_eq!(f.auth.cached_tokens(), 1);
        assert!(matches!(
            f.verify(&token, NOW + 3600),
            Err(AuthError::Expired)
        ));
        // Deleting the key drops it even though the cache holds it.
        assert!(f.verify(&token, NOW + 20).is_ok());
        f.auth
            .accounts()
            .delete_key(&f.email, &f.file.private_key_id)
            .unwrap();
        assert!(matches!(
            f.verify(&token, NOW + 20),
            Err(AuthError::UnknownKey(_))
        ));
    }

    #[test]
    fn the_cache_is_bounded() {
        let f = fixture();
        let mut cache = f.auth.cache.write().unwrap();
        for i in 0..CACHE_CAPACITY {
            cache.insert(
                (i as u64).to_le_bytes().to_vec().into_boxed_slice(),
                Cached {
                    principal: Principal::Operator,
                    exp: 0,
                    generation: 0,
                },
            );
        }
        drop(cache);
        assert!(f.verify(&f.self_signed(f.aud_claims()), NOW).is_ok());
        assert_eq!(f.auth.cached_tokens(), CACHE_CAPACITY);
    }

    #[test]
    fn the_token_exchange_issues_access_tokens() {
        let f = fixture();
        let response = f
            .auth
            .exchange_jwt_bearer(&f.assertion(f.assertion_claims()), TOKEN_URI, at(NOW))
            .unwrap();
        assert_eq!(response.expires_in, 3600);
        assert_eq!(response.token_type, "Bearer");
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(
            json.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["access_token", "expires_in", "token_type"]
        );
        assert_eq!(
            f.verify(&response.access_token, NOW).unwrap(),
            f.principal()
        );
        assert!(matches!(
            f.verify(&response.access_token, NOW + 3600),
            Err(AuthError::Expired)
        ));
        // Google's token URI as the audience, and an assertion without kid.
        let mut claims = f.assertion_claims();
        claims["aud"] = json!(GOOGLE_TOKEN_URI);
        assert!(
            f.auth
                .exchange_jwt_bearer(&f.assertion(claims), TOKEN_URI, at(NOW))
                .is_ok()
        );
        let no_kid = sign_with(&f.file.private_key, None, &f.assertion_claims());
        let body = format!("grant_type={JWT_BEARER_GRANT_TYPE}&assertion={no_kid}");
        assert!(
            f.auth
                .exchange_jwt_bearer(body.as_bytes(), TOKEN_URI, at(NOW))
                .is_ok()
        );
        // gcp_auth's assertions: no kid, every part base64url *with* padding.
        let padded = {
            use base64::Engine as _;
            use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
            let header = URL_SAFE.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
            let claims = URL_SAFE.encode(f.assertion_claims().to_string());
            let message = format!("{header}.{claims}");
            let key = EncodingKey::from_rsa_pem(f.file.private_key.as_bytes()).unwrap();
            let signature =
                jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
            let signature = URL_SAFE.encode(URL_SAFE_NO_PAD.decode(signature).unwrap());
            format!("{message}.{signature}")
        };
        assert!(padded.ends_with('='));
        let body = format!(
            "grant_type={JWT_BEARER_GRANT_TYPE}&assertion={}",
            padded.replace('=', "%3D")
        );
        assert!(
            f.auth
                .exchange_jwt_bearer(body.as_bytes(), TOKEN_URI, at(NOW))
                .is_ok()
        );
        // A disabled account's access token stops working.
        f.auth.accounts().set_disabled(&f.email, true).unwrap();
        assert!(matches!(
            f.verify(&response.access_token, NOW),
            Err(AuthError::AccountDisabledOrDeleted(_))
        ));
    }

    #[test]
    fn the_token_exchange_refuses_like_google() {
        let f = fixture();
        let exchange = |body: &[u8], now: u64| {
            f.auth
                .exchange_jwt_bearer(body, TOKEN_URI, at(now))
                .unwrap_err()
        };
        let e = exchange(b"grant_type=client_credentials", NOW);
        assert_eq!(e.error, "unsupported_grant_type");
        let e = exchange(b"assertion=x", NOW);
        assert_eq!(e.error, "invalid_request");
        let e = exchange(
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
            NOW,
        );
        assert_eq!(
            (e.error.as_str(), e.error_description.as_str()),
            ("invalid_request", "Missing required parameter: assertion")
        );
        let e = exchange(&f.assertion(f.assertion_claims()), NOW + 3600);
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.error_description, BAD_TIMEFRAME_DESCRIPTION);
        let mut claims = f.assertion_claims();
        claims["exp"] = json!(NOW + 7200);
        assert_eq!(
            exchange(&f.assertion(claims), NOW).error_description,
            BAD_TIMEFRAME_DESCRIPTION
        );
        let mut claims = f.assertion_claims();
        claims["aud"] = json!("https://example.com/token");
        let e = exchange(&f.assertion(claims), NOW);
        assert_eq!(e.error, "invalid_grant");
        assert!(e.error_description.contains("audience"));
        let other = crate::keys::generate_rsa_key().unwrap();
        let forged = sign_with(
            &other.private_pkcs8_pem,
            Some(&f.file.private_key_id),
            &f.assertion_claims(),
        );
        let body = format!("grant_type={JWT_BEARER_GRANT_TYPE}&assertion={forged}");
        let e = exchange(body.as_bytes(), NOW);
        assert_eq!(
            (e.error.as_str(), e.error_description.as_str()),
            ("invalid_grant", "Invalid JWT Signature.")
        );
        f.auth.accounts().delete(&f.email).unwrap();
        let e = exchange(&f.assertion(f.assertion_claims()), NOW);
        assert_eq!(
            (e.error.as_str(), e.error_description.as_str()),
            ("invalid_grant", "Invalid grant: account not found")
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"error": "invalid_grant", "error_description": "Invalid grant: account not found"})
        );
    }

    #[test]
    fn id_tokens_verify_against_jwks_and_certificates() {
        let f = fixture();
        let audience = "https://push.example.com/endpoint";
        let token = f.auth.mint_id_token(&f.email, audience, at(NOW)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(f.auth.signing_key().key_id()));
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(f.auth.signing_key().jwks()).unwrap();
        let from_jwks =
            DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
        let certs = f.auth.signing_key().x509_certs();
        let cert = certs[header.kid.as_deref().unwrap()].as_str().unwrap();
        let from_cert = DecodingKey::from_rsa_pem(cert.as_bytes()).unwrap();
        let account = f.auth.accounts().get(&f.email).unwrap();
        for key in [&from_jwks, &from_cert] {
            let mut validation = Validation::new(Algorithm::RS256);
            validation.set_audience(&[audience]);
            validation.set_issuer(&[ISSUER]);
            // jsonwebtoken reads the system clock; the token is from 2023.
            validation.validate_exp = false;
            let data = jsonwebtoken::decode::<serde_json::Value>(&token, key, &validation).unwrap();
            let claims = data.claims;
            assert_eq!(claims["sub"], account.unique_id.as_str());
            assert_eq!(claims["azp"], account.unique_id.as_str());
            assert_eq!(claims["email"], f.email.as_str());
            assert_eq!(claims["email_verified"], true);
            assert_eq!(claims["iat"], NOW);
            assert_eq!(claims["exp"], NOW + 3600);
        }
        // An ID token is no access token.
        assert!(f.verify(&token, NOW).is_err());
        // Nor is an access token an ID token for any audience.
        let access = f
            .auth
            .mint_access_token(&f.email, &[PUBSUB_SCOPES[0].to_string()], at(NOW))
            .unwrap()
            .access_token;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["aud"]);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&access, &from_jwks, &validation).is_err()
        );
        assert!(matches!(
            f.auth
                .mint_id_token("nobody@proj.iam.gserviceaccount.com", audience, at(NOW)),
            Err(AuthError::NotFound(_))
        ));
    }

    #[test]
    fn access_tokens_from_another_issuer_are_refused() {
        let f = fixture();
        let access = f
            .auth
            .mint_access_token(&f.email, &[], at(NOW))
            .unwrap()
            .access_token;
        let elsewhere = Authenticator::new(
            signing(),
            f.auth.accounts().clone(),
            "https://other:1".to_string(),
            None,
        );
        assert!(matches!(
            elsewhere.verify_bearer(Some(format!("Bearer {access}").as_bytes()), at(NOW)),
            Err(AuthError::WrongIssuer(_))
        ));
    }

    #[test]
    fn the_discovery_document_points_at_baton() {
        let f = fixture();
        let doc = f.auth.openid_configuration();
        assert_eq!(doc["issuer"], ISSUER);
        assert_eq!(doc["jwks_uri"], "https://127.0.0.1:8085/oauth2/v3/certs");
        assert_eq!(doc["token_endpoint"], "https://127.0.0.1:8085/token");
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["RS256"])
        );
    }

    fn shared_fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(fixture)
    }

    proptest! {
        #[test]
        fn verify_bearer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let f = shared_fixture();
            let _ = f.auth.verify_bearer(Some(&bytes), at(NOW));
            let mut bearer = b"Bearer ".to_vec();
            bearer.extend_from_slice(&bytes);
            let _ = f.auth.verify_bearer(Some(&bearer), at(NOW));
            let _ = f.auth.exchange_jwt_bearer(&bytes, TOKEN_URI, at(NOW));
            let _ = f.auth.token_endpoint(&bytes, None, TOKEN_URI, at(NOW));
            let _ = f.auth.exchange_sts(&bytes, at(NOW));
        }

        #[test]
        fn jwts_with_random_claims_are_judged_not_panicked_on(
            iat in prop_oneof![Just(json!(NOW)), any::<i64>().prop_map(|v| json!(v)), any::<f64>().prop_map(|v| json!(v)), Just(json!("x"))],
            lifetime in 0u64..8000,
            aud in prop_oneof![Just(json!(PUBSUB_AUDIENCE)), Just(json!(null)), "[a-z:/.]{0,20}".prop_map(|v| json!(v)), Just(json!([1, 2]))],
            scope in prop_oneof![Just(json!(PUBSUB_SCOPES[0])), Just(json!(7)), "[a-z ]{0,20}".prop_map(|v| json!(v))],
            same_subject in any::<bool>(),
        ) {
            let f = shared_fixture();
            let exp = iat.as_u64().map_or(json!(lifetime), |i| json!(i.saturating_add(lifetime)));
            let mut claims = json!({
                "iss": f.email, "iat": iat, "exp": exp, "scope": scope,
                "sub": if same_subject { f.email.clone() } else { "x@y".to_string() },
            });
            if !aud.is_null() {
                claims["aud"] = aud.clone();
            }
            let token = f.self_signed(claims);
            let result = f.verify(&token, NOW);
            let should_pass = same_subject
                && iat.as_u64() == Some(NOW)
                && (1..=MAX_JWT_LIFETIME_SECONDS).contains(&lifetime)
                && (aud == json!(PUBSUB_AUDIENCE)
                    || (aud.is_null() && scope == json!(PUBSUB_SCOPES[0])));
            prop_assert_eq!(result.is_ok(), should_pass, "{:?}", result);
        }
    }
}
