//! The drivers. Each one implements [`crate::core::instance::Driver`] (the
//! device side: connect, start, properties, memory regions) and, for its
//! queues, [`crate::core::queue::QueueDriver`] (one io_uring ring or one
//! virtqueue), which [`crate::core::queue::Queue::new`] wraps together
//! with the backlogs every driver shares (statically dispatched within
//! the queue).
//!
//! * [`io_uring`] — regular files and block devices;
//! * [`nvme_io_uring`] — NVMe namespaces through io_uring passthrough;
//! * [`virtio_blk`] — virtio-blk over vhost-user, vhost-vdpa and VFIO;
//! * `uring_wait` — the `io_uring_enter` wait both io_uring drivers use;
//! * `uring_eventfd` — their completion eventfd, registered with the ring
//!   only once the application asks for it.

pub mod io_uring;
pub mod nvme_io_uring;
mod uring_eventfd;
mod uring_ring;
mod uring_wait;
pub mod virtio_blk;

use crate::core::instance::{Device, Instance};
use crate::core::{Error, Result};

/// Every driver name `blkio_create` accepts.
pub const NAMES: &[&str] = &[
    "io_uring",
    "nvme-io_uring",
    "virtio-blk-vhost-user",
    "virtio-blk-vhost-vdpa",
    "virtio-blk-vfio-pci",
];

/// [`create`], failing as `blkio_create` does for a name it does not know.
pub fn create_named(name: &str) -> Result<Box<dyn Device>> {
    create(name).ok_or_else(|| Error::not_found("Unknown driver name"))
}

/// A new instance of the named driver, in the created state.
pub fn create(name: &str) -> Option<Box<dyn Device>> {
    match name {
        "io_uring" => Some(Box::new(Instance::new(io_uring::IoUringDriver::default()))),
        "nvme-io_uring" => Some(Box::new(Instance::new(
            nvme_io_uring::NvmeIoUringDriver::default(),
        ))),
        "virtio-blk-vhost-user" => Some(Box::new(Instance::new(virtio_blk::VirtioBlk::<
            virtio_blk::vhost_user::VhostUser,
        >::default()))),
        "virtio-blk-vhost-vdpa" => Some(Box::new(Instance::new(virtio_blk::VirtioBlk::<
            virtio_blk::vhost_vdpa::VhostVdpa,
        >::default()))),
        "virtio-blk-vfio-pci" => Some(Box::new(Instance::new(virtio_blk::VirtioBlk::<
            virtio_blk::vfio_pci::VfioPci,
        >::default()))),
        _ => None,
    }
}
