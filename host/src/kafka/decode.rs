//! Turning the records of one partition into a record batch: the value decoded in the
//! source's format, optional metadata columns (`_key`, `_timestamp`, `_headers`,
//! `_partition`, `_offset`), and a reason for every record that cannot be decoded.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, Int32Array, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;

use super::records::RecordBuf;
use crate::io::Format;
use crate::io::lines::{self, LineChunk};
use crate::io::schema;

/// How message keys are presented in the `_key` column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyFormat {
    /// UTF-8 text; a key that is not valid UTF-8 makes the record a dead letter.
    #[default]
    String,
    /// Raw bytes (a binary column).
    Bytes,
}

/// Message metadata a source can add as columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataColumn {
    Key,
    Timestamp,
    Headers,
    Partition,
    Offset,
}

impl MetadataColumn {
    fn field(self, key_format: KeyFormat) -> Field {
        match self {
            Self::Key => Field::new(
                "_key",
                match key_format {
                    KeyFormat::String => DataType::Utf8,
                    KeyFormat::Bytes => DataType::Binary,
                },
                true,
            ),
            Self::Timestamp => Field::new("_timestamp", DataType::Int64, true),
            Self::Headers => Field::new("_headers", DataType::Utf8, true),
            Self::Partition => Field::new("_partition", DataType::Int32, false),
            Self::Offset => Field::new("_offset", DataType::Int64, false),
        }
    }
}

/// Decoding rules of one Kafka source.
#[derive(Debug, Clone)]
pub struct DecodeSpec {
    /// Value format: JSON (`jsonl`), `raw` bytes, or Arrow IPC (`ipc`, one stream per message).
    pub format: Format,
    pub key_format: KeyFormat,
    pub metadata: Vec<MetadataColumn>,
    /// Declared schema of the value; inferred from the first records of JSON when `None`.
    pub schema: Option<SchemaRef>,
    /// Records larger than this (key + value) are dead letters.
    pub max_record_bytes: usize,
}

/// The decoded part of a partition's records.
pub struct Decoded {
    pub batch: Option<RecordBatch>,
    /// Offset of each row of `batch`.
    pub offsets: Vec<i64>,
    /// Index (into the input records) and reason of each record that could not be decoded.
    pub bad: Vec<(usize, String)>,
}

/// Decodes batches of one source, remembering an inferred schema.
pub struct Decoder {
    spec: DecodeSpec,
    schema: Option<SchemaRef>,
}

impl Decoder {
    /// A decoder for `spec`; fails for formats Kafka values cannot take.
    pub fn new(spec: DecodeSpec) -> anyhow::Result<Self> {
        match spec.format {
            Format::Jsonl | Format::Raw | Format::Ipc => {}
            other => anyhow::bail!(
                "Kafka values can be JSON (`jsonl`), `raw` or Arrow `ipc`, not `{other:?}`"
            ),
        }
        let schema = match spec.format {
            Format::Raw => Some(Arc::new(Schema::new(vec![Field::new(
                "value",
                DataType::Binary,
                true,
            )]))),
            _ => spec.schema.clone(),
        };
        Ok(Self { spec, schema })
    }

    /// Decodes `records` of `partition`.
    pub fn decode(&mut self, partition: i32, records: &RecordBuf) -> Decoded {
        let mut bad = Vec::new();
        let mut candidates = Vec::with_capacity(records.len());
        for i in 0..records.len() {
            match self.precheck(records, i) {
                Ok(()) => candidates.push(i),
                Err(reason) => bad.push((i, reason)),
            }
        }
        let (values, kept) = match self.spec.format {
            Format::Jsonl => self.decode_json(records, &candidates, &mut bad),
            Format::Ipc => self.decode_ipc(records, &candidates, &mut bad),
            _ => (Some(raw_values(records, &candidates)), candidates),
        };
        bad.sort_by_key(|(i, _)| *i);
        let Some(values) = values.filter(|b| b.num_rows() > 0) else {
            return Decoded {
                batch: None,
                offsets: Vec::new(),
                bad,
            };
        };
        let batch = self.with_metadata(values, partition, records, &kept);
        Decoded {
            batch: Some(batch),
            offsets: kept.iter().map(|&i| records.offset(i)).collect(),
            bad,
        }
    }

    /// Reasons a record is refused before its value is looked at.
    fn precheck(&self, records: &RecordBuf, i: usize) -> Result<(), String> {
        let size = records.size(i);
        if size > self.spec.max_record_bytes {
            return Err(format!(
                "record of {size} bytes exceeds the source's max_record_bytes ({})",
                self.spec.max_record_bytes
            ));
        }
        if records.value(i).is_none() && self.spec.format != Format::Raw {
            return Err("null value (a tombstone); nothing to decode".into());
        }
        if self.spec.metadata.contains(&MetadataColumn::Key)
            && self.spec.key_format == KeyFormat::String
            && let Some(key) = records.key(i)
            && let Err(err) = std::str::from_utf8(key)
        {
            return Err(format!(
                "key is not valid UTF-8 ({err}); use key_format = \"bytes\""
            ));
        }
        Ok(())
    }

    fn decode_json(
        &mut self,
        records: &RecordBuf,
        candidates: &[usize],
        bad: &mut Vec<(usize, String)>,
    ) -> (Option<RecordBatch>, Vec<usize>) {
        // Records are delimited by the chunk's own bookkeeping, not by newlines, so a record
        // written over several lines is still one record. The common case (no record refused
        // before decoding) decodes the buffer as it is.
        let subset;
        let chunk = if candidates.len() == records.len() {
            records.values()
        } else {
            let mut some = LineChunk::default();
            for &i in candidates {
                some.push(i as i64, records.value(i).unwrap_or_default());
            }
            subset = some;
            &subset
        };
        if chunk.len() == 0 {
            return (None, Vec::new());
        }
        if self.schema.is_none() {
            self.schema = schema::infer_json(chunk.lines());
            if let Some(inferred) = &self.schema {
                tracing::info!("inferred schema: {}", schema::describe(inferred));
            }
        }
        let Some(schema) = &self.schema else {
            bad.extend(
                candidates
                    .iter()
                    .map(|&i| (i, "not a JSON object".to_string())),
            );
            return (None, Vec::new());
        };
        let decoded = lines::decode_chunk(&lines::Json, schema, chunk);
        bad.extend(
            decoded
                .bad
                .into_iter()
                .map(|b| (b.number as usize, b.reason)),
        );
        let kept = decoded.offsets.iter().map(|&n| n as usize).collect();
        (decoded.batch, kept)
    }

    fn decode_ipc(
        &mut self,
        records: &RecordBuf,
        candidates: &[usize],
        bad: &mut Vec<(usize, String)>,
    ) -> (Option<RecordBatch>, Vec<usize>) {
        let mut batches = Vec::new();
        let mut kept = Vec::new();
        for &i in candidates {
            let value = records.value(i).unwrap_or_default();
            match read_ipc(value) {
                Ok(batch) => {
                    let expected = self.schema.get_or_insert_with(|| batch.schema());
                    if batch.schema().fields() != expected.fields() {
                        bad.push((
                            i,
                            format!(
                                "Arrow schema ({}) differs from the source's ({})",
                                schema::describe(&batch.schema()),
                                schema::describe(expected)
                            ),
                        ));
                        continue;
                    }
                    // One message holds one batch; rows of a message share its offset.
                    kept.extend(std::iter::repeat_n(i, batch.num_rows()));
                    batches.push(batch);
                }
                Err(reason) => bad.push((i, reason)),
            }
        }
        let Some(schema) = &self.schema else {
            return (None, kept);
        };
        let batch = arrow::compute::concat_batches(schema, &batches).ok();
        (batch, kept)
    }

    fn with_metadata(
        &self,
        values: RecordBatch,
        partition: i32,
        records: &RecordBuf,
        kept: &[usize],
    ) -> RecordBatch {
        if self.spec.metadata.is_empty() {
            return values;
        }
        let mut fields: Vec<Field> = values
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns: Vec<ArrayRef> = values.columns().to_vec();
        let rows = || kept.iter().copied();
        for column in &self.spec.metadata {
            fields.push(column.field(self.spec.key_format));
            columns.push(match column {
                MetadataColumn::Key => key_column(records, rows(), self.spec.key_format),
                MetadataColumn::Timestamp => Arc::new(
                    rows()
                        .map(|i| records.timestamp_ms(i))
                        .collect::<arrow::array::Int64Array>(),
                ),
                MetadataColumn::Headers => headers_column(records, rows()),
                MetadataColumn::Partition => {
                    Arc::new(Int32Array::from(vec![partition; kept.len()]))
                }
                MetadataColumn::Offset => {
                    let mut offsets = Int64Builder::with_capacity(kept.len());
                    offsets.extend(rows().map(|i| Some(records.offset(i))));
                    Arc::new(offsets.finish())
                }
            });
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .expect("metadata columns match the rows")
    }
}

fn raw_values(records: &RecordBuf, candidates: &[usize]) -> RecordBatch {
    let mut values = BinaryBuilder::new();
    for &i in candidates {
        values.append_option(records.value(i));
    }
    RecordBatch::try_from_iter([("value", Arc::new(values.finish()) as ArrayRef)])
        .expect("one binary column")
}

fn read_ipc(bytes: &[u8]) -> Result<RecordBatch, String> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| format!("not an Arrow IPC stream: {e}"))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed Arrow IPC stream: {e}"))?;
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())
}

fn key_column(
    records: &RecordBuf,
    rows: impl Iterator<Item = usize>,
    format: KeyFormat,
) -> ArrayRef {
    match format {
        KeyFormat::String => {
            let mut keys = StringBuilder::new();
            for i in rows {
                // Checked in `precheck`.
                keys.append_option(records.key(i).and_then(|k| std::str::from_utf8(k).ok()));
            }
            Arc::new(keys.finish())
        }
        KeyFormat::Bytes => {
            let mut keys = BinaryBuilder::new();
            for i in rows {
                keys.append_option(records.key(i));
            }
            Arc::new(keys.finish())
        }
    }
}

/// Headers as a JSON object of strings (non-UTF-8 values lossily converted), null if none.
fn headers_column(records: &RecordBuf, rows: impl Iterator<Item = usize>) -> ArrayRef {
    let mut headers = StringBuilder::new();
    for i in rows {
        if records.headers(i).is_empty() {
            headers.append_null();
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = records
            .headers(i)
            .iter()
            .map(|(k, v)| {
                let value = v.as_deref().map_or(serde_json::Value::Null, |v| {
                    serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
                });
                (k.clone(), value)
            })
            .collect();
        headers.append_value(serde_json::Value::Object(object).to_string());
    }
    Arc::new(headers.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array};

    /// (key, value); a `None` key means `k<offset>`.
    type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// Records at offsets from 10.
    fn buffer(values: &[Record]) -> RecordBuf {
        let mut records = RecordBuf::default();
        for (i, (key, value)) in values.iter().enumerate() {
            let offset = 10 + i as i64;
            let default_key = format!("k{offset}").into_bytes();
            records.push(
                offset,
                Some(key.unwrap_or(&default_key)),
                *value,
                Some(1000 + offset),
                vec![("h".into(), Some(b"v".to_vec()))],
            );
        }
        records
    }

    fn json_spec(metadata: Vec<MetadataColumn>) -> DecodeSpec {
        DecodeSpec {
            format: Format::Jsonl,
            key_format: KeyFormat::String,
            metadata,
            schema: None,
            max_record_bytes: 1000,
        }
    }

    #[test]
    fn json_with_bad_records_and_metadata() {
        let mut decoder = Decoder::new(json_spec(vec![
            MetadataColumn::Key,
            MetadataColumn::Offset,
            MetadataColumn::Headers,
        ]))
        .unwrap();
        let big = vec![b' '; 2000];
        let records = buffer(&[
            (None, Some(b"{\"a\":\n 1}")),
            (None, Some(b"{\"a\": ")),
            (None, None),
            (Some(&[0xff, 0xfe]), Some(br#"{"a": 4}"#)),
            (None, Some(&big)),
            (None, Some(br#"{"a": 2}"#)),
        ]);
        let decoded = decoder.decode(0, &records);
        let batch = decoded.batch.unwrap();
        assert_eq!(decoded.offsets, vec![10, 15]);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(
            batch
                .column_by_name("_key")
                .unwrap()
                .as_string::<i32>()
                .value(1),
            "k15"
        );
        assert_eq!(
            batch
                .column_by_name("_headers")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            r#"{"h":"v"}"#
        );
        let reasons: Vec<(usize, &str)> =
            decoded.bad.iter().map(|(i, r)| (*i, r.as_str())).collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert_eq!(reasons[0].0, 1);
        assert!(reasons[1].1.contains("tombstone"));
        assert!(reasons[2].1.contains("UTF-8"));
        assert!(reasons[3].1.contains("max_record_bytes"));
    }

    #[test]
    fn raw_values_keep_nulls() {
        let mut decoder = Decoder::new(DecodeSpec {
            format: Format::Raw,
            ..json_spec(vec![MetadataColumn::Partition])
        })
        .unwrap();
        let decoded = decoder.decode(2, &buffer(&[(None, Some(b"\xff")), (None, None)]));
        let batch = decoded.batch.unwrap();
        assert!(decoded.bad.is_empty());
        assert_eq!(batch.column(0).as_binary::<i32>().value(0), b"\xff");
        assert!(batch.column(0).is_null(1));
        assert_eq!(
            batch
                .column(1)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            2
        );
    }

    #[test]
    fn ipc_messages_with_a_different_schema_are_refused() {
        let encode = |batch: &RecordBatch| {
            let mut out = Vec::new();
            let mut writer =
                arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
            writer.write(batch).unwrap();
            writer.finish().unwrap();
            drop(writer);
            out
        };
        let ints =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)])
                .unwrap();
        let other =
            RecordBatch::try_from_iter([("y", Arc::new(Int32Array::from(vec![1])) as ArrayRef)])
                .unwrap();
        let mut decoder = Decoder::new(DecodeSpec {
            format: Format::Ipc,
            ..json_spec(vec![MetadataColumn::Offset])
        })
        .unwrap();
        let (a, b) = (encode(&ints), encode(&other));
        let decoded = decoder.decode(
            0,
            &buffer(&[
                (None, Some(&a)),
                (None, Some(&b)),
                (None, Some(b"garbage")),
                (None, Some(&a)),
            ]),
        );
        assert_eq!(decoded.offsets, vec![10, 10, 13, 13]);
        assert_eq!(decoded.batch.unwrap().num_rows(), 4);
        assert_eq!(
            decoded.bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
}
