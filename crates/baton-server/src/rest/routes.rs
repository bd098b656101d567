//! The REST mapping as a table: method and path template to the RPC it
//! calls, with how the body and query parameters fill the request. These are
//! the HTTP rules of the Pub/Sub API (`google.api.http` in Google's protos),
//! plus the IAM mixin on every collection.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use baton_broker::{BrokerError, BrokerResult, ErrorCode};
use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::json::{Body, Query, invalid_payload};
use super::template::Template;
use crate::api::{self, Guarded, PubSubApi, RequestContext};

/// A route's call: the request (as JSON) in, the response (as JSON) out.
type Call = for<'a> fn(
    &'a PubSubApi,
    RequestContext,
    Value,
) -> Pin<Box<dyn Future<Output = BrokerResult<Vec<u8>>> + Send + 'a>>;

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Route {
    pub method: Method,
    pub template: Template,
    pub body: Body,
    pub query: &'static [Query],
    pub call: Call,
}

/// Calls `R` with the request read from `json`.
fn call<R>(
    api: &PubSubApi,
    ctx: RequestContext,
    json: Value,
) -> Pin<Box<dyn Future<Output = BrokerResult<Vec<u8>>> + Send + '_>>
where
    R: Guarded,
    R::Request: DeserializeOwned,
    R::Response: Serialize,
{
    Box::pin(async move {
        let request: R::Request = serde_json::from_value(json).map_err(|_| invalid_payload())?;
        let response = api.call::<R>(&ctx, request).await?;
        serde_json::to_vec(&response)
            .map_err(|error| BrokerError::new(ErrorCode::Internal, error.to_string()))
    })
}

/// A row for `R`; `None` (logged) when the template does not parse, which
/// the table's tests rule out.
fn route<R>(
    method: Method,
    template: &'static str,
    body: Body,
    query: &'static [Query],
) -> Option<Route>
where
    R: Guarded,
    R::Request: DeserializeOwned,
    R::Response: Serialize,
{
    match Template::parse(template) {
        Ok(template) => Some(Route {
            method,
            template,
            body,
            query,
            call: call::<R>,
        }),
        Err(error) => {
            tracing::error!(%error, rpc = R::NAME, "REST route left out");
            None
        }
    }
}

const PAGE: &[Query] = &[Query::Int("pageSize"), Query::Text("pageToken")];
const SCHEMA_PAGE: &[Query] = &[
    Query::Int("pageSize"),
    Query::Text("pageToken"),
    Query::SchemaView,
];
const MASK: &[Query] = &[Query::UpdateMask];
const NONE: &[Query] = &[];

/// The table, routes with a verb first (see [`Template`]).
pub(crate) static ROUTES: LazyLock<Vec<Route>> = LazyLock::new(|| {
    use Method as M;
    let mut routes: Vec<Route> = [
        // Topics.
        route::<api::ListTopics>(M::GET, "/v1/{project=projects/*}/topics", Body::None, PAGE),
        route::<api::CreateTopic>(M::PUT, "/v1/{name=projects/*/topics/*}", Body::All, NONE),
        route::<api::GetTopic>(M::GET, "/v1/{topic=projects/*/topics/*}", Body::None, NONE),
        route::<api::UpdateTopic>(
            M::PATCH,
            "/v1/{topic.name=projects/*/topics/*}",
            Body::All,
            MASK,
        ),
        route::<api::DeleteTopic>(
            M::DELETE,
            "/v1/{topic=projects/*/topics/*}",
            Body::None,
            NONE,
        ),
        route::<api::Publish>(
            M::POST,
            "/v1/{topic=projects/*/topics/*}:publish",
            Body::All,
            NONE,
        ),
        route::<api::ListTopicSubscriptions>(
            M::GET,
            "/v1/{topic=projects/*/topics/*}/subscriptions",
            Body::None,
            PAGE,
        ),
        route::<api::ListTopicSnapshots>(
            M::GET,
            "/v1/{topic=projects/*/topics/*}/snapshots",
            Body::None,
            PAGE,
        ),
        // Subscriptions.
        route::<api::ListSubscriptions>(
            M::GET,
            "/v1/{project=projects/*}/subscriptions",
            Body::None,
            PAGE,
        ),
        route::<api::CreateSubscription>(
            M::PUT,
            "/v1/{name=projects/*/subscriptions/*}",
            Body::All,
            NONE,
        ),
        route::<api::GetSubscription>(
            M::GET,
            "/v1/{subscription=projects/*/subscriptions/*}",
            Body::None,
            NONE,
        ),
        route::<api::UpdateSubscription>(
            M::PATCH,
            "/v1/{subscription.name=projects/*/subscriptions/*}",
            Body::All,
            MASK,
        ),
        route::<api::DeleteSubscription>(
            M::DELETE,
            "/v1/{subscription=projects/*/subscriptions/*}",
            Body::None,
            NONE,
        ),
        route::<api::DetachSubscription>(
            M::POST,
            "/v1/{subscription=projects/*/subscriptions/*}:detach",
            Body::None,
            NONE,
        ),
        route::<api::Pull>(
            M::POST,
            "/v1/{subscription=projects/*/subscriptions/*}:pull",
            Body::All,
            NONE,
        ),
        route::<api::Acknowledge>(
            M::POST,
            "/v1/{subscription=projects/*/subscriptions/*}:acknowledge",
            Body::All,
            NONE,
        ),
        route::<api::ModifyAckDeadline>(
            M::POST,
            "/v1/{subscription=projects/*/subscriptions/*}:modifyAckDeadline",
            Body::All,
            NONE,
        ),
        route::<api::ModifyPushConfig>(
            M::POST,
            "/v1/{subscription=projects/*/subscriptions/*}:modifyPushConfig",
            Body::All,
            NONE,
        ),
        route::<api::Seek>(
            M::POST,
            "/v1/{subscription=projects/*/subscriptions/*}:seek",
            Body::All,
            NONE,
        ),
        // Snapshots.
        route::<api::ListSnapshots>(
            M::GET,
            "/v1/{project=projects/*}/snapshots",
            Body::None,
            PAGE,
        ),
        route::<api::CreateSnapshot>(M::PUT, "/v1/{name=projects/*/snapshots/*}", Body::All, NONE),
        route::<api::GetSnapshot>(
            M::GET,
            "/v1/{snapshot=projects/*/snapshots/*}",
            Body::None,
            NONE,
        ),
        route::<api::UpdateSnapshot>(
            M::PATCH,
            "/v1/{snapshot.name=projects/*/snapshots/*}",
            Body::All,
            MASK,
        ),
        route::<api::DeleteSnapshot>(
            M::DELETE,
            "/v1/{snapshot=projects/*/snapshots/*}",
            Body::None,
            NONE,
        ),
        // Schemas. A revision is named in the path (`name@revision`); the
        // `revisionId` parameter of DeleteSchemaRevision is ignored, as by
        // the emulator.
        route::<api::CreateSchema>(
            M::POST,
            "/v1/{parent=projects/*}/schemas",
            Body::Field("schema"),
            &[Query::Text("schemaId")],
        ),
        route::<api::ListSchemas>(
            M::GET,
            "/v1/{parent=projects/*}/schemas",
            Body::None,
            SCHEMA_PAGE,
        ),
        route::<api::GetSchema>(
            M::GET,
            "/v1/{name=projects/*/schemas/*}",
            Body::None,
            &[Query::SchemaView],
        ),
        route::<api::ListSchemaRevisions>(
            M::GET,
            "/v1/{name=projects/*/schemas/*}:listRevisions",
            Body::None,
            SCHEMA_PAGE,
        ),
        route::<api::CommitSchema>(
            M::POST,
            "/v1/{name=projects/*/schemas/*}:commit",
            Body::All,
            NONE,
        ),
        route::<api::RollbackSchema>(
            M::POST,
            "/v1/{name=projects/*/schemas/*}:rollback",
            Body::All,
            NONE,
        ),
        route::<api::DeleteSchemaRevision>(
            M::DELETE,
            "/v1/{name=projects/*/schemas/*}:deleteRevision",
            Body::None,
            NONE,
        ),
        route::<api::DeleteSchema>(
            M::DELETE,
            "/v1/{name=projects/*/schemas/*}",
            Body::None,
            NONE,
        ),
        route::<api::ValidateSchema>(
            M::POST,
            "/v1/{parent=projects/*}/schemas:validate",
            Body::All,
            NONE,
        ),
        route::<api::ValidateMessage>(
            M::POST,
            "/v1/{parent=projects/*}/schemas:validateMessage",
            Body::All,
            NONE,
        ),
        // The IAM mixin, on any collection: the broker checks which.
        route::<api::GetIamPolicy>(
            M::GET,
            "/v1/{resource=projects/*/*/*}:getIamPolicy",
            Body::None,
            NONE,
        ),
        route::<api::GetIamPolicy>(
            M::POST,
            "/v1/{resource=projects/*/*/*}:getIamPolicy",
            Body::None,
            NONE,
        ),
        route::<api::SetIamPolicy>(
            M::POST,
            "/v1/{resource=projects/*/*/*}:setIamPolicy",
            Body::All,
            NONE,
        ),
        route::<api::TestIamPermissions>(
            M::POST,
            "/v1/{resource=projects/*/*/*}:testIamPermissions",
            Body::All,
            NONE,
        ),
        // A project's policy, in the Resource Manager API's shape
        // (`cloudresourcemanager.googleapis.com/v1/projects/p:getIamPolicy`):
        // with authentication on, its bindings grant on every resource of
        // the project.
        route::<api::GetIamPolicy>(
            M::POST,
            "/v1/{resource=projects/*}:getIamPolicy",
            Body::None,
            NONE,
        ),
        route::<api::SetIamPolicy>(
            M::POST,
            "/v1/{resource=projects/*}:setIamPolicy",
            Body::All,
            NONE,
        ),
        route::<api::TestIamPermissions>(
            M::POST,
            "/v1/{resource=projects/*}:testIamPermissions",
            Body::All,
            NONE,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    routes.sort_by_key(|route| !route.template.has_verb());
    routes
});

/// The route serving `method` on `path` (percent-decoded, split on `/`,
/// without the leading slash), and the field its path binds.
pub(crate) fn find(
    method: &Method,
    path: &[&str],
) -> Option<(&'static Route, Option<(&'static str, String)>)> {
    // A resource path whose verb belongs to the IAM mixin is the mixin's,
    // whatever the method: one it does not take is not found, rather than a
    // request for a resource whose id ends in `:getIamPolicy`.
    let iam = (path.len() == 5 || path.len() == 3)
        && path
            .last()
            .and_then(|last| last.rsplit_once(':'))
            .is_some_and(|(_, verb)| is_iam_verb(verb));
    ROUTES.iter().find_map(|route| {
        if route.method != *method || route.template.verb().is_some_and(is_iam_verb) != iam {
            return None;
        }
        route.template.matches(path).map(|binding| (route, binding))
    })
}

/// The verbs of the IAM mixin (and any other `...IamPolicy` verb, which the
/// mixin does not serve either).
fn is_iam_verb(verb: &str) -> bool {
    verb.ends_with("IamPolicy") || verb == "testIamPermissions"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(path: &str) -> Vec<&str> {
        path.split('/').collect()
    }

    #[test]
    fn every_template_parses() {
        // Every unary RPC once (9 Publisher, 15 Subscriber, 10 SchemaService,
        // 3 IAMPolicy), GetIamPolicy twice (GET and POST), and the three
        // IAMPolicy verbs on projects.
        assert_eq!(ROUTES.len(), 41);
    }

    #[test]
    fn verbs_win_over_ids_with_colons() {
        let (route, binding) = find(
            &Method::GET,
            &split("v1/projects/p/schemas/s:listRevisions"),
        )
        .unwrap_or_else(|| panic!("no route"));
        assert!(route.template.has_verb());
        assert_eq!(binding, Some(("name", "projects/p/schemas/s".to_string())));
        let (route, binding) = find(&Method::GET, &split("v1/projects/p/schemas/s:other"))
            .unwrap_or_else(|| panic!("no route"));
        assert!(!route.template.has_verb());
        assert_eq!(
            binding,
            Some(("name", "projects/p/schemas/s:other".to_string()))
        );
        assert!(find(&Method::POST, &split("v1/projects/p/topics/t")).is_none());
        // The IAM mixin's verbs are its own, whatever the method.
        for (method, path) in [
            (Method::GET, "v1/projects/p/topics/t:setIamPolicy"),
            (Method::DELETE, "v1/projects/p/subscriptions/s:getIamPolicy"),
            (Method::PUT, "v1/projects/p/topics/t:fooIamPolicy"),
            (Method::GET, "v1/projects/p/topics/t:testIamPermissions"),
        ] {
            assert!(find(&method, &split(path)).is_none(), "{method} {path}");
        }
        assert!(find(&Method::GET, &split("v1/projects/p/topics/t:getIamPolicy")).is_some());
        assert!(find(&Method::POST, &split("v1/projects/p/topics/t:unknown")).is_none());
    }
}
