//! The REST mapping of the SchemaService (`/v1/projects/{p}/schemas...`),
//! over the same broker calls as the gRPC service:
//!
//! | request | operation |
//! |---|---|
//! | `POST schemas?schemaId=` | CreateSchema (body: `Schema`) |
//! | `GET schemas?pageSize=&pageToken=&view=` | ListSchemas |
//! | `GET schemas/{id}[@rev]?view=` | GetSchema |
//! | `DELETE schemas/{id}` | DeleteSchema |
//! | `POST schemas/{id}:commit` | CommitSchema |
//! | `POST schemas/{id}:rollback` | RollbackSchema |
//! | `DELETE schemas/{id}@{rev}:deleteRevision` | DeleteSchemaRevision |
//! | `GET schemas/{id}:listRevisions` | ListSchemaRevisions |
//! | `POST schemas:validate` | ValidateSchema |
//! | `POST schemas:validateMessage` | ValidateMessage |
//!
//! A GET or DELETE with any other `:verb` treats the verb as part of the
//! schema id, which is then an invalid name, as the emulator answers.

use std::sync::Arc;

use axum::response::Response;
use baton_broker::{Broker, BrokerError};
use baton_proto::pubsub::{
    CommitSchemaRequest, ListSchemaRevisionsResponse, ListSchemasResponse, RollbackSchemaRequest,
    Schema, SchemaView, ValidateMessageRequest, ValidateMessageResponse, ValidateSchemaRequest,
    ValidateSchemaResponse,
};
use http::Method;

use super::{Empty, not_found, page_params, parse_body, query_param, reply};
use crate::schema_service::schema_source;

/// The `view` query parameter: an enum name (or number) of `SchemaView`.
fn view_param(query: Option<&str>) -> Result<i32, BrokerError> {
    let Some(text) = query_param(query, "view") else {
        return Ok(SchemaView::Unspecified as i32);
    };
    SchemaView::from_str_name(&text)
        .map(|view| view as i32)
        .or_else(|| text.parse::<i32>().ok().filter(|n| SchemaView::try_from(*n).is_ok()))
        .ok_or_else(|| {
            BrokerError::invalid(format!(
                "Invalid value at 'view' (type.googleapis.com/google.pubsub.v1.SchemaView), \"{text}\""
            ))
        })
}

/// Serves a request whose path is `projects/{project}/schemas...` (already
/// percent-decoded and split on `/`, without the `v1` prefix).
pub(super) fn route(
    broker: &Arc<Broker>,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
    body: &[u8],
) -> Response {
    match segments {
        ["projects", project, collection] => {
            collection_request(broker, method, project, collection, query, body)
        }
        ["projects", project, "schemas", id] => {
            schema_request(broker, method, project, id, query, body)
        }
        _ => not_found(),
    }
}

fn collection_request(
    broker: &Broker,
    method: &Method,
    project: &str,
    collection: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    let parent = format!("projects/{project}");
    match (collection, method.clone()) {
        ("schemas", Method::GET) => {
            let (size, token) = page_params(query);
            reply(view_param(query).and_then(|view| {
                broker
                    .list_schemas(&parent, view, size, &token)
                    .map(|page| ListSchemasResponse {
                        schemas: page.items,
                        next_page_token: page.next_page_token,
                    })
            }))
        }
        ("schemas", Method::POST) => {
            let schema_id = query_param(query, "schemaId")
                .or_else(|| query_param(query, "schema_id"))
                .unwrap_or_default();
            reply(
                parse_body::<Schema>(body)
                    .and_then(|schema| broker.create_schema(&parent, &schema_id, Some(&schema))),
            )
        }
        ("schemas:validate", Method::POST) => reply(
            parse_body::<ValidateSchemaRequest>(body).and_then(|request| {
                broker
                    .validate_schema(request.schema.as_ref())
                    .map(|()| ValidateSchemaResponse {})
            }),
        ),
        ("schemas:validateMessage", Method::POST) => reply(
            parse_body::<ValidateMessageRequest>(body).and_then(|request| {
                broker
                    .validate_message(
                        schema_source(request.schema_spec.as_ref()),
                        &request.message,
                        request.encoding,
                    )
                    .map(|()| ValidateMessageResponse {})
            }),
        ),
        _ => not_found(),
    }
}

fn schema_request(
    broker: &Broker,
    method: &Method,
    project: &str,
    id: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    let full_name = format!("projects/{project}/schemas/{id}");
    let (name, verb) = match id.rsplit_once(':') {
        Some((schema_id, verb)) => (
            format!("projects/{project}/schemas/{schema_id}"),
            Some(verb),
        ),
        None => (full_name.clone(), None),
    };
    match (method.clone(), verb) {
        (Method::GET, Some("listRevisions")) => {
            let (size, token) = page_params(query);
            reply(view_param(query).and_then(|view| {
                broker
                    .list_schema_revisions(&name, view, size, &token)
                    .map(|page| ListSchemaRevisionsResponse {
                        schemas: page.items,
                        next_page_token: page.next_page_token,
                    })
            }))
        }
        (Method::GET, _) => {
            reply(view_param(query).and_then(|view| broker.get_schema(&full_name, view)))
        }
        // The revision is named in the path (`name@revision`); a
        // `revisionId` query parameter is ignored, as by the emulator.
        (Method::DELETE, Some("deleteRevision")) => reply(broker.delete_schema_revision(&name)),
        (Method::DELETE, _) => reply(broker.delete_schema(&full_name).map(|()| Empty {})),
        (Method::POST, Some("commit")) => reply(
            parse_body::<CommitSchemaRequest>(body)
                .and_then(|request| broker.commit_schema(&name, request.schema.as_ref())),
        ),
        (Method::POST, Some("rollback")) => reply(
            parse_body::<RollbackSchemaRequest>(body)
                .and_then(|request| broker.rollback_schema(&name, &request.revision_id)),
        ),
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn views_by_name_or_number() {
        assert_eq!(view_param(None).unwrap(), 0);
        assert_eq!(view_param(Some("view=BASIC")).unwrap(), 1);
        assert_eq!(view_param(Some("pageSize=1&view=FULL")).unwrap(), 2);
        assert_eq!(view_param(Some("view=1")).unwrap(), 1);
        assert!(view_param(Some("view=NOPE")).is_err());
    }
}
