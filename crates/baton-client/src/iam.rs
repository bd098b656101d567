//! IAM policies of topics, subscriptions, snapshots and schemas (the
//! `google.iam.v1.IAMPolicy` mixin the Pub/Sub endpoint serves).
//!
//! Resources are full names: [`Client::topic_name`],
//! [`Client::subscription_name`], [`Client::snapshot_name`] and
//! [`Client::schema_name`] make them from ids.

/// The policy types, as the API defines them: a policy is bindings of a
/// role to members (`user:`, `serviceAccount:`, `group:`, `allUsers`...).
pub use baton_proto::iam::{Binding, Policy};
use baton_proto::iam::{
    GetIamPolicyRequest, GetPolicyOptions, SetIamPolicyRequest, TestIamPermissionsRequest,
};

use crate::client::Client;
use crate::error::AdminError;
use crate::retry::CallFamily;

type Result<T, E = AdminError> = std::result::Result<T, E>;

/// Adds `member` to the binding of `role` in `policy` (making the binding
/// when there is none); `false` when it was already there. Keep the
/// policy's `etag` and pass it to [`Client::set_iam_policy`] so a
/// concurrent change fails instead of being overwritten.
///
/// ```
/// use baton_client::iam::{Policy, add_binding};
/// let mut policy = Policy::default();
/// assert!(add_binding(&mut policy, "roles/pubsub.viewer", "user:ana@example.com"));
/// assert!(!add_binding(&mut policy, "roles/pubsub.viewer", "user:ana@example.com"));
/// assert_eq!(policy.bindings[0].members, ["user:ana@example.com"]);
/// ```
pub fn add_binding(policy: &mut Policy, role: &str, member: &str) -> bool {
    let binding = match policy
        .bindings
        .iter_mut()
        .position(|b| b.role == role && b.condition.is_none())
    {
        Some(index) => &mut policy.bindings[index],
        None => {
            policy.bindings.push(Binding {
                role: role.to_string(),
                ..Default::default()
            });
            let last = policy.bindings.len() - 1;
            &mut policy.bindings[last]
        }
    };
    if binding.members.iter().any(|m| m == member) {
        return false;
    }
    binding.members.push(member.to_string());
    true
}

/// Removes `member` from the binding of `role` (dropping the binding when
/// it empties); `false` when the policy had no such member.
///
/// ```
/// use baton_client::iam::{Policy, add_binding, remove_binding};
/// let mut policy = Policy::default();
/// add_binding(&mut policy, "roles/pubsub.viewer", "user:ana@example.com");
/// assert!(remove_binding(&mut policy, "roles/pubsub.viewer", "user:ana@example.com"));
/// assert!(policy.bindings.is_empty());
/// ```
pub fn remove_binding(policy: &mut Policy, role: &str, member: &str) -> bool {
    let mut removed = false;
    for binding in policy.bindings.iter_mut().filter(|b| b.role == role) {
        let before = binding.members.len();
        binding.members.retain(|m| m != member);
        removed |= binding.members.len() != before;
    }
    policy.bindings.retain(|b| !b.members.is_empty());
    removed
}

impl Client {
    /// The IAM policy of a topic, subscription, snapshot or schema
    /// (`resource` is its full name).
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// let policy = client.get_iam_policy(&client.topic_name("orders")).await?;
    /// for binding in &policy.bindings {
    ///     println!("{}: {:?}", binding.role, binding.members);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get_iam_policy(&self, resource: &str) -> Result<Policy> {
        let request = GetIamPolicyRequest {
            resource: resource.to_string(),
            options: Some(GetPolicyOptions {
                requested_policy_version: 3,
            }),
        };
        self.unary(
            CallFamily::AdminRead,
            resource,
            request,
            |c, r| async move { c.iam_stub().get_iam_policy(r).await },
        )
        .await
    }

    /// Replaces the IAM policy of `resource`. With the `etag` of the policy
    /// it was read from, a change made since fails with ABORTED instead of
    /// being overwritten.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::iam::add_binding;
    /// let topic = client.topic_name("orders");
    /// let mut policy = client.get_iam_policy(&topic).await?;
    /// add_binding(&mut policy, "roles/pubsub.publisher", "serviceAccount:svc@p.iam.gserviceaccount.com");
    /// client.set_iam_policy(&topic, policy).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_iam_policy(&self, resource: &str, policy: Policy) -> Result<Policy> {
        let request = SetIamPolicyRequest {
            resource: resource.to_string(),
            policy: Some(policy),
            update_mask: None,
        };
        self.unary(
            CallFamily::AdminWrite,
            resource,
            request,
            |c, r| async move { c.iam_stub().set_iam_policy(r).await },
        )
        .await
    }

    /// Which of `permissions` (`pubsub.topics.publish`...) the caller has on
    /// `resource`.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// let granted = client
    ///     .test_iam_permissions(&client.topic_name("orders"), &["pubsub.topics.publish"])
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn test_iam_permissions(
        &self,
        resource: &str,
        permissions: &[&str],
    ) -> Result<Vec<String>> {
        let request = TestIamPermissionsRequest {
            resource: resource.to_string(),
            permissions: permissions.iter().map(|p| (*p).to_string()).collect(),
        };
        let response = self
            .unary(
                CallFamily::AdminWrite,
                resource,
                request,
                |c, r| async move { c.iam_stub().test_iam_permissions(r).await },
            )
            .await?;
        Ok(response.permissions)
    }
}
