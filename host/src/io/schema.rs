//! Declared schemas (from configuration) and schema inference for line formats.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, bail};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Builds a schema from `column = "type"` pairs, in the given order. Types: `int64`, `int32`,
/// `float64`, `float32`, `utf8`/`string`, `bool`, `timestamp_ms`; a trailing `?` makes the
/// column nullable (columns are required otherwise).
pub fn declared(columns: &[(String, String)]) -> Result<SchemaRef> {
    let fields = columns
        .iter()
        .map(|(name, ty)| {
            let (ty, nullable) = match ty.trim().strip_suffix('?') {
                Some(base) => (base, true),
                None => (ty.trim(), false),
            };
            Ok(Field::new(
                name,
                parse_type(ty).map_err(|e| anyhow::anyhow!("column `{name}`: {e}"))?,
                nullable,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    if fields.is_empty() {
        bail!("a declared schema needs at least one column");
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn parse_type(ty: &str) -> Result<DataType> {
    Ok(match ty.to_ascii_lowercase().as_str() {
        "int64" | "i64" | "long" => DataType::Int64,
        "int32" | "i32" | "int" => DataType::Int32,
        "float64" | "f64" | "double" => DataType::Float64,
        "float32" | "f32" | "float" => DataType::Float32,
        "utf8" | "string" | "str" => DataType::Utf8,
        "bool" | "boolean" => DataType::Boolean,
        "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        other => bail!(
            "unknown type `{other}` (use int64, int32, float64, float32, utf8, bool or timestamp_ms)"
        ),
    })
}

/// Parses a declared schema given as a TOML table, keeping the file's column order.
pub fn from_toml(table: &toml::Table) -> Result<SchemaRef> {
    let mut columns = Vec::new();
    for (name, value) in table {
        let Some(ty) = value.as_str() else {
            bail!("schema column `{name}` needs a type string")
        };
        columns.push((name.clone(), ty.to_string()));
    }
    declared(&columns)
}

/// Infers a schema from JSON lines (those that parse); `None` when none does.
pub fn infer_json<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<SchemaRef> {
    let values: Vec<serde_json::Value> = lines
        .filter_map(|line| serde_json::from_slice(line).ok())
        .filter(|v: &serde_json::Value| v.is_object())
        .collect();
    if values.is_empty() {
        return None;
    }
    // Keep the columns in the order they first appear in the data.
    let mut order: Vec<String> = Vec::new();
    for value in &values {
        for key in value.as_object().into_iter().flat_map(|o| o.keys()) {
            if !order.contains(key) {
                order.push(key.clone());
            }
        }
    }
    let inferred =
        arrow::json::reader::infer_json_schema_from_iterator(values.into_iter().map(Ok)).ok()?;
    let fields: Vec<Field> = order
        .iter()
        .filter_map(|name| inferred.field_with_name(name).ok().cloned())
        .collect();
    Some(Arc::new(Schema::new(fields)))
}

/// Infers a CSV schema from the header and sample lines.
pub fn infer_csv<'a>(header: &[u8], lines: impl Iterator<Item = &'a [u8]>) -> Result<SchemaRef> {
    let mut sample = header.to_vec();
    sample.push(b'\n');
    for line in lines {
        sample.extend_from_slice(line);
        sample.push(b'\n');
    }
    let (schema, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(sample.as_slice(), None)?;
    Ok(Arc::new(schema))
}

/// Column names of a CSV header line.
pub fn csv_header_names(header: &[u8]) -> Result<Vec<String>> {
    let schema = infer_csv(header, std::iter::empty())?;
    Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
}

/// A declared schema reordered to the columns of a CSV header; an error names columns the
/// header lacks.
pub fn align_to_header(schema: &SchemaRef, header: &[String]) -> Result<SchemaRef> {
    let by_name: BTreeMap<&str, &Field> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.as_ref()))
        .collect();
    let missing: Vec<&str> = by_name
        .keys()
        .copied()
        .filter(|n| !header.iter().any(|h| h == n))
        .collect();
    if !missing.is_empty() {
        bail!(
            "CSV header lacks declared column(s): {}",
            missing.join(", ")
        );
    }
    let fields: Vec<Field> = header
        .iter()
        .map(|name| {
            by_name
                .get(name.as_str())
                .map(|f| (*f).clone())
                .unwrap_or_else(|| Field::new(name, DataType::Utf8, true))
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// `name: type, …` for logs and errors.
pub fn describe(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_and_nullability() {
        let schema = declared(&[
            ("id".into(), "int64".into()),
            ("note".into(), "utf8?".into()),
        ])
        .unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(!schema.field(0).is_nullable());
        assert!(schema.field(1).is_nullable());
        let err = declared(&[("x".into(), "decimal".into())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column `x`") && err.contains("decimal"),
            "{err}"
        );
    }

    #[test]
    fn infers_json_from_parseable_lines() {
        let lines: [&[u8]; 3] = [br#"{"a": 1, "b": "x"}"#, b"garbage", br#"{"a": 2.5}"#];
        let schema = infer_json(lines.into_iter()).unwrap();
        assert_eq!(
            schema.field_with_name("a").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(
            schema.field_with_name("b").unwrap().data_type(),
            &DataType::Utf8
        );
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["a", "b"], "columns keep the order of the data");
        let reversed = infer_json([br#"{"z": 1, "a": 2}"#.as_slice()].into_iter()).unwrap();
        assert_eq!(reversed.field(0).name(), "z");
        assert!(infer_json([b"nope".as_slice()].into_iter()).is_none());
    }

    #[test]
    fn aligns_declared_schema_to_csv_header() {
        let schema =
            declared(&[("b".into(), "int64".into()), ("a".into(), "utf8".into())]).unwrap();
        let aligned = align_to_header(&schema, &["a".into(), "b".into(), "c".into()]).unwrap();
        let names: Vec<_> = aligned.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(align_to_header(&schema, &["a".into()]).is_err());
    }
}
