//! The instance (`struct blkio`): the created → connected → started state
//! machine, property access checks, memory-region bookkeeping and queue
//! slots — everything that is the same for every driver.
//!
//! A driver plugs in by implementing [`Driver`]; [`Instance<D>`] wraps it and
//! implements the object-safe [`Device`] that the C API holds.

use std::ptr::NonNull;

use super::error::{Error, Result};
use super::introspection;
// `State` and `SetValue` live in `property` (whose access rules and
// conversions need them) and are re-exported here, where callers look.
use super::property::{PropType, Property, PropertyInfo, Value};
pub use super::property::{SetValue, State};
use super::queue::Queue;
use super::region::{self, MemRegion, Regions};

/// Queues created by [`Driver::start`] (each built with [`Queue::new`]
/// from the driver's ring type).
pub struct StartedQueues {
    pub queues: Vec<Queue>,
    pub poll_queues: Vec<Queue>,
}

/// What a driver implements. The instance calls it only in the right state
/// and after the generic checks.
pub trait Driver: Send + Sized + 'static {
    /// The driver name accepted by `blkio_create`.
    const NAME: &'static str;
    /// Whether `blkio_add_queue` can work at all. When false it fails with
    /// -ENOTSUP in every state.
    const CAN_ADD_QUEUES: bool = true;

    /// The property table, sorted by name.
    fn properties() -> &'static [Property<Self>];

    /// Opens / handshakes with the device (created → connected). On failure
    /// the driver leaves its configuration as it was so connect can be
    /// retried.
    fn connect(&mut self) -> Result<()>;

    /// Creates `num-queues` regular and `num-poll-queues` poll queues.
    fn start(&mut self) -> Result<StartedQueues>;

    /// Adds one queue in the started state.
    fn add_queue(&mut self, poll: bool) -> Result<Queue>;

    /// Makes a region usable by the device (after the generic checks).
    fn map_mem_region(&mut self, _region: &MemRegion) -> Result<()> {
        Ok(())
    }

    /// Reverses [`Driver::map_mem_region`]; errors are ignored.
    fn unmap_mem_region(&mut self, _region: &MemRegion) {}
}

/// The object-safe face of an instance, used by the C API.
pub trait Device: Send {
    fn driver_name(&self) -> &'static str;
    fn state(&self) -> State;
    fn connect(&mut self) -> Result<()>;
    fn start(&mut self) -> Result<()>;
    /// Reads a property; with `ty` the type must match (typed getters).
    fn get(&self, name: &str, ty: Option<PropType>) -> Result<Value>;
    fn set(&mut self, name: &str, value: SetValue<'_>) -> Result<()>;
    fn properties(&self) -> Vec<PropertyInfo>;
    fn alloc_mem_region(&mut self, len: usize) -> Result<MemRegion>;
    fn free_mem_region(&mut self, region: &MemRegion);
    fn map_mem_region(&mut self, region: &MemRegion) -> Result<()>;
    fn unmap_mem_region(&mut self, region: &MemRegion);
    /// The queue handle at `index`, if it exists.
    fn queue(&self, poll: bool, index: i32) -> Option<NonNull<Queue>>;
    fn add_queue(&mut self, poll: bool) -> Result<i32>;
    fn remove_queue(&mut self, poll: bool, index: i32) -> Result<()>;
}

/// Queue handles with stable addresses; removed ones leave a hole that the
/// next add reuses (lowest free index first).
#[derive(Default)]
struct Slots(Vec<Option<NonNull<Queue>>>);

// SAFETY: the queues are heap objects owned by the slots; moving the owner
// between threads is fine, and concurrent use of one queue is the
// application's responsibility (docs/contract/abi.md §5).
unsafe impl Send for Slots {}

impl Slots {
    fn insert(&mut self, q: Queue) -> i32 {
        let ptr = NonNull::from(Box::leak(Box::new(q)));
        match self.0.iter().position(Option::is_none) {
            Some(i) => {
                self.0[i] = Some(ptr);
                i as i32
            }
            None => {
                self.0.push(Some(ptr));
                self.0.len() as i32 - 1
            }
        }
    }

    fn get(&self, index: i32) -> Option<NonNull<Queue>> {
        *self.0.get(usize::try_from(index).ok()?)?
    }

    fn remove(&mut self, index: i32) -> Result<()> {
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get_mut(i))
            .and_then(Option::take);
        match slot {
            Some(ptr) => {
                // SAFETY: the pointer came from Box::leak in `insert` and was
                // just taken out of its slot, so it is freed exactly once.
                drop(unsafe { Box::from_raw(ptr.as_ptr()) });
                Ok(())
            }
            None => Err(Error::not_found(format!("no queue with index {index}"))),
        }
    }

    fn clear(&mut self) {
        for i in 0..self.0.len() {
            let _ = self.remove(i as i32);
        }
        self.0.clear();
    }
}

/// A driver wrapped in the generic state machine.
pub struct Instance<D: Driver> {
    driver: D,
    state: State,
    regions: Regions,
    queues: Slots,
    poll_queues: Slots,
}

impl<D: Driver> Instance<D> {
    pub fn new(driver: D) -> Self {
        Instance {
            driver,
            state: State::Created,
            regions: Regions::default(),
            queues: Slots::default(),
            poll_queues: Slots::default(),
        }
    }

    fn property(name: &str) -> Result<&'static Property<D>> {
        D::properties()
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::not_found("Unknown property name"))
    }

    fn mem_region_alignment(&self) -> Result<u64> {
        Ok(self.get("mem-region-alignment", None)?.as_u64().max(1))
    }

    fn slots(&mut self, poll: bool) -> &mut Slots {
        if poll {
            &mut self.poll_queues
        } else {
            &mut self.queues
        }
    }
}

impl<D: Driver> Device for Instance<D> {
    fn driver_name(&self) -> &'static str {
        D::NAME
    }

    fn state(&self) -> State {
        self.state
    }

    fn connect(&mut self) -> Result<()> {
        match self.state {
            State::Created => {
                self.driver.connect()?;
                self.state = State::Connected;
                Ok(())
            }
            State::Connected => Ok(()),
            State::Started => Err(Error::bad_state("Cannot set property in connected state")),
        }
    }

    fn start(&mut self) -> Result<()> {
        match self.state {
            State::Created => Err(Error::not_connected()),
            State::Connected => {
                let started = self.driver.start()?;
                for q in started.queues {
                    self.queues.insert(q);
                }
                for q in started.poll_queues {
                    self.poll_queues.insert(q);
                }
                self.state = State::Started;
                Ok(())
            }
            State::Started => Ok(()),
        }
    }

    fn get(&self, name: &str, ty: Option<PropType>) -> Result<Value> {
        if name == introspection::PROPERTIES_NAME {
            return introspection::get(ty, &self.properties());
        }
        let prop = Self::property(name)?;
        if let Some(ty) = ty {
            if ty != prop.ty {
                return Err(ty.get_mismatch());
            }
        }
        (prop.get)(&self.driver)
    }

    fn set(&mut self, name: &str, value: SetValue<'_>) -> Result<()> {
        if name == introspection::PROPERTIES_NAME {
            return introspection::set(&value);
        }
        let prop = Self::property(name)?;
        let value = match value {
            SetValue::Typed(v) if v.ty() == prop.ty => v,
            SetValue::Typed(v) => return Err(v.ty().set_mismatch()),
            SetValue::Str(s) => Value::parse(prop.ty, s)?,
        };
        prop.access.check_set(self.state)?;
        (prop.set)(&mut self.driver, value)
    }

    fn properties(&self) -> Vec<PropertyInfo> {
        D::properties()
            .iter()
            .map(|p| PropertyInfo {
                name: p.name,
                ty: p.ty,
                access: p.access,
            })
            .collect()
    }

    fn alloc_mem_region(&mut self, len: usize) -> Result<MemRegion> {
        if self.state == State::Created {
            return Err(Error::not_connected());
        }
        let align = self.mem_region_alignment()?;
        if len as u64 % align != 0 {
            return Err(Error::invalid(format!(
                "len {len} violates mem-region-alignment {align}"
            )));
        }
        let a = region::allocate(len, align)?;
        let r = a.region;
        self.regions.add_allocated(a);
        Ok(r)
    }

    fn free_mem_region(&mut self, r: &MemRegion) {
        // Unknown, modified or still-mapped regions are ignored: never free
        // memory this instance did not allocate (docs/contract/abi.md §6.8).
        // Taken out of the registry of regions this instance allocated and
        // not mapped (take_allocated checks both): dropping it unmaps and
        // closes once; the application gave it back.
        drop(self.regions.take_allocated(r));
    }

    fn map_mem_region(&mut self, r: &MemRegion) -> Result<()> {
        let align = self.mem_region_alignment()?;
        if r.addr as u64 % align != 0 {
            return Err(Error::invalid(format!(
                "addr {:#x} violates mem-region-alignment {align}",
                r.addr as u64
            )));
        }
        if r.len as u64 % align != 0 {
            return Err(Error::invalid(format!(
                "len {:#x} violates mem-region-alignment {align}",
                r.len
            )));
        }
        if self.regions.is_mapped(r) {
            return Err(Error::invalid("memory region already mapped"));
        }
        if self.state != State::Started {
            return Err(Error::not_started());
        }
        self.driver.map_mem_region(r)?;
        self.regions.add_mapped(*r);
        Ok(())
    }

    fn unmap_mem_region(&mut self, r: &MemRegion) {
        if self.regions.remove_mapped(r) {
            self.driver.unmap_mem_region(r);
        }
    }

    fn queue(&self, poll: bool, index: i32) -> Option<NonNull<Queue>> {
        if poll {
            self.poll_queues.get(index)
        } else {
            self.queues.get(index)
        }
    }

    fn add_queue(&mut self, poll: bool) -> Result<i32> {
        if !D::CAN_ADD_QUEUES {
            return Err(Error::not_supported(
                "Driver does not support dynamically adding queues",
            ));
        }
        if self.state != State::Started {
            return Err(Error::not_started());
        }
        let q = self.driver.add_queue(poll)?;
        Ok(self.slots(poll).insert(q))
    }

    fn remove_queue(&mut self, poll: bool, index: i32) -> Result<()> {
        self.slots(poll).remove(index)
    }
}

impl<D: Driver> Drop for Instance<D> {
    fn drop(&mut self) {
        // Queues first (in-flight requests are abandoned), then regions; the
        // driver itself (device fd, connection) goes last.
        self.queues.clear();
        self.poll_queues.clear();
        let (mapped, allocated) = self.regions.drain();
        for r in &mapped {
            self.driver.unmap_mem_region(r);
        }
        // After every queue and driver mapping is gone: unmapped and
        // closed once, unused after.
        drop(allocated);
    }
}
