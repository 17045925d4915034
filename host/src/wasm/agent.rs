//! One agent component (validated and compiled) and its running instances.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

use super::bindings::{
    AgentError, AgentInfo, BatchContext, IpcBatch, ProcessResult, SabotAgent, SabotAgentPre,
    VERSION, WORLD,
};
use super::cache::ComponentCache;
use super::engine::EPOCH_TICK;
use super::sandbox::{Grants, GuestState};
use crate::state::{Session, StateBackend, StateError};

/// Per-instance resource limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear-memory cap in bytes.
    pub memory_bytes: usize,
    /// Wall-clock budget of one call into the guest.
    pub call_timeout: Duration,
    /// What the guest may see beyond the defaults.
    pub grants: Grants,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(5),
            grants: Grants::default(),
        }
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a WebAssembly file")]
    NotWasm { path: PathBuf },
    #[error(
        "{path} is a core WebAssembly module, not a component; build the agent with `cargo build --target wasm32-wasip2`"
    )]
    CoreModule { path: PathBuf },
    #[error("{path} is not a valid component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} does not implement the world {WORLD}: {reason}")]
    WrongWorld { path: PathBuf, reason: String },
    #[error(
        "{path} was built against sabot:agent@{found}; this host runs agents of sabot:agent@{VERSION}: rebuild it with the current guest SDK (or WIT)"
    )]
    WrongVersion { path: PathBuf, found: String },
}

/// A failed call into an agent.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent returned a typed error; the instance is still usable.
    #[error("{}: {}", kind_name(&.0.kind), .0.message)]
    Agent(AgentError),
    /// The instance trapped or hit its memory cap; it must be replaced.
    #[error("{0}")]
    Trap(String),
    /// The call ran past its CPU deadline; the instance must be replaced.
    #[error("{0}")]
    Deadline(String),
    /// The host failed the call for a reason that is not the data's (a state backend error,
    /// state misused); the job cannot go on.
    #[error("{0}")]
    Host(String),
}

fn kind_name(kind: &super::bindings::ErrorKind) -> &'static str {
    use super::bindings::ErrorKind::*;
    match kind {
        Retryable => "retryable error",
        BadData => "bad data",
        Fatal => "fatal error",
    }
}

/// A validated, compiled agent component, ready to instantiate cheaply.
pub struct AgentComponent {
    engine: Engine,
    pre: SabotAgentPre<GuestState>,
    component: Component,
}

impl AgentComponent {
    pub(super) fn load(
        engine: &Engine,
        linker: &Linker<GuestState>,
        cache: &ComponentCache,
        path: &Path,
    ) -> Result<Self, LoadError> {
        let path_buf = path.to_path_buf();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path_buf.clone(),
            source,
        })?;
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(LoadError::CoreModule { path: path_buf });
            }
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            _ => return Err(LoadError::NotWasm { path: path_buf }),
        }
        let component = cache
            .load(engine, &bytes)
            .map_err(|err| LoadError::Invalid {
                path: path_buf.clone(),
                reason: format!("{err:#}"),
            })?;
        let wrong_world = |err: wasmtime::Error| match contract_version(&component, engine) {
            Some(found) if found != VERSION => LoadError::WrongVersion {
                path: path_buf.clone(),
                found,
            },
            _ => LoadError::WrongWorld {
                path: path_buf.clone(),
                reason: format!("{err:#}"),
            },
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = SabotAgentPre::new(instance_pre).map_err(wrong_world)?;
        Ok(Self {
            engine: engine.clone(),
            pre,
            component,
        })
    }

    /// Names of the component's imports and exports, as `(name, is_import)`.
    pub fn interfaces(&self) -> Vec<(String, bool)> {
        let ty = self.component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(name, _)| (name.to_string(), true));
        let exports = ty
            .exports(&self.engine)
            .map(|(name, _)| (name.to_string(), false));
        imports.chain(exports).collect()
    }

    /// A fresh, uninitialised instance. `label` names it in logs and errors; its state tables
    /// live in `state` (without a backend, state calls trap).
    pub fn instantiate(
        &self,
        label: Arc<str>,
        limits: &Limits,
        state: Option<Arc<dyn StateBackend>>,
    ) -> Result<AgentInstance, CallError> {
        let session = Session::new(state);
        let state = GuestState::new(label.clone(), limits.memory_bytes, &limits.grants, session);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(limits.call_timeout));
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|err| classify(&store, limits, err))?;
        Ok(AgentInstance {
            store,
            bindings,
            limits: limits.clone(),
        })
    }

    /// Asks a temporary instance to describe the agent.
    pub fn describe(&self, limits: &Limits) -> Result<AgentInfo, CallError> {
        self.instantiate(Arc::from("describe"), limits, None)?
            .describe()
    }
}

/// A live agent instance. After a [`CallError::Trap`] it must be dropped.
pub struct AgentInstance {
    store: Store<GuestState>,
    bindings: SabotAgent,
    limits: Limits,
}

impl AgentInstance {
    /// Calls `describe`.
    pub fn describe(&mut self) -> Result<AgentInfo, CallError> {
        self.call(|b, s| b.sabot_agent_agent().call_describe(s).map(Ok))
    }

    /// Calls `init` with the agent's configuration.
    pub fn init(&mut self, config: &[(String, String)]) -> Result<(), CallError> {
        self.call(|b, s| b.sabot_agent_agent().call_init(s, config))
    }

    /// Calls `process` with one IPC-encoded batch. The call's state writes are applied when
    /// it succeeds and discarded when it fails.
    pub fn process(
        &mut self,
        ctx: &BatchContext,
        batch: &IpcBatch,
    ) -> Result<ProcessResult, CallError> {
        self.store.data_mut().state.begin(ctx.partition);
        let result = self.call(|b, s| b.sabot_agent_agent().call_process(s, ctx, batch));
        let committed = self.store.data_mut().state.finish(result.is_ok());
        match (result, committed) {
            (Ok(result), Ok(_)) => Ok(result),
            (Ok(_), Err(err)) => Err(CallError::Host(err.to_string())),
            (Err(err), _) => Err(err),
        }
    }

    /// Calls `snapshot`: the state the agent keeps in its own memory, if any.
    pub fn snapshot(&mut self) -> Result<Option<Vec<u8>>, CallError> {
        self.call(|b, s| b.sabot_agent_agent().call_snapshot(s))
    }

    /// Calls `restore` with what `snapshot` returned before.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), CallError> {
        self.call(|b, s| b.sabot_agent_agent().call_restore(s, snapshot))
    }

    fn call<T>(
        &mut self,
        f: impl FnOnce(&SabotAgent, &mut Store<GuestState>) -> wasmtime::Result<Result<T, AgentError>>,
    ) -> Result<T, CallError> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_timeout));
        self.store.data_mut().limiter.denied = None;
        self.store.data().begin_call();
        let outcome = f(&self.bindings, &mut self.store);
        self.store.data().flush_logs();
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(agent_error)) => Err(CallError::Agent(agent_error)),
            Err(err) => Err(classify(&self.store, &self.limits, err)),
        }
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

/// The `sabot:agent` version a component's exports were built against, if it has any.
fn contract_version(component: &Component, engine: &Engine) -> Option<String> {
    let ty = component.component_type();
    ty.exports(engine)
        .find_map(|(name, _)| name.strip_prefix("sabot:agent/agent@").map(str::to_string))
}

/// Turns a wasmtime error into a message that says what happened.
fn classify(store: &Store<GuestState>, limits: &Limits, err: wasmtime::Error) -> CallError {
    if let Some(state) = err.downcast_ref::<StateError>() {
        return CallError::Host(format!("state call failed: {state}"));
    }
    if let Some(denied) = store.data().limiter.denied {
        return CallError::Trap(format!(
            "memory cap of {} MiB reached (the guest asked for {} MiB)",
            limits.memory_bytes >> 20,
            denied.div_ceil(1 << 20)
        ));
    }
    if let Some(Trap::Interrupt) = err.downcast_ref::<Trap>() {
        return CallError::Deadline(format!(
            "CPU deadline of {} ms exceeded",
            limits.call_timeout.as_millis()
        ));
    }
    let mut message = match err.downcast_ref::<Trap>() {
        Some(trap) => format!("guest trapped: {trap}"),
        None => format!("guest failed: {}", err.root_cause()),
    };
    if let Some(said) = store.data().call_stderr() {
        message.push_str(&format!(" (guest stderr: {said})"));
    }
    CallError::Trap(message)
}
