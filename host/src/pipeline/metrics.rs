//! Counters of a running job and its progress line.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters shared by all stages.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// When the first record was read (a Kafka source may wait seconds to join its group).
    first_record: OnceLock<Instant>,
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
            first_record: OnceLock::new(),
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
    /// Counts `n` records read from a source.
    pub fn read(&self, n: usize) {
        self.first_record.get_or_init(Instant::now);
        add(&self.records_in, n);
    }

    /// Seconds since the first record was read (0 before).
    pub fn active_secs(&self) -> f64 {
        self.first_record
            .get()
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Seconds since the job started.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// One line: records in (and the rate since `last`, which it then updates), out, dead
    /// letters, restarts and time since start.
    pub fn progress_line(&self, dead_letters: u64, last: &mut (Instant, u64)) -> String {
        let records_in = self.records_in.load(Ordering::Relaxed);
        let interval = last.0.elapsed().as_secs_f64().max(1e-9);
        let rate = records_in.saturating_sub(last.1) as f64 / interval;
        *last = (Instant::now(), records_in);
        format!(
            "{records_in} records in ({rate:.0}/s), {} out, {dead_letters} dead letters, {} restarts, {:.1} s",
            self.records_out.load(Ordering::Relaxed),
            self.restarts.load(Ordering::Relaxed),
            self.elapsed_secs(),
        )
    }
}
