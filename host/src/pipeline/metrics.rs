//! Counters of a running job and its progress line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters shared by all stages.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Records read from sources.
    pub records_in: AtomicU64,
    /// Records written to sinks.
    pub records_out: AtomicU64,
    /// Agent instances replaced after a trap, deadline or memory-cap hit.
    pub restarts: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        }
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl Metrics {
    /// Seconds since the job started.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// One line: records in and out, rates, dead letters and restarts.
    pub fn progress_line(&self, dead_letters: u64) -> String {
        let secs = self.elapsed_secs().max(1e-9);
        let records_in = self.records_in.load(Ordering::Relaxed);
        format!(
            "{records_in} records in ({:.0}/s), {} out, {dead_letters} dead letters, {} restarts, {:.1} s",
            records_in as f64 / secs,
            self.records_out.load(Ordering::Relaxed),
            self.restarts.load(Ordering::Relaxed),
            secs,
        )
    }
}
