//! Keyed state in the host, end to end: the `counter` guest keeps a running count per key in
//! a state table, and its output shows exactly which writes the host kept.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::{arg, guest, read_jsonl, run};

/// Writes `keys` as JSON Lines records `{"key": ...}`.
fn write_keys(path: &Path, keys: &[&str]) {
    let text: String = keys
        .iter()
        .map(|k| format!("{{\"key\":\"{k}\"}}\n"))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// The counts emitted per key, in output order.
fn counts_per_key(path: &Path) -> BTreeMap<String, Vec<u64>> {
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for row in read_jsonl(path) {
        counts
            .entry(row["key"].as_str().unwrap().to_string())
            .or_default()
            .push(row["count"].as_u64().unwrap());
    }
    counts
}

/// Runs the counter over `input` into `output` with extra `args`.
fn count(dir: &Path, input: &str, output: &str, args: &[&str]) -> support::Outcome {
    let counter = guest("counter");
    let (input, output, dead) = (arg(dir, input), arg(dir, output), arg(dir, "dead.jsonl"));
    let mut all = vec![
        "deploy",
        counter.to_str().unwrap(),
        "-i",
        &input,
        "-o",
        &output,
        "--dead-letter",
        &dead,
    ];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn state_outlives_a_trapped_instance_and_failed_calls_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys: Vec<&str> = (0..200).map(|i| ["a", "b", "c", "d"][i % 4]).collect();
    for poison in [37, 101, 150] {
        keys[poison] = "poison";
    }
    write_keys(&dir.path().join("in.jsonl"), &keys);
    // Batches of 16: each poison record shares its batch with records whose counts the failed
    // call had already written; the host must discard them and run the batch again in halves.
    let out = count(
        dir.path(),
        "in.jsonl",
        "out.jsonl",
        &["--set", "trap_on=poison", "--max-rows", "16"],
    );
    out.assert_success();
    assert!(
        !out.stderr.contains(" 0 restarts"),
        "the instance was never replaced:\n{}",
        out.stderr
    );

    let counts = counts_per_key(&dir.path().join("out.jsonl"));
    for key in ["a", "b", "c", "d"] {
        let n = keys.iter().filter(|k| **k == key).count() as u64;
        assert_eq!(
            counts[key],
            (1..=n).collect::<Vec<_>>(),
            "counts of `{key}` skip or repeat: a failed call's writes were kept, or state was lost with the instance"
        );
    }
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 3, "only the poison records are dead letters");
    assert!(dead.iter().all(|d| d["record"]["key"] == "poison"));
}

#[test]
fn rocksdb_state_survives_a_restart_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<&str> = (0..20).map(|i| ["x", "y"][i % 2]).collect();
    write_keys(&dir.path().join("in.jsonl"), &keys);
    let state_dir = arg(dir.path(), "state");
    let rocksdb = ["--state", "rocksdb", "--state-dir", &state_dir];

    count(dir.path(), "in.jsonl", "first.jsonl", &rocksdb).assert_success();
    count(dir.path(), "in.jsonl", "second.jsonl", &rocksdb).assert_success();
    count(dir.path(), "in.jsonl", "memory.jsonl", &[]).assert_success();

    let first = counts_per_key(&dir.path().join("first.jsonl"));
    let second = counts_per_key(&dir.path().join("second.jsonl"));
    let memory = counts_per_key(&dir.path().join("memory.jsonl"));
    for key in ["x", "y"] {
        assert_eq!(first[key], (1..=10).collect::<Vec<_>>());
        assert_eq!(
            second[key],
            (11..=20).collect::<Vec<_>>(),
            "the second run did not continue from the state the first one left"
        );
        assert_eq!(
            memory[key],
            (1..=10).collect::<Vec<_>>(),
            "memory starts empty"
        );
    }
}

#[test]
fn misusing_state_stops_the_job_without_blaming_the_data() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(&dir.path().join("in.jsonl"), &["a", "b"]);
    let out = count(
        dir.path(),
        "in.jsonl",
        "out.jsonl",
        &["--set", "table=Not A Table"],
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("bad state table name `Not A Table`: use 1 to 64 characters of [a-z0-9_-]"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.path().join("dead.jsonl").exists(),
        "records were dead-lettered for the agent's mistake"
    );
}
