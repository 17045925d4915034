//! Kafka connection settings and the librdkafka client configuration built from them, with
//! librdkafka's logs and errors routed into `tracing`.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

/// The `[kafka]` table of a job file (or `--broker` and friends on the command line).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers: `kafka://HOST:PORT` or `HOST:PORT`, comma-separated.
    pub brokers: Option<String>,
    /// Consumer group of the job's Kafka sources. Default: `sabot-<first agent>`.
    pub group_id: Option<String>,
    /// How often completed input offsets are committed, in ms (default 1000).
    pub commit_interval_ms: Option<u64>,
    /// Partitions of topics created by `--create-topics` (default 3).
    pub partitions: Option<i32>,
    /// Create missing topics instead of failing (`--create-topics`).
    #[serde(default)]
    pub create_topics: bool,
    /// Stop once every input partition has been read to its end (`--stop-at-end`);
    /// otherwise consume until stopped.
    #[serde(default)]
    pub stop_at_end: bool,
    /// Exactly-once output (`--exactly-once`): Kafka outputs are written in one transaction
    /// per checkpoint, committed with the input offsets. Needs checkpoints and Kafka inputs.
    #[serde(default)]
    pub exactly_once: bool,
    /// `transactional.id` of the exactly-once producer [default: `<group>.sabot-txn`]. It
    /// must stay the same across restarts of the job, and differ between jobs.
    pub transactional_id: Option<String>,
    /// librdkafka properties for every client, e.g. `"security.protocol" = "ssl"`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for consumers only.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for producers only.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// The bootstrap list librdkafka expects (`host:port,host:port`).
    pub fn bootstrap(&self) -> Result<String> {
        let Some(brokers) = &self.brokers else {
            bail!(
                "a Kafka topic is used but no broker is set: give --broker kafka://HOST:PORT or [kafka] brokers"
            )
        };
        parse_brokers(brokers)
    }

    /// Settings shared by every client of the job.
    fn base(&self) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap()?)
            .set("client.id", "sabot-host")
            // Reconnect quickly at first, then back off to a few seconds while a broker is away.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        Ok(config)
    }

    /// A consumer of group `group` that commits only what the host tells it to.
    pub fn consumer_config(&self, group: &str) -> Result<ClientConfig> {
        let mut config = self.base()?;
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // End-of-partition events: a caught-up partition's batch is handed on at once
            // instead of after the linger time, and bounded runs know when to stop.
            .set("enable.partition.eof", "true")
            // A short session: a restarted job rejoins (and a dead one is replaced) within
            // seconds. librdkafka heartbeats from its own thread, so slow batches are fine.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // Fetch in large chunks: batches of thousands of records are what agents want.
            .set("fetch.min.bytes", "1")
            .set("fetch.wait.max.ms", "50")
            .set("queued.max.messages.kbytes", "65536")
            // When the local queue is full librdkafka pauses fetching for this long (default
            // 1 s): with batches decoded between polls the queue fills often, and a long pause
            // leaves the consumer idle (measured: 4× fewer records/s on tansu).
            .set("fetch.queue.backoff.ms", "10");
        for (key, value) in &self.consumer {
            config.set(key, value);
        }
        Ok(config)
    }

    /// An idempotent producer (no duplicates or reordering from its own retries) that keys
    /// records the way Java clients do.
    pub fn producer_config(&self) -> Result<ClientConfig> {
        let mut config = self.base()?;
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.kbytes", "65536")
            .set("message.max.bytes", "16777216");
        for (key, value) in &self.producer {
            config.set(key, value);
        }
        Ok(config)
    }

    /// A client for metadata and administration.
    pub fn admin_config(&self) -> Result<ClientConfig> {
        self.base()
    }

    /// Milliseconds between offset commits.
    pub fn commit_interval_ms(&self) -> u64 {
        self.commit_interval_ms.unwrap_or(1000)
    }
}

/// `kafka://a:1,b:2` or `a:1,b:2` → `a:1,b:2`.
pub fn parse_brokers(text: &str) -> Result<String> {
    let mut hosts = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let host = part.strip_prefix("kafka://").unwrap_or(part);
        let host = host.trim_end_matches('/');
        match host.rsplit_once(':') {
            Some((name, port)) if !name.is_empty() && port.parse::<u16>().is_ok() => {
                hosts.push(host.to_string())
            }
            _ => bail!("broker `{part}`: expected kafka://HOST:PORT"),
        }
    }
    Ok(hosts.join(","))
}

/// A librdkafka client context that logs through `tracing`, naming the client's role.
#[derive(Clone)]
pub struct LoggingContext {
    /// What the client is for, e.g. `source:transactions`.
    pub role: String,
}

impl LoggingContext {
    /// A context for a client used as `role`.
    pub fn new(role: impl Into<String>) -> Self {
        Self { role: role.into() }
    }
}

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let role = &self.role;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "kafka", "{role}: {facility}: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "kafka", "{role}: {facility}: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "kafka", "{role}: {facility}: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "kafka", "{role}: {facility}: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            return; // the end of a partition is an event the source handles, not an error
        }
        // Broker connection trouble surfaces here; librdkafka reconnects on its own with
        // backoff, so this is a warning, not the end of the job.
        tracing::warn!(target: "kafka", "{}: {error}: {reason} (retrying with backoff)", self.role);
    }
}

/// Metadata and admin clients never join a group; sources use [`super::group::GroupContext`].
impl ConsumerContext for LoggingContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_lists() {
        assert_eq!(
            parse_brokers("kafka://localhost:9092").unwrap(),
            "localhost:9092"
        );
        assert_eq!(parse_brokers("a:1, kafka://b:2/").unwrap(), "a:1,b:2");
        assert!(parse_brokers("localhost").is_err());
        assert!(parse_brokers("kafka://:9092").is_err());
    }

    #[test]
    fn user_properties_override_the_defaults() {
        let mut kafka = KafkaConfig {
            brokers: Some("h:1".into()),
            ..Default::default()
        };
        kafka.producer.insert("linger.ms".into(), "50".into());
        let config = kafka.producer_config().unwrap();
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert!(
            KafkaConfig::default().consumer_config("g").is_err(),
            "no broker"
        );
    }
}
