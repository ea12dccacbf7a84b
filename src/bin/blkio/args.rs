//! Command-line parsing: options (`--name value`, `--name=value`),
//! positional words, sizes (`4k`, `64KiB`, `1G`) and device specifications
//! (`DRIVER key=value...` or `DRIVER:key=value,key=value`).

use std::collections::VecDeque;

use crate::Failure;

/// One command-line word, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg {
    /// `--name` or `--name=value` (the value, if inline), `-h` as `help`.
    Opt(String, Option<String>),
    /// Anything else (after `--`, everything).
    Pos(String),
}

/// Walks the words of a command line.
pub struct Parser {
    words: VecDeque<String>,
    only_positional: bool,
}

impl Parser {
    pub fn new(words: impl IntoIterator<Item = String>) -> Self {
        Parser {
            words: words.into_iter().collect(),
            only_positional: false,
        }
    }

    pub fn next_arg(&mut self) -> Option<Arg> {
        let w = self.words.pop_front()?;
        if self.only_positional {
            return Some(Arg::Pos(w));
        }
        if w == "--" {
            self.only_positional = true;
            return self.next_arg();
        }
        if w == "-h" {
            return Some(Arg::Opt("help".into(), None));
        }
        if let Some(rest) = w.strip_prefix("--") {
            return Some(match rest.split_once('=') {
                Some((name, value)) => Arg::Opt(name.into(), Some(value.into())),
                None => Arg::Opt(rest.into(), None),
            });
        }
        if w.starts_with('-') && w.len() > 1 {
            return Some(Arg::Opt(w, None));
        }
        Some(Arg::Pos(w))
    }

    /// The value of option `name`: inline, or the next word.
    pub fn value(&mut self, name: &str, inline: Option<String>) -> Result<String, Failure> {
        match inline.or_else(|| self.words.pop_front()) {
            Some(v) => Ok(v),
            None => Err(Failure::usage(format!("--{name}: missing value"))),
        }
    }
}

/// Refuses an option the command does not know.
pub fn unknown_option(name: &str) -> Failure {
    let shown = if name.starts_with('-') {
        name.to_owned()
    } else {
        format!("--{name}")
    };
    Failure::usage(format!("{shown}: unknown option"))
}

/// Parses a size in bytes: digits with an optional binary suffix
/// (`k`/`K`/`KiB` = 1024, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`; a trailing `B`
/// alone means bytes).
pub fn parse_size(what: &str, s: &str) -> Result<u64, Failure> {
    let bad = || {
        Failure::usage(format!(
            "{what}: invalid size \"{s}\" (e.g. 4096, 4k, 64KiB, 1G)"
        ))
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = s[..digits].parse().map_err(|_| bad())?;
    let shift = match &s[digits..] {
        "" | "B" => 0,
        "k" | "K" | "KiB" | "kiB" => 10,
        "m" | "M" | "MiB" => 20,
        "g" | "G" | "GiB" => 30,
        "t" | "T" | "TiB" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// Parses a positive count (`--iodepth`, `--queues`).
pub fn parse_count(what: &str, s: &str, max: u32) -> Result<u32, Failure> {
    match s.parse::<u32>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(Failure::usage(format!(
            "{what}: expected an integer from 1 to {max}, got \"{s}\""
        ))),
    }
}

/// Parses a positive number of seconds (`--runtime 2.5`).
pub fn parse_seconds(what: &str, s: &str) -> Result<f64, Failure> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(Failure::usage(format!(
            "{what}: expected a positive number of seconds, got \"{s}\""
        ))),
    }
}

/// A device to open: the driver and its properties, in command-line order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceSpec {
    pub driver: String,
    pub props: Vec<(String, String)>,
    /// The plain file path this spec was made from (`copy` shorthand).
    pub plain_path: Option<String>,
}

impl DeviceSpec {
    pub fn has_prop(&self, name: &str) -> bool {
        self.props.iter().any(|(k, _)| k == name)
    }

    /// `driver key=value key=value` as the user would write it.
    pub fn describe(&self) -> String {
        let mut s = self.driver.clone();
        for (k, v) in &self.props {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }
}

/// One `key=value` word.
pub fn parse_prop(word: &str) -> Result<(String, String), Failure> {
    match word.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(Failure::usage(format!(
            "\"{word}\": expected a property as name=value"
        ))),
    }
}

/// Whether `s` looks like a driver name (`[a-z0-9_-]+`).
fn is_driver_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A `copy` operand:
///
/// * `DRIVER:key=value,key=value` — a driver and its properties; a literal
///   comma inside a value is written twice (`,,`), as in QEMU;
/// * `DRIVER:` — a driver without properties;
/// * anything else — a file or block device path, shorthand for
///   `io_uring:path=PATH`. A path that would read as a driver spec (e.g.
///   `a:b=c`) can be written `./a:b=c`.
pub fn parse_target(s: &str) -> Result<DeviceSpec, Failure> {
    if let Some((driver, rest)) = s.split_once(':') {
        if is_driver_word(driver) && (rest.is_empty() || rest.contains('=')) {
            let mut props = Vec::new();
            for item in split_commas(rest) {
                props.push(parse_prop(&item)?);
            }
            return Ok(DeviceSpec {
                driver: driver.into(),
                props,
                plain_path: None,
            });
        }
    }
    if s.is_empty() {
        return Err(Failure::usage(
            "empty device (expected a path or DRIVER:key=value,...)",
        ));
    }
    Ok(DeviceSpec {
        driver: "io_uring".into(),
        props: vec![("path".into(), s.into())],
        plain_path: Some(s.into()),
    })
}

/// Splits at single commas; `,,` stands for a literal comma.
fn split_commas(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(ch);
        }
    }
    if !cur.is_empty() || !items.is_empty() {
        items.push(cur);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Parser {
        Parser::new(s.split_whitespace().map(String::from))
    }

    #[test]
    fn options_and_positionals() {
        let mut p = words("io_uring --bs 4k --iodepth=8 -h -- --x");
        assert_eq!(p.next_arg(), Some(Arg::Pos("io_uring".into())));
        assert_eq!(p.next_arg(), Some(Arg::Opt("bs".into(), None)));
        assert_eq!(p.value("bs", None).unwrap(), "4k");
        assert_eq!(
            p.next_arg(),
            Some(Arg::Opt("iodepth".into(), Some("8".into())))
        );
        assert_eq!(p.next_arg(), Some(Arg::Opt("help".into(), None)));
        assert_eq!(p.next_arg(), Some(Arg::Pos("--x".into())));
        assert_eq!(p.next_arg(), None);
        assert!(p.value("bs", None).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("x", "4096").unwrap(), 4096);
        assert_eq!(parse_size("x", "4k").unwrap(), 4096);
        assert_eq!(parse_size("x", "64KiB").unwrap(), 65536);
        assert_eq!(parse_size("x", "2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("x", "1G").unwrap(), 1 << 30);
        for bad in ["", "k", "4q", "-4", "1.5k", "99999999999999999999"] {
            assert!(parse_size("x", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets() {
        let t = parse_target("io_uring:path=/a,,b,direct=true").unwrap();
        assert_eq!(t.driver, "io_uring");
        assert_eq!(
            t.props,
            vec![
                ("path".into(), "/a,b".into()),
                ("direct".into(), "true".into())
            ]
        );
        assert_eq!(t.plain_path, None);
        let t = parse_target("/tmp/x:y").unwrap();
        assert_eq!(
            (t.driver.as_str(), t.plain_path.as_deref()),
            ("io_uring", Some("/tmp/x:y"))
        );
        assert_eq!(
            parse_target("a:b").unwrap().plain_path.as_deref(),
            Some("a:b")
        );
        let t = parse_target("virtio-blk-vhost-user:").unwrap();
        assert_eq!(
            (t.driver.as_str(), t.props.len()),
            ("virtio-blk-vhost-user", 0)
        );
        assert!(parse_target("io_uring:path=/a,oops").is_err());
        assert!(parse_target("").is_err());
    }
}
