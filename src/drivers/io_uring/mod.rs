//! The `io_uring` driver: regular files and block devices through Linux
//! io_uring (docs/contract/properties.md §3, docs/contract/requests.md §7.1).

mod file;
mod queue;

use std::sync::Arc;

use crate::core::config::{self, Config, Configured};
use crate::core::device_fd::DeviceFd;
use crate::core::instance::{Driver, StartedQueues};
use crate::core::property::{check, Access, PropType, Property, Value};
use crate::core::queue::Queue;
use crate::core::{Error, Result};

use file::DeviceFile;
use queue::RingQueue;

/// Driver state: settings, then the device file once connected.
pub struct IoUringDriver {
    config: Config,
    direct: bool,
    num_entries: i32,
    file: Option<Arc<DeviceFile>>,
}

impl Default for IoUringDriver {
    fn default() -> Self {
        IoUringDriver {
            config: Config::default(),
            direct: false,
            num_entries: 128,
            file: None,
        }
    }
}

impl Configured for IoUringDriver {
    fn config(&self) -> &Config {
        &self.config
    }
    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

impl IoUringDriver {
    fn file(&self) -> Result<&DeviceFile> {
        self.file.as_deref().ok_or_else(Error::not_connected)
    }

    /// A value computed from the connected file (-ENODEV before).
    fn with_file(&self, f: impl FnOnce(&DeviceFile) -> Value) -> Result<Value> {
        self.file().map(f)
    }

    /// The flags `path` is opened with. A directory opened read-write
    /// fails with -EISDIR, as with upstream 1.5.0 (tests/qemu compares
    /// against its binary); read-only it opens and fails the file-type
    /// check (-EINVAL).
    fn open_flags(&self) -> libc::c_int {
        let access = if self.config.read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        let direct = if self.direct { libc::O_DIRECT } else { 0 };
        access | direct | libc::O_CLOEXEC
    }

    fn new_queue(&self, poll: bool) -> Result<Queue> {
        let file = self.file.clone().ok_or_else(Error::not_connected)?;
        let ring = RingQueue::new(file, self.num_entries as u32, poll)?;
        Ok(Queue::new(ring, poll))
    }
}

impl Driver for IoUringDriver {
    const NAME: &'static str = "io_uring";

    fn properties() -> &'static [Property<Self>] {
        &PROPERTIES
    }

    /// Errors leave the instance as it was (docs/contract/abi.md §6.3 \[Q\], [`DeviceFd`]).
    fn connect(&mut self) -> Result<()> {
        config::check_path_or_fd(&self.config)?;
        let fd = DeviceFd::new(&self.config, self.open_flags())?;
        let file = DeviceFile::probe(fd)?;
        self.config.report_fd(&file.fd);
        self.direct = file.direct;
        self.config.read_only = file.read_only;
        self.file = Some(Arc::new(file));
        Ok(())
    }

    fn start(&mut self) -> Result<StartedQueues> {
        let file = self.file()?;
        self.config.check_queue_count()?;
        if self.config.num_poll_queues > 0 && !file.supports_poll_queues {
            return Err(Error::invalid("Poll queues not supported"));
        }
        let queues = (0..self.config.num_queues)
            .map(|_| self.new_queue(false))
            .collect::<Result<_>>()?;
        let poll_queues = (0..self.config.num_poll_queues)
            .map(|_| self.new_queue(true))
            .collect::<Result<_>>()?;
        Ok(StartedQueues {
            queues,
            poll_queues,
        })
    }

    fn add_queue(&mut self, poll: bool) -> Result<Queue> {
        if poll && !self.file()?.supports_poll_queues {
            return Err(Error::invalid("Poll queues not supported"));
        }
        self.new_queue(poll)
    }
}

type D = IoUringDriver;
use Access::{Connected, Created};
use PropType::{Bool, Int, Str, Uint64};

fn int(v: i32) -> Result<Value> {
    Ok(Value::Int(v))
}
fn boolean(v: bool) -> Result<Value> {
    Ok(Value::Bool(v))
}

static PROPERTIES: [Property<D>; 32] = [
    Property::ro("buf-alignment", Int, |d| {
        d.with_file(|f| Value::Int(f.request_alignment))
    }),
    Property::ro("can-add-queues", Bool, |_| boolean(true)),
    Property::ro("can-grow", Bool, |d| {
        boolean(d.file.as_ref().is_some_and(|f| !f.block))
    }),
    Property::ro("capacity", Uint64, |d| {
        d.file()?.capacity().map(Value::Uint64)
    }),
    Property::rw(
        "direct",
        Bool,
        Created,
        |d| boolean(d.direct),
        |d, v| {
            d.direct = v.as_bool();
            Ok(())
        },
    ),
    Property::ro("discard-alignment", Int, |d| {
        d.with_file(|f| Value::Int(f.discard_alignment))
    }),
    Property::ro("discard-alignment-offset", Int, |d| {
        d.with_file(|f| Value::Int(f.discard_alignment_offset))
    }),
    Property::ro("driver", Str, |_| Ok(Value::Str(D::NAME.into()))),
    Property::rw("fd", Int, Created, config::get_fd, config::set_fd),
    Property::ro("flush-needed", Bool, |d| {
        boolean(d.file.as_ref().is_none_or(|f| f.flush_needed))
    }),
    Property::ro("max-discard-len", Uint64, |d| {
        d.with_file(|_| Value::Uint64(0))
    }),
    Property::ro("max-mem-regions", Uint64, |_| Ok(Value::Uint64(u64::MAX))),
    Property::ro("max-queues", Int, |_| int(i32::MAX)),
    Property::ro("max-segment-len", Int, |d| d.with_file(|_| Value::Int(0))),
    Property::ro("max-segments", Int, |d| {
        d.with_file(|f| Value::Int(f.max_segments))
    }),
    Property::ro("max-transfer", Int, |d| d.with_file(|_| Value::Int(0))),
    Property::ro("max-write-zeroes-len", Uint64, |d| {
        d.with_file(|_| Value::Uint64(0))
    }),
    Property::ro("may-pin-mem-regions", Bool, |_| boolean(false)),
    Property::ro("mem-region-alignment", Uint64, |d| {
        d.with_file(|f| Value::Uint64(f.request_alignment as u64))
    }),
    Property::ro("needs-mem-region-fd", Bool, |_| boolean(false)),
    Property::ro("needs-mem-regions", Bool, |_| boolean(false)),
    Property::rw(
        "num-entries",
        Int,
        Connected,
        |d| int(d.num_entries),
        |d, v| {
            d.num_entries = check::positive(&v, "num-entries must be greater than 0")?;
            Ok(())
        },
    ),
    config::num_poll_queues(),
    config::num_queues(),
    Property::ro("optimal-buf-alignment", Int, |d| {
        d.with_file(|_| Value::Int(crate::core::sys::page_size() as i32))
    }),
    Property::ro("optimal-io-alignment", Int, |d| {
        d.with_file(|f| Value::Int(f.optimal_io_alignment))
    }),
    Property::ro("optimal-io-size", Int, |d| {
        d.with_file(|f| Value::Int(f.optimal_io_size))
    }),
    config::path(),
    config::read_only(),
    Property::ro("request-alignment", Int, |d| {
        d.with_file(|f| Value::Int(f.request_alignment))
    }),
    Property::ro("supports-fua-natively", Bool, |d| {
        boolean(d.file.as_ref().is_some_and(|f| f.supports_fua_natively))
    }),
    Property::ro("supports-poll-queues", Bool, |d| {
        boolean(d.file.as_ref().is_some_and(|f| f.supports_poll_queues))
    }),
];
