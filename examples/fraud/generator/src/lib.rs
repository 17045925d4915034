//! Deterministic generator of realistic bank transactions (the original Sabot demo's schema)
//! with planted fraud: bursts that trip `VELOCITY`, outsized amounts that trip
//! `AMOUNT_ANOMALY`, and quick city hops that trip `GEO_IMPOSSIBLE`. The same seed and count
//! always give the same transactions, in timestamp order.

mod calendar;

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// One bank transaction, as in the original Sabot demo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transaction {
    pub transaction_id: i64,
    pub account_number: String,
    pub user_id: String,
    pub transaction_date: String,
    pub transaction_amount: f64,
    pub currency: &'static str,
    pub transaction_type: &'static str,
    pub branch_city: &'static str,
    pub payment_method: &'static str,
    pub country: &'static str,
    pub timestamp_ms: i64,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Number of transactions.
    pub count: usize,
    /// Seed of the random stream.
    pub seed: u64,
    /// Number of accounts (default: one per 40 transactions, at least 50).
    pub accounts: Option<usize>,
    /// Probability that a transaction starts a planted fraud pattern.
    pub fraud_rate: f64,
    /// Timestamp of the first transaction (ms since the Unix epoch).
    pub start_ms: i64,
}

impl GeneratorConfig {
    /// `count` transactions from `seed`, with the demo's defaults otherwise.
    pub fn new(count: usize, seed: u64) -> Self {
        Self {
            count,
            seed,
            accounts: None,
            fraud_rate: 0.01,
            start_ms: 1_735_689_600_000,
        }
    }
}

struct Country {
    name: &'static str,
    currency: &'static str,
    cities: &'static [&'static str],
    /// Typical amount scale in local currency.
    scale: f64,
}

const COUNTRIES: [Country; 2] = [
    Country {
        name: "Chile",
        currency: "CLP",
        cities: &[
            "Santiago",
            "Valparaíso",
            "Concepción",
            "Antofagasta",
            "Temuco",
        ],
        scale: 45_000.0,
    },
    Country {
        name: "Peru",
        currency: "PEN",
        cities: &["Lima", "Arequipa", "Cusco", "Trujillo", "Piura"],
        scale: 180.0,
    },
];
const TYPES: [&str; 4] = ["purchase", "withdrawal", "transfer", "deposit"];
const METHODS: [&str; 4] = ["debit_card", "credit_card", "bank_transfer", "cash"];

struct Account {
    number: String,
    user: String,
    country: &'static Country,
    home_city: &'static str,
    typical_amount: f64,
}

/// Generates `config.count` transactions, ordered by timestamp.
pub fn generate(config: &GeneratorConfig) -> Vec<Transaction> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let n_accounts = config.accounts.unwrap_or((config.count / 40).max(50));
    let accounts: Vec<Account> = (0..n_accounts)
        .map(|i| {
            let country = &COUNTRIES[rng.random_range(0..COUNTRIES.len())];
            Account {
                number: format!(
                    "{}{:08}",
                    &country.name[..2].to_uppercase(),
                    10_000_000 + i * 7919 % 90_000_000
                ),
                user: format!("user_{:06}", i),
                country,
                home_city: country.cities[rng.random_range(0..country.cities.len())],
                typical_amount: country.scale * rng.random_range(0.3..3.0),
            }
        })
        .collect();

    // (timestamp, account, city override, amount multiplier)
    let mut planned: Vec<(i64, usize, Option<&'static str>, f64)> =
        Vec::with_capacity(config.count);
    let mut clock = config.start_ms;
    while planned.len() < config.count {
        clock += rng.random_range(200..3_000);
        let account = rng.random_range(0..n_accounts);
        planned.push((clock, account, None, 1.0));
        if rng.random_bool(config.fraud_rate) {
            plant_fraud(&mut rng, &accounts[account], account, clock, &mut planned);
        }
    }
    planned.truncate(config.count);
    planned.sort_by_key(|p| p.0);

    planned
        .into_iter()
        .enumerate()
        .map(|(i, (ts, a, city, multiplier))| {
            let account = &accounts[a];
            let noise: f64 = rng.random_range(0.5..1.5);
            let amount = (account.typical_amount * noise * multiplier * 100.0).round() / 100.0;
            Transaction {
                transaction_id: i as i64 + 1,
                account_number: account.number.clone(),
                user_id: account.user.clone(),
                transaction_date: calendar::iso_datetime(ts),
                transaction_amount: amount,
                currency: account.country.currency,
                transaction_type: TYPES[rng.random_range(0..TYPES.len())],
                branch_city: city.unwrap_or(account.home_city),
                payment_method: METHODS[rng.random_range(0..METHODS.len())],
                country: account.country.name,
                timestamp_ms: ts,
            }
        })
        .collect()
}

/// Adds the follow-up transactions of one fraud pattern after `clock`.
fn plant_fraud(
    rng: &mut ChaCha8Rng,
    account: &Account,
    index: usize,
    clock: i64,
    planned: &mut Vec<(i64, usize, Option<&'static str>, f64)>,
) {
    match rng.random_range(0..3) {
        // A burst: three more transactions within 40 seconds.
        0 => {
            for _ in 0..3 {
                planned.push((clock + rng.random_range(1_000..40_000), index, None, 1.0));
            }
        }
        // An outsized amount a little later.
        1 => planned.push((
            clock + rng.random_range(60_000..3_600_000),
            index,
            None,
            rng.random_range(15.0..40.0),
        )),
        // The same account in another city a few minutes later.
        _ => {
            let cities = account.country.cities;
            let other = cities
                .iter()
                .copied()
                .find(|c| *c != account.home_city)
                .unwrap_or(cities[0]);
            planned.push((
                clock + rng.random_range(30_000..300_000),
                index,
                Some(other),
                1.0,
            ));
        }
    }
}

/// The Arrow schema of transactions: the JSON field names with Int64, Utf8 and Float64 types.
pub fn schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    let utf8 = |name| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        Field::new("transaction_id", DataType::Int64, false),
        utf8("account_number"),
        utf8("user_id"),
        utf8("transaction_date"),
        Field::new("transaction_amount", DataType::Float64, false),
        utf8("currency"),
        utf8("transaction_type"),
        utf8("branch_city"),
        utf8("payment_method"),
        utf8("country"),
        Field::new("timestamp_ms", DataType::Int64, false),
    ]))
}

/// Transactions as record batches of at most `batch_rows` rows.
pub fn to_batches(transactions: &[Transaction], batch_rows: usize) -> Vec<RecordBatch> {
    transactions
        .chunks(batch_rows.max(1))
        .map(to_batch)
        .collect()
}

fn to_batch(chunk: &[Transaction]) -> RecordBatch {
    let mut ints = [Int64Builder::new(), Int64Builder::new()];
    let mut amount = Float64Builder::new();
    let mut strings: [StringBuilder; 8] = Default::default();
    for tx in chunk {
        ints[0].append_value(tx.transaction_id);
        ints[1].append_value(tx.timestamp_ms);
        amount.append_value(tx.transaction_amount);
        let values = [
            tx.account_number.as_str(),
            &tx.user_id,
            &tx.transaction_date,
            tx.currency,
            tx.transaction_type,
            tx.branch_city,
            tx.payment_method,
            tx.country,
        ];
        for (builder, value) in strings.iter_mut().zip(values) {
            builder.append_value(value);
        }
    }
    let [id, ts] = ints.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [account, user, date, currency, kind, city, method, country] =
        strings.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let columns = vec![
        id,
        account,
        user,
        date,
        Arc::new(amount.finish()),
        currency,
        kind,
        city,
        method,
        country,
        ts,
    ];
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

/// Writes transactions as JSON Lines.
pub fn write_jsonl(
    mut out: impl std::io::Write,
    transactions: &[Transaction],
) -> std::io::Result<()> {
    for tx in transactions {
        serde_json::to_writer(&mut out, tx)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_transactions_in_time_order() {
        let a = generate(&GeneratorConfig::new(5_000, 7));
        assert_eq!(a, generate(&GeneratorConfig::new(5_000, 7)));
        assert_ne!(a, generate(&GeneratorConfig::new(5_000, 8)));
        assert_eq!(a.len(), 5_000);
        assert!(a.windows(2).all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
        assert!(
            a.iter()
                .any(|t| t.branch_city == "Valparaíso" || t.branch_city == "Lima")
        );
    }

    #[test]
    fn batches_hold_every_transaction() {
        let txs = generate(&GeneratorConfig::new(1_000, 1));
        let batches = to_batches(&txs, 300);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1_000);
        assert_eq!(batches.len(), 4);
    }
}
