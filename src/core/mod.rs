//! Driver-independent parts: the instance state machine, the property
//! registry, the common settings and the device descriptor of connect,
//! memory regions, queues with their backlogs, requests, property
//! introspection, and small system-call helpers.

pub mod config;
pub mod device_fd;
pub mod error;
pub mod flags;
pub mod instance;
pub mod introspection;
pub mod property;
pub mod queue;
pub mod region;
pub mod request;
pub mod sys;

pub use error::{Error, Result};
