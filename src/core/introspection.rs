//! Property introspection: the reserved read-only property
//! [`PROPERTIES_NAME`] (`x.properties`), answered by the instance for every
//! driver, lists the driver's properties in a machine-readable table.
//!
//! This is an extension of ours; upstream libblkio has no way to enumerate
//! properties. It adds no C function (the exported symbol list stays the 43
//! of docs/contract/abi.md §1.2): it is read with `blkio_get_str(b, "x.properties", &s)`.
//!
//! # Name
//!
//! Upstream derives every property name from a Rust identifier by replacing
//! `_` with `-`, so its names only ever contain `a`–`z`, `0`–`9` and `-`
//! (docs/contract/properties.md §1). The `.` in `x.properties` can therefore never collide
//! with a present or future upstream property; the `x` marks it as an
//! extension, as QEMU's `x-` prefix does.
//!
//! # Value
//!
//! One line per property of the driver, sorted by name, each ending in
//! `\n`: `NAME TYPE ACCESS`, separated by single spaces, where
//!
//! * `TYPE` is `bool`, `int`, `uint64` or `str` (the typed accessor to use);
//! * `ACCESS` is `r` (read-only in every state), `rw:created` (readable in
//!   every state, writable in the created state only) or `rw:connected`
//!   (readable in every state, writable in the connected state only).
//!
//! "Readable" means the getter may be called; values computed from the
//! device still fail with -ENODEV before `blkio_connect()`.
//!
//! # Not a table entry
//!
//! `x.properties` itself is not in any driver's property table and is not
//! listed in its own value, so the per-driver property sets and counts of
//! docs/contract/properties.md §2 (io_uring: 32, ...) are unchanged. It behaves like a
//! read-only `str` property in every state: typed getters of another type
//! fail with -ENOTTY, every setter fails with -EACCES "Property is
//! read-only" (after the type/parse checks of docs/contract/abi.md §6.6).

use super::error::{Error, Result};
use super::property::{PropType, PropertyInfo, SetValue, Value};

/// The reserved property name.
pub const PROPERTIES_NAME: &str = "x.properties";

/// The `x.properties` value for a driver's property table.
pub fn table(props: &[PropertyInfo]) -> String {
    let mut out = String::with_capacity(props.len() * 32);
    for p in props {
        out.push_str(p.name);
        out.push(' ');
        out.push_str(p.ty.name());
        out.push(' ');
        out.push_str(p.access.describe());
        out.push('\n');
    }
    out
}

/// A read of `x.properties`, typed (`ty`) or as a string.
pub fn get(ty: Option<PropType>, props: &[PropertyInfo]) -> Result<Value> {
    match ty {
        Some(ty) if ty != PropType::Str => Err(ty.get_mismatch()),
        _ => Ok(Value::Str(table(props))),
    }
}

/// A write of `x.properties`: always refused, with the errors a read-only
/// `str` property gives.
pub fn set(value: &SetValue<'_>) -> Result<()> {
    match value {
        SetValue::Typed(v) if v.ty() != PropType::Str => Err(v.ty().set_mismatch()),
        _ => Err(Error::read_only("Property is read-only")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::property::Access;
    use crate::drivers;

    fn names_of(table: &str) -> Vec<&str> {
        table
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect()
    }

    #[test]
    fn table_format() {
        let props = [
            PropertyInfo {
                name: "a",
                ty: PropType::Bool,
                access: Access::ReadOnly,
            },
            PropertyInfo {
                name: "b-c",
                ty: PropType::Uint64,
                access: Access::Created,
            },
            PropertyInfo {
                name: "d",
                ty: PropType::Int,
                access: Access::Connected,
            },
        ];
        assert_eq!(
            table(&props),
            "a bool r\nb-c uint64 rw:created\nd int rw:connected\n"
        );
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn every_driver_lists_its_whole_table() {
        for name in drivers::NAMES {
            let dev = drivers::create(name).unwrap();
            let value = dev.get(PROPERTIES_NAME, None).unwrap().into_string();
            let listed = names_of(&value);
            let table: Vec<_> = dev.properties().iter().map(|p| p.name).collect();
            assert_eq!(listed, table, "driver {name}");
            assert!(!listed.contains(&PROPERTIES_NAME));
            // Every listed property exists and has the listed type.
            for line in value.lines() {
                let f: Vec<_> = line.split(' ').collect();
                assert_eq!(f.len(), 3, "{line:?}");
                let ty = dev.properties().iter().find(|p| p.name == f[0]).unwrap().ty;
                assert_eq!(f[1], ty.name());
                assert!(["r", "rw:created", "rw:connected"].contains(&f[2]));
            }
        }
    }

    #[test]
    fn io_uring_listing_matches_the_spec() {
        let dev = drivers::create("io_uring").unwrap();
        let value = dev.get(PROPERTIES_NAME, None).unwrap().into_string();
        assert_eq!(value.lines().count(), 32);
        for line in [
            "path str rw:created",
            "direct bool rw:created",
            "num-queues int rw:connected",
            "num-entries int rw:connected",
            "capacity uint64 r",
            "driver str r",
        ] {
            assert!(value.lines().any(|l| l == line), "missing {line:?}");
        }
    }

    #[test]
    fn behaves_as_a_read_only_str() {
        let mut dev = drivers::create("io_uring").unwrap();
        assert!(dev.get(PROPERTIES_NAME, Some(PropType::Str)).is_ok());
        let e = dev.get(PROPERTIES_NAME, Some(PropType::Int)).unwrap_err();
        assert_eq!(
            (e.errno(), e.message()),
            (libc::ENOTTY, "Property is not an int")
        );
        let e = dev
            .set(PROPERTIES_NAME, SetValue::Typed(Value::Uint64(1)))
            .unwrap_err();
        assert_eq!(
            (e.errno(), e.message()),
            (libc::ENOTTY, "Property is not an unsigned 64-bit int")
        );
        for v in [SetValue::Str("x"), SetValue::Typed(Value::Str("x".into()))] {
            let e = dev.set(PROPERTIES_NAME, v).unwrap_err();
            assert_eq!(
                (e.errno(), e.message()),
                (libc::EACCES, "Property is read-only")
            );
        }
        // Near misses are ordinary unknown names.
        for name in ["x-properties", "x.Properties", "properties"] {
            assert_eq!(dev.get(name, None).unwrap_err().errno(), libc::ENOENT);
        }
    }
}
