//! Splitting and decoding a compact JWT before any key is chosen: the header
//! (to pick the key by `kid` and refuse every algorithm but RS256) and the
//! claims (to route and check them); then the RS256 signature check.
//! Claims are only trusted after [`Jwt::verify`] succeeded.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::error::AuthError;

/// A JWT, split and decoded, its signature not yet checked.
pub(crate) struct Jwt<'a> {
    /// The header's `kid`, if any.
    pub(crate) kid: Option<String>,
    /// The claims.
    pub(crate) claims: Map<String, Value>,
    /// `base64(header) "." base64(claims)`: what the signature signs.
    message: &'a str,
    signature: &'a str,
}

impl<'a> Jwt<'a> {
    /// Splits and decodes `token`; refuses anything but a three-part JWT
    /// whose header says `"alg":"RS256"`.
    pub(crate) fn parse(token: &'a str) -> Result<Jwt<'a>, AuthError> {
        let malformed = |what: &str| AuthError::Malformed(what.to_string());
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| malformed("not a JWT"))?;
        let (header, payload) = message
            .split_once('.')
            .ok_or_else(|| malformed("not a JWT"))?;
        let header: Map<String, Value> = decode_part(header)?;
        match header.get("alg") {
            Some(Value::String(alg)) if alg == "RS256" => {}
            Some(Value::String(alg)) => return Err(AuthError::UnsupportedAlgorithm(alg.clone())),
            _ => return Err(AuthError::UnsupportedAlgorithm(String::new())),
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(malformed("the kid is not a string")),
        };
        let claims: Map<String, Value> = decode_part(payload)?;
        // Padding is tolerated as in the other parts: gcp_auth (Rust) pads
        // every part of its assertions, and Google's endpoints accept them.
        let signature = signature.trim_end_matches('=');
        if signature.is_empty() {
            return Err(AuthError::BadSignature);
        }
        Ok(Jwt {
            kid,
            claims,
            message,
            signature,
        })
    }

    /// Whether `key` made the RS256 signature.
    pub(crate) fn verify(&self, key: &DecodingKey) -> Result<(), AuthError> {
        match jsonwebtoken::crypto::verify(
            self.signature,
            self.message.as_bytes(),
            key,
            Algorithm::RS256,
        ) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(AuthError::BadSignature),
        }
    }

    /// A string claim.
    pub(crate) fn string(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric date claim (`iat`, `exp`) in whole seconds; fractions are
    /// dropped, negative or non-numeric values are `None`.
    pub(crate) fn seconds(&self, name: &str) -> Option<u64> {
        let value = self.claims.get(name)?;
        value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1.0e15)
                .map(|f| f as u64)
        })
    }

    /// The `aud` claim as its values (a string or an array of strings);
    /// `None` when absent.
    pub(crate) fn audiences(&self) -> Option<Vec<&str>> {
        match self.claims.get("aud")? {
            Value::String(aud) => Some(vec![aud.as_str()]),
            Value::Array(values) => Some(values.iter().filter_map(Value::as_str).collect()),
            // `"aud": null` is no audience: google-cloud-auth's self-signed
            // JWTs with a scope carry it.
            Value::Null => None,
            _ => Some(Vec::new()),
        }
    }
}

fn decode_part(part: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("a JWT part is not base64url".to_string()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("a JWT part is not a JSON object".to_string()))
}
