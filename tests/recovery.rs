//! Crash recovery on the real broker: the fraud pipeline, with checkpoints and exactly-once
//! output, is killed with SIGKILL at random moments and restarted each time. At the end every
//! alert of the reference has been committed exactly once, the per-account state equals the
//! reference, and the group's offsets stand at the end of the input.
//!
//! Which records a read_committed consumer sees is decided here from the broker's committed
//! group offsets and the checkpoints on disk, not from what the host says: tansu 0.6 returns
//! the records of aborted transactions to read_committed consumers (it sends no
//! aborted-transaction list), so the tests identify them by their `sabot.txn` header.

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sabot_fraud_gen::{GeneratorConfig, Transaction, generate};
use sabot_host::checkpoint::CRASH_BEFORE_COMMIT;
use serde::Deserialize;
use support::broker::Broker;
use support::fraud::{Alert, assert_same_alerts, demo_broker, keyed_by_account, reference_alerts};
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

/// The fraud job with exactly-once output, and its directories.
struct Job {
    dir: tempfile::TempDir,
    fraud: String,
    url: String,
    backend: &'static str,
}

impl Job {
    fn new(broker: &Broker, backend: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        Self {
            dir,
            fraud: guest("fraud").display().to_string(),
            url: broker.url(),
            backend,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn checkpoints(&self) -> std::path::PathBuf {
        self.dir.path().join("checkpoints")
    }

    /// `deploy` arguments: checkpoints every 200 ms, small batches.
    fn args(&self) -> Vec<String> {
        [
            "deploy",
            &self.fraud,
            "--broker",
            &self.url,
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
            self.backend,
            "--state-dir",
            &self.path("state"),
            "--checkpoint-dir",
            &self.path("checkpoints"),
            "--checkpoint-interval-ms",
            "200",
            "--max-rows",
            "500",
            "--linger-ms",
            "20",
            "--progress-secs",
            "0",
            "--dead-letter",
            &self.path("dead.jsonl"),
        ]
        .map(str::to_string)
        .to_vec()
    }
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
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

/// The committed offsets of the input topic, by partition.
fn committed_offsets(broker: &Broker) -> BTreeMap<i32, i64> {
    broker
        .committed("bank-transactions", GROUP)
        .into_iter()
        .enumerate()
        .filter_map(|(p, o)| Some((p as i32, o?)))
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

/// A running host whose log lines arrive on a channel as they are written.
struct Running {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    log: std::thread::JoinHandle<String>,
}

impl Running {
    fn start(mut cmd: std::process::Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        Self { child, lines, log }
    }

    /// Waits (a minute at most) for a log line that `wanted` accepts.
    fn wait_for(mut self, what: &str, wanted: impl Fn(&str) -> bool) -> Self {
        let started = Instant::now();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if wanted(&line) => return self,
                Ok(_) if started.elapsed() < Duration::from_secs(60) => {}
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("no {what} within a minute:\n{}", self.log.join().unwrap());
                }
            }
        }
    }

    /// Waits for the process to end by itself; its log.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        (status.code(), self.log.join().unwrap())
    }

    /// Sends `SIG<name>`.
    fn signal(&self, name: &str) {
        support::broker::signal(self.child.id(), name);
    }

    /// SIGKILL: no draining, no final checkpoint. Its log.
    fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.finish().1
    }
}

/// Starts the host, waits until it has partitions assigned, lets it work for a random moment
/// and kills it with SIGKILL. Returns its log.
fn run_and_kill(args: &[&str], rng: &mut Lcg) -> String {
    let running =
        Running::start(host(args)).wait_for("partition assignment", |l| l.contains(": assigned "));
    std::thread::sleep(Duration::from_millis(rng.below(1500)));
    running.kill()
}

fn fraud_survives_repeated_kills(backend: &'static str) {
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

    let broker = demo_broker();
    let transactions = generate(&GeneratorConfig::new(100_000, 23));
    let encoded = keyed_by_account(&transactions);
    let job = Job::new(&broker, backend);
    let (mut args, checkpoint_dir) = (job.args(), job.checkpoints());

    // The input arrives in waves, one before each run, so every run has records to work on
    // when it is killed. Per account, records stay in generation order.
    let waves: Vec<_> = encoded.chunks(encoded.len().div_ceil(KILLS)).collect();
    // (run id, checkpoint the broker had committed when it ended)
    let mut runs: Vec<(String, u64)> = Vec::new();
    let mut restored_by_host = Vec::new();
    for wave in &waves {
        broker.produce_keyed("bank-transactions", wave);
        let log = run_and_kill(&as_strs(&args), &mut rng);
        restored_by_host.push(restored(&log));
        runs.push((run_id(&log), committed_checkpoint(&broker, &checkpoint_dir)));
    }
    args.push("--stop-at-end".into());
    let last = run_with(host(&as_strs(&args)), b"", Duration::from_secs(300));
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

    assert_committed_exactly_once(&broker, &runs, &transactions, &checkpoint_dir, backend);
}

/// What a read_committed consumer sees — the records of transactions that committed, i.e. of
/// run r written for checkpoints up to the one committed when run r ended — equals the
/// reference alert for alert, each once; the final checkpoint stands at the end of the input,
/// its offsets are committed and its state equals the reference.
fn assert_committed_exactly_once(
    broker: &Broker,
    runs: &[(String, u64)],
    transactions: &[Transaction],
    checkpoint_dir: &std::path::Path,
    label: &str,
) {
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
        "{label}: {} runs, {aborted_visible} records of aborted transactions visible on tansu",
        runs.len()
    );
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        duplicates.is_empty(),
        "committed more than once: {duplicates:?}"
    );
    assert_same_alerts(seen.into_keys().collect(), reference_alerts(transactions));

    // The final state equals the reference, account by account.
    let newest = checkpoints(checkpoint_dir);
    let (path, offsets) = newest.values().next_back().unwrap();
    assert_eq!(
        offsets.values().sum::<i64>(),
        transactions.len() as i64,
        "the final checkpoint stands at the end of the input"
    );
    assert_eq!(
        *offsets,
        committed_offsets(broker),
        "and its offsets are committed"
    );
    assert_state_equals_reference(path, transactions);
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
fn a_crash_between_a_checkpoint_and_its_commit_resumes_from_the_committed_one() {
    let broker = demo_broker();
    let transactions = generate(&GeneratorConfig::new(20_000, 5));
    let encoded = keyed_by_account(&transactions);
    let (wave1, wave2) = encoded.split_at(10_000);
    let produce = |wave: &[(Vec<u8>, Vec<u8>)]| broker.produce_keyed("bank-transactions", wave);
    let job = Job::new(&broker, "rocksdb");
    let mut args = job.args();

    // The first run commits checkpoints of the first 10 000 records, then, once the next
    // 10 000 arrive, dies right after the manifest of the first checkpoint holding more than
    // 15 000 is on disk, before that checkpoint's transaction commits.
    produce(wave1);
    let mut cmd = host(&as_strs(&args));
    cmd.env(CRASH_BEFORE_COMMIT, "15000");
    let first = Running::start(cmd).wait_for("partition assignment", |l| l.contains(": assigned "));
    std::thread::sleep(Duration::from_millis(1500));
    let first = first.wait_for("a checkpoint", |l| l.contains(" complete: "));
    produce(wave2);
    let (code, first_log) = first.finish();
    assert_ne!(code, Some(0), "{first_log}");
    let crashed: u64 = first_log
        .lines()
        .find_map(|l| {
            let rest =
                &l[l.find("aborting after checkpoint ")? + "aborting after checkpoint ".len()..];
            rest.split('\'').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("the fault did not fire:\n{first_log}"));
    let committed = committed_checkpoint(&broker, &job.checkpoints());
    assert!(committed > 0, "the first records were committed");
    assert!(
        committed < crashed,
        "checkpoint {crashed} was never committed"
    );
    assert!(
        checkpoints(&job.checkpoints()).contains_key(&crashed),
        "yet it is complete on disk"
    );

    // The restart passes over the newer checkpoint for the committed one.
    args.push("--stop-at-end".into());
    let second = run_with(host(&as_strs(&args)), b"", Duration::from_secs(120));
    second.assert_success();
    assert!(
        second
            .stderr
            .contains(&format!("checkpoint {crashed} is not the committed one")),
        "{}",
        second.stderr
    );
    assert_eq!(restored(&second.stderr), committed);
    let runs = [
        (run_id(&first_log), committed),
        (run_id(&second.stderr), u64::MAX),
    ];
    assert_committed_exactly_once(&broker, &runs, &transactions, &job.checkpoints(), "crash");
}

#[test]
fn sigterm_drains_takes_a_final_checkpoint_and_commits_it() {
    let broker = demo_broker();
    let transactions = generate(&GeneratorConfig::new(20_000, 9));
    let encoded = keyed_by_account(&transactions);
    broker.produce_keyed("bank-transactions", &encoded);
    let job = Job::new(&broker, "memory");
    // A long interval: only the final checkpoint can cover the whole input.
    let mut args = job.args();
    let interval = args
        .iter()
        .position(|a| a == "--checkpoint-interval-ms")
        .unwrap();
    args[interval + 1] = "600000".into();
    let running = Running::start(host(&as_strs(&args)))
        .wait_for("partition assignment", |l| l.contains(": assigned "));
    // Every record is read once the last partition reports its end.
    std::thread::sleep(Duration::from_secs(3));
    running.signal("TERM");
    let (code, log) = running.finish();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("final checkpoint"), "{log}");
    let runs = [(run_id(&log), u64::MAX)];
    assert_committed_exactly_once(&broker, &runs, &transactions, &job.checkpoints(), "sigterm");
}

/// A job that fails aborts its open transaction at once: a `read_committed` reader moves past
/// it straight away (without the abort it would wait for the transaction's timeout, 60 s), and
/// exactly the records after the committed checkpoint belong to the aborted transaction. (tansu
/// returns an aborted transaction's records to `read_committed` readers, so which records are
/// committed is told by their `sabot.txn` tag, as in the crash tests.)
#[test]
fn a_failed_job_aborts_its_open_transaction() {
    const GROUP: &str = "abort-test";
    let broker = Broker::start();
    broker.create_topic("events", 1);
    broker.create_topic("events-out", 1);
    let produce = |ids: std::ops::Range<i64>| {
        let values: Vec<String> = ids.map(|id| format!("{{\"id\":{id}}}")).collect();
        broker.produce("events", values.iter().map(|v| (None, Some(v.as_bytes()))));
    };
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let faults = guest("faults").display().to_string();
    let url = broker.url();
    let (checkpoint_dir, dead) = (path("checkpoints"), path("dead.jsonl"));
    // The agent gives up (a fatal error) on the batch holding offset 3000.
    // Checkpoints only at the end (a long interval): no commit can race with the failure.
    let args = [
        "deploy",
        &faults,
        "--set",
        "mode=fatal",
        "--set",
        "trigger_offset=3000",
        "--broker",
        &url,
        "-i",
        "kafka:events",
        "-o",
        "kafka:events-out",
        "--group",
        GROUP,
        "--exactly-once",
        "--checkpoint-dir",
        &checkpoint_dir,
        "--checkpoint-interval-ms",
        "600000",
        "--max-rows",
        "100",
        "--linger-ms",
        "20",
        "--progress-secs",
        "0",
        "--dead-letter",
        &dead,
    ];
    // A first run commits the first 1000 records in its final checkpoint and stops.
    produce(0..1000);
    let first: Vec<&str> = args.iter().copied().chain(["--stop-at-end"]).collect();
    run(&first).assert_success();
    assert_eq!(broker.committed("events", GROUP), [Some(1000)]);

    // A second run writes the next 2000 records into its open transaction; once some have
    // reached the broker, the record that makes the agent fail arrives.
    produce(1000..3000);
    let running = Running::start(host(&args));
    let started = Instant::now();
    while !broker
        .consume_all_uncommitted("events-out")
        .iter()
        .any(|r| r.json()["id"].as_i64() >= Some(1000))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing of the second run reached the broker"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    produce(3000..4000);
    let (code, log) = running.finish();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("is aborted"), "{log}");
    assert_eq!(broker.committed("events", GROUP), [Some(1000)]);
    let committed = 1000;
    let aborted_epoch: u64 = {
        let line = log.lines().find(|l| l.contains("is aborted")).unwrap();
        let at = line.find("the transaction of checkpoint ").unwrap() + 30;
        line[at..].split(' ').next().unwrap().parse().unwrap()
    };
    broker.produce("events-out", [(None, Some(&b"{\"id\":-1}"[..]))]);

    let visible = broker.consume_all("events-out");
    let (marker, written) = visible.split_last().expect("records");
    assert_eq!(
        marker.json()["id"],
        -1,
        "read_committed sees past the aborted transaction"
    );
    let epoch = |r: &support::broker::Record| -> u64 {
        let tag = r.header("sabot.txn").expect("a transaction tag");
        tag.split_once(':').unwrap().1.parse().unwrap()
    };
    let (kept, aborted): (Vec<_>, Vec<_>) = written.iter().partition(|r| epoch(r) < aborted_epoch);
    let ids = |records: &[&support::broker::Record]| -> Vec<i64> {
        records
            .iter()
            .map(|r| r.json()["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(&kept),
        (0..committed).collect::<Vec<_>>(),
        "committed records, each once"
    );
    assert!(
        ids(&aborted)
            .iter()
            .all(|id| (committed..3000).contains(id)),
        "only records after the committed checkpoint are in the aborted transaction"
    );
    eprintln!(
        "committed through offset {committed}; {} records of the aborted transaction (checkpoint {aborted_epoch}) on the broker",
        aborted.len()
    );
    assert!(
        !aborted.is_empty(),
        "the failed run wrote records into its open transaction"
    );
}

#[test]
fn fraud_killed_ten_times_commits_every_alert_once_on_memory_state() {
    fraud_survives_repeated_kills("memory");
}

#[test]
fn fraud_killed_ten_times_commits_every_alert_once_on_rocksdb_state() {
    fraud_survives_repeated_kills("rocksdb");
}
