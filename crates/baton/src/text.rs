//! Text helpers of the trace commands' terminal output.

/// A duration for people: `850 ns`, `12.3 µs`, `1.20 ms`, `30.9 ms`, `1.25 s`.
pub fn format_duration(nanos: u64) -> String {
    let ns = nanos as f64;
    if ns < 1e3 {
        format!("{nanos} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e7 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `text` cut to `width` characters (with `…`), padded with spaces.
pub fn fit(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        format!("{text}{}", " ".repeat(width - count))
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = text.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}
