//! Output helpers: aligned text tables, human units and the live progress
//! line (indicatif, on stderr, drawn only when stderr is a terminal).

use std::fmt::Write as _;

use indicatif::{ProgressBar, ProgressStyle};

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

/// A progress bar of `len` units on stderr in indicatif's `template`
/// (`{bar}` is drawn with `#` and `.`). indicatif draws nothing when stderr
/// is not a terminal, and at most 20 times a second.
pub fn progress(len: u64, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .progress_chars("#>.");
    ProgressBar::new(len).with_style(style)
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
    fn units() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(rate(3.0 * 1024.0 * 1024.0), "3.00 MiB/s");
        assert_eq!(count(1234.0), "1.2k");
        assert_eq!(micros(12345), "12.3");
    }
}
