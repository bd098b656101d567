//! Resource names: `projects/{project}/{collection}/{id}`, validated the way
//! the real service does before any existence check.

use crate::error::{BrokerError, BrokerResult};

/// The kinds of named resources, with the collection segment each uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `projects/p/topics/t`
    Topics,
    /// `projects/p/subscriptions/s`
    Subscriptions,
    /// `projects/p/snapshots/s`
    Snapshots,
    /// `projects/p/schemas/s`
    Schemas,
}

impl Collection {
    /// The path segment of this collection.
    pub fn segment(self) -> &'static str {
        match self {
            Self::Topics => "topics",
            Self::Subscriptions => "subscriptions",
            Self::Snapshots => "snapshots",
            Self::Schemas => "schemas",
        }
    }
}

/// A validated resource name, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceName<'a> {
    /// Project id (the `{project}` segment).
    pub project: &'a str,
    /// Resource id (the last segment).
    pub id: &'a str,
}

/// True when `id` is a legal resource id: starts with a letter, 3-255
/// characters of `[A-Za-z0-9-_.~+%]`, not starting with `goog`.
pub fn is_valid_id(id: &str) -> bool {
    let len = id.len();
    if !(3..=255).contains(&len) || id.starts_with("goog") {
        return false;
    }
    let mut chars = id.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    first_is_letter
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
}

/// Parses `name` as a resource of `collection`, answering the service's
/// `Invalid [collection] name: (name=...)` error when it is not one.
pub fn parse(name: &str, collection: Collection) -> BrokerResult<ResourceName<'_>> {
    let invalid = || {
        BrokerError::invalid(format!(
            "Invalid [{}] name: (name={name})",
            collection.segment()
        ))
    };
    let mut parts = name.split('/');
    let (Some("projects"), Some(project), Some(segment), Some(id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    if project.is_empty() || segment != collection.segment() || !is_valid_id(id) {
        return Err(invalid());
    }
    Ok(ResourceName { project, id })
}

/// Parses `projects/{project}`, answering the emulator's "Application error"
/// for anything else, which is what the official emulator sends.
pub fn parse_project(name: &str) -> BrokerResult<&str> {
    match name.strip_prefix("projects/") {
        Some(project) if !project.is_empty() && !project.contains('/') => Ok(project),
        _ => Err(BrokerError::application_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(
            parse(
                "projects/p/topics/Topic_1.two~three+four%five-six",
                Collection::Topics
            )
            .is_ok()
        );
        assert!(parse("projects/p/topics/GoogTopic", Collection::Topics).is_ok());
    }

    #[test]
    fn rejects_bad_names_with_the_collection_in_brackets() {
        for bad in ["ab", "1abc", "goog-x", "a b c", "x/y/z"] {
            let name = format!("projects/p/subscriptions/{bad}");
            let err = parse(&name, Collection::Subscriptions).unwrap_err();
            assert_eq!(
                err.message,
                format!("Invalid [subscriptions] name: (name={name})")
            );
        }
        assert!(parse("projects/p/subscriptions/abc", Collection::Topics).is_err());
        assert!(parse("", Collection::Topics).is_err());
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip(id in "[A-Za-z][A-Za-z0-9._~+%-]{2,254}") {
            prop_assume!(!id.starts_with("goog"));
            let name = format!("projects/proj/topics/{id}");
            let parsed = parse(&name, Collection::Topics).unwrap();
            prop_assert_eq!(parsed.id, id.as_str());
            prop_assert_eq!(parsed.project, "proj");
        }

        #[test]
        fn never_panics(name in ".{0,300}") {
            let _ = parse(&name, Collection::Topics);
            let _ = parse_project(&name);
        }
    }
}
