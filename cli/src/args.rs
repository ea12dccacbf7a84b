//! The values of the command line that clap does not know: sizes (`4k`,
//! `64KiB`, `1G`), seconds, `NAME=VALUE` properties and device
//! specifications (`DRIVER:key=value,...` or a path). Each parser is a clap
//! value parser: its error text is the message the user sees (after the
//! option's name, for options).

/// Parses a size in bytes: digits with an optional binary suffix
/// (`k`/`K`/`KiB` = 1024, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`; a trailing `B`
/// alone means bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size \"{s}\" (e.g. 4096, 4k, 64KiB, 1G)");
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

/// Parses a positive number of seconds (`--runtime 2.5`).
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "expected a positive number of seconds, got \"{s}\""
        )),
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
pub fn parse_prop(word: &str) -> Result<(String, String), String> {
    match word.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(format!("\"{word}\": expected a property as name=value")),
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
pub fn parse_target(s: &str) -> Result<DeviceSpec, String> {
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
        return Err("empty device (expected a path or DRIVER:key=value,...)".into());
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

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        for bad in ["", "k", "4q", "-4", "1.5k", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
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
