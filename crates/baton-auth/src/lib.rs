//! Baton's identity and credential core for its "serve like production"
//! mode: service accounts and their Google-format key files
//! ([`accounts`], [`keys`]), Baton's own signing key ([`signing`]), the
//! verifier of bearer credentials, the JWT-bearer token exchange and the
//! tokens Baton mints ([`verify`]), authorized users' refresh-token grants
//! ([`users`]), Workload Identity Federation's pool providers
//! ([`federation`]), and the IAM roles table with policy evaluation
//! ([`iam`]).
//!
//! Pure logic, no networking: the server mounts it over HTTP and gRPC.
//! Every check that depends on time takes `now` as an argument.

pub mod accounts;
pub mod error;
pub mod federation;
mod fsutil;
pub mod iam;
mod jwt;
pub mod keys;
pub mod signing;
pub mod users;
pub mod verify;

pub use accounts::{ServiceAccount, ServiceAccountKey, ServiceAccounts};
pub use error::AuthError;
pub use federation::{StsTokenResponse, WorkloadIdentityProvider};
pub use fsutil::write_atomically;
pub use keys::{GeneratedKey, ServiceAccountKeyFile, generate_rsa_key};
pub use signing::SigningKey;
pub use users::{AuthorizedUserFile, UserGrant, UserGrants};
pub use verify::{Authenticator, Principal, TokenEndpointError, TokenResponse};
