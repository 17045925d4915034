//! Host-side bindings of `wit/agent.wit`.

wasmtime::component::bindgen!({
    world: "sabot-agent",
    path: "../wit",
    // A state call can fail for reasons that are not the guest's data; it then traps.
    imports: { default: trappable },
});

pub use sabot::agent::types::{
    AgentError, AgentInfo, BatchContext, ErrorKind, IpcBatch, OutputBatch, ProcessResult,
    StreamSpec,
};

/// The contract version this host implements.
pub const VERSION: &str = "0.3.0";

/// The fully qualified world every agent implements.
pub const WORLD: &str = "sabot:agent/sabot-agent@0.3.0";
