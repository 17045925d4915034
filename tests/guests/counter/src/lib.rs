//! Counts records per `key` in the host's state table and emits each record's running count:
//! `{key, count}`. With `trap_on = K` it panics on a record whose key is K, after it has
//! already written the counts of the batch's earlier records, so a test can see that a failed
//! call's writes are discarded. `table` names the state table (to test bad names). A second
//! input, `more`, is counted the same way (to test barrier alignment across inputs). It also
//! counts every record it has seen in its own memory, `seen`, emitted with each record and
//! kept across restarts through the `snapshot`/`restore` exports (to test guest snapshots).

use std::sync::Arc;

use sabot_guest::arrow::array::{StringBuilder, UInt64Builder};
use sabot_guest::prelude::*;

struct Counter {
    counts: Table<u64>,
    trap_on: Option<String>,
    /// Records seen, in the guest's own memory.
    seen: u64,
}

impl Agent for Counter {
    fn describe() -> AgentInfo {
        AgentInfo::new(
            "counter",
            "Running count of records per key, in host state.",
        )
        .input("records", "Records with a string `key` column")
        .input("more", "More such records (counted in the same table)")
        .output("counts", "`key` and its running `count`")
        .config("trap_on", "Panic on a record with this key", None)
        .config("table", "State table name", Some("counts"))
    }

    fn init(config: &Config) -> Result<Self> {
        Ok(Self {
            counts: Table::new(config.get("table").unwrap_or("counts")),
            trap_on: config.get("trap_on").map(str::to_string),
            seen: 0,
        })
    }

    fn process(&mut self, _ctx: &Context, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        let keys = batch.str_column("key")?;
        let mut names = StringBuilder::new();
        let mut counts = UInt64Builder::new();
        let mut seen = UInt64Builder::new();
        for row in 0..batch.num_rows() {
            let key = keys.value(row);
            if self.trap_on.as_deref() == Some(key) {
                panic!("trapping on purpose at key {key}");
            }
            // One call per row on purpose: the single-key forms are tested too.
            let count = self.counts.get(key)?.unwrap_or(0) + 1;
            self.counts.put(key, &count)?;
            names.append_value(key);
            counts.append_value(count);
            self.seen += 1;
            seen.append_value(self.seen);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("count", DataType::UInt64, false),
            Field::new("seen", DataType::UInt64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(names.finish()),
            Arc::new(counts.finish()),
            Arc::new(seen.finish()),
        ];
        out.emit("counts", RecordBatch::try_new(schema, columns)?)
    }

    fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        Ok(Some(self.seen.to_le_bytes().to_vec()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<()> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| Error::fatal(format!("a snapshot of {} bytes, not 8", snapshot.len())))?;
        self.seen = u64::from_le_bytes(bytes);
        Ok(())
    }
}

export_agent!(Counter);
