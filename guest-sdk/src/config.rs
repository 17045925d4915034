//! Agent configuration: the key/value pairs the host passes to `init`.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::{Error, Result};

/// Configuration given to [`crate::Agent::init`]. Values are text; typed accessors parse them
/// and name the key in their errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    /// Builds a configuration from key/value pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            values: pairs.into_iter().collect(),
        }
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key` parsed as `T`, or `default` when the key is absent.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|err| {
                Error::bad_data(format!("config `{key}` = {raw:?} is invalid: {err}"))
            }),
        }
    }

    /// The value of `key`; an error when it is absent.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| Error::bad_data(format!("config `{key}` is required")))
    }

    /// All keys that are set.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}
