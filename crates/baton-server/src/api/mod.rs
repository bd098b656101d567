//! The request layer: every RPC of the Pub/Sub API as one function, typed
//! request in, typed response or [`BrokerError`](baton_broker::BrokerError)
//! out, whatever the transport.
//!
//! Each RPC is a type implementing [`Rpc`]: its name, whether its answer
//! waits for durability, and its handler (validation, the broker call, page
//! conversion). [`PubSubApi::call`] runs one: it is the single place where
//! something that applies to every request happens (authentication and the
//! IAM check of the RPC's row in [`permissions`], when authentication is
//! on; the durability wait), so a new RPC, or a new check on every RPC, is
//! written once. The
//! gRPC services (`crate::grpc`) and the REST route table (`crate::rest`) are
//! thin transports over it; StreamingPull, which only gRPC carries, has its
//! session here too (`streaming_pull`).

pub mod access;
mod iam;
pub mod permissions;
mod publisher;
pub(crate) mod rpc;
mod schemas;
pub(crate) mod streaming_pull;
mod subscriber;

pub use access::AccessControl;
pub use iam::{GetIamPolicy, SetIamPolicy, TestIamPermissions};
pub use publisher::{
    CreateTopic, DeleteTopic, DetachSubscription, GetTopic, ListTopicSnapshots,
    ListTopicSubscriptions, ListTopics, Publish, PublishCall, UpdateTopic,
};
pub use rpc::{
    Durability, Guarded, MAX_GRPC_PULL_WAIT, PubSubApi, REST_PULL_WAIT, RequestContext, Rpc,
    Transport,
};
pub use schemas::{
    CommitSchema, CreateSchema, DeleteSchema, DeleteSchemaRevision, GetSchema, ListSchemaRevisions,
    ListSchemas, RollbackSchema, ValidateMessage, ValidateSchema,
};
pub use subscriber::{
    Acknowledge, CreateSnapshot, CreateSubscription, DeleteSnapshot, DeleteSubscription,
    GetSnapshot, GetSubscription, ListSnapshots, ListSubscriptions, ModifyAckDeadline,
    ModifyPushConfig, Pull, Seek, UpdateSnapshot, UpdateSubscription,
};
