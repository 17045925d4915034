//! The host side of the WIT `state` interface: each call goes to the instance's
//! [`Session`](crate::state::Session); a failure traps the guest with a [`StateError`].

use super::bindings::sabot::agent::state::{Host, PutEntry};
use super::sandbox::GuestState;
use crate::state::StateError;

fn trap(error: StateError) -> wasmtime::Error {
    wasmtime::Error::new(error)
}

impl Host for GuestState {
    fn get(&mut self, table: String, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        let mut values = self.state.get_many(&table, &[key]).map_err(trap)?;
        Ok(values.pop().flatten())
    }

    fn get_many(
        &mut self,
        table: String,
        keys: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Vec<Option<Vec<u8>>>> {
        self.state.get_many(&table, &keys).map_err(trap)
    }

    fn put(
        &mut self,
        table: String,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<()> {
        self.state
            .put_many(&table, [(key, value, ttl_ms)])
            .map_err(trap)
    }

    fn put_many(&mut self, table: String, entries: Vec<PutEntry>) -> wasmtime::Result<()> {
        let entries = entries.into_iter().map(|e| (e.key, e.value, e.ttl_ms));
        self.state.put_many(&table, entries).map_err(trap)
    }

    fn delete(&mut self, table: String, key: Vec<u8>) -> wasmtime::Result<()> {
        self.state.delete_many(&table, [key]).map_err(trap)
    }

    fn delete_many(&mut self, table: String, keys: Vec<Vec<u8>>) -> wasmtime::Result<()> {
        self.state.delete_many(&table, keys).map_err(trap)
    }
}
