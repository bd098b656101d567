//! The metadata server's identity endpoints, on a port of their own, so
//! that code which authenticates "as if on GKE or Compute Engine" gets
//! tokens from Baton: point `GCE_METADATA_HOST` (and, for Python's
//! google-auth, `GCE_METADATA_IP`) at this port.
//!
//! It answers for one service account, the instance's "default" one, as the
//! real metadata server does: its email, scopes, OAuth access tokens and ID
//! tokens, the project id and the universe domain. Every request under
//! `/computeMetadata/` must carry `Metadata-Flavor: Google`, and every
//! answer carries it back (that header is how libraries detect the server).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_auth::ServiceAccount;
use serde_json::json;

use super::state::Identity;

/// The header both ways.
const FLAVOR: &str = "metadata-flavor";
/// Scopes a token has when the caller asks for none (Compute Engine's
/// default for a service account with full API access).
const DEFAULT_SCOPES: &[&str] = &["https://www.googleapis.com/auth/cloud-platform"];

#[derive(Debug)]
struct MetadataState {
    identity: Identity,
    /// The instance's service account, by email.
    account: String,
}

/// The metadata server for `identity`, speaking for the service account
/// `account` (which must exist when a token is asked for).
pub fn router(identity: Identity, account: String) -> Router {
    Router::new()
        .fallback(serve)
        .with_state(Arc::new(MetadataState { identity, account }))
}

fn flavored(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(FLAVOR, HeaderValue::from_static("Google"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::SERVER,
        HeaderValue::from_static("Metadata Server for VM"),
    );
    response
}

fn text(body: impl Into<String>) -> Response {
    flavored(StatusCode::OK, "application/text", body.into())
}

fn not_found() -> Response {
    flavored(StatusCode::NOT_FOUND, "text/html", "Not Found\n".into())
}

async fn serve(
    State(state): State<Arc<MetadataState>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    if path == "/" {
        return text("computeMetadata/\n");
    }
    let Some(rest) = path.strip_prefix("/computeMetadata/v1") else {
        return not_found();
    };
    let flavor_ok = request
        .headers()
        .get(FLAVOR)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"google"));
    if !flavor_ok {
        return flavored(
            StatusCode::FORBIDDEN,
            "text/html",
            "Missing required header: \"Metadata-Flavor\"\n".into(),
        );
    }
    let account = state.identity.accounts().get(&state.account);
    let recursive = query.get("recursive").is_some_and(|v| v == "true");
    let rest = rest.trim_end_matches('/');
    match rest {
        "" => text("instance/\nproject/\nuniverse/\n"),
        "/instance" => text("service-accounts/\n"),
        "/project" => text("project-id\nnumeric-project-id\n"),
        "/project/project-id" => match &account {
            Some(account) => text(account.project_id.clone()),
            None => not_found(),
        },
        "/project/numeric-project-id" => match &account {
            Some(account) => text(numeric_project_id(&account.project_id)),
            None => not_found(),
        },
        "/universe/universe-domain" => text("googleapis.com"),
        "/instance/service-accounts" => match &account {
            Some(account) => text(format!("default/\n{}/\n", account.email)),
            None => text(""),
        },
        other => match other.strip_prefix("/instance/service-accounts/") {
            Some(rest) => service_account(&state, account.as_ref(), rest, &query, recursive).await,
            None => not_found(),
        },
    }
}

/// `/instance/service-accounts/{default|email}[/{attribute}]`.
async fn service_account(
    state: &MetadataState,
    account: Option<&ServiceAccount>,
    rest: &str,
    query: &HashMap<String, String>,
    recursive: bool,
) -> Response {
    let (name, attribute) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(account) = account.filter(|a| name == "default" || name == a.email) else {
        return not_found();
    };
    match attribute {
        "" if recursive => flavored(
            StatusCode::OK,
            "application/json",
            json!({
                "aliases": ["default"],
                "email": account.email,
                "scopes": DEFAULT_SCOPES,
            })
            .to_string(),
        ),
        "" => text("aliases\nemail\nidentity\nscopes\ntoken\n"),
        "aliases" => text("default"),
        "email" => text(account.email.clone()),
        "scopes" => text(DEFAULT_SCOPES.join("\n")),
        "token" => {
            let scopes: Vec<String> = match query.get("scopes") {
                Some(scopes) => scopes.split(',').map(str::to_string).collect(),
                None => DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
            };
            let minted = match state.identity.authenticator_async().await {
                Ok(authenticator) => {
                    authenticator.mint_access_token(&account.email, &scopes, state.identity.now())
                }
                Err(error) => Err(error),
            };
            match minted {
                Ok(token) => flavored(StatusCode::OK, "application/json", json!(token).to_string()),
                Err(error) => unavailable(&error),
            }
        }
        "identity" => {
            let Some(audience) = query.get("audience").filter(|a| !a.is_empty()) else {
                return flavored(
                    StatusCode::BAD_REQUEST,
                    "text/html",
                    "non-empty audience parameter required\n".into(),
                );
            };
            let minted = match state.identity.authenticator_async().await {
                Ok(authenticator) => {
                    authenticator.mint_id_token(&account.email, audience, state.identity.now())
                }
                Err(error) => Err(error),
            };
            match minted {
                Ok(token) => text(token),
                Err(error) => unavailable(&error),
            }
        }
        _ => not_found(),
    }
}

fn unavailable(error: &baton_auth::AuthError) -> Response {
    tracing::warn!(%error, "metadata server could not mint a token");
    flavored(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/html",
        format!("{error}\n"),
    )
}

/// A stable 12-digit number for a project id (projects here have no
/// number of their own).
fn numeric_project_id(project: &str) -> String {
    let hash = project.bytes().fold(1_469_598_103_934_665_603_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    });
    format!("{}", 100_000_000_000 + hash % 900_000_000_000)
}
