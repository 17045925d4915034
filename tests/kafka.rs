//! Kafka end to end, on a real Kafka-protocol broker (tansu) that each test starts on a free
//! loopback port: the fraud demo compared with the reference, a host killed mid-stream, bad
//! records on a topic, missing topics, and the `topics` command.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use sabot_fraud_gen::{GeneratorConfig, generate};
use support::broker::{Broker, KeyValue};
use support::fraud::{Alert, assert_same_alerts, demo_broker, keyed_by_account, reference_alerts};
use support::{arg, guest, host, run, run_with};

#[test]
fn fraud_demo_on_kafka_equals_the_reference_with_no_duplicates_and_no_lag() {
    let broker = demo_broker();
    let transactions = generate(&GeneratorConfig::new(100_000, 7));
    let encoded = keyed_by_account(&transactions);
    broker.produce_keyed("bank-transactions", &encoded);

    let dir = tempfile::tempdir().unwrap();
    let fraud = guest("fraud");
    run(&[
        "deploy",
        fraud.to_str().unwrap(),
        "--broker",
        &broker.url(),
        "-i",
        "transactions=kafka:bank-transactions",
        "-o",
        "alerts=kafka:fraud-alerts",
        "--output-key",
        "account_number",
        "--group",
        "fraud-e2e",
        "--stop-at-end",
        "--dead-letter",
        &arg(dir.path(), "dead.jsonl"),
    ])
    .assert_success();

    let records = broker.consume_all("fraud-alerts");
    let mut seen: HashMap<Alert, usize> = HashMap::new();
    for record in &records {
        let alert = record.json();
        assert_eq!(
            record.key.as_deref(),
            alert["account_number"].as_str().map(str::as_bytes),
            "alerts are keyed by account"
        );
        let key: Alert = (
            alert["transaction_id"].as_i64().unwrap(),
            alert["fraud_type"].as_str().unwrap().into(),
            alert["severity"].as_str().unwrap().into(),
        );
        *seen.entry(key).or_default() += 1;
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(
        duplicates, 0,
        "a failure-free run delivers every alert once"
    );

    let expected = reference_alerts(&transactions);
    assert!(
        expected.len() > 1000,
        "the reference finds {} alerts",
        expected.len()
    );
    assert_same_alerts(seen.into_keys().collect(), expected);

    // Every input record is committed: the group's lag is 0.
    let ends = broker.end_offsets("bank-transactions");
    assert_eq!(ends.len(), 3);
    assert!(
        ends.iter().all(|&e| e > 20_000),
        "records spread over the partitions: {ends:?}"
    );
    let committed = broker.committed("bank-transactions", "fraud-e2e");
    assert_eq!(
        committed,
        ends.iter().map(|&e| Some(e)).collect::<Vec<_>>(),
        "committed = end offsets"
    );
    assert!(
        broker.consume_all("bank-transactions.dlq").is_empty(),
        "no dead letters"
    );
}

#[test]
fn a_host_killed_mid_stream_loses_no_record_after_restart() {
    let broker = Broker::start();
    broker.create_topic("payments", 3);
    broker.create_topic("large-payments", 3);
    let filter = guest("filter");
    let url = broker.url();
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            filter.to_str().unwrap(),
            "--broker",
            &url,
            "-i",
            "kafka:payments",
            "-o",
            "kafka:large-payments",
            "--output-key",
            "id",
            "--set",
            "min=500",
            "--group",
            "kill-test",
            "--max-rows",
            "500",
            "--linger-ms",
            "20",
        ];
        args.extend_from_slice(extra);
        host(&args)
    };
    let total = 60_000u64;
    let record = |id: u64| {
        serde_json::json!({"id": id, "amount": ((id * 7919) % 1000) as f64 + 0.5}).to_string()
    };

    // The input keeps arriving while the host runs; it is killed half way through.
    let client = broker.client();
    let producer = std::thread::spawn(move || {
        for chunk in 0..30 {
            let values: Vec<(String, String)> = (chunk * 2000..(chunk + 1) * 2000)
                .map(|id| (id.to_string(), record(id)))
                .collect();
            client.produce(
                "payments",
                values
                    .iter()
                    .map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes()))),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut first = deploy(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while broker.consume_all("large-payments").len() < 2000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first run produced nothing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    first.kill().unwrap(); // SIGKILL: no draining, no final commit
    first.wait().unwrap();
    let before_restart = broker.consume_all("large-payments").len();
    producer.join().unwrap();

    run_with(deploy(&["--stop-at-end"]), b"", Duration::from_secs(120)).assert_success();

    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for r in broker.consume_all("large-payments") {
        *counts.entry(r.json()["id"].as_u64().unwrap()).or_default() += 1;
    }
    let expected: Vec<u64> = (0..total).filter(|id| (id * 7919) % 1000 >= 500).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !counts.contains_key(id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "records lost across the kill, e.g. {missing:?}"
    );
    assert_eq!(
        counts.len(),
        expected.len(),
        "only records that pass the filter"
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "kill test: {before_restart} outputs before the kill, {} after restart; {duplicates} duplicates (at-least-once replays what was not committed)",
        counts.values().sum::<usize>() - before_restart
    );
    let ends = broker.end_offsets("payments");
    let committed = broker.committed("payments", "kill-test");
    assert_eq!(committed, ends.iter().map(|&e| Some(e)).collect::<Vec<_>>());
}

#[test]
fn a_broker_that_stops_answering_for_a_while_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic("orders", 3);
    broker.create_topic("orders-out", 3);
    let (filter, url) = (guest("filter"), broker.url());
    let mut cmd = host(&[
        "deploy",
        filter.to_str().unwrap(),
        "--broker",
        &url,
        "-i",
        "kafka:orders",
        "-o",
        "kafka:orders-out",
        "--group",
        "freeze-test",
        "--max-rows",
        "500",
        "--linger-ms",
        "20",
    ]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut job = cmd
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let total = 20_000u64;
    let record = |id: u64| serde_json::json!({"id": id, "amount": id as f64}).to_string();
    let produce = |ids: std::ops::Range<u64>| {
        let values: Vec<String> = ids.map(record).collect();
        broker.produce("orders", values.iter().map(|v| (None, Some(v.as_bytes()))));
    };
    produce(0..total / 2);
    let started = Instant::now();
    while broker.consume_all("orders-out").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing processed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.freeze();
    std::thread::sleep(Duration::from_secs(8));
    broker.thaw();
    produce(total / 2..total);
    while broker.consume_all("orders-out").len() < total as usize {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job did not catch up after the broker came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    support::broker::signal(job.id(), "INT"); // Ctrl-C: drain, commit, exit 0
    let status = job.wait().unwrap();
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");

    let mut ids: Vec<u64> = broker
        .consume_all("orders-out")
        .iter()
        .map(|r| r.json()["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..total).collect::<Vec<_>>(),
        "every record once: no loss, and no duplicate without a crash"
    );
    let ends = broker.end_offsets("orders");
    assert_eq!(
        broker.committed("orders", "freeze-test"),
        ends.iter().map(|&e| Some(e)).collect::<Vec<_>>()
    );
}

/// The count in a host's final summary line (`done: N records in …` or `stopped: …`).
fn records_in(log: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains(" records in ") && (l.contains("done:") || l.contains("stopped:")))
        .unwrap_or_else(|| panic!("no summary line in:\n{log}"));
    let after = ["done: ", "stopped: "]
        .iter()
        .find_map(|tag| line.split_once(tag))
        .unwrap()
        .1;
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn two_hosts_in_one_group_share_the_partitions_and_lose_nothing() {
    let broker = Broker::start();
    broker.create_topic("clicks", 4);
    broker.create_topic("clicks-out", 4);
    let (filter, url) = (guest("filter"), broker.url());
    let start = |log: &tempfile::NamedTempFile| {
        host(&[
            "deploy",
            filter.to_str().unwrap(),
            "--broker",
            &url,
            "-i",
            "kafka:clicks",
            "-o",
            "kafka:clicks-out",
            "--group",
            "shared",
            "--max-rows",
            "200",
            "--linger-ms",
            "20",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap()
    };
    let total = 20_000u64;
    let client = broker.client();
    let producer = std::thread::spawn(move || {
        for chunk in 0..40 {
            let values: Vec<(String, String)> = (chunk * 500..(chunk + 1) * 500)
                .map(|id| {
                    let value = serde_json::json!({"id": id, "amount": id as f64});
                    (id.to_string(), value.to_string())
                })
                .collect();
            client.produce(
                "clicks",
                values
                    .iter()
                    .map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes()))),
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (log_a, log_b) = (
        tempfile::NamedTempFile::new().unwrap(),
        tempfile::NamedTempFile::new().unwrap(),
    );
    let mut a = start(&log_a);
    std::thread::sleep(Duration::from_secs(2));
    let mut b = start(&log_b);
    producer.join().unwrap();
    let started = Instant::now();
    let distinct = || {
        let mut ids: Vec<u64> = broker
            .consume_all("clicks-out")
            .iter()
            .map(|r| r.json()["id"].as_u64().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    while distinct().len() < total as usize {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the two hosts did not process everything"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for job in [&a, &b] {
        support::broker::signal(job.id(), "INT");
    }
    let (status_a, status_b) = (a.wait().unwrap(), b.wait().unwrap());
    let (log_a, log_b) = (
        std::fs::read_to_string(log_a.path()).unwrap(),
        std::fs::read_to_string(log_b.path()).unwrap(),
    );
    assert_eq!(status_a.code(), Some(0), "{log_a}");
    assert_eq!(status_b.code(), Some(0), "{log_b}");
    assert_eq!(distinct(), (0..total).collect::<Vec<_>>());
    let (in_a, in_b) = (records_in(&log_a), records_in(&log_b));
    assert!(
        in_a > 0 && in_b > 0,
        "both hosts got partitions: {in_a} and {in_b} records"
    );
    eprintln!(
        "two hosts: {in_a} + {in_b} records read, {} outputs for {total} records",
        broker.consume_all("clicks-out").len()
    );
    let ends = broker.end_offsets("clicks");
    assert_eq!(
        broker.committed("clicks", "shared"),
        ends.iter().map(|&e| Some(e)).collect::<Vec<_>>()
    );
}

#[test]
fn bad_records_on_a_topic_go_to_its_dead_letter_topic_and_the_rest_is_processed() {
    let broker = Broker::start();
    broker.create_topic("readings", 1);
    broker.create_topic("kept", 1);
    let huge = format!(
        r#"{{"id": 99, "amount": 1.0, "pad": "{}"}}"#,
        "x".repeat(5 << 20)
    );
    let good = |id: i64| format!(r#"{{"id": {id}, "amount": {id}.5}}"#);
    let (g0, g2, g4, g6, g8, g10) = (good(0), good(2), good(4), good(6), good(8), good(10));
    let bad_key = [0xffu8, 0xfe, 0x00];
    let records: Vec<KeyValue> = vec![
        (Some(b"k0"), Some(g0.as_bytes())),
        (Some(b"k1"), Some(b"{\"id\": 1, \"amount\": ")),
        (Some(b"k2"), Some(g2.as_bytes())),
        (Some(b"k3"), Some(br#"{"id": 3}"#)),
        (Some(b"k4"), Some(g4.as_bytes())),
        (Some(b"k5"), Some(huge.as_bytes())),
        (Some(b"k6"), Some(g6.as_bytes())),
        (Some(b"k7"), None),
        (Some(b"k8"), Some(g8.as_bytes())),
        (Some(&bad_key), Some(br#"{"id": 9, "amount": 9.5}"#)),
        (Some(b"k10"), Some(g10.as_bytes())),
    ];
    broker.produce("readings", records.iter().copied());

    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"
            [kafka]
            brokers = "{}"
            stop_at_end = true

            [[sources]]
            name = "readings"
            path = "kafka:readings"
            schema = {{ id = "int64", amount = "float64" }}
            metadata = ["key", "offset"]

            [[agents]]
            wasm = "{}"

            [[sinks]]
            stream = "out"
            path = "kafka:kept"
            "#,
            broker.url(),
            guest("filter").display()
        ),
    )
    .unwrap();
    let out = run(&[
        "deploy",
        "-c",
        job.to_str().unwrap(),
        "--dead-letter",
        &arg(dir.path(), "dead.jsonl"),
    ]);
    out.assert_success();
    assert!(out.stderr.contains("5 dead letters"), "{}", out.stderr);

    let kept: Vec<serde_json::Value> = broker
        .consume_all("kept")
        .iter()
        .map(|r| r.json())
        .collect();
    let ids: Vec<i64> = kept.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids,
        vec![0, 2, 4, 6, 8, 10],
        "good records around the bad ones, in order"
    );
    assert_eq!(
        kept[1]["_key"], "k2",
        "metadata columns reach the agent and its output"
    );
    assert_eq!(kept[1]["_offset"], 2);

    let dead = broker.consume_all("readings.dlq");
    let by_offset: BTreeMap<i64, &support::broker::Record> = dead
        .iter()
        .map(|r| (r.header("sabot.source.offset").unwrap().parse().unwrap(), r))
        .collect();
    assert_eq!(
        by_offset.keys().copied().collect::<Vec<_>>(),
        vec![1, 3, 5, 7, 9]
    );
    for (offset, reason) in [
        (1, "Json error"),
        (3, "missing required field `amount`"),
        (5, "exceeds the source's max_record_bytes"),
        (7, "null value"),
        (9, "not valid UTF-8"),
    ] {
        let letter = by_offset[&offset];
        let why = letter.header("sabot.reason").unwrap();
        assert!(why.contains(reason), "offset {offset}: {why}");
        assert_eq!(letter.header("sabot.source.topic"), Some("readings"));
        assert_eq!(letter.header("sabot.source.partition"), Some("0"));
        assert_eq!(letter.header("sabot.stage"), Some("source:readings"));
        let (key, value) = records[offset as usize];
        assert_eq!(letter.key.as_deref(), key, "the original key is kept");
        assert_eq!(letter.value.as_deref(), value, "the original value is kept");
    }
    assert!(
        !dir.path().join("dead.jsonl").exists(),
        "Kafka dead letters go to the topic"
    );
    assert_eq!(broker.committed("readings", "sabot-filter"), vec![Some(11)]);
}

#[test]
fn the_event_time_watermark_of_a_kafka_source_reaches_the_agent() {
    let broker = Broker::start();
    broker.create_topic("events", 1);
    let values: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"id": {i}, "ts": {}}}"#, 1000 + i))
        .collect();
    broker.produce("events", values.iter().map(|v| (None, Some(v.as_bytes()))));
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"
            [batch]
            max_rows = 10
            [kafka]
            brokers = "{}"
            stop_at_end = true
            [[sources]]
            name = "events"
            path = "kafka:events"
            event_time_column = "ts"
            allowed_lateness_ms = 3
            [[agents]]
            wasm = "{}"
            config = {{ mode = "probe", trigger_offset = "15" }}
            [[sinks]]
            stream = "out"
            path = "null:"
            "#,
            broker.url(),
            guest("faults").display()
        ),
    )
    .unwrap();
    let out = run(&["deploy", "-c", job.to_str().unwrap()]);
    out.assert_success();
    // The batch holding offset 15 (ts 1015) has a watermark of at least 1015 - 3; batches
    // hold at most 10 records, so its newest event time is at most 1019.
    let watermark: i64 = out
        .stderr
        .split("probe: input=records watermark=Some(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no watermark reached the agent:\n{}", out.stderr))
        .parse()
        .unwrap();
    assert!((1012..=1016).contains(&watermark), "watermark {watermark}");
}

#[test]
fn a_missing_topic_is_a_clear_error_unless_topics_are_created() {
    let broker = Broker::start();
    let (filter, url) = (guest("filter"), broker.url());
    let deploy = [
        "deploy",
        filter.to_str().unwrap(),
        "--broker",
        &url,
        "-i",
        "kafka:nowhere",
        "-o",
        "kafka:nowhere-out",
        "--stop-at-end",
    ];
    let out = run(&deploy);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("topic `nowhere` does not exist"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--create-topics"),
        "the error says how to fix it: {}",
        out.stderr
    );

    run(&[&deploy[..], &["--create-topics"]].concat()).assert_success();
    let list = run(&["topics", "list", "--json", "--broker", &broker.url()]);
    list.assert_success();
    let topics: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    let names: Vec<&str> = topics.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for topic in ["nowhere", "nowhere-out", "nowhere.dlq"] {
        assert!(names.contains(&topic), "{topic} missing from {names:?}");
    }
}

#[test]
fn topics_command_creates_lists_and_describes() {
    let broker = Broker::start();
    let url = broker.url();
    run(&[
        "topics",
        "create",
        "events",
        "--partitions",
        "4",
        "--broker",
        &url,
    ])
    .assert_success();
    let again = run(&["topics", "create", "events", "--broker", &url]);
    assert_eq!(again.code, Some(1), "creating an existing topic fails");
    assert!(again.stderr.contains("events"), "{}", again.stderr);
    run(&[
        "topics",
        "create",
        "events",
        "--if-not-exists",
        "--broker",
        &url,
    ])
    .assert_success();

    broker.produce("events", (0..10).map(|_| (None, Some(&b"{}"[..]))));
    let listed = run(&["topics", "list", "--broker", &url]);
    listed.assert_success();
    assert!(
        listed.stdout.contains("events") && listed.stdout.contains("4 partitions"),
        "{}",
        listed.stdout
    );

    let described = run(&["topics", "describe", "events", "--json", "--broker", &url]);
    described.assert_success();
    let info: serde_json::Value = serde_json::from_str(&described.stdout).unwrap();
    assert_eq!(info["partitions"].as_array().unwrap().len(), 4);
    let missing = run(&["topics", "describe", "nope", "--broker", &url]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no topic `nope`"),
        "{}",
        missing.stderr
    );

    let unreachable = run(&["topics", "list", "--broker", "kafka://127.0.0.1:1"]);
    assert_eq!(unreachable.code, Some(1));
    assert!(
        unreachable
            .stderr
            .contains("cannot reach the Kafka cluster"),
        "{}",
        unreachable.stderr
    );
}
