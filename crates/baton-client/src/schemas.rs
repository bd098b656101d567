//! Schemas (Avro or Protocol Buffer definitions) and their revisions, which
//! topics validate published messages against.

use baton_proto::pubsub::{
    CommitSchemaRequest, CreateSchemaRequest, DeleteSchemaRequest, DeleteSchemaRevisionRequest,
    GetSchemaRequest, ListSchemaRevisionsRequest, ListSchemasRequest, RollbackSchemaRequest,
    Schema, ValidateMessageRequest, ValidateSchemaRequest, schema, validate_message_request,
};

use crate::client::Client;
use crate::error::AdminError;
use crate::retry::CallFamily;

type Result<T, E = AdminError> = std::result::Result<T, E>;

/// The language of a schema definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemaType {
    /// An Apache Avro schema (JSON).
    Avro,
    /// A Protocol Buffer definition (`.proto` text with one message).
    ProtocolBuffer,
}

impl SchemaType {
    fn to_proto(self) -> schema::Type {
        match self {
            Self::Avro => schema::Type::Avro,
            Self::ProtocolBuffer => schema::Type::ProtocolBuffer,
        }
    }
}

/// How much of a schema a get or list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SchemaView {
    /// Name and type only.
    #[default]
    Basic,
    /// Everything, the definition included.
    Full,
}

impl SchemaView {
    fn to_proto(self) -> i32 {
        match self {
            Self::Basic => baton_proto::pubsub::SchemaView::Basic as i32,
            Self::Full => baton_proto::pubsub::SchemaView::Full as i32,
        }
    }
}

/// How a message is encoded against its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageEncoding {
    /// JSON text (Avro's JSON encoding, or proto3 JSON).
    Json,
    /// Binary (Avro binary, or protobuf wire format).
    Binary,
}

impl MessageEncoding {
    pub(crate) fn to_proto(self) -> i32 {
        match self {
            Self::Json => baton_proto::pubsub::Encoding::Json as i32,
            Self::Binary => baton_proto::pubsub::Encoding::Binary as i32,
        }
    }
}

/// A schema definition: its type and text.
///
/// ```
/// use baton_client::{SchemaDefinition, SchemaType};
/// let avro = SchemaDefinition::new(
///     SchemaType::Avro,
///     r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#,
/// );
/// assert_eq!(avro.schema_type(), SchemaType::Avro);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaDefinition {
    /// Avro or Protocol Buffer.
    schema_type: SchemaType,
    /// The definition's text.
    definition: String,
}

impl SchemaDefinition {
    /// A definition of `schema_type`.
    pub fn new(schema_type: SchemaType, definition: impl Into<String>) -> Self {
        Self {
            schema_type,
            definition: definition.into(),
        }
    }

    /// Avro or Protocol Buffer.
    pub fn schema_type(&self) -> SchemaType {
        self.schema_type
    }

    /// The definition's text.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    fn to_proto(&self, name: String) -> Schema {
        Schema {
            name,
            r#type: self.schema_type.to_proto() as i32,
            definition: self.definition.clone(),
            ..Default::default()
        }
    }
}

impl Client {
    /// Creates schema `id` with its first revision.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::{SchemaDefinition, SchemaType};
    /// let schema = client
    ///     .create_schema(
    ///         "order",
    ///         SchemaDefinition::new(SchemaType::Avro, r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#),
    ///     )
    ///     .await?;
    /// println!("revision {}", schema.revision_id);
    /// # Ok(()) }
    /// ```
    pub async fn create_schema(&self, id: &str, definition: SchemaDefinition) -> Result<Schema> {
        let name = self.schema_name(id);
        let schema_id = name.rsplit('/').next().unwrap_or_default().to_string();
        let request = CreateSchemaRequest {
            parent: self.project_name(),
            schema: Some(definition.to_proto(String::new())),
            schema_id,
        };
        self.unary(CallFamily::Schema, &name, request, |c, r| async move {
            c.schema_stub().create_schema(r).await
        })
        .await
    }

    /// Gets a schema's newest revision (`id@revision` names another one).
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::SchemaView;
    /// let schema = client.get_schema("order", SchemaView::Full).await?;
    /// println!("{}", schema.definition);
    /// # Ok(()) }
    /// ```
    pub async fn get_schema(&self, schema: &str, view: SchemaView) -> Result<Schema> {
        let name = self.schema_name(schema);
        let request = GetSchemaRequest {
            name: name.clone(),
            view: view.to_proto(),
        };
        self.unary(CallFamily::Schema, &name, request, |c, r| async move {
            c.schema_stub().get_schema(r).await
        })
        .await
    }

    /// Every schema of the client's project, newest revisions (all pages).
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// let schemas = client.list_schemas(baton_client::SchemaView::Basic).await?;
    /// # Ok(()) }
    /// ```
    pub async fn list_schemas(&self, view: SchemaView) -> Result<Vec<Schema>> {
        let project = self.project_name();
        self.list_all(
            CallFamily::Schema,
            &project,
            |page_token| ListSchemasRequest {
                parent: project.clone(),
                view: view.to_proto(),
                page_size: 1000,
                page_token,
            },
            |c, r| async move { c.schema_stub().list_schemas(r).await },
            |response| (response.schemas, response.next_page_token),
        )
        .await
    }

    /// Every revision of a schema, newest first (all pages).
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// let revisions = client.list_schema_revisions("order", baton_client::SchemaView::Full).await?;
    /// let ids: Vec<&str> = revisions.iter().map(|s| s.revision_id.as_str()).collect();
    /// # Ok(()) }
    /// ```
    pub async fn list_schema_revisions(
        &self,
        schema: &str,
        view: SchemaView,
    ) -> Result<Vec<Schema>> {
        let name = self.schema_name(schema);
        self.list_all(
            CallFamily::Schema,
            &name,
            |page_token| ListSchemaRevisionsRequest {
                name: name.clone(),
                view: view.to_proto(),
                page_size: 1000,
                page_token,
            },
            |c, r| async move { c.schema_stub().list_schema_revisions(r).await },
            |response| (response.schemas, response.next_page_token),
        )
        .await
    }

    /// Commits a new revision of a schema (same type); it becomes the newest.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::{SchemaDefinition, SchemaType};
    /// let revision = client
    ///     .commit_schema("order", SchemaDefinition::new(SchemaType::Avro, r#"{"type":"record","name":"Order","fields":[]}"#))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn commit_schema(
        &self,
        schema: &str,
        definition: SchemaDefinition,
    ) -> Result<Schema> {
        let name = self.schema_name(schema);
        let request = CommitSchemaRequest {
            name: name.clone(),
            schema: Some(definition.to_proto(name.clone())),
        };
        self.unary(CallFamily::Schema, &name, request, |c, r| async move {
            c.schema_stub().commit_schema(r).await
        })
        .await
    }

    /// Makes a copy of an older revision the newest one.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// let restored = client.rollback_schema("order", "a1b2c3d4").await?;
    /// # Ok(()) }
    /// ```
    pub async fn rollback_schema(&self, schema: &str, revision_id: &str) -> Result<Schema> {
        let name = self.schema_name(schema);
        let request = RollbackSchemaRequest {
            name: name.clone(),
            revision_id: revision_id.to_string(),
        };
        self.unary(CallFamily::Schema, &name, request, |c, r| async move {
            c.schema_stub().rollback_schema(r).await
        })
        .await
    }

    /// Deletes one revision of a schema (not its only one); returns it.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// client.delete_schema_revision("order", "a1b2c3d4").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_schema_revision(&self, schema: &str, revision_id: &str) -> Result<Schema> {
        let base = self.schema_name(schema);
        let name = format!("{base}@{revision_id}");
        let request = DeleteSchemaRevisionRequest {
            name: name.clone(),
            ..Default::default()
        };
        self.unary(CallFamily::Schema, &base, request, |c, r| async move {
            c.schema_stub().delete_schema_revision(r).await
        })
        .await
    }

    /// Deletes a schema and every revision; topics using it then fail
    /// their publishes.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// client.delete_schema("order").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_schema(&self, schema: &str) -> Result<()> {
        let name = self.schema_name(schema);
        let request = DeleteSchemaRequest { name: name.clone() };
        self.unary(CallFamily::Schema, &name, request, |c, r| async move {
            c.schema_stub().delete_schema(r).await
        })
        .await?;
        Ok(())
    }

    /// Checks a definition without creating anything: `Ok` when valid,
    /// an error with `code()` INVALID_ARGUMENT and the reason otherwise.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::{SchemaDefinition, SchemaType};
    /// client
    ///     .validate_schema(SchemaDefinition::new(SchemaType::ProtocolBuffer, "syntax = \"proto3\"; message M { string id = 1; }"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn validate_schema(&self, definition: SchemaDefinition) -> Result<()> {
        let project = self.project_name();
        let request = ValidateSchemaRequest {
            parent: project.clone(),
            schema: Some(definition.to_proto(String::new())),
        };
        self.unary(CallFamily::Schema, &project, request, |c, r| async move {
            c.schema_stub().validate_schema(r).await
        })
        .await?;
        Ok(())
    }

    /// Checks that `message` is valid against the existing schema `schema`
    /// (`id`, full name, or `id@revision`) in `encoding`: `Ok`, or an error
    /// with `code()` INVALID_ARGUMENT saying why not.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::MessageEncoding;
    /// client.validate_message("order", br#"{"id":"42"}"#, MessageEncoding::Json).await?;
    /// # Ok(()) }
    /// ```
    pub async fn validate_message(
        &self,
        schema: &str,
        message: &[u8],
        encoding: MessageEncoding,
    ) -> Result<()> {
        let name = self.schema_name(schema);
        let spec = validate_message_request::SchemaSpec::Name(name.clone());
        self.validate_message_against(spec, message, encoding).await
    }

    /// Checks that `message` is valid against `definition` (no schema needs
    /// to exist), in `encoding`.
    ///
    /// ```no_run
    /// # async fn run(client: baton_client::Client) -> Result<(), baton_client::AdminError> {
    /// use baton_client::{MessageEncoding, SchemaDefinition, SchemaType};
    /// let definition = SchemaDefinition::new(SchemaType::Avro, r#"{"type":"record","name":"R","fields":[{"name":"id","type":"string"}]}"#);
    /// client.validate_message_with_definition(definition, br#"{"id":"42"}"#, MessageEncoding::Json).await?;
    /// # Ok(()) }
    /// ```
    pub async fn validate_message_with_definition(
        &self,
        definition: SchemaDefinition,
        message: &[u8],
        encoding: MessageEncoding,
    ) -> Result<()> {
        let spec = validate_message_request::SchemaSpec::Schema(definition.to_proto(String::new()));
        self.validate_message_against(spec, message, encoding).await
    }

    async fn validate_message_against(
        &self,
        spec: validate_message_request::SchemaSpec,
        message: &[u8],
        encoding: MessageEncoding,
    ) -> Result<()> {
        let project = self.project_name();
        let request = ValidateMessageRequest {
            parent: project.clone(),
            message: message.to_vec(),
            encoding: encoding.to_proto(),
            schema_spec: Some(spec),
        };
        self.unary(CallFamily::Schema, &project, request, |c, r| async move {
            c.schema_stub().validate_message(r).await
        })
        .await?;
        Ok(())
    }
}
