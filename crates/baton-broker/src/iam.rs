//! IAM policies on topics, subscriptions, snapshots and schemas.
//!
//! Policies are stored and answered the way the real service answers: an
//! unset policy is empty with an etag and a write with a stale etag is
//! refused. The broker only keeps them; the server enforces them when
//! authentication is on (with it off, like any local server, every caller
//! may do everything and TestIamPermissions grants what is asked).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use baton_proto::iam::Policy;

use crate::error::{BrokerError, BrokerResult, ErrorCode};

/// Etag of a resource that never had a policy set (the real service's `ACAB`).
const EMPTY_POLICY_ETAG: &[u8] = &[0x00, 0x20, 0x01];

/// Policies by resource name, shared between the broker's state (which
/// changes them, under the broker's lock) and the readers of
/// [`PolicyView`]: the server's IAM check reads them on every request, and
/// must not queue behind publishes for the broker's lock.
type PolicyMap = Arc<RwLock<HashMap<String, Policy>>>;

/// Stored policies by resource name.
#[derive(Debug, Default)]
pub(crate) struct IamPolicies {
    policies: PolicyMap,
    next_etag: u64,
}

/// A read-only handle on the stored policies, apart from the broker's lock.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyView(PolicyMap);

impl PolicyView {
    /// The policies, read-locked.
    pub fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Policy>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl IamPolicies {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Policy>> {
        self.policies.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Policy>> {
        self.policies
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle that reads these policies without the broker's lock.
    pub fn view(&self) -> PolicyView {
        PolicyView(self.policies.clone())
    }

    /// The resource's policy (empty, with an etag, when none was set).
    pub fn get(&self, resource: &str) -> Policy {
        self.read()
            .get(resource)
            .cloned()
            .unwrap_or_else(|| Policy {
                etag: EMPTY_POLICY_ETAG.to_vec(),
                ..Default::default()
            })
    }

    /// Replaces the policy (or, with `paths`, the named fields of it). A
    /// non-empty etag must match the current one.
    pub fn set(
        &mut self,
        resource: &str,
        policy: Policy,
        paths: &[String],
    ) -> BrokerResult<Policy> {
        let current = self.get(resource);
        if !policy.etag.is_empty() && policy.etag != current.etag {
            return Err(BrokerError::new(
                ErrorCode::Aborted,
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
        let mut next = if paths.is_empty() {
            policy
        } else {
            let mut merged = current;
            for path in paths {
                match path.as_str() {
                    "bindings" => merged.bindings = policy.bindings.clone(),
                    "etag" => {}
                    "audit_configs" => merged.audit_configs = policy.audit_configs.clone(),
                    "version" => merged.version = policy.version,
                    other => {
                        return Err(BrokerError::invalid(format!(
                            "Invalid update_mask path: {other}"
                        )));
                    }
                }
            }
            merged
        };
        self.next_etag += 1;
        next.etag = self.next_etag.to_be_bytes().to_vec();
        if next.version == 0 && !next.bindings.is_empty() {
            next.version = 1;
        }
        self.write().insert(resource.to_string(), next.clone());
        Ok(next)
    }

    /// Every stored policy, for the disk store.
    #[cfg(test)]
    pub fn export(&self) -> Vec<(String, Policy)> {
        self.read()
            .iter()
            .map(|(resource, policy)| (resource.clone(), policy.clone()))
            .collect()
    }

    /// The policy set on `resource`, if one was (what the disk store keeps).
    pub fn stored(&self, resource: &str) -> Option<Policy> {
        self.read().get(resource).cloned()
    }

    /// Rebuilds the policies the disk store kept; later etags stay unique.
    pub fn restore(policies: Vec<(String, Policy)>) -> Self {
        let next_etag = policies
            .iter()
            .filter_map(|(_, p)| <[u8; 8]>::try_from(p.etag.as_slice()).ok())
            .map(u64::from_be_bytes)
            .max()
            .unwrap_or(0);
        Self {
            policies: Arc::new(RwLock::new(policies.into_iter().collect())),
            next_etag,
        }
    }

    /// Forgets the policy of a deleted resource.
    pub fn remove(&mut self, resource: &str) {
        self.write().remove(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::iam::Binding;

    #[test]
    fn set_get_and_stale_etag() {
        let mut iam = IamPolicies::default();
        let empty = iam.get("projects/p/topics/t");
        assert!(empty.bindings.is_empty());
        assert!(!empty.etag.is_empty());
        let policy = Policy {
            bindings: vec![Binding {
                role: "roles/pubsub.publisher".into(),
                members: vec!["user:a@example.test".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let stored = iam.set("projects/p/topics/t", policy.clone(), &[]).unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(iam.get("projects/p/topics/t"), stored);
        let mut stale = policy;
        stale.etag = empty.etag;
        let error = iam.set("projects/p/topics/t", stale, &[]).unwrap_err();
        assert_eq!(error.code, ErrorCode::Aborted);
    }
}
