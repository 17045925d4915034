//! The dead-letter output: every record that cannot be processed, with the reason. Written as
//! JSON Lines, the file created on the first dead letter.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use serde::Serialize;
use serde_json::Value;

use crate::kafka::DeadLetterTopics;
use crate::pipeline::Ack;

/// One record that could not be processed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetter {
    /// Why it could not be processed.
    pub reason: String,
    /// Where it failed: `source:<name>`, `agent:<name>` or `sink:<stream>`.
    pub stage: String,
    /// The source stream its record was read from (or descends from).
    pub input: String,
    pub partition: u32,
    /// Its offset in the source partition (line number from 0 for line formats), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The record: a JSON object, or the raw text of a line that could not be decoded.
    pub record: Value,
    /// The original message value, when the record came from Kafka undecoded.
    #[serde(skip)]
    pub raw: Option<Vec<u8>>,
    /// The original message key.
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    /// Hold on the source offsets, released once the dead letter is written.
    #[serde(skip)]
    pub ack: Option<Ack>,
}

/// The dead-letter sink shared by every stage of a job: the dead-letter topic of a Kafka
/// source, or else a JSON Lines file.
pub struct DeadLetters {
    path: Option<PathBuf>,
    topics: Option<DeadLetterTopics>,
    writer: Mutex<Option<BufWriter<File>>>,
    count: AtomicU64,
}

impl DeadLetters {
    /// Dead letters go to `path` (JSON Lines), or only into the logs when `None`.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            topics: None,
            writer: Mutex::new(None),
            count: AtomicU64::new(0),
        }
    }

    /// Sends the dead letters of Kafka sources to their dead-letter topics.
    pub fn with_topics(mut self, topics: DeadLetterTopics) -> Self {
        self.topics = Some(topics);
        self
    }

    /// Number of dead letters so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Records one dead letter.
    pub fn send(&self, letter: DeadLetter) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(
                stage = %letter.stage, input = %letter.input, offset = ?letter.offset,
                "dead letter #{n}: {}", letter.reason
            );
        }
        if self
            .topics
            .as_ref()
            .is_some_and(|topics| topics.send(&letter))
        {
            return;
        }
        let Some(path) = &self.path else { return };
        let mut writer = self.writer.lock().expect("dead-letter lock");
        if writer.is_none() {
            match File::create(path) {
                Ok(file) => *writer = Some(BufWriter::new(file)),
                Err(err) => {
                    tracing::error!(path = %path.display(), "cannot create dead-letter file: {err}");
                    return;
                }
            }
        }
        let out = writer.as_mut().expect("opened above");
        let written = serde_json::to_writer(&mut *out, &letter)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(err) = written {
            tracing::error!(path = %path.display(), "cannot write dead letter: {err}");
        }
    }

    /// Flushes buffered dead letters to disk and waits for dead-letter topics to acknowledge
    /// theirs; failures are logged.
    pub fn flush(&self) {
        if let Err(err) = self.sync() {
            tracing::error!("{err:#}");
        }
    }

    /// Like [`Self::flush`], but says whether every dead letter so far is written (a
    /// checkpoint completes only then).
    pub fn sync(&self) -> anyhow::Result<()> {
        if let Some(topics) = &self.topics {
            topics
                .flush()
                .map_err(|err| err.context("dead letters were not all delivered"))?;
        }
        if let Some(out) = self.writer.lock().expect("dead-letter lock").as_mut() {
            out.flush()
                .map_err(|err| anyhow::anyhow!("cannot flush dead letters: {err}"))?;
        }
        Ok(())
    }
}

/// The rows of `batch` as JSON objects, in order.
pub fn rows_as_json(batch: &RecordBatch) -> Vec<Value> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let encoded = writer.write(batch).and_then(|()| writer.finish());
    match encoded.map(|()| serde_json::from_slice::<Vec<Value>>(&writer.into_inner())) {
        Ok(Ok(rows)) => rows,
        _ => (0..batch.num_rows())
            .map(|_| Value::String("<row not representable as JSON>".into()))
            .collect(),
    }
}
