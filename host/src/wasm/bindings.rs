//! Host-side bindings of `wit/agent.wit`.

wasmtime::component::bindgen!({
    world: "sabot-agent",
    path: "../wit",
});

pub use sabot::agent::types::{
    AgentError, AgentInfo, BatchContext, ErrorKind, IpcBatch, OutputBatch, ProcessResult,
    StreamSpec,
};

/// The fully qualified world every agent implements.
pub const WORLD: &str = "sabot:agent/sabot-agent@0.1.0";
