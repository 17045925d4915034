//! Starting every stage of a plan on its own thread, reporting progress, draining on Ctrl-C.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::mpsc::{Receiver, channel};

use super::agent_stage::AgentStage;
use super::envelope::{Envelope, Offsets, Outlet, fail_queued};
use super::graph::Plan;
use super::metrics::{self, Metrics};
use crate::io::dead_letter::rows_as_json;
use crate::io::sink::{self, SinkFailure, SinkSpec};
use crate::io::source::{self, SourceBatch};
use crate::io::{Batching, DeadLetter, DeadLetters};
use crate::kafka::{self, KafkaSink};

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Summary {
    pub records_in: u64,
    /// Records written per sink stream.
    pub per_stream: Vec<(String, u64)>,
    pub dead_letters: u64,
    pub restarts: u64,
    pub elapsed_secs: f64,
    /// Seconds from the first record read to the end (excludes start-up and group joins).
    pub active_secs: f64,
    /// Whether the run was stopped by a signal rather than the end of input.
    pub interrupted: bool,
}

impl Summary {
    /// Records written to all sinks.
    pub fn records_out(&self) -> u64 {
        self.per_stream.iter().map(|(_, n)| n).sum()
    }
}

/// Runtime knobs of a run.
pub struct RunOptions {
    pub batching: Batching,
    pub channel_capacity: usize,
    pub progress_every: Option<Duration>,
    pub dead_letters: Arc<DeadLetters>,
}

type Stage = (String, JoinHandle<Result<()>>);

/// Runs `plan` until its inputs end (or Ctrl-C), then drains every stage.
pub fn run(plan: Plan, options: RunOptions) -> Result<Summary> {
    let metrics = Arc::new(Metrics::default());
    let stop = Arc::new(AtomicBool::new(false));
    let dead = options.dead_letters.clone();
    let cap = options.channel_capacity;

    let mut outlets: HashMap<String, Outlet> = HashMap::new();
    for source in &plan.sources {
        outlets.insert(source.name.clone(), Outlet::new(&source.name));
    }
    for agent in &plan.agents {
        for output in &agent.info.outputs {
            let stream = format!("{}.{}", agent.name, output.name);
            outlets.insert(stream.clone(), Outlet::new(&stream));
        }
    }

    let mut stages: Vec<Stage> = Vec::new();
    let mut sink_counts = Vec::new();
    for spec in &plan.sinks {
        let (tx, rx) = channel(cap);
        outlets
            .get_mut(&spec.stream)
            .expect("planned stream")
            .subscribers
            .push((tx, Arc::from(spec.stream.as_str())));
        let sink: Box<dyn sink::Sink> = match &spec.kafka {
            Some(kafka) => Box::new(KafkaSink::open(kafka, &spec.stream)?),
            None => sink::open(spec)?,
        };
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        sink_counts.push((spec.stream.clone(), count.clone()));
        let (spec, dead, metrics, stop) =
            (spec.clone(), dead.clone(), metrics.clone(), stop.clone());
        stages.push(spawn(format!("sink:{}", spec.stream), move || {
            let result = run_sink(&spec, sink, rx, &dead, &metrics, &count);
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            result
        }));
    }

    let mut agent_inputs = Vec::new();
    for agent in &plan.agents {
        let (tx, rx) = channel(cap);
        for (input, stream) in &agent.inputs {
            outlets
                .get_mut(stream)
                .expect("checked stream")
                .subscribers
                .push((tx.clone(), Arc::from(input.as_str())));
        }
        agent_inputs.push(rx);
    }
    for (agent, rx) in plan.agents.into_iter().zip(agent_inputs) {
        let own: HashMap<String, Outlet> = agent
            .info
            .outputs
            .iter()
            .map(|o| {
                (
                    o.name.clone(),
                    outlets[&format!("{}.{}", agent.name, o.name)].clone(),
                )
            })
            .collect();
        let name = format!("agent:{}", agent.name);
        let stage = AgentStage::new(agent, own, dead.clone(), metrics.clone());
        let stop = stop.clone();
        stages.push(spawn(name, move || {
            let result = stage.run(rx);
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            result
        }));
    }

    for spec in plan.sources {
        let outlet = outlets.remove(&spec.name).expect("source stream");
        let (stop, dead, metrics) = (stop.clone(), dead.clone(), metrics.clone());
        let batching = options.batching;
        stages.push(spawn(format!("source:{}", spec.name), move || {
            let origin = outlet.stream.clone();
            let emit = move |b: SourceBatch| {
                metrics.read(b.batch.num_rows());
                outlet.send(Envelope {
                    stream: outlet.stream.clone(),
                    origin: origin.clone(),
                    input: outlet.stream.clone(),
                    partition: b.partition,
                    offsets: Offsets::Rows(b.offsets),
                    watermark_ms: b.watermark_ms,
                    batch: b.batch,
                    ack: b.ack,
                })
            };
            match &spec.kafka {
                Some(kafka) => {
                    kafka::source::run(&spec.name, kafka, batching, &stop, &dead, Box::new(emit))
                }
                None => source::run(&spec, batching, &stop, &dead, &mut { emit }),
            }
        }));
    }
    // Only the stages hold senders now: channels close as upstream stages finish.
    drop(outlets);

    let interrupted = Arc::new(AtomicBool::new(false));
    let outcome = supervise(
        stages,
        &stop,
        &interrupted,
        &metrics,
        &dead,
        options.progress_every,
    );
    dead.flush();
    outcome?;
    Ok(Summary {
        records_in: metrics.records_in.load(Ordering::Relaxed),
        per_stream: sink_counts
            .into_iter()
            .map(|(s, c)| (s, c.load(Ordering::Relaxed)))
            .collect(),
        dead_letters: dead.count(),
        restarts: metrics.restarts.load(Ordering::Relaxed),
        elapsed_secs: metrics.elapsed_secs(),
        active_secs: metrics.active_secs(),
        interrupted: interrupted.load(Ordering::Relaxed),
    })
}

fn spawn(name: String, f: impl FnOnce() -> Result<()> + Send + 'static) -> Stage {
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .expect("spawning a stage thread");
    (name, handle)
}

/// Waits for every stage while handling Ctrl-C and printing progress. Returns the first
/// stage error.
fn supervise(
    stages: Vec<Stage>,
    stop: &Arc<AtomicBool>,
    interrupted: &Arc<AtomicBool>,
    metrics: &Arc<Metrics>,
    dead: &Arc<DeadLetters>,
    progress_every: Option<Duration>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (stop, interrupted) = (stop.clone(), interrupted.clone());
        tokio::spawn(async move {
            let Some(signal) = stop_signal().await else {
                return;
            };
            tracing::warn!(
                "interrupted ({signal}): no more input is read; draining (a second signal aborts)"
            );
            interrupted.store(true, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
            if let Some(signal) = stop_signal().await {
                tracing::error!("aborted ({signal})");
                std::process::exit(130);
            }
        });
        if let Some(every) = progress_every {
            let (metrics, dead) = (metrics.clone(), dead.clone());
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.tick().await;
                let mut last = (std::time::Instant::now(), 0);
                loop {
                    ticks.tick().await;
                    let line = metrics.progress_line(dead.count(), &mut last);
                    tracing::info!("progress: {line}");
                }
            });
        }
        let joined = tokio::task::spawn_blocking(move || {
            let mut first_error = None;
            for (name, handle) in stages {
                let result = handle
                    .join()
                    .map_err(|_| anyhow!("stage {name} panicked"))
                    .and_then(|r| r.with_context(|| name.clone()));
                if let Err(err) = result {
                    tracing::error!("{err:#}");
                    first_error.get_or_insert(err);
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        joined.await.map_err(|e| anyhow!("joining stages: {e}"))?
    })
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM, the signals that ask a job to stop; `None` if
/// neither can be listened for.
async fn stop_signal() -> Option<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok()?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.ok().map(|()| "Ctrl-C"),
        _ = terminate.recv() => Some("SIGTERM"),
    }
}

fn run_sink(
    spec: &SinkSpec,
    mut sink: Box<dyn sink::Sink>,
    mut rx: Receiver<Envelope>,
    dead: &DeadLetters,
    metrics: &Metrics,
    count: &std::sync::atomic::AtomicU64,
) -> Result<()> {
    while let Some(envelope) = rx.blocking_recv() {
        let rows = envelope.batch.num_rows();
        match sink.write(&envelope.batch, envelope.ack.as_ref()) {
            Ok(()) => {
                metrics::add(&metrics.records_out, rows);
                count.fetch_add(rows as u64, Ordering::Relaxed);
            }
            Err(err) if err.is::<SinkFailure>() => {
                envelope.fail();
                fail_queued(&mut rx);
                return Err(err.context(format!("output `{}` failed", spec.path)));
            }
            Err(err) => {
                let reason = format!("cannot write to `{}`: {err:#}", spec.path);
                for (row, record) in rows_as_json(&envelope.batch).into_iter().enumerate() {
                    dead.send(DeadLetter {
                        reason: reason.clone(),
                        stage: format!("sink:{}", spec.stream),
                        input: envelope.origin.to_string(),
                        partition: envelope.partition,
                        offset: envelope
                            .offsets
                            .row(row)
                            .or(Some(envelope.offsets.bounds().0)),
                        record,
                        ack: envelope.ack.clone(),
                        ..DeadLetter::default()
                    });
                }
            }
        }
    }
    sink.finish()
        .with_context(|| format!("finishing output `{}`", spec.path))
}
