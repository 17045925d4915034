//! One agent instance's view of state: scoped to the partition being processed, with the
//! current call's writes held back until the call succeeds.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::backend::{StateBackend, TableId, WriteSet};
use super::entry;

/// Why a state call failed. Each of these stops the job: none is the data's fault.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state is available only inside `process`")]
    OutsideProcess,
    #[error("bad state table name `{0}`: use 1 to 64 characters of [a-z0-9_-]")]
    BadTable(String),
    #[error("state backend failed: {0:#}")]
    Backend(anyhow::Error),
}

/// A table's writes during the current call: user key → stored entry, or `None` for a delete.
struct Pending {
    id: TableId,
    writes: FxHashMap<Vec<u8>, Option<Vec<u8>>>,
}

/// State as one agent instance sees it.
pub struct Session {
    backend: Option<Arc<dyn StateBackend>>,
    /// The partition of the batch being processed; `None` outside `process`.
    scope: Option<u32>,
    /// Processing time of the current call: every TTL of one call counts from it.
    now_ms: u64,
    pending: FxHashMap<String, Pending>,
}

impl Session {
    /// A session over `backend`; without a backend every call fails (describing a component
    /// needs no state).
    pub fn new(backend: Option<Arc<dyn StateBackend>>) -> Self {
        Self {
            backend,
            scope: None,
            now_ms: 0,
            pending: FxHashMap::default(),
        }
    }

    /// Starts a `process` call on a batch of partition `scope`.
    pub fn begin(&mut self, scope: u32) {
        self.scope = Some(scope);
        self.now_ms = entry::now_ms();
        self.pending.clear();
    }

    /// Ends the call: applies its writes atomically when `commit`, else discards them.
    /// Returns the number of entries written.
    pub fn finish(&mut self, commit: bool) -> Result<usize, StateError> {
        let scope = self.scope.take();
        let pending = std::mem::take(&mut self.pending);
        let (Some(scope), Some(backend), true) = (scope, &self.backend, commit) else {
            return Ok(0);
        };
        let mut writes = WriteSet::default();
        for table in pending.into_values() {
            for (key, stored) in table.writes {
                writes
                    .ops
                    .push((table.id.clone(), entry::scoped_key(scope, &key), stored));
            }
        }
        let count = writes.ops.len();
        if count > 0 {
            backend.write(writes).map_err(StateError::Backend)?;
        }
        Ok(count)
    }

    /// The live values of `keys` in `table`, seeing the call's own writes.
    pub fn get_many(
        &mut self,
        table: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let (scope, backend) = self.ready(table)?;
        let pending = self.pending.get(table);
        let mut values: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let mut misses = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            match pending.and_then(|p| p.writes.get(key)) {
                Some(stored) => {
                    values[index] = stored
                        .as_deref()
                        .and_then(|s| entry::decode(s, self.now_ms))
                        .map(<[u8]>::to_vec);
                }
                None => misses.push((index, entry::scoped_key(scope, key))),
            }
        }
        if misses.is_empty() {
            return Ok(values);
        }
        let id = TableId::new(table);
        let scoped: Vec<&[u8]> = misses.iter().map(|(_, key)| key.as_slice()).collect();
        let found = backend
            .get_many(&id, &scoped)
            .map_err(StateError::Backend)?;
        for ((index, _), stored) in misses.iter().zip(found) {
            values[*index] = stored
                .as_deref()
                .and_then(|s| entry::decode(s, self.now_ms))
                .map(<[u8]>::to_vec);
        }
        Ok(values)
    }

    /// Sets keys of `table`: `(key, value, ttl in ms)`.
    pub fn put_many(
        &mut self,
        table: &str,
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>, Option<u64>)>,
    ) -> Result<(), StateError> {
        let now = self.now_ms;
        let pending = self.pending_mut(table)?;
        for (key, value, ttl_ms) in entries {
            let stored = entry::encode(&value, entry::expiry(now, ttl_ms));
            pending.writes.insert(key, Some(stored));
        }
        Ok(())
    }

    /// Removes keys of `table`.
    pub fn delete_many(
        &mut self,
        table: &str,
        keys: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<(), StateError> {
        let pending = self.pending_mut(table)?;
        for key in keys {
            pending.writes.insert(key, None);
        }
        Ok(())
    }

    fn ready(&self, table: &str) -> Result<(u32, &Arc<dyn StateBackend>), StateError> {
        let (Some(scope), Some(backend)) = (self.scope, &self.backend) else {
            return Err(StateError::OutsideProcess);
        };
        let valid = (1..=64).contains(&table.len())
            && table
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(StateError::BadTable(table.to_string()));
        }
        Ok((scope, backend))
    }

    fn pending_mut(&mut self, table: &str) -> Result<&mut Pending, StateError> {
        self.ready(table)?;
        Ok(self
            .pending
            .entry(table.to_string())
            .or_insert_with(|| Pending {
                id: TableId::new(table),
                writes: FxHashMap::default(),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::MemoryBackend;
    use super::*;

    fn session(backend: &Arc<MemoryBackend>) -> Session {
        Session::new(Some(backend.clone()))
    }

    fn get(session: &mut Session, key: &[u8]) -> Option<Vec<u8>> {
        session
            .get_many("t", &[key.to_vec()])
            .unwrap()
            .pop()
            .unwrap()
    }

    #[test]
    fn writes_land_only_when_the_call_commits() {
        let backend = Arc::new(MemoryBackend::default());
        let mut s = session(&backend);
        s.begin(0);
        s.put_many("t", [(b"k".to_vec(), b"1".to_vec(), None)])
            .unwrap();
        assert_eq!(
            get(&mut s, b"k"),
            Some(b"1".to_vec()),
            "reads see own writes"
        );
        assert_eq!(s.finish(false).unwrap(), 0);

        s.begin(0);
        assert_eq!(get(&mut s, b"k"), None, "a failed call's writes are gone");
        s.put_many("t", [(b"k".to_vec(), b"2".to_vec(), None)])
            .unwrap();
        assert_eq!(s.finish(true).unwrap(), 1);

        let mut other = session(&backend);
        other.begin(0);
        assert_eq!(get(&mut other, b"k"), Some(b"2".to_vec()));
        other.delete_many("t", [b"k".to_vec()]).unwrap();
        assert_eq!(get(&mut other, b"k"), None);
        other.finish(true).unwrap();
        s.begin(0);
        assert_eq!(get(&mut s, b"k"), None);
    }

    #[test]
    fn partitions_do_not_share_entries() {
        let backend = Arc::new(MemoryBackend::default());
        let mut s = session(&backend);
        s.begin(1);
        s.put_many("t", [(b"k".to_vec(), b"one".to_vec(), None)])
            .unwrap();
        s.finish(true).unwrap();
        s.begin(2);
        assert_eq!(get(&mut s, b"k"), None);
        s.finish(true).unwrap();
        s.begin(1);
        assert_eq!(get(&mut s, b"k"), Some(b"one".to_vec()));
    }

    #[test]
    fn misuse_is_refused_with_the_reason() {
        let backend = Arc::new(MemoryBackend::default());
        let mut s = session(&backend);
        assert!(matches!(
            s.get_many("t", &[]),
            Err(StateError::OutsideProcess)
        ));
        s.begin(0);
        assert!(matches!(
            s.put_many("Bad Name", []),
            Err(StateError::BadTable(_))
        ));
        let mut detached = Session::new(None);
        detached.begin(0);
        assert!(matches!(
            detached.get_many("t", &[]),
            Err(StateError::OutsideProcess)
        ));
    }

    #[test]
    fn an_expired_entry_reads_as_absent() {
        let backend = Arc::new(MemoryBackend::default());
        let mut s = session(&backend);
        s.begin(0);
        s.put_many("t", [(b"k".to_vec(), b"v".to_vec(), Some(1))])
            .unwrap();
        s.finish(true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.begin(0);
        assert_eq!(get(&mut s, b"k"), None);
    }
}
