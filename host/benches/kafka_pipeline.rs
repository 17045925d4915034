//! Benchmark `kafka_pipeline`: end-to-end records/s of the fraud pipeline on a real broker,
//! against a plain rdkafka consume→produce passthrough on the same broker and topic, in the
//! same run. Also the host copying the topic without an agent (same output volume as the
//! passthrough), which isolates the host's own Kafka I/O cost.
//!
//! Run with `cargo xtask bench --bench kafka_pipeline` (builds the guests, installs tansu).
//! Each variant reads the whole input topic with a fresh consumer group; rates count from
//! the first record read to the last output acknowledged (group joins excluded). Variants
//! alternate over rounds and medians are reported. `-- --quick` runs one round.
//! `SABOT_BENCH_TX` sets the number of transactions (default 500 000).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use sabot_fraud_gen::{GeneratorConfig, generate};
use sabot_host::config::{AgentConfig, JobConfig, SinkConfig, SourceConfig};
use sabot_host::io::DeadLetters;
use sabot_host::kafka::KafkaConfig;
use sabot_host::pipeline::{self, RunOptions};
use sabot_host::wasm::Runtime;
use support::broker::Broker;

const INPUT: &str = "bank-transactions";

/// The same client settings the host uses, so the baseline is tuned like the host.
fn kafka(broker: &Broker) -> KafkaConfig {
    KafkaConfig {
        brokers: Some(broker.url()),
        stop_at_end: true,
        ..Default::default()
    }
}

/// Plain rdkafka: consume every record and produce it unchanged to `out`. Returns records/s.
fn passthrough(broker: &Broker, group: &str, out: &str) -> (f64, u64) {
    let kafka = kafka(broker);
    let consumer: BaseConsumer = kafka
        .consumer_config(group)
        .unwrap()
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka.producer_config().unwrap().create().unwrap();
    consumer.subscribe(&[INPUT]).unwrap();
    let mut at_end = HashSet::new();
    let mut next_offsets: HashMap<i32, i64> = HashMap::new();
    let mut first = None;
    let mut count = 0u64;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                at_end.remove(&m.partition());
                next_offsets.insert(m.partition(), m.offset() + 1);
                count += 1;
                let mut record: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(out).payload(m.payload().unwrap_or_default());
                if let Some(key) = m.key() {
                    record = record.key(key);
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err((err, _)) => panic!("produce: {err}"),
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                let assigned = consumer.assignment().unwrap().count();
                if first.is_some() && assigned > 0 && at_end.len() == assigned {
                    break;
                }
            }
            Some(Err(err)) => panic!("consume: {err}"),
            None => {}
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next_offsets {
        offsets
            .add_partition_offset(INPUT, partition, Offset::Offset(offset))
            .unwrap();
    }
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    let secs = first.unwrap().elapsed().as_secs_f64();
    (count as f64 / secs, count)
}

/// The host, in process, reading the topic; `agent` `None` copies it to `out`.
fn sabot(
    broker: &Broker,
    runtime: &Runtime,
    group: &str,
    agent: Option<&str>,
    out: &str,
) -> (f64, u64) {
    let mut job = JobConfig {
        kafka: KafkaConfig {
            group_id: Some(group.into()),
            ..kafka(broker)
        },
        progress_secs: Some(0),
        ..Default::default()
    };
    job.sources
        .push(SourceConfig::new("transactions", &format!("kafka:{INPUT}")));
    let stream = match agent {
        Some(wasm) => {
            job.agents.push(AgentConfig {
                name: None,
                wasm: support::guests_dir().join(wasm),
                inputs: Default::default(),
                config: Default::default(),
                limits: Default::default(),
            });
            "alerts".to_string()
        }
        None => "transactions".to_string(),
    };
    job.sinks.push(SinkConfig {
        stream,
        path: format!("kafka:{out}"),
        format: None,
        key_column: Some("account_number".into()),
    });
    let plan = pipeline::plan(&job, runtime).unwrap();
    let topics = sabot_host::kafka::prepare(&plan).unwrap().unwrap();
    let dead_letters = Arc::new(DeadLetters::new(None).with_topics(topics));
    let summary = pipeline::run(plan, RunOptions::for_job(&job, dead_letters)).unwrap();
    assert_eq!(summary.dead_letters, 0);
    (
        summary.records_in as f64 / summary.active_secs,
        summary.records_out(),
    )
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 3 };
    let count: usize = std::env::var("SABOT_BENCH_TX")
        .ok()
        .map(|v| v.parse().expect("SABOT_BENCH_TX is a number"))
        .unwrap_or(500_000);
    let broker = Broker::start();
    broker.create_topic(INPUT, 3);
    let transactions = generate(&GeneratorConfig::new(count, 42));
    let encoded = support::fraud::keyed_by_account(&transactions);
    let bytes: usize = encoded.iter().map(|(k, v)| k.len() + v.len()).sum();
    broker.produce_keyed(INPUT, &encoded);
    drop(encoded);

    let runtime = Runtime::new(
        support::guests_dir()
            .parent()
            .map(|d| d.join("bench-component-cache")),
    )
    .unwrap();
    let names = [
        "plain rdkafka passthrough (consume → produce every record)",
        "sabot-host copy, no agent (consume → Arrow → produce every record)",
        "sabot-host fraud pipeline (fraud.wasm, alerts produced)",
    ];
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut outputs = [0u64; 3];
    for round in 0..rounds {
        // The order rotates each round: the broker's memory grows with every run.
        for i in (0..3).map(|k| (k + round) % 3) {
            let rate = &mut rates[i];
            let group = format!("bench-{i}-{round}");
            let out = format!("bench-out-{i}-{round}");
            broker.create_topic(&out, 3);
            let (r, n) = match i {
                0 => passthrough(&broker, &group, &out),
                1 => sabot(&broker, &runtime, &group, None, &out),
                _ => sabot(
                    &broker,
                    &runtime,
                    &group,
                    Some("sabot_agent_fraud.wasm"),
                    &out,
                ),
            };
            eprintln!("round {round}: {} {r:.0} records/s ({n} out)", names[i]);
            rate.push(r);
            outputs[i] = n;
        }
    }
    let base = median(&mut rates[0].clone());
    println!(
        "## kafka_pipeline ({count} transactions, {:.0} bytes each, 3 partitions, tansu in memory, one host process)",
        bytes as f64 / count as f64
    );
    println!();
    println!("| variant | records/s (median of {rounds}) | × passthrough | records out |");
    println!("|---|---:|---:|---:|");
    for (i, name) in names.iter().enumerate() {
        let rate = median(&mut rates[i]);
        println!(
            "| {name} | {rate:.0} | {:.2} | {} |",
            rate / base,
            outputs[i]
        );
    }
}
