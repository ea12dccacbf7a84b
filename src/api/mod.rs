//! The safe Rust API (re-exported at the crate root; see the crate docs
//! for the guide).
//!
//! It is a thin layer over the same internal instance, queue and region
//! types the C functions use, so every rule (property checks, states,
//! request checks, the completion algorithm) exists once.

mod error;
mod instance;
mod queue;
mod region;

pub use error::{Error, ErrorKind, Result};
pub use instance::{
    AtLeastConnected, Blkio, Connected, Created, PropertyAccess, PropertyArg, PropertyInfo,
    PropertyType, PropertyValue, Started, State, DRIVERS,
};
pub use queue::{Completion, Queue, ReqFlags, Zone, ZoneOp};
pub use region::MemRegion;
