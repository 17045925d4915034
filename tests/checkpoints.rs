//! Checkpoints end to end on file sources, with the `counter` guest: every checkpoint's state
//! matches its source positions exactly (barriers aligned over two inputs and passed down a
//! chain of two agents), a job restored from a checkpoint goes on from there, and a damaged
//! checkpoint is skipped for the one before it.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::{guest, read_jsonl, run};

/// Keys of the records of input `name`: a few hot keys and many cold ones.
fn keys(name: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let k = (i * 7 + name.len() * 13) % 97;
            if k < 60 {
                format!("hot{}", k % 6)
            } else {
                format!("{name}{k}")
            }
        })
        .collect()
}

fn write_keys(path: &Path, keys: &[String]) {
    let text: String = keys
        .iter()
        .map(|k| format!("{{\"key\":\"{k}\"}}\n"))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Two inputs into `first` (a counter reading both), whose counts feed `second` (a counter
/// of `first`'s output keys); checkpoints every 10 ms, all kept.
fn write_job(dir: &Path, backend: &str, output: &str) -> PathBuf {
    let counter = guest("counter");
    let job = format!(
        r#"
dead_letter = "dead.jsonl"
progress_secs = 0
[batch]
max_rows = 64
linger_ms = 5
[state]
backend = "{backend}"
dir = "state"
[checkpoint]
dir = "checkpoints"
interval_ms = 10
keep = 100000
[[sources]]
name = "a"
path = "a.jsonl"
schema = {{ key = "utf8" }}
[[sources]]
name = "b"
path = "b.jsonl"
schema = {{ key = "utf8" }}
[[agents]]
name = "first"
wasm = "{counter}"
inputs = {{ records = "a", more = "b" }}
[[agents]]
name = "second"
wasm = "{counter}"
inputs = {{ records = "first.counts" }}
[[sinks]]
stream = "second.counts"
path = "{output}"
"#,
        counter = counter.display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job).unwrap();
    path
}

/// One checkpoint as `checkpoints list --json` shows it.
struct Listed {
    id: u64,
    path: String,
    ok: bool,
    /// Next offset of each file source.
    positions: BTreeMap<String, usize>,
}

fn list_checkpoints(dir: &Path) -> Vec<Listed> {
    let out = run(&["checkpoints", "list", dir.to_str().unwrap(), "--json"]);
    out.assert_success();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    rows.iter()
        .map(|r| Listed {
            id: r["id"].as_u64().unwrap(),
            path: r["path"].as_str().unwrap().to_string(),
            ok: r["ok"].as_bool().unwrap(),
            positions: r["sources"]
                .as_object()
                .map(|sources| {
                    sources
                        .iter()
                        .map(|(name, p)| {
                            (
                                name.clone(),
                                p["file"]["next_offset"].as_u64().unwrap() as usize,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The counts agent `agent` holds in a checkpoint, by key.
fn state_counts(checkpoint: &str, agent: &str) -> BTreeMap<String, u64> {
    let out = run(&["checkpoints", "state", checkpoint, "--agent", agent]);
    out.assert_success();
    out.stdout
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(row["table"], "counts");
            let hex = row["value_hex"].as_str().unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let count: u64 = postcard::from_bytes(&bytes).unwrap();
            (row["key"].as_str().unwrap().to_string(), count)
        })
        .collect()
}

/// How often each key occurs in the first `n` records of `keys`.
fn count_prefix(counts: &mut BTreeMap<String, u64>, keys: &[String], n: usize) {
    for key in &keys[..n] {
        *counts.entry(key.clone()).or_default() += 1;
    }
}

fn checkpoint_state_matches_positions(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (keys("a", 30_000), keys("b", 20_000));
    write_keys(&dir.path().join("a.jsonl"), &a);
    write_keys(&dir.path().join("b.jsonl"), &b);
    let job = write_job(dir.path(), backend, "null:");
    run(&["deploy", "--config", job.to_str().unwrap()]).assert_success();

    let checkpoints = list_checkpoints(&dir.path().join("checkpoints"));
    assert!(checkpoints.iter().all(|c| c.ok));
    let mid_run: Vec<&Listed> = checkpoints
        .iter()
        .filter(|c| c.positions["a"] < a.len() || c.positions["b"] < b.len())
        .collect();
    assert!(
        mid_run.len() >= 3,
        "expected checkpoints taken while reading, got {} of {}",
        mid_run.len(),
        checkpoints.len()
    );
    let last = &checkpoints[0];
    assert_eq!(
        (last.positions["a"], last.positions["b"]),
        (a.len(), b.len()),
        "the final checkpoint stands at the end of both inputs"
    );
    for checkpoint in &checkpoints {
        let (pa, pb) = (checkpoint.positions["a"], checkpoint.positions["b"]);
        let mut expected = BTreeMap::new();
        count_prefix(&mut expected, &a, pa);
        count_prefix(&mut expected, &b, pb);
        let first = state_counts(&checkpoint.path, "first");
        assert_eq!(
            first, expected,
            "checkpoint {}: `first` holds exactly the records before a@{pa} and b@{pb}",
            checkpoint.id
        );
        // The agent's own snapshot: the records it had seen, in its memory.
        let seen = std::fs::read(Path::new(&checkpoint.path).join("agents/first/guest.bin"))
            .expect("the counter writes its own snapshot");
        assert_eq!(
            u64::from_le_bytes(seen.try_into().unwrap()),
            (pa + pb) as u64,
            "checkpoint {}: the guest's snapshot",
            checkpoint.id
        );
        // `second` counts what `first` emitted before the barrier: the same counts.
        assert_eq!(
            state_counts(&checkpoint.path, "second"),
            first,
            "checkpoint {}: the barrier reached `second` behind all of `first`'s output",
            checkpoint.id
        );
    }

    // Restoring a mid-run checkpoint: the job goes on from its positions and its counts.
    let chosen = mid_run[mid_run.len() / 2];
    let (pa, pb) = (chosen.positions["a"], chosen.positions["b"]);
    let restored_counts = state_counts(&chosen.path, "first");
    let job = write_job(dir.path(), backend, "resumed.jsonl");
    let out = run(&[
        "deploy",
        "--config",
        job.to_str().unwrap(),
        "--from-checkpoint",
        &chosen.path,
    ]);
    out.assert_success();
    assert!(
        out.stderr
            .contains(&format!("restoring checkpoint {}", chosen.id)),
        "{}",
        out.stderr
    );
    let resumed = read_jsonl(&dir.path().join("resumed.jsonl"));
    assert_eq!(
        resumed.len(),
        a.len() - pa + b.len() - pb,
        "only the records after the checkpoint are read again"
    );
    // `second` counts `first`'s output keys; its first count per key after the restore is the
    // restored count + 1.
    let mut first_seen: BTreeMap<String, u64> = BTreeMap::new();
    for row in &resumed {
        first_seen
            .entry(row["key"].as_str().unwrap().to_string())
            .or_insert(row["count"].as_u64().unwrap());
    }
    for (key, count) in &first_seen {
        assert_eq!(
            *count,
            restored_counts.get(key).copied().unwrap_or(0) + 1,
            "key {key} goes on from its restored count"
        );
    }
    // `second` restored its own memory too: it had seen every record `first` emitted.
    assert_eq!(
        resumed[0]["seen"].as_u64().unwrap(),
        (pa + pb) as u64 + 1,
        "the guest's own count goes on from its snapshot"
    );
    let mut all = BTreeMap::new();
    count_prefix(&mut all, &a, a.len());
    count_prefix(&mut all, &b, b.len());
    let newest = &list_checkpoints(&dir.path().join("checkpoints"))[0];
    assert!(
        newest.id > checkpoints[0].id,
        "ids go on after the restored one"
    );
    assert_eq!(state_counts(&newest.path, "first"), all);
}

#[test]
fn memory_checkpoints_hold_state_consistent_with_positions_and_restore() {
    checkpoint_state_matches_positions("memory");
}

#[test]
fn rocksdb_checkpoints_hold_state_consistent_with_positions_and_restore() {
    checkpoint_state_matches_positions("rocksdb");
}

#[test]
fn a_damaged_checkpoint_is_skipped_for_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (keys("a", 20_000), keys("b", 20_000));
    write_keys(&dir.path().join("a.jsonl"), &a);
    write_keys(&dir.path().join("b.jsonl"), &b);
    let job = write_job(dir.path(), "memory", "null:");
    run(&["deploy", "--config", job.to_str().unwrap()]).assert_success();
    let before = list_checkpoints(&dir.path().join("checkpoints"));
    assert!(before.len() >= 3, "{} checkpoints", before.len());

    // The newest loses its manifest, the one before it gets a truncated state file.
    std::fs::remove_file(Path::new(&before[0].path).join("manifest.json")).unwrap();
    let state_file = Path::new(&before[1].path).join("agents/first/state/state.bin");
    let len = std::fs::metadata(&state_file).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&state_file)
        .unwrap();
    file.set_len(len / 2).unwrap();

    let listed = list_checkpoints(&dir.path().join("checkpoints"));
    assert!(!listed[0].ok && !listed[1].ok && listed[2..].iter().all(|c| c.ok));
    let inspect = run(&["checkpoints", "inspect", &before[1].path]);
    assert_eq!(inspect.code, Some(2));
    assert!(
        inspect.stderr.contains("manifest says"),
        "{}",
        inspect.stderr
    );

    let job = write_job(dir.path(), "memory", "again.jsonl");
    let out = run(&["deploy", "--config", job.to_str().unwrap()]);
    out.assert_success();
    for damaged in &before[..2] {
        assert!(
            out.stderr
                .contains(&format!("skipping checkpoint {}", damaged.id)),
            "{}",
            out.stderr
        );
    }
    let fallback = &before[2];
    assert!(
        out.stderr
            .contains(&format!("restoring checkpoint {}", fallback.id)),
        "{}",
        out.stderr
    );
    assert_eq!(
        read_jsonl(&dir.path().join("again.jsonl")).len(),
        a.len() - fallback.positions["a"] + b.len() - fallback.positions["b"],
        "the job goes on from the previous sound checkpoint"
    );
}
