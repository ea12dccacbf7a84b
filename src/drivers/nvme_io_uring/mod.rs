//! The `nvme-io_uring` driver: NVMe namespaces through their generic
//! character device (`/dev/ngXnY`) with io_uring passthrough commands
//! (docs/contract/properties.md §4, docs/contract/requests.md §7.2).
//!
//! * [`command`] — the passthrough command layout, opcodes, ioctls;
//! * [`identify`] — the admin commands of connect and their raw facts;
//! * [`namespace`] — the opened device and the property values;
//! * [`queue`] — one `SQE128 | CQE32` ring per queue;
//! * [`status`] — NVMe status → errno and message;
//! * [`zones`] — zone report conversion.

mod command;
pub(crate) mod identify;
pub(crate) mod namespace;
mod queue;
pub(crate) mod status;
pub(crate) mod zones;

use std::sync::Arc;

use crate::core::config::{self, Config, Configured};
use crate::core::device_fd::DeviceFd;
use crate::core::instance::{Driver, StartedQueues};
use crate::core::property::{check, Access, PropType, Property, Value};
use crate::core::queue::Queue;
use crate::core::{sys, Error, Result};

use namespace::{Limits, Namespace, ZoneLimits};
use queue::NvmeQueue;

/// Driver state: settings, then the namespace once connected.
pub struct NvmeIoUringDriver {
    config: Config,
    num_entries: i32,
    ns: Option<Arc<Namespace>>,
}

impl Default for NvmeIoUringDriver {
    fn default() -> Self {
        NvmeIoUringDriver {
            config: Config::default(),
            num_entries: 128,
            ns: None,
        }
    }
}

impl Configured for NvmeIoUringDriver {
    fn config(&self) -> &Config {
        &self.config
    }
    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

impl NvmeIoUringDriver {
    fn limits(&self) -> Result<&Limits> {
        self.ns
            .as_deref()
            .map(|ns| &ns.limits)
            .ok_or_else(Error::not_connected)
    }

    /// A value computed from the namespace (-ENODEV before connect).
    fn computed(&self, f: impl FnOnce(&Limits) -> Value) -> Result<Value> {
        self.limits().map(f)
    }

    /// A zoned value: stored, so its default until connect and for
    /// conventional namespaces.
    fn zoned(&self, f: impl FnOnce(&ZoneLimits) -> Value, default: Value) -> Result<Value> {
        let zoned = self.ns.as_deref().and_then(|ns| ns.limits.zoned.as_ref());
        Ok(zoned.map_or(default, f))
    }

    fn new_queue(&self) -> Result<Queue> {
        let ns = self.ns.clone().ok_or_else(Error::not_connected)?;
        let ring = NvmeQueue::new(ns, self.num_entries as u32, self.config.read_only)?;
        Ok(Queue::new(ring, false))
    }
}

impl Driver for NvmeIoUringDriver {
    const NAME: &'static str = "nvme-io_uring";

    fn properties() -> &'static [Property<Self>] {
        &PROPERTIES
    }

    /// Errors leave the instance as it was (docs/contract/abi.md §6.3 \[Q\], [`DeviceFd`]).
    ///
    /// `path` is opened read-only whatever `read-only` says: the kernel
    /// accepts passthrough writes from a privileged process on a read-only
    /// descriptor, and the library enforces `read-only` itself (upstream).
    fn connect(&mut self) -> Result<()> {
        config::check_path_or_fd(&self.config)?;
        let fd = DeviceFd::new(&self.config, libc::O_RDONLY | libc::O_CLOEXEC)?;
        let ns = Namespace::probe(fd)?;
        self.config.report_fd(&ns.fd);
        self.ns = Some(Arc::new(ns));
        Ok(())
    }

    fn start(&mut self) -> Result<StartedQueues> {
        self.limits()?;
        if self.config.num_poll_queues > 0 {
            return Err(Error::invalid("num_poll_queues must be 0"));
        }
        self.config.check_queue_count()?;
        let queues = (0..self.config.num_queues)
            .map(|_| self.new_queue())
            .collect::<Result<_>>()?;
        Ok(StartedQueues {
            queues,
            poll_queues: Vec::new(),
        })
    }

    fn add_queue(&mut self, poll: bool) -> Result<Queue> {
        if poll {
            return Err(Error::invalid("poll queues not supported"));
        }
        self.new_queue()
    }
}

type D = NvmeIoUringDriver;
use Access::{Connected, Created};
use PropType::{Bool, Int, Str, Uint64};

fn int(v: i32) -> Result<Value> {
    Ok(Value::Int(v))
}
fn boolean(v: bool) -> Result<Value> {
    Ok(Value::Bool(v))
}
fn alignment(d: &D) -> Result<Value> {
    d.computed(|l| Value::Int(l.lba_size as i32))
}
fn alignment_u64(d: &D) -> Result<Value> {
    d.computed(|l| Value::Uint64(l.lba_size as u64))
}

static PROPERTIES: [Property<D>; 38] = [
    Property::ro("append-support", Bool, |d| {
        d.zoned(|z| Value::Bool(z.append), Value::Bool(false))
    }),
    Property::ro("buf-alignment", Int, alignment),
    Property::ro("can-add-queues", Bool, |_| boolean(true)),
    Property::ro("can-grow", Bool, |_| boolean(false)),
    Property::ro("capacity", Uint64, |d| {
        d.computed(|l| Value::Uint64(l.capacity))
    }),
    Property::ro("discard-alignment", Int, alignment),
    Property::ro("discard-alignment-offset", Int, |d| {
        d.computed(|_| Value::Int(0))
    }),
    Property::ro("driver", Str, |_| Ok(Value::Str(D::NAME.into()))),
    Property::rw("fd", Int, Created, config::get_fd, config::set_fd),
    Property::ro("flush-needed", Bool, |d| {
        boolean(d.limits().map_or(true, |l| l.flush_needed))
    }),
    Property::ro("max-active-zones", Int, |d| {
        d.zoned(|z| Value::Int(z.max_active), Value::Int(0))
    }),
    Property::ro("max-discard-len", Uint64, |d| {
        d.computed(|l| Value::Uint64(l.max_discard))
    }),
    Property::ro("max-mem-regions", Uint64, |_| Ok(Value::Uint64(u64::MAX))),
    Property::ro("max-open-zones", Int, |d| {
        d.zoned(|z| Value::Int(z.max_open), Value::Int(0))
    }),
    Property::ro("max-queues", Int, |_| int(i32::MAX)),
    Property::ro("max-segment-len", Int, |d| d.computed(|_| Value::Int(0))),
    Property::ro("max-segments", Int, |d| {
        d.computed(|_| Value::Int(sys::iov_max()))
    }),
    Property::ro("max-transfer", Int, |d| {
        d.computed(|l| Value::Int(l.max_transfer as i32))
    }),
    Property::ro("max-write-zeroes-len", Uint64, |d| {
        d.computed(|l| Value::Uint64(l.max_write_zeroes))
    }),
    Property::ro("may-pin-mem-regions", Bool, |_| boolean(false)),
    Property::ro("mem-region-alignment", Uint64, alignment_u64),
    Property::ro("needs-mem-region-fd", Bool, |_| boolean(false)),
    Property::ro("needs-mem-regions", Bool, |_| boolean(false)),
    Property::ro("nr-zones", Uint64, |d| {
        d.zoned(|z| Value::Uint64(z.nr_zones), Value::Uint64(0))
    }),
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
    Property::rw(
        "num-queues",
        Int,
        Connected,
        config::get_num_queues,
        // Upstream spells this driver's message with a dash.
        |d, v| {
            d.config.num_queues =
                check::non_negative(&v, "num-queues must be equal to or greater than 0")?;
            Ok(())
        },
    ),
    Property::ro("optimal-buf-alignment", Int, |d| {
        d.computed(|l| Value::Int((sys::page_size() as i32).max(l.lba_size as i32)))
    }),
    Property::ro("optimal-io-alignment", Int, alignment),
    Property::ro("optimal-io-size", Int, |d| d.computed(|_| Value::Int(0))),
    config::path(),
    config::read_only(),
    Property::ro("request-alignment", Int, alignment),
    Property::ro("supports-fua-natively", Bool, |_| boolean(true)),
    Property::ro("supports-poll-queues", Bool, |_| boolean(false)),
    Property::ro("zone-append-max-bytes", Uint64, |d| {
        d.zoned(|z| Value::Uint64(z.append_max), Value::Uint64(0))
    }),
    Property::ro("zone-size", Uint64, |d| {
        d.zoned(|z| Value::Uint64(z.zone_size), Value::Uint64(0))
    }),
    Property::ro("zoned", Int, |d| {
        // Host-managed (2) is the only zoned model NVMe ZNS has.
        d.zoned(|_| Value::Int(2), Value::Int(0))
    }),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_table_is_sorted_and_complete() {
        let names: Vec<_> = PROPERTIES.iter().map(|p| p.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 38);
    }
}
