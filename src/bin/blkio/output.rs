//! Output helpers: aligned text tables, a minimal JSON writer, human units
//! and the live progress line (stderr, only on a terminal).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Left-aligned columns separated by two spaces; the last column is not
/// padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds one JSON object; values are given as JSON text.
#[derive(Default)]
pub struct JsonObject {
    fields: Vec<(String, String)>,
}

impl JsonObject {
    pub fn new() -> Self {
        Self::default()
    }

    /// A field whose value is already JSON (number, object, array, ...).
    pub fn raw(mut self, key: &str, json: impl Into<String>) -> Self {
        self.fields.push((key.into(), json.into()));
        self
    }

    pub fn str(self, key: &str, value: &str) -> Self {
        self.raw(key, json_str(value))
    }

    pub fn num(self, key: &str, value: impl std::fmt::Display) -> Self {
        self.raw(key, value.to_string())
    }

    /// A float with a fixed number of decimals.
    pub fn float(self, key: &str, value: f64, decimals: usize) -> Self {
        self.raw(key, format!("{value:.decimals$}"))
    }

    pub fn build(self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}: {v}", json_str(k));
        }
        out.push('}');
        out
    }
}

/// A JSON array of JSON texts.
pub fn json_array(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// `482.25 MiB/s` style.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec))
}

/// Binary units with two decimals (`1.50 GiB`), plain bytes below 1 KiB.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024.0 {
        return format!("{n:.0} B");
    }
    let mut v = n / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// A count with a k/M suffix for the progress line (`123.4k`).
pub fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// Nanoseconds as microseconds with one decimal (`12.3`).
pub fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// Whether stderr is a terminal.
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(2) == 1 }
}

/// A status line redrawn in place on stderr, at most every `interval`;
/// silent unless stderr is a terminal.
pub struct Progress {
    enabled: bool,
    interval: Duration,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(interval: Duration) -> Self {
        Progress {
            enabled: stderr_is_tty(),
            interval,
            last: None,
        }
    }

    /// Whether an update is due (so callers can skip building the text).
    pub fn due(&self) -> bool {
        self.enabled && self.last.is_none_or(|t| t.elapsed() >= self.interval)
    }

    pub fn show(&mut self, text: &str) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{text}");
            let _ = err.flush();
            self.last = Some(Instant::now());
        }
    }

    /// Erases the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// A `[#####.....]` bar of `width` cells for `done` of `total`.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        ((done as u128 * width as u128) / total as u128).min(width as u128) as usize
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["a".into(), "bb".into(), "x".into()],
            vec!["ccc".into(), "d".into(), "y".into()],
        ];
        assert_eq!(table(&rows), "a    bb  x\nccc  d   y\n");
    }

    #[test]
    fn json() {
        let o = JsonObject::new()
            .str("a", "q\"\n\u{1}")
            .num("b", 5)
            .raw("c", json_array(&["1".into(), "true".into()]))
            .build();
        assert_eq!(o, r#"{"a": "q\"\n\u0001", "b": 5, "c": [1, true]}"#);
    }

    #[test]
    fn units() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(rate(3.0 * 1024.0 * 1024.0), "3.00 MiB/s");
        assert_eq!(count(1234.0), "1.2k");
        assert_eq!(micros(12345), "12.3");
        assert_eq!(bar(1, 4, 8), "[##......]");
        assert_eq!(bar(5, 4, 4), "[####]");
    }
}
