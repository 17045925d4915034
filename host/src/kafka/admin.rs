//! Topic administration and consumer-group offsets: what `sabot-host topics` shows and does,
//! and the topic checks of `deploy`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, consumer::DefaultConsumerContext};
use serde::Serialize;

use super::client::{KafkaConfig, LoggingContext};

/// How long a metadata or admin request may take before it is reported as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A topic's partitions and offsets.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

/// One partition's offsets; with a group, its committed offset and lag.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    /// Oldest offset still stored.
    pub low: i64,
    /// Offset the next record will get (the end).
    pub high: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}

impl TopicInfo {
    /// Records not yet committed by the group, over all partitions.
    pub fn total_lag(&self) -> Option<i64> {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

/// Metadata and administration against one cluster.
pub struct Admin {
    kafka: KafkaConfig,
    metadata: BaseConsumer<LoggingContext>,
}

impl Admin {
    /// A client of the cluster `kafka` names (connections are made on first use).
    pub fn connect(kafka: &KafkaConfig) -> Result<Self> {
        let metadata = kafka
            .admin_config()?
            .create_with_context(LoggingContext::new("admin"))
            .context("creating a Kafka client")?;
        Ok(Self {
            kafka: kafka.clone(),
            metadata,
        })
    }

    /// Names and partition counts of every topic, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, usize)>> {
        let metadata = self
            .metadata
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .with_context(|| self.unreachable())?;
        let mut topics: Vec<(String, usize)> = metadata
            .topics()
            .iter()
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect();
        topics.sort();
        Ok(topics)
    }

    /// The partition count of `topic`, or `None` when it does not exist.
    pub fn partitions(&self, topic: &str) -> Result<Option<usize>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|(name, _)| name == topic)
            .map(|(_, n)| n))
    }

    /// Creates `name` with `partitions` partitions; an existing topic is an error unless
    /// `exists_ok`.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        replication: i32,
        configs: &[(String, String)],
        exists_ok: bool,
    ) -> Result<()> {
        let admin: AdminClient<LoggingContext> = self
            .kafka
            .admin_config()?
            .create_with_context(LoggingContext::new("admin"))
            .context("creating a Kafka admin client")?;
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = block_on(admin.create_topics([&topic], &options))
            .with_context(|| self.unreachable())?;
        for result in results {
            match result {
                Ok(_) => tracing::info!("created topic `{name}` ({partitions} partitions)"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if exists_ok => {}
                Err((_, code)) => bail!("cannot create topic `{name}`: {code}"),
            }
        }
        // Metadata reaches every broker a moment after creation; wait until it shows.
        for _ in 0..50 {
            if self.partitions(name)?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("topic `{name}` was created but does not show in the metadata")
    }

    /// Offsets of every partition of `topic`; with `group`, its committed offsets and lag.
    pub fn describe(&self, topic: &str, group: Option<&str>) -> Result<TopicInfo> {
        let Some(count) = self.partitions(topic)? else {
            bail!("no topic `{topic}` (see `sabot-host topics list`)")
        };
        let committed = match group {
            Some(group) => Some(self.committed(topic, count, group)?),
            None => None,
        };
        let mut partitions = Vec::with_capacity(count);
        for partition in 0..count as i32 {
            let (low, high) = self
                .metadata
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .with_context(|| format!("offsets of `{topic}` partition {partition}"))?;
            let committed = committed
                .as_ref()
                .map(|c: &Vec<Option<i64>>| c[partition as usize]);
            partitions.push(PartitionInfo {
                partition,
                low,
                high,
                committed: committed.flatten(),
                // Nothing committed yet: everything still stored is lag.
                lag: committed.map(|c| high - c.unwrap_or(low).max(low)),
            });
        }
        Ok(TopicInfo {
            name: topic.to_string(),
            partitions,
        })
    }

    /// The offsets `group` has committed on `topic`, by partition (partitions without a
    /// commit are left out).
    pub fn group_offsets(&self, topic: &str, group: &str) -> Result<BTreeMap<i32, i64>> {
        let Some(count) = self.partitions(topic)? else {
            bail!("no topic `{topic}` (see `sabot-host topics list`)")
        };
        Ok(self
            .committed(topic, count, group)?
            .into_iter()
            .enumerate()
            .filter_map(|(p, o)| Some((p as i32, o?)))
            .collect())
    }

    /// The offsets `group` committed on each partition of `topic`.
    fn committed(&self, topic: &str, partitions: usize, group: &str) -> Result<Vec<Option<i64>>> {
        let consumer: BaseConsumer<DefaultConsumerContext> = self
            .kafka
            .admin_config()?
            .set("group.id", group)
            .create()
            .context("creating a Kafka client")?;
        let mut list = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            list.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(list, REQUEST_TIMEOUT)
            .with_context(|| format!("committed offsets of group `{group}`"))?;
        Ok((0..partitions as i32)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect())
    }

    /// Checks that every topic in `topics` exists; missing ones are created when `create` is
    /// set (with the configured partition count), otherwise they are an error.
    pub fn ensure(&self, topics: &[&str], create: bool) -> Result<()> {
        let existing = self.list()?;
        for topic in topics {
            if existing.iter().any(|(name, _)| name == topic) {
                continue;
            }
            if !create {
                return Err(super::job::MissingTopic(format!(
                    "topic `{topic}` does not exist; create it with `sabot-host topics create {topic}` or deploy with --create-topics"
                ))
                .into());
            }
            self.create(topic, self.kafka.partitions.unwrap_or(3), 1, &[], true)?;
        }
        Ok(())
    }

    fn unreachable(&self) -> String {
        format!(
            "cannot reach the Kafka cluster at {}",
            self.kafka.brokers.as_deref().unwrap_or("?")
        )
    }
}

/// Waits for an admin future; librdkafka's own thread completes it.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}
