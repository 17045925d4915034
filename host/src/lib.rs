//! `sabot-host`: runs user agents, shipped as sandboxed Wasm components, over streams of Arrow
//! record batches.
//!
//! - [`wasm`]: compiling, sandboxing and calling agent components;
//! - [`io`]: sources, sinks and dead letters for files and stdio;
//! - [`kafka`]: Kafka sources, sinks, dead-letter topics and topic administration;
//! - [`state`]: keyed state agents keep in the host, in memory or RocksDB;
//! - [`pipeline`]: batching, wiring agents into a graph, and running it;
//! - [`config`]: the job configuration (TOML) and its defaults;
//! - [`cli`]: the `sabot-host` command line.

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod io;
pub mod kafka;
pub mod pipeline;
pub mod state;
pub mod wasm;
