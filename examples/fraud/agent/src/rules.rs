//! The three fraud rules over per-account history.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Rule parameters; the defaults are the demo's.
#[derive(Debug, Clone)]
pub struct Rules {
    pub velocity_window_ms: i64,
    pub velocity_min_count: usize,
    pub min_history: u64,
    pub zscore_threshold: f64,
    pub zscore_critical: f64,
    pub geo_window_ms: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            velocity_window_ms: 60_000,
            velocity_min_count: 2,
            min_history: 5,
            zscore_threshold: 3.0,
            zscore_critical: 4.0,
            geo_window_ms: 600_000,
        }
    }
}

/// The fields of a transaction the rules read.
pub struct Transaction<'a> {
    pub account: &'a str,
    pub amount: f64,
    pub city: &'a str,
    pub timestamp_ms: i64,
}

/// What an account's earlier transactions leave behind (kept in the host's state table
/// `accounts`, keyed by account number).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AccountState {
    /// Timestamps within the velocity window of the newest one, oldest first.
    recent: VecDeque<i64>,
    /// Welford's running count, mean and sum of squared deviations of the amounts.
    count: u64,
    mean: f64,
    m2: f64,
    newest_ms: i64,
    last: Option<(i64, String)>,
}

/// A rule that fired.
pub struct Finding {
    pub fraud_type: &'static str,
    pub severity: &'static str,
    /// What made it fire, for humans.
    pub details: String,
}

impl Rules {
    /// Checks `tx` against the account's history, then adds it to the history.
    pub fn check_and_add(&self, state: &mut AccountState, tx: &Transaction) -> Vec<Finding> {
        let mut findings = Vec::new();
        let ts = tx.timestamp_ms;

        let window_start = ts - self.velocity_window_ms;
        let earlier_in_window = state
            .recent
            .iter()
            .filter(|&&t| t >= window_start && t <= ts)
            .count();
        if earlier_in_window >= self.velocity_min_count {
            findings.push(Finding {
                fraud_type: "VELOCITY",
                severity: "HIGH",
                details: format!(
                    "{earlier_in_window} earlier transactions in the last {} s",
                    self.velocity_window_ms / 1000
                ),
            });
        }

        if state.count >= self.min_history {
            let std = (state.m2 / state.count as f64).sqrt();
            if std > 0.0 {
                let z = (tx.amount - state.mean) / std;
                if z.abs() > self.zscore_threshold {
                    findings.push(Finding {
                        fraud_type: "AMOUNT_ANOMALY",
                        severity: if z > self.zscore_critical {
                            "CRITICAL"
                        } else {
                            "HIGH"
                        },
                        details: format!(
                            "amount {:.2} is {z:.1} std from the mean {:.2} (std {std:.2})",
                            tx.amount, state.mean
                        ),
                    });
                }
            }
        }

        if let Some((last_ms, last_city)) = &state.last {
            let gap_ms = ts - last_ms;
            if last_city != tx.city && (0..self.geo_window_ms).contains(&gap_ms) {
                findings.push(Finding {
                    fraud_type: "GEO_IMPOSSIBLE",
                    severity: "CRITICAL",
                    details: format!("{last_city} -> {} in {} s", tx.city, gap_ms / 1000),
                });
            }
        }

        self.add(state, tx);
        findings
    }

    fn add(&self, state: &mut AccountState, tx: &Transaction) {
        let ts = tx.timestamp_ms;
        if state.count == 0 || ts > state.newest_ms {
            state.newest_ms = ts;
        }
        state.recent.push_back(ts);
        let horizon = state.newest_ms - self.velocity_window_ms;
        while state.recent.front().is_some_and(|&t| t < horizon) {
            state.recent.pop_front();
        }

        state.count += 1;
        let delta = tx.amount - state.mean;
        state.mean += delta / state.count as f64;
        state.m2 += delta * (tx.amount - state.mean);

        match &mut state.last {
            Some((last_ms, last_city)) => {
                *last_ms = ts;
                if last_city != tx.city {
                    last_city.clear();
                    last_city.push_str(tx.city);
                }
            }
            None => state.last = Some((ts, tx.city.to_string())),
        }
    }
}
