//! Opening a device from a [`DeviceSpec`]: create the instance, set each
//! property in the state that accepts it (learned from the library's
//! `x.properties` introspection table), connect and optionally start.

use blkio::{Blkio, Connected, PropertyAccess, PropertyType, Started, State};

use crate::args::DeviceSpec;
use crate::Failure;

/// One property of the driver, as `blkio info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropInfo {
    pub name: String,
    /// `bool`, `int`, `uint64` or `str`.
    pub ty: String,
    /// `r`, `rw:created` or `rw:connected`.
    pub access: String,
}

impl From<blkio::PropertyInfo> for PropInfo {
    fn from(p: blkio::PropertyInfo) -> Self {
        PropInfo {
            name: p.name.to_owned(),
            ty: match p.ty {
                PropertyType::Bool => "bool",
                PropertyType::Int => "int",
                PropertyType::Uint64 => "uint64",
                PropertyType::Str => "str",
            }
            .to_owned(),
            access: match p.access {
                PropertyAccess::ReadOnly => "r",
                PropertyAccess::Created => "rw:created",
                PropertyAccess::Connected => "rw:connected",
            }
            .to_owned(),
        }
    }
}

/// The instance's property table.
pub fn property_table<S: State>(inst: &Blkio<S>) -> Vec<PropInfo> {
    inst.properties().into_iter().map(PropInfo::from).collect()
}

fn set<S: State>(inst: &Blkio<S>, name: &str, value: &str) -> Result<(), Failure> {
    inst.set(name, value)
        .map_err(|e| Failure::usage(format!("property {name}={value}: {}", e.message())))
}

/// Creates and connects the device of `spec`.
///
/// Properties writable in the connected state (`num-queues`, ...) are set
/// after connecting; all others, including unknown names (so the library
/// words the error), before.
pub fn open(spec: &DeviceSpec) -> Result<Blkio<Connected>, Failure> {
    let inst = Blkio::new(&spec.driver)
        .map_err(|e| Failure::usage(format!("driver \"{}\": {}", spec.driver, e.message())))?;
    let table = inst.properties();
    let after_connect = |name: &str| {
        table
            .iter()
            .any(|p| p.name == name && p.access == PropertyAccess::Connected)
    };
    for (k, v) in spec.props.iter().filter(|(k, _)| !after_connect(k)) {
        set(&inst, k, v)?;
    }
    let inst = inst
        .connect()
        .map_err(|e| Failure::device(format!("connecting {}: {}", spec.describe(), e.message())))?;
    for (k, v) in spec.props.iter().filter(|(k, _)| after_connect(k)) {
        set(&inst, k, v)?;
    }
    Ok(inst)
}

/// Starts a connected instance.
pub fn start(inst: Blkio<Connected>, spec: &DeviceSpec) -> Result<Blkio<Started>, Failure> {
    inst.start()
        .map_err(|e| Failure::device(format!("starting {}: {}", spec.describe(), e.message())))
}

/// Creates, connects and starts the device of `spec`.
pub fn open_started(spec: &DeviceSpec) -> Result<Blkio<Started>, Failure> {
    start(open(spec)?, spec)
}

/// A `uint64` property the command needs.
pub fn get_u64<S: State>(inst: &Blkio<S>, name: &str) -> Result<u64, Failure> {
    inst.get::<u64>(name)
        .map_err(|e| Failure::device(format!("reading {name}: {}", e.message())))
}

/// An `int` property the command needs.
pub fn get_int<S: State>(inst: &Blkio<S>, name: &str) -> Result<i32, Failure> {
    inst.get::<i32>(name)
        .map_err(|e| Failure::device(format!("reading {name}: {}", e.message())))
}

/// A `bool` property the command needs.
pub fn get_bool<S: State>(inst: &Blkio<S>, name: &str) -> Result<bool, Failure> {
    inst.get::<bool>(name)
        .map_err(|e| Failure::device(format!("reading {name}: {}", e.message())))
}

/// The buffer alignment to use: the larger of `mem-region-alignment`,
/// `buf-alignment` and the page size.
pub fn buffer_alignment<S: State>(inst: &Blkio<S>) -> Result<usize, Failure> {
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
    fn table_entries_as_text() {
        let inst = Blkio::new("io_uring").unwrap();
        let table = property_table(&inst);
        let find = |name: &str| table.iter().find(|p| p.name == name).unwrap().clone();
        assert_eq!(
            find("num-queues"),
            PropInfo {
                name: "num-queues".into(),
                ty: "int".into(),
                access: "rw:connected".into()
            }
        );
        assert_eq!(find("path").access, "rw:created");
        assert_eq!(find("capacity").ty, "uint64");
        assert_eq!(find("capacity").access, "r");
    }
}
