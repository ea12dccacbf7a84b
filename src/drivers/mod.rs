//! The drivers. Each one implements [`crate::core::instance::Driver`] (the
//! device side: connect, start, properties, memory regions) and
//! [`crate::core::queue::QueueDriver`] (one ring or virtqueue).

pub mod io_uring;
pub mod nvme_io_uring;
mod uring_ring;
mod uring_wait;
pub mod virtio_blk;

use crate::core::instance::{Device, Instance};

/// Every driver name `blkio_create` accepts.
pub const NAMES: &[&str] = &[
    "io_uring",
    "nvme-io_uring",
    "virtio-blk-vhost-user",
    "virtio-blk-vhost-vdpa",
    "virtio-blk-vfio-pci",
];

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
