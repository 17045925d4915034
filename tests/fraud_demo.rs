//! The fraud demo end to end on the embedded default: 100 000 generated transactions through
//! `sabot-host deploy fraud.wasm`, compared alert for alert with an independent plain-Rust
//! implementation of the rules (`support/fraud.rs`), with the per-account state in each of the
//! host's state backends.

mod support;

use std::collections::HashMap;

use sabot_fraud_gen::{GeneratorConfig, Transaction, generate, write_jsonl};
use support::fraud::{Alert, assert_same_alerts, reference_alerts};
use support::{arg, guest, read_jsonl, run};

#[test]
fn fraud_alerts_equal_the_reference_on_100k_transactions() {
    fraud_alerts_equal_the_reference(&[]);
}

#[test]
fn fraud_alerts_equal_the_reference_with_state_in_rocksdb() {
    fraud_alerts_equal_the_reference(&["--state", "rocksdb"]);
}

/// Runs the demo with `state_args` (the state dir, when used, goes into the temp dir).
fn fraud_alerts_equal_the_reference(state_args: &[&str]) {
    let transactions = generate(&GeneratorConfig::new(100_000, 2024));
    let dir = tempfile::tempdir().unwrap();
    write_jsonl(
        std::io::BufWriter::new(std::fs::File::create(dir.path().join("tx.jsonl")).unwrap()),
        &transactions,
    )
    .unwrap();

    let fraud = guest("fraud");
    let (input, output) = (
        format!("transactions={}", arg(dir.path(), "tx.jsonl")),
        format!("alerts={}", arg(dir.path(), "alerts.jsonl")),
    );
    let (dead, state_dir) = (arg(dir.path(), "dead.jsonl"), arg(dir.path(), "state"));
    let mut args = vec![
        "deploy",
        fraud.to_str().unwrap(),
        "-i",
        &input,
        "-o",
        &output,
        "--dead-letter",
        &dead,
        "--state-dir",
        &state_dir,
    ];
    args.extend_from_slice(state_args);
    let out = run(&args);
    out.assert_success();
    let backend = state_args.last().copied().unwrap_or("memory");
    assert!(
        out.stderr
            .contains(&format!("state backend: {}", backend_label(backend))),
        "the run does not say it used the {backend} backend:\n{}",
        out.stderr
    );
    assert!(
        !dir.path().join("dead.jsonl").exists(),
        "no dead letters expected"
    );

    let rows = read_jsonl(&dir.path().join("alerts.jsonl"));
    for row in &rows {
        for field in ["account_number", "details"] {
            assert!(
                row[field].as_str().is_some_and(|s| !s.is_empty()),
                "alert lacks {field}: {row}"
            );
        }
        assert!(
            row["timestamp_ms"].as_i64().is_some(),
            "alert lacks timestamp_ms: {row}"
        );
    }
    let got: Vec<Alert> = rows
        .iter()
        .map(|r| {
            (
                r["transaction_id"].as_i64().unwrap(),
                r["fraud_type"].as_str().unwrap().into(),
                r["severity"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = reference_alerts(&transactions);
    // Every rule fires, in both severities where it has two: the comparison is not vacuous.
    for (rule, severity) in [
        ("VELOCITY", "HIGH"),
        ("AMOUNT_ANOMALY", "HIGH"),
        ("AMOUNT_ANOMALY", "CRITICAL"),
        ("GEO_IMPOSSIBLE", "CRITICAL"),
    ] {
        let n = expected
            .iter()
            .filter(|a| a.1 == rule && a.2 == severity)
            .count();
        assert!(n >= 20, "only {n} reference alerts of {rule}/{severity}");
    }
    assert_same_alerts(got, expected);

    // Alerts carry the transaction's own account and time.
    let by_id: HashMap<i64, &Transaction> =
        transactions.iter().map(|t| (t.transaction_id, t)).collect();
    for row in rows.iter().take(500) {
        let tx = by_id[&row["transaction_id"].as_i64().unwrap()];
        assert_eq!(row["account_number"], tx.account_number.as_str());
        assert_eq!(row["timestamp_ms"], tx.timestamp_ms);
    }
}

/// How the host's start-up log names a backend.
fn backend_label(backend: &str) -> &'static str {
    match backend {
        "rocksdb" => "RocksDB",
        _ => "memory",
    }
}
