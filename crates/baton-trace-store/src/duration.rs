//! Go-style durations (`1.2s`, `100ms`, `1h30m`), as Jaeger's query API and
//! the trace search take them.

/// Parses a Go duration (`1.2s`, `100ms`, `500us`, `500µs`, `1h30m`, `0`)
/// into nanoseconds; negative durations are refused.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid duration {text:?}");
    let body = text.strip_prefix('+').unwrap_or(text);
    if body.starts_with('-') {
        return Err(format!("negative duration {text:?}"));
    }
    if body == "0" {
        return Ok(0);
    }
    if body.is_empty() {
        return Err(invalid());
    }
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                after.split_at(len)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {text:?}")),
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(invalid)?;
        // Fraction digits beyond nanoseconds do not count.
        let mut digit_scale = scale;
        for digit in frac.bytes() {
            digit_scale /= 10;
            part += u128::from(digit - b'0') * digit_scale;
        }
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = after;
    }
    u64::try_from(total).map_err(|_| invalid())
}
