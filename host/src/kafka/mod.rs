//! Kafka I/O through librdkafka: sources that consume topics as a consumer group, sinks that
//! produce with idempotence, dead-letter topics, and topic administration.
//!
//! Delivery is at-least-once: a source commits an offset only after every output and dead
//! letter derived from the records before it has been acknowledged by the broker (see
//! [`crate::pipeline::ack`]). librdkafka does the network I/O on its own threads and
//! reconnects with backoff when a broker goes away; the stage threads poll it.

pub mod admin;
mod batcher;
pub mod client;
pub mod dead_letter;
pub mod decode;
mod group;
pub mod job;
mod producer;
pub mod records;
pub mod recovery;
pub mod sink;
pub mod source;
pub mod transaction;

pub use admin::{Admin, TopicInfo};
pub use client::KafkaConfig;
pub use dead_letter::{DeadLetterTopics, Route};
pub use decode::{DecodeSpec, KeyFormat, MetadataColumn};
pub use job::{MissingTopic, prepare};
pub use sink::{KafkaSink, KafkaSinkSpec};
pub use source::KafkaSourceSpec;
pub use transaction::{TXN_HEADER, Transactions};
