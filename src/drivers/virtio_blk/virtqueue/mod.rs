//! The driver side of a virtqueue, on plain shared memory (docs/contract/virtio.md §5–6).
//!
//! A virtqueue knows nothing about block requests: it hands out chain ids,
//! publishes chains of [`Buffer`]s, each with a token of the caller's (a
//! `T`, kept with the chain's own bookkeeping, so that completing a chain
//! costs no second table), decides when the device needs a kick, returns
//! the ids and tokens of used chains and switches used-buffer
//! notifications.
//! The virtio-blk layer ([`super::queue`]) builds the chains.
//!
//! Two implementations: [`split::SplitQueue`], which vhost-user and
//! vhost-vdpa always use, and [`packed::PackedQueue`], which VFIO-PCI uses
//! when the device offers `VIRTIO_F_RING_PACKED` (docs/contract/virtio.md §6).

pub mod packed;
pub mod split;

/// One element of a descriptor chain as the device sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Device address (already translated by the transport).
    pub addr: u64,
    pub len: u32,
    /// The device writes into it (`VRING_DESC_F_WRITE`).
    pub device_writable: bool,
}

/// What the virtio-blk layer needs from a ring whose chains carry a `T`.
pub trait Virtqueue<T>: Send {
    /// Number of entries (descriptors).
    fn size(&self) -> u16;

    /// The id the next [`Virtqueue::add_chain`] will return, if a
    /// descriptor is free. Request records are indexed by this id.
    fn next_id(&self) -> Option<u16>;

    /// Free descriptors.
    fn num_free(&self) -> u16;

    /// Places and publishes a chain (1 ≤ len ≤ [`Virtqueue::num_free`])
    /// carrying `token`; returns its id (the value [`Virtqueue::next_id`]
    /// announced). The one way chains enter a ring; inlined, so that a
    /// chain of known length (the three descriptors of a plain read or
    /// write) unrolls.
    fn add_chain(&mut self, chain: &[Buffer], token: T) -> u16;

    /// Used entries the device has produced and we have not popped yet.
    fn used_pending(&self) -> u16;

    /// The id and token of the next used chain, whose descriptors become
    /// free again. An entry naming no chain in flight (out of range, never
    /// placed, already used) breaks the ring: `None` from then on, and
    /// [`Virtqueue::is_broken`] says so.
    fn pop_used(&mut self) -> Option<(u16, T)>;

    /// The token of some chain still in flight, which stops counting as
    /// in flight (its descriptors are not freed): how a ring the device
    /// left is emptied. `None` when no chain is in flight.
    fn take_in_flight(&mut self) -> Option<T>;

    /// Whether the device wrote a used entry that breaks the rules; every
    /// request in flight is then lost and must fail.
    fn is_broken(&self) -> bool {
        false
    }

    /// Whether something was published since the last kick decision.
    fn has_unkicked(&self) -> bool;

    /// The kick decision for everything published since the last one
    /// (event index or `VRING_USED_F_NO_NOTIFY`).
    fn needs_kick(&mut self) -> bool;

    /// Turns used-buffer notifications on or off. Turning them on is
    /// followed by a full fence, so that a re-check of the used ring cannot
    /// miss a notification; turning them off needs none (the device may
    /// notify once more either way).
    fn set_notifications(&mut self, enabled: bool);

    /// With notifications off, has the device signal its next used entry,
    /// for one sleep; followed by a full fence, so that a re-check of the
    /// used ring cannot miss the signal. Notifications count as off
    /// throughout; [`Virtqueue::disarm`] ends it.
    fn arm(&mut self) {
        self.set_notifications(true);
    }

    /// After [`Virtqueue::arm`] and the sleep: no further signals (the
    /// device may signal once more).
    fn disarm(&mut self) {
        self.set_notifications(false);
    }
}

/// Rings whose chains carry a token derived from their id, for the ring
/// tests and the fuzz harness: a pop can then check that the right token
/// comes back with its chain.
#[cfg(any(test, feature = "fuzzing"))]
pub mod checked {
    use super::{Buffer, Virtqueue};

    /// The token of the chain with id `id`.
    pub fn token(id: u16) -> u16 {
        id ^ 0x5A5A
    }

    /// [`Virtqueue::add_chain`] with the chain's [`token`].
    pub fn add<Q: Virtqueue<u16> + ?Sized>(q: &mut Q, chain: &[Buffer]) -> u16 {
        let id = q.next_id().expect("a free descriptor");
        q.add_chain(chain, token(id))
    }

    /// [`Virtqueue::pop_used`], checking the token.
    pub fn pop<Q: Virtqueue<u16> + ?Sized>(q: &mut Q) -> Option<u16> {
        q.pop_used().map(|(id, t)| {
            assert_eq!(t, token(id), "chain {id} came back with another token");
            id
        })
    }
}
