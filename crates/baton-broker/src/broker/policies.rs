//! The IAM policy mixin over projects, topics, subscriptions, snapshots and
//! schemas: policies are stored per resource. The server enforces them when
//! authentication is on ([`Broker::with_policies`] is what it reads).

use baton_proto::iam::Policy;

use super::Broker;
use super::effects::CatalogEntry;
use super::state::State;
use crate::error::{BrokerError, BrokerResult};
use crate::names::{self, Collection};

/// The resource a policy call names must exist. A project (`projects/p`)
/// always exists: projects are implicit, as on a local server.
fn check_resource(state: &State, resource: &str) -> BrokerResult<()> {
    if let Some(project) = resource.strip_prefix("projects/")
        && !project.contains('/')
    {
        names::parse_project(resource)?;
        return Ok(());
    }
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
        self.change_catalog(CatalogEntry::Policy(resource.to_string()), |state| {
            check_resource(state, resource)?;
            state.iam.set(resource, policy, paths)
        })
    }

    /// Runs `check` over the stored policies of `resources` (those without a
    /// policy are left out): the request layer's IAM check on every request,
    /// so nothing is cloned, and the policies are read apart from the
    /// broker's lock (a reader never waits for a publish).
    pub fn with_policies<R>(&self, resources: &[&str], check: impl FnOnce(&[&Policy]) -> R) -> R {
        let stored = self.policies.read();
        let policies: Vec<&Policy> = resources
            .iter()
            .filter_map(|resource| stored.get(*resource))
            .collect();
        check(&policies)
    }

    /// TestIamPermissions without authentication: every permission asked
    /// for is granted (the server answers from the policies when
    /// authentication is on).
    pub fn test_iam_permissions(
        &self,
        resource: &str,
        permissions: Vec<String>,
    ) -> BrokerResult<Vec<String>> {
        check_resource(&self.lock(), resource)?;
        Ok(permissions)
    }
}
