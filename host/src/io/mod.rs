//! Sources, sinks and dead letters of the embedded default (files and stdio).

pub mod dead_letter;
pub mod format;
pub(crate) mod lines;
pub mod schema;
pub mod sink;
pub mod source;
pub mod watermark;

pub use dead_letter::{DeadLetter, DeadLetters};
pub use format::Format;
pub use lines::Batching;
