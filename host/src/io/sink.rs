//! File and stdout sinks: JSON Lines, CSV, Arrow IPC, or nothing (`null:`).

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::Format;
use crate::pipeline::Ack;

/// A sink error that is not about the batch's data (the output is unusable, e.g. deliveries
/// to a broker failed): the job stops instead of dead-lettering the batch.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkFailure(pub String);

/// Where a sink writes and how.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The stream it consumes, e.g. `fraud.alerts`.
    pub stream: String,
    /// File path, `-` for stdout, `null:`, or `kafka:TOPIC`.
    pub path: String,
    pub format: Format,
    /// Set when the sink is a Kafka topic.
    pub kafka: Option<crate::kafka::KafkaSinkSpec>,
}

/// A sink that writes record batches.
pub trait Sink: Send {
    /// Writes one batch. `ack` is the hold on its source offsets, for sinks that settle them
    /// only once the batch is durably written; others let it go on return.
    fn write(&mut self, batch: &RecordBatch, ack: Option<&Ack>) -> Result<()>;
    /// Pushes what was written so far out of the host's buffers (at a checkpoint barrier):
    /// to the file, or to the broker and its acknowledgement.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// After barrier `id` has been acknowledged: waits until the checkpoint is committed (or
    /// given up), for sinks whose output becomes visible only then.
    fn await_checkpoint(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }
    /// Flushes and closes the output.
    fn finish(&mut self) -> Result<()>;
}

/// Opens the sink `spec` describes. Files are created (truncated) now.
pub fn open(spec: &SinkSpec) -> Result<Box<dyn Sink>> {
    if spec.format == Format::Null {
        return Ok(Box::new(NullSink));
    }
    let out: Box<dyn Write + Send> = if spec.path == "-" {
        Box::new(std::io::stdout())
    } else {
        let file = File::create(&spec.path)
            .with_context(|| format!("cannot create output `{}`", spec.path))?;
        Box::new(file)
    };
    let out = BufWriter::with_capacity(1 << 16, out);
    Ok(match spec.format {
        Format::Jsonl => Box::new(JsonSink(arrow::json::LineDelimitedWriter::new(out))),
        Format::Csv => Box::new(CsvSink(Some(arrow::csv::Writer::new(out)))),
        Format::Ipc => Box::new(IpcSink {
            out: Some(out),
            writer: None,
        }),
        Format::Parquet => bail!("Parquet output is not supported yet; use .jsonl, .csv or .arrow"),
        Format::Raw => bail!("`raw` is a Kafka format; file outputs take .jsonl, .csv or .arrow"),
        Format::Null => unreachable!("handled above"),
    })
}

struct NullSink;

impl Sink for NullSink {
    fn write(&mut self, _batch: &RecordBatch, _ack: Option<&Ack>) -> Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

type Out = BufWriter<Box<dyn Write + Send>>;

struct JsonSink(arrow::json::LineDelimitedWriter<Out>);

impl Sink for JsonSink {
    fn write(&mut self, batch: &RecordBatch, _ack: Option<&Ack>) -> Result<()> {
        Ok(self.0.write(batch)?)
    }
    fn flush(&mut self) -> Result<()> {
        Ok(self.0.get_mut().flush()?)
    }
    fn finish(&mut self) -> Result<()> {
        self.0.finish()?;
        Ok(self.0.get_mut().flush()?)
    }
}

struct CsvSink(Option<arrow::csv::Writer<Out>>);

impl Sink for CsvSink {
    fn write(&mut self, batch: &RecordBatch, _ack: Option<&Ack>) -> Result<()> {
        match &mut self.0 {
            Some(writer) => Ok(writer.write(batch)?),
            None => bail!("CSV output already finished"),
        }
    }
    fn finish(&mut self) -> Result<()> {
        match self.0.take() {
            Some(writer) => Ok(writer.into_inner().flush()?),
            None => Ok(()),
        }
    }
}

/// Arrow IPC stream; every batch must have the schema of the first.
struct IpcSink {
    out: Option<Out>,
    writer: Option<(SchemaRef, arrow::ipc::writer::StreamWriter<Out>)>,
}

impl Sink for IpcSink {
    fn write(&mut self, batch: &RecordBatch, _ack: Option<&Ack>) -> Result<()> {
        if self.writer.is_none() {
            let out = self
                .out
                .take()
                .expect("output present until the first batch");
            let writer = arrow::ipc::writer::StreamWriter::try_new(out, &batch.schema())?;
            self.writer = Some((batch.schema(), writer));
        }
        let (schema, writer) = self.writer.as_mut().expect("created above");
        if *schema != batch.schema() {
            bail!(
                "batch schema differs from the stream's first batch; Arrow IPC output needs one schema"
            );
        }
        Ok(writer.write(batch)?)
    }
    fn flush(&mut self) -> Result<()> {
        match &mut self.writer {
            Some((_, writer)) => Ok(writer.flush()?),
            None => Ok(()),
        }
    }
    fn finish(&mut self) -> Result<()> {
        match &mut self.writer {
            Some((_, writer)) => {
                writer.finish()?;
                Ok(writer.get_mut().flush()?)
            }
            None => Ok(self.out.as_mut().map_or(Ok(()), |out| out.flush())?),
        }
    }
}
