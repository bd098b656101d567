//! Authentication and IAM for every RPC, when authentication is on: who is
//! calling (the credential in the `authorization` header, verified by
//! [`baton_auth::Authenticator`]) and whether a policy on the resource or
//! its project grants what [`permissions`](super::permissions) says the RPC
//! needs. The checks an RPC makes are [`Checks`]; which ones is the table in
//! `permissions`.

use std::sync::Arc;

use baton_auth::{Authenticator, Principal};
use baton_broker::{Broker, BrokerError, BrokerResult};

/// One permission the caller must hold on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check<'a> {
    /// The IAM permission, `pubsub.topics.publish`.
    pub permission: &'static str,
    /// The resource it is checked on (`projects/p/topics/t`, or the
    /// project `projects/p`).
    pub resource: &'a str,
}

/// The checks of one request: at most two (a permission on the resource,
/// and one on a second resource it names, such as the topic a new
/// subscription attaches to).
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks<'a>([Option<Check<'a>>; 2]);

impl<'a> Checks<'a> {
    /// No permission needed (TestIamPermissions).
    pub const fn none() -> Self {
        Self([None, None])
    }

    /// `permission` on `resource`, for checks outside this table (the IAM
    /// API's service-account methods).
    pub fn one(permission: &'static str, resource: &'a str) -> Self {
        on(permission, resource)
    }

    /// Every check, in order.
    pub fn iter(&self) -> impl Iterator<Item = Check<'a>> + '_ {
        self.0.iter().flatten().copied()
    }

    pub(crate) fn and(mut self, check: Option<Check<'a>>) -> Self {
        if self.0[0].is_none() {
            self.0[0] = check;
        } else {
            self.0[1] = check;
        }
        self
    }
}

/// `permission` on `resource`.
pub(crate) fn on<'a>(permission: &'static str, resource: &'a str) -> Checks<'a> {
    Checks::none().and(Some(Check {
        permission,
        resource,
    }))
}

/// `permission` on the project containing `name` (`projects/p` of
/// `projects/p/topics/t`).
pub(crate) fn on_project<'a>(permission: &'static str, name: &'a str) -> Checks<'a> {
    on(permission, project_of(name))
}

/// The project part of a resource name; a name that is not under a project
/// is returned whole (the handler rejects it after the check).
pub fn project_of(name: &str) -> &str {
    match name.strip_prefix("projects/") {
        Some(rest) => {
            let end = rest.find('/').map_or(name.len(), |i| "projects/".len() + i);
            &name[..end]
        }
        None => name,
    }
}

/// The gate every request passes when authentication is on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessControl {
    authenticator: Arc<Authenticator>,
}

impl AccessControl {
    /// Checks credentials with `authenticator`.
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Self { authenticator }
    }

    /// The verifier behind the gate.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    /// Who sent a request with this `authorization` header: UNAUTHENTICATED, with the real service's
    /// wording, for a missing or bad credential. Time is the broker's clock,
    /// so tokens expire on virtual time in tests.
    pub fn authenticate(
        &self,
        broker: &Broker,
        authorization: Option<&http::HeaderValue>,
    ) -> BrokerResult<Principal> {
        let header = authorization.map(|value| value.as_bytes());
        self.authenticator
            .verify_bearer(header, broker.clock().wall())
            .map_err(|error| {
                tracing::debug!(%error, "credential refused");
                BrokerError::unauthenticated(error.wire_message())
            })
    }

    /// PERMISSION_DENIED unless `principal` holds every permission of
    /// `checks`, granted by a policy on the resource or on its project.
    pub fn authorize(
        &self,
        broker: &Broker,
        principal: &Principal,
        checks: Checks<'_>,
    ) -> BrokerResult<()> {
        if matches!(principal, Principal::Operator) {
            return Ok(());
        }
        let member = principal.member();
        for check in checks.iter() {
            let resource = check.resource;
            let project = project_of(resource);
            let allowed = broker.with_policies(&[resource, project], |policies| {
                baton_auth::iam::allows(policies, &member, check.permission)
            });
            if !allowed {
                tracing::debug!(
                    member,
                    permission = check.permission,
                    resource,
                    "permission denied"
                );
                return Err(BrokerError::permission_denied());
            }
        }
        Ok(())
    }

    /// TestIamPermissions: the permissions of `asked` that `principal` holds
    /// on `resource`, in the order asked.
    pub fn granted(
        &self,
        broker: &Broker,
        principal: &Principal,
        resource: &str,
        asked: Vec<String>,
    ) -> Vec<String> {
        if matches!(principal, Principal::Operator) {
            return asked;
        }
        let member = principal.member();
        broker.with_policies(&[resource, project_of(resource)], |policies| {
            baton_auth::iam::granted(policies, &member, &asked)
        })
    }
}
