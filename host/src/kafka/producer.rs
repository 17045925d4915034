//! An idempotent producer whose deliveries settle the source offsets they came from: a record
//! is only counted once the broker acknowledges it; a failed delivery fails its source batch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;

use super::client::{KafkaConfig, LoggingContext};
use crate::pipeline::Ack;

/// What a delivery report settles: the source batch the record came from, if tracked.
pub struct Pending {
    pub ack: Option<Ack>,
}

/// Delivery reports: a failure fails the source batch and is remembered for the stage.
pub struct DeliveryContext {
    log: LoggingContext,
    failure: Mutex<Option<String>>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        if let Err((err, _)) = result {
            if let Some(ack) = &pending.ack {
                ack.fail();
            }
            let mut failure = self.failure.lock().expect("failure lock");
            if failure.is_none() {
                tracing::error!(target: "kafka", "{}: delivery failed: {err}", self.log.role);
                *failure = Some(format!("delivery failed: {err}"));
            }
        }
    }
}

/// A producer for one stage.
pub struct Producer {
    inner: ThreadedProducer<DeliveryContext>,
    role: String,
}

/// One record to produce.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    /// `None` sends a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
}

impl Producer {
    /// A producer for `role` (used in logs).
    pub fn new(kafka: &KafkaConfig, role: &str) -> Result<Self> {
        let context = DeliveryContext {
            log: LoggingContext::new(role),
            failure: Mutex::new(None),
        };
        let inner = kafka
            .producer_config()?
            .create_with_context(context)
            .with_context(|| format!("{role}: creating a Kafka producer"))?;
        Ok(Self {
            inner,
            role: role.to_string(),
        })
    }

    /// Queues one record; waits while the producer's queue is full (backpressure).
    pub fn send(&self, record: Outgoing<'_>, pending: &Arc<Pending>) -> Result<()> {
        let mut base = BaseRecord::with_opaque_to(record.topic, pending.clone());
        if let Some(value) = record.value {
            base = base.payload(value);
        }
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(headers) = record.headers {
            base = base.headers(headers);
        }
        loop {
            match self.inner.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) => {
                    bail!("{}: cannot produce to `{}`: {err}", self.role, record.topic)
                }
            }
        }
    }

    /// The librdkafka producer, for transaction calls.
    pub fn inner(&self) -> &ThreadedProducer<DeliveryContext> {
        &self.inner
    }

    /// The first failed delivery, if any.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .context()
            .failure
            .lock()
            .expect("failure lock")
            .clone()
    }

    /// Waits until every queued record is delivered or has failed; fails if any did.
    pub fn flush(&self) -> Result<()> {
        self.inner
            .flush(Timeout::Never)
            .with_context(|| format!("{}: flushing the producer", self.role))?;
        match self.failure() {
            Some(failure) => bail!("{}: {failure}", self.role),
            None => Ok(()),
        }
    }
}
