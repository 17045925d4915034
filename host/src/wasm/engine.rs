//! The shared wasmtime engine: compiler settings, the pooling allocator, the epoch ticker that
//! enforces CPU deadlines, and the linker with WASI and the `sabot:agent` imports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::agent::{AgentComponent, LoadError};
use super::bindings::sabot::agent::{log, state};
use super::cache::ComponentCache;
use super::sandbox::GuestState;

/// How often the engine's epoch advances; CPU deadlines are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Largest linear memory any agent may be given.
pub const MAX_MEMORY_CAP: usize = 4 << 30;

/// Concurrent agent instances one host can hold.
const MAX_INSTANCES: u32 = 128;

/// Compiles, links and instantiates agents. One per process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: ComponentCache,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// A runtime caching compiled components in `cache_dir` (no cache when `None`).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_INSTANCES)
            .total_core_instances(MAX_INSTANCES * 8)
            .total_memories(MAX_INSTANCES * 2)
            .total_tables(MAX_INSTANCES * 8)
            .max_memories_per_component(2)
            .max_tables_per_component(8)
            .max_core_instances_per_component(16)
            .max_memory_size(MAX_MEMORY_CAP);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        log::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |guest| guest)?;
        state::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |guest| guest)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone());
        Ok(Self {
            engine,
            linker,
            cache: ComponentCache::new(cache_dir),
            ticker_stop,
        })
    }

    /// Loads, validates and compiles the agent component at `path`.
    pub fn load(&self, path: &Path) -> Result<AgentComponent, LoadError> {
        AgentComponent::load(&self.engine, &self.linker, &self.cache, path)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("sabot-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// The default cache directory: `$SABOT_CACHE_DIR`, else `$XDG_CACHE_HOME/sabot`, else
/// `~/.cache/sabot`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SABOT_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sabot").join("components"))
}
