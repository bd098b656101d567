//! The gRPC SchemaService: thin calls into the broker's schema catalog, whose
//! errors map through the same table as every other RPC.

use std::sync::Arc;

use baton_broker::schema::SchemaSource;
use baton_broker::{Broker, BrokerError};
use baton_proto::pubsub::schema_service_server::SchemaService;
use baton_proto::pubsub::validate_message_request::SchemaSpec;
use baton_proto::pubsub::{
    CommitSchemaRequest, CreateSchemaRequest, DeleteSchemaRequest, DeleteSchemaRevisionRequest,
    GetSchemaRequest, ListSchemaRevisionsRequest, ListSchemaRevisionsResponse, ListSchemasRequest,
    ListSchemasResponse, RollbackSchemaRequest, Schema, ValidateMessageRequest,
    ValidateMessageResponse, ValidateSchemaRequest, ValidateSchemaResponse,
};
use baton_proto::wkt;
use tonic::{Request, Response, Status};

use crate::status::to_status;

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(result: Result<T, BrokerError>) -> Reply<T> {
    result.map(Response::new).map_err(to_status)
}

/// Where a ValidateMessage request's schema comes from (its `schema_spec`).
pub(crate) fn schema_source(spec: Option<&SchemaSpec>) -> SchemaSource<'_> {
    match spec {
        Some(SchemaSpec::Name(name)) => SchemaSource::Name(name),
        Some(SchemaSpec::Schema(schema)) => SchemaSource::Inline(schema),
        None => SchemaSource::Missing,
    }
}

/// `google.pubsub.v1.SchemaService` over one broker.
#[derive(Debug, Clone)]
pub struct SchemaServiceImpl {
    broker: Arc<Broker>,
}

impl SchemaServiceImpl {
    /// Serves `broker`'s schemas over gRPC.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

#[tonic::async_trait]
impl SchemaService for SchemaServiceImpl {
    async fn create_schema(&self, request: Request<CreateSchemaRequest>) -> Reply<Schema> {
        let r = request.into_inner();
        ok(self
            .broker
            .durably(
                self.broker
                    .create_schema(&r.parent, &r.schema_id, r.schema.as_ref()),
            )
            .await)
    }

    async fn get_schema(&self, request: Request<GetSchemaRequest>) -> Reply<Schema> {
        let r = request.into_inner();
        ok(self.broker.get_schema(&r.name, r.view))
    }

    async fn list_schemas(
        &self,
        request: Request<ListSchemasRequest>,
    ) -> Reply<ListSchemasResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .list_schemas(&r.parent, r.view, r.page_size, &r.page_token)
            .map(|page| ListSchemasResponse {
                schemas: page.items,
                next_page_token: page.next_page_token,
            }))
    }

    async fn list_schema_revisions(
        &self,
        request: Request<ListSchemaRevisionsRequest>,
    ) -> Reply<ListSchemaRevisionsResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .list_schema_revisions(&r.name, r.view, r.page_size, &r.page_token)
            .map(|page| ListSchemaRevisionsResponse {
                schemas: page.items,
                next_page_token: page.next_page_token,
            }))
    }

    async fn commit_schema(&self, request: Request<CommitSchemaRequest>) -> Reply<Schema> {
        let r = request.into_inner();
        ok(self
            .broker
            .durably(self.broker.commit_schema(&r.name, r.schema.as_ref()))
            .await)
    }

    async fn rollback_schema(&self, request: Request<RollbackSchemaRequest>) -> Reply<Schema> {
        let r = request.into_inner();
        ok(self
            .broker
            .durably(self.broker.rollback_schema(&r.name, &r.revision_id))
            .await)
    }

    async fn delete_schema_revision(
        &self,
        request: Request<DeleteSchemaRevisionRequest>,
    ) -> Reply<Schema> {
        // The deprecated `revision_id` field is ignored, as by the emulator:
        // the revision is named as `name@revision`.
        ok(self
            .broker
            .durably(
                self.broker
                    .delete_schema_revision(&request.into_inner().name),
            )
            .await)
    }

    async fn delete_schema(&self, request: Request<DeleteSchemaRequest>) -> Reply<wkt::Empty> {
        ok(self
            .broker
            .durably(
                self.broker
                    .delete_schema(&request.into_inner().name)
                    .map(|()| wkt::Empty {}),
            )
            .await)
    }

    async fn validate_schema(
        &self,
        request: Request<ValidateSchemaRequest>,
    ) -> Reply<ValidateSchemaResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .validate_schema(r.schema.as_ref())
            .map(|()| ValidateSchemaResponse {}))
    }

    async fn validate_message(
        &self,
        request: Request<ValidateMessageRequest>,
    ) -> Reply<ValidateMessageResponse> {
        let r = request.into_inner();
        ok(self
            .broker
            .validate_message(
                schema_source(r.schema_spec.as_ref()),
                &r.message,
                r.encoding,
            )
            .map(|()| ValidateMessageResponse {}))
    }
}
