//! Benchmark `checkpoints`: what checkpoints cost.
//!
//! 1. A checkpoint's duration and size against state size (100 000 and 1 000 000 keys, both
//!    backends): the steps the coordinator runs for one agent — snapshot the backend into the
//!    checkpoint folder, checksum and sync every file, write the manifest, rename.
//! 2. Recovery: verify the checkpoint's checksums, restore the backend and read a first key.
//! 3. Fraud throughput with a checkpoint every second against none, in the same run: the whole
//!    pipeline in process (Arrow IPC file source, fraud.wasm, null sink), both backends.
//!
//! Run with `cargo xtask bench --bench checkpoints` (`-- --quick`: 100 000 keys only, one
//! round).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sabot_host::checkpoint::{AgentSnapshot, CheckpointStore, STATE_FOLDER, agent_folder, verify};
use sabot_host::config::{AgentConfig, JobConfig, SinkConfig, SourceConfig};
use sabot_host::io::DeadLetters;
use sabot_host::pipeline::{self, Checkpointing, RunOptions};
use sabot_host::state::{
    self, StateBackend, StateConfig, StateKind, StateStart, TableId, WriteSet, scoped_key,
};
use sabot_host::wasm::Runtime;

/// About the size of a fraud account's state (postcard).
const VALUE_BYTES: usize = 96;

/// Pseudo-random bytes (xorshift), so neither backend's compression flatters the sizes.
fn value_of(key: usize) -> Vec<u8> {
    let mut x = key as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..VALUE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fill(backend: &dyn StateBackend, keys: usize) {
    let table = TableId::new("accounts");
    for chunk in (0..keys).collect::<Vec<_>>().chunks(10_000) {
        let ops = chunk
            .iter()
            .map(|i| {
                let key = scoped_key((*i % 3) as u32, format!("ACC{i:010}").as_bytes());
                (
                    table.clone(),
                    key,
                    Some(state::encode_entry(&value_of(*i), 0)),
                )
            })
            .collect();
        backend.write(WriteSet { ops }).unwrap();
    }
}

/// One agent's checkpoint, as the coordinator writes it: (seconds, bytes).
fn checkpoint(store: &CheckpointStore, id: u64, backend: &dyn StateBackend) -> (f64, u64) {
    let started = Instant::now();
    let pending = store.begin(id).unwrap();
    backend
        .snapshot(&pending.dir().join(agent_folder("agent")).join(STATE_FOLDER))
        .unwrap();
    let agents = BTreeMap::from([(
        "agent".to_string(),
        AgentSnapshot {
            backend: backend.name().to_string(),
            dir: agent_folder("agent"),
        },
    )]);
    let manifest = pending.complete(store, BTreeMap::new(), agents).unwrap();
    (started.elapsed().as_secs_f64(), manifest.bytes())
}

/// Verify + restore + first read: seconds.
fn recover(store: &CheckpointStore, kind: StateKind, live: &Path) -> f64 {
    let started = Instant::now();
    let (path, manifest) = store.latest().unwrap().unwrap();
    verify(&path).unwrap();
    let snapshot = &manifest.agents["agent"];
    let config = StateConfig {
        backend: kind,
        dir: Some(live.to_path_buf()),
    };
    let start = StateStart::Restore {
        backend: snapshot.backend.clone(),
        dir: snapshot.state_dir(&path),
    };
    let backend = state::open(&config, "agent", &start).unwrap();
    let key = scoped_key(0, b"ACC0000000000");
    let found = backend
        .get_many(&TableId::new("accounts"), &[&key])
        .unwrap();
    assert!(found[0].is_some());
    started.elapsed().as_secs_f64()
}

fn snapshot_costs(quick: bool) {
    let sizes: &[usize] = if quick {
        &[100_000]
    } else {
        &[100_000, 1_000_000]
    };
    println!("## checkpoint duration and size against state size ({VALUE_BYTES}-byte values)");
    println!();
    println!(
        "| backend | keys | checkpoint (ms) | size (MB) | recovery (ms) | fill (ms, baseline) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for kind in [StateKind::Memory, StateKind::Rocksdb] {
        for &keys in sizes {
            let dir = tempfile::tempdir().unwrap();
            let config = StateConfig {
                backend: kind,
                dir: Some(dir.path().join("live")),
            };
            let backend = state::open(&config, "agent", &StateStart::Empty).unwrap();
            let started = Instant::now();
            fill(backend.as_ref(), keys);
            let fill_secs = started.elapsed().as_secs_f64();
            let store = CheckpointStore::open(&dir.path().join("chk"), 3).unwrap();
            let mut times = Vec::new();
            let mut bytes = 0;
            for id in 1..=3 {
                let (secs, size) = checkpoint(&store, id, backend.as_ref());
                times.push(secs);
                bytes = size;
            }
            drop(backend);
            let recovery = recover(&store, kind, &dir.path().join("restored"));
            println!(
                "| {} | {keys} | {:.0} | {:.1} | {:.0} | {:.0} |",
                kind.name(),
                median(&mut times) * 1e3,
                bytes as f64 / 1e6,
                recovery * 1e3,
                fill_secs * 1e3
            );
        }
    }
}

/// One run of the fraud pipeline over `input`: records/s and the checkpoints it completed.
fn fraud_run(
    runtime: &Runtime,
    input: &Path,
    kind: StateKind,
    every: Option<Duration>,
) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut job = JobConfig {
        progress_secs: Some(0),
        state: StateConfig {
            backend: kind,
            dir: Some(dir.path().join("state")),
        },
        ..Default::default()
    };
    job.sources
        .push(SourceConfig::new("transactions", input.to_str().unwrap()));
    job.agents.push(AgentConfig {
        name: None,
        wasm: support::guests_dir().join("sabot_agent_fraud.wasm"),
        inputs: Default::default(),
        config: Default::default(),
        limits: Default::default(),
    });
    job.sinks.push(SinkConfig {
        stream: "alerts".into(),
        path: "null:".into(),
        format: None,
        key_column: None,
    });
    let plan = pipeline::plan(&job, runtime).unwrap();
    let store = CheckpointStore::open(&dir.path().join("chk"), 3).unwrap();
    let options = RunOptions {
        checkpoints: every.map(|interval| Checkpointing {
            store: store.clone(),
            interval,
            restore: None,
        }),
        ..RunOptions::for_job(&job, Arc::new(DeadLetters::new(None)))
    };
    let summary = pipeline::run(plan, options).unwrap();
    let taken = store.latest().unwrap().map_or(0, |(_, m)| m.id);
    (summary.records_in as f64 / summary.active_secs, taken)
}

fn fraud_with_checkpoints(runtime: &Runtime, quick: bool) {
    let count = if quick { 1_000_000 } else { 4_000_000 };
    let rounds = if quick { 1 } else { 3 };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tx.arrow");
    {
        let transactions =
            sabot_fraud_gen::generate(&sabot_fraud_gen::GeneratorConfig::new(count, 7));
        let batches = sabot_fraud_gen::to_batches(&transactions, 8192);
        let file = std::fs::File::create(&input).unwrap();
        let mut writer =
            arrow::ipc::writer::FileWriter::try_new(file, &batches[0].schema()).unwrap();
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
    }
    println!();
    println!(
        "## fraud throughput with a checkpoint every second ({count} transactions from an Arrow IPC file, fraud.wasm, null sink; median of {rounds})"
    );
    println!();
    println!(
        "| backend | no checkpoints (records/s) | checkpoint every 1 s (records/s) | ratio | checkpoints per run |"
    );
    println!("|---|---:|---:|---:|---:|");
    for kind in [StateKind::Memory, StateKind::Rocksdb] {
        let (mut plain, mut checked, mut taken) = (Vec::new(), Vec::new(), 0);
        for round in 0..rounds {
            // Alternate which variant goes first.
            for with in [round % 2 == 0, round % 2 == 1] {
                let every = with.then_some(Duration::from_secs(1));
                let (rate, n) = fraud_run(runtime, &input, kind, every);
                eprintln!(
                    "{} checkpoints={with}: {rate:.0} records/s, {n} checkpoints",
                    kind.name()
                );
                if with {
                    checked.push(rate);
                    taken = n;
                } else {
                    plain.push(rate);
                }
            }
        }
        let (plain, checked) = (median(&mut plain), median(&mut checked));
        println!(
            "| {} | {plain:.0} | {checked:.0} | {:.3} | {taken} (incl. the final one) |",
            kind.name(),
            checked / plain
        );
    }
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    snapshot_costs(quick);
    let runtime = Runtime::new(
        support::guests_dir()
            .parent()
            .map(|d| d.join("bench-component-cache")),
    )
    .unwrap();
    fraud_with_checkpoints(&runtime, quick);
}
