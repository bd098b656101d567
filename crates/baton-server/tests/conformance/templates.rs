//! Request templates: `{{messageId:S}}`, `{{ackId:S#n}}`, `{{revisionId:S}}`,
//! `{{pushOrigin}}`, `{{timeBetween:a:b}}` and `{"$b64repeat": {text, count}}`.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::Value;

use super::normalize::Registry;
use super::wire;

/// What templates are resolved against.
#[derive(Debug)]
pub struct Bindings<'a> {
    pub registry: &'a Registry,
    pub push_origin: &'a str,
    /// Finish time (ms since the epoch) of each step run so far.
    pub finish_times: &'a HashMap<String, i64>,
}

/// How a `{{timeBetween}}` value is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeShape {
    /// A proto Timestamp object `{seconds, nanos}` (gRPC bodies).
    Object,
    /// An RFC 3339 string (HTTP/JSON bodies).
    Rfc3339,
}

/// Resolves every template inside a JSON value (registry templates first, then
/// `timeBetween` and `$b64repeat`).
pub fn resolve_value(
    value: &Value,
    bindings: &Bindings<'_>,
    shape: TimeShape,
) -> Result<Value, String> {
    match value {
        Value::String(s) => {
            let s = resolve_str(s, bindings)?;
            match (time_between(&s, bindings)?, shape) {
                (Some(millis), TimeShape::Object) => Ok(wire::timestamp_from_millis(millis)),
                (Some(millis), TimeShape::Rfc3339) => rfc3339_from_millis(millis),
                (None, _) => Ok(Value::String(s)),
            }
        }
        Value::Array(items) => items
            .iter()
            .map(|item| resolve_value(item, bindings, shape))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            if let (1, Some(spec)) = (map.len(), map.get("$b64repeat")) {
                return b64repeat(spec);
            }
            let mut out = serde_json::Map::new();
            for (key, child) in map {
                out.insert(key.clone(), resolve_value(child, bindings, shape)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Substitutes registry templates and `{{pushOrigin}}` inside a string. Other
/// templates (`timeBetween`) are left for the second pass.
pub fn resolve_str(s: &str, bindings: &Bindings<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let template = &rest[start..start + len + 2];
        let inner = &template[2..template.len() - 2];
        out.push_str(&rest[..start]);
        if inner == "pushOrigin" {
            out.push_str(bindings.push_origin);
        } else if inner.starts_with("messageId:")
            || inner.starts_with("ackId:")
            || inner.starts_with("revisionId:")
        {
            let value = bindings
                .registry
                .resolve(template)
                .ok_or_else(|| format!("template {template} has no value"))?;
            out.push_str(value);
        } else {
            out.push_str(template);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `{{timeBetween:a:b}}` as the whole string: the integer midpoint (ms) of the
/// recorded finish times of steps `a` and `b`.
fn time_between(s: &str, bindings: &Bindings<'_>) -> Result<Option<i64>, String> {
    let Some(inner) = s
        .strip_prefix("{{timeBetween:")
        .and_then(|rest| rest.strip_suffix("}}"))
    else {
        return Ok(None);
    };
    let (a, b) = inner
        .split_once(':')
        .ok_or_else(|| format!("bad template {s}"))?;
    let time = |step: &str| {
        bindings
            .finish_times
            .get(step)
            .copied()
            .ok_or_else(|| format!("template {s}: step {step:?} has not run"))
    };
    Ok(Some((time(a)? + time(b)?).div_euclid(2)))
}

fn rfc3339_from_millis(millis: i64) -> Result<Value, String> {
    let timestamp = pbjson_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).map_err(|e| e.to_string())?,
    };
    serde_json::to_value(timestamp).map_err(|e| e.to_string())
}

fn b64repeat(spec: &Value) -> Result<Value, String> {
    let text = spec
        .get("text")
        .and_then(Value::as_str)
        .ok_or("$b64repeat without text")?;
    let count = spec
        .get("count")
        .and_then(Value::as_u64)
        .ok_or("$b64repeat without count")?;
    let count = usize::try_from(count).map_err(|e| e.to_string())?;
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(text.repeat(count)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_every_kind_of_template() {
        let registry = Registry::default();
        let mut finish_times = HashMap::new();
        finish_times.insert("a".to_owned(), 1_000_i64);
        finish_times.insert("b".to_owned(), 2_101_i64);
        let bindings = Bindings {
            registry: &registry,
            push_origin: "http://127.0.0.1:9",
            finish_times: &finish_times,
        };
        let body = json!({
            "endpoint": "{{pushOrigin}}/hook",
            "time": "{{timeBetween:a:b}}",
            "data": {"$b64repeat": {"text": "d", "count": 3}},
        });
        assert_eq!(
            resolve_value(&body, &bindings, TimeShape::Object).unwrap(),
            json!({
                "endpoint": "http://127.0.0.1:9/hook",
                "time": {"seconds": "1", "nanos": 550_000_000},
                "data": "ZGRk",
            })
        );
        let missing = resolve_str("{{ackId:nowhere}}", &bindings);
        assert!(missing.is_err(), "{missing:?}");
    }
}
