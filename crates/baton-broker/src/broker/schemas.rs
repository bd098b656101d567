//! The SchemaService's operations. The schema catalog lives under the
//! broker's lock next to the topics whose `schema_settings` refer to it.

use std::sync::Arc;

use baton_proto::pubsub::Schema;

use super::Broker;
use super::effects::CatalogEntry;
use super::state::State;
use crate::error::BrokerResult;
use crate::paging::ListPage;
use crate::schema::{self, CompiledSchema, SchemaSource};

impl Broker {
    /// Runs a change to the catalog entry `entry`; when it succeeds, the
    /// entry changed.
    pub(crate) fn change_catalog<T>(
        &self,
        entry: CatalogEntry,
        change: impl FnOnce(&mut State) -> BrokerResult<T>,
    ) -> BrokerResult<T> {
        let mut state = self.lock();
        let answer = change(&mut state)?;
        state.fx.catalog_changed(entry);
        Ok(answer)
    }

    /// CreateSchema `parent/schemas/schema_id`.
    pub fn create_schema(
        &self,
        parent: &str,
        schema_id: &str,
        schema: Option<&Schema>,
    ) -> BrokerResult<Schema> {
        let now = self.clock.wall();
        let name = format!("{parent}/schemas/{schema_id}");
        self.change_catalog(CatalogEntry::Schema(name), |state| {
            state.schemas.create(parent, schema_id, schema, now)
        })
    }

    /// GetSchema of `name` or `name@revision`.
    pub fn get_schema(&self, name: &str, view: i32) -> BrokerResult<Schema> {
        self.lock().schemas.get(name, view)
    }

    /// ListSchemas of `parent` (`projects/{id}`).
    pub fn list_schemas(
        &self,
        parent: &str,
        view: i32,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Schema>> {
        self.lock()
            .schemas
            .list(parent, view, page_size, page_token)
    }

    /// ListSchemaRevisions of `name`, oldest first.
    pub fn list_schema_revisions(
        &self,
        name: &str,
        view: i32,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Schema>> {
        self.lock()
            .schemas
            .list_revisions(name, view, page_size, page_token)
    }

    /// CommitSchema: a new revision of `name`.
    pub fn commit_schema(&self, name: &str, schema: Option<&Schema>) -> BrokerResult<Schema> {
        let now = self.clock.wall();
        self.change_catalog(CatalogEntry::Schema(name.to_string()), |state| {
            state.schemas.commit(name, schema, now)
        })
    }

    /// RollbackSchema: a new revision copying `revision_id`.
    pub fn rollback_schema(&self, name: &str, revision_id: &str) -> BrokerResult<Schema> {
        let now = self.clock.wall();
        self.change_catalog(CatalogEntry::Schema(name.to_string()), |state| {
            state.schemas.rollback(name, revision_id, now)
        })
    }

    /// DeleteSchemaRevision of `name@revision`.
    pub fn delete_schema_revision(&self, name: &str) -> BrokerResult<Schema> {
        let base = name.split_once('@').map_or(name, |(base, _)| base);
        self.change_catalog(CatalogEntry::Schema(base.to_string()), |state| {
            state.schemas.delete_revision(name)
        })
    }

    /// DeleteSchema. Topics bound to it keep their settings but report the
    /// schema as `_deleted-schema_` (and the revisions they were pinned to,
    /// if any, as `_deleted-schema-revision_`) and refuse publishes from
    /// then on.
    pub fn delete_schema(&self, name: &str) -> BrokerResult<()> {
        self.change_catalog(CatalogEntry::Schema(name.to_string()), |state| {
            state.schemas.delete(name)?;
            let State { topics, fx, .. } = state;
            for (topic_name, topic) in topics.iter_mut() {
                if let Some(settings) = &mut topic.topic.schema_settings
                    && settings.schema == name
                {
                    settings.schema = schema::DELETED_SCHEMA.to_owned();
                    for revision in [
                        &mut settings.first_revision_id,
                        &mut settings.last_revision_id,
                    ] {
                        if !revision.is_empty() {
                            schema::DELETED_SCHEMA_REVISION.clone_into(revision);
                        }
                    }
                    fx.catalog_changed(CatalogEntry::Topic(topic_name.clone()));
                }
            }
            Ok(())
        })
    }

    /// ValidateSchema: whether CreateSchema would accept `schema`.
    pub fn validate_schema(&self, schema: Option<&Schema>) -> BrokerResult<()> {
        schema::validate_definition(schema)
    }

    /// ValidateMessage: decodes `message` with a stored or an inline schema.
    pub fn validate_message(
        &self,
        source: SchemaSource<'_>,
        message: &[u8],
        encoding: i32,
    ) -> BrokerResult<()> {
        let compiled = match source {
            SchemaSource::Name(name) => self.lock().schemas.compiled(name)?,
            SchemaSource::Inline(schema) => {
                Arc::new(CompiledSchema::compile(schema.r#type, &schema.definition)?)
            }
            SchemaSource::Missing => return Err(schema::SchemaError::InvalidType.into()),
        };
        let encoding = schema::message_encoding(encoding)?;
        compiled.validate(message, encoding)?;
        Ok(())
    }
}
