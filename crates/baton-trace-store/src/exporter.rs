//! [`StoreExporter`]: the server's own spans into the store.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::store::TraceStore;

/// Service name used when the provider's resource names none.
const DEFAULT_SERVICE: &str = "baton";

/// An OpenTelemetry [`SpanExporter`] writing spans into a [`TraceStore`].
///
/// The service name comes from the provider's resource (`service.name`);
/// when it is missing or the SDK's `unknown_service` default, `baton`.
#[derive(Debug, Clone)]
pub struct StoreExporter {
    store: TraceStore,
    resource: Resource,
}

impl StoreExporter {
    /// An exporter into `store`.
    pub fn new(store: TraceStore) -> Self {
        Self {
            store,
            resource: with_default_service(&Resource::builder_empty().build()),
        }
    }

    /// The store written to.
    pub fn store(&self) -> &TraceStore {
        &self.store
    }
}

fn with_default_service(resource: &Resource) -> Resource {
    let named = resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|v| v.as_str().into_owned())
        .is_some_and(|name| !name.is_empty() && !name.starts_with("unknown_service"));
    if named {
        resource.clone()
    } else {
        Resource::builder_empty()
            .with_attributes(
                resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_service_name(DEFAULT_SERVICE)
            .build()
    }
}

impl SpanExporter for StoreExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let attributes = ResourceAttributesWithSchema::from(&self.resource);
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &attributes),
        };
        self.store
            .ingest(request)
            .map(|_| ())
            .map_err(|error| OTelSdkError::InternalFailure(error.to_string()))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = with_default_service(resource);
    }
}
