//! Starting every stage of a plan on its own thread, reporting progress, draining on Ctrl-C.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::mpsc::{Receiver, channel};

use super::agent_stage::{AgentStage, Checkpoints};
use super::align::AlignedInputs;
use super::envelope::{Message, Outlet, fail_queued};
use super::graph::Plan;
use super::metrics::{self, Metrics};
use super::source_outlet::SourceOutlet;
use crate::checkpoint::{
    CheckpointStore, CommitHook, Coordinator, Manifest, Participants, SourcePosition,
};
use crate::config::JobConfig;
use crate::io::dead_letter::rows_as_json;
use crate::io::sink::{self, SinkFailure, SinkSpec};
use crate::io::source::{self, SourceBatch};
use crate::io::{Batching, DeadLetter, DeadLetters};
use crate::kafka::{self, KafkaSink, Transactions};
use crate::state::{self, StateConfig, StateStart};

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
    /// Where agents keep their keyed state.
    pub state: StateConfig,
    /// Checkpoints of the run, when it takes them.
    pub checkpoints: Option<Checkpointing>,
}

impl RunOptions {
    /// The knobs `job` sets (batching, channel capacity, progress, state), with `dead_letters`
    /// and no checkpoints.
    pub fn for_job(job: &JobConfig, dead_letters: Arc<DeadLetters>) -> Self {
        let progress = job.progress_secs.unwrap_or(5);
        Self {
            batching: Batching {
                max_rows: job.batch.max_rows,
                linger: Duration::from_millis(job.batch.linger_ms),
            },
            channel_capacity: job.batch.channel_capacity,
            progress_every: (progress > 0).then(|| Duration::from_secs(progress)),
            dead_letters,
            state: job.state.clone(),
            checkpoints: None,
        }
    }
}

/// How a run takes checkpoints, and the one it starts from.
pub struct Checkpointing {
    pub store: CheckpointStore,
    pub interval: Duration,
    /// The checkpoint restored at start: its directory and manifest.
    pub restore: Option<(std::path::PathBuf, Manifest)>,
}

impl Checkpointing {
    /// What agent `agent` returned from its own `snapshot` in the restored checkpoint.
    fn guest_snapshot(&self, agent: &str) -> Result<Option<Vec<u8>>> {
        let Some((dir, manifest)) = &self.restore else {
            return Ok(None);
        };
        manifest
            .agents
            .get(agent)
            .map_or(Ok(None), |snapshot| snapshot.guest_snapshot(dir))
    }

    /// What the state of agent `agent` starts from.
    fn state_start(&self, agent: &str) -> StateStart {
        let Some((dir, manifest)) = &self.restore else {
            return StateStart::Empty;
        };
        match manifest.agents.get(agent) {
            Some(snapshot) => StateStart::Restore {
                backend: snapshot.backend.clone(),
                dir: snapshot.state_dir(dir),
            },
            None => {
                tracing::warn!("agent `{agent}` has no state in the checkpoint; it starts empty");
                StateStart::Empty
            }
        }
    }
}

type Stage = (String, JoinHandle<Result<()>>);

/// Runs `plan` until its inputs end (or Ctrl-C), then drains every stage.
pub fn run(mut plan: Plan, options: RunOptions) -> Result<Summary> {
    let metrics = Arc::new(Metrics::default());
    let stop = Arc::new(AtomicBool::new(false));
    let dead = options.dead_letters.clone();
    let cap = options.channel_capacity;
    let sink_labels: Vec<String> = plan
        .sinks
        .iter()
        .enumerate()
        .map(|(i, spec)| format!("{}#{i}", spec.stream))
        .collect();
    let first_id = match &options.checkpoints {
        Some(checkpoints) => checkpoints.store.next_id()?,
        None => 1,
    };
    let transactions = open_transactions(&plan, first_id)?;
    let coordinator = options.checkpoints.as_ref().map(|checkpoints| {
        if let Some((_, manifest)) = &checkpoints.restore {
            resume_sources(&mut plan, manifest);
        }
        let who = Participants {
            sources: plan.sources.iter().map(|s| s.name.clone()).collect(),
            agents: plan.agents.iter().map(|a| a.name.clone()).collect(),
            sinks: sink_labels.iter().cloned().collect(),
        };
        let hook = transactions.clone().map(|t| t as Arc<dyn CommitHook>);
        Coordinator::new(checkpoints.store.clone(), who, first_id, dead.clone(), hook)
    });
    let fail = {
        let (stop, coordinator) = (stop.clone(), coordinator.clone());
        move || {
            stop.store(true, Ordering::Relaxed);
            if let Some(coordinator) = &coordinator {
                coordinator.fail();
            }
        }
    };

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
    for (spec, label) in plan.sinks.iter().zip(sink_labels) {
        let (tx, rx) = channel(cap);
        outlets
            .get_mut(&spec.stream)
            .expect("planned stream")
            .subscribers
            .push((tx, Arc::from(spec.stream.as_str())));
        let sink: Box<dyn sink::Sink> = match &spec.kafka {
            Some(kafka) => Box::new(KafkaSink::open(kafka, &spec.stream, transactions.clone())?),
            None => sink::open(spec)?,
        };
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        sink_counts.push((spec.stream.clone(), count.clone()));
        let (spec, dead, metrics, fail) =
            (spec.clone(), dead.clone(), metrics.clone(), fail.clone());
        let checkpoints = coordinator.clone().map(|c| (c, label));
        stages.push(spawn(format!("sink:{}", spec.stream), move || {
            let result = run_sink(&spec, sink, rx, &dead, &metrics, &count, checkpoints);
            if result.is_err() {
                fail();
            }
            result
        }));
    }

    // One channel per agent input, so barriers can be aligned across them.
    let mut agent_inputs = Vec::new();
    for agent in &plan.agents {
        let mut receivers = Vec::new();
        for (input, stream) in &agent.inputs {
            let (tx, rx) = channel(cap);
            outlets
                .get_mut(stream)
                .expect("checked stream")
                .subscribers
                .push((tx, Arc::from(input.as_str())));
            receivers.push(rx);
        }
        agent_inputs.push(AlignedInputs::new(receivers));
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
        let start = options
            .checkpoints
            .as_ref()
            .map_or(StateStart::Keep, |c| c.state_start(&agent.name));
        let backend = state::open(&options.state, &agent.name, &start)
            .with_context(|| format!("state of agent `{}`", agent.name))?;
        let restore = match &options.checkpoints {
            Some(checkpoints) => checkpoints.guest_snapshot(&agent.name)?,
            None => None,
        };
        let stage = AgentStage::new(
            agent,
            own,
            dead.clone(),
            metrics.clone(),
            backend,
            Checkpoints {
                coordinator: coordinator.clone(),
                restore,
            },
        );
        let fail = fail.clone();
        stages.push(spawn(name, move || {
            let result = stage.run(rx);
            if result.is_err() {
                fail();
            }
            result
        }));
    }

    for spec in plan.sources {
        let outlet = outlets.remove(&spec.name).expect("source stream");
        let out = SourceOutlet::new(&spec.name, outlet, metrics.clone(), coordinator.clone());
        let (stop, dead, fail) = (stop.clone(), dead.clone(), fail.clone());
        let transactions = transactions.clone();
        let batching = options.batching;
        stages.push(spawn(format!("source:{}", spec.name), move || {
            let result = match &spec.kafka {
                Some(kafka) => kafka::source::run(
                    &spec.name,
                    kafka,
                    batching,
                    &stop,
                    &dead,
                    out,
                    transactions.as_deref(),
                ),
                None => run_file_source(&spec, batching, &stop, &dead, out),
            };
            if result.is_err() {
                fail();
            }
            result
        }));
    }
    // Only the stages hold senders now: channels close as upstream stages finish.
    drop(outlets);

    let interrupted = Arc::new(AtomicBool::new(false));
    let ticker = coordinator
        .clone()
        .zip(options.checkpoints.as_ref().map(|c| c.interval));
    let outcome = supervise(
        stages,
        &stop,
        &interrupted,
        &metrics,
        &dead,
        options.progress_every,
        ticker,
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

/// The transactional producer of a job with exactly-once Kafka output, its first transaction
/// open for checkpoint `first_epoch`.
fn open_transactions(plan: &Plan, first_epoch: u64) -> Result<Option<Arc<Transactions>>> {
    let Some(client) = plan
        .sinks
        .iter()
        .filter_map(|s| s.kafka.as_ref())
        .map(|k| &k.client)
        .find(|c| c.exactly_once)
    else {
        return Ok(None);
    };
    let group = plan
        .sources
        .iter()
        .find_map(|s| s.kafka.as_ref())
        .map(|k| k.group.clone())
        .context("exactly-once output needs Kafka inputs")?;
    let id = client
        .transactional_id
        .clone()
        .unwrap_or_else(|| format!("{group}.sabot-txn"));
    Transactions::start(client, &id, first_epoch).map(Some)
}

/// Points every source of `plan` at its position in `manifest`.
fn resume_sources(plan: &mut Plan, manifest: &Manifest) {
    for source in &mut plan.sources {
        match (manifest.sources.get(&source.name), &mut source.kafka) {
            (Some(SourcePosition::Kafka { topic, offsets }), Some(kafka))
                if *topic == kafka.topic =>
            {
                kafka.resume_offsets = offsets.clone();
            }
            (Some(SourcePosition::File { next_offset }), None) => {
                source.resume_from = *next_offset;
            }
            (None, _) => tracing::warn!(
                "source `{}` is not in checkpoint {}: it starts from the beginning (or its group's offsets)",
                source.name,
                manifest.id
            ),
            (Some(position), _) => tracing::warn!(
                "source `{}` stood at {position:?} in checkpoint {}, which is not its input any more: it starts from the beginning",
                source.name,
                manifest.id
            ),
        }
    }
}

/// Reads a file source into `out`, sending barriers between batches.
fn run_file_source(
    spec: &source::SourceSpec,
    batching: Batching,
    stop: &AtomicBool,
    dead: &DeadLetters,
    mut out: SourceOutlet,
) -> Result<()> {
    let mut next_offset = spec.resume_from;
    source::run(spec, batching, stop, dead, &mut |b: SourceBatch| {
        if !out.barrier_if_due(|| SourcePosition::File { next_offset }) {
            return false;
        }
        next_offset = b.offsets.last().map_or(next_offset, |last| last + 1);
        out.send(b)
    })?;
    out.finish(|| SourcePosition::File { next_offset });
    Ok(())
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
    checkpoints: Option<(Arc<Coordinator>, Duration)>,
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
        if let Some((coordinator, every)) = checkpoints {
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    coordinator.trigger();
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

/// Writes a stream to its sink. At each barrier the sink makes what it wrote durable and
/// acknowledges the checkpoint (as `label`).
fn run_sink(
    spec: &SinkSpec,
    mut sink: Box<dyn sink::Sink>,
    mut rx: Receiver<Message>,
    dead: &DeadLetters,
    metrics: &Metrics,
    count: &std::sync::atomic::AtomicU64,
    checkpoints: Option<(Arc<Coordinator>, String)>,
) -> Result<()> {
    while let Some(message) = rx.blocking_recv() {
        let envelope = match message {
            Message::Batch(envelope) => envelope,
            Message::Barrier(id) => {
                let result = sink.flush().and_then(|()| {
                    if let Some((coordinator, label)) = &checkpoints {
                        coordinator.sink_barrier(id, label);
                    }
                    sink.await_checkpoint(id)
                });
                if let Err(err) = result {
                    fail_queued(&mut rx);
                    return Err(err.context(format!("output `{}` failed", spec.path)));
                }
                continue;
            }
        };
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
        .with_context(|| format!("finishing output `{}`", spec.path))?;
    if let Some((coordinator, label)) = &checkpoints {
        coordinator.sink_finished(label);
    }
    Ok(())
}
