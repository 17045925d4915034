//! An independent plain-Rust implementation of the fraud rules, to compare the agent with.

use std::collections::HashMap;

use sabot_fraud_gen::Transaction;

use super::broker::Broker;

/// (transaction_id, fraud_type, severity)
pub type Alert = (i64, String, String);

/// The rules as the issue states them, over each account's full history, with no shortcuts:
/// velocity counts every earlier transaction in the window, the z-score is computed in two
/// passes over all earlier amounts.
pub fn reference_alerts(transactions: &[Transaction]) -> Vec<Alert> {
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

/// Asserts that two alert lists hold the same alerts (in any order), naming a few that are
/// missing or extra.
pub fn assert_same_alerts(mut got: Vec<Alert>, mut expected: Vec<Alert>) {
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
}

/// Each transaction as a Kafka record: (account number, JSON).
pub fn keyed_by_account(transactions: &[Transaction]) -> Vec<(Vec<u8>, Vec<u8>)> {
    transactions
        .iter()
        .map(|t| {
            (
                t.account_number.clone().into_bytes(),
                serde_json::to_vec(t).expect("a transaction is JSON"),
            )
        })
        .collect()
}

/// A broker of its own with the demo's topics: `bank-transactions` and `fraud-alerts`, three
/// partitions each.
pub fn demo_broker() -> Broker {
    let broker = Broker::start();
    broker.create_topic("bank-transactions", 3);
    broker.create_topic("fraud-alerts", 3);
    broker
}
