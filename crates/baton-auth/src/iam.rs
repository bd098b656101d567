//! IAM roles and policy evaluation: the one table of Baton's predefined and
//! basic roles, and the check of a member's permission against the policies
//! of a resource and its project.
//!
//! Sources: Google's "Access control with IAM" page of Pub/Sub
//! (<https://cloud.google.com/pubsub/docs/access-control>), "Pub/Sub roles
//! and permissions" (<https://cloud.google.com/iam/docs/roles-permissions/pubsub>),
//! "Basic roles" (<https://cloud.google.com/iam/docs/roles-overview#basic>)
//! and the IAM roles of service accounts
//! (<https://cloud.google.com/iam/docs/roles-permissions/iam>). Only the
//! permissions Baton checks are listed (Google's roles also hold tag-binding,
//! KMS and other services' permissions); basic Viewer and Editor hold
//! `getIamPolicy` but not `setIamPolicy`, as documented; Pub/Sub Editor holds
//! neither.

use baton_proto::iam::Policy;

/// Every Pub/Sub permission Baton knows.
const PUBSUB_ALL: &[&str] = &[
    "pubsub.topics.attachSubscription",
    "pubsub.topics.create",
    "pubsub.topics.delete",
    "pubsub.topics.detachSubscription",
    "pubsub.topics.get",
    "pubsub.topics.getIamPolicy",
    "pubsub.topics.list",
    "pubsub.topics.publish",
    "pubsub.topics.setIamPolicy",
    "pubsub.topics.update",
    "pubsub.topics.updateTag",
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
    "pubsub.subscriptions.getIamPolicy",
    "pubsub.subscriptions.list",
    "pubsub.subscriptions.setIamPolicy",
    "pubsub.subscriptions.update",
    "pubsub.snapshots.create",
    "pubsub.snapshots.delete",
    "pubsub.snapshots.get",
    "pubsub.snapshots.getIamPolicy",
    "pubsub.snapshots.list",
    "pubsub.snapshots.seek",
    "pubsub.snapshots.setIamPolicy",
    "pubsub.snapshots.update",
    "pubsub.schemas.attach",
    "pubsub.schemas.commit",
    "pubsub.schemas.create",
    "pubsub.schemas.delete",
    "pubsub.schemas.get",
    "pubsub.schemas.getIamPolicy",
    "pubsub.schemas.list",
    "pubsub.schemas.listRevisions",
    "pubsub.schemas.rollback",
    "pubsub.schemas.setIamPolicy",
    "pubsub.schemas.validate",
];

/// `roles/pubsub.editor`: everything but reading and setting IAM policies.
const PUBSUB_EDITOR: &[&str] = &[
    "pubsub.topics.attachSubscription",
    "pubsub.topics.create",
    "pubsub.topics.delete",
    "pubsub.topics.detachSubscription",
    "pubsub.topics.get",
    "pubsub.topics.list",
    "pubsub.topics.publish",
    "pubsub.topics.update",
    "pubsub.topics.updateTag",
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
    "pubsub.subscriptions.list",
    "pubsub.subscriptions.update",
    "pubsub.snapshots.create",
    "pubsub.snapshots.delete",
    "pubsub.snapshots.get",
    "pubsub.snapshots.list",
    "pubsub.snapshots.seek",
    "pubsub.snapshots.update",
    "pubsub.schemas.attach",
    "pubsub.schemas.commit",
    "pubsub.schemas.create",
    "pubsub.schemas.delete",
    "pubsub.schemas.get",
    "pubsub.schemas.list",
    "pubsub.schemas.listRevisions",
    "pubsub.schemas.rollback",
    "pubsub.schemas.validate",
];

/// `roles/pubsub.viewer`.
const PUBSUB_VIEWER: &[&str] = &[
    "pubsub.topics.get",
    "pubsub.topics.list",
    "pubsub.subscriptions.get",
    "pubsub.subscriptions.list",
    "pubsub.snapshots.get",
    "pubsub.snapshots.list",
    "pubsub.schemas.get",
    "pubsub.schemas.list",
    "pubsub.schemas.listRevisions",
    "pubsub.schemas.validate",
];

/// `roles/pubsub.publisher`.
const PUBSUB_PUBLISHER: &[&str] = &["pubsub.topics.publish"];

/// `roles/pubsub.subscriber`.
const PUBSUB_SUBSCRIBER: &[&str] = &[
    "pubsub.snapshots.seek",
    "pubsub.subscriptions.consume",
    "pubsub.topics.attachSubscription",
];

/// `roles/iam.serviceAccountAdmin`.
const SERVICE_ACCOUNT_ADMIN: &[&str] = &[
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.disable",
    "iam.serviceAccounts.enable",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.update",
];

/// `roles/iam.serviceAccountKeyAdmin`.
const SERVICE_ACCOUNT_KEY_ADMIN: &[&str] = &[
    "iam.serviceAccountKeys.create",
    "iam.serviceAccountKeys.delete",
    "iam.serviceAccountKeys.get",
    "iam.serviceAccountKeys.list",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
];

/// `roles/iam.serviceAccountTokenCreator`: minting a service account's
/// access tokens (IAM Credentials' `generateAccessToken`, also as a link of
/// a delegation chain). Google's role also holds `getOpenIdToken`,
/// `implicitDelegation`, `signBlob` and `signJwt`, which Baton does not
/// serve. Not part of the basic roles: even an owner needs it granted.
const SERVICE_ACCOUNT_TOKEN_CREATOR: &[&str] = &[
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.list",
];

/// `roles/owner`: every permission Baton knows but minting a service
/// account's tokens (as Google's basic roles, which leave
/// `iam.serviceAccounts.getAccessToken` to Token Creator).
const OWNER: &[&str] = &[
    "pubsub.topics.attachSubscription",
    "pubsub.topics.create",
    "pubsub.topics.delete",
    "pubsub.topics.detachSubscription",
    "pubsub.topics.get",
    "pubsub.topics.getIamPolicy",
    "pubsub.topics.list",
    "pubsub.topics.publish",
    "pubsub.topics.setIamPolicy",
    "pubsub.topics.update",
    "pubsub.topics.updateTag",
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
    "pubsub.subscriptions.getIamPolicy",
    "pubsub.subscriptions.list",
    "pubsub.subscriptions.setIamPolicy",
    "pubsub.subscriptions.update",
    "pubsub.snapshots.create",
    "pubsub.snapshots.delete",
    "pubsub.snapshots.get",
    "pubsub.snapshots.getIamPolicy",
    "pubsub.snapshots.list",
    "pubsub.snapshots.seek",
    "pubsub.snapshots.setIamPolicy",
    "pubsub.snapshots.update",
    "pubsub.schemas.attach",
    "pubsub.schemas.commit",
    "pubsub.schemas.create",
    "pubsub.schemas.delete",
    "pubsub.schemas.get",
    "pubsub.schemas.getIamPolicy",
    "pubsub.schemas.list",
    "pubsub.schemas.listRevisions",
    "pubsub.schemas.rollback",
    "pubsub.schemas.setIamPolicy",
    "pubsub.schemas.validate",
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.disable",
    "iam.serviceAccounts.enable",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.update",
    "iam.serviceAccountKeys.create",
    "iam.serviceAccountKeys.delete",
    "iam.serviceAccountKeys.get",
    "iam.serviceAccountKeys.list",
    "resourcemanager.projects.getIamPolicy",
    "resourcemanager.projects.setIamPolicy",
];

/// `roles/editor`: everything but setting IAM policies.
const EDITOR: &[&str] = &[
    "pubsub.topics.attachSubscription",
    "pubsub.topics.create",
    "pubsub.topics.delete",
    "pubsub.topics.detachSubscription",
    "pubsub.topics.get",
    "pubsub.topics.getIamPolicy",
    "pubsub.topics.list",
    "pubsub.topics.publish",
    "pubsub.topics.update",
    "pubsub.topics.updateTag",
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
    "pubsub.subscriptions.getIamPolicy",
    "pubsub.subscriptions.list",
    "pubsub.subscriptions.update",
    "pubsub.snapshots.create",
    "pubsub.snapshots.delete",
    "pubsub.snapshots.get",
    "pubsub.snapshots.getIamPolicy",
    "pubsub.snapshots.list",
    "pubsub.snapshots.seek",
    "pubsub.snapshots.update",
    "pubsub.schemas.attach",
    "pubsub.schemas.commit",
    "pubsub.schemas.create",
    "pubsub.schemas.delete",
    "pubsub.schemas.get",
    "pubsub.schemas.getIamPolicy",
    "pubsub.schemas.list",
    "pubsub.schemas.listRevisions",
    "pubsub.schemas.rollback",
    "pubsub.schemas.validate",
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.disable",
    "iam.serviceAccounts.enable",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.update",
    "iam.serviceAccountKeys.create",
    "iam.serviceAccountKeys.delete",
    "iam.serviceAccountKeys.get",
    "iam.serviceAccountKeys.list",
    "resourcemanager.projects.getIamPolicy",
];

/// `roles/viewer`: reading everything, IAM policies included.
const VIEWER: &[&str] = &[
    "pubsub.topics.get",
    "pubsub.topics.getIamPolicy",
    "pubsub.topics.list",
    "pubsub.subscriptions.get",
    "pubsub.subscriptions.getIamPolicy",
    "pubsub.subscriptions.list",
    "pubsub.snapshots.get",
    "pubsub.snapshots.getIamPolicy",
    "pubsub.snapshots.list",
    "pubsub.schemas.get",
    "pubsub.schemas.getIamPolicy",
    "pubsub.schemas.list",
    "pubsub.schemas.listRevisions",
    "pubsub.schemas.validate",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccountKeys.get",
    "iam.serviceAccountKeys.list",
    "resourcemanager.projects.getIamPolicy",
];

/// The roles Baton knows, with their permissions.
pub const ROLES: &[(&str, &[&str])] = &[
    ("roles/owner", OWNER),
    ("roles/editor", EDITOR),
    ("roles/viewer", VIEWER),
    ("roles/pubsub.admin", PUBSUB_ALL),
    ("roles/pubsub.editor", PUBSUB_EDITOR),
    ("roles/pubsub.publisher", PUBSUB_PUBLISHER),
    ("roles/pubsub.subscriber", PUBSUB_SUBSCRIBER),
    ("roles/pubsub.viewer", PUBSUB_VIEWER),
    ("roles/iam.serviceAccountAdmin", SERVICE_ACCOUNT_ADMIN),
    (
        "roles/iam.serviceAccountKeyAdmin",
        SERVICE_ACCOUNT_KEY_ADMIN,
    ),
    (
        "roles/iam.serviceAccountTokenCreator",
        SERVICE_ACCOUNT_TOKEN_CREATOR,
    ),
];

/// The permissions of a role Baton knows; `None` for any other role
/// (custom roles are not supported).
pub fn role_permissions(role: &str) -> Option<&'static [&'static str]> {
    ROLES
        .iter()
        .find(|(name, _)| *name == role)
        .map(|(_, permissions)| *permissions)
}

/// Whether Baton knows the role (a policy naming another role is refused).
pub fn is_known_role(role: &str) -> bool {
    role_permissions(role).is_some()
}

/// Whether the permission is one Baton knows (held by a role it knows).
pub fn is_known_permission(permission: &str) -> bool {
    ROLES
        .iter()
        .any(|(_, permissions)| permissions.contains(&permission))
}

/// Whether `member` (e.g. `serviceAccount:EMAIL`) holds `permission` through
/// any binding of any of `policies` (a resource's and its project's): a
/// binding whose role includes the permission and that lists the member
/// (the email part compared case-insensitively, as Google does),
/// `allUsers` or `allAuthenticatedUsers`.
///
/// Bindings with a condition are not applied: Baton does not evaluate IAM
/// Conditions, and a conditional grant that is never applied can only deny,
/// never grant too much. The operator is not special here; the caller
/// short-circuits it.
pub fn allows(policies: &[&Policy], member: &str, permission: &str) -> bool {
    policies.iter().any(|policy| {
        policy.bindings.iter().any(|binding| {
            binding.condition.is_none()
                && role_permissions(&binding.role).is_some_and(|p| p.contains(&permission))
                && binding.members.iter().any(|m| member_matches(m, member))
        })
    })
}

/// The permissions of `permissions` that `member` holds, in request order
/// (what `TestIamPermissions` answers).
pub fn granted(policies: &[&Policy], member: &str, permissions: &[String]) -> Vec<String> {
    permissions
        .iter()
        .filter(|p| allows(policies, member, p))
        .cloned()
        .collect()
}

/// Whether a binding's member `listed` covers the caller `member`. Emails
/// compare case-insensitively; federated principals
/// (`principal://iam.googleapis.com/.../subject/SUB`) exactly, and a pool's
/// `principalSet://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/*`
/// covers every subject of the pool.
fn member_matches(listed: &str, member: &str) -> bool {
    if listed == "allUsers" || listed == "allAuthenticatedUsers" {
        return true;
    }
    if let Some(federated) = member.strip_prefix("principal://") {
        if let Some(pool) = listed
            .strip_prefix("principalSet://")
            .and_then(|set| set.strip_suffix("/*"))
            && pool.contains("/workloadIdentityPools/")
        {
            return federated
                .strip_prefix(pool)
                .is_some_and(|rest| rest.starts_with("/subject/"));
        }
        return listed == member;
    }
    match (listed.split_once(':'), member.split_once(':')) {
        (Some((listed_kind, listed_id)), Some((kind, id))) => {
            listed_kind == kind && listed_id.eq_ignore_ascii_case(id)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use baton_proto::iam::Binding;
    use proptest::prelude::*;

    use super::*;

    fn policy(bindings: &[(&str, &[&str])]) -> Policy {
        Policy {
            version: 1,
            bindings: bindings
                .iter()
                .map(|(role, members)| Binding {
                    role: role.to_string(),
                    members: members.iter().map(|m| m.to_string()).collect(),
                    condition: None,
                })
                .collect(),
            ..Policy::default()
        }
    }

    const SA: &str = "serviceAccount:robot-1@proj.iam.gserviceaccount.com";

    #[test]
    fn roles_nest_as_documented() {
        let subset = |small: &str, big: &str| {
            let big = role_permissions(big).unwrap();
            role_permissions(small)
                .unwrap()
                .iter()
                .all(|p| big.contains(p))
        };
        for (role, _) in ROLES {
            if *role != "roles/iam.serviceAccountTokenCreator" {
                assert!(subset(role, "roles/owner"), "{role}");
            }
        }
        // Minting another account's tokens is Token Creator's alone.
        let creator = role_permissions("roles/iam.serviceAccountTokenCreator").unwrap();
        assert!(creator.contains(&"iam.serviceAccounts.getAccessToken"));
        assert!(is_known_permission("iam.serviceAccounts.getAccessToken"));
        for basic in ["roles/owner", "roles/editor", "roles/viewer"] {
            assert!(
                !role_permissions(basic)
                    .unwrap()
                    .contains(&"iam.serviceAccounts.getAccessToken"),
                "{basic}"
            );
        }
        assert!(subset("roles/pubsub.editor", "roles/pubsub.admin"));
        assert!(subset("roles/pubsub.viewer", "roles/pubsub.editor"));
        assert!(subset("roles/pubsub.publisher", "roles/pubsub.editor"));
        assert!(subset("roles/pubsub.subscriber", "roles/pubsub.editor"));
        assert!(subset("roles/pubsub.editor", "roles/editor"));
        assert!(subset("roles/viewer", "roles/editor"));
        assert!(subset("roles/pubsub.viewer", "roles/viewer"));
        assert_eq!(PUBSUB_ALL.len(), 38);
        for permission in PUBSUB_ALL {
            assert!(is_known_permission(permission));
        }
        let editor = role_permissions("roles/pubsub.editor").unwrap();
        assert!(!editor.iter().any(|p| p.ends_with("IamPolicy")));
        let basic_editor = role_permissions("roles/editor").unwrap();
        assert!(basic_editor.contains(&"pubsub.topics.getIamPolicy"));
        assert!(!basic_editor.iter().any(|p| p.ends_with("setIamPolicy")));
        assert!(!is_known_role("roles/custom"));
        assert!(!is_known_permission("pubsub.topics.fly"));
    }

    #[test]
    fn bindings_grant_their_members() {
        let topic = policy(&[("roles/pubsub.publisher", &[SA])]);
        let project = policy(&[("roles/pubsub.viewer", &["allAuthenticatedUsers"])]);
        let both = [&topic, &project];
        assert!(allows(&both, SA, "pubsub.topics.publish"));
        assert!(allows(
            &both,
            "serviceAccount:ROBOT-1@proj.iam.gserviceaccount.com",
            "pubsub.topics.publish"
        ));
        assert!(!allows(
            &both,
            "user:robot-1@proj.iam.gserviceaccount.com",
            "pubsub.topics.publish"
        ));
        assert!(allows(&both, "serviceAccount:x@y", "pubsub.topics.get"));
        assert!(!allows(
            &both,
            "serviceAccount:x@y",
            "pubsub.topics.publish"
        ));
        assert!(!allows(&both, SA, "pubsub.topics.delete"));
        assert!(!allows(&[], SA, "pubsub.topics.get"));
        let asked = vec![
            "pubsub.topics.delete".to_string(),
            "pubsub.topics.publish".to_string(),
            "pubsub.topics.get".to_string(),
        ];
        assert_eq!(
            granted(&both, SA, &asked),
            ["pubsub.topics.publish", "pubsub.topics.get"]
        );
    }

    #[test]
    fn federated_principals_match_exactly_or_by_pool() {
        let pool = "iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci";
        let member = format!("principal://{pool}/subject/repo:org/app");
        let exact = policy(&[("roles/pubsub.publisher", &[member.as_str()])]);
        assert!(allows(&[&exact], &member, "pubsub.topics.publish"));
        let other = format!("principal://{pool}/subject/repo:org/APP");
        assert!(!allows(&[&exact], &other, "pubsub.topics.publish"));
        let set = format!("principalSet://{pool}/*");
        let whole_pool = policy(&[("roles/pubsub.publisher", &[set.as_str()])]);
        assert!(allows(&[&whole_pool], &member, "pubsub.topics.publish"));
        let elsewhere = "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/cin/subject/x";
        assert!(!allows(&[&whole_pool], elsewhere, "pubsub.topics.publish"));
        assert!(!allows(&[&whole_pool], SA, "pubsub.topics.publish"));
    }

    #[test]
    fn conditional_bindings_are_not_applied() {
        let mut conditional = policy(&[("roles/owner", &[SA])]);
        conditional.bindings[0].condition = Some(Default::default());
        assert!(!allows(&[&conditional], SA, "pubsub.topics.get"));
    }

    fn permission() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(OWNER.to_vec()).prop_map(str::to_string),
            "[a-z.]{0,20}",
        ]
    }

    proptest! {
        #[test]
        fn granted_is_the_asked_permissions_allowed(
            roles in proptest::collection::vec(
                (proptest::sample::select(ROLES.iter().map(|(r, _)| *r).collect::<Vec<_>>()),
                 proptest::sample::select(vec![SA, "allUsers", "user:x@y", "serviceAccount:other@p"])),
                0..6),
            asked in proptest::collection::vec(permission(), 0..10),
        ) {
            let policy = Policy {
                bindings: roles.iter().map(|(role, member)| Binding {
                    role: role.to_string(),
                    members: vec![member.to_string()],
                    condition: None,
                }).collect(),
                ..Policy::default()
            };
            let held = granted(&[&policy], SA, &asked);
            let expected: Vec<String> = asked
                .iter()
                .filter(|p| allows(&[&policy], SA, p))
                .cloned()
                .collect();
            prop_assert_eq!(&held, &expected);
            for p in &held {
                prop_assert!(asked.contains(p));
                prop_assert!(is_known_permission(p));
            }
        }
    }
}
