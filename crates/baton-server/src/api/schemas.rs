//! The SchemaService's RPCs.

use baton_broker::schema::SchemaSource;
use baton_proto::pubsub::validate_message_request::SchemaSpec;
use baton_proto::pubsub::{
    CommitSchemaRequest, CreateSchemaRequest, DeleteSchemaRequest, DeleteSchemaRevisionRequest,
    GetSchemaRequest, ListSchemaRevisionsRequest, ListSchemaRevisionsResponse, ListSchemasRequest,
    ListSchemasResponse, RollbackSchemaRequest, Schema, ValidateMessageRequest,
    ValidateMessageResponse, ValidateSchemaRequest, ValidateSchemaResponse,
};
use baton_proto::wkt;

use super::rpc::{FromPage, list_response, rpcs};

list_response!(ListSchemasResponse, schemas, Schema);
list_response!(ListSchemaRevisionsResponse, schemas, Schema);

/// Where a ValidateMessage request's schema comes from (its `schema_spec`).
fn schema_source(spec: Option<&SchemaSpec>) -> SchemaSource<'_> {
    match spec {
        Some(SchemaSpec::Name(name)) => SchemaSource::Name(name),
        Some(SchemaSpec::Schema(schema)) => SchemaSource::Inline(schema),
        None => SchemaSource::Missing,
    }
}

rpcs! {
    /// CreateSchema `parent/schemas/schema_id`.
    CreateSchema("google.pubsub.v1.SchemaService", Durable) CreateSchemaRequest => Schema,
    |api, _, r| api.broker.create_schema(&r.parent, &r.schema_id, r.schema.as_ref());

    /// GetSchema of `name` or `name@revision`.
    GetSchema("google.pubsub.v1.SchemaService", Immediate) GetSchemaRequest => Schema,
    |api, _, r| api.broker.get_schema(&r.name, r.view);

    /// ListSchemas of a project.
    ListSchemas("google.pubsub.v1.SchemaService", Immediate)
        ListSchemasRequest => ListSchemasResponse,
    |api, _, r| api
        .broker
        .list_schemas(&r.parent, r.view, r.page_size, &r.page_token)
        .map(FromPage::from_page);

    /// ListSchemaRevisions of a schema, oldest first.
    ListSchemaRevisions("google.pubsub.v1.SchemaService", Immediate)
        ListSchemaRevisionsRequest => ListSchemaRevisionsResponse,
    |api, _, r| api
        .broker
        .list_schema_revisions(&r.name, r.view, r.page_size, &r.page_token)
        .map(FromPage::from_page);

    /// CommitSchema: a new revision.
    CommitSchema("google.pubsub.v1.SchemaService", Durable) CommitSchemaRequest => Schema,
    |api, _, r| api.broker.commit_schema(&r.name, r.schema.as_ref());

    /// RollbackSchema: a new revision copying an old one.
    RollbackSchema("google.pubsub.v1.SchemaService", Durable) RollbackSchemaRequest => Schema,
    |api, _, r| api.broker.rollback_schema(&r.name, &r.revision_id);

    /// DeleteSchemaRevision of `name@revision`. The deprecated `revision_id`
    /// field is ignored, as by the emulator.
    DeleteSchemaRevision("google.pubsub.v1.SchemaService", Durable)
        DeleteSchemaRevisionRequest => Schema,
    |api, _, r| api.broker.delete_schema_revision(&r.name);

    /// DeleteSchema.
    DeleteSchema("google.pubsub.v1.SchemaService", Durable) DeleteSchemaRequest => wkt::Empty,
    |api, _, r| api.broker.delete_schema(&r.name).map(|()| wkt::Empty {});

    /// ValidateSchema: whether CreateSchema would accept it.
    ValidateSchema("google.pubsub.v1.SchemaService", Immediate)
        ValidateSchemaRequest => ValidateSchemaResponse,
    |api, _, r| api
        .broker
        .validate_schema(r.schema.as_ref())
        .map(|()| ValidateSchemaResponse {});

    /// ValidateMessage against a stored or an inline schema.
    ValidateMessage("google.pubsub.v1.SchemaService", Immediate)
        ValidateMessageRequest => ValidateMessageResponse,
    |api, _, r| api
        .broker
        .validate_message(schema_source(r.schema_spec.as_ref()), &r.message, r.encoding)
        .map(|()| ValidateMessageResponse {});
}
