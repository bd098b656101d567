//! Workload Identity Federation: the workload identity pool providers Baton
//! trusts, and the check of the subject tokens their OIDC issuers sign,
//! as Google's Security Token Service (`sts.googleapis.com/v1/token`) makes
//! it before it exchanges one for a federated access token.
//!
//! A provider is named by its audience,
//! `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`,
//! and trusts one issuer, whose public keys (a JWKS, as the issuer's
//! `jwks_uri` publishes it, or as uploaded to Google with `jwksJson`) verify
//! RS256 subject tokens. The checks are Google's for OIDC providers without
//! `allowedAudiences`: `iss` is the issuer, `aud` is the provider's full
//! resource name (with or without `https:`), `exp` is in the future; the
//! default attribute mapping `google.subject = assertion.sub` names the
//! federated principal,
//! `principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUB`.

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

use crate::error::{AuthError, TokenEndpointError};
use crate::jwt::Jwt;

/// The `grant_type` of the OAuth 2.0 token exchange (RFC 8693).
pub const TOKEN_EXCHANGE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// A JWT subject token.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// An OIDC ID token subject token.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The only token type the exchange issues: an OAuth access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The host part of every provider audience and federated principal.
const IAM_HOST: &str = "//iam.googleapis.com/";
/// Longest `google.subject` Google maps, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 127;
/// How far in the future a subject token's `iat` may lie, in seconds.
const SKEW_SECONDS: u64 = 300;

/// Google's description of an audience no pool provider answers to.
pub const INVALID_TARGET_DESCRIPTION: &str = "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.";

/// The Security Token Service's answer to a token exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StsTokenResponse {
    /// A Baton access token for the federated principal.
    pub access_token: String,
    /// Always [`ACCESS_TOKEN_TYPE`].
    pub issued_token_type: String,
    /// Always `"Bearer"`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// A workload identity pool provider: the audience it answers to and the
/// OIDC issuer (with its keys) it trusts.
pub struct WorkloadIdentityProvider {
    audience: String,
    pool: String,
    issuer: String,
    keys: Vec<(Option<String>, DecodingKey)>,
}

impl std::fmt::Debug for WorkloadIdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentityProvider")
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`
/// (or the same with `https:`): the canonical form and the pool's name
/// (`projects/N/locations/global/workloadIdentityPools/P`).
pub fn parse_provider_audience(audience: &str) -> Result<(String, String), AuthError> {
    let canonical = audience.strip_prefix("https:").unwrap_or(audience);
    let invalid = || {
        AuthError::InvalidAccountId(format!(
            "{audience:?} is not a workload identity pool provider: expected //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER"
        ))
    };
    let path = canonical.strip_prefix(IAM_HOST).ok_or_else(invalid)?;
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [
            "projects",
            project,
            "locations",
            location,
            "workloadIdentityPools",
            pool,
            "providers",
            provider,
        ] if [project, location, pool, provider].iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) =>
        {
            Ok((
                canonical.to_string(),
                format!("projects/{project}/locations/{location}/workloadIdentityPools/{pool}"),
            ))
        }
        _ => Err(invalid()),
    }
}

impl WorkloadIdentityProvider {
    /// A provider answering to `audience` that trusts RS256 tokens of
    /// `issuer` signed by a key of `jwks` (a JSON Web Key Set).
    pub fn new(audience: &str, issuer: &str, jwks: &serde_json::Value) -> Result<Self, AuthError> {
        let (audience, pool) = parse_provider_audience(audience)?;
        let set: JwkSet = serde_json::from_value(jwks.clone())
            .map_err(|e| AuthError::Malformed(format!("not a JSON Web Key Set: {e}")))?;
        let keys: Vec<(Option<String>, DecodingKey)> = set
            .keys
            .iter()
            .filter(|jwk| {
                matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                )
            })
            .filter_map(|jwk| {
                DecodingKey::from_jwk(jwk)
                    .ok()
                    .map(|key| (jwk.common.key_id.clone(), key))
            })
            .collect();
        if keys.is_empty() {
            return Err(AuthError::Malformed(
                "the JSON Web Key Set has no RSA key".to_string(),
            ));
        }
        if issuer.is_empty() {
            return Err(AuthError::Malformed("an empty issuer".to_string()));
        }
        Ok(Self {
            audience,
            pool,
            issuer: issuer.to_string(),
            keys,
        })
    }

    /// The provider's audience, `//iam.googleapis.com/projects/...`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The issuer it trusts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The pool, `projects/N/locations/global/workloadIdentityPools/POOL`.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Whether an STS request's `audience` names this provider.
    pub fn answers_to(&self, audience: &str) -> bool {
        audience.strip_prefix("https:").unwrap_or(audience) == self.audience
    }

    /// The federated principal of `subject`.
    pub fn principal(&self, subject: &str) -> String {
        format!(
            "principal://iam.googleapis.com/{}/subject/{subject}",
            self.pool
        )
    }

    /// Verifies a subject token at `now` (Unix seconds); answers its
    /// `google.subject` (the `sub` claim).
    pub fn verify_subject_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<String, TokenEndpointError> {
        let jwt = Jwt::parse(token.trim()).map_err(|e| match e {
            AuthError::UnsupportedAlgorithm(alg) => TokenEndpointError::invalid_grant(format!(
                "Invalid subject token: the algorithm {alg:?} is not supported; the provider takes RS256."
            )),
            _ => TokenEndpointError::invalid_grant("Invalid subject token: not a signed JWT."),
        })?;
        let verified = self
            .keys
            .iter()
            .filter(|(kid, _)| jwt.kid.is_none() || kid.is_none() || *kid == jwt.kid)
            .any(|(_, key)| jwt.verify(key).is_ok());
        if !verified {
            return Err(TokenEndpointError::invalid_grant(
                "Invalid subject token: its signature does not verify with the keys of the provider's issuer.",
            ));
        }
        let iss = jwt.string("iss").unwrap_or_default();
        if iss.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(TokenEndpointError::invalid_grant(format!(
                "The issuer in ID Token {iss} does not match the expected ones: {}.",
                self.issuer
            )));
        }
        let https = format!("https:{}", self.audience);
        let audiences = jwt.audiences().unwrap_or_default();
        if !audiences
            .iter()
            .any(|aud| *aud == self.audience || *aud == https)
        {
            return Err(TokenEndpointError::invalid_grant(format!(
                "The audience in ID Token [{}] does not match the expected audience {https}.",
                audiences.join(", ")
            )));
        }
        let Some(exp) = jwt.seconds("exp") else {
            return Err(TokenEndpointError::invalid_grant(
                "Invalid subject token: no exp claim.",
            ));
        };
        if exp <= now {
            return Err(TokenEndpointError::invalid_grant(format!(
                "Invalid subject token: it expired at {exp} (now {now})."
            )));
        }
        if jwt
            .seconds("iat")
            .is_some_and(|iat| iat > now.saturating_add(SKEW_SECONDS))
        {
            return Err(TokenEndpointError::invalid_grant(
                "Invalid subject token: iat is in the future.",
            ));
        }
        let subject = jwt.string("sub").unwrap_or_default();
        if subject.is_empty() {
            return Err(TokenEndpointError::invalid_grant(
                "The mapped attribute google.subject (assertion.sub) is empty.",
            ));
        }
        if subject.len() > MAX_SUBJECT_BYTES {
            return Err(TokenEndpointError::invalid_grant(
                "The size of mapped attribute google.subject exceeds the 127 bytes limit. Either modify your attribute mapping or the incoming assertion to produce a mapped attribute that is less than 127 bytes.",
            ));
        }
        Ok(subject.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::keys::generate_rsa_key;
    use crate::signing::SigningKey;

    const AUDIENCE: &str =
        "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/gh";
    const ISSUER: &str = "https://token.actions.example.com";
    const NOW: u64 = 1_700_000_000;

    fn issuer_key() -> SigningKey {
        SigningKey::from_pkcs8_pem(&generate_rsa_key().unwrap().private_pkcs8_pem).unwrap()
    }

    #[test]
    fn audiences_name_a_pool_provider() {
        let (canonical, pool) = parse_provider_audience(&format!("https:{AUDIENCE}")).unwrap();
        assert_eq!(canonical, AUDIENCE);
        assert_eq!(
            pool,
            "projects/123/locations/global/workloadIdentityPools/ci"
        );
        for bad in [
            "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci",
            "https://example.com/x",
            "//iam.googleapis.com/projects//locations/global/workloadIdentityPools/ci/providers/gh",
        ] {
            assert!(parse_provider_audience(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subject_tokens_are_checked_like_googles_sts() {
        let key = issuer_key();
        let provider = WorkloadIdentityProvider::new(AUDIENCE, ISSUER, &key.jwks()).unwrap();
        assert!(provider.answers_to(&format!("https:{AUDIENCE}")));
        let claims = |iss: &str, aud: &str, exp: u64, sub: &str| json!({"iss": iss, "aud": aud, "sub": sub, "iat": NOW, "exp": exp});
        let good = key
            .sign(&claims(
                ISSUER,
                &format!("https:{AUDIENCE}"),
                NOW + 600,
                "repo:x",
            ))
            .unwrap();
        assert_eq!(provider.verify_subject_token(&good, NOW).unwrap(), "repo:x");
        assert_eq!(
            provider.principal("repo:x"),
            "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/subject/repo:x"
        );
        let plain = key.sign(&claims(ISSUER, AUDIENCE, NOW + 600, "s")).unwrap();
        assert!(provider.verify_subject_token(&plain, NOW).is_ok());
        let cases = [
            (
                key.sign(&claims("https://evil", AUDIENCE, NOW + 600, "s"))
                    .unwrap(),
                "issuer",
            ),
            (
                key.sign(&claims(ISSUER, "https://other", NOW + 600, "s"))
                    .unwrap(),
                "audience",
            ),
            (
                key.sign(&claims(ISSUER, AUDIENCE, NOW, "s")).unwrap(),
                "expired",
            ),
            (
                key.sign(&claims(ISSUER, AUDIENCE, NOW + 600, &"s".repeat(128)))
                    .unwrap(),
                "127 bytes",
            ),
            (
                issuer_key()
                    .sign(&claims(ISSUER, AUDIENCE, NOW + 600, "s"))
                    .unwrap(),
                "signature",
            ),
            ("garbage".to_string(), "not a signed JWT"),
        ];
        for (token, expected) in cases {
            let error = provider.verify_subject_token(&token, NOW).unwrap_err();
            assert_eq!(error.error, "invalid_grant");
            assert!(
                error.error_description.contains(expected),
                "{expected}: {error}"
            );
        }
    }

    #[test]
    fn a_key_set_without_rsa_keys_is_refused() {
        assert!(WorkloadIdentityProvider::new(AUDIENCE, ISSUER, &json!({"keys": []})).is_err());
        assert!(WorkloadIdentityProvider::new(AUDIENCE, ISSUER, &json!("x")).is_err());
    }
}
