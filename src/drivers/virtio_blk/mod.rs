//! The virtio-blk drivers (`virtio-blk-vhost-user`, `-vhost-vdpa`,
//! `-vfio-pci`): one driver generic over a [`Transport`] (docs/contract/properties.md
//! §5–6, docs/contract/requests.md §7.3, docs/contract/virtio.md).
//!
//! * [`config`] — feature bits, the config space and the property values
//!   derived from them;
//! * [`transport`] — what a transport provides; [`vhost_user`],
//!   [`vhost_vdpa`] and [`vfio_pci`] are the three;
//! * [`iova`] — IOVA allocation and translation (vhost-vdpa, VFIO-PCI);
//! * [`memory`] — the memfd holding every queue's ring and request records;
//! * [`virtqueue`] — the driver side of the rings;
//! * [`record`] + [`queue`] — request encoding, completion and waiting.

pub(crate) mod config;
mod iova;
mod memory;
mod queue;
pub(crate) mod record;
pub mod transport;
pub mod vfio_pci;
pub mod vhost_user;
pub mod vhost_vdpa;
pub mod virtqueue;

use std::sync::Arc;

use crate::core::config::{self as common, Config, Configured};
use crate::core::instance::{Driver, StartedQueues};
use crate::core::property::{check, Access, PropType, Property, Value};
use crate::core::queue::Queue;
use crate::core::region::MemRegion;
use crate::core::{Error, Result};

use config::{bit, BlkConfig, DeviceInfo, DRIVER_FEATURES};
use memory::{BlockLayout, QueueMemory};
use queue::{QueueParams, VirtioQueue};
use transport::{DeviceAddress, QueueSetup, Transport};
use virtqueue::packed::PackedQueue;
use virtqueue::split::SplitQueue;

/// `VIRTIO_F_RING_PACKED`: only a transport that asks for it (VFIO-PCI)
/// can have it negotiated.
const RING_PACKED: u64 = bit(34);

/// Default and largest `queue-size`.
const DEFAULT_QUEUE_SIZE: i32 = 256;
const MAX_QUEUE_SIZE: i32 = 32768;

/// A connected device.
struct Device<T> {
    transport: T,
    info: DeviceInfo,
}

/// The virtio-blk driver over transport `T`.
pub struct VirtioBlk<T: Transport> {
    config: Config,
    queue_size: i32,
    device: Option<Device<T>>,
}

impl<T: Transport> Default for VirtioBlk<T> {
    fn default() -> Self {
        VirtioBlk {
            config: Config::default(),
            queue_size: DEFAULT_QUEUE_SIZE,
            device: None,
        }
    }
}

impl<T: Transport> Configured for VirtioBlk<T> {
    fn config(&self) -> &Config {
        &self.config
    }
    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

impl<T: Transport> VirtioBlk<T> {
    fn device(&self) -> Result<&Device<T>> {
        self.device.as_ref().ok_or_else(Error::not_connected)
    }

    /// The connect-time values, or the created-state defaults.
    fn info(&self) -> DeviceInfo {
        self.device.as_ref().map(|d| d.info).unwrap_or_default()
    }

    /// A fresh config-space read (one round trip per call, docs/contract/properties.md §1).
    fn fresh_config(&self) -> Result<(BlkConfig, u64)> {
        let d = self.device()?;
        let cfg = BlkConfig::parse(&d.transport.read_config()?);
        Ok((cfg, d.transport.features()))
    }

    fn max_queues(&self) -> Result<i32> {
        let (cfg, features) = self.fresh_config()?;
        let limit = self.device()?.transport.queue_limit();
        let limit = limit.map_or(i32::MAX, |n| n.min(i32::MAX as u64) as i32);
        Ok(cfg.max_queues(features).min(limit))
    }

    fn set_fd(&mut self, v: Value) -> Result<()> {
        if T::ACCEPTS_FD {
            common::set_fd(self, v)
        } else {
            Err(Error::not_found("fd property not supported"))
        }
    }

    fn set_queue_size(&mut self, v: Value) -> Result<()> {
        let n = check::positive(&v, "queue_size must be greater than 0")?;
        if !(n as u32).is_power_of_two() {
            return Err(Error::invalid("queue_size must be a power of two"));
        }
        if n > MAX_QUEUE_SIZE {
            return Err(Error::invalid("queue_size must be smaller than 32768"));
        }
        self.queue_size = n;
        Ok(())
    }

    /// The start-time checks of docs/contract/properties.md §5; returns the queue count.
    fn check_start(&self) -> Result<usize> {
        let total = self.config.num_queues as i64 + self.config.num_poll_queues as i64;
        if total == 0 {
            return Err(Error::invalid(
                "At least one of num_queues and num_poll_queues must be greater than 0",
            ));
        }
        let max = self.max_queues()?;
        if total > max as i64 {
            return Err(Error::invalid(format!(
                "num_queues + num_poll_queues must not be greater than {max}"
            )));
        }
        if self.device()?.info.read_only && !self.config.read_only {
            return Err(Error::new(libc::EROFS, "Device is read-only"));
        }
        Ok(total as usize)
    }
}

impl<T: Transport> Driver for VirtioBlk<T> {
    const NAME: &'static str = T::DRIVER_NAME;
    const CAN_ADD_QUEUES: bool = false;

    fn properties() -> &'static [Property<Self>] {
        &Self::PROPERTIES
    }

    fn connect(&mut self) -> Result<()> {
        common::check_path_or_fd(&self.config)?;
        if !T::ACCEPTS_FD && self.config.fd != -1 {
            // Unreachable through the setter, which already refuses
            // (docs/contract/properties.md §5 lists it all the same).
            return Err(Error::invalid(format!(
                "{} doesn't support the fd property",
                T::DRIVER_NAME
            )));
        }
        let transport = T::connect(&self.config, DRIVER_FEATURES)?;
        let cfg = BlkConfig::parse(&transport.read_config()?);
        let info = DeviceInfo::new(transport.features(), &cfg);
        self.device = Some(Device { transport, info });
        Ok(())
    }

    /// Allocates the queue memory block, registers it with the device, sets
    /// up every queue (regular ones first, then poll queues) and makes the
    /// call eventfds nonblocking completion fds.
    fn start(&mut self) -> Result<StartedQueues> {
        let total = self.check_start()?;
        let regular = self.config.num_queues as usize;
        let read_only = self.config.read_only;
        let size = self.queue_size as u16;
        let device = self.device.as_mut().ok_or_else(Error::not_connected)?;
        let info = device.info;
        let transport = &mut device.transport;

        let packed = transport.features() & RING_PACKED != 0;
        let layout = BlockLayout::new(size, packed);
        let align = transport.mem_region_alignment().max(1) as usize;
        let memory = Arc::new(QueueMemory::new(
            (layout.size * total).next_multiple_of(align),
        )?);
        transport.map_mem_region(&memory.region())?;

        let addr = transport.address_space();
        let calls = (0..total)
            .map(|_| crate::core::sys::eventfd(false))
            .collect::<Result<Vec<_>>>()?;
        let setups = calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                let offset = index * layout.size;
                let base = memory.at(offset).as_ptr() as usize;
                let dev = addr
                    .translate(base, layout.size)
                    .ok_or_else(|| Error::device("virtqueue memory is not mapped"))?;
                Ok(QueueSetup {
                    index,
                    size,
                    desc: dev,
                    avail: dev + layout.driver as u64,
                    used: dev + layout.device as u64,
                    call,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let kicks = transport.start_queues(&setups)?;
        drop(setups);

        let hangup = transport.hangup_fd();
        let mut started = StartedQueues {
            queues: Vec::with_capacity(regular),
            poll_queues: Vec::with_capacity(total - regular),
        };
        for (index, (call, kick)) in calls.into_iter().zip(kicks).enumerate() {
            let offset = index * layout.size;
            let poll = index >= regular;
            let params = QueueParams {
                memory: memory.clone(),
                offset,
                layout,
                queue_size: size,
                addr: addr.clone(),
                kick,
                call,
                poll,
                info,
                read_only,
                hangup: hangup.clone(),
            };
            let ring = memory.at(offset);
            // Both rings: this queue's ring, inside `memory`, zeroed and
            // aligned to 16 (the block starts page aligned, blocks are
            // multiples of 16); the queue keeps `memory` alive.
            let q = if packed {
                // SAFETY: as just said.
                let vq = unsafe { PackedQueue::new(ring, size) };
                Queue::new(VirtioQueue::<T, _>::new(vq, params)?, poll)
            } else {
                // SAFETY: as just said.
                let vq = unsafe { SplitQueue::new(ring, size, info.event_idx) };
                Queue::new(VirtioQueue::<T, _>::new(vq, params)?, poll)
            };
            if poll {
                started.poll_queues.push(q);
            } else {
                started.queues.push(q);
            }
        }
        Ok(started)
    }

    fn add_queue(&mut self, _poll: bool) -> Result<Queue> {
        // Unreachable: CAN_ADD_QUEUES is false and the instance refuses.
        Err(Error::not_supported(
            "Driver does not support dynamically adding queues",
        ))
    }

    fn map_mem_region(&mut self, region: &MemRegion) -> Result<()> {
        let device = self.device.as_mut().ok_or_else(Error::not_connected)?;
        device.transport.map_mem_region(region)
    }

    fn unmap_mem_region(&mut self, region: &MemRegion) {
        if let Some(device) = self.device.as_mut() {
            device.transport.unmap_mem_region(region);
        }
    }
}

use Access::{Connected, Created};
use PropType::{Bool, Int, Str, Uint64};

fn int(v: i32) -> Result<Value> {
    Ok(Value::Int(v))
}
fn boolean(v: bool) -> Result<Value> {
    Ok(Value::Bool(v))
}
fn uint64(v: u64) -> Result<Value> {
    Ok(Value::Uint64(v))
}

impl<T: Transport> VirtioBlk<T> {
    /// docs/contract/properties.md §5–6, sorted by name. Connect-time values read the
    /// stored [`DeviceInfo`] (defaults before connect); `capacity` and
    /// `max-queues` re-read the config space on every call.
    const PROPERTIES: [Property<Self>; 32] = [
        Property::ro("buf-alignment", Int, |_| int(1)),
        Property::ro("can-add-queues", Bool, |_| boolean(false)),
        Property::ro("can-grow", Bool, |_| boolean(false)),
        Property::ro("capacity", Uint64, |d| {
            Ok(Value::Uint64(d.fresh_config()?.0.capacity_bytes()))
        }),
        Property::ro("discard-alignment", Int, |d| {
            int(d.info().discard_alignment)
        }),
        Property::ro("discard-alignment-offset", Int, |d| {
            int(d.info().discard_alignment_offset)
        }),
        Property::ro("driver", Str, |_| Ok(Value::Str(T::DRIVER_NAME.into()))),
        Property::rw("fd", Int, Created, common::get_fd, Self::set_fd),
        Property::ro("flush-needed", Bool, |d| boolean(d.info().flush_needed)),
        Property::ro("max-discard-len", Uint64, |d| {
            uint64(d.info().max_discard_len)
        }),
        Property::ro("max-mem-regions", Uint64, |d| {
            uint64(d.device()?.transport.max_mem_regions())
        }),
        Property::ro("max-queue-size", Int, |_| int(MAX_QUEUE_SIZE)),
        Property::ro("max-queues", Int, |d| int(d.max_queues()?)),
        Property::ro("max-segment-len", Int, |d| int(d.info().max_segment_len)),
        Property::ro("max-segments", Int, |d| int(d.info().max_segments)),
        Property::ro("max-transfer", Int, |d| int(d.info().max_transfer)),
        Property::ro("max-write-zeroes-len", Uint64, |d| {
            uint64(d.info().max_write_zeroes_len)
        }),
        Property::ro("may-pin-mem-regions", Bool, |_| boolean(true)),
        Property::ro("mem-region-alignment", Uint64, |d| {
            uint64(
                d.device
                    .as_ref()
                    .map_or(1, |d| d.transport.mem_region_alignment()),
            )
        }),
        Property::ro("needs-mem-region-fd", Bool, |d| {
            boolean(
                d.device
                    .as_ref()
                    .is_none_or(|d| d.transport.needs_mem_region_fd()),
            )
        }),
        Property::ro("needs-mem-regions", Bool, |_| boolean(true)),
        common::num_poll_queues(),
        common::num_queues(),
        Property::ro("optimal-buf-alignment", Int, |_| int(1)),
        Property::ro("optimal-io-alignment", Int, |d| {
            int(d.info().optimal_io_alignment)
        }),
        Property::ro("optimal-io-size", Int, |d| int(d.info().optimal_io_size)),
        common::path(),
        Property::rw(
            "queue-size",
            Int,
            Connected,
            |d| int(d.queue_size),
            Self::set_queue_size,
        ),
        common::read_only(),
        Property::ro("request-alignment", Int, |d| {
            int(d.info().request_alignment)
        }),
        Property::ro("supports-fua-natively", Bool, |_| boolean(false)),
        Property::ro("supports-poll-queues", Bool, |_| boolean(true)),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_table_is_sorted_and_complete() {
        type D = VirtioBlk<vhost_user::VhostUser>;
        let names: Vec<_> = D::properties().iter().map(|p| p.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 32);
    }

    #[test]
    fn queue_size_rules() {
        let mut d = VirtioBlk::<vhost_user::VhostUser>::default();
        for (v, msg) in [
            (0, "queue_size must be greater than 0"),
            (-4, "queue_size must be greater than 0"),
            (3, "queue_size must be a power of two"),
            (65536, "queue_size must be smaller than 32768"),
        ] {
            let e = d.set_queue_size(Value::Int(v)).unwrap_err();
            assert_eq!((e.errno(), e.message()), (libc::EINVAL, msg), "{v}");
        }
        d.set_queue_size(Value::Int(32768)).unwrap();
        assert_eq!(d.queue_size, 32768);
        d.set_queue_size(Value::Int(1)).unwrap();
        assert_eq!(d.queue_size, 1);
    }
}
