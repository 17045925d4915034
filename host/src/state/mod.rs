//! Keyed state that agents keep in the host (the WIT `state` interface).
//!
//! A [`StateBackend`] stores tables of bytes keyed by bytes. Every key is prefixed with the
//! partition (key group) it belongs to, so partitions never see each other's entries and a
//! partition's state can be moved or restored on its own. Values carry their expiry time, so
//! TTL works the same on every backend.
//!
//! Agents never talk to a backend directly: a [`Session`] collects one call's writes and
//! applies them in one atomic [`WriteSet`] when the call succeeds.

mod backend;
mod entry;
mod memory;
mod rocks;
mod session;

pub use backend::{
    EntryVisitor, StateBackend, StateConfig, StateKind, StateStart, TableId, WriteSet, open,
    read_snapshot,
};
pub use entry::{encode as encode_entry, now_ms, scoped_key, split_entry, split_scoped_key};
pub use memory::MemoryBackend;
pub use rocks::RocksBackend;
pub use session::{Session, StateError};
