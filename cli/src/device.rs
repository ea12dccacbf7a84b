//! Opening a device from a [`DeviceSpec`]: create the instance, set each
//! property in the state that accepts it (learned from the library's
//! `x.properties` introspection table), connect and optionally start.

use crate::api::{ApiError, Instance};
use crate::args::DeviceSpec;
use crate::Failure;

/// The reserved introspection property (docs/introspection.md).
pub const INTROSPECTION: &str = "x.properties";

/// One line of the introspection table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropInfo {
    pub name: String,
    /// `bool`, `int`, `uint64` or `str`.
    pub ty: String,
    /// `r`, `rw:created` or `rw:connected`.
    pub access: String,
}

/// Parses the value of `x.properties`.
pub fn parse_table(text: &str) -> Vec<PropInfo> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            Some(PropInfo {
                name: f.next()?.to_owned(),
                ty: f.next()?.to_owned(),
                access: f.next()?.to_owned(),
            })
        })
        .collect()
}

/// The instance's property table.
pub fn property_table(inst: &Instance) -> Result<Vec<PropInfo>, Failure> {
    inst.get_str(INTROSPECTION)
        .map(|t| parse_table(&t))
        .map_err(|e| Failure::device(format!("reading {INTROSPECTION}: {}", e.msg)))
}

fn set(inst: &Instance, name: &str, value: &str) -> Result<(), Failure> {
    inst.set_str(name, value)
        .map_err(|e: ApiError| Failure::usage(format!("property {name}={value}: {}", e.msg)))
}

/// Creates and connects (and with `start`, starts) the device of `spec`.
///
/// Properties writable in the connected state (`num-queues`, ...) are set
/// after connecting; all others, including unknown names (so the library
/// words the error), before.
pub fn open(spec: &DeviceSpec, start: bool) -> Result<Instance, Failure> {
    let inst = Instance::create(&spec.driver)
        .map_err(|e| Failure::usage(format!("driver \"{}\": {}", spec.driver, e.msg)))?;
    let table = property_table(&inst)?;
    let after_connect = |name: &str| {
        table
            .iter()
            .any(|p| p.name == name && p.access == "rw:connected")
    };
    for (k, v) in spec.props.iter().filter(|(k, _)| !after_connect(k)) {
        set(&inst, k, v)?;
    }
    inst.connect()
        .map_err(|e| Failure::device(format!("connecting {}: {}", spec.describe(), e.msg)))?;
    for (k, v) in spec.props.iter().filter(|(k, _)| after_connect(k)) {
        set(&inst, k, v)?;
    }
    if start {
        inst.start()
            .map_err(|e| Failure::device(format!("starting {}: {}", spec.describe(), e.msg)))?;
    }
    Ok(inst)
}

/// A `uint64` property the command needs.
pub fn get_u64(inst: &Instance, name: &str) -> Result<u64, Failure> {
    inst.get_u64(name)
        .map_err(|e| Failure::device(format!("reading {name}: {}", e.msg)))
}

/// An `int` property the command needs.
pub fn get_int(inst: &Instance, name: &str) -> Result<i32, Failure> {
    inst.get_int(name)
        .map_err(|e| Failure::device(format!("reading {name}: {}", e.msg)))
}

/// The buffer alignment to use: the larger of `mem-region-alignment`,
/// `buf-alignment` and the page size.
pub fn buffer_alignment(inst: &Instance) -> Result<usize, Failure> {
    let region = get_u64(inst, "mem-region-alignment")? as usize;
    let buf = get_int(inst, "buf-alignment")?.max(1) as usize;
    Ok(region.max(buf).max(page_size()))
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no side effects.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// `n` rounded up to a multiple of `align`.
pub fn round_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parsing() {
        let t = parse_table("a bool r\nb-c int rw:connected\n");
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[1],
            PropInfo {
                name: "b-c".into(),
                ty: "int".into(),
                access: "rw:connected".into()
            }
        );
        assert!(parse_table("").is_empty());
    }
}
