//! [`Blkio`]: one instance of a driver, its lifecycle as typestates and
//! its properties.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use super::error::{Error, Result};
use super::queue::Queue;
use super::region::MemRegion;
use crate::core::instance::{Device, SetValue};
use crate::core::property::{self, PropType, Value};
use crate::drivers;

/// What every handle of one instance shares: the driver instance (the same
/// `Device` the C API holds) and which queues have a [`Queue`] handle.
pub(crate) struct Inner {
    device: Mutex<Box<dyn Device>>,
    /// `(poll, index)` of every queue with a live [`Queue`] handle.
    taken: Mutex<Vec<(bool, i32)>>,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Box<dyn Device>> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn taken(&self) -> MutexGuard<'_, Vec<(bool, i32)>> {
        self.taken.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives up the handle of queue `key` (its [`Queue`] was dropped).
    pub(crate) fn release(&self, key: (bool, i32)) {
        self.taken().retain(|k| *k != key);
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The lifecycle states of an instance: [`Created`], [`Connected`] and
/// [`Started`]. Sealed: no other type implements it.
pub trait State: sealed::Sealed {}

/// States from connected on ([`Connected`], [`Started`]): memory regions
/// can be allocated.
pub trait AtLeastConnected: State {}

/// Just created: only properties can be read and set (`path`, `fd`,
/// `read-only`, ...).
#[derive(Debug)]
pub enum Created {}
/// Connected to the device: its properties are known, queue counts and
/// sizes can be set, memory regions allocated.
#[derive(Debug)]
pub enum Connected {}
/// Started: queues exist and I/O can be done.
#[derive(Debug)]
pub enum Started {}

impl sealed::Sealed for Created {}
impl sealed::Sealed for Connected {}
impl sealed::Sealed for Started {}
impl State for Created {}
impl State for Connected {}
impl State for Started {}
impl AtLeastConnected for Connected {}
impl AtLeastConnected for Started {}

/// An instance of a driver in state `S`.
///
/// Created with [`Blkio::new`], moved forward with [`Blkio::connect`] and
/// [`Blkio::start`]; a call that needs another state does not compile.
/// Dropping the instance closes the device once the last
/// [`MemRegion`] it allocated or had mapped is gone too.
///
/// The instance is `Send` and `Sync`: control calls (properties, regions,
/// queue handles) are serialised by a lock, while each [`Queue`] is used
/// by one thread at a time without it.
///
/// ```
/// # let path = std::env::temp_dir().join(format!("blkio-doc-{}", std::process::id()));
/// # std::fs::write(&path, vec![0u8; 65536]).unwrap();
/// use blkio::Blkio;
///
/// let b = Blkio::new("io_uring")?;
/// b.set("path", path.to_str().unwrap())?;
/// let b = b.connect()?;
/// assert_eq!(b.get::<u64>("capacity")?, 65536);
/// b.set("num-queues", 2)?;
/// let b = b.start()?;
/// assert_eq!(b.get::<i32>("num-queues")?, 2);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), blkio::Error>(())
/// ```
///
/// Skipping a state is a compile error, not a runtime one:
///
/// ```compile_fail
/// let b = blkio::Blkio::new("io_uring")?;
/// let q = b.queue(0); // no queues before start()
/// # Ok::<(), blkio::Error>(())
/// ```
pub struct Blkio<S: State> {
    inner: Arc<Inner>,
    _state: PhantomData<fn() -> S>,
}

impl<S: State> std::fmt::Debug for Blkio<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blkio")
            .field("driver", &self.inner.lock().driver_name())
            .field("state", &self.inner.lock().state())
            .finish()
    }
}

impl Blkio<Created> {
    /// Creates an instance of `driver` (one of [`DRIVERS`]).
    ///
    /// Fails with [`ErrorKind::NotFound`](super::ErrorKind::NotFound) for
    /// an unknown name.
    pub fn new(driver: &str) -> Result<Self> {
        let device = drivers::create_named(driver)?;
        Ok(Blkio {
            inner: Arc::new(Inner {
                device: Mutex::new(device),
                taken: Mutex::new(Vec::new()),
            }),
            _state: PhantomData,
        })
    }

    /// Opens the device (a file, a socket, ...) set up by the properties.
    ///
    /// On failure the instance is dropped; create a new one to try again.
    pub fn connect(self) -> Result<Blkio<Connected>> {
        self.inner.lock().connect()?;
        Ok(self.into_state())
    }
}

impl Blkio<Connected> {
    /// Creates the queues (`num-queues` regular, `num-poll-queues` poll
    /// queues) and makes the instance ready for I/O.
    pub fn start(self) -> Result<Blkio<Started>> {
        self.inner.lock().start()?;
        Ok(self.into_state())
    }
}

impl<S: State> Blkio<S> {
    fn into_state<T: State>(self) -> Blkio<T> {
        Blkio {
            inner: self.inner,
            _state: PhantomData,
        }
    }

    /// The driver's name.
    pub fn driver(&self) -> &'static str {
        self.inner.lock().driver_name()
    }

    /// Reads property `name` as a `T`: `bool`, `i32`, `u64`, or `String`
    /// (which reads a property of any type as text, as `blkio_get_str`
    /// does).
    ///
    /// Fails with [`ErrorKind::NotFound`](super::ErrorKind::NotFound) for
    /// an unknown name and [`ErrorKind::WrongType`](super::ErrorKind::WrongType)
    /// when the property has another type than `T`.
    pub fn get<T: PropertyValue>(&self, name: &str) -> Result<T> {
        let value = self.inner.lock().get(name, T::TYPE)?;
        Ok(T::from_value(value))
    }

    /// Sets property `name`. A `bool`, `i32` or `u64` must match the
    /// property's type; a `&str` or `String` is parsed as the property's
    /// type (as `blkio_set_str` does).
    ///
    /// Properties can only be set in the state their [`PropertyAccess`]
    /// names; otherwise the call fails with
    /// [`ErrorKind::WrongState`](super::ErrorKind::WrongState) or
    /// [`ErrorKind::PermissionDenied`](super::ErrorKind::PermissionDenied).
    pub fn set<T: PropertyArg>(&self, name: &str, value: T) -> Result<()> {
        Ok(self.inner.lock().set(name, value.to_set())?)
    }

    /// The driver's properties with their types and access, sorted by name
    /// (the same table the `x.properties` extension property gives).
    ///
    /// ```
    /// use blkio::{Blkio, PropertyAccess, PropertyType};
    ///
    /// let b = Blkio::new("io_uring")?;
    /// let capacity = b.properties().into_iter().find(|p| p.name == "capacity").unwrap();
    /// assert_eq!(capacity.ty, PropertyType::Uint64);
    /// assert_eq!(capacity.access, PropertyAccess::ReadOnly);
    /// # Ok::<(), blkio::Error>(())
    /// ```
    pub fn properties(&self) -> Vec<PropertyInfo> {
        self.inner
            .lock()
            .properties()
            .into_iter()
            .map(|p| PropertyInfo {
                name: p.name,
                ty: PropertyType::from_core(p.ty),
                access: PropertyAccess::from_core(p.access),
            })
            .collect()
    }
}

impl<S: AtLeastConnected> Blkio<S> {
    /// Allocates a memory region of `len` bytes (a multiple of the
    /// `mem-region-alignment` property) for request buffers. It must be
    /// mapped with [`Blkio::map_mem_region`] before I/O on drivers that
    /// need it (`needs-mem-regions`); it is unmapped and freed when the
    /// last handle to it is dropped.
    pub fn alloc_mem_region(&self, len: usize) -> Result<MemRegion> {
        let raw = self.inner.lock().alloc_mem_region(len)?;
        Ok(MemRegion::new(self.inner.clone(), raw))
    }
}

impl Blkio<Started> {
    /// Makes `region` (allocated by this or another instance) usable for
    /// I/O by this instance's device. It stays mapped until
    /// [`Blkio::unmap_mem_region`] or until the region is dropped.
    pub fn map_mem_region(&self, region: &MemRegion) -> Result<()> {
        self.inner.lock().map_mem_region(region.raw())?;
        region.mapped_into(self.inner.clone());
        Ok(())
    }

    /// Reverses [`Blkio::map_mem_region`]; a region that is not mapped is
    /// ignored. Requests in flight on the region must complete first.
    pub fn unmap_mem_region(&self, region: &MemRegion) {
        self.inner.lock().unmap_mem_region(region.raw());
        region.unmapped_from(&self.inner);
    }

    /// The handle of regular queue `index` (`0..num-queues`, or an index
    /// [`Blkio::add_queue`] returned). One handle per queue at a time:
    /// a second one fails with
    /// [`ErrorKind::WrongState`](super::ErrorKind::WrongState) until the
    /// first is dropped.
    pub fn queue(&self, index: i32) -> Result<Queue<'_>> {
        self.take_queue(false, index)
    }

    /// The handle of poll queue `index` (`0..num-poll-queues`), as
    /// [`Blkio::queue`].
    pub fn poll_queue(&self, index: i32) -> Result<Queue<'_>> {
        self.take_queue(true, index)
    }

    fn take_queue(&self, poll: bool, index: i32) -> Result<Queue<'_>> {
        let dev = self.inner.lock();
        let mut taken = self.inner.taken();
        let raw = dev.queue(poll, index).ok_or_else(|| {
            Error::new(
                libc::ENOENT,
                format!(
                    "no {}queue with index {index}",
                    if poll { "poll " } else { "" }
                ),
            )
        })?;
        if taken.contains(&(poll, index)) {
            return Err(Error::new(
                libc::EBUSY,
                format!("queue {index} already has a handle"),
            ));
        }
        taken.push((poll, index));
        Ok(Queue::new(&self.inner, raw, (poll, index)))
    }

    /// Adds a regular queue; returns its index for [`Blkio::queue`].
    pub fn add_queue(&self) -> Result<i32> {
        Ok(self.inner.lock().add_queue(false)?)
    }

    /// Adds a poll queue; returns its index for [`Blkio::poll_queue`].
    pub fn add_poll_queue(&self) -> Result<i32> {
        Ok(self.inner.lock().add_queue(true)?)
    }

    /// Removes regular queue `index`. Fails with
    /// [`ErrorKind::WrongState`](super::ErrorKind::WrongState) while it has
    /// a [`Queue`] handle.
    pub fn remove_queue(&self, index: i32) -> Result<()> {
        self.remove(false, index)
    }

    /// Removes poll queue `index`, as [`Blkio::remove_queue`].
    pub fn remove_poll_queue(&self, index: i32) -> Result<()> {
        self.remove(true, index)
    }

    fn remove(&self, poll: bool, index: i32) -> Result<()> {
        let mut dev = self.inner.lock();
        if self.inner.taken().contains(&(poll, index)) {
            return Err(Error::new(
                libc::EBUSY,
                format!("queue {index} has a handle"),
            ));
        }
        Ok(dev.remove_queue(poll, index)?)
    }
}

/// Every driver name [`Blkio::new`] accepts.
pub const DRIVERS: &[&str] = drivers::NAMES;

/// The type of a property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PropertyType {
    /// Read with `get::<bool>`.
    Bool,
    /// Read with `get::<i32>`.
    Int,
    /// Read with `get::<u64>`.
    Uint64,
    /// Read with `get::<String>`.
    Str,
}

impl PropertyType {
    fn from_core(ty: PropType) -> Self {
        match ty {
            PropType::Bool => PropertyType::Bool,
            PropType::Int => PropertyType::Int,
            PropType::Uint64 => PropertyType::Uint64,
            PropType::Str => PropertyType::Str,
        }
    }
}

/// When a property can be set (every property can be read in every state,
/// though values that come from the device need it connected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PropertyAccess {
    /// Never.
    ReadOnly,
    /// In the created state ([`Blkio<Created>`]).
    Created,
    /// In the connected state ([`Blkio<Connected>`]).
    Connected,
}

impl PropertyAccess {
    fn from_core(access: property::Access) -> Self {
        match access {
            property::Access::ReadOnly => PropertyAccess::ReadOnly,
            property::Access::Created => PropertyAccess::Created,
            property::Access::Connected => PropertyAccess::Connected,
        }
    }
}

/// One entry of [`Blkio::properties`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PropertyInfo {
    /// The property's name, e.g. `"capacity"`.
    pub name: &'static str,
    /// Its type.
    pub ty: PropertyType,
    /// When it can be set.
    pub access: PropertyAccess,
}

/// A type [`Blkio::get`] can read: `bool`, `i32`, `u64`, `String`.
pub trait PropertyValue: sealed::Sealed + Sized {
    #[doc(hidden)]
    const TYPE: Option<PropType>;
    #[doc(hidden)]
    fn from_value(value: Value) -> Self;
}

impl sealed::Sealed for bool {}
impl PropertyValue for bool {
    const TYPE: Option<PropType> = Some(PropType::Bool);
    fn from_value(value: Value) -> Self {
        value.as_bool()
    }
}

impl sealed::Sealed for i32 {}
impl PropertyValue for i32 {
    const TYPE: Option<PropType> = Some(PropType::Int);
    fn from_value(value: Value) -> Self {
        value.as_int()
    }
}

impl sealed::Sealed for u64 {}
impl PropertyValue for u64 {
    const TYPE: Option<PropType> = Some(PropType::Uint64);
    fn from_value(value: Value) -> Self {
        value.as_u64()
    }
}

impl sealed::Sealed for String {}
impl PropertyValue for String {
    const TYPE: Option<PropType> = None;
    fn from_value(value: Value) -> Self {
        value.into_string()
    }
}

/// A value [`Blkio::set`] accepts: `bool`, `i32`, `u64` (typed), `&str`
/// or `String` (parsed as the property's type).
pub trait PropertyArg: sealed::Sealed {
    #[doc(hidden)]
    fn to_set(&self) -> SetValue<'_>;
}

impl PropertyArg for bool {
    fn to_set(&self) -> SetValue<'_> {
        SetValue::Typed(Value::Bool(*self))
    }
}

impl PropertyArg for i32 {
    fn to_set(&self) -> SetValue<'_> {
        SetValue::Typed(Value::Int(*self))
    }
}

impl PropertyArg for u64 {
    fn to_set(&self) -> SetValue<'_> {
        SetValue::Typed(Value::Uint64(*self))
    }
}

impl sealed::Sealed for &str {}
impl PropertyArg for &str {
    fn to_set(&self) -> SetValue<'_> {
        SetValue::Str(self)
    }
}

impl PropertyArg for String {
    fn to_set(&self) -> SetValue<'_> {
        SetValue::Str(self)
    }
}
