//! Baton's Pub/Sub engine.
//!
//! The broker owns the catalog (topics, subscriptions, snapshots) and the
//! delivery state of every subscription: the backlog of ready messages, the
//! leases of outstanding ones, per-stream flow control and the timers that
//! bring expired leases back. It knows nothing about gRPC or HTTP: the server
//! calls these functions from both transports and maps [`BrokerError`] to a
//! status through one table.

mod broker;
mod clock;
mod error;
mod field_mask;
pub mod filter;
mod held;
mod iam;
mod leased;
pub mod names;
pub mod observer;
mod paging;
mod payload_log;
mod published;
mod ref_counts;
pub mod schema;
mod store;
#[cfg(test)]
mod store_tests;
pub mod validate;

pub use broker::counters::{
    PushCounts, PushOutcome, PushResponseClass, PushResult, RECENT_DEAD_LETTERS,
    SubscriptionCounters, TopicCounters,
};
pub use broker::history::{
    MessageEvent, MessageEventKind, MessageHistory, PublishRecord, format_duration,
};
pub use broker::journal::{DEFAULT_MESSAGE_HISTORY, MAX_EVENTS_PER_MESSAGE};
pub use broker::leases::{PullWait, StreamRegistration};
pub use broker::stats::{
    DEFAULT_STATS_PAGE, DeadLetteredMessage, MAX_PEEK, MAX_STATS_PAGE, PeekedMessage, PeekedState,
    PushStats, SubscriptionStats, TopicStats,
};
pub use broker::{Broker, BrokerBuilder, DELETED_TOPIC};
pub use clock::Clock;
pub use error::{AckFailure, BrokerError, BrokerResult, ErrorCode};
pub use held::HeldMessage;
pub use leased::LeasedMessage;
pub use observer::{DeadLetter, Delivery, DeliveryKind, DeliveryObserver, LeaseEnd, Redelivery};
pub use paging::ListPage;
pub use published::{
    Attributes, InlineTraceparent, PublishBatch, PublishedMessage, TRACEPARENT_ATTRIBUTE,
};
pub use store::{STORE_FILE, Storage, StoreError};
