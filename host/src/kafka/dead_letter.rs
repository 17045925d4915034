//! Dead-letter topics: a record from a Kafka source that cannot be processed is produced to
//! its source's dead-letter topic (default `<topic>.dlq`) with the original key and value and
//! headers naming the reason, stage, source topic, partition and offset.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use rdkafka::message::{Header, OwnedHeaders};

use super::client::KafkaConfig;
use super::producer::{Outgoing, Pending, Producer};
use crate::io::DeadLetter;

/// Header names of a dead-letter record.
pub mod headers {
    pub const REASON: &str = "sabot.reason";
    pub const STAGE: &str = "sabot.stage";
    pub const SOURCE_TOPIC: &str = "sabot.source.topic";
    pub const SOURCE_PARTITION: &str = "sabot.source.partition";
    pub const SOURCE_OFFSET: &str = "sabot.source.offset";
}

/// Where the dead letters of one Kafka source go.
#[derive(Debug, Clone)]
pub struct Route {
    pub source_topic: String,
    pub dead_letter_topic: String,
}

/// The dead-letter topics of a job, by source stream.
pub struct DeadLetterTopics {
    producer: Producer,
    routes: HashMap<String, Route>,
}

impl DeadLetterTopics {
    /// Dead-letter topics for the sources in `routes` (by source stream), with one producer.
    pub fn new(kafka: &KafkaConfig, routes: HashMap<String, Route>) -> Result<Self> {
        Ok(Self {
            producer: Producer::new(kafka, "dead-letters")?,
            routes,
        })
    }

    /// Produces `letter` if its source has a dead-letter topic; `false` if it has none.
    pub fn send(&self, letter: &DeadLetter) -> bool {
        let Some(route) = self.routes.get(&letter.input) else {
            return false;
        };
        let partition = letter.partition.to_string();
        let offset = letter.offset.map(|o| o.to_string());
        let mut record_headers = OwnedHeaders::new_with_capacity(5)
            .insert(header(headers::REASON, &letter.reason))
            .insert(header(headers::STAGE, &letter.stage))
            .insert(header(headers::SOURCE_TOPIC, &route.source_topic))
            .insert(header(headers::SOURCE_PARTITION, &partition));
        if let Some(offset) = &offset {
            record_headers = record_headers.insert(header(headers::SOURCE_OFFSET, offset));
        }
        // The original bytes if there are any; a tombstone stays a tombstone; otherwise the
        // row as JSON.
        let json;
        let value: Option<&[u8]> = match (&letter.raw, &letter.record) {
            (Some(raw), _) => Some(raw),
            (None, serde_json::Value::Null) => None,
            (None, record) => {
                json = record.to_string();
                Some(json.as_bytes())
            }
        };
        let pending = Arc::new(Pending {
            ack: letter.ack.clone(),
        });
        let record = Outgoing {
            topic: &route.dead_letter_topic,
            key: letter.key.as_deref(),
            value,
            headers: Some(record_headers),
        };
        if let Err(err) = self.producer.send(record, &pending) {
            tracing::error!("cannot produce a dead letter: {err:#}");
            if let Some(ack) = &letter.ack {
                ack.fail();
            }
        }
        true
    }

    /// Waits until every dead letter is delivered.
    pub fn flush(&self) -> Result<()> {
        self.producer.flush()
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
