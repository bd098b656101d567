//! The workload identity pool providers a server trusts, as configured
//! (`baton serve --workload-identity-provider AUDIENCE=ISSUER[,JWKS_FILE]`):
//! each names its OIDC issuer, whose keys are given as a JSON Web Key Set
//! or fetched once at start from the issuer's discovery document. The
//! verification itself is [`baton_auth::federation`]'s.

use std::time::Duration;

use baton_auth::WorkloadIdentityProvider;

/// How long fetching an issuer's discovery document or keys may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A workload identity pool provider the Security Token Service
/// (`POST /v1/token`) trusts
/// ([`ServerConfig::with_workload_identity_provider`](crate::ServerConfig::with_workload_identity_provider)).
#[derive(Debug, Clone)]
pub struct WorkloadIdentityProviderSettings {
    /// The provider's name as the STS `audience`:
    /// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`.
    pub audience: String,
    /// The OIDC issuer whose tokens it takes (their `iss`).
    pub issuer: String,
    /// The issuer's JSON Web Key Set; `None` fetches it once at start from
    /// the issuer's discovery document
    /// (`ISSUER/.well-known/openid-configuration`, its `jwks_uri`), as
    /// Google does for providers without uploaded keys. Keys the issuer
    /// rotates in later are known after a restart.
    pub jwks: Option<serde_json::Value>,
}

/// A provider that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("workload identity provider {audience}: {message}")]
pub struct FederationError {
    /// The provider's audience.
    pub audience: String,
    /// What went wrong.
    pub message: String,
}

/// The provider `settings` describe, its issuer's keys fetched if not
/// given.
pub async fn provider(
    settings: &WorkloadIdentityProviderSettings,
) -> Result<WorkloadIdentityProvider, FederationError> {
    let failed = |message: String| FederationError {
        audience: settings.audience.clone(),
        message,
    };
    let jwks = match &settings.jwks {
        Some(jwks) => jwks.clone(),
        None => discover_jwks(&settings.issuer).await.map_err(failed)?,
    };
    WorkloadIdentityProvider::new(&settings.audience, &settings.issuer, &jwks)
        .map_err(|error| failed(error.to_string()))
}

/// The JWKS of an OIDC issuer, through its discovery document.
async fn discover_jwks(issuer: &str) -> Result<serde_json::Value, String> {
    let http = reqwest::Client::builder()
        .timeout(DISCOVERY_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let get = |url: String| {
        let http = http.clone();
        async move {
            let response = http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("fetching {url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("fetching {url}: {}", response.status()));
            }
            response
                .json::<serde_json::Value>()
                .await
                .map_err(|e| format!("{url} is not JSON: {e}"))
        }
    };
    let discovery = get(format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))
    .await?;
    let jwks_uri = discovery["jwks_uri"]
        .as_str()
        .ok_or_else(|| format!("the discovery document of {issuer} has no jwks_uri"))?;
    get(jwks_uri.to_string()).await
}
