//! Keyed state kept by the host: typed tables over the WIT `state` interface.
//!
//! The host scopes every table to the partition of the batch being processed, keeps a call's
//! writes only when `process` succeeds, and (with a persistent backend or checkpoints) keeps
//! the state across instance replacements, restarts and crashes. Use the batch forms
//! ([`Table::get_many`], [`Table::put_many`]) to make a few host calls per batch rather than
//! one per row.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::sabot::agent::state as host;
use crate::{Error, Result};

/// A named table of `V` values keyed by bytes: a `&str`, a `String`, an integer's
/// `to_be_bytes()`… Values are stored with [postcard](https://docs.rs/postcard).
///
/// ```ignore
/// let counts: Table<u64> = Table::new("counts");
/// let n = counts.get("alice")?.unwrap_or(0) + 1;
/// counts.put("alice", &n)?;
/// ```
pub struct Table<V> {
    name: String,
    ttl_ms: Option<u64>,
    values: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> Table<V> {
    /// The table `name` (`[a-z0-9_-]`, 1 to 64 characters).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ttl_ms: None,
            values: PhantomData,
        }
    }

    /// Entries written through this table expire `ttl` after their last write, in processing
    /// time (the host's clock).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl_ms = Some(ttl.as_millis().clamp(1, u64::MAX as u128) as u64);
        self
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<V>> {
        host::get(&self.name, key.as_ref())
            .map(|bytes| self.decode(&bytes))
            .transpose()
    }

    /// The values of `keys`, in order, in one host call.
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_ref().to_vec()).collect();
        host::get_many(&self.name, &keys)
            .into_iter()
            .map(|found| found.map(|bytes| self.decode(&bytes)).transpose())
            .collect()
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: impl AsRef<[u8]>, value: &V) -> Result<()> {
        host::put(&self.name, key.as_ref(), &self.encode(value)?, self.ttl_ms);
        Ok(())
    }

    /// Sets several keys in one host call.
    pub fn put_many<K, B>(&self, entries: impl IntoIterator<Item = (K, B)>) -> Result<()>
    where
        K: AsRef<[u8]>,
        B: Borrow<V>,
    {
        let entries = entries
            .into_iter()
            .map(|(key, value)| {
                Ok(host::PutEntry {
                    key: key.as_ref().to_vec(),
                    value: self.encode(value.borrow())?,
                    ttl_ms: self.ttl_ms,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        host::put_many(&self.name, &entries);
        Ok(())
    }

    /// Removes `key`.
    pub fn delete(&self, key: impl AsRef<[u8]>) {
        host::delete(&self.name, key.as_ref());
    }

    /// Removes several keys in one host call.
    pub fn delete_many<K: AsRef<[u8]>>(&self, keys: &[K]) {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_ref().to_vec()).collect();
        host::delete_many(&self.name, &keys);
    }

    fn encode(&self, value: &V) -> Result<Vec<u8>> {
        postcard::to_stdvec(value).map_err(|err| {
            Error::fatal(format!(
                "cannot encode a value of state table `{}`: {err}",
                self.name
            ))
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<V> {
        postcard::from_bytes(bytes).map_err(|err| {
            Error::fatal(format!(
                "a value of state table `{}` does not decode as {}: {err} (was it written by another version of the agent?)",
                self.name,
                std::any::type_name::<V>()
            ))
        })
    }
}
