//! Line formats (JSON Lines, CSV): lines read on a thread, gathered into chunks by count and
//! linger time, and decoded a chunk at a time. A chunk that fails to decode is decoded again
//! line by line so that only the bad lines are dead-lettered.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

/// Lines gathered for one batch: their bytes back to back, with each line's number.
#[derive(Default)]
pub struct LineChunk {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Line number (from 0) of each line.
    pub numbers: Vec<i64>,
}

impl LineChunk {
    /// Appends one line (without its newline) numbered `number`.
    pub fn push(&mut self, number: i64, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.bytes.push(b'\n');
        self.ends.push(self.bytes.len());
        self.numbers.push(number);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Line `i`, without its newline.
    pub fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i] - 1]
    }

    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.line(i))
    }

    /// All lines, newline-terminated.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// When a chunk is handed on.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max_rows: usize,
    pub linger: Duration,
}

/// Reads `reader` line by line on its own thread and calls `on_chunk` with chunks of at most
/// `max_rows` non-blank lines, or fewer once `linger` has passed since the chunk's first line.
/// Line numbers count from 0, blank lines included. Stops at end of input, when `stop` is
/// set, or when `on_chunk` returns `false`. Returns the reader thread's I/O error, if any.
pub fn read_chunks(
    reader: Box<dyn BufRead + Send>,
    batching: Batching,
    stop: &AtomicBool,
    mut on_chunk: impl FnMut(LineChunk) -> bool,
) -> std::io::Result<()> {
    let lines = spawn_line_reader(reader, batching.max_rows.max(1) * 2);
    let mut chunk = LineChunk::default();
    let mut deadline: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = deadline.map_or(Duration::from_millis(200), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match lines.recv_timeout(wait) {
            Ok(Ok((number, line))) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                chunk.push(number, &line);
                let due = *deadline.get_or_insert_with(|| Instant::now() + batching.linger);
                if chunk.len() < batching.max_rows && Instant::now() < due {
                    continue;
                }
            }
            Ok(Err(err)) => {
                if chunk.len() > 0 {
                    on_chunk(chunk);
                }
                return Err(err);
            }
            Err(RecvTimeoutError::Timeout) if deadline.is_none() => continue,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        deadline = None;
        if !on_chunk(std::mem::take(&mut chunk)) {
            return Ok(());
        }
    }
    if chunk.len() > 0 {
        on_chunk(chunk);
    }
    Ok(())
}

type Line = std::io::Result<(i64, Vec<u8>)>;

fn spawn_line_reader(mut reader: Box<dyn BufRead + Send>, capacity: usize) -> Receiver<Line> {
    let (tx, rx) = sync_channel::<Line>(capacity);
    std::thread::Builder::new()
        .name("sabot-line-reader".into())
        .spawn(move || {
            let mut number = 0i64;
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                            line.pop();
                        }
                        if tx.send(Ok((number, line))).is_err() {
                            return;
                        }
                        number += 1;
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err));
                        return;
                    }
                }
            }
        })
        .expect("spawning a line reader thread");
    rx
}

/// A line that could not be decoded.
pub struct BadLine {
    pub number: i64,
    pub raw: String,
    pub reason: String,
}

/// The decoded part of a chunk.
pub struct Decoded {
    pub batch: Option<RecordBatch>,
    /// Line number of each row of `batch`.
    pub offsets: Vec<i64>,
    pub bad: Vec<BadLine>,
}

/// Decodes newline-separated records of one line format against a schema.
pub trait LineFormat {
    fn decode(
        &self,
        schema: &SchemaRef,
        bytes: &[u8],
        rows: usize,
    ) -> Result<RecordBatch, ArrowError>;
}

/// JSON Lines.
pub struct Json;

impl LineFormat for Json {
    fn decode(
        &self,
        schema: &SchemaRef,
        bytes: &[u8],
        rows: usize,
    ) -> Result<RecordBatch, ArrowError> {
        let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
            .with_batch_size(rows.max(1))
            .build_decoder()?;
        push_all(&mut decoder, schema, bytes, rows)
    }
}

/// CSV data lines (the header is handled by the source).
pub struct Csv;

impl LineFormat for Csv {
    fn decode(
        &self,
        schema: &SchemaRef,
        bytes: &[u8],
        rows: usize,
    ) -> Result<RecordBatch, ArrowError> {
        let mut decoder = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_header(false)
            .with_batch_size(rows.max(1))
            .build_decoder();
        push_all(&mut decoder, schema, bytes, rows)
    }
}

/// Arrow's push decoders for JSON and CSV, which share this shape.
trait PushDecoder {
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError>;
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
}

impl PushDecoder for arrow::json::reader::Decoder {
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError> {
        self.decode(bytes)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.flush()
    }
}

impl PushDecoder for arrow::csv::reader::Decoder {
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError> {
        self.decode(bytes)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.flush()
    }
}

/// Feeds all of `bytes` to `decoder`, then checks that exactly `rows` records came out.
fn push_all(
    decoder: &mut impl PushDecoder,
    schema: &SchemaRef,
    bytes: &[u8],
    rows: usize,
) -> Result<RecordBatch, ArrowError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let read = decoder.decode(rest)?;
        if read == 0 {
            break;
        }
        rest = &rest[read..];
    }
    let batch = decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    if batch.num_rows() != rows {
        return Err(ArrowError::ParseError(format!(
            "expected {rows} records, decoded {}",
            batch.num_rows()
        )));
    }
    Ok(batch)
}

/// Decodes a chunk in one go; if that fails, line by line, keeping the good lines in order.
pub fn decode_chunk(format: &dyn LineFormat, schema: &SchemaRef, chunk: &LineChunk) -> Decoded {
    if let Ok(batch) = format.decode(schema, chunk.bytes(), chunk.len()) {
        return Decoded {
            batch: Some(batch),
            offsets: chunk.numbers.clone(),
            bad: Vec::new(),
        };
    }
    let mut good = Vec::new();
    let mut offsets = Vec::new();
    let mut bad = Vec::new();
    for i in 0..chunk.len() {
        let line = chunk.line(i);
        let mut one = line.to_vec();
        one.push(b'\n');
        match format.decode(schema, &one, 1) {
            Ok(batch) => {
                good.push(batch);
                offsets.push(chunk.numbers[i]);
            }
            Err(err) => bad.push(BadLine {
                number: chunk.numbers[i],
                raw: String::from_utf8_lossy(line).into_owned(),
                reason: explain(err),
            }),
        }
    }
    let batch = (!good.is_empty())
        .then(|| arrow::compute::concat_batches(schema, &good).expect("batches share the schema"));
    Decoded {
        batch,
        offsets,
        bad,
    }
}

/// A decoding error in words a user can act on.
fn explain(err: ArrowError) -> String {
    let text = err.to_string();
    if let Some(pos) = text.find("non-nullable") {
        // The message ends with the field's Debug form, whose first quoted string is its name.
        if let Some(name) = text[pos..].split('"').nth(1) {
            return format!("missing required field `{name}`");
        }
    }
    text
}
