//! Checks of client-supplied settings and messages against the documented
//! limits (`pubsub-api.md` section 3). The messages are the ones clients see.

use std::time::Duration;

use baton_proto::pubsub::{
    BigQueryConfig, CloudStorageConfig, ExpirationPolicy, IngestionDataSourceSettings,
    MessageTransform, RetryPolicy, Subscription, Topic,
};
use baton_proto::wkt;

use crate::error::{BrokerError, BrokerResult, ErrorCode};
use crate::published::PublishedMessage;

/// Largest Publish request, in bytes of message payload.
pub const MAX_PUBLISH_REQUEST_BYTES: usize = 10_000_000;
/// Most messages in one Publish request.
pub const MAX_PUBLISH_REQUEST_MESSAGES: usize = 1_000;
/// Largest single message (data + attributes + ordering key).
pub const MAX_MESSAGE_BYTES: usize = 10_000_000;
/// Most attributes on one message.
pub const MAX_ATTRIBUTES: usize = 100;
/// Longest attribute key, in bytes.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 256;
/// Longest attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Longest ordering key, in bytes.
pub const MAX_ORDERING_KEY_BYTES: usize = 1024;
/// Shortest and longest message retention (topic and subscription).
pub const MIN_RETENTION: Duration = Duration::from_secs(600);
/// See [`MIN_RETENTION`].
pub const MAX_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);
/// Longest subscription retention: 7 days (topics may keep 31).
pub const MAX_SUBSCRIPTION_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default subscription retention: 7 days.
pub const DEFAULT_RETENTION_SECS: i64 = 7 * 24 * 3600;
/// See [`DEFAULT_RETENTION_SECS`].
pub const DEFAULT_SUBSCRIPTION_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a subscription may be inactive when it was created without an
/// expiration policy: 31 days, the real service's default.
pub const DEFAULT_EXPIRATION_TTL: Duration = Duration::from_secs(31 * 24 * 3600);
/// Shortest expiration policy ttl the real service accepts: 1 day.
pub const MIN_EXPIRATION_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default ack deadline of a subscription.
pub const DEFAULT_ACK_DEADLINE_SECS: i32 = 10;
/// Longest ack deadline.
pub const MAX_ACK_DEADLINE_SECS: i32 = 600;

fn too_large(
    field: &str,
    passed: impl std::fmt::Display,
    max: impl std::fmt::Display,
) -> BrokerError {
    BrokerError::invalid(format!(
        "The value for {field} is too large. You passed {passed} in the request, but the maximum value is {max}."
    ))
}

/// Validates a Publish request's messages; the first failure wins.
pub fn publish_messages(messages: &[PublishedMessage]) -> BrokerResult<()> {
    if messages.is_empty() {
        return Err(BrokerError::invalid("No messages to publish"));
    }
    if messages.len() > MAX_PUBLISH_REQUEST_MESSAGES {
        return Err(too_large(
            "message_count",
            messages.len(),
            MAX_PUBLISH_REQUEST_MESSAGES,
        ));
    }
    if let Some(first) = messages.first()
        && messages
            .iter()
            .any(|m| m.message.ordering_key != first.message.ordering_key)
    {
        return Err(BrokerError::new(
            ErrorCode::FailedPrecondition,
            "In a single publish request, all messages must have no ordering key or they must all have the same ordering key.",
        ));
    }
    let mut total = 0usize;
    for message in messages {
        let attributes = message.attributes();
        if message.message.data.is_empty() && attributes.is_empty() {
            return Err(BrokerError::invalid("Some messages are empty"));
        }
        let size = message.payload_size();
        if size > MAX_MESSAGE_BYTES {
            return Err(too_large("message_size", size, MAX_MESSAGE_BYTES));
        }
        total += size;
        if attributes.len() > MAX_ATTRIBUTES {
            return Err(too_large("attributes", attributes.len(), MAX_ATTRIBUTES));
        }
        for (key, value) in attributes.iter() {
            if key.len() > MAX_ATTRIBUTE_KEY_BYTES {
                return Err(BrokerError::invalid(format!(
                    "The attribute \"{key}\" in the request has a key that is too long. The length is {} characters, but the maximum allowed is {MAX_ATTRIBUTE_KEY_BYTES}. Refer to https://cloud.google.com/pubsub/quotas for more information.",
                    key.len()
                )));
            }
            if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
                return Err(BrokerError::invalid(format!(
                    "The attribute \"{key}\" in the request has a value that is too long. The length is {} characters, but the maximum allowed is {MAX_ATTRIBUTE_VALUE_BYTES}. Refer to https://cloud.google.com/pubsub/quotas for more information.",
                    value.len()
                )));
            }
        }
        if message.message.ordering_key.len() > MAX_ORDERING_KEY_BYTES {
            return Err(too_large(
                "ordering_key_size",
                message.message.ordering_key.len(),
                MAX_ORDERING_KEY_BYTES,
            ));
        }
    }
    if total > MAX_PUBLISH_REQUEST_BYTES {
        return Err(BrokerError::invalid(format!(
            "Request payload size exceeds the limit: {MAX_PUBLISH_REQUEST_BYTES} bytes."
        )));
    }
    Ok(())
}

/// Converts a protobuf duration to std, treating negatives as out of range.
pub fn to_std(duration: &wkt::Duration) -> Option<Duration> {
    let secs = u64::try_from(duration.seconds).ok()?;
    let nanos = u32::try_from(duration.nanos).ok()?;
    Some(Duration::new(secs, nanos))
}

fn retention_in_bounds(duration: &wkt::Duration, max: Duration) -> BrokerResult<()> {
    match to_std(duration) {
        Some(d) if (MIN_RETENTION..=max).contains(&d) => Ok(()),
        _ => Err(BrokerError::invalid(
            "message_retention_duration out of bounds",
        )),
    }
}

/// Validates the settable fields of a topic.
pub fn topic_settings(topic: &Topic) -> BrokerResult<()> {
    if let Some(retention) = &topic.message_retention_duration {
        retention_in_bounds(retention, MAX_RETENTION)?;
    }
    Ok(())
}

/// How long `sub` may stay inactive before it is deleted: the policy's
/// `ttl`; [`DEFAULT_EXPIRATION_TTL`] without a policy; `None` (never) for a
/// policy without a ttl, or with a zero one (which the emulator echoes as
/// `ttl: {}` and some encodings cannot tell from an unset one).
pub fn expiration_ttl(sub: &Subscription) -> Option<Duration> {
    match &sub.expiration_policy {
        None => Some(DEFAULT_EXPIRATION_TTL),
        Some(policy) => policy
            .ttl
            .as_ref()
            .and_then(to_std)
            .filter(|ttl| !ttl.is_zero()),
    }
}

/// Validates an expiration policy: a ttl of at least a day (the real
/// service's minimum), or none (never expires).
pub fn expiration_policy(policy: Option<&ExpirationPolicy>) -> BrokerResult<()> {
    let Some(ttl) = policy.and_then(|p| p.ttl.as_ref()) else {
        return Ok(());
    };
    match to_std(ttl) {
        Some(d) if d.is_zero() || d >= MIN_EXPIRATION_TTL => Ok(()),
        _ => Err(BrokerError::invalid(format!(
            "The value for expiration_policy.ttl is too small. You passed {} in the request, but the minimum value is {}s.",
            duration_secs_text(ttl),
            MIN_EXPIRATION_TTL.as_secs()
        ))),
    }
}

/// Validates a subscription's ack deadline and normalises 0 to the default.
pub fn ack_deadline(seconds: i32) -> BrokerResult<i32> {
    match seconds {
        0 => Ok(DEFAULT_ACK_DEADLINE_SECS),
        1..=MAX_ACK_DEADLINE_SECS => Ok(seconds),
        _ => Err(BrokerError::invalid("ack_deadline_secs out of bounds")),
    }
}

fn duration_secs_text(duration: &wkt::Duration) -> String {
    if duration.nanos == 0 {
        format!("{}s", duration.seconds)
    } else {
        let secs = duration.seconds as f64 + f64::from(duration.nanos) / 1e9;
        format!("{secs}s")
    }
}

/// Validates and completes a retry policy (defaults 10 s and 600 s).
pub fn retry_policy(policy: &mut RetryPolicy) -> BrokerResult<()> {
    let min = policy.minimum_backoff.get_or_insert(wkt::Duration {
        seconds: 10,
        nanos: 0,
    });
    let min_std = to_std(min);
    let min_copy = *min;
    let max = policy.maximum_backoff.get_or_insert(wkt::Duration {
        seconds: 600,
        nanos: 0,
    });
    let max_std = to_std(max);
    let bound = Duration::from_secs(600);
    let (Some(min_std), Some(max_std)) = (min_std, max_std) else {
        return Err(BrokerError::invalid(
            "retry_policy backoff must not be negative",
        ));
    };
    if min_std > bound {
        return Err(too_large(
            "minimum_backoff",
            duration_secs_text(&min_copy),
            "600s",
        ));
    }
    if max_std > bound {
        return Err(too_large(
            "maximum_backoff",
            duration_secs_text(max),
            "600s",
        ));
    }
    if max_std < min_std {
        return Err(BrokerError::invalid(format!(
            "The value for maximum_backoff is too small. You passed {} in the request, but the minimum value is {}.",
            duration_secs_text(max),
            duration_secs_text(&min_copy)
        )));
    }
    Ok(())
}

/// Validates `max_delivery_attempts` (5-100, 0 means 5).
pub fn max_delivery_attempts(attempts: i32) -> BrokerResult<i32> {
    match attempts {
        0 => Ok(5),
        5..=100 => Ok(attempts),
        n if n < 5 => Err(BrokerError::new(
            ErrorCode::OutOfRange,
            format!(
                "The value for max_delivery_attempts is too small. You passed {n} in the request, but the minimum value is 5."
            ),
        )),
        n => Err(BrokerError::new(
            ErrorCode::OutOfRange,
            format!(
                "The value for max_delivery_attempts is too large. You passed {n} in the request, but the maximum value is 100."
            ),
        )),
    }
}

/// Validates a push endpoint: empty (pull) or an absolute http(s) URL.
pub fn push_endpoint(endpoint: &str) -> BrokerResult<()> {
    let ok = endpoint.is_empty()
        || ["http://", "https://"].iter().any(|scheme| {
            endpoint
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
        });
    if ok {
        Ok(())
    } else {
        Err(BrokerError::invalid("Unsupported push_endpoint"))
    }
}

/// Validates the settings of a subscription (everything but its names) and
/// fills in the defaults the service reports back.
pub fn subscription_settings(sub: &mut Subscription) -> BrokerResult<()> {
    sub.ack_deadline_seconds = ack_deadline(sub.ack_deadline_seconds)?;
    match &sub.message_retention_duration {
        Some(retention) => retention_in_bounds(retention, MAX_SUBSCRIPTION_RETENTION)?,
        None => {
            sub.message_retention_duration = Some(wkt::Duration {
                seconds: DEFAULT_RETENTION_SECS,
                nanos: 0,
            })
        }
    }
    if let Some(policy) = &mut sub.retry_policy {
        retry_policy(policy)?;
    }
    expiration_policy(sub.expiration_policy.as_ref())?;
    let push = sub.push_config.get_or_insert_with(Default::default);
    push_endpoint(&push.push_endpoint)?;
    if sub.filter.len() > 256 {
        return Err(BrokerError::invalid(
            "The filter is too long: at most 256 bytes.",
        ));
    }
    Ok(())
}

/// A feature of the API that Baton does not carry out, refused by name
/// instead of being stored and left inert (`docs/compatibility.md`,
/// "Features Baton refuses").
fn not_carried_out(field: &str, feature: &str, why: &str) -> BrokerError {
    BrokerError::new(
        ErrorCode::Unimplemented,
        format!(
            "{feature} ({field}) are not supported by Baton: {why}. Leave {field} unset; see docs/compatibility.md, \"Features Baton refuses\"."
        ),
    )
}

/// Refuses a BigQuery subscription: Baton cannot write to BigQuery, and
/// accepting the config would leave the subscription's messages undelivered
/// without a word. An empty config (nothing asked for) passes.
pub fn bigquery_config(config: Option<&BigQueryConfig>) -> BrokerResult<()> {
    match config {
        Some(config) if *config != BigQueryConfig::default() => Err(not_carried_out(
            "bigquery_config",
            "BigQuery subscriptions",
            "it cannot write messages to BigQuery tables",
        )),
        _ => Ok(()),
    }
}

/// Refuses a Cloud Storage subscription: Baton cannot write to Cloud
/// Storage buckets. An empty config passes.
pub fn cloud_storage_config(config: Option<&CloudStorageConfig>) -> BrokerResult<()> {
    match config {
        Some(config) if *config != CloudStorageConfig::default() => Err(not_carried_out(
            "cloud_storage_config",
            "Cloud Storage subscriptions",
            "it cannot write messages to Cloud Storage buckets",
        )),
        _ => Ok(()),
    }
}

/// Refuses message transforms (JavaScript UDFs, AI inference, compression):
/// Baton runs no transforms, and delivering untransformed messages to code
/// expecting transformed ones would be a silent change of data. Transforms
/// marked `disabled` do nothing in the real service either, so they pass.
pub fn message_transforms(transforms: &[MessageTransform]) -> BrokerResult<()> {
    if transforms.iter().any(|t| !t.disabled) {
        Err(not_carried_out(
            "message_transforms",
            "Message transforms",
            "it does not run transforms (enabled ones are refused; disabled ones are kept)",
        ))
    } else {
        Ok(())
    }
}

/// Refuses topic ingestion (from Kinesis, Cloud Storage, Event Hubs, MSK,
/// Confluent Cloud...): Baton imports from no external source. Empty
/// settings pass.
pub fn ingestion_data_source_settings(
    settings: Option<&IngestionDataSourceSettings>,
) -> BrokerResult<()> {
    match settings {
        Some(settings) if *settings != IngestionDataSourceSettings::default() => {
            Err(not_carried_out(
                "ingestion_data_source_settings",
                "Import topics",
                "it ingests from no external data source",
            ))
        }
        _ => Ok(()),
    }
}

/// Refuses the subscription features Baton cannot carry out (see
/// [`bigquery_config`], [`cloud_storage_config`], [`message_transforms`]).
pub fn subscription_features(sub: &Subscription) -> BrokerResult<()> {
    bigquery_config(sub.bigquery_config.as_ref())?;
    cloud_storage_config(sub.cloud_storage_config.as_ref())?;
    message_transforms(&sub.message_transforms)
}

/// Refuses the topic features Baton cannot carry out (see
/// [`ingestion_data_source_settings`], [`message_transforms`]).
pub fn topic_features(topic: &Topic) -> BrokerResult<()> {
    ingestion_data_source_settings(topic.ingestion_data_source_settings.as_ref())?;
    message_transforms(&topic.message_transforms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::pubsub::PubsubMessage;

    fn msg(data: &[u8]) -> PubsubMessage {
        PubsubMessage {
            data: data.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn empty_and_missing_messages() {
        assert_eq!(
            publish_messages(&[]).unwrap_err().message,
            "No messages to publish"
        );
        let mut only_key = msg(b"");
        only_key.ordering_key = "k".into();
        assert_eq!(
            publish_messages(&[only_key.into()]).unwrap_err().message,
            "Some messages are empty"
        );
    }

    #[test]
    fn limits() {
        let mut many = msg(b"x");
        for i in 0..101 {
            many.attributes.insert(format!("k{i}"), "v".into());
        }
        assert!(publish_messages(&[many.into()]).is_err());
        let big = msg(&vec![b'd'; MAX_MESSAGE_BYTES + 1]);
        assert!(publish_messages(&[big.into()]).is_err());
        let ok = msg(&vec![b'd'; 1_000_000]);
        assert!(publish_messages(&[ok.into()]).is_ok());
        let msgs: Vec<PublishedMessage> = (0..1001).map(|_| msg(b"x").into()).collect();
        assert!(publish_messages(&msgs).is_err());
    }

    #[test]
    fn ack_deadline_bounds() {
        assert_eq!(ack_deadline(0).unwrap(), 10);
        assert_eq!(ack_deadline(9).unwrap(), 9);
        assert!(ack_deadline(601).is_err());
        assert!(ack_deadline(-1).is_err());
    }

    #[test]
    fn retry_policy_defaults_and_inversion() {
        let mut empty = RetryPolicy::default();
        retry_policy(&mut empty).unwrap();
        assert_eq!(empty.minimum_backoff.unwrap().seconds, 10);
        assert_eq!(empty.maximum_backoff.unwrap().seconds, 600);
        let mut inverted = RetryPolicy {
            minimum_backoff: Some(wkt::Duration {
                seconds: 60,
                nanos: 0,
            }),
            maximum_backoff: Some(wkt::Duration {
                seconds: 1,
                nanos: 0,
            }),
        };
        assert_eq!(
            retry_policy(&mut inverted).unwrap_err().message,
            "The value for maximum_backoff is too small. You passed 1s in the request, but the minimum value is 60s."
        );
    }
}
