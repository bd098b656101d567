//! The local Pub/Sub console: a JSON API over the broker's stats, message
//! journal and peek (`/api/console/...`, [`api`]) and the pages that draw it
//! (`/ui/topics`, `/ui/subscriptions`, `/ui/messages/...`, [`pages`]).
//!
//! What it changes (publishing a test message, seeking) goes through the
//! request layer's own RPCs ([`crate::api::Publish`], [`crate::api::Seek`]),
//! so validation, schema checks, the broker's spans, durability and the
//! authentication/IAM gate apply exactly as to a client's call. What it only
//! reads passes the same gate with the permission the matching RPC needs
//! (`pubsub.topics.get`, `pubsub.subscriptions.get`, `...consume` to peek at
//! message data, `...list` on each listed item's project). With
//! authentication off everyone may do everything, as with the Pub/Sub API.
//!
//! Unlike the trace view's query API, which serves whoever reaches the port,
//! the console's data is Pub/Sub data (message contents, subscription
//! configuration), so with `--auth` it is served only to callers whose
//! bearer credential IAM allows; the pages themselves are static files and
//! ask for a token when the API answers 401.

mod api;
mod pages;

use crate::api::PubSubApi;

/// The console's routes (JSON API and pages), to merge into the server's
/// router before the REST fallback.
pub(crate) fn routes() -> axum::Router<PubSubApi> {
    api::routes().merge(pages::routes())
}
