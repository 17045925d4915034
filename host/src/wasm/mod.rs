//! Running agents: compiling components (with an on-disk cache), sandboxing them with WASI
//! that grants nothing, and calling the `sabot:agent` world under memory and CPU limits.

mod agent;
mod bindings;
mod cache;
mod engine;
mod guest_log;
mod sandbox;
mod state_import;

pub use agent::{AgentComponent, AgentInstance, CallError, Limits, LoadError};
pub use bindings::{
    AgentError, AgentInfo, BatchContext, ErrorKind, IpcBatch, OutputBatch, ProcessResult,
    StreamSpec, VERSION, WORLD,
};
pub use engine::{MAX_MEMORY_CAP, Runtime, default_cache_dir};
pub use sandbox::Grants;
