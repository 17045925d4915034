//! The fraud demo end to end on the embedded default: 100 000 generated transactions through
//! `sabot-host deploy fraud.wasm`, compared alert for alert with an independent plain-Rust
//! implementation of the rules (`support/fraud.rs`).

mod support;

use std::collections::HashMap;

use sabot_fraud_gen::{GeneratorConfig, Transaction, generate, write_jsonl};
use support::fraud::{Alert, assert_same_alerts, reference_alerts};
use support::{arg, guest, read_jsonl, run};

#[test]
fn fraud_alerts_equal_the_reference_on_100k_transactions() {
    let transactions = generate(&GeneratorConfig::new(100_000, 2024));
    let dir = tempfile::tempdir().unwrap();
    write_jsonl(
        std::io::BufWriter::new(std::fs::File::create(dir.path().join("tx.jsonl")).unwrap()),
        &transactions,
    )
    .unwrap();

    let fraud = guest("fraud");
    let out = run(&[
        "deploy",
        fraud.to_str().unwrap(),
        "-i",
        &format!("transactions={}", arg(dir.path(), "tx.jsonl")),
        "-o",
        &format!("alerts={}", arg(dir.path(), "alerts.jsonl")),
        "--dead-letter",
        &arg(dir.path(), "dead.jsonl"),
    ]);
    out.assert_success();
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
