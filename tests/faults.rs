//! Misbehaving guests (the purpose-built `faults` agent): a trap, an endless loop, a memory
//! hog, a malformed batch, typed errors. Each gives a clear error naming the agent, input and
//! offsets within its limits; what cannot be processed is dead-lettered with the reason; the
//! instance is replaced and everything else is processed. A trap or bad data is narrowed down
//! to the record that causes it; a deadline, a malformed result or a persisting retryable error
//! dead-letters its whole batch.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{arg, guest, read_jsonl, run_with};

const RECORDS: i64 = 30;
const BATCH: &str = "10";

struct Run {
    outcome: support::Outcome,
    out_ids: Vec<i64>,
    dead: Vec<Value>,
}

/// Runs the faults agent in `mode` over 30 records in batches of 10, firing on the batch that
/// holds offset 15 (the second batch, offsets 10..=19).
fn faults(mode: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--set", "trigger_offset=15"];
    args.extend_from_slice(extra);
    run_faults(mode, &args)
}

/// Runs the faults agent in `mode` firing on every batch.
fn faults_every_batch(mode: &str) -> Run {
    run_faults(mode, &[])
}

fn run_faults(mode: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..RECORDS).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let agent = guest("faults");
    let mode_setting = format!("mode={mode}");
    let (input, output, dead) = (
        arg(dir.path(), "in.jsonl"),
        arg(dir.path(), "out.jsonl"),
        arg(dir.path(), "dead.jsonl"),
    );
    let mut args = vec![
        "deploy",
        agent.to_str().unwrap(),
        "--set",
        &mode_setting,
        "--max-rows",
        BATCH,
    ];
    args.extend(["-i", &input, "-o", &output, "--dead-letter", &dead]);
    args.extend_from_slice(extra);
    let outcome = run_with(support::host(&args), b"", Duration::from_secs(120));
    let out_ids = read_jsonl(&dir.path().join("out.jsonl"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    Run {
        outcome,
        out_ids,
        dead: read_jsonl(&dir.path().join("dead.jsonl")),
    }
}

/// Exactly the records `dead` are dead letters, with a reason containing `reason`; every other
/// record was processed, in order; the host exited cleanly.
fn assert_dead_lettered(run: &Run, dead: std::ops::Range<i64>, reason: &str) {
    run.outcome.assert_success();
    let expected: Vec<i64> = (0..RECORDS).filter(|id| !dead.contains(id)).collect();
    assert_eq!(run.out_ids, expected, "stderr:\n{}", run.outcome.stderr);
    let dead_ids: Vec<i64> = run
        .dead
        .iter()
        .map(|d| d["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(dead_ids, dead.collect::<Vec<_>>());
    for letter in &run.dead {
        let got = letter["reason"].as_str().unwrap();
        assert!(got.contains(reason), "reason {got:?} lacks {reason:?}");
        assert_eq!(letter["stage"], "agent:faults");
    }
}

/// The host's error line names the agent, the input and the offsets.
fn assert_error_names_the_place(run: &Run) {
    let stderr = &run.outcome.stderr;
    assert!(
        stderr.contains("agent `faults` on input `records` partition 0 offsets 10..=19"),
        "error does not name the place:\n{stderr}"
    );
}

#[test]
fn a_trap_is_dead_lettered_and_the_instance_replaced() {
    let run = faults("trap", &[]);
    assert_dead_lettered(&run, 15..16, "guest trapped");
    assert_error_names_the_place(&run);
    assert!(
        run.dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("trapping on purpose at offset 15"),
        "panic message kept: {:?}",
        run.dead[0]
    );
    // Offsets 10..=19 trap, then 15..=19, 15..=16 and 15 alone.
    assert!(
        run.outcome.stderr.contains("4 restarts"),
        "{}",
        run.outcome.stderr
    );
}

#[test]
fn an_endless_loop_hits_the_cpu_deadline() {
    let run = faults("spin", &["--timeout-ms", "300"]);
    assert_dead_lettered(&run, 10..20, "CPU deadline of 300 ms exceeded");
    assert_error_names_the_place(&run);
}

#[test]
fn a_memory_hog_hits_the_memory_cap() {
    let run = faults("hog", &["--memory-mb", "48"]);
    assert_dead_lettered(&run, 15..16, "memory cap of 48 MiB reached");
    assert_error_names_the_place(&run);
}

#[test]
fn a_malformed_output_batch_is_rejected() {
    let run = faults("malformed", &[]);
    assert_dead_lettered(
        &run,
        10..20,
        "agent returned a malformed batch for output `out`",
    );
}

#[test]
fn an_output_the_agent_did_not_declare_is_rejected() {
    let run = faults("undeclared", &[]);
    assert_dead_lettered(&run, 10..20, "undeclared output `nowhere`");
}

#[test]
fn a_bad_data_error_dead_letters_the_batch() {
    let run = faults("bad-data", &[]);
    assert_dead_lettered(
        &run,
        15..16,
        "agent refused the batch: batch refused on purpose",
    );
}

#[test]
fn a_retryable_error_is_retried_then_dead_lettered() {
    let run = faults("retryable", &[]);
    assert_dead_lettered(&run, 10..20, "still failing after 3 retries");
    assert_eq!(
        run.outcome
            .stderr
            .matches("retryable error (attempt")
            .count(),
        3,
        "{}",
        run.outcome.stderr
    );
}

#[test]
fn rejected_rows_are_dead_lettered_one_by_one() {
    let run = faults_every_batch("reject-first");
    run.outcome.assert_success();
    assert_eq!(run.out_ids, (0..RECORDS).collect::<Vec<_>>());
    let offsets: Vec<i64> = run
        .dead
        .iter()
        .map(|d| d["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(
        offsets,
        [0, 10, 20],
        "row 0 of each batch, by source offset"
    );
    assert_eq!(run.dead[1]["record"]["id"], 10);
    assert_eq!(run.dead[1]["reason"], "first row refused on purpose");
}

#[test]
fn a_fatal_error_stops_the_job_with_a_clear_message() {
    let run = faults("fatal", &[]);
    assert_eq!(run.outcome.code, Some(1), "{}", run.outcome.stderr);
    assert!(
        run.outcome
            .stderr
            .contains("fatal error: giving up on purpose"),
        "{}",
        run.outcome.stderr
    );
    assert_error_names_the_place(&run);
    assert_eq!(
        run.out_ids,
        (0..10).collect::<Vec<_>>(),
        "batches before the fatal one were delivered"
    );
}

#[test]
fn an_init_failure_stops_the_job() {
    let run = faults("fail-init", &[]);
    assert_eq!(run.outcome.code, Some(1), "{}", run.outcome.stderr);
    assert!(
        run.outcome
            .stderr
            .contains("init failed: bad data: init refused on purpose"),
        "{}",
        run.outcome.stderr
    );
}

#[test]
fn every_batch_trapping_never_hangs_or_kills_the_host() {
    let run = faults_every_batch("trap");
    run.outcome.assert_success();
    assert!(run.out_ids.is_empty());
    let dead_ids: Vec<i64> = run
        .dead
        .iter()
        .map(|d| d["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        dead_ids,
        (0..RECORDS).collect::<Vec<_>>(),
        "every record is a dead letter, none lost"
    );
    // Each batch of 10 is halved down to single records: 19 trapping calls per batch.
    assert!(
        run.outcome.stderr.contains("57 restarts"),
        "{}",
        run.outcome.stderr
    );
}

#[test]
fn the_sandbox_grants_nothing_by_default_and_guest_output_reaches_the_log() {
    let run = faults("probe", &[]);
    run.outcome.assert_success();
    let stderr = &run.outcome.stderr;
    assert!(
        stderr.contains("probe: env=0 args=0 fs=denied clock=0") && stderr.contains("agent=faults"),
        "guest stdout not forwarded, or the sandbox leaks:\n{stderr}"
    );
    assert!(
        stderr.contains("probe: input=records watermark=None"),
        "{stderr}"
    );
    assert_eq!(run.out_ids, (0..RECORDS).collect::<Vec<_>>());
}

#[test]
fn the_event_time_watermark_reaches_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..RECORDS)
        .map(|i| format!("{{\"id\":{i},\"ts\":{}}}\n", 1000 + i))
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    std::fs::write(
        dir.path().join("job.toml"),
        format!(
            r#"
            [batch]
            max_rows = 10
            [[sources]]
            name = "events"
            path = "in.jsonl"
            event_time_column = "ts"
            allowed_lateness_ms = 3
            [[agents]]
            wasm = "{}"
            config = {{ mode = "probe", trigger_offset = "15" }}
            [[sinks]]
            stream = "out"
            path = "null:"
            "#,
            guest("faults").display()
        ),
    )
    .unwrap();
    let outcome = run_with(
        support::host(&["deploy", "--config", &arg(dir.path(), "job.toml")]),
        b"",
        Duration::from_secs(120),
    );
    outcome.assert_success();
    // The second batch holds ts 1010..=1019: watermark = 1019 - 3.
    assert!(
        outcome
            .stderr
            .contains("probe: input=records watermark=Some(1016)"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn compiled_components_are_cached_on_disk_by_content() {
    let cache = tempfile::tempdir().unwrap();
    let inspect = || {
        let mut cmd = support::host(&["inspect", guest("faults").to_str().unwrap()]);
        cmd.env("SABOT_CACHE_DIR", cache.path());
        let outcome = run_with(cmd, b"", Duration::from_secs(120));
        outcome.assert_success();
        outcome
    };
    assert!(
        inspect().stderr.contains("compiled component"),
        "first use compiles"
    );
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].extension().is_some_and(|e| e == "cwasm"));
    assert!(
        !inspect().stderr.contains("compiled component"),
        "second use loads from the cache"
    );

    std::fs::write(&entries[0], b"corrupted").unwrap();
    let outcome = inspect();
    assert!(
        outcome.stderr.contains("ignoring unusable cache entry")
            && outcome.stderr.contains("compiled component"),
        "{}",
        outcome.stderr
    );
    assert!(
        !inspect().stderr.contains("compiled component"),
        "the entry was rewritten"
    );
}
