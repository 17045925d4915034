//! The fraud demo end to end on the embedded default: 100 000 generated transactions through
//! `sabot-host deploy fraud.wasm`, compared alert for alert with an independent plain-Rust
//! implementation of the rules written here.

mod support;

use std::collections::HashMap;

use sabot_fraud_gen::{GeneratorConfig, Transaction, generate, write_jsonl};
use support::{arg, guest, read_jsonl, run};

/// (transaction_id, fraud_type, severity)
type Alert = (i64, String, String);

/// The rules as the issue states them, over each account's full history, with no shortcuts:
/// velocity counts every earlier transaction in the window, the z-score is computed in two
/// passes over all earlier amounts.
fn reference_alerts(transactions: &[Transaction]) -> Vec<Alert> {
    let mut history: HashMap<&str, Vec<&Transaction>> = HashMap::new();
    let mut alerts = Vec::new();
    for tx in transactions {
        let earlier = history.entry(&tx.account_number).or_default();
        let ts = tx.timestamp_ms;
        let alert = |rule: &str, severity: &str| {
            (tx.transaction_id, rule.to_string(), severity.to_string())
        };

        let in_window = earlier
            .iter()
            .filter(|e| e.timestamp_ms >= ts - 60_000 && e.timestamp_ms <= ts)
            .count();
        if in_window >= 2 {
            alerts.push(alert("VELOCITY", "HIGH"));
        }
        if earlier.len() >= 5 {
            let n = earlier.len() as f64;
            let mean = earlier.iter().map(|e| e.transaction_amount).sum::<f64>() / n;
            let var = earlier
                .iter()
                .map(|e| (e.transaction_amount - mean).powi(2))
                .sum::<f64>()
                / n;
            let std = var.sqrt();
            if std > 0.0 {
                let z = (tx.transaction_amount - mean) / std;
                if z.abs() > 3.0 {
                    alerts.push(alert(
                        "AMOUNT_ANOMALY",
                        if z > 4.0 { "CRITICAL" } else { "HIGH" },
                    ));
                }
            }
        }
        if let Some(previous) = earlier.last() {
            let gap = ts - previous.timestamp_ms;
            if previous.branch_city != tx.branch_city && (0..600_000).contains(&gap) {
                alerts.push(alert("GEO_IMPOSSIBLE", "CRITICAL"));
            }
        }
        earlier.push(tx);
    }
    alerts
}

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
    let mut got: Vec<Alert> = rows
        .iter()
        .map(|r| {
            (
                r["transaction_id"].as_i64().unwrap(),
                r["fraud_type"].as_str().unwrap().into(),
                r["severity"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut expected = reference_alerts(&transactions);
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
    got.sort();
    expected.sort();
    let missing: Vec<_> = expected
        .iter()
        .filter(|a| got.binary_search(a).is_err())
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|a| expected.binary_search(a).is_err())
        .take(5)
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "alert count differs; missing e.g. {missing:?}, extra e.g. {extra:?}"
    );
    assert_eq!(
        got, expected,
        "missing e.g. {missing:?}, extra e.g. {extra:?}"
    );

    // Alerts carry the transaction's own account and time.
    let by_id: HashMap<i64, &Transaction> =
        transactions.iter().map(|t| (t.transaction_id, t)).collect();
    for row in rows.iter().take(500) {
        let tx = by_id[&row["transaction_id"].as_i64().unwrap()];
        assert_eq!(row["account_number"], tx.account_number.as_str());
        assert_eq!(row["timestamp_ms"], tx.timestamp_ms);
    }
}
