//! Baton as an identity provider, the way Google's client libraries expect
//! one: service accounts and their key files (the IAM API's REST shape), the
//! OAuth token endpoint a key file's `token_uri` names, the OpenID discovery
//! document and signing certificates that push receivers verify ID tokens
//! with, the metadata server's token endpoints ([`metadata`]), the IAM
//! Credentials API's `generateAccessToken`, authorized users' refresh
//! tokens, and the Security Token Service of Workload Identity Federation
//! (its providers: [`federation`]).
//!
//! The credential logic itself is `baton_auth`'s; this module keeps its
//! state for one server and serves it over HTTP.

pub mod federation;
pub mod metadata;
mod routes;
mod state;

pub use routes::router;
pub use state::{Identity, random_token, write_secret};
