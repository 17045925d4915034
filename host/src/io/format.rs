//! Record formats and how they are recognised.

use std::path::Path;

use serde::Deserialize;

/// A record format of a source or sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines: one JSON object per line.
    Jsonl,
    /// CSV with a header line.
    Csv,
    /// Arrow IPC, file or stream format.
    Ipc,
    /// Apache Parquet (sources only).
    Parquet,
    /// Kafka only: each message's value as bytes, in one binary column `value`.
    Raw,
    /// Discard everything (sinks only; for benchmarks).
    Null,
}

impl Format {
    /// The format a path's extension implies; `-` (stdio) means JSON Lines, `null:` means
    /// [`Format::Null`].
    pub fn detect(path: &str) -> Option<Self> {
        if path == "-" {
            return Some(Self::Jsonl);
        }
        if path == "null:" {
            return Some(Self::Null);
        }
        let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "arrow" | "arrows" | "ipc" | "feather" => Some(Self::Ipc),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format of `path`: the explicit one if given, else detected from the path.
    pub fn resolve(explicit: Option<Self>, path: &str) -> anyhow::Result<Self> {
        explicit.or_else(|| Self::detect(path)).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell the format of `{path}` from its extension; \
                 use .jsonl, .csv, .arrow, .parquet or set `format`"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn detects_by_extension() {
        assert_eq!(Format::detect("a/b.JSONL"), Some(Format::Jsonl));
        assert_eq!(Format::detect("x.csv"), Some(Format::Csv));
        assert_eq!(Format::detect("x.arrow"), Some(Format::Ipc));
        assert_eq!(Format::detect("x.parquet"), Some(Format::Parquet));
        assert_eq!(Format::detect("-"), Some(Format::Jsonl));
        assert_eq!(Format::detect("null:"), Some(Format::Null));
        assert_eq!(Format::detect("x.txt"), None);
        assert!(Format::resolve(None, "x.txt").is_err());
        assert_eq!(
            Format::resolve(Some(Format::Csv), "x.txt").unwrap(),
            Format::Csv
        );
    }
}
