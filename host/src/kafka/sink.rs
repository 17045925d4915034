//! Writing a stream to a Kafka topic: one message per row (JSON or raw bytes) or one per batch
//! (Arrow IPC), keyed by a column, through an idempotent producer. A row's source offsets are
//! settled when the broker acknowledges its message.

use std::sync::Arc;

use anyhow::{Result, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;

use super::client::KafkaConfig;
use super::producer::{Outgoing, Pending, Producer};
use super::transaction::Transactions;
use crate::io::Format;
use crate::io::sink::{Sink, SinkFailure};
use crate::pipeline::Ack;

/// Where a stream goes on Kafka.
#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    pub topic: String,
    /// `jsonl` (one JSON object per message), `raw` (column `value` as bytes) or `ipc`.
    pub format: Format,
    /// Column whose value (as text, or bytes for binary columns) keys each message.
    pub key_column: Option<String>,
    pub client: KafkaConfig,
}

/// A running Kafka sink.
pub struct KafkaSink {
    spec: KafkaSinkSpec,
    producer: SinkProducer,
}

/// The sink's own idempotent producer, or the job's transactional one (exactly-once).
enum SinkProducer {
    Own(Producer),
    Transactional(Arc<Transactions>),
}

impl SinkProducer {
    fn get(&self) -> &Producer {
        match self {
            SinkProducer::Own(producer) => producer,
            SinkProducer::Transactional(transactions) => transactions.producer(),
        }
    }
}

impl KafkaSink {
    /// A sink for `stream` producing to the topic `spec` names, inside the job's
    /// `transactions` when its output is exactly-once.
    pub fn open(
        spec: &KafkaSinkSpec,
        stream: &str,
        transactions: Option<Arc<Transactions>>,
    ) -> Result<Self> {
        if !matches!(spec.format, Format::Jsonl | Format::Raw | Format::Ipc) {
            bail!(
                "Kafka outputs are JSON (`jsonl`), `raw` or Arrow `ipc`, not `{:?}`",
                spec.format
            );
        }
        if spec.format == Format::Ipc && spec.key_column.is_some() {
            bail!(
                "an Arrow IPC output sends one message per batch and cannot be keyed by a column"
            );
        }
        let producer = match transactions {
            Some(transactions) => SinkProducer::Transactional(transactions),
            None => SinkProducer::Own(Producer::new(&spec.client, &format!("sink:{stream}"))?),
        };
        Ok(Self {
            spec: spec.clone(),
            producer,
        })
    }

    /// The message values of a batch.
    fn values(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        match self.spec.format {
            Format::Ipc => Ok(vec![sabot_ipc::encode(batch)?]),
            Format::Raw => {
                let Some(column) = batch.column_by_name("value") else {
                    bail!("a raw Kafka output needs a `value` column (binary or text)");
                };
                bytes_of(column.as_ref(), "value")
                    .map(|values| values.into_iter().map(|v| v.unwrap_or_default()).collect())
            }
            _ => {
                let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
                writer.write(batch)?;
                writer.finish()?;
                let text = writer.into_inner();
                Ok(text
                    .split(|&b| b == b'\n')
                    .take(batch.num_rows())
                    .map(<[u8]>::to_vec)
                    .collect())
            }
        }
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Option<Vec<Option<Vec<u8>>>>> {
        let Some(name) = &self.spec.key_column else {
            return Ok(None);
        };
        let Some(column) = batch.column_by_name(name) else {
            bail!("the output has no column `{name}` to key messages by");
        };
        bytes_of(column.as_ref(), name).map(Some)
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &RecordBatch, ack: Option<&Ack>) -> Result<()> {
        let producer = self.producer.get();
        if let Some(failure) = producer.failure() {
            return Err(SinkFailure(failure).into());
        }
        // Everything is encoded before anything is sent: a batch goes whole or not at all.
        let values = self.values(batch)?;
        let keys = self.keys(batch)?;
        let headers = match &self.producer {
            SinkProducer::Transactional(transactions) => Some(transactions.headers()),
            SinkProducer::Own(_) => None,
        };
        let pending = Arc::new(Pending { ack: ack.cloned() });
        for (row, value) in values.iter().enumerate() {
            let key = keys.as_ref().and_then(|k| k[row].as_deref());
            let record = Outgoing {
                topic: &self.spec.topic,
                key,
                value: Some(value),
                headers: headers.clone(),
            };
            producer
                .send(record, &pending)
                .map_err(|e| SinkFailure(format!("{e:#}")))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.finish()
    }

    fn await_checkpoint(&mut self, id: u64) -> Result<()> {
        match &self.producer {
            SinkProducer::Transactional(transactions) => transactions
                .wait_resolved(id)
                .map_err(|e| SinkFailure(format!("{e:#}")).into()),
            SinkProducer::Own(_) => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.producer
            .get()
            .flush()
            .map_err(|e| SinkFailure(format!("{e:#}")).into())
    }
}

/// A column's values as bytes: binary as is, anything else as its text form.
fn bytes_of(column: &dyn Array, name: &str) -> Result<Vec<Option<Vec<u8>>>> {
    let text;
    let column = match column.data_type() {
        DataType::Binary | DataType::Utf8 => column,
        _ => {
            text = arrow::compute::cast(column, &DataType::Utf8)
                .map_err(|e| anyhow::anyhow!("column `{name}` cannot be turned into text: {e}"))?;
            text.as_ref()
        }
    };
    Ok(match column.data_type() {
        DataType::Binary => column
            .as_binary::<i32>()
            .iter()
            .map(|v| v.map(<[u8]>::to_vec))
            .collect(),
        _ => column
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(|s| s.as_bytes().to_vec()))
            .collect(),
    })
}
