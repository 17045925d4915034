//! A fault-injection point for crash tests. A crash between writing a checkpoint's manifest and
//! committing its outputs (the second phase) is the moment exactly-once recovery must get right,
//! and too short for a kill at a random time to hit. `SABOT_FAULT_CRASH_BEFORE_COMMIT=<N>`
//! aborts the process there, at the first checkpoint whose sources have read at least `N`
//! records in all. Unset (always, outside tests), it does nothing.

use std::sync::OnceLock;

use super::store::{Manifest, SourcePosition};

/// The variable that arms the fault.
pub const CRASH_BEFORE_COMMIT: &str = "SABOT_FAULT_CRASH_BEFORE_COMMIT";

/// Aborts the process if the fault is armed and `manifest` has reached its record count.
pub fn before_commit(manifest: &Manifest) {
    static ARMED: OnceLock<Option<i64>> = OnceLock::new();
    let Some(records) =
        *ARMED.get_or_init(|| std::env::var(CRASH_BEFORE_COMMIT).ok()?.parse().ok())
    else {
        return;
    };
    let read: i64 = manifest
        .sources
        .values()
        .map(|position| match position {
            SourcePosition::Kafka { offsets, .. } => offsets.values().sum(),
            SourcePosition::File { next_offset } => *next_offset,
        })
        .sum();
    if read >= records {
        eprintln!(
            "{CRASH_BEFORE_COMMIT}: aborting after checkpoint {}'s manifest, before its commit",
            manifest.id
        );
        std::process::abort();
    }
}
