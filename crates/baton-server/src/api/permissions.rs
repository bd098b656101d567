//! The IAM permissions each RPC needs, and on which resource: the one table
//! the request layer checks when authentication is on.
//!
//! Source: the "Required permissions" tables of Google's Pub/Sub access
//! control page (<https://cloud.google.com/pubsub/docs/access-control>): a
//! permission on the requested resource, or on the containing project for
//! creating and listing. A policy on the resource or on its project grants
//! it (`AccessControl::authorize` reads both). What each role holds is
//! `baton_auth::iam`'s table.
//!
//! Every RPC must have a row: `PubSubApi::call` takes only types
//! implementing `Guarded`, so an RPC without one does not compile.

use baton_proto::pubsub::seek_request;

use super::access::{Check, Checks, on, on_project};
use super::iam::{GetIamPolicy, SetIamPolicy, TestIamPermissions};
use super::publisher::{
    CreateTopic, DeleteTopic, DetachSubscription, GetTopic, ListTopicSnapshots,
    ListTopicSubscriptions, ListTopics, Publish, UpdateTopic,
};
use super::rpc::Guarded;
use super::schemas::{
    CommitSchema, CreateSchema, DeleteSchema, DeleteSchemaRevision, GetSchema, ListSchemaRevisions,
    ListSchemas, RollbackSchema, ValidateMessage, ValidateSchema,
};
use super::subscriber::{
    Acknowledge, CreateSnapshot, CreateSubscription, DeleteSnapshot, DeleteSubscription,
    GetSnapshot, GetSubscription, ListSnapshots, ListSubscriptions, ModifyAckDeadline,
    ModifyPushConfig, Pull, Seek, UpdateSnapshot, UpdateSubscription,
};

/// A schema's resource name without its `@revision`.
fn schema(name: &str) -> &str {
    name.split_once('@').map_or(name, |(schema, _)| schema)
}

/// Some text, if it is not empty.
fn given(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// One row per RPC: `Rpc => |request| checks`.
macro_rules! permissions {
    ($($rpc:ident => |$r:ident| $checks:expr;)*) => {$(
        impl Guarded for $rpc {
            fn checks($r: &Self::Request) -> Checks<'_> {
                $checks
            }
        }
    )*};
}

permissions! {
    // Publisher.
    CreateTopic => |r| on_project("pubsub.topics.create", &r.name).and(
        r.schema_settings.as_ref().and_then(|s| given(&s.schema)).map(|s| Check {
            permission: "pubsub.schemas.attach",
            resource: schema(s),
        }),
    );
    UpdateTopic => |r| {
        let topic = r.topic.as_ref();
        on("pubsub.topics.update", topic.map_or("", |t| t.name.as_str())).and(
            topic
                .and_then(|t| t.schema_settings.as_ref())
                .and_then(|s| given(&s.schema))
                .map(|s| Check { permission: "pubsub.schemas.attach", resource: schema(s) }),
        )
    };
    Publish => |r| on("pubsub.topics.publish", &r.0.topic);
    GetTopic => |r| on("pubsub.topics.get", &r.topic);
    ListTopics => |r| on("pubsub.topics.list", &r.project);
    ListTopicSubscriptions => |r| on("pubsub.topics.get", &r.topic);
    ListTopicSnapshots => |r| on("pubsub.topics.get", &r.topic);
    DeleteTopic => |r| on("pubsub.topics.delete", &r.topic);
    // The real service checks this on the subscription's topic; the request
    // names only the subscription, so the check is on its project (which a
    // grant on the topic's project also passes when both are one project).
    DetachSubscription => |r| on_project("pubsub.topics.detachSubscription", &r.subscription);

    // Subscriber.
    CreateSubscription => |r| on_project("pubsub.subscriptions.create", &r.name).and(Some(Check {
        permission: "pubsub.topics.attachSubscription",
        resource: &r.topic,
    }));
    GetSubscription => |r| on("pubsub.subscriptions.get", &r.subscription);
    UpdateSubscription => |r| on(
        "pubsub.subscriptions.update",
        r.subscription.as_ref().map_or("", |s| s.name.as_str()),
    );
    ListSubscriptions => |r| on("pubsub.subscriptions.list", &r.project);
    DeleteSubscription => |r| on("pubsub.subscriptions.delete", &r.subscription);
    ModifyAckDeadline => |r| on("pubsub.subscriptions.consume", &r.subscription);
    Acknowledge => |r| on("pubsub.subscriptions.consume", &r.subscription);
    Pull => |r| on("pubsub.subscriptions.consume", &r.subscription);
    ModifyPushConfig => |r| on("pubsub.subscriptions.update", &r.subscription);
    GetSnapshot => |r| on("pubsub.snapshots.get", &r.snapshot);
    ListSnapshots => |r| on("pubsub.snapshots.list", &r.project);
    CreateSnapshot => |r| on_project("pubsub.snapshots.create", &r.name).and(Some(Check {
        permission: "pubsub.subscriptions.consume",
        resource: &r.subscription,
    }));
    UpdateSnapshot => |r| on(
        "pubsub.snapshots.update",
        r.snapshot.as_ref().map_or("", |s| s.name.as_str()),
    );
    DeleteSnapshot => |r| on("pubsub.snapshots.delete", &r.snapshot);
    Seek => |r| on("pubsub.subscriptions.consume", &r.subscription).and(match &r.target {
        Some(seek_request::Target::Snapshot(snapshot)) => Some(Check {
            permission: "pubsub.snapshots.seek",
            resource: snapshot,
        }),
        _ => None,
    });

    // SchemaService.
    CreateSchema => |r| on("pubsub.schemas.create", &r.parent);
    GetSchema => |r| on("pubsub.schemas.get", schema(&r.name));
    ListSchemas => |r| on("pubsub.schemas.list", &r.parent);
    ListSchemaRevisions => |r| on("pubsub.schemas.listRevisions", schema(&r.name));
    CommitSchema => |r| on("pubsub.schemas.commit", schema(&r.name));
    RollbackSchema => |r| on("pubsub.schemas.rollback", schema(&r.name));
    DeleteSchemaRevision => |r| on("pubsub.schemas.commit", schema(&r.name));
    DeleteSchema => |r| on("pubsub.schemas.delete", schema(&r.name));
    ValidateSchema => |r| on("pubsub.schemas.validate", &r.parent);
    ValidateMessage => |r| on("pubsub.schemas.validate", &r.parent);

    // The IAMPolicy mixin: the permission depends on the resource's kind.
    GetIamPolicy => |r| iam_check(&r.resource, IamVerb::Get);
    SetIamPolicy => |r| iam_check(&r.resource, IamVerb::Set);
    TestIamPermissions => |_r| Checks::none();
}

/// StreamingPull's check (it is not a unary RPC, so it has no row above):
/// the same as Pull's.
pub fn consume_checks(subscription: &str) -> Checks<'_> {
    on("pubsub.subscriptions.consume", subscription)
}

/// The two policy-changing verbs of the IAM mixin.
#[derive(Debug, Clone, Copy)]
enum IamVerb {
    Get,
    Set,
}

/// `*.getIamPolicy` / `*.setIamPolicy` of the resource's kind. A resource
/// of no known kind needs the project's `setIamPolicy`-level permission,
/// which only owners hold; the handler then rejects the name.
fn iam_check(resource: &str, verb: IamVerb) -> Checks<'_> {
    let kind = match resource.split('/').nth(2) {
        None => "resourcemanager.projects",
        Some("topics") => "pubsub.topics",
        Some("subscriptions") => "pubsub.subscriptions",
        Some("snapshots") => "pubsub.snapshots",
        Some("schemas") => "pubsub.schemas",
        Some(_) => "resourcemanager.projects",
    };
    let permission = match (kind, verb) {
        ("pubsub.topics", IamVerb::Get) => "pubsub.topics.getIamPolicy",
        ("pubsub.topics", IamVerb::Set) => "pubsub.topics.setIamPolicy",
        ("pubsub.subscriptions", IamVerb::Get) => "pubsub.subscriptions.getIamPolicy",
        ("pubsub.subscriptions", IamVerb::Set) => "pubsub.subscriptions.setIamPolicy",
        ("pubsub.snapshots", IamVerb::Get) => "pubsub.snapshots.getIamPolicy",
        ("pubsub.snapshots", IamVerb::Set) => "pubsub.snapshots.setIamPolicy",
        ("pubsub.schemas", IamVerb::Get) => "pubsub.schemas.getIamPolicy",
        ("pubsub.schemas", IamVerb::Set) => "pubsub.schemas.setIamPolicy",
        (_, IamVerb::Get) => "resourcemanager.projects.getIamPolicy",
        (_, IamVerb::Set) => "resourcemanager.projects.setIamPolicy",
    };
    on(permission, schema(resource))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api;
    use crate::api::access::project_of;
    use baton_proto::iam::{GetIamPolicyRequest, SetIamPolicyRequest};
    use baton_proto::pubsub::{SeekRequest, Subscription, Topic};

    fn checks<R: Guarded>(request: &R::Request) -> Vec<(&'static str, String)> {
        R::checks(request)
            .iter()
            .map(|c| (c.permission, c.resource.to_string()))
            .collect()
    }

    #[test]
    fn project_of_a_name() {
        assert_eq!(project_of("projects/p/topics/t"), "projects/p");
        assert_eq!(project_of("projects/p"), "projects/p");
        assert_eq!(project_of("elsewhere"), "elsewhere");
    }

    #[test]
    fn creating_a_subscription_needs_the_project_and_the_topic() {
        let request = Subscription {
            name: "projects/a/subscriptions/s".into(),
            topic: "projects/b/topics/t".into(),
            ..Default::default()
        };
        assert_eq!(
            checks::<api::CreateSubscription>(&request),
            [
                ("pubsub.subscriptions.create", "projects/a".to_string()),
                (
                    "pubsub.topics.attachSubscription",
                    "projects/b/topics/t".to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_topic_with_a_schema_needs_attach_on_the_schema() {
        let request = Topic {
            name: "projects/p/topics/t".into(),
            schema_settings: Some(baton_proto::pubsub::SchemaSettings {
                schema: "projects/p/schemas/s".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            checks::<api::CreateTopic>(&request),
            [
                ("pubsub.topics.create", "projects/p".to_string()),
                ("pubsub.schemas.attach", "projects/p/schemas/s".to_string()),
            ]
        );
    }

    #[test]
    fn seeking_to_a_snapshot_needs_seek_on_it() {
        let request = SeekRequest {
            subscription: "projects/p/subscriptions/s".into(),
            target: Some(seek_request::Target::Snapshot(
                "projects/p/snapshots/x".into(),
            )),
        };
        assert_eq!(
            checks::<api::Seek>(&request),
            [
                (
                    "pubsub.subscriptions.consume",
                    "projects/p/subscriptions/s".to_string()
                ),
                (
                    "pubsub.snapshots.seek",
                    "projects/p/snapshots/x".to_string()
                ),
            ]
        );
    }

    #[test]
    fn iam_permissions_follow_the_resource_kind() {
        let get = |resource: &str| {
            checks::<api::GetIamPolicy>(&GetIamPolicyRequest {
                resource: resource.into(),
                ..Default::default()
            })
        };
        assert_eq!(
            get("projects/p/topics/t")[0].0,
            "pubsub.topics.getIamPolicy"
        );
        assert_eq!(
            get("projects/p/subscriptions/s")[0].0,
            "pubsub.subscriptions.getIamPolicy"
        );
        assert_eq!(
            get("projects/p")[0].0,
            "resourcemanager.projects.getIamPolicy"
        );
        let set = checks::<api::SetIamPolicy>(&SetIamPolicyRequest {
            resource: "projects/p/schemas/s".into(),
            ..Default::default()
        });
        assert_eq!(set[0].0, "pubsub.schemas.setIamPolicy");
    }

    #[test]
    fn every_permission_in_the_table_is_a_real_one() {
        // The permissions named above, each known to the roles table.
        let source = include_str!("permissions.rs");
        let table = source.split("#[cfg(test)]").next().unwrap();
        let mut seen = 0;
        for quoted in table.split('"').skip(1).step_by(2) {
            if quoted.starts_with("pubsub.") && quoted.matches('.').count() == 2 {
                assert!(
                    baton_auth::iam::is_known_permission(quoted),
                    "{quoted} is not a permission baton_auth knows"
                );
                seen += 1;
            }
        }
        assert!(seen > 30, "{seen}");
    }
}
