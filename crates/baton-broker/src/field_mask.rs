//! Field masks of the Update requests, with nested paths.
//!
//! The real service takes a path into a sub-message
//! (`schema_settings.first_revision_id`, `push_config.oidc_token.audience`)
//! and changes only that field, leaving its siblings as they are. The
//! broker's update code works per top-level field (each has its own checks),
//! so a nested path is folded into one: the top-level field becomes what it
//! is now with the nested fields taken from the request, and the check of the
//! top-level field then runs on that. Paths are resolved against the
//! messages' descriptors, so any depth works and a misspelt path is refused.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage as _, Value,
};

/// The descriptors of the API's messages, decoded once.
fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(baton_proto::FILE_DESCRIPTOR_SET).ok())
        .as_ref()
}

fn descriptor(full_name: &str) -> Option<MessageDescriptor> {
    pool()?.get_message_by_name(full_name)
}

/// Whether `path` (snake_case segments joined by dots) names a field of the
/// message `full_name`, following sub-messages for all but the last segment.
pub(crate) fn is_known(full_name: &str, path: &str) -> bool {
    let Some(mut message) = descriptor(full_name) else {
        return false;
    };
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let Some(field) = message.get_field_by_name(segment) else {
            return false;
        };
        if segments.peek().is_none() {
            return true;
        }
        match field.kind() {
            Kind::Message(inner) if !field.is_list() && !field.is_map() => message = inner,
            _ => return false,
        }
    }
    false
}

/// Why a mask could not be folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FoldError {
    /// A path that names no field; the path.
    Unknown(String),
    /// The messages would not convert (never with the API's own types).
    Reflection,
}

/// `update` and `paths` with every nested path folded into its top-level
/// field: that field in the answer is `current`'s with the nested fields
/// taken from `update`, and the answer's paths name it instead. Top-level
/// paths stay as they are; a top-level path also given whole wins over its
/// nested ones. `full_name` is the message's protobuf name
/// (`google.pubsub.v1.Topic`).
pub(crate) fn fold_nested<M: Message + Default>(
    full_name: &str,
    current: &M,
    update: M,
    paths: &[String],
) -> Result<(M, Vec<String>), FoldError> {
    if !paths.iter().any(|p| p.contains('.')) {
        return Ok((update, paths.to_vec()));
    }
    for path in paths {
        if !is_known(full_name, path) {
            return Err(FoldError::Unknown(path.clone()));
        }
    }
    let descriptor = descriptor(full_name).ok_or(FoldError::Reflection)?;
    let to_dynamic = |message: &M| {
        DynamicMessage::decode(descriptor.clone(), message.encode_to_vec().as_slice())
            .map_err(|_| FoldError::Reflection)
    };
    let mut merged = to_dynamic(current)?;
    let mut folded_update = to_dynamic(&update)?;
    let source = to_dynamic(&update)?;
    let mut folded_paths: Vec<String> = Vec::new();
    for path in paths {
        let top = path.split('.').next().unwrap_or(path);
        if !folded_paths.iter().any(|p| p == top) {
            folded_paths.push(top.to_owned());
        }
    }
    for path in paths.iter().filter(|p| p.contains('.')) {
        let top = path.split('.').next().unwrap_or(path);
        if paths.iter().any(|p| p == top) {
            continue;
        }
        copy_path(&source, &mut merged, path)?;
    }
    for top in &folded_paths {
        if paths.iter().any(|p| p == top) {
            continue;
        }
        let field = descriptor
            .get_field_by_name(top)
            .ok_or_else(|| FoldError::Unknown(top.clone()))?;
        let value = merged.get_field(&field).into_owned();
        folded_update.set_field(&field, value);
    }
    let update =
        M::decode(folded_update.encode_to_vec().as_slice()).map_err(|_| FoldError::Reflection)?;
    Ok((update, folded_paths))
}

/// Sets the field at `path` in `target` to its value in `source` (cleared
/// when `source` lacks it or a message on the way), creating the
/// sub-messages on the way in `target`.
fn copy_path(
    source: &DynamicMessage,
    target: &mut DynamicMessage,
    path: &str,
) -> Result<(), FoldError> {
    let unknown = || FoldError::Unknown(path.to_owned());
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let field = target
        .descriptor()
        .get_field_by_name(head)
        .ok_or_else(unknown)?;
    match rest {
        None => {
            if source.has_field(&field) {
                target.set_field(&field, source.get_field(&field).into_owned());
            } else {
                target.clear_field(&field);
            }
            Ok(())
        }
        Some(rest) => {
            let Kind::Message(inner) = field.kind() else {
                return Err(unknown());
            };
            let empty = DynamicMessage::new(inner.clone());
            let source_inner = match source.get_field(&field).as_message() {
                Some(message) if source.has_field(&field) => message.clone(),
                _ => empty.clone(),
            };
            let mut target_inner = match target.get_field(&field).as_message() {
                Some(message) if target.has_field(&field) => message.clone(),
                _ => empty,
            };
            copy_path(&source_inner, &mut target_inner, rest)?;
            target.set_field(&field, Value::Message(target_inner));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use baton_proto::pubsub::{
        DeadLetterPolicy, PushConfig, SchemaSettings, Subscription, Topic, push_config,
    };

    use super::*;

    const TOPIC: &str = "google.pubsub.v1.Topic";
    const SUBSCRIPTION: &str = "google.pubsub.v1.Subscription";

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn known_paths_follow_sub_messages() {
        assert!(is_known(TOPIC, "schema_settings"));
        assert!(is_known(TOPIC, "schema_settings.first_revision_id"));
        assert!(is_known(SUBSCRIPTION, "push_config.oidc_token.audience"));
        assert!(!is_known(TOPIC, "schema_settings.bogus"));
        assert!(!is_known(TOPIC, "schemaSettings.firstRevisionId"));
        // Into a scalar or a repeated field: no further.
        assert!(!is_known(TOPIC, "kms_key_name.x"));
        assert!(!is_known(TOPIC, "labels.env"));
        assert!(!is_known(TOPIC, "schema_settings."));
    }

    #[test]
    fn a_nested_path_changes_only_its_field() {
        let current = Topic {
            name: "projects/p/topics/t".into(),
            schema_settings: Some(SchemaSettings {
                schema: "projects/p/schemas/s".into(),
                encoding: 1,
                first_revision_id: "a".into(),
                last_revision_id: "b".into(),
            }),
            ..Default::default()
        };
        let update = Topic {
            name: "projects/p/topics/t".into(),
            schema_settings: Some(SchemaSettings {
                first_revision_id: "c".into(),
                last_revision_id: "d".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (folded, folded_paths) = fold_nested(
            TOPIC,
            &current,
            update,
            &paths(&[
                "schema_settings.first_revision_id",
                "schema_settings.last_revision_id",
            ]),
        )
        .unwrap();
        assert_eq!(folded_paths, paths(&["schema_settings"]));
        assert_eq!(
            folded.schema_settings,
            Some(SchemaSettings {
                schema: "projects/p/schemas/s".into(),
                encoding: 1,
                first_revision_id: "c".into(),
                last_revision_id: "d".into(),
            })
        );
    }

    #[test]
    fn a_nested_path_absent_from_the_request_clears_the_field() {
        let current = Subscription {
            push_config: Some(PushConfig {
                push_endpoint: "https://example.com/push".into(),
                authentication_method: Some(push_config::AuthenticationMethod::OidcToken(
                    push_config::OidcToken {
                        service_account_email: "sa@p.iam.gserviceaccount.com".into(),
                        audience: "old".into(),
                    },
                )),
                ..Default::default()
            }),
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: "projects/p/topics/dead".into(),
                max_delivery_attempts: 7,
            }),
            ..Default::default()
        };
        let (folded, folded_paths) = fold_nested(
            SUBSCRIPTION,
            &current,
            Subscription::default(),
            &paths(&[
                "push_config.oidc_token.audience",
                "dead_letter_policy.max_delivery_attempts",
            ]),
        )
        .unwrap();
        assert_eq!(folded_paths, paths(&["push_config", "dead_letter_policy"]));
        let push = folded.push_config.unwrap();
        assert_eq!(push.push_endpoint, "https://example.com/push");
        assert_eq!(
            push.authentication_method,
            Some(push_config::AuthenticationMethod::OidcToken(
                push_config::OidcToken {
                    service_account_email: "sa@p.iam.gserviceaccount.com".into(),
                    audience: String::new(),
                }
            ))
        );
        let dead = folded.dead_letter_policy.unwrap();
        assert_eq!(dead.dead_letter_topic, "projects/p/topics/dead");
        assert_eq!(dead.max_delivery_attempts, 0);
    }

    #[test]
    fn the_whole_field_wins_over_its_nested_paths() {
        let current = Topic {
            schema_settings: Some(SchemaSettings {
                schema: "projects/p/schemas/s".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let update = Topic::default();
        let (folded, folded_paths) = fold_nested(
            TOPIC,
            &current,
            update,
            &paths(&["schema_settings", "schema_settings.encoding", "labels"]),
        )
        .unwrap();
        assert_eq!(folded_paths, paths(&["schema_settings", "labels"]));
        assert_eq!(folded.schema_settings, None);
    }

    #[test]
    fn unknown_nested_paths_are_named() {
        assert_eq!(
            fold_nested(
                TOPIC,
                &Topic::default(),
                Topic::default(),
                &paths(&["labels", "schema_settings.bogus"]),
            ),
            Err(FoldError::Unknown("schema_settings.bogus".into()))
        );
    }
}
