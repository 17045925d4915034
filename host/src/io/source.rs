//! File and stdin sources: JSON Lines, CSV, Arrow IPC and Parquet, read into record batches
//! of bounded size. Undecodable records go to the dead letters; reading goes on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde_json::Value;

use super::lines::{self, Batching, LineChunk, LineFormat};
use super::watermark::Watermark;
use super::{DeadLetter, DeadLetters, Format, schema};

/// Where a source reads from and how.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Stream name of the source.
    pub name: String,
    /// File path, or `-` for stdin.
    pub path: String,
    pub format: Format,
    /// Declared schema; inferred from the first batch of a line format when `None`.
    pub schema: Option<SchemaRef>,
    /// Int64 (ms) or millisecond-timestamp column that carries event time, for watermarks.
    pub event_time_column: Option<String>,
    /// How far behind the newest event time the watermark stays.
    pub allowed_lateness_ms: i64,
    /// Offset (line number or row index) of the first record to hand on: a job restored from
    /// a checkpoint skips what came before it.
    pub resume_from: i64,
    /// Set when the source is a Kafka topic (`path` is then `kafka:TOPIC`).
    pub kafka: Option<crate::kafka::KafkaSourceSpec>,
}

/// A batch read from a source.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub batch: RecordBatch,
    pub partition: u32,
    /// Offset of each row in its partition.
    pub offsets: Arc<[i64]>,
    pub watermark_ms: Option<i64>,
    /// Hold on the batch's offsets, for sources that commit them.
    pub ack: Option<crate::pipeline::Ack>,
}

/// Reads the whole source, calling `emit` for each batch until it returns `false`, the input
/// ends, or `stop` is set.
pub fn run(
    spec: &SourceSpec,
    batching: Batching,
    stop: &AtomicBool,
    dead: &DeadLetters,
    emit: &mut dyn FnMut(SourceBatch) -> bool,
) -> Result<()> {
    let mut watermark = Watermark::new(spec.event_time_column.clone(), spec.allowed_lateness_ms);
    let mut emit = |batch: RecordBatch, offsets: Arc<[i64]>| -> bool {
        // Offsets ascend: what comes before the resume point is a prefix of the batch.
        let skip = offsets.partition_point(|&o| o < spec.resume_from);
        if skip == offsets.len() {
            return true;
        }
        let (batch, offsets) = match skip {
            0 => (batch, offsets),
            _ => (
                batch.slice(skip, batch.num_rows() - skip),
                offsets[skip..].into(),
            ),
        };
        let watermark_ms = watermark.advance(&batch);
        emit(SourceBatch {
            batch,
            partition: 0,
            offsets,
            watermark_ms,
            ack: None,
        })
    };
    match spec.format {
        Format::Jsonl | Format::Csv => run_lines(spec, batching, stop, dead, &mut emit),
        Format::Ipc => run_ipc(spec, batching, stop, &mut emit),
        Format::Parquet => run_parquet(spec, batching, stop, &mut emit),
        Format::Null | Format::Raw => anyhow::bail!(
            "`{:?}` is not a file format; source `{}` cannot read it",
            spec.format,
            spec.name
        ),
    }
}

/// Opens a source path: `-` is stdin.
fn open(path: &str) -> Result<Box<dyn BufRead + Send>> {
    if path == "-" {
        return Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            std::io::stdin(),
        )));
    }
    let file = File::open(path).with_context(|| format!("cannot open input `{path}`"))?;
    Ok(Box::new(BufReader::with_capacity(1 << 16, file)))
}

fn run_lines(
    spec: &SourceSpec,
    batching: Batching,
    stop: &AtomicBool,
    dead: &DeadLetters,
    emit: &mut dyn FnMut(RecordBatch, Arc<[i64]>) -> bool,
) -> Result<()> {
    let mut reader = open(&spec.path)?;
    let mut schema = spec.schema.clone();
    // The CSV header line, read once: it names the columns and seeds schema inference.
    let mut csv_header = Vec::new();
    let format: &dyn LineFormat = match spec.format {
        Format::Csv => {
            reader.read_until(b'\n', &mut csv_header)?;
            csv_header.truncate(csv_header.trim_ascii_end().len());
            if csv_header.is_empty() {
                tracing::warn!(source = %spec.name, "CSV input is empty (no header line)");
                return Ok(());
            }
            let names = schema::csv_header_names(&csv_header)?;
            schema = match schema {
                Some(declared) => Some(schema::align_to_header(&declared, &names)?),
                None => None,
            };
            &lines::Csv
        }
        _ => &lines::Json,
    };
    // Line numbers of CSV data start after the header.
    let first_line = i64::from(spec.format == Format::Csv);
    let mut empty = true;

    lines::read_chunks(reader, batching, stop, |mut chunk: LineChunk| {
        empty = false;
        chunk.numbers.iter_mut().for_each(|n| *n += first_line);
        if schema.is_none() {
            schema = match spec.format {
                Format::Csv => schema::infer_csv(&csv_header, chunk.lines()).ok(),
                _ => schema::infer_json(chunk.lines()),
            };
            if let Some(inferred) = &schema {
                tracing::info!(source = %spec.name, "inferred schema: {}", schema::describe(inferred));
            }
        }
        let Some(schema) = &schema else {
            for i in (0..chunk.len()).filter(|&i| chunk.numbers[i] >= spec.resume_from) {
                let raw = String::from_utf8_lossy(chunk.line(i)).into_owned();
                dead.send(bad_line(spec, chunk.numbers[i], raw, "not a JSON object".into()));
            }
            return true;
        };
        let decoded = lines::decode_chunk(format, schema, &chunk);
        for bad in decoded.bad.into_iter().filter(|b| b.number >= spec.resume_from) {
            dead.send(bad_line(spec, bad.number, bad.raw, bad.reason));
        }
        match decoded.batch {
            Some(batch) => emit(batch, decoded.offsets.into()),
            None => true,
        }
    })
    .with_context(|| format!("reading input `{}`", spec.path))?;
    if empty {
        tracing::warn!(source = %spec.name, path = %spec.path, "input holds no records");
    }
    Ok(())
}

/// A dead letter for a line that could not be decoded, keeping its raw text.
fn bad_line(spec: &SourceSpec, number: i64, raw: String, reason: String) -> DeadLetter {
    DeadLetter {
        reason,
        stage: format!("source:{}", spec.name),
        input: spec.name.clone(),
        partition: 0,
        offset: Some(number),
        record: Value::String(raw),
        ..DeadLetter::default()
    }
}

fn run_ipc(
    spec: &SourceSpec,
    batching: Batching,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(RecordBatch, Arc<[i64]>) -> bool,
) -> Result<()> {
    let mut reader = open(&spec.path)?;
    let is_file_format = reader.fill_buf()?.starts_with(b"ARROW1");
    let batches: Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>> =
        if is_file_format {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes)?;
            Box::new(arrow::ipc::reader::FileReader::try_new(
                std::io::Cursor::new(bytes),
                None,
            )?)
        } else {
            Box::new(arrow::ipc::reader::StreamReader::try_new(reader, None)?)
        };
    emit_sliced(spec, batches, batching, stop, emit)
}

fn run_parquet(
    spec: &SourceSpec,
    batching: Batching,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(RecordBatch, Arc<[i64]>) -> bool,
) -> Result<()> {
    let file =
        File::open(&spec.path).with_context(|| format!("cannot open input `{}`", spec.path))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("`{}` is not a readable Parquet file", spec.path))?
        .with_batch_size(batching.max_rows)
        .build()?;
    emit_sliced(spec, Box::new(reader), batching, stop, emit)
}

/// Hands on batches of an Arrow reader, cut to at most `max_rows` rows, numbering rows.
fn emit_sliced(
    spec: &SourceSpec,
    batches: Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + '_>,
    batching: Batching,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(RecordBatch, Arc<[i64]>) -> bool,
) -> Result<()> {
    let mut next_offset = 0i64;
    for batch in batches {
        let batch = batch.with_context(|| format!("reading input `{}`", spec.path))?;
        let mut start = 0;
        while start < batch.num_rows() {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let len = batching.max_rows.min(batch.num_rows() - start);
            let offsets: Arc<[i64]> = (next_offset..next_offset + len as i64).collect();
            next_offset += len as i64;
            if !emit(batch.slice(start, len), offsets) {
                return Ok(());
            }
            start += len;
        }
    }
    Ok(())
}

/// Checks that a source can be opened, for an early, clear error.
pub fn check_readable(spec: &SourceSpec) -> Result<()> {
    if spec.path != "-" {
        File::open(&spec.path).with_context(|| format!("cannot open input `{}`", spec.path))?;
    }
    Ok(())
}
