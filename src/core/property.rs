//! The property registry: typed values, access rules per state, and the
//! string conversions of `blkio_get_str()` / `blkio_set_str()`.
//!
//! Each driver describes its properties once, as a static table of
//! [`Property`] entries (name, type, access, getter, setter). The instance
//! ([`crate::core::instance`]) does every generic check — unknown name, type
//! mismatch, read-only, state — in the order of docs/contract/abi.md §6.6, so a driver's
//! setter only validates the value itself.
//!
//! Dependencies point one way: `instance` uses `property` and
//! `introspection`, `introspection` uses `property`, and `property` uses
//! neither, so the instance's [`State`] and a setter's [`SetValue`] are
//! defined here.

use super::error::{Error, Result};

/// Lifecycle state of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Connected,
    Started,
}

/// How a setter got its value: typed, or as a string to convert.
pub enum SetValue<'a> {
    Typed(Value),
    Str(&'a str),
}

/// The C type of a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropType {
    Bool,
    Int,
    Uint64,
    Str,
}

impl PropType {
    /// Short name used by introspection (`bool`, `int`, `uint64`, `str`).
    pub fn name(self) -> &'static str {
        match self {
            PropType::Bool => "bool",
            PropType::Int => "int",
            PropType::Uint64 => "uint64",
            PropType::Str => "str",
        }
    }

    /// The -ENOTTY message of a typed getter called on another type.
    pub(crate) fn get_mismatch(self) -> Error {
        Error::wrong_type(match self {
            PropType::Bool => "Property is not a bool",
            PropType::Int => "Property is not an int",
            PropType::Uint64 => "Property is not an unsigned 64-bit integer",
            PropType::Str => "Property is not a string",
        })
    }

    /// The -ENOTTY message of a typed setter called on another type
    /// (upstream words the uint64 one differently from the getter).
    pub(crate) fn set_mismatch(self) -> Error {
        match self {
            PropType::Uint64 => Error::wrong_type("Property is not an unsigned 64-bit int"),
            other => other.get_mismatch(),
        }
    }
}

/// A property value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Int(i32),
    Uint64(u64),
    Str(String),
}

impl Value {
    pub fn ty(&self) -> PropType {
        match self {
            Value::Bool(_) => PropType::Bool,
            Value::Int(_) => PropType::Int,
            Value::Uint64(_) => PropType::Uint64,
            Value::Str(_) => PropType::Str,
        }
    }

    /// Parses `s` as a value of type `ty` with upstream's strict rules:
    /// bool is exactly `true`/`false`; int is an optional sign and decimal
    /// digits in i32 range; uint64 is an optional `+` and decimal digits.
    pub fn parse(ty: PropType, s: &str) -> Result<Value> {
        match ty {
            PropType::Bool => match s {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(Error::invalid("Value must be \"true\" or \"false\"")),
            },
            PropType::Int => s
                .parse::<i32>()
                .map(Value::Int)
                .map_err(|_| Error::invalid("Value must be a signed 32-bit integer")),
            PropType::Uint64 => s
                .parse::<u64>()
                .map(Value::Uint64)
                .map_err(|_| Error::invalid("Value must be an unsigned 64-bit integer")),
            PropType::Str => Ok(Value::Str(s.to_owned())),
        }
    }

    pub fn as_bool(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    pub fn as_int(&self) -> i32 {
        match self {
            Value::Int(v) => *v,
            _ => 0,
        }
    }

    pub fn as_u64(&self) -> u64 {
        match self {
            Value::Uint64(v) => *v,
            _ => 0,
        }
    }

    pub fn into_string(self) -> String {
        match self {
            Value::Str(s) => s,
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Uint64(v) => write!(f, "{v}"),
            Value::Str(v) => f.write_str(v),
        }
    }
}

/// When a property may be written. Every property is readable in every
/// state; a getter that needs the device returns -ENODEV itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Never writable (-EACCES "Property is read-only").
    ReadOnly,
    /// Writable in the created state only (`path`, `fd`, `read-only`, ...).
    Created,
    /// Writable in the connected state only (`num-queues`, `queue-size`, ...).
    Connected,
}

impl Access {
    /// Which states allow writing, as introspection text
    /// (see [`crate::core::introspection`]).
    pub fn describe(self) -> &'static str {
        match self {
            Access::ReadOnly => "r",
            Access::Created => "rw:created",
            Access::Connected => "rw:connected",
        }
    }

    /// The state check of a setter (docs/contract/abi.md §6.6 steps 5 and 6).
    pub(crate) fn check_set(self, state: State) -> Result<()> {
        match (self, state) {
            (Access::ReadOnly, _) => Err(Error::read_only("Property is read-only")),
            (Access::Created, State::Created) => Ok(()),
            (Access::Created, _) => Err(Error::bad_state("Cannot set property in connected state")),
            (Access::Connected, State::Created) => Err(Error::not_connected()),
            (Access::Connected, State::Connected) => Ok(()),
            (Access::Connected, State::Started) => {
                Err(Error::bad_state("Cannot set property in started state"))
            }
        }
    }
}

/// One entry of a driver's property table.
pub struct Property<D> {
    pub name: &'static str,
    pub ty: PropType,
    pub access: Access,
    pub get: fn(&D) -> Result<Value>,
    /// Validates and stores a value of type `ty`. Unused for read-only ones.
    pub set: fn(&mut D, Value) -> Result<()>,
}

impl<D> Property<D> {
    /// A read-only property.
    pub const fn ro(name: &'static str, ty: PropType, get: fn(&D) -> Result<Value>) -> Self {
        Property {
            name,
            ty,
            access: Access::ReadOnly,
            get,
            set: refuse_set,
        }
    }

    /// A writable property.
    pub const fn rw(
        name: &'static str,
        ty: PropType,
        access: Access,
        get: fn(&D) -> Result<Value>,
        set: fn(&mut D, Value) -> Result<()>,
    ) -> Self {
        Property {
            name,
            ty,
            access,
            get,
            set,
        }
    }
}

fn refuse_set<D>(_: &mut D, _: Value) -> Result<()> {
    Err(Error::read_only("Property is read-only"))
}

/// Name, type and access of a property, for introspection.
#[derive(Clone, Copy, Debug)]
pub struct PropertyInfo {
    pub name: &'static str,
    pub ty: PropType,
    pub access: Access,
}

/// Validation helpers shared by the drivers' setters.
pub mod check {
    use super::*;

    /// `num-queues` / `num-poll-queues` style: value ≥ 0 or `EINVAL msg`.
    pub fn non_negative(v: &Value, msg: &'static str) -> Result<i32> {
        match v.as_int() {
            n if n < 0 => Err(Error::invalid(msg)),
            n => Ok(n),
        }
    }

    /// Value > 0 or `EINVAL msg`.
    pub fn positive(v: &Value, msg: &'static str) -> Result<i32> {
        match v.as_int() {
            n if n <= 0 => Err(Error::invalid(msg)),
            n => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_follows_upstream_rules() {
        assert_eq!(
            Value::parse(PropType::Bool, "true").ok(),
            Some(Value::Bool(true))
        );
        for bad in ["1", "TRUE", " true", ""] {
            assert_eq!(
                Value::parse(PropType::Bool, bad).unwrap_err().errno(),
                libc::EINVAL
            );
        }
        assert_eq!(Value::parse(PropType::Int, "+7").ok(), Some(Value::Int(7)));
        assert_eq!(
            Value::parse(PropType::Int, "-2147483648").ok(),
            Some(Value::Int(i32::MIN))
        );
        for bad in [" 5", "", "0x10", "2147483648", "+-1"] {
            let e = Value::parse(PropType::Int, bad).unwrap_err();
            assert_eq!(e.message(), "Value must be a signed 32-bit integer");
        }
        assert_eq!(
            Value::parse(PropType::Uint64, "+7").ok(),
            Some(Value::Uint64(7))
        );
        assert_eq!(
            Value::parse(PropType::Uint64, "18446744073709551615").ok(),
            Some(Value::Uint64(u64::MAX))
        );
        for bad in ["-1", "-0", "", "1e3"] {
            let e = Value::parse(PropType::Uint64, bad).unwrap_err();
            assert_eq!(e.message(), "Value must be an unsigned 64-bit integer");
        }
    }

    #[test]
    fn access_per_state() {
        use State::*;
        assert_eq!(
            Access::ReadOnly.check_set(Created).unwrap_err().errno(),
            libc::EACCES
        );
        assert!(Access::Created.check_set(Created).is_ok());
        let e = Access::Created.check_set(Started).unwrap_err();
        assert_eq!(
            (e.errno(), e.message()),
            (libc::EBUSY, "Cannot set property in connected state")
        );
        assert_eq!(
            Access::Connected.check_set(Created).unwrap_err().errno(),
            libc::ENODEV
        );
        let e = Access::Connected.check_set(Started).unwrap_err();
        assert_eq!(e.message(), "Cannot set property in started state");
    }
}
