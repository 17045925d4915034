//! Crash recovery on the real broker: the fraud pipeline, with checkpoints and exactly-once
//! output, is killed with SIGKILL at random moments and restarted each time. At the end every
//! alert of the reference has been committed exactly once, the per-account state equals the
//! reference, and the group's offsets stand at the end of the input.
//!
//! Which records a read_committed consumer sees is decided here from the broker's committed
//! group offsets and the checkpoints on disk, not from what the host says: tansu 0.6 returns
//! the records of transactions aborted by fencing to read_committed consumers (it sends no
//! aborted-transaction list), so the test identifies them by their `sabot.txn` header.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sabot_fraud_gen::{GeneratorConfig, Transaction, generate};
use serde::Deserialize;
use support::broker::Broker;
use support::fraud::{Alert, assert_same_alerts, keyed_by_account, reference_alerts};
use support::{guest, host, run, run_with};

const KILLS: usize = 10;
const GROUP: &str = "fraud-crash";

/// The fraud agent's per-account state, as it stores it (postcard).
#[derive(Debug, Deserialize)]
struct AccountState {
    #[allow(dead_code)]
    recent: VecDeque<i64>,
    count: u64,
    mean: f64,
    #[allow(dead_code)]
    m2: f64,
    newest_ms: i64,
    last: Option<(i64, String)>,
}

/// A small deterministic generator for kill times (seeded per run, seed printed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The committed offsets of the input topic, by partition (`topics describe --group`).
fn committed_offsets(broker: &Broker) -> BTreeMap<i32, i64> {
    let out = run(&[
        "topics",
        "describe",
        "bank-transactions",
        "--group",
        GROUP,
        "--json",
        "--broker",
        &broker.url(),
    ]);
    out.assert_success();
    let info: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    info["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["partition"].as_i64()? as i32, p["committed"].as_i64()?)))
        .collect()
}

/// Every checkpoint on disk: id → (path, input offsets by partition).
fn checkpoints(dir: &std::path::Path) -> BTreeMap<u64, (String, BTreeMap<i32, i64>)> {
    let out = run(&["checkpoints", "list", dir.to_str().unwrap(), "--json"]);
    out.assert_success();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    rows.iter()
        .filter(|r| r["ok"] == true)
        .map(|r| {
            let offsets = r["sources"]["transactions"]["kafka"]["offsets"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(p, v)| (p.parse().unwrap(), v.as_i64().unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            (
                r["id"].as_u64().unwrap(),
                (r["path"].as_str().unwrap().to_string(), offsets),
            )
        })
        .collect()
}

/// The checkpoint whose offsets the broker has committed (0: none committed yet).
fn committed_checkpoint(broker: &Broker, dir: &std::path::Path) -> u64 {
    let committed = committed_offsets(broker);
    if committed.is_empty() {
        return 0;
    }
    checkpoints(dir)
        .into_iter()
        .rev()
        .find(|(_, (_, offsets))| *offsets == committed)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("committed offsets {committed:?} match no checkpoint"))
}

/// The run id the host logs when it opens its transactional producer.
fn run_id(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("exactly-once output: transactional id"))
        .unwrap_or_else(|| panic!("no exactly-once line in:\n{log}"));
    let start = line.find(", run ").unwrap() + ", run ".len();
    line[start..].split(';').next().unwrap().to_string()
}

/// Starts the host, waits until it has partitions assigned, lets it work for a random moment
/// and kills it with SIGKILL. Returns its log.
fn run_and_kill(args: &[&str], rng: &mut Lcg) -> String {
    let mut child = host(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(": assigned ") => break,
            Ok(_) if started.elapsed() < Duration::from_secs(60) => {}
            _ => {
                let _ = child.kill();
                panic!(
                    "the host got no partitions within a minute:\n{}",
                    reader.join().unwrap()
                );
            }
        }
    }
    std::thread::sleep(Duration::from_millis(rng.below(1500)));
    child.kill().unwrap(); // SIGKILL: no draining, no final checkpoint
    child.wait().unwrap();
    reader.join().unwrap()
}

fn fraud_survives_repeated_kills(backend: &str) {
    let seed = std::env::var("SABOT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill times seeded with SABOT_TEST_SEED={seed}");
    let mut rng = Lcg(seed);

    let broker = Broker::start();
    broker.create_topic("bank-transactions", 3);
    broker.create_topic("fraud-alerts", 3);
    let transactions = generate(&GeneratorConfig::new(100_000, 23));
    let encoded = keyed_by_account(&transactions);

    let dir = tempfile::tempdir().unwrap();
    let (fraud, url) = (guest("fraud"), broker.url());
    let (checkpoint_dir, state_dir, dead) = (
        dir.path().join("checkpoints"),
        dir.path().join("state"),
        dir.path().join("dead.jsonl"),
    );
    let mut args: Vec<&str> = vec![
        "deploy",
        fraud.to_str().unwrap(),
        "--broker",
        &url,
        "-i",
        "transactions=kafka:bank-transactions",
        "-o",
        "alerts=kafka:fraud-alerts",
        "--output-key",
        "account_number",
        "--group",
        GROUP,
        "--exactly-once",
        "--state",
        backend,
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--checkpoint-dir",
        checkpoint_dir.to_str().unwrap(),
        "--checkpoint-interval-ms",
        "200",
        "--max-rows",
        "500",
        "--linger-ms",
        "20",
        "--progress-secs",
        "0",
        "--dead-letter",
        dead.to_str().unwrap(),
    ];
    std::fs::create_dir_all(&checkpoint_dir).unwrap();

    // The input arrives in waves, one before each run, so every run has records to work on
    // when it is killed. Per account, records stay in generation order.
    let waves: Vec<_> = encoded.chunks(encoded.len().div_ceil(KILLS)).collect();
    // (run id, checkpoint the broker had committed when it ended)
    let mut runs: Vec<(String, u64)> = Vec::new();
    let mut restored_by_host = Vec::new();
    for wave in &waves {
        broker.produce(
            "bank-transactions",
            wave.iter().map(|(k, v)| (Some(&k[..]), Some(&v[..]))),
        );
        let log = run_and_kill(&args, &mut rng);
        restored_by_host.push(restored(&log));
        runs.push((run_id(&log), committed_checkpoint(&broker, &checkpoint_dir)));
    }
    args.push("--stop-at-end");
    let last = run_with(host(&args), b"", Duration::from_secs(300));
    last.assert_success();
    restored_by_host.push(restored(&last.stderr));
    runs.push((run_id(&last.stderr), u64::MAX));

    // The host resumed each run from the checkpoint the broker had committed before it.
    let committed_before: Vec<u64> = std::iter::once(0)
        .chain(runs.iter().map(|(_, c)| *c))
        .take(runs.len())
        .collect();
    assert_eq!(
        restored_by_host, committed_before,
        "each run restores the committed checkpoint"
    );
    assert!(
        committed_before.windows(2).filter(|w| w[1] > w[0]).count() >= KILLS / 2,
        "most runs got a checkpoint committed before the kill: {committed_before:?}"
    );

    // What a read_committed consumer sees: records of transactions that committed, i.e. of
    // run r written for checkpoints up to the one committed when run r ended.
    let committed_through: HashMap<&str, u64> =
        runs.iter().map(|(run, c)| (run.as_str(), *c)).collect();
    let mut seen: HashMap<Alert, usize> = HashMap::new();
    let mut aborted_visible = 0;
    for record in broker.consume_all("fraud-alerts") {
        let tag = record.header("sabot.txn").expect("a transaction tag");
        let (run, epoch) = tag.split_once(':').unwrap();
        let through = committed_through
            .get(run)
            .unwrap_or_else(|| panic!("record of unknown run {run}"));
        if epoch.parse::<u64>().unwrap() > *through {
            aborted_visible += 1;
            continue;
        }
        let alert = record.json();
        let key: Alert = (
            alert["transaction_id"].as_i64().unwrap(),
            alert["fraud_type"].as_str().unwrap().into(),
            alert["severity"].as_str().unwrap().into(),
        );
        *seen.entry(key).or_default() += 1;
    }
    eprintln!(
        "{backend}: {} runs, {aborted_visible} records of aborted transactions visible on tansu",
        runs.len()
    );
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        duplicates.is_empty(),
        "committed more than once: {duplicates:?}"
    );
    assert_same_alerts(seen.into_keys().collect(), reference_alerts(&transactions));

    // The final state equals the reference, account by account.
    let newest = checkpoints(&checkpoint_dir);
    let (path, offsets) = newest.values().next_back().unwrap();
    assert_eq!(
        offsets.values().sum::<i64>(),
        transactions.len() as i64,
        "the final checkpoint stands at the end of the input"
    );
    assert_eq!(
        *offsets,
        committed_offsets(&broker),
        "and its offsets are committed"
    );
    assert_state_equals_reference(path, &transactions);
}

/// The checkpoint id a run's log says it restored (0: none).
fn restored(log: &str) -> u64 {
    log.lines()
        .find_map(|l| {
            let rest = &l[l.find("restoring checkpoint ")? + "restoring checkpoint ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

fn assert_state_equals_reference(checkpoint: &str, transactions: &[Transaction]) {
    let out = run(&[
        "checkpoints",
        "state",
        checkpoint,
        "--agent",
        "fraud-detector",
        "--table",
        "accounts",
    ]);
    out.assert_success();
    let mut state: BTreeMap<String, AccountState> = BTreeMap::new();
    for line in out.stdout.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let hex = row["value_hex"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let account = row["key"].as_str().unwrap().to_string();
        state.insert(account, postcard::from_bytes(&bytes).unwrap());
    }
    let mut expected: BTreeMap<&str, Vec<&Transaction>> = BTreeMap::new();
    for tx in transactions {
        expected.entry(&tx.account_number).or_default().push(tx);
    }
    assert_eq!(state.len(), expected.len(), "one state entry per account");
    for (account, txs) in expected {
        let got = &state[account];
        let last = txs.last().unwrap();
        let mean = txs.iter().map(|t| t.transaction_amount).sum::<f64>() / txs.len() as f64;
        assert_eq!(
            got.count,
            txs.len() as u64,
            "{account}: each transaction counted once"
        );
        assert_eq!(
            got.last,
            Some((last.timestamp_ms, last.branch_city.to_string())),
            "{account}"
        );
        assert_eq!(
            got.newest_ms,
            txs.iter().map(|t| t.timestamp_ms).max().unwrap(),
            "{account}"
        );
        assert!(
            (got.mean - mean).abs() <= 1e-6 * mean.abs().max(1.0),
            "{account}: mean {} vs {mean}",
            got.mean
        );
    }
}

#[test]
fn fraud_killed_ten_times_commits_every_alert_once_on_memory_state() {
    fraud_survives_repeated_kills("memory");
}

#[test]
fn fraud_killed_ten_times_commits_every_alert_once_on_rocksdb_state() {
    fraud_survives_repeated_kills("rocksdb");
}
