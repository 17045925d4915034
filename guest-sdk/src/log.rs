//! Logging into the host's logs. Lines carry the agent's name on the host side.
//!
//! `println!`/`eprintln!` also reach the host log (at info/warn), but these functions keep the
//! level.

use crate::__private::bindings::sabot::agent::log::{Level, log};

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}
