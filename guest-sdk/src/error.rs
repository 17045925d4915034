//! Errors an agent returns instead of trapping.

use std::fmt;

use arrow::error::ArrowError;

/// How the host treats an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A passing condition: the host retries the batch with backoff.
    Retryable,
    /// The batch is bad: the host dead-letters it and goes on.
    BadData,
    /// The agent cannot go on: the host stops the job.
    Fatal,
}

/// An agent error: a kind and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// How the host treats it.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
}

/// Result of agent code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A retryable error.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }
    /// The batch is bad data.
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::BadData,
            message: message.into(),
        }
    }
    /// The agent cannot go on.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Fatal,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

/// Arrow errors in agent code are about the data it was given (wrong schema, bad values).
impl From<ArrowError> for Error {
    fn from(err: ArrowError) -> Self {
        Self::bad_data(err.to_string())
    }
}
