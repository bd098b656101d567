//! What every benchmark mode shares: message payloads, fresh resource
//! names, figures as people read them, and the machine's load (which skews
//! them).

/// A payload of `size` bytes (letters, so it is the same in every mode).
pub fn payload(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| b'a' + u8::try_from(i % 26).unwrap_or(0))
        .collect()
}

/// `value` rounded, with thousands separators (`-` when not finite).
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let digits = (value.round().max(0.0) as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The 1-minute load average (other work on the machine skews the figures).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// How a report marks a target: `ok` or `MISSED`.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// A fresh resource-id prefix (ids must start with a letter).
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{name}-{}-{nanos:x}", std::process::id())
}
