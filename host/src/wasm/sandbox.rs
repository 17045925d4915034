//! The store data of one agent instance: WASI with nothing granted, the log import, the state
//! session, and the memory limiter.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::bindings::sabot::agent::log::{self, Level};
use super::guest_log::{GuestLog, Stream};
use crate::state::Session;

/// What an agent may see of the outside world. Everything is denied by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Let the guest read the real wall and monotonic clocks (default: frozen at 0).
    #[serde(default)]
    pub clock: bool,
}

/// Per-instance store data.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    agent: Arc<str>,
    /// The agent's keyed state (the `state` import).
    pub state: Session,
    pub limiter: MemoryLimiter,
    stdout: GuestLog,
    stderr: GuestLog,
}

impl GuestState {
    pub fn new(agent: Arc<str>, memory_cap: usize, grants: &Grants, state: Session) -> Self {
        let stdout = GuestLog::new(agent.clone(), Stream::Stdout);
        let stderr = GuestLog::new(agent.clone(), Stream::Stderr);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !grants.clock {
            builder.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        Self {
            wasi: builder.build(),
            table: ResourceTable::new(),
            agent,
            state,
            limiter: MemoryLimiter {
                cap: memory_cap,
                denied: None,
            },
            stdout,
            stderr,
        }
    }

    /// Marks the start of a guest call for [`GuestState::call_stderr`].
    pub fn begin_call(&self) {
        self.stderr.clear_recent();
    }

    /// What the guest wrote to stderr during the current call (a panic message, typically),
    /// without Rust's hint about backtraces.
    pub fn call_stderr(&self) -> Option<String> {
        let lines: Vec<String> = self
            .stderr
            .take_recent()
            .into_iter()
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        (!lines.is_empty()).then(|| lines.join(" "))
    }

    /// Forwards any unterminated guest output lines.
    pub fn flush_logs(&self) {
        self.stdout.flush_partial();
        self.stderr.flush_partial();
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for GuestState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let agent = &*self.agent;
        match level {
            Level::Trace => tracing::trace!(target: "guest", agent, "{message}"),
            Level::Debug => tracing::debug!(target: "guest", agent, "{message}"),
            Level::Info => tracing::info!(target: "guest", agent, "{message}"),
            Level::Warn => tracing::warn!(target: "guest", agent, "{message}"),
            Level::Error => tracing::error!(target: "guest", agent, "{message}"),
        }
        Ok(())
    }
}

/// Caps a guest's linear memory and remembers a refused growth, so a later trap can be
/// reported as the memory cap it is.
pub struct MemoryLimiter {
    cap: usize,
    /// The size (bytes) of the last refused growth request.
    pub denied: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.denied = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A clock stopped at the Unix epoch: what a guest sees without the `clock` grant.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
