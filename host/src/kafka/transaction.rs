//! Exactly-once output to Kafka: every Kafka sink of a job writes through one transactional
//! producer. The transaction open between two checkpoints commits, together with the Kafka
//! sources' offsets of the second one (`send_offsets_to_transaction`), once that checkpoint is
//! complete on disk: outputs and input offsets become visible atomically, so the broker's
//! committed offsets say which checkpoint a restart resumes from.
//!
//! A job that fails aborts its open transaction; a process that dies without doing so is
//! fenced by the next start (same `transactional.id`), which aborts it then. Either way the
//! outputs of an unfinished checkpoint are never committed, and are produced again from the
//! restored one.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};

use super::client::KafkaConfig;
use super::producer::Producer;
use crate::checkpoint::{CommitHook, Manifest, SourcePosition};

/// Longest wait for one transaction call (librdkafka retries within it).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Header naming the transaction a record was written in: `<run>:<checkpoint>`, where
/// `<run>` names the process and `<checkpoint>` the first checkpoint that can commit it.
pub const TXN_HEADER: &str = "sabot.txn";

#[derive(Default)]
struct TxnState {
    /// The checkpoint the open transaction is for.
    epoch: u64,
    /// Checkpoints up to this one are committed (or given up, their records moved on).
    resolved: u64,
    failure: Option<String>,
}

/// The job's transactional producer and the transaction it has open.
pub struct Transactions {
    producer: Producer,
    run: String,
    state: Mutex<TxnState>,
    changed: Condvar,
    /// Group membership of each Kafka source, for committing its offsets in a transaction.
    groups: Mutex<BTreeMap<String, ConsumerGroupMetadata>>,
}

impl Transactions {
    /// Starts the producer of `transactional_id` (fencing a previous process with the same
    /// id, whose open transaction is aborted) and opens the transaction for checkpoint
    /// `first_epoch`.
    pub fn start(
        kafka: &KafkaConfig,
        transactional_id: &str,
        first_epoch: u64,
    ) -> Result<Arc<Self>> {
        let mut config = kafka.clone();
        config
            .producer
            .insert("transactional.id".into(), transactional_id.into());
        config
            .producer
            .entry("transaction.timeout.ms".into())
            .or_insert_with(|| "60000".into());
        let producer = Producer::new(&config, "exactly-once")?;
        let inner = producer.inner();
        inner
            .init_transactions(TIMEOUT)
            .with_context(|| format!("initialising transactions of `{transactional_id}`"))?;
        inner.begin_transaction().context("opening a transaction")?;
        let run = format!(
            "{:x}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            std::process::id()
        );
        tracing::info!(
            "exactly-once output: transactional id `{transactional_id}`, run {run}; transaction open for checkpoint {first_epoch}"
        );
        Ok(Arc::new(Self {
            producer,
            run,
            state: Mutex::new(TxnState {
                epoch: first_epoch,
                resolved: first_epoch - 1,
                ..TxnState::default()
            }),
            changed: Condvar::new(),
            groups: Mutex::new(BTreeMap::new()),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, TxnState> {
        self.state.lock().expect("transaction lock")
    }

    /// The producer every Kafka sink writes through.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Headers for records written now: [`TXN_HEADER`].
    pub fn headers(&self) -> OwnedHeaders {
        let tag = format!("{}:{}", self.run, self.lock().epoch);
        OwnedHeaders::new().insert(Header {
            key: TXN_HEADER,
            value: Some(&tag),
        })
    }

    /// Source `source` is (again) a member of its group as `metadata` says.
    pub fn set_group(&self, source: &str, metadata: ConsumerGroupMetadata) {
        self.groups
            .lock()
            .expect("groups lock")
            .insert(source.to_string(), metadata);
    }

    /// Waits until checkpoint `id` is committed or given up (a sink calls it after a barrier,
    /// so nothing of the next checkpoint enters this one's transaction).
    pub fn wait_resolved(&self, id: u64) -> Result<()> {
        let mut state = self.lock();
        loop {
            if let Some(failure) = &state.failure {
                bail!("{failure}");
            }
            if state.resolved >= id {
                return Ok(());
            }
            state = self.changed.wait(state).expect("transaction lock");
        }
    }

    /// Commits the open transaction with the Kafka sources' offsets of `manifest`.
    fn commit(&self, manifest: &Manifest, last: bool) -> Result<()> {
        let inner = self.producer.inner();
        self.producer.flush()?;
        let groups = self.groups.lock().expect("groups lock");
        for (source, position) in &manifest.sources {
            let SourcePosition::Kafka { topic, offsets } = position else {
                continue;
            };
            if offsets.is_empty() {
                continue;
            }
            let metadata = groups.get(source).ok_or_else(|| {
                anyhow!("source `{source}` has read records but has no group membership")
            })?;
            let mut list = TopicPartitionList::with_capacity(offsets.len());
            for (partition, offset) in offsets {
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            }
            inner
                .send_offsets_to_transaction(&list, metadata, TIMEOUT)
                .with_context(|| format!("adding the offsets of `{source}` to the transaction"))?;
        }
        drop(groups);
        inner
            .commit_transaction(TIMEOUT)
            .with_context(|| format!("committing the transaction of checkpoint {}", manifest.id))?;
        if !last {
            inner
                .begin_transaction()
                .context("opening the next transaction")?;
        }
        tracing::debug!("checkpoint {}: transaction committed", manifest.id);
        Ok(())
    }
}

impl CommitHook for Transactions {
    fn committed(&self, manifest: &Manifest, last: bool) -> Result<()> {
        let result = self.commit(manifest, last);
        let mut state = self.lock();
        match &result {
            Ok(()) => {
                state.resolved = manifest.id;
                state.epoch = manifest.id + 1;
            }
            Err(err) => {
                state.failure = Some(format!("exactly-once output failed: {err:#}"));
            }
        }
        self.changed.notify_all();
        result
    }

    fn abandoned(&self, id: u64) {
        let mut state = self.lock();
        state.resolved = state.resolved.max(id);
        self.changed.notify_all();
    }

    fn failed(&self) {
        let epoch = {
            let mut state = self.lock();
            state
                .failure
                .get_or_insert_with(|| "the job failed; the open transaction is aborted".into());
            self.changed.notify_all();
            state.epoch
        };
        match self.producer.inner().abort_transaction(TIMEOUT) {
            Ok(()) => tracing::warn!(
                "the job failed: the transaction of checkpoint {epoch} is aborted; a restart produces its records again"
            ),
            Err(err) => tracing::warn!(
                "the job failed and its transaction (checkpoint {epoch}) could not be aborted ({err}); the next start fences it"
            ),
        }
    }
}
