//! Settings every driver has (`path`, `fd`, `read-only`, `num-queues`,
//! `num-poll-queues`) and the property getters/setters for them, so each
//! driver's table can point at one shared implementation.

use std::os::fd::{AsRawFd, RawFd};

use super::error::{Error, Result};
use super::property::{check, Access, PropType, Property, Value};
use super::sys;

/// The common settings of an instance.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: String,
    /// -1 = unset.
    pub fd: RawFd,
    pub read_only: bool,
    pub num_queues: i32,
    pub num_poll_queues: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: String::new(),
            fd: -1,
            read_only: false,
            num_queues: 1,
            num_poll_queues: 0,
        }
    }
}

impl Config {
    /// After a successful connect from `path`, the `fd` property reports
    /// the library's descriptor (io_uring and nvme-io_uring, docs/contract/abi.md §6.3).
    pub fn report_fd(&mut self, fd: &impl AsRawFd) {
        if !self.path.is_empty() {
            self.fd = fd.as_raw_fd();
        }
    }

    /// Refuses, before creating any queue, a queue count that can never
    /// be started: every queue of the io_uring drivers holds at least one
    /// file descriptor (its ring), so more queues than the process's
    /// open-file limit fail anyway. Without this check a `num-queues` near
    /// `max-queues` (`i32::MAX`) would set up thousands of rings before
    /// failing with -EMFILE; now it fails at once with the same errno
    /// (docs/contract/properties.md, "Queue counts").
    pub fn check_queue_count(&self) -> Result<()> {
        let wanted = self.num_queues as u64 + self.num_poll_queues as u64;
        match sys::open_file_limit() {
            Some(limit) if wanted > limit => Err(Error::new(
                libc::EMFILE,
                format!(
                    "num_queues + num_poll_queues ({wanted}) exceeds the open file limit \
                     ({limit}): each queue needs a file descriptor"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// A driver that holds a [`Config`].
pub trait Configured {
    fn config(&self) -> &Config;
    fn config_mut(&mut self) -> &mut Config;
}

/// The `path` property entry (rw in the created state).
pub const fn path<D: Configured>() -> Property<D> {
    Property::rw("path", PropType::Str, Access::Created, get_path, set_path)
}

/// The `read-only` property entry (rw in the created state).
pub const fn read_only<D: Configured>() -> Property<D> {
    Property::rw(
        "read-only",
        PropType::Bool,
        Access::Created,
        get_read_only,
        set_read_only,
    )
}

/// The `num-queues` property entry (rw in the connected state).
pub const fn num_queues<D: Configured>() -> Property<D> {
    Property::rw(
        "num-queues",
        PropType::Int,
        Access::Connected,
        get_num_queues,
        set_num_queues,
    )
}

/// The `num-poll-queues` property entry (rw in the connected state).
pub const fn num_poll_queues<D: Configured>() -> Property<D> {
    Property::rw(
        "num-poll-queues",
        PropType::Int,
        Access::Connected,
        get_num_poll_queues,
        set_num_poll_queues,
    )
}

pub fn get_path<D: Configured>(d: &D) -> Result<Value> {
    Ok(Value::Str(d.config().path.clone()))
}

pub fn set_path<D: Configured>(d: &mut D, v: Value) -> Result<()> {
    d.config_mut().path = v.into_string();
    Ok(())
}

pub fn get_fd<D: Configured>(d: &D) -> Result<Value> {
    Ok(Value::Int(d.config().fd))
}

/// Any int is accepted; validity is checked at connect.
pub fn set_fd<D: Configured>(d: &mut D, v: Value) -> Result<()> {
    d.config_mut().fd = v.as_int();
    Ok(())
}

pub fn get_read_only<D: Configured>(d: &D) -> Result<Value> {
    Ok(Value::Bool(d.config().read_only))
}

pub fn set_read_only<D: Configured>(d: &mut D, v: Value) -> Result<()> {
    d.config_mut().read_only = v.as_bool();
    Ok(())
}

pub fn get_num_queues<D: Configured>(d: &D) -> Result<Value> {
    Ok(Value::Int(d.config().num_queues))
}

pub fn set_num_queues<D: Configured>(d: &mut D, v: Value) -> Result<()> {
    d.config_mut().num_queues =
        check::non_negative(&v, "num_queues must be equal to or greater than 0")?;
    Ok(())
}

pub fn get_num_poll_queues<D: Configured>(d: &D) -> Result<Value> {
    Ok(Value::Int(d.config().num_poll_queues))
}

pub fn set_num_poll_queues<D: Configured>(d: &mut D, v: Value) -> Result<()> {
    d.config_mut().num_poll_queues =
        check::non_negative(&v, "num_poll_queues must be equal to or greater than 0")?;
    Ok(())
}

/// Checks that exactly one of `path` and `fd` is set (connect, docs/contract/abi.md §6.3).
pub fn check_path_or_fd(c: &Config) -> Result<()> {
    use super::error::Error;
    match (c.path.is_empty(), c.fd == -1) {
        (true, true) => Err(Error::invalid("One of path and fd must be set")),
        (false, false) => Err(Error::invalid("path and fd cannot be set at the same time")),
        _ => Ok(()),
    }
}
