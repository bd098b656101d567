//! Schemas: the SchemaService's catalog and the validation of messages
//! against Avro and Protocol Buffer definitions.
//!
//! A schema is a list of revisions, oldest first; its "current" revision is
//! the newest one. Each revision keeps its definition compiled once, behind
//! an `Arc`, so publishing to a topic bound to the schema can validate
//! messages without holding the broker's lock.
//!
//! Answers follow the official emulator where it implements the behaviour
//! (Avro), and the real service where the emulator answers UNIMPLEMENTED
//! (Protocol Buffer schemas): see `docs/compatibility.md`.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::{Name, ResolvedSchema};
use baton_proto::pubsub::{Encoding, Schema, SchemaSettings, SchemaView, schema};
use baton_proto::wkt;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde_json::Value;

use crate::clock::{system_time, timestamp};
use crate::error::{BrokerError, BrokerResult};
use crate::names::{self, Collection};
use crate::paging::ListPage;
use crate::published::PublishedMessage;

/// The schema a topic reports once the schema it was bound to is deleted.
pub const DELETED_SCHEMA: &str = "_deleted-schema_";

/// What a topic bound to a deleted schema shows for the revisions it was
/// pinned to (as the emulator shows them).
pub const DELETED_SCHEMA_REVISION: &str = "_deleted-schema-revision_";

/// Attribute naming the schema a published message was validated against.
pub const SCHEMA_NAME_ATTRIBUTE: &str = "googclient_schemaname";
/// Attribute naming the encoding (`JSON` or `BINARY`) of a validated message.
pub const SCHEMA_ENCODING_ATTRIBUTE: &str = "googclient_schemaencoding";
/// Attribute naming the schema revision a published message matched.
pub const SCHEMA_REVISION_ATTRIBUTE: &str = "googclient_schemarevisionid";

/// The file name a Protocol Buffer definition is compiled under.
const PROTO_FILE: &str = "schema.proto";

/// Why a definition or a message was rejected. The `Display` text is the
/// message clients see; details are kept for logs and tests only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The schema's type is missing or unknown.
    #[error("Invalid schema type")]
    InvalidType,
    /// The definition does not parse as the schema's type.
    #[error("Could not parse schema definition")]
    Definition {
        /// What the parser said.
        detail: String,
    },
    /// A Protocol Buffer definition must declare exactly one top-level
    /// message type: it is the type every message is decoded as.
    #[error(
        "The schema definition must contain exactly one top-level message type, but it contains {found}."
    )]
    TopLevelMessages {
        /// How many top-level message types the definition declares.
        found: usize,
    },
    /// ValidateMessage without an encoding.
    #[error("No encoding provided.")]
    NoEncoding,
    /// The message does not decode with the schema.
    #[error("Could not parse {encoding} {kind} message")]
    Message {
        /// `JSON` or `binary`.
        encoding: &'static str,
        /// `Avro` or `Protocol Buffer`.
        kind: &'static str,
        /// What the decoder said.
        detail: String,
    },
}

impl From<SchemaError> for BrokerError {
    fn from(error: SchemaError) -> Self {
        BrokerError::invalid(error.to_string())
    }
}

fn schema_not_found() -> BrokerError {
    BrokerError::not_found("Schema not found")
}

fn revision_not_found() -> BrokerError {
    BrokerError::not_found("Schema revision not found")
}

/// How a message is encoded against its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageEncoding {
    /// The schema's JSON encoding (Avro JSON, proto3 JSON).
    Json,
    /// The schema's binary encoding (Avro binary, protobuf wire format).
    Binary,
}

impl MessageEncoding {
    /// The encoding of a request's `Encoding` enum value; `None` when
    /// unspecified or unknown.
    pub fn from_proto(value: i32) -> Option<Self> {
        match Encoding::try_from(value) {
            Ok(Encoding::Json) => Some(Self::Json),
            Ok(Encoding::Binary) => Some(Self::Binary),
            _ => None,
        }
    }

    /// The name used in `googclient_schemaencoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Binary => "BINARY",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Binary => "binary",
        }
    }
}

/// A definition, parsed and ready to validate messages.
#[derive(Debug)]
pub enum CompiledSchema {
    /// An Avro schema plus its named types, to resolve references.
    Avro {
        /// The parsed schema (boxed: it is large and the other variant small).
        schema: Box<AvroSchema>,
        /// Every named type the schema defines, by full name.
        names: HashMap<Name, AvroSchema>,
    },
    /// The one top-level message type of a Protocol Buffer definition.
    Protobuf(MessageDescriptor),
}

impl CompiledSchema {
    /// Parses `definition` as a schema of `kind` (the proto `Schema.Type`).
    pub fn compile(kind: i32, definition: &str) -> Result<Self, SchemaError> {
        match schema::Type::try_from(kind) {
            Ok(schema::Type::Avro) => {
                contain_panic(|| compile_avro(definition)).map_err(definition_error)?
            }
            Ok(schema::Type::ProtocolBuffer) => {
                contain_panic(|| compile_protobuf(definition)).map_err(definition_error)?
            }
            _ => Err(SchemaError::InvalidType),
        }
    }

    /// Checks that `data` is one message of this schema in `encoding`.
    pub fn validate(&self, data: &[u8], encoding: MessageEncoding) -> Result<(), SchemaError> {
        let (kind, result) = match self {
            Self::Avro { schema, names } => (
                "Avro",
                contain_panic(|| validate_avro(schema, names, data, encoding)).unwrap_or_else(Err),
            ),
            Self::Protobuf(message) => (
                "Protocol Buffer",
                contain_panic(|| validate_protobuf(message, data, encoding)).unwrap_or_else(Err),
            ),
        };
        result.map_err(|detail| SchemaError::Message {
            encoding: encoding.word(),
            kind,
            detail,
        })
    }
}

/// Runs a third-party parser on untrusted input. Some panic on input they
/// do not expect (apache-avro 0.21 unwraps an invalid record name, found by
/// `fuzz/`'s `schema` target); a client must get an error, not a dropped
/// connection, so a panic becomes `Err` with its message.
fn contain_panic<T>(parse: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the parser panicked".to_owned());
        tracing::debug!(%message, "schema parser panicked; answered as invalid input");
        message
    })
}

fn definition_error(detail: impl ToString) -> SchemaError {
    SchemaError::Definition {
        detail: detail.to_string(),
    }
}

fn compile_avro(definition: &str) -> Result<CompiledSchema, SchemaError> {
    let schema = AvroSchema::parse_str(definition).map_err(definition_error)?;
    let names = ResolvedSchema::try_from(&schema)
        .map_err(definition_error)?
        .get_names()
        .iter()
        .map(|(name, schema)| (name.clone(), (*schema).clone()))
        .collect();
    Ok(CompiledSchema::Avro {
        schema: Box::new(schema),
        names,
    })
}

/// Serves the definition as the one source file; imports of the
/// well-known `google/protobuf/*.proto` files come from protox.
struct DefinitionResolver {
    source: String,
}

impl protox::file::FileResolver for DefinitionResolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        if name == PROTO_FILE {
            protox::file::File::from_source(name, &self.source)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

fn compile_protobuf(definition: &str) -> Result<CompiledSchema, SchemaError> {
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(DefinitionResolver {
        source: definition.to_owned(),
    });
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file(PROTO_FILE).map_err(definition_error)?;
    let pool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(PROTO_FILE)
        .ok_or_else(|| definition_error("the compiled file is missing"))?;
    let mut messages = file.messages();
    match (messages.len(), messages.next()) {
        (1, Some(message)) => Ok(CompiledSchema::Protobuf(message)),
        (found, _) => Err(SchemaError::TopLevelMessages { found }),
    }
}

fn validate_protobuf(
    message: &MessageDescriptor,
    data: &[u8],
    encoding: MessageEncoding,
) -> Result<(), String> {
    match encoding {
        MessageEncoding::Binary => DynamicMessage::decode(message.clone(), data)
            .map(drop)
            .map_err(|e| e.to_string()),
        MessageEncoding::Json => {
            let mut deserializer = serde_json::Deserializer::from_slice(data);
            DynamicMessage::deserialize(message.clone(), &mut deserializer)
                .and_then(|_| deserializer.end())
                .map_err(|e| e.to_string())
        }
    }
}

fn validate_avro(
    schema: &AvroSchema,
    names: &HashMap<Name, AvroSchema>,
    data: &[u8],
    encoding: MessageEncoding,
) -> Result<(), String> {
    match encoding {
        MessageEncoding::Binary => {
            let mut reader = data;
            apache_avro::from_avro_datum(schema, &mut reader, None).map_err(|e| e.to_string())?;
            if reader.is_empty() {
                Ok(())
            } else {
                Err(format!("{} bytes left after the datum", reader.len()))
            }
        }
        MessageEncoding::Json => {
            let value: Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
            if avro_json_matches(schema, names, &value) {
                Ok(())
            } else {
                Err("the JSON value does not match the schema".to_owned())
            }
        }
    }
}

/// True when `value` is `schema`'s Avro JSON encoding: unions as
/// `{"branch": value}` (or `null`), bytes and fixed as strings of code
/// points 0-255, ints within range, records with no unknown field and every
/// field present or defaulted.
fn avro_json_matches(
    schema: &AvroSchema,
    names: &HashMap<Name, AvroSchema>,
    value: &Value,
) -> bool {
    match schema {
        AvroSchema::Null => value.is_null(),
        AvroSchema::Boolean => value.is_boolean(),
        AvroSchema::Int | AvroSchema::Date | AvroSchema::TimeMillis => {
            value.as_i64().is_some_and(|n| i32::try_from(n).is_ok())
        }
        AvroSchema::Long
        | AvroSchema::TimeMicros
        | AvroSchema::TimestampMillis
        | AvroSchema::TimestampMicros
        | AvroSchema::TimestampNanos
        | AvroSchema::LocalTimestampMillis
        | AvroSchema::LocalTimestampMicros
        | AvroSchema::LocalTimestampNanos => value.as_i64().is_some(),
        AvroSchema::Float | AvroSchema::Double => {
            value.is_number() || matches!(value.as_str(), Some("NaN" | "Infinity" | "-Infinity"))
        }
        AvroSchema::Bytes | AvroSchema::BigDecimal => latin1_len(value).is_some(),
        AvroSchema::String | AvroSchema::Uuid => value.is_string(),
        AvroSchema::Fixed(fixed) => latin1_len(value) == Some(fixed.size),
        AvroSchema::Duration => latin1_len(value) == Some(12),
        AvroSchema::Decimal(decimal) => avro_json_matches(&decimal.inner, names, value),
        AvroSchema::Enum(e) => value
            .as_str()
            .is_some_and(|s| e.symbols.iter().any(|x| x == s)),
        AvroSchema::Array(array) => value.as_array().is_some_and(|items| {
            items
                .iter()
                .all(|v| avro_json_matches(&array.items, names, v))
        }),
        AvroSchema::Map(map) => value.as_object().is_some_and(|entries| {
            entries
                .values()
                .all(|v| avro_json_matches(&map.types, names, v))
        }),
        AvroSchema::Record(record) => {
            let Some(object) = value.as_object() else {
                return false;
            };
            object.keys().all(|key| record.lookup.contains_key(key))
                && record
                    .fields
                    .iter()
                    .all(|field| match object.get(&field.name) {
                        Some(v) => avro_json_matches(&field.schema, names, v),
                        None => field.default.is_some(),
                    })
        }
        AvroSchema::Union(union) => {
            if value.is_null() {
                return union
                    .variants()
                    .iter()
                    .any(|s| matches!(s, AvroSchema::Null));
            }
            let Some(object) = value.as_object() else {
                return false;
            };
            let mut entries = object.iter();
            let (Some((branch, inner)), None) = (entries.next(), entries.next()) else {
                return false;
            };
            union.variants().iter().any(|variant| {
                branch_name(variant).as_deref() == Some(branch.as_str())
                    && avro_json_matches(variant, names, inner)
            })
        }
        AvroSchema::Ref { name } => names
            .get(name)
            .is_some_and(|target| avro_json_matches(target, names, value)),
    }
}

/// Length of a JSON string whose characters all fit in one byte (how Avro's
/// JSON encoding writes bytes and fixed values).
fn latin1_len(value: &Value) -> Option<usize> {
    let text = value.as_str()?;
    let mut len = 0;
    for c in text.chars() {
        if u32::from(c) > 0xFF {
            return None;
        }
        len += 1;
    }
    Some(len)
}

/// The key naming a union branch in Avro JSON: the type name of a
/// primitive (logical types use their underlying type), the full name of a
/// named type.
fn branch_name(schema: &AvroSchema) -> Option<String> {
    Some(
        match schema {
            AvroSchema::Null => "null",
            AvroSchema::Boolean => "boolean",
            AvroSchema::Int | AvroSchema::Date | AvroSchema::TimeMillis => "int",
            AvroSchema::Long
            | AvroSchema::TimeMicros
            | AvroSchema::TimestampMillis
            | AvroSchema::TimestampMicros
            | AvroSchema::TimestampNanos
            | AvroSchema::LocalTimestampMillis
            | AvroSchema::LocalTimestampMicros
            | AvroSchema::LocalTimestampNanos => "long",
            AvroSchema::Float => "float",
            AvroSchema::Double => "double",
            AvroSchema::Bytes | AvroSchema::BigDecimal => "bytes",
            AvroSchema::String | AvroSchema::Uuid => "string",
            AvroSchema::Array(_) => "array",
            AvroSchema::Map(_) => "map",
            AvroSchema::Duration => "fixed",
            AvroSchema::Record(r) => return Some(r.name.fullname(None)),
            AvroSchema::Enum(e) => return Some(e.name.fullname(None)),
            AvroSchema::Fixed(f) => return Some(f.name.fullname(None)),
            AvroSchema::Decimal(d) => return branch_name(&d.inner),
            AvroSchema::Ref { name } => return Some(name.fullname(None)),
            AvroSchema::Union(_) => return None,
        }
        .to_owned(),
    )
}

/// One revision of a schema.
#[derive(Debug, Clone)]
struct Revision {
    id: String,
    kind: i32,
    definition: String,
    created: SystemTime,
    compiled: Arc<CompiledSchema>,
}

impl Revision {
    fn to_proto(&self, name: &str, view: i32) -> Schema {
        let basic = SchemaView::try_from(view) == Ok(SchemaView::Basic);
        Schema {
            name: name.to_owned(),
            r#type: self.kind,
            definition: if basic {
                String::new()
            } else {
                self.definition.clone()
            },
            revision_id: self.id.clone(),
            revision_create_time: Some(timestamp(self.created)),
            ..Default::default()
        }
    }
}

/// A schema: its revisions, oldest first, never empty.
#[derive(Debug)]
struct SchemaEntry {
    revisions: Vec<Revision>,
}

impl SchemaEntry {
    fn latest(&self) -> Option<&Revision> {
        self.revisions.last()
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.revisions.iter().position(|r| r.id == id)
    }
}

/// Hands out revision ids: 8 random hex digits, as the real service does.
#[derive(Debug, Default)]
struct RevisionIds {
    seed: RandomState,
    counter: u64,
}

impl RevisionIds {
    fn next(&mut self, taken: impl Fn(&str) -> bool) -> String {
        loop {
            self.counter += 1;
            let mut hasher = self.seed.build_hasher();
            hasher.write_u64(self.counter);
            let id = format!("{:08x}", hasher.finish() & 0xFFFF_FFFF);
            if !taken(&id) {
                return id;
            }
        }
    }
}

/// Which revisions a topic's messages are checked against, resolved from
/// its `schema_settings` when publishing.
#[derive(Debug, Clone)]
pub struct TopicBinding {
    schema: String,
    encoding: MessageEncoding,
    /// Candidate revisions, newest first.
    revisions: Vec<(String, Arc<CompiledSchema>)>,
}

impl TopicBinding {
    /// Validates `data` against the bound revisions, newest first, and
    /// answers the attributes the delivered message carries: schema name,
    /// encoding and the revision that matched.
    pub fn validate(&self, data: &[u8]) -> BrokerResult<[(&'static str, String); 3]> {
        let matched = self
            .revisions
            .iter()
            .find(|(_, compiled)| compiled.validate(data, self.encoding).is_ok())
            .ok_or_else(|| BrokerError::invalid("Could not parse message"))?;
        Ok([
            (SCHEMA_NAME_ATTRIBUTE, self.schema.clone()),
            (SCHEMA_ENCODING_ATTRIBUTE, self.encoding.as_str().to_owned()),
            (SCHEMA_REVISION_ATTRIBUTE, matched.0.clone()),
        ])
    }

    /// Validates every message of a Publish request (all or none are
    /// accepted) and adds the schema attributes to each.
    pub fn stamp(&self, messages: &mut [PublishedMessage]) -> BrokerResult<()> {
        let stamps = messages
            .iter()
            .map(|m| self.validate(&m.message.data))
            .collect::<BrokerResult<Vec<_>>>()?;
        for (message, stamp) in messages.iter_mut().zip(stamps) {
            for (key, value) in stamp {
                message.message.attributes.insert(key.to_owned(), value);
            }
        }
        Ok(())
    }
}

/// Where a ValidateMessage request finds its schema.
#[derive(Debug, Clone, Copy)]
pub enum SchemaSource<'a> {
    /// A stored schema, `name` or `name@revision`.
    Name(&'a str),
    /// A definition given in the request.
    Inline(&'a Schema),
    /// Neither was given.
    Missing,
}

/// The schema catalog. Pure state: the broker keeps it under its lock and
/// validates messages outside it with the `Arc`s this hands out.
#[derive(Debug, Default)]
pub struct SchemaRegistry {
    schemas: BTreeMap<String, SchemaEntry>,
    ids: RevisionIds,
}

/// Splits `name` or `name@revision`, validating the schema name; the error
/// quotes the name as given.
fn parse_revision_name(name: &str) -> BrokerResult<(&str, Option<&str>)> {
    let (base, revision) = match name.split_once('@') {
        Some((base, revision)) => (base, Some(revision)),
        None => (name, None),
    };
    if names::parse(base, Collection::Schemas).is_err() {
        return Err(BrokerError::invalid(format!(
            "Invalid [schemas] name: (name={name})"
        )));
    }
    Ok((base, revision))
}

/// Type and compiled form of a request's schema; a missing schema has no
/// type.
fn compile_request(schema: Option<&Schema>) -> Result<(i32, CompiledSchema), SchemaError> {
    let schema = schema.ok_or(SchemaError::InvalidType)?;
    let compiled = CompiledSchema::compile(schema.r#type, &schema.definition)?;
    Ok((schema.r#type, compiled))
}

/// A revision page token: the creation time of the first revision of the
/// next page, in RFC 3339 (what the emulator sends).
fn time_token(time: SystemTime) -> String {
    match serde_json::to_value(timestamp(time)) {
        Ok(Value::String(text)) => text,
        _ => String::new(),
    }
}

fn parse_time_token(token: &str) -> Option<SystemTime> {
    let ts: wkt::Timestamp = serde_json::from_value(Value::String(token.to_owned())).ok()?;
    let secs = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

fn page_limit(page_size: i32) -> Option<usize> {
    usize::try_from(page_size).ok().filter(|n| *n > 0)
}

impl SchemaRegistry {
    /// A new revision of `kind` with `definition`, created `now` (strictly
    /// after the schema's newest revision, so creation times order them).
    fn new_revision(
        &mut self,
        entry: Option<&SchemaEntry>,
        kind: i32,
        definition: String,
        compiled: Arc<CompiledSchema>,
        now: SystemTime,
    ) -> Revision {
        let mut created = now;
        if let Some(newest) = entry.and_then(SchemaEntry::latest)
            && created <= newest.created
        {
            created = newest.created + Duration::from_nanos(1);
        }
        let id = self
            .ids
            .next(|id| entry.is_some_and(|e| e.position(id).is_some()));
        Revision {
            id,
            kind,
            definition,
            created,
            compiled,
        }
    }

    /// Every revision of every schema, oldest first per schema, for the
    /// disk store.
    #[cfg(test)]
    pub(crate) fn export(&self) -> Vec<Schema> {
        self.schemas
            .iter()
            .flat_map(|(name, entry)| {
                entry
                    .revisions
                    .iter()
                    .map(|r| r.to_proto(name, SchemaView::Full as i32))
            })
            .collect()
    }

    /// Every revision of the schema `name`, oldest first (none once it is
    /// deleted): what the disk store keeps for it.
    pub(crate) fn revisions_of(&self, name: &str) -> Vec<Schema> {
        self.schemas.get(name).map_or_else(Vec::new, |entry| {
            entry
                .revisions
                .iter()
                .map(|r| r.to_proto(name, SchemaView::Full as i32))
                .collect()
        })
    }

    /// Rebuilds the registry from the revisions the disk store kept. A revision
    /// that no longer compiles is skipped with a warning.
    pub(crate) fn restore(revisions: Vec<Schema>) -> Self {
        let mut registry = Self::default();
        for schema in revisions {
            let compiled = match CompiledSchema::compile(schema.r#type, &schema.definition) {
                Ok(compiled) => compiled,
                Err(error) => {
                    tracing::warn!(schema = %schema.name, revision = %schema.revision_id, %error, "stored schema revision does not compile; skipped");
                    continue;
                }
            };
            let created = schema
                .revision_create_time
                .as_ref()
                .map_or(UNIX_EPOCH, system_time);
            let revision = Revision {
                id: schema.revision_id,
                kind: schema.r#type,
                definition: schema.definition,
                created,
                compiled: Arc::new(compiled),
            };
            registry
                .schemas
                .entry(schema.name)
                .or_insert_with(|| SchemaEntry {
                    revisions: Vec::new(),
                })
                .revisions
                .push(revision);
        }
        registry
    }

    /// CreateSchema: `parent/schemas/schema_id` with its first revision.
    pub fn create(
        &mut self,
        parent: &str,
        schema_id: &str,
        schema: Option<&Schema>,
        now: SystemTime,
    ) -> BrokerResult<Schema> {
        let name = format!("{parent}/schemas/{schema_id}");
        names::parse(&name, Collection::Schemas)?;
        let (kind, compiled) = compile_request(schema)?;
        if self.schemas.contains_key(&name) {
            return Err(BrokerError::already_exists("Schema already exists"));
        }
        let definition = schema.map(|s| s.definition.clone()).unwrap_or_default();
        let revision = self.new_revision(None, kind, definition, Arc::new(compiled), now);
        let answer = revision.to_proto(&name, SchemaView::Full as i32);
        self.schemas.insert(
            name,
            SchemaEntry {
                revisions: vec![revision],
            },
        );
        Ok(answer)
    }

    /// The schema `name` (plain: its newest revision) and the revision asked
    /// for by `name@revision`.
    fn lookup(&self, name: &str) -> BrokerResult<(&str, &Revision)> {
        let (base, revision) = parse_revision_name(name)?;
        let (base, entry) = self
            .schemas
            .get_key_value(base)
            .ok_or_else(schema_not_found)?;
        let found = match revision {
            None => entry.latest(),
            Some(id) => entry.position(id).and_then(|i| entry.revisions.get(i)),
        };
        found
            .map(|r| (base.as_str(), r))
            .ok_or_else(revision_not_found)
    }

    /// GetSchema of `name` or `name@revision`.
    pub fn get(&self, name: &str, view: i32) -> BrokerResult<Schema> {
        let (base, revision) = self.lookup(name)?;
        Ok(revision.to_proto(base, view))
    }

    /// ListSchemas of `parent` (`projects/{id}`): the newest revision of
    /// each, by name; the page token is the name of the next schema.
    pub fn list(
        &self,
        parent: &str,
        view: i32,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Schema>> {
        let project = names::parse_project(parent)?;
        let prefix = format!("projects/{project}/schemas/");
        let start = if page_token.starts_with(&prefix) {
            page_token.to_owned()
        } else {
            prefix.clone()
        };
        let limit = page_limit(page_size);
        let mut items = Vec::new();
        let mut next_page_token = String::new();
        for (name, entry) in self.schemas.range(start..) {
            if !name.starts_with(&prefix) {
                break;
            }
            if limit.is_some_and(|n| items.len() >= n) {
                next_page_token = name.clone();
                break;
            }
            if let Some(latest) = entry.latest() {
                items.push(latest.to_proto(name, view));
            }
        }
        Ok(ListPage {
            items,
            next_page_token,
        })
    }

    /// ListSchemaRevisions of `name`, oldest first; the page token is the
    /// creation time of the next revision.
    pub fn list_revisions(
        &self,
        name: &str,
        view: i32,
        page_size: i32,
        page_token: &str,
    ) -> BrokerResult<ListPage<Schema>> {
        names::parse(name, Collection::Schemas)?;
        let entry = self.schemas.get(name).ok_or_else(schema_not_found)?;
        let start = parse_time_token(page_token);
        let limit = page_limit(page_size);
        let mut items = Vec::new();
        let mut next_page_token = String::new();
        for revision in &entry.revisions {
            if start.is_some_and(|start| revision.created < start) {
                continue;
            }
            if limit.is_some_and(|n| items.len() >= n) {
                next_page_token = time_token(revision.created);
                break;
            }
            items.push(revision.to_proto(name, view));
        }
        Ok(ListPage {
            items,
            next_page_token,
        })
    }

    /// CommitSchema: a new revision of `name` with the request's definition.
    pub fn commit(
        &mut self,
        name: &str,
        schema: Option<&Schema>,
        now: SystemTime,
    ) -> BrokerResult<Schema> {
        names::parse(name, Collection::Schemas)?;
        let (kind, compiled) = compile_request(schema)?;
        let definition = schema.map(|s| s.definition.clone()).unwrap_or_default();
        self.push_revision(name, kind, definition, Arc::new(compiled), now)
    }

    fn push_revision(
        &mut self,
        name: &str,
        kind: i32,
        definition: String,
        compiled: Arc<CompiledSchema>,
        now: SystemTime,
    ) -> BrokerResult<Schema> {
        let entry = self.schemas.remove(name).ok_or_else(schema_not_found)?;
        let revision = self.new_revision(Some(&entry), kind, definition, compiled, now);
        let answer = revision.to_proto(name, SchemaView::Full as i32);
        let mut entry = entry;
        entry.revisions.push(revision);
        self.schemas.insert(name.to_owned(), entry);
        Ok(answer)
    }

    /// RollbackSchema: a new revision copying `revision_id`'s definition.
    pub fn rollback(
        &mut self,
        name: &str,
        revision_id: &str,
        now: SystemTime,
    ) -> BrokerResult<Schema> {
        names::parse(name, Collection::Schemas)?;
        let entry = self.schemas.get(name).ok_or_else(schema_not_found)?;
        let source = entry
            .position(revision_id)
            .and_then(|i| entry.revisions.get(i))
            .ok_or_else(|| BrokerError::not_found("Revision not found"))?;
        let (kind, definition, compiled) = (
            source.kind,
            source.definition.clone(),
            source.compiled.clone(),
        );
        self.push_revision(name, kind, definition, compiled, now)
    }

    /// DeleteSchemaRevision of `name@revision` (the revision must be in the
    /// name, as the emulator requires); the last revision cannot go.
    pub fn delete_revision(&mut self, name: &str) -> BrokerResult<Schema> {
        let (base, revision) = parse_revision_name(name)?;
        let entry = self.schemas.get_mut(base).ok_or_else(schema_not_found)?;
        let index = revision
            .and_then(|id| entry.position(id))
            .ok_or_else(revision_not_found)?;
        if entry.revisions.len() == 1 {
            return Err(BrokerError::invalid(
                "Cannot delete last revision. Please use DeleteSchema.",
            ));
        }
        let removed = entry.revisions.remove(index);
        Ok(removed.to_proto(base, SchemaView::Full as i32))
    }

    /// DeleteSchema with all its revisions.
    pub fn delete(&mut self, name: &str) -> BrokerResult<()> {
        names::parse(name, Collection::Schemas)?;
        self.schemas
            .remove(name)
            .map(drop)
            .ok_or_else(schema_not_found)
    }

    /// The compiled schema a ValidateMessage request names, if stored.
    pub fn compiled(&self, name: &str) -> BrokerResult<Arc<CompiledSchema>> {
        self.lookup(name).map(|(_, r)| r.compiled.clone())
    }

    /// Checks a topic's `schema_settings` on create and update: a schema
    /// name, an encoding, an existing schema and existing revision bounds.
    pub fn check_settings(&self, settings: &SchemaSettings) -> BrokerResult<()> {
        if settings.schema.is_empty() {
            return Err(BrokerError::invalid("No schema name provided"));
        }
        if MessageEncoding::from_proto(settings.encoding).is_none() {
            return Err(BrokerError::invalid("Invalid schema encoding provided"));
        }
        let entry = self
            .schemas
            .get(&settings.schema)
            .ok_or_else(|| BrokerError::not_found("Schema could not be found"))?;
        let first = if settings.first_revision_id.is_empty() {
            None
        } else {
            Some(
                entry
                    .position(&settings.first_revision_id)
                    .ok_or_else(|| BrokerError::not_found("First revision could not be found"))?,
            )
        };
        let last = if settings.last_revision_id.is_empty() {
            None
        } else {
            Some(
                entry
                    .position(&settings.last_revision_id)
                    .ok_or_else(|| BrokerError::not_found("Last revision could not be found"))?,
            )
        };
        if let (Some(first), Some(last)) = (first, last)
            && first > last
        {
            return Err(BrokerError::invalid(
                "The first revision must not be newer than the last revision.",
            ));
        }
        Ok(())
    }

    /// What publishing to a topic with `settings` validates against. A
    /// bound revision that was deleted since leaves that end of the range
    /// open.
    pub fn binding(&self, settings: &SchemaSettings) -> BrokerResult<TopicBinding> {
        let deleted = || BrokerError::not_found("Schema associated with topic deleted.");
        if settings.schema == DELETED_SCHEMA {
            return Err(deleted());
        }
        let entry = self.schemas.get(&settings.schema).ok_or_else(deleted)?;
        let encoding = MessageEncoding::from_proto(settings.encoding)
            .ok_or_else(|| BrokerError::invalid("Invalid schema encoding provided"))?;
        let first = entry.position(&settings.first_revision_id).unwrap_or(0);
        let last = entry
            .position(&settings.last_revision_id)
            .unwrap_or(entry.revisions.len().saturating_sub(1));
        let revisions = entry
            .revisions
            .iter()
            .enumerate()
            .filter(|(i, _)| (first..=last).contains(i))
            .rev()
            .map(|(_, r)| (r.id.clone(), r.compiled.clone()))
            .collect();
        Ok(TopicBinding {
            schema: settings.schema.clone(),
            encoding,
            revisions,
        })
    }
}

/// ValidateSchema: whether `schema` would be accepted by CreateSchema.
pub fn validate_definition(schema: Option<&Schema>) -> BrokerResult<()> {
    compile_request(schema).map(drop).map_err(BrokerError::from)
}

/// The encoding of a ValidateMessage request, required.
pub fn message_encoding(encoding: i32) -> BrokerResult<MessageEncoding> {
    MessageEncoding::from_proto(encoding).ok_or_else(|| SchemaError::NoEncoding.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_parser_panic_is_an_invalid_definition() {
        // apache-avro 0.21 panics on this record name (found by fuzzing).
        let definition = r#"{"type":"record","name":"--Order","fields":[]}"#;
        let error = CompiledSchema::compile(schema::Type::Avro as i32, definition).unwrap_err();
        assert!(
            matches!(&error, SchemaError::Definition { .. }),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "Could not parse schema definition");
    }

    const READING: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"double"}]}"#;
    const READING_V2: &str = r#"{"type":"record","name":"Reading","fields":[{"name":"sensor","type":"string"},{"name":"value","type":"double"},{"name":"unit","type":"string","default":"C"}]}"#;
    const PARENT: &str = "projects/p";
    const NAME: &str = "projects/p/schemas/readings";

    fn avro(definition: &str) -> Schema {
        Schema {
            r#type: schema::Type::Avro as i32,
            definition: definition.to_owned(),
            ..Default::default()
        }
    }

    fn proto(definition: &str) -> Schema {
        Schema {
            r#type: schema::Type::ProtocolBuffer as i32,
            definition: definition.to_owned(),
            ..Default::default()
        }
    }

    fn compiled(schema: &Schema) -> CompiledSchema {
        CompiledSchema::compile(schema.r#type, &schema.definition).unwrap()
    }

    fn settings(encoding: Encoding) -> SchemaSettings {
        SchemaSettings {
            schema: NAME.to_owned(),
            encoding: encoding as i32,
            ..Default::default()
        }
    }

    #[test]
    fn revision_ids_are_eight_hex_digits_and_unique() {
        let mut ids = RevisionIds::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = ids.next(|id| seen.contains(id));
            assert_eq!(id.len(), 8);
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn bad_definitions_and_types_are_rejected_with_the_emulator_messages() {
        for bad in ["{not avro", r#"{"type":"record","name":"X"}"#, ""] {
            let err = CompiledSchema::compile(schema::Type::Avro as i32, bad).unwrap_err();
            assert_eq!(err.to_string(), "Could not parse schema definition");
        }
        let err = CompiledSchema::compile(0, READING).unwrap_err();
        assert_eq!(err, SchemaError::InvalidType);
        assert_eq!(
            validate_definition(None).unwrap_err().message,
            "Invalid schema type"
        );
        assert!(validate_definition(Some(&avro("\"string\""))).is_ok());
    }

    #[test]
    fn protobuf_definitions_need_exactly_one_top_level_message() {
        assert!(
            CompiledSchema::compile(1, "syntax = \"proto3\"; message M { string a = 1; }").is_ok()
        );
        let none = CompiledSchema::compile(1, "syntax = \"proto3\";").unwrap_err();
        assert_eq!(none, SchemaError::TopLevelMessages { found: 0 });
        let two = CompiledSchema::compile(1, "syntax = \"proto3\"; message A {} message B {}")
            .unwrap_err();
        assert_eq!(two, SchemaError::TopLevelMessages { found: 2 });
        let nested = "syntax = \"proto3\"; message A { message B { int32 x = 1; } B b = 1; }";
        assert!(CompiledSchema::compile(1, nested).is_ok());
        let broken = CompiledSchema::compile(1, "syntax = \"proto3\"; message {").unwrap_err();
        assert!(matches!(broken, SchemaError::Definition { .. }));
        let wkt = "syntax = \"proto3\"; import \"google/protobuf/timestamp.proto\"; message M { google.protobuf.Timestamp t = 1; }";
        assert!(CompiledSchema::compile(1, wkt).is_ok());
        let other = "syntax = \"proto3\"; import \"other.proto\"; message M { int32 a = 1; }";
        assert!(CompiledSchema::compile(1, other).is_err());
    }

    #[test]
    fn avro_json_messages() {
        let reading = compiled(&avro(READING));
        let ok = |s: &str| {
            reading
                .validate(s.as_bytes(), MessageEncoding::Json)
                .is_ok()
        };
        assert!(ok(r#"{"sensor":"s1","value":1.5}"#));
        assert!(ok(r#"{"sensor":"s1","value":2}"#));
        assert!(!ok(r#"{"sensor":1}"#));
        assert!(!ok("{}"));
        assert!(!ok("not json"));
        assert!(!ok(""));
        assert!(!ok(r#"{"sensor":"s1","value":1.5,"extra":1}"#));
        let err = reading.validate(b"{}", MessageEncoding::Json).unwrap_err();
        assert_eq!(err.to_string(), "Could not parse JSON Avro message");

        let v2 = compiled(&avro(READING_V2));
        assert!(
            v2.validate(br#"{"sensor":"s1","value":1.5}"#, MessageEncoding::Json)
                .is_ok()
        );

        let string = compiled(&avro("\"string\""));
        assert!(string.validate(b"\"b\"", MessageEncoding::Json).is_ok());
        assert!(string.validate(b"1", MessageEncoding::Json).is_err());
    }

    #[test]
    fn avro_json_unions_enums_bytes_and_references() {
        let definition = r#"{"type":"record","name":"Node","namespace":"ex","fields":[
            {"name":"label","type":["null","string"]},
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
            {"name":"raw","type":"bytes"},
            {"name":"id","type":{"type":"fixed","name":"Id","size":2}},
            {"name":"count","type":"int"},
            {"name":"tags","type":{"type":"map","values":"long"}},
            {"name":"next","type":["null","Node"]}
        ]}"#;
        let node = compiled(&avro(definition));
        let ok = |s: &str| node.validate(s.as_bytes(), MessageEncoding::Json).is_ok();
        let leaf =
            r#"{"label":null,"kind":"A","raw":"\u00ff","id":"ab","count":1,"tags":{},"next":null}"#;
        assert!(ok(leaf));
        let chained = format!(
            r#"{{"label":{{"string":"x"}},"kind":"B","raw":"","id":"zz","count":-3,"tags":{{"a":1}},"next":{{"ex.Node":{leaf}}}}}"#
        );
        assert!(ok(&chained));
        assert!(!ok(&leaf.replace(r#""label":null"#, r#""label":"x""#)));
        assert!(!ok(&leaf.replace(r#""kind":"A""#, r#""kind":"C""#)));
        assert!(!ok(&leaf.replace(r#""id":"ab""#, r#""id":"abc""#)));
        assert!(!ok(&leaf.replace(r#""raw":"\u00ff""#, r#""raw":"\u0100""#)));
        assert!(!ok(&leaf.replace(r#""count":1"#, r#""count":4294967296"#)));
        assert!(!ok(&leaf.replace(r#""count":1"#, r#""count":1.5"#)));
    }

    #[test]
    fn avro_binary_messages() {
        let string = compiled(&avro("\"string\""));
        assert!(
            string
                .validate(&[0x02, b'x'], MessageEncoding::Binary)
                .is_ok()
        );
        let err = string
            .validate(&[0xFF, 0xFF, 0xFF], MessageEncoding::Binary)
            .unwrap_err();
        assert_eq!(err.to_string(), "Could not parse binary Avro message");
        assert!(
            string
                .validate(&[0x02, b'x', 0], MessageEncoding::Binary)
                .is_err()
        );

        let reading = compiled(&avro(READING));
        let mut datum = vec![0x04, b's', b'1'];
        datum.extend_from_slice(&1.5f64.to_le_bytes());
        assert!(reading.validate(&datum, MessageEncoding::Binary).is_ok());
        assert!(reading.validate(b"{}", MessageEncoding::Binary).is_err());
        let v2 = compiled(&avro(READING_V2));
        assert!(v2.validate(&datum, MessageEncoding::Binary).is_err());
    }

    #[test]
    fn protobuf_messages() {
        let m = compiled(&proto(
            "syntax = \"proto3\"; message M { string a = 1; int32 b = 2; }",
        ));
        assert!(
            m.validate(br#"{"a":"x","b":3}"#, MessageEncoding::Json)
                .is_ok()
        );
        assert!(m.validate(b"{}", MessageEncoding::Json).is_ok());
        assert!(m.validate(br#"{"c":1}"#, MessageEncoding::Json).is_err());
        assert!(m.validate(br#"{"a":1}"#, MessageEncoding::Json).is_err());
        assert!(m.validate(b"{} trailing", MessageEncoding::Json).is_err());
        let err = m.validate(b"nope", MessageEncoding::Json).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Could not parse JSON Protocol Buffer message"
        );
        assert!(
            m.validate(&[0x0A, 0x01, b'x', 0x10, 0x03], MessageEncoding::Binary)
                .is_ok()
        );
        assert!(
            m.validate(&[0x0A, 0x05, b'x'], MessageEncoding::Binary)
                .is_err()
        );
        assert!(
            m.validate(&[0x12, 0x01, b'x'], MessageEncoding::Binary)
                .is_err()
        );
    }

    #[test]
    fn create_get_list_and_names() {
        let mut registry = SchemaRegistry::default();
        let created = registry
            .create(PARENT, "readings", Some(&avro(READING)), SystemTime::now())
            .unwrap();
        assert_eq!(created.name, NAME);
        assert_eq!(created.definition, READING);
        assert_eq!(created.revision_id.len(), 8);
        assert!(created.revision_create_time.is_some());

        let dup = registry
            .create(PARENT, "readings", Some(&avro(READING)), SystemTime::now())
            .unwrap_err();
        assert_eq!(dup.message, "Schema already exists");
        let no_id = registry
            .create(PARENT, "", Some(&avro(READING)), SystemTime::now())
            .unwrap_err();
        assert_eq!(
            no_id.message,
            "Invalid [schemas] name: (name=projects/p/schemas/)"
        );
        let bad_parent = registry
            .create("nope", "abc", Some(&avro(READING)), SystemTime::now())
            .unwrap_err();
        assert_eq!(
            bad_parent.message,
            "Invalid [schemas] name: (name=nope/schemas/abc)"
        );
        let untyped = registry
            .create(PARENT, "untyped", None, SystemTime::now())
            .unwrap_err();
        assert_eq!(untyped.message, "Invalid schema type");

        let basic = registry.get(NAME, SchemaView::Basic as i32).unwrap();
        assert!(basic.definition.is_empty());
        assert_eq!(registry.get(NAME, 0).unwrap(), created);
        let at = registry
            .get(&format!("{NAME}@{}", created.revision_id), 0)
            .unwrap();
        assert_eq!(at, created);
        assert_eq!(
            registry
                .get(&format!("{NAME}@deadbeef"), 0)
                .unwrap_err()
                .message,
            "Schema revision not found"
        );
        assert_eq!(
            registry
                .get("projects/p/schemas/missing", 0)
                .unwrap_err()
                .message,
            "Schema not found"
        );
        assert_eq!(
            registry.get("readings", 0).unwrap_err().message,
            "Invalid [schemas] name: (name=readings)"
        );

        registry
            .create(PARENT, "alpha", Some(&avro("\"int\"")), SystemTime::now())
            .unwrap();
        let page = registry.list(PARENT, 0, 1, "").unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].name, "projects/p/schemas/alpha");
        assert_eq!(page.next_page_token, NAME);
        let page = registry.list(PARENT, 0, 1, &page.next_page_token).unwrap();
        assert_eq!(page.items[0].name, NAME);
        assert!(page.next_page_token.is_empty());
        assert!(
            registry
                .list("projects/other", 0, 0, "")
                .unwrap()
                .items
                .is_empty()
        );
    }

    #[test]
    fn commit_rollback_and_revision_deletion() {
        let mut registry = SchemaRegistry::default();
        let first = registry
            .create(PARENT, "readings", Some(&avro(READING)), SystemTime::now())
            .unwrap();
        let second = registry
            .commit(NAME, Some(&avro(READING_V2)), SystemTime::now())
            .unwrap();
        assert_ne!(first.revision_id, second.revision_id);
        assert_eq!(registry.get(NAME, 0).unwrap(), second);
        assert_eq!(
            registry
                .commit(NAME, Some(&avro("{bad")), SystemTime::now())
                .unwrap_err()
                .message,
            "Could not parse schema definition"
        );
        assert_eq!(
            registry
                .commit(NAME, None, SystemTime::now())
                .unwrap_err()
                .message,
            "Invalid schema type"
        );
        assert_eq!(
            registry
                .commit(
                    "projects/p/schemas/missing",
                    Some(&avro(READING)),
                    SystemTime::now()
                )
                .unwrap_err()
                .message,
            "Schema not found"
        );

        let page = registry.list_revisions(NAME, 0, 1, "").unwrap();
        assert_eq!(page.items, vec![first.clone()]);
        assert!(!page.next_page_token.is_empty());
        let rest = registry
            .list_revisions(NAME, 0, 1, &page.next_page_token)
            .unwrap();
        assert_eq!(rest.items, vec![second.clone()]);
        assert!(rest.next_page_token.is_empty());

        let rolled = registry
            .rollback(NAME, &first.revision_id, SystemTime::now())
            .unwrap();
        assert_eq!(rolled.definition, READING);
        assert_ne!(rolled.revision_id, first.revision_id);
        assert_eq!(
            registry
                .rollback(NAME, "deadbeef", SystemTime::now())
                .unwrap_err()
                .message,
            "Revision not found"
        );

        assert_eq!(
            registry.delete_revision(NAME).unwrap_err().message,
            "Schema revision not found"
        );
        let removed = registry
            .delete_revision(&format!("{NAME}@{}", second.revision_id))
            .unwrap();
        assert_eq!(removed, second);
        let ids: Vec<String> = registry
            .list_revisions(NAME, SchemaView::Basic as i32, 0, "")
            .unwrap()
            .items
            .into_iter()
            .map(|s| s.revision_id)
            .collect();
        assert_eq!(
            ids,
            vec![first.revision_id.clone(), rolled.revision_id.clone()]
        );

        registry
            .create(
                PARENT,
                "single",
                Some(&avro("\"string\"")),
                SystemTime::now(),
            )
            .unwrap();
        let only = registry.get("projects/p/schemas/single", 0).unwrap();
        assert_eq!(
            registry
                .delete_revision(&format!("projects/p/schemas/single@{}", only.revision_id))
                .unwrap_err()
                .message,
            "Cannot delete last revision. Please use DeleteSchema."
        );

        registry.delete(NAME).unwrap();
        assert_eq!(
            registry.delete(NAME).unwrap_err().message,
            "Schema not found"
        );
    }

    #[test]
    fn topic_settings_and_bindings() {
        let mut registry = SchemaRegistry::default();
        let first = registry
            .create(PARENT, "readings", Some(&avro(READING)), SystemTime::now())
            .unwrap();
        assert!(registry.check_settings(&settings(Encoding::Json)).is_ok());
        let unspecified = registry
            .check_settings(&settings(Encoding::Unspecified))
            .unwrap_err();
        assert_eq!(unspecified.message, "Invalid schema encoding provided");
        let empty = registry
            .check_settings(&SchemaSettings::default())
            .unwrap_err();
        assert_eq!(empty.message, "No schema name provided");
        let missing = SchemaSettings {
            schema: "readings".to_owned(),
            ..settings(Encoding::Json)
        };
        assert_eq!(
            registry.check_settings(&missing).unwrap_err().message,
            "Schema could not be found"
        );
        let bad_first = SchemaSettings {
            first_revision_id: "deadbeef".to_owned(),
            ..settings(Encoding::Json)
        };
        assert_eq!(
            registry.check_settings(&bad_first).unwrap_err().message,
            "First revision could not be found"
        );

        let second = registry
            .commit(NAME, Some(&avro(READING_V2)), SystemTime::now())
            .unwrap();
        let mut datum = vec![0x04, b's', b'1'];
        datum.extend_from_slice(&1.5f64.to_le_bytes());
        let binding = registry.binding(&settings(Encoding::Binary)).unwrap();
        let attributes = binding.validate(&datum).unwrap();
        assert_eq!(attributes[0], (SCHEMA_NAME_ATTRIBUTE, NAME.to_owned()));
        assert_eq!(
            attributes[1],
            (SCHEMA_ENCODING_ATTRIBUTE, "BINARY".to_owned())
        );
        assert_eq!(
            attributes[2],
            (SCHEMA_REVISION_ATTRIBUTE, first.revision_id.clone())
        );
        let mut datum_v2 = datum.clone();
        datum_v2.extend_from_slice(&[0x02, b'F']);
        let attributes = binding.validate(&datum_v2).unwrap();
        assert_eq!(attributes[2].1, second.revision_id);
        assert_eq!(
            binding.validate(b"{}").unwrap_err().message,
            "Could not parse message"
        );

        let pinned = SchemaSettings {
            first_revision_id: first.revision_id.clone(),
            last_revision_id: first.revision_id.clone(),
            ..settings(Encoding::Binary)
        };
        assert!(registry.check_settings(&pinned).is_ok());
        assert!(
            registry
                .binding(&pinned)
                .unwrap()
                .validate(&datum_v2)
                .is_err()
        );
        let reversed = SchemaSettings {
            first_revision_id: second.revision_id.clone(),
            last_revision_id: first.revision_id.clone(),
            ..settings(Encoding::Binary)
        };
        assert!(registry.check_settings(&reversed).is_err());

        registry.delete(NAME).unwrap();
        let gone = registry.binding(&settings(Encoding::Json)).unwrap_err();
        assert_eq!(gone.message, "Schema associated with topic deleted.");
        let renamed = SchemaSettings {
            schema: DELETED_SCHEMA.to_owned(),
            ..settings(Encoding::Json)
        };
        assert_eq!(
            registry.binding(&renamed).unwrap_err().message,
            "Schema associated with topic deleted."
        );
    }

    #[test]
    fn message_encodings() {
        assert_eq!(message_encoding(1).unwrap(), MessageEncoding::Json);
        assert_eq!(message_encoding(2).unwrap(), MessageEncoding::Binary);
        assert_eq!(
            message_encoding(0).unwrap_err().message,
            "No encoding provided."
        );
    }
}
