//! `cargo demo`: the fraud demo on generated transactions, on files (the embedded default) or
//! end to end on Kafka (`--kafka`: a local tansu broker unless `--broker URL` is given).

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{build_guests, cargo, run as run_cmd, tansu, target_dir};

/// What the command line asked for.
struct DemoArgs {
    count: usize,
    seed: u64,
    kafka: bool,
    broker: Option<String>,
}

fn parse(args: &[String]) -> Result<DemoArgs> {
    let mut demo = DemoArgs {
        count: 200_000,
        seed: 42,
        kafka: false,
        broker: None,
    };
    let mut positional = 0;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kafka" => demo.kafka = true,
            "--broker" => {
                demo.kafka = true;
                demo.broker = Some(args.next().context("--broker needs a URL")?.clone());
            }
            value if positional == 0 => {
                demo.count = value.parse().context("N must be a number")?;
                positional += 1;
            }
            value if positional == 1 => {
                demo.seed = value.parse().context("SEED must be a number")?;
                positional += 1;
            }
            other => bail!(
                "unexpected argument `{other}`; usage: cargo demo [N] [SEED] [--kafka [--broker URL]]"
            ),
        }
    }
    Ok(demo)
}

pub fn run(args: &[String]) -> Result<()> {
    let demo = parse(args)?;
    let guests = build_guests()?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "sabot-host",
        "-p",
        "sabot-fraud-gen",
    ]))?;
    let bin = target_dir().join("release");
    let out = target_dir().join("demo");
    std::fs::create_dir_all(&out)?;
    let transactions = out.join("transactions.jsonl");
    let alerts = out.join("alerts.jsonl");
    let dead = out.join("dead-letters.jsonl");
    let _ = std::fs::remove_file(&dead);

    println!(
        "== generating {} transactions (seed {})",
        demo.count, demo.seed
    );
    run_cmd(
        Command::new(bin.join("sabot-fraud-gen"))
            .args([
                "--count",
                &demo.count.to_string(),
                "--seed",
                &demo.seed.to_string(),
                "--out",
            ])
            .arg(&transactions),
    )?;
    let host = || {
        let mut cmd = Command::new(bin.join("sabot-host"));
        cmd.arg("--log").arg("info");
        cmd
    };
    let fraud = guests.join("sabot_agent_fraud.wasm");

    if !demo.kafka {
        println!("== sabot-host deploy fraud.wasm");
        run_cmd(
            host()
                .arg("deploy")
                .arg(&fraud)
                .arg("--input")
                .arg(format!("transactions={}", transactions.display()))
                .arg("--output")
                .arg(format!("alerts={}", alerts.display()))
                .arg("--dead-letter")
                .arg(&dead),
        )?;
    } else {
        let (url, _broker) = match &demo.broker {
            Some(url) => (url.clone(), None),
            None => {
                let broker = LocalBroker::start()?;
                (broker.url.clone(), Some(broker))
            }
        };
        println!("== Kafka at {url}: topics bank-transactions (3 partitions) and fraud-alerts");
        for topic in ["bank-transactions", "fraud-alerts"] {
            run_cmd(host().args([
                "topics",
                "create",
                topic,
                "--partitions",
                "3",
                "--if-not-exists",
                "--broker",
                &url,
            ]))?;
        }
        println!("== producing the transactions, keyed by account_number");
        run_cmd(
            host()
                .args([
                    "deploy",
                    "--broker",
                    &url,
                    "--output-key",
                    "account_number",
                    "--progress-secs",
                    "0",
                ])
                .arg("--input")
                .arg(&transactions)
                .args(["--output", "kafka:bank-transactions"]),
        )?;
        println!("== sabot-host deploy fraud.wasm: bank-transactions → fraud-alerts");
        run_cmd(
            host()
                .arg("deploy")
                .arg(&fraud)
                .args([
                    "--broker",
                    &url,
                    "--group",
                    "sabot-fraud-demo",
                    "--stop-at-end",
                ])
                .args(["--input", "transactions=kafka:bank-transactions"])
                .args([
                    "--output",
                    "alerts=kafka:fraud-alerts",
                    "--output-key",
                    "account_number",
                ])
                .arg("--dead-letter")
                .arg(&dead),
        )?;
        println!("== reading fraud-alerts back into {}", alerts.display());
        run_cmd(
            host()
                .args([
                    "deploy",
                    "--broker",
                    &url,
                    "--group",
                    "sabot-demo-export",
                    "--stop-at-end",
                ])
                .args([
                    "--progress-secs",
                    "0",
                    "--input",
                    "kafka:fraud-alerts",
                    "--output",
                ])
                .arg(&alerts),
        )?;
        println!("== consumer group sabot-fraud-demo on bank-transactions");
        run_cmd(host().args([
            "topics",
            "describe",
            "bank-transactions",
            "--group",
            "sabot-fraud-demo",
            "--broker",
            &url,
        ]))?;
    }

    summarize(&alerts)?;
    println!(
        "\nalerts: {}\ninput:  {}",
        alerts.display(),
        transactions.display()
    );
    Ok(())
}

/// A tansu broker on a free loopback port, stopped when dropped.
struct LocalBroker {
    child: Child,
    url: String,
}

impl LocalBroker {
    fn start() -> Result<Self> {
        let tansu = tansu::ensure()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listener = format!("tcp://127.0.0.1:{port}");
        println!("== starting a local broker (tansu, in memory) on port {port}");
        let child = Command::new(tansu)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &listener,
            ])
            .args(["--advertised-listener-url", &listener])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tansu")?;
        let broker = Self {
            child,
            url: format!("kafka://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("tansu did not start listening on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints alert counts by rule and severity, and one example of each rule.
fn summarize(alerts: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(alerts).with_context(|| format!("reading {}", alerts.display()))?;
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut examples: BTreeMap<String, String> = BTreeMap::new();
    let mut total = 0;
    for line in text.lines() {
        let alert: serde_json::Value = serde_json::from_str(line)?;
        let field = |name: &str| alert[name].as_str().unwrap_or("?").to_string();
        *counts
            .entry((field("fraud_type"), field("severity")))
            .or_default() += 1;
        examples.entry(field("fraud_type")).or_insert_with(|| {
            format!(
                "tx {} account {}: {}",
                alert["transaction_id"],
                field("account_number"),
                field("details")
            )
        });
        total += 1;
    }
    println!("\n== {total} fraud alerts");
    for ((rule, severity), n) in &counts {
        println!("  {rule:<16} {severity:<9} {n:>7}");
    }
    println!("examples:");
    for (rule, example) in &examples {
        println!("  {rule:<16} {example}");
    }
    Ok(())
}
