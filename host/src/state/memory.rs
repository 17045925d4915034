//! The in-memory backend: a hash map per table.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use rustc_hash::FxHashMap;

use super::backend::{EntryVisitor, StateBackend, TableId, WriteSet};
use super::entry;

/// Writes between two sweeps of expired entries (entries nobody reads again would otherwise
/// stay forever).
const SWEEP_EVERY: u64 = 1 << 16;

type Table = FxHashMap<Vec<u8>, Vec<u8>>;

/// The snapshot file of a memory backend inside its checkpoint folder.
const SNAPSHOT_FILE: &str = "state.bin";
/// First bytes of a snapshot file (and its layout version).
const SNAPSHOT_MAGIC: &[u8; 8] = b"SABOTMS1";

/// State in the host's memory.
#[derive(Default)]
pub struct MemoryBackend {
    tables: RwLock<FxHashMap<TableId, Table>>,
    writes: AtomicU64,
}

impl MemoryBackend {
    /// A backend holding the tables of the snapshot in `dir` (written by
    /// [`StateBackend::snapshot`]).
    pub fn restore(dir: &Path) -> Result<Self> {
        let mut tables: FxHashMap<TableId, Table> = FxHashMap::default();
        read_snapshot(dir, &mut |table, key, stored| {
            tables
                .entry(TableId::new(table))
                .or_default()
                .insert(key.to_vec(), stored.to_vec());
            Ok(())
        })?;
        Ok(Self {
            tables: RwLock::new(tables),
            writes: AtomicU64::new(0),
        })
    }
}

/// Calls `visit(table, scoped key, stored entry)` for every entry of the memory snapshot in
/// `dir`.
pub fn read_snapshot(dir: &Path, visit: &mut EntryVisitor<'_>) -> Result<()> {
    let path = dir.join(SNAPSHOT_FILE);
    let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != SNAPSHOT_MAGIC {
        bail!("{} is not a memory-state snapshot", path.display());
    }
    let tables = read_u64(&mut input)?;
    let (mut key, mut stored) = (Vec::new(), Vec::new());
    for _ in 0..tables {
        let name = String::from_utf8(read_bytes(&mut input, &mut Vec::new())?.to_vec())
            .context("a table name is not UTF-8")?;
        for _ in 0..read_u64(&mut input)? {
            read_bytes(&mut input, &mut key)?;
            read_bytes(&mut input, &mut stored)?;
            visit(&name, &key, &stored)?;
        }
    }
    Ok(())
}

fn read_u64(input: &mut impl Read) -> Result<u64> {
    let mut bytes = [0u8; 8];
    input
        .read_exact(&mut bytes)
        .context("the snapshot is truncated")?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_bytes<'a>(input: &mut impl Read, into: &'a mut Vec<u8>) -> Result<&'a [u8]> {
    let len = read_u64(input)? as usize;
    into.resize(len, 0);
    input
        .read_exact(into)
        .context("the snapshot is truncated")?;
    Ok(into)
}

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)
}

impl StateBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get_many(&self, table: &TableId, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let tables = self.tables.read().expect("state lock");
        let Some(entries) = tables.get(table) else {
            return Ok(vec![None; keys.len()]);
        };
        Ok(keys.iter().map(|key| entries.get(*key).cloned()).collect())
    }

    fn write(&self, writes: WriteSet) -> Result<()> {
        let count = writes.ops.len() as u64;
        let mut tables = self.tables.write().expect("state lock");
        for (table, key, stored) in writes.ops {
            let entries = tables.entry(table).or_default();
            match stored {
                Some(stored) => entries.insert(key, stored),
                None => entries.remove(&key),
            };
        }
        let before = self.writes.fetch_add(count, Ordering::Relaxed);
        if before / SWEEP_EVERY != (before + count) / SWEEP_EVERY {
            let now = entry::now_ms();
            for entries in tables.values_mut() {
                entries.retain(|_, stored| !entry::expired(stored, now));
            }
        }
        Ok(())
    }

    fn snapshot(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let now = entry::now_ms();
        let tables = self.tables.read().expect("state lock");
        let path = dir.join(SNAPSHOT_FILE);
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(SNAPSHOT_MAGIC)?;
        out.write_all(&(tables.len() as u64).to_le_bytes())?;
        for (table, entries) in tables.iter() {
            write_bytes(&mut out, table.as_str().as_bytes())?;
            let live = entries
                .iter()
                .filter(|(_, stored)| !entry::expired(stored, now));
            out.write_all(&(live.clone().count() as u64).to_le_bytes())?;
            for (key, stored) in live {
                write_bytes(&mut out, key)?;
                write_bytes(&mut out, stored)?;
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::{encode, scoped_key};
    use super::*;

    #[test]
    fn writes_are_read_back_per_table() {
        let backend = MemoryBackend::default();
        let (a, b) = (TableId::new("a"), TableId::new("b"));
        let key = scoped_key(0, b"k");
        backend
            .write(WriteSet {
                ops: vec![(a.clone(), key.clone(), Some(encode(b"1", 0)))],
            })
            .unwrap();
        assert_eq!(
            backend.get_many(&a, &[&key]).unwrap(),
            vec![Some(encode(b"1", 0))]
        );
        assert_eq!(backend.get_many(&b, &[&key]).unwrap(), vec![None]);
        backend
            .write(WriteSet {
                ops: vec![(a.clone(), key.clone(), None)],
            })
            .unwrap();
        assert_eq!(backend.get_many(&a, &[&key]).unwrap(), vec![None]);
    }

    #[test]
    fn a_snapshot_restores_every_table_but_not_expired_entries() {
        let backend = MemoryBackend::default();
        let (a, b) = (TableId::new("a"), TableId::new("b"));
        let (k1, k2) = (scoped_key(0, b"k1"), scoped_key(7, b"k2"));
        backend
            .write(WriteSet {
                ops: vec![
                    (a.clone(), k1.clone(), Some(encode(b"one", 0))),
                    (b.clone(), k2.clone(), Some(encode(b"two", 0))),
                    (b.clone(), k1.clone(), Some(encode(b"gone", 1))),
                ],
            })
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        backend.snapshot(&dir.path().join("snap")).unwrap();
        let restored = MemoryBackend::restore(&dir.path().join("snap")).unwrap();
        assert_eq!(
            restored.get_many(&a, &[&k1]).unwrap(),
            vec![Some(encode(b"one", 0))]
        );
        assert_eq!(
            restored.get_many(&b, &[&k2, &k1]).unwrap(),
            vec![Some(encode(b"two", 0)), None]
        );
        std::fs::write(dir.path().join("snap").join(SNAPSHOT_FILE), b"SABOTMS1\x01").unwrap();
        let err = MemoryBackend::restore(&dir.path().join("snap"))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }
}
