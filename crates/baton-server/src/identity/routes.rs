//! The identity endpoints on the main port:
//!
//! - `POST /token`: the OAuth 2.0 JWT-bearer grant that Google's libraries
//!   make with a service-account key file (its `token_uri`), and the
//!   refresh-token grant of an authorized user's credential file; `POST
//!   /revoke` revokes a refresh token;
//! - `POST /v1/token`: the Security Token Service's token exchange
//!   (Workload Identity Federation: an OIDC subject token of a trusted pool
//!   provider for a federated access token);
//! - `POST /api/authorized-users`: the operator issues an authorized-user
//!   credential (`baton auth application-default login`);
//! - `POST /v1/projects/{project}/serviceAccounts/{email}:generateAccessToken`:
//!   the IAM Credentials API, a service account's access token for a caller
//!   holding `iam.serviceAccounts.getAccessToken` on it (through a chain of
//!   delegates, each on the next);
//! - `GET /.well-known/openid-configuration`, `/oauth2/v1/certs` (PEM
//!   certificates, as `https://www.googleapis.com/oauth2/v1/certs`) and
//!   `/oauth2/v3/certs` (JWKS): what verifies the ID tokens Baton signs;
//! - the IAM API's service-account and key methods
//!   (`/v1/projects/{project}/serviceAccounts[/{email}[/keys[/{key}]]]`),
//!   checked against `iam.serviceAccounts.*` permissions when
//!   authentication is on.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use baton_auth::{AuthError, Principal, ServiceAccount, ServiceAccountKey, TokenEndpointError};
use baton_broker::{BrokerError, ErrorCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::state::Identity;
use crate::api::PubSubApi;
use crate::api::access::Checks;
use crate::status::to_http;

/// Largest token request body: a form with one JWT.
const MAX_TOKEN_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
struct IdentityState {
    identity: Identity,
    api: PubSubApi,
}

/// The identity endpoints for `identity`; `api` is the request layer whose
/// access control (when on) guards the service-account methods.
pub fn router(identity: Identity, api: PubSubApi) -> Router {
    let accounts = "/v1/projects/{project}/serviceAccounts";
    Router::new()
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/v1/token", post(sts_token))
        .route("/api/authorized-users", post(issue_authorized_user))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/oauth2/v1/certs", get(x509_certs))
        .route("/oauth2/v3/certs", get(jwks))
        .route(accounts, get(list_accounts).post(create_account))
        .route(
            &format!("{accounts}/{{account}}"),
            get(get_account).delete(delete_account).post(account_method),
        )
        .route(
            &format!("{accounts}/{{account}}/keys"),
            get(list_keys).post(create_key),
        )
        .route(
            &format!("{accounts}/{{account}}/keys/{{key}}"),
            delete(delete_key),
        )
        .with_state(Arc::new(IdentityState { identity, api }))
}

fn error_response(error: &BrokerError) -> Response {
    let (status, body) = to_http(error);
    (status, Json(body)).into_response()
}

/// An identity failure in the request layer's terms (and so the real
/// service's codes and HTTP statuses).
fn broker_error(error: &AuthError) -> BrokerError {
    match error {
        AuthError::AlreadyExists(_) => BrokerError::already_exists(error.to_string()),
        AuthError::NotFound(_) => BrokerError::not_found(error.to_string()),
        AuthError::InvalidAccountId(_) => BrokerError::invalid(error.to_string()),
        other if other.is_unauthenticated() => BrokerError::unauthenticated(other.wire_message()),
        other => BrokerError::new(ErrorCode::Internal, other.to_string()),
    }
}

async fn token(
    State(state): State<Arc<IdentityState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if body.len() > MAX_TOKEN_REQUEST_BYTES {
        return token_error("invalid_request", "Request too large.");
    }
    let authenticator = match state.identity.authenticator_async().await {
        Ok(authenticator) => authenticator,
        Err(error) => return error_response(&broker_error(&error)),
    };
    match authenticator.token_endpoint(
        &body,
        basic_credentials(&headers),
        &state.identity.token_uri(),
        state.identity.now(),
    ) {
        Ok(token) => ([(header::CACHE_CONTROL, "no-store")], Json(json!(token))).into_response(),
        Err(error) => token_endpoint_error(&error),
    }
}

/// An OAuth refusal with its status (400, or 401 for `invalid_client`).
fn token_endpoint_error(error: &TokenEndpointError) -> Response {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!(error))).into_response()
}

/// The client id and secret of an HTTP Basic `authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// `POST /v1/token`: the Security Token Service's token exchange.
async fn sts_token(State(state): State<Arc<IdentityState>>, body: axum::body::Bytes) -> Response {
    if body.len() > MAX_TOKEN_REQUEST_BYTES {
        return token_error("invalid_request", "Request too large.");
    }
    let authenticator = match state.identity.authenticator_async().await {
        Ok(authenticator) => authenticator,
        Err(error) => return error_response(&broker_error(&error)),
    };
    match authenticator.exchange_sts(&body, state.identity.now()) {
        Ok(token) => ([(header::CACHE_CONTROL, "no-store")], Json(json!(token))).into_response(),
        Err(error) => {
            tracing::debug!(%error, "token exchange refused");
            token_endpoint_error(&error)
        }
    }
}

/// `POST /revoke` (`token=...` as a form or in the query), as Google's
/// `oauth2.googleapis.com/revoke`: revokes a refresh token, and so the
/// access tokens it bought.
async fn revoke(
    State(state): State<Arc<IdentityState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: axum::body::Bytes,
) -> Response {
    if body.len() > MAX_TOKEN_REQUEST_BYTES {
        return token_error("invalid_request", "Request too large.");
    }
    let token =
        form_token(&body).or_else(|| query.as_deref().and_then(|q| form_token(q.as_bytes())));
    let Some(token) = token else {
        return token_error("invalid_request", "Missing required parameter: token");
    };
    match state.identity.user_grants().revoke(&token) {
        Ok(true) => {
            tracing::info!("authorized-user refresh token revoked");
            Json(json!({})).into_response()
        }
        Ok(false) => token_error("invalid_token", "Token expired or revoked"),
        Err(error) => error_response(&broker_error(&error)),
    }
}

/// The `token` field of a form.
fn form_token(form: &[u8]) -> Option<String> {
    form.split(|b| *b == b'&').find_map(|pair| {
        let text = std::str::from_utf8(pair).ok()?;
        let value = text.strip_prefix("token=")?;
        let value = value.replace('+', " ");
        percent_encoding::percent_decode_str(&value)
            .decode_utf8()
            .ok()
            .map(|v| v.into_owned())
            .filter(|v| !v.is_empty())
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizedUserRequest {
    account: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    quota_project_id: Option<String>,
}

/// `POST /api/authorized-users`: the operator issues an authorized-user
/// credential file for `user:ACCOUNT`, whose refresh token (bound to a
/// client of its own) buys access tokens at `/token`. Baton's stand-in for
/// Google's browser consent: no IAM permission grants it, only the
/// operator token does (anyone may when authentication is off).
async fn issue_authorized_user(
    State(state): State<Arc<IdentityState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    reply((|| {
        if let Some(access) = state.api.access_control() {
            let principal =
                access.authenticate(state.api.broker(), headers.get(header::AUTHORIZATION))?;
            if principal != Principal::Operator {
                return Err(BrokerError::new(
                    ErrorCode::PermissionDenied,
                    "Only the operator may issue authorized-user credentials.",
                ));
            }
        }
        let request = serde_json::from_slice::<AuthorizedUserRequest>(&body).map_err(|_| {
            BrokerError::invalid("Invalid JSON payload received. Expected account.")
        })?;
        let (grant, file) = state
            .identity
            .user_grants()
            .issue(
                &request.account,
                &request.scopes,
                &state.identity.token_uri(),
                request.quota_project_id.as_deref(),
                state.identity.now(),
            )
            .map_err(|e| broker_error(&e))?;
        tracing::info!(account = %grant.account, client_id = %grant.client_id, "authorized-user credential issued");
        serde_json::to_value(&file)
            .map_err(|error| BrokerError::new(ErrorCode::Internal, error.to_string()))
    })())
}

fn token_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn openid_configuration(State(state): State<Arc<IdentityState>>) -> Response {
    match state.identity.authenticator_async().await {
        Ok(authenticator) => Json(authenticator.openid_configuration()).into_response(),
        Err(error) => error_response(&broker_error(&error)),
    }
}

async fn x509_certs(State(state): State<Arc<IdentityState>>) -> Response {
    match state.identity.authenticator_async().await {
        Ok(authenticator) => Json(authenticator.signing_key().x509_certs()).into_response(),
        Err(error) => error_response(&broker_error(&error)),
    }
}

async fn jwks(State(state): State<Arc<IdentityState>>) -> Response {
    match state.identity.authenticator_async().await {
        Ok(authenticator) => Json(authenticator.signing_key().jwks()).into_response(),
        Err(error) => error_response(&broker_error(&error)),
    }
}

impl IdentityState {
    /// With authentication on, PERMISSION_DENIED (or UNAUTHENTICATED)
    /// unless the caller holds `permission` on `project`.
    fn check(
        &self,
        headers: &HeaderMap,
        permission: &'static str,
        project: &str,
    ) -> Result<(), BrokerError> {
        let Some(access) = self.api.access_control() else {
            return Ok(());
        };
        let broker = self.api.broker();
        let resource = format!("projects/{project}");
        let principal = access.authenticate(broker, headers.get(header::AUTHORIZATION))?;
        access.authorize(broker, &principal, Checks::one(permission, &resource))
    }

    /// The account a path names (`projects/{project}/serviceAccounts/{account}`,
    /// by email or unique id; `-` for the project means any), once the
    /// caller holds `permission` on its project.
    fn account(
        &self,
        headers: &HeaderMap,
        permission: &'static str,
        project: &str,
        account: &str,
    ) -> Result<ServiceAccount, BrokerError> {
        let found = self
            .identity
            .accounts()
            .get(account)
            .filter(|found| project == "-" || found.project_id == project);
        // Without the permission on the project, whether the account exists
        // is not revealed.
        let checked_project = found.as_ref().map_or(project, |f| f.project_id.as_str());
        self.check(headers, permission, checked_project)?;
        found.ok_or_else(|| {
            BrokerError::not_found(format!(
                "Unknown service account: projects/{project}/serviceAccounts/{account}"
            ))
        })
    }
}

/// The JSON answer of a service-account method, or its error.
fn reply(result: Result<Value, BrokerError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error_response(&error),
    }
}

/// The IAM API's `ServiceAccount` resource.
fn account_json(account: &ServiceAccount) -> Value {
    json!({
        "name": format!("projects/{}/serviceAccounts/{}", account.project_id, account.email),
        "projectId": account.project_id,
        "uniqueId": account.unique_id,
        "email": account.email,
        "displayName": account.display_name,
        "description": account.description,
        "oauth2ClientId": account.unique_id,
        "disabled": account.disabled,
        "etag": "BwYAAAAAAAA=",
    })
}

/// The IAM API's `ServiceAccountKey` resource (without private data).
fn key_json(account: &ServiceAccount, key: &ServiceAccountKey) -> Value {
    json!({
        "name": format!(
            "projects/{}/serviceAccounts/{}/keys/{}",
            account.project_id, account.email, key.key_id
        ),
        "validAfterTime": rfc3339(key.valid_after),
        "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
        "disabled": key.disabled,
    })
}

/// A time as the JSON mapping of `google.protobuf.Timestamp` spells it.
fn rfc3339(time: std::time::SystemTime) -> String {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let timestamp = pbjson_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    };
    serde_json::to_value(timestamp)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAccountRequest {
    account_id: String,
    #[serde(default)]
    service_account: Option<AccountFields>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountFields {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
}

async fn create_account(
    State(state): State<Arc<IdentityState>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    reply((|| {
        state.check(&headers, "iam.serviceAccounts.create", &project)?;
        let request = serde_json::from_slice::<CreateAccountRequest>(&body).map_err(|_| {
            BrokerError::invalid(
                "Invalid JSON payload received. Expected accountId and serviceAccount.",
            )
        })?;
        let fields = request.service_account.unwrap_or_default();
        let account = state
            .identity
            .accounts()
            .create(
                &project,
                &request.account_id,
                &fields.display_name,
                &fields.description,
            )
            .map_err(|e| broker_error(&e))?;
        tracing::info!(email = %account.email, "service account created");
        Ok(account_json(&account))
    })())
}

async fn list_accounts(
    State(state): State<Arc<IdentityState>>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    reply((|| {
        state.check(&headers, "iam.serviceAccounts.list", &project)?;
        let accounts: Vec<Value> = state
            .identity
            .accounts()
            .list(&project)
            .iter()
            .map(account_json)
            .collect();
        // An empty list is an empty object, as the IAM API answers.
        Ok(if accounts.is_empty() {
            json!({})
        } else {
            json!({ "accounts": accounts })
        })
    })())
}

async fn get_account(
    State(state): State<Arc<IdentityState>>,
    Path((project, account)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    reply(
        state
            .account(&headers, "iam.serviceAccounts.get", &project, &account)
            .map(|found| account_json(&found)),
    )
}

async fn delete_account(
    State(state): State<Arc<IdentityState>>,
    Path((project, account)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    reply((|| {
        let found = state.account(&headers, "iam.serviceAccounts.delete", &project, &account)?;
        state
            .identity
            .accounts()
            .delete(&found.email)
            .map_err(|e| broker_error(&e))?;
        Ok(json!({}))
    })())
}

async fn create_key(
    State(state): State<Arc<IdentityState>>,
    Path((project, account)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let found = match state.account(
        &headers,
        "iam.serviceAccountKeys.create",
        &project,
        &account,
    ) {
        Ok(found) => found,
        Err(error) => return error_response(&error),
    };
    let identity = state.identity.clone();
    let email = found.email.clone();
    // Making an RSA key takes a while: off the async workers.
    let made = tokio::task::spawn_blocking(move || {
        identity
            .accounts()
            .create_key(&email, &identity.token_uri(), identity.now())
    })
    .await;
    reply((|| {
        let (key, file) = made
            .map_err(|error| BrokerError::new(ErrorCode::Internal, error.to_string()))?
            .map_err(|error| broker_error(&error))?;
        let file_json = serde_json::to_vec_pretty(&file)
            .map_err(|error| BrokerError::new(ErrorCode::Internal, error.to_string()))?;
        tracing::info!(email = %found.email, key_id = %key.key_id, "service account key created");
        let mut body = key_json(&found, &key);
        body["privateKeyType"] = json!("TYPE_GOOGLE_CREDENTIALS_FILE");
        body["privateKeyData"] = json!(base64::engine::general_purpose::STANDARD.encode(file_json));
        Ok(body)
    })())
}

async fn list_keys(
    State(state): State<Arc<IdentityState>>,
    Path((project, account)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    reply(
        state
            .account(&headers, "iam.serviceAccountKeys.list", &project, &account)
            .map(|found| {
                let keys: Vec<Value> = found.keys.iter().map(|key| key_json(&found, key)).collect();
                json!({ "keys": keys })
            }),
    )
}

async fn delete_key(
    State(state): State<Arc<IdentityState>>,
    Path((project, account, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    reply((|| {
        let found = state.account(
            &headers,
            "iam.serviceAccountKeys.delete",
            &project,
            &account,
        )?;
        state
            .identity
            .accounts()
            .delete_key(&found.email, &key)
            .map_err(|e| broker_error(&e))?;
        Ok(json!({}))
    })())
}

/// Google's message when the caller may not mint the account's tokens (or
/// the account does not exist, which it does not reveal).
const GET_ACCESS_TOKEN_DENIED: &str =
    "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).";

/// The IAM Credentials API's `generateAccessToken` request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAccessTokenRequest {
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default)]
    delegates: Vec<String>,
    #[serde(default)]
    lifetime: Option<String>,
}

/// `POST .../serviceAccounts/{account}:{method}`: the IAM Credentials API's
/// custom methods on a service account (`generateAccessToken`).
async fn account_method(
    State(state): State<Arc<IdentityState>>,
    Path((project, account)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match account.rsplit_once(':') {
        Some((email, "generateAccessToken")) => {
            generate_access_token(&state, &project, email, &headers, &body).await
        }
        _ => error_response(&BrokerError::not_found(format!(
            "Method not found: projects/{project}/serviceAccounts/{account}"
        ))),
    }
}

/// A `google.protobuf.Duration` in JSON (`"3600s"`, `"1200.5s"`), rounded
/// up to whole seconds.
fn parse_lifetime(text: &str) -> Option<u64> {
    let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds > 0.0 && seconds < 1.0e12).then(|| seconds.ceil() as u64)
}

/// The 403 of IAM Credentials, with its `ErrorInfo` as Google sends it.
fn get_access_token_denied() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "error": {
                "code": 403,
                "message": GET_ACCESS_TOKEN_DENIED,
                "status": "PERMISSION_DENIED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "iam.googleapis.com",
                    "metadata": {"permission": "iam.serviceAccounts.getAccessToken"},
                }],
            }
        })),
    )
        .into_response()
}

/// An account of a delegation chain or the target, by
/// `projects/{project}/serviceAccounts/{email}` or its email; NOT_FOUND as
/// Google words it when there is none.
fn chain_account(
    state: &IdentityState,
    name: &str,
    project: &str,
) -> Result<ServiceAccount, BrokerError> {
    let (project, email) = match name
        .strip_prefix("projects/")
        .and_then(|rest| rest.split_once("/serviceAccounts/"))
    {
        Some((project, email)) => (project, email),
        None => (project, name),
    };
    state
        .identity
        .accounts()
        .get(email)
        .filter(|found| project == "-" || found.project_id == project)
        .ok_or_else(|| {
            BrokerError::not_found(format!("Not found; Gaia id not found for email {email}"))
        })
}

/// `generateAccessToken`: an access token of the service account `email`
/// for the caller, who (or, with `delegates`, the chain from the caller
/// through each delegate) holds `iam.serviceAccounts.getAccessToken` on
/// the next account, granted by a policy on the account's project (as
/// `roles/iam.serviceAccountTokenCreator` holds it). The token lives
/// `lifetime` (at most, and by default, an hour).
async fn generate_access_token(
    state: &IdentityState,
    project: &str,
    email: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        GenerateAccessTokenRequest::default()
    } else {
        match serde_json::from_slice::<GenerateAccessTokenRequest>(body) {
            Ok(request) => request,
            Err(error) => {
                return error_response(&BrokerError::invalid(format!(
                    "Invalid JSON payload received. {error}"
                )));
            }
        }
    };
    let max = baton_auth::verify::MAX_GENERATED_TOKEN_LIFETIME_SECONDS;
    let lifetime = match request.lifetime.as_deref() {
        None | Some("") => max,
        Some(text) => match parse_lifetime(text) {
            Some(seconds) if seconds <= max => seconds,
            Some(_) => {
                return error_response(&BrokerError::invalid(format!(
                    "The lifetime {text} is longer than the maximum allowed lifetime of {max}s."
                )));
            }
            None => {
                return error_response(&BrokerError::invalid(format!(
                    "Invalid value at 'lifetime' ({text}): expected a positive duration such as \"3600s\"."
                )));
            }
        },
    };
    let scopes: Vec<String> = request
        .scope
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if scopes.is_empty() {
        return error_response(&BrokerError::invalid("Scope required."));
    }
    // Who asks: verified before anything about the accounts is revealed.
    let caller = match state.api.access_control() {
        Some(access) => {
            match access.authenticate(state.api.broker(), headers.get(header::AUTHORIZATION)) {
                Ok(principal) => Some((access, principal)),
                Err(error) => return error_response(&error),
            }
        }
        None => None,
    };
    let mut chain = Vec::with_capacity(request.delegates.len() + 1);
    for name in request.delegates.iter().map(String::as_str).chain([email]) {
        match chain_account(state, name, if name == email { project } else { "-" }) {
            Ok(account) => chain.push(account),
            Err(error) => return error_response(&error),
        }
    }
    if let Some((access, principal)) = caller {
        // The caller on the first account, each account on the next.
        let mut holder = principal;
        for next in &chain {
            let resource = format!(
                "projects/{}/serviceAccounts/{}",
                next.project_id, next.email
            );
            let allowed = access.authorize(
                state.api.broker(),
                &holder,
                Checks::one("iam.serviceAccounts.getAccessToken", &resource),
            );
            if allowed.is_err() {
                tracing::debug!(caller = %holder.member(), target = %next.email, "getAccessToken denied");
                return get_access_token_denied();
            }
            holder = Principal::ServiceAccount {
                email: next.email.clone(),
            };
        }
    }
    let Some(target) = chain.last() else {
        return error_response(&BrokerError::new(ErrorCode::Internal, "an empty chain"));
    };
    let authenticator = match state.identity.authenticator_async().await {
        Ok(authenticator) => authenticator,
        Err(error) => return error_response(&broker_error(&error)),
    };
    let now = state.identity.now();
    match authenticator.mint_access_token_for(&target.email, &scopes, now, lifetime) {
        Ok(token) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({
                "accessToken": token.access_token,
                "expireTime": rfc3339(now + std::time::Duration::from_secs(lifetime)),
            })),
        )
            .into_response(),
        Err(AuthError::AccountDisabledOrDeleted(_)) => error_response(&BrokerError::new(
            ErrorCode::FailedPrecondition,
            format!("Service account {} is disabled.", target.email),
        )),
        Err(error) => error_response(&broker_error(&error)),
    }
}
