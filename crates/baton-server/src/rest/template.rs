//! Path templates of the REST mapping, in the syntax of Google's HTTP rules:
//! `/v1/{topic=projects/*/topics/*}:publish` binds the request field `topic`
//! to `projects/{p}/topics/{t}` and requires the verb `publish`. Every `*`
//! matches one whole segment; a template without a verb matches a last
//! segment with a colon in it as it is (so `GET .../topics/t:publish` asks
//! for the topic `t:publish`, which the name check then refuses, as the
//! service does).

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    /// `*`: any one segment.
    Any,
}

/// A parsed template. Our route table is static, so a malformed template is
/// a programming error, caught by the table's tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
    /// The bound field (`topic`, `topic.name`) and the range of segments it
    /// covers.
    binding: Option<(&'static str, std::ops::Range<usize>)>,
    verb: Option<&'static str>,
}

/// A template that cannot be parsed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad path template {template:?}: {reason}")]
pub(crate) struct TemplateError {
    template: &'static str,
    reason: &'static str,
}

impl Template {
    /// Parses `/seg/{field=seg/*}/seg:verb`.
    pub fn parse(template: &'static str) -> Result<Self, TemplateError> {
        let error = |reason| TemplateError { template, reason };
        let path = template
            .strip_prefix('/')
            .ok_or(error("must start with /"))?;
        // A verb follows the last `:` that is outside braces.
        let (path, verb) = match path.rfind(':') {
            Some(at) if !path[at..].contains('}') => (&path[..at], Some(&path[at + 1..])),
            _ => (path, None),
        };
        let mut segments = Vec::new();
        let mut binding = None;
        let mut rest = path;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find('}').ok_or(error("unclosed {"))?;
                let (field, pattern) = inner[..end]
                    .split_once('=')
                    .ok_or(error("{field=pattern} expected"))?;
                if binding.is_some() {
                    return Err(error("at most one binding"));
                }
                let start = segments.len();
                for part in pattern.split('/') {
                    segments.push(segment(part).ok_or(error("empty segment"))?);
                }
                binding = Some((field, start..segments.len()));
                rest = inner[end + 1..].trim_start_matches('/');
            } else {
                let (part, after) = rest.split_once('/').unwrap_or((rest, ""));
                if part.contains('{') {
                    return Err(error("a binding must start a segment"));
                }
                segments.push(segment(part).ok_or(error("empty segment"))?);
                rest = after;
            }
        }
        Ok(Self {
            segments,
            binding,
            verb,
        })
    }

    /// Matches a request path (percent-decoded, split on `/`, without the
    /// leading slash); the bound field and its value when it matches.
    pub fn matches(&self, path: &[&str]) -> Option<Option<(&'static str, String)>> {
        let mut path: Vec<&str> = path.to_vec();
        if let Some(verb) = self.verb {
            let last = path.pop()?;
            let (id, asked) = last.rsplit_once(':')?;
            if asked != verb {
                return None;
            }
            path.push(id);
        }
        if path.len() != self.segments.len() {
            return None;
        }
        // The id a verb was split from may be empty (`topics/:publish`):
        // the name check answers that, as the service does.
        let last = path.len().saturating_sub(1);
        let fits =
            self.segments.iter().zip(&path).enumerate().all(
                |(at, (segment, part))| match segment {
                    Segment::Literal(literal) => literal == part,
                    Segment::Any => !part.is_empty() || (at == last && self.verb.is_some()),
                },
            );
        if !fits {
            return None;
        }
        Some(
            self.binding
                .as_ref()
                .map(|(field, range)| (*field, path[range.clone()].join("/"))),
        )
    }

    /// Whether the template requires a verb (such routes are tried first).
    pub fn has_verb(&self) -> bool {
        self.verb.is_some()
    }

    /// The verb the template requires, if any.
    pub fn verb(&self) -> Option<&'static str> {
        self.verb
    }
}

fn segment(part: &'static str) -> Option<Segment> {
    match part {
        "" => None,
        "*" => Some(Segment::Any),
        literal => Some(Segment::Literal(literal)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn split(path: &str) -> Vec<&str> {
        path.split('/').collect()
    }

    fn get_of(path: &str) -> Option<Option<(&'static str, String)>> {
        Template::parse("/v1/{topic=projects/*/topics/*}")
            .unwrap()
            .matches(&split(path))
    }

    #[test]
    fn binds_the_resource_and_checks_the_verb() {
        let publish = Template::parse("/v1/{topic=projects/*/topics/*}:publish").unwrap();
        assert_eq!(
            publish.matches(&split("v1/projects/p/topics/t:publish")),
            Some(Some(("topic", "projects/p/topics/t".to_string())))
        );
        assert_eq!(publish.matches(&split("v1/projects/p/topics/t:pull")), None);
        assert_eq!(publish.matches(&split("v1/projects/p/topics/t")), None);
        assert!(publish.has_verb());
    }

    #[test]
    fn without_a_verb_a_colon_stays_in_the_id() {
        let get = Template::parse("/v1/{topic=projects/*/topics/*}").unwrap();
        assert_eq!(
            get.matches(&split("v1/projects/p/topics/t:publish")),
            Some(Some(("topic", "projects/p/topics/t:publish".to_string())))
        );
        assert!(!get.has_verb());
    }

    #[test]
    fn literal_segments_after_the_binding() {
        let list = Template::parse("/v1/{topic=projects/*/topics/*}/subscriptions").unwrap();
        assert_eq!(
            list.matches(&split("v1/projects/p/topics/t/subscriptions")),
            Some(Some(("topic", "projects/p/topics/t".to_string())))
        );
        assert_eq!(
            list.matches(&split("v1/projects/p/topics/t/snapshots")),
            None
        );
        let validate = Template::parse("/v1/{parent=projects/*}/schemas:validate").unwrap();
        assert_eq!(
            validate.matches(&split("v1/projects/p/schemas:validate")),
            Some(Some(("parent", "projects/p".to_string())))
        );
        assert_eq!(validate.matches(&split("v1/projects/p/schemas")), None);
    }

    #[test]
    fn nested_fields_and_bad_templates() {
        let update = Template::parse("/v1/{topic.name=projects/*/topics/*}").unwrap();
        assert_eq!(
            update.matches(&split("v1/projects/p/topics/t")),
            Some(Some(("topic.name", "projects/p/topics/t".to_string())))
        );
        let publish = Template::parse("/v1/{topic=projects/*/topics/*}:publish").unwrap();
        assert_eq!(
            publish.matches(&split("v1/projects/p/topics/:publish")),
            Some(Some(("topic", "projects/p/topics/".to_string()))),
            "an empty id before a verb is for the name check to refuse"
        );
        assert_eq!(get_of("v1/projects/p/topics/"), None);
        assert!(Template::parse("v1/x").is_err());
        assert!(Template::parse("/v1/{topic").is_err());
        assert!(Template::parse("/v1//x").is_err());
    }
}
