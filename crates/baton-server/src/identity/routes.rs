//! The identity endpoints on the main port:
//!
//! - `POST /token`: the OAuth 2.0 JWT-bearer grant that Google's libraries
//!   make with a service-account key file (its `token_uri`);
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
use baton_auth::{AuthError, ServiceAccount, ServiceAccountKey};
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
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/oauth2/v1/certs", get(x509_certs))
        .route("/oauth2/v3/certs", get(jwks))
        .route(accounts, get(list_accounts).post(create_account))
        .route(
            &format!("{accounts}/{{account}}"),
            get(get_account).delete(delete_account),
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

async fn token(State(state): State<Arc<IdentityState>>, body: axum::body::Bytes) -> Response {
    if body.len() > MAX_TOKEN_REQUEST_BYTES {
        return token_error("invalid_request", "Request too large.");
    }
    let authenticator = match state.identity.authenticator_async().await {
        Ok(authenticator) => authenticator,
        Err(error) => return error_response(&broker_error(&error)),
    };
    match authenticator.exchange_jwt_bearer(
        &body,
        &state.identity.token_uri(),
        state.identity.now(),
    ) {
        Ok(token) => ([(header::CACHE_CONTROL, "no-store")], Json(json!(token))).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!(error))).into_response(),
    }
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
