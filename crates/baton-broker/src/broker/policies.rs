//! The IAM policy mixin over topics, subscriptions, snapshots and schemas:
//! policies are stored per resource (see `crate::iam` for why nothing is
//! enforced yet).

use baton_proto::iam::Policy;

use super::Broker;
use super::state::State;
use crate::error::{BrokerError, BrokerResult};
use crate::names::{self, Collection};

/// The resource a policy call names must exist.
fn check_resource(state: &State, resource: &str) -> BrokerResult<()> {
    let collection = resource.split('/').nth(2).unwrap_or_default();
    let kind = match collection {
        "topics" => Collection::Topics,
        "subscriptions" => Collection::Subscriptions,
        "snapshots" => Collection::Snapshots,
        "schemas" => Collection::Schemas,
        _ => {
            return Err(BrokerError::invalid(format!(
                "Invalid resource name: {resource}"
            )));
        }
    };
    names::parse(resource, kind)?;
    let exists = match kind {
        Collection::Topics => state.topics.contains_key(resource),
        Collection::Subscriptions => state.subscriptions.contains_key(resource),
        Collection::Snapshots => state.snapshots.contains_key(resource),
        Collection::Schemas => state.schemas.get(resource, 0).is_ok(),
    };
    if exists {
        Ok(())
    } else {
        Err(BrokerError::not_found(format!(
            "Resource not found (resource={}).",
            resource.rsplit('/').next().unwrap_or(resource)
        )))
    }
}

impl Broker {
    /// GetIamPolicy.
    pub fn get_iam_policy(&self, resource: &str) -> BrokerResult<Policy> {
        let state = self.lock();
        check_resource(&state, resource)?;
        Ok(state.iam.get(resource))
    }

    /// SetIamPolicy; `paths` is the request's update mask (empty: replace).
    pub fn set_iam_policy(
        &self,
        resource: &str,
        policy: Policy,
        paths: &[String],
    ) -> BrokerResult<Policy> {
        self.change_catalog(|state| {
            check_resource(state, resource)?;
            state.iam.set(resource, policy, paths)
        })
    }

    /// TestIamPermissions: every permission asked for is granted.
    pub fn test_iam_permissions(
        &self,
        resource: &str,
        permissions: Vec<String>,
    ) -> BrokerResult<Vec<String>> {
        check_resource(&self.lock(), resource)?;
        Ok(permissions)
    }
}
