//! The RocksDB backend: one column family per table, one write batch per commit.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options, WriteBatch, WriteOptions,
};

use super::backend::{EntryVisitor, StateBackend, TableId, WriteSet};
use super::entry;

/// State in RocksDB on local disk.
pub struct RocksBackend {
    db: DBWithThreadMode<MultiThreaded>,
    path: PathBuf,
    /// Options of the tables created while open. Their TTL compaction filter must outlive the
    /// database, which `create_cf` does not ensure (fields drop in order: `db` first).
    created: std::sync::Mutex<Vec<Options>>,
}

impl RocksBackend {
    /// Opens (or creates) the database in `dir`, with every table it already holds.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.increase_parallelism(2);
        // A new database has no column families to list yet.
        let existing =
            DBWithThreadMode::<MultiThreaded>::list_cf(&options, dir).unwrap_or_default();
        let families = existing
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, table_options()));
        let db = DBWithThreadMode::open_cf_descriptors(&options, dir, families)
            .with_context(|| format!("cannot open RocksDB state in {}", dir.display()))?;
        tracing::info!(
            dir = %dir.display(),
            tables = existing.len().saturating_sub(1),
            "state backend: RocksDB"
        );
        Ok(Self {
            db,
            path: dir.to_path_buf(),
            created: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Replaces the database in `live` with a copy of the snapshot in `snapshot` (SST files
    /// are immutable and hard-linked where the file system allows; the rest is copied).
    pub fn restore(snapshot: &Path, live: &Path) -> Result<Self> {
        clear(live)?;
        std::fs::create_dir_all(live)
            .with_context(|| format!("cannot create the state directory {}", live.display()))?;
        for entry in std::fs::read_dir(snapshot)
            .with_context(|| format!("cannot read the state snapshot {}", snapshot.display()))?
        {
            let from = entry?.path();
            let to = live.join(from.file_name().expect("a file name"));
            let linked = from.extension().is_some_and(|e| e == "sst")
                && std::fs::hard_link(&from, &to).is_ok();
            if !linked {
                std::fs::copy(&from, &to).with_context(|| {
                    format!("cannot copy {} to {}", from.display(), to.display())
                })?;
            }
        }
        Self::open(live)
    }

    fn family(&self, table: &TableId) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>> {
        if let Some(family) = self.db.cf_handle(table.as_str()) {
            return Ok(family);
        }
        let options = table_options();
        self.db
            .create_cf(table.as_str(), &options)
            .with_context(|| format!("cannot create table {table} in {}", self.path.display()))?;
        self.created.lock().expect("options lock").push(options);
        self.db
            .cf_handle(table.as_str())
            .with_context(|| format!("table {table} vanished after its creation"))
    }
}

/// Options of a table's column family: expired entries are dropped when RocksDB compacts.
fn table_options() -> Options {
    let mut options = Options::default();
    options.set_compaction_filter("sabot-ttl", |_level, _key, stored| {
        if entry::expired(stored, entry::now_ms()) {
            Decision::Remove
        } else {
            Decision::Keep
        }
    });
    options
}

/// Deletes the database in `dir`, if any.
pub fn clear(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot clear {}", dir.display())),
    }
}

/// Calls `visit(table, scoped key, stored entry)` for every entry of the RocksDB snapshot in
/// `dir`, opened read-only.
pub fn read_snapshot(dir: &Path, visit: &mut EntryVisitor<'_>) -> Result<()> {
    let options = Options::default();
    let tables = DBWithThreadMode::<MultiThreaded>::list_cf(&options, dir)
        .with_context(|| format!("{} is not a RocksDB snapshot", dir.display()))?;
    let db =
        DBWithThreadMode::<MultiThreaded>::open_cf_for_read_only(&options, dir, &tables, false)
            .with_context(|| format!("cannot open the RocksDB snapshot {}", dir.display()))?;
    for table in tables.iter().filter(|t| *t != "default") {
        let family = db.cf_handle(table).expect("listed family");
        for item in db.iterator_cf(&family, rocksdb::IteratorMode::Start) {
            let (key, stored) = item.with_context(|| format!("reading table {table}"))?;
            visit(table, &key, &stored)?;
        }
    }
    Ok(())
}

impl StateBackend for RocksBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn get_many(&self, table: &TableId, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let Some(family) = self.db.cf_handle(table.as_str()) else {
            return Ok(vec![None; keys.len()]);
        };
        self.db
            .batched_multi_get_cf(&family, keys.iter().copied(), false)
            .into_iter()
            .map(|found| {
                found
                    .map(|value| value.map(|v| v.to_vec()))
                    .with_context(|| format!("reading table {table}"))
            })
            .collect()
    }

    fn write(&self, writes: WriteSet) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (table, key, stored) in &writes.ops {
            let family = self.family(table)?;
            match stored {
                Some(stored) => batch.put_cf(&family, key, stored),
                None => batch.delete_cf(&family, key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db
            .write_opt(batch, &options)
            .with_context(|| format!("writing state to {}", self.path.display()))
    }

    fn snapshot(&self, dir: &Path) -> Result<()> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|checkpoint| checkpoint.create_checkpoint(dir))
            .with_context(|| format!("cannot snapshot RocksDB state into {}", dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::{encode, scoped_key};
    use super::*;

    #[test]
    fn tables_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let table = TableId::new("counts");
        let key = scoped_key(3, b"k");
        {
            let backend = RocksBackend::open(dir.path()).unwrap();
            backend
                .write(WriteSet {
                    ops: vec![(table.clone(), key.clone(), Some(encode(b"7", 0)))],
                })
                .unwrap();
        }
        let backend = RocksBackend::open(dir.path()).unwrap();
        assert_eq!(
            backend.get_many(&table, &[&key]).unwrap(),
            vec![Some(encode(b"7", 0))]
        );
        let other = TableId::new("other");
        assert_eq!(backend.get_many(&other, &[&key]).unwrap(), vec![None]);
    }

    #[test]
    fn a_snapshot_restores_into_a_fresh_live_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (live, snap) = (dir.path().join("live"), dir.path().join("chk/agent"));
        let table = TableId::new("counts");
        let (k1, k2) = (scoped_key(0, b"a"), scoped_key(1, b"b"));
        let write = |backend: &RocksBackend, key: &[u8], value: &[u8]| {
            backend
                .write(WriteSet {
                    ops: vec![(table.clone(), key.to_vec(), Some(encode(value, 0)))],
                })
                .unwrap()
        };
        {
            let backend = RocksBackend::open(&live).unwrap();
            write(&backend, &k1, b"1");
            backend.snapshot(&snap).unwrap();
            // Written after the snapshot: gone once the snapshot is restored.
            write(&backend, &k2, b"2");
            write(&backend, &k1, b"changed");
        }
        let mut seen = Vec::new();
        read_snapshot(&snap, &mut |t, k, v| {
            seen.push((t.to_string(), k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![("counts".to_string(), k1.clone(), encode(b"1", 0))]
        );
        let restored = RocksBackend::restore(&snap, &live).unwrap();
        assert_eq!(
            restored.get_many(&table, &[&k1, &k2]).unwrap(),
            vec![Some(encode(b"1", 0)), None]
        );
    }

    #[test]
    fn a_write_set_spans_tables() {
        let dir = tempfile::tempdir().unwrap();
        let backend = RocksBackend::open(dir.path()).unwrap();
        let (a, b) = (TableId::new("a"), TableId::new("b"));
        let key = scoped_key(0, b"k");
        backend
            .write(WriteSet {
                ops: vec![
                    (a.clone(), key.clone(), Some(encode(b"1", 0))),
                    (b.clone(), key.clone(), Some(encode(b"2", 0))),
                    (a.clone(), key.clone(), None),
                ],
            })
            .unwrap();
        assert_eq!(backend.get_many(&a, &[&key]).unwrap(), vec![None]);
        assert_eq!(
            backend.get_many(&b, &[&key]).unwrap(),
            vec![Some(encode(b"2", 0))]
        );
    }
}
