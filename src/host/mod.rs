//! The host adapter: files, directories, sysctls, systemd units and the inventory. The only
//! place that reads or changes host settings; the executor reaches it through
//! [`crate::apply::HostDriver`].

mod error;

pub use error::HostError;
