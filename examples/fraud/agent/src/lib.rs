//! The fraud-detection agent of the Sabot demo. For each transaction, in arrival order per
//! account, it checks three rules against the account's earlier transactions and then adds the
//! transaction to them:
//!
//! - `VELOCITY` (HIGH): at least `velocity_min_count` earlier transactions with `timestamp_ms`
//!   in `[ts - velocity_window_ms, ts]`;
//! - `AMOUNT_ANOMALY`: at least `min_history` earlier transactions and `|z| > zscore_threshold`
//!   with `std > 0`, where z uses the mean and population std of the earlier amounts
//!   (CRITICAL when `z > zscore_critical`, else HIGH);
//! - `GEO_IMPOSSIBLE` (CRITICAL): the previous transaction was in another `branch_city` and
//!   less than `geo_window_ms` earlier.
//!
//! Per-account state lives in the host's state table `accounts` (keyed by account number, so
//! it follows the account's partition): it survives a trapped instance, and a batch that fails
//! leaves it untouched. Each batch costs two state calls: one read of the batch's accounts,
//! one write of their new state. The velocity rule keeps only the timestamps within the window
//! of the account's newest one, so it is exact when an account's transactions arrive in time
//! order, as the generator and a keyed Kafka partition deliver them.

mod alerts;
mod rules;

use rustc_hash::FxHashMap;
use sabot_guest::prelude::*;

use alerts::AlertBuilder;
use rules::{AccountState, Rules};

struct FraudDetector {
    rules: Rules,
    accounts: Table<AccountState>,
}

impl Agent for FraudDetector {
    fn describe() -> AgentInfo {
        AgentInfo::new(
            "fraud-detector",
            "Flags velocity, amount and geography anomalies per account.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .input("transactions", "Bank transactions (the Sabot demo schema)")
        .output("alerts", "One record per (transaction, rule) that fired")
        .config(
            "velocity_window_ms",
            "VELOCITY look-back window",
            Some("60000"),
        )
        .config(
            "velocity_min_count",
            "Earlier transactions in the window that fire VELOCITY",
            Some("2"),
        )
        .config(
            "min_history",
            "Earlier transactions needed before AMOUNT_ANOMALY",
            Some("5"),
        )
        .config(
            "zscore_threshold",
            "|z| above which AMOUNT_ANOMALY fires",
            Some("3"),
        )
        .config(
            "zscore_critical",
            "z above which AMOUNT_ANOMALY is CRITICAL",
            Some("4"),
        )
        .config("geo_window_ms", "GEO_IMPOSSIBLE window", Some("600000"))
    }

    fn init(config: &Config) -> Result<Self> {
        let defaults = Rules::default();
        let rules = Rules {
            velocity_window_ms: config
                .parse_or("velocity_window_ms", defaults.velocity_window_ms)?,
            velocity_min_count: config
                .parse_or("velocity_min_count", defaults.velocity_min_count)?,
            min_history: config.parse_or("min_history", defaults.min_history)?,
            zscore_threshold: config.parse_or("zscore_threshold", defaults.zscore_threshold)?,
            zscore_critical: config.parse_or("zscore_critical", defaults.zscore_critical)?,
            geo_window_ms: config.parse_or("geo_window_ms", defaults.geo_window_ms)?,
        };
        Ok(Self {
            rules,
            accounts: Table::new("accounts"),
        })
    }

    fn process(&mut self, _ctx: &Context, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        let ids = batch.i64_column("transaction_id")?;
        let accounts = batch.str_column("account_number")?;
        let amounts = batch.f64_column("transaction_amount")?;
        let cities = batch.str_column("branch_city")?;
        let timestamps = batch.i64_column("timestamp_ms")?;

        // The state of every account in the batch, read in one call.
        let mut index: FxHashMap<&str, usize> = FxHashMap::default();
        let mut names: Vec<&str> = Vec::new();
        for row in 0..batch.num_rows() {
            if !accounts.is_null(row) {
                let account = accounts.value(row);
                index.entry(account).or_insert_with(|| {
                    names.push(account);
                    names.len() - 1
                });
            }
        }
        let mut states: Vec<AccountState> = self
            .accounts
            .get_many(&names)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let mut touched = vec![false; names.len()];

        let mut alerts = AlertBuilder::default();
        for row in 0..batch.num_rows() {
            let nulls = [
                ids.is_null(row),
                accounts.is_null(row),
                amounts.is_null(row),
            ];
            if nulls.into_iter().any(|n| n) || cities.is_null(row) || timestamps.is_null(row) {
                out.reject(row, "transaction_id, account_number, transaction_amount, branch_city and timestamp_ms are required");
                continue;
            }
            let tx = rules::Transaction {
                account: accounts.value(row),
                amount: amounts.value(row),
                city: cities.value(row),
                timestamp_ms: timestamps.value(row),
            };
            let slot = index[tx.account];
            touched[slot] = true;
            let state = &mut states[slot];
            for finding in self.rules.check_and_add(state, &tx) {
                alerts.push(ids.value(row), &tx, &finding);
            }
        }
        let changed = names
            .iter()
            .zip(&states)
            .zip(&touched)
            .filter_map(|(entry, touched)| touched.then_some(entry));
        self.accounts.put_many(changed)?;
        out.emit("alerts", alerts.finish()?)
    }
}

export_agent!(FraudDetector);
