//! What every part of a subscriber shares.

use super::config::SubscriberConfig;
use crate::client::{Client, project_of};
use crate::telemetry::Telemetry;

/// What every part of a subscriber shares: where to call and how.
pub(crate) struct Shared {
    pub client: Client,
    /// Full subscription name.
    pub subscription: String,
    pub config: SubscriberConfig,
    pub telemetry: Telemetry,
}

impl Shared {
    pub fn new(client: &Client, subscription: &str, config: SubscriberConfig) -> Self {
        let subscription = client.subscription_name(subscription);
        let project = project_of(&subscription, client.project_id());
        let telemetry = Telemetry::new(&config.tracing, project, &subscription);
        Self {
            client: client.clone(),
            subscription,
            telemetry,
            config,
        }
    }
}
