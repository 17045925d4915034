//! A real Kafka-protocol broker (tansu, in-memory storage) on a free loopback port, started
//! by the test that uses it and stopped when dropped; plus a plain rdkafka producer and
//! consumer for the tests' own reading and writing.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// A running broker.
pub struct Broker {
    child: Child,
    client: Client,
}

/// Reads and writes topics with plain rdkafka, independent of the host under test.
#[derive(Debug, Clone)]
pub struct Client {
    /// `HOST:PORT`.
    bootstrap: String,
}

/// A record to produce: key and value, each optional.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().expect("a value")).expect("a JSON value")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The tansu binary: `$SABOT_TANSU` (set by `cargo xtask test`), else installed by
/// `cargo xtask tansu`.
fn tansu() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("SABOT_TANSU") {
            return PathBuf::from(path);
        }
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(super::workspace())
            .args(["xtask", "tansu"])
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo xtask tansu");
        assert!(out.status.success(), "cannot install the test broker");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
            ])
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let broker = Broker {
            child,
            client: Client {
                bootstrap: format!("127.0.0.1:{port}"),
            },
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing is answered.
    pub fn freeze(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        signal(self.child.id(), "CONT");
    }

    /// A client of this broker that can move to another thread.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Creates a topic through the host's own `topics create` command.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        super::run(&[
            "topics",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--broker",
            &self.url(),
        ])
        .assert_success();
    }

    /// Stops the broker (all its data is lost: the storage is in memory).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::ops::Deref for Broker {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Client {
    /// `kafka://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("kafka://{}", self.bootstrap)
    }

    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// Produces records that all have a key and a value (as `keyed_by_account` makes them)
    /// and waits until all are acknowledged.
    pub fn produce_keyed(&self, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
        self.produce(
            topic,
            records.iter().map(|(k, v)| (Some(&k[..]), Some(&v[..]))),
        );
    }

    /// Produces `(key, value)` records and waits until all are acknowledged.
    pub fn produce<'a>(&self, topic: &str, records: impl IntoIterator<Item = KeyValue<'a>>) {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.max.bytes", "16777216")
            .create()
            .unwrap();
        for (key, value) in records {
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(value) = value {
                record = record.payload(value);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((err, _)) => panic!("producing to {topic}: {err}"),
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("every test record acknowledged");
    }

    /// The offset `group` has committed on each partition of `topic` (`sabot-host topics
    /// describe --json`).
    pub fn committed(&self, topic: &str, group: &str) -> Vec<Option<i64>> {
        let out = super::run(&[
            "topics",
            "describe",
            topic,
            "--group",
            group,
            "--json",
            "--broker",
            &self.url(),
        ]);
        out.assert_success();
        let info: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        info["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["committed"].as_i64())
            .collect()
    }

    /// Every record of `topic` a `read_committed` consumer sees, read from the start to the
    /// end of each partition (for `read_committed`, the last stable offset).
    pub fn consume_all(&self, topic: &str) -> Vec<Record> {
        self.read_all(topic, "read_committed")
    }

    /// Every record of `topic` on the broker, whether its transaction committed or not.
    pub fn consume_all_uncommitted(&self, topic: &str) -> Vec<Record> {
        self.read_all(topic, "read_uncommitted")
    }

    fn read_all(&self, topic: &str, isolation: &str) -> Vec<Record> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "sabot-tests-reader")
            .set("isolation.level", isolation)
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata.topics()[0].partitions().len() as i32;
        assert!(partitions > 0, "topic {topic} has no partitions");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut at_end = std::collections::HashSet::new();
        let mut records = Vec::new();
        let started = Instant::now();
        while at_end.len() < partitions as usize {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "reading {topic} timed out"
            );
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    records.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| {
                                        (
                                            h.key.to_string(),
                                            String::from_utf8_lossy(h.value.unwrap_or_default())
                                                .into_owned(),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(err)) => panic!("reading {topic}: {err}"),
                None => {}
            }
        }
        records
    }

    /// The end offset (next offset) of each partition, found by reading to the end. (tansu
    /// 0.6 answers ListOffsets(latest) with the base offset of the last record batch, so the
    /// watermark it reports can trail the real end.)
    pub fn end_offsets(&self, topic: &str) -> Vec<i64> {
        let records = self.consume_all(topic);
        let partitions = records.iter().map(|r| r.partition).max().unwrap_or(0) + 1;
        (0..partitions)
            .map(|p| {
                records
                    .iter()
                    .filter(|r| r.partition == p)
                    .map(|r| r.offset + 1)
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// Sends `SIG<name>` to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}
