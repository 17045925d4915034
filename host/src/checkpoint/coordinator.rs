//! The checkpoint coordinator: asks the sources for barriers on an interval, collects what every
//! stage reports for the checkpoint, and completes it once every source, agent and sink has
//! reported. One checkpoint is in flight at a time.
//!
//! The round of checkpoint `n`:
//! 1. [`Coordinator::trigger`] opens `n` and asks for it ([`Coordinator::requested`]);
//! 2. each source records its position and sends barrier `n` downstream
//!    ([`Coordinator::source_barrier`]);
//! 3. each agent, once barrier `n` has arrived on all its inputs, writes its state into
//!    [`Coordinator::agent_dir`] and reports it ([`Coordinator::agent_snapshot`]), then
//!    forwards the barrier;
//! 4. each sink makes what it wrote before the barrier durable and acknowledges
//!    ([`Coordinator::sink_barrier`]);
//! 5. the coordinator writes the manifest: the checkpoint is complete and its source offsets
//!    may be committed.
//!
//! When the inputs end (or the job is stopped) no new round starts; once every stage has
//! finished, a final checkpoint holds the sources' last positions and the agents' final state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::store::{AgentSnapshot, CheckpointStore, Manifest, PendingCheckpoint, SourcePosition};
use crate::io::DeadLetters;

/// The second phase of a checkpoint, for outputs that become visible only with it (Kafka
/// transactions).
pub trait CommitHook: Send + Sync {
    /// Checkpoint `manifest` is durable: make its outputs visible. `last`: the job's final
    /// checkpoint. An error stops the job.
    fn committed(&self, manifest: &Manifest, last: bool) -> anyhow::Result<()>;
    /// Checkpoint `id` will not complete; its outputs go with the next one.
    fn abandoned(&self, id: u64);
    /// The job failed: nothing more is committed (called once, with no lock held).
    fn failed(&self);
}

/// Folder of an agent's snapshot inside a checkpoint.
pub fn agent_folder(agent: &str) -> String {
    format!("agents/{agent}")
}

/// Who takes part in a job's checkpoints.
#[derive(Debug, Clone, Default)]
pub struct Participants {
    pub sources: BTreeSet<String>,
    pub agents: BTreeSet<String>,
    pub sinks: BTreeSet<String>,
}

struct Round {
    pending: PendingCheckpoint,
    started: Instant,
    sources: BTreeMap<String, SourcePosition>,
    agents: BTreeMap<String, AgentSnapshot>,
    sinks: BTreeSet<String>,
}

impl Round {
    fn new(pending: PendingCheckpoint) -> Self {
        Self {
            pending,
            started: Instant::now(),
            sources: BTreeMap::new(),
            agents: BTreeMap::new(),
            sinks: BTreeSet::new(),
        }
    }

    fn covers(&self, who: &Participants) -> bool {
        who.sources.iter().all(|s| self.sources.contains_key(s))
            && who.agents.iter().all(|a| self.agents.contains_key(a))
            && who.sinks.is_subset(&self.sinks)
    }
}

#[derive(Default)]
struct Progress {
    next_id: u64,
    /// The barrier round in flight.
    round: Option<Round>,
    /// The final checkpoint, opened when the first agent finishes.
    last: Option<Round>,
    sources_done: BTreeSet<String>,
    agents_done: BTreeSet<String>,
    sinks_done: BTreeSet<String>,
    completed: Option<Arc<Manifest>>,
    final_done: bool,
    failed: bool,
}

/// Runs a job's checkpoints; shared by every stage.
pub struct Coordinator {
    store: CheckpointStore,
    who: Participants,
    /// Written before a checkpoint completes: the dead letters of the records it covers.
    dead: Arc<DeadLetters>,
    hook: Option<Arc<dyn CommitHook>>,
    requested: AtomicU64,
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Coordinator {
    /// A coordinator writing into `store`; the first checkpoint gets id `first_id`; `dead`
    /// is synced before each checkpoint completes, and `hook` runs once it is durable.
    pub fn new(
        store: CheckpointStore,
        who: Participants,
        first_id: u64,
        dead: Arc<DeadLetters>,
        hook: Option<Arc<dyn CommitHook>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            who,
            dead,
            hook,
            requested: AtomicU64::new(0),
            progress: Mutex::new(Progress {
                next_id: first_id.max(1),
                ..Progress::default()
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().expect("checkpoint lock")
    }

    /// Starts a checkpoint unless one is in flight or the inputs are ending.
    pub fn trigger(&self) {
        let mut progress = self.lock();
        if progress.failed
            || progress.round.is_some()
            || !progress.sources_done.is_empty()
            || progress.last.is_some()
        {
            return;
        }
        let id = progress.next_id;
        match self.store.begin(id) {
            Ok(pending) => {
                progress.next_id += 1;
                progress.round = Some(Round::new(pending));
                self.requested.store(id, Ordering::Release);
                tracing::debug!("checkpoint {id}: started");
            }
            Err(err) => tracing::error!("checkpoint {id} cannot start: {err:#}"),
        }
    }

    /// The newest checkpoint the sources are asked for (0: none yet).
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Source `name` sends barrier `id`, standing at `position`.
    pub fn source_barrier(&self, id: u64, name: &str, position: SourcePosition) {
        let mut progress = self.lock();
        if let Some(round) = progress.round.as_mut().filter(|r| r.pending.id == id) {
            round.sources.insert(name.to_string(), position);
        }
        self.advance(&mut progress);
    }

    /// Source `name` has read its last record (its input ended, or the job is stopping) and
    /// stands at `position`; it has sent barriers up to `sent`. Returns the barrier it still
    /// owes the round in flight, to send before closing its stream.
    pub fn source_finished(&self, name: &str, sent: u64, position: SourcePosition) -> Option<u64> {
        let mut progress = self.lock();
        progress.sources_done.insert(name.to_string());
        let owed = progress
            .round
            .as_mut()
            .filter(|r| r.pending.id > sent)
            .map(|round| {
                round.sources.insert(name.to_string(), position.clone());
                round.pending.id
            });
        if progress.last.is_none() && !progress.final_done {
            let id = progress.next_id;
            progress.next_id += 1;
            match self.store.begin(id) {
                Ok(pending) => progress.last = Some(Round::new(pending)),
                Err(err) => {
                    tracing::error!("the final checkpoint {id} cannot start: {err:#}");
                    progress.final_done = true;
                }
            }
        }
        if let Some(last) = progress.last.as_mut() {
            last.sources.insert(name.to_string(), position);
        }
        self.advance(&mut progress);
        owed
    }

    /// Where agent `agent` writes its snapshot for checkpoint `id`; `None` when that
    /// checkpoint is no longer in flight.
    pub fn agent_dir(&self, id: u64, agent: &str) -> Option<PathBuf> {
        let progress = self.lock();
        let round = progress.round.as_ref().filter(|r| r.pending.id == id)?;
        Some(round.pending.dir().join(agent_folder(agent)))
    }

    /// Agent `agent` has written its snapshot for checkpoint `id`.
    pub fn agent_snapshot(&self, id: u64, agent: &str, backend: &str) {
        let mut progress = self.lock();
        if let Some(round) = progress.round.as_mut().filter(|r| r.pending.id == id) {
            round
                .agents
                .insert(agent.to_string(), snapshot_entry(agent, backend));
        }
        self.advance(&mut progress);
    }

    /// Where agent `agent`, whose inputs have all ended, writes its final state; `None` when
    /// the job failed.
    pub fn final_agent_dir(&self, agent: &str) -> Option<PathBuf> {
        let progress = self.lock();
        if progress.failed {
            return None;
        }
        let last = progress.last.as_ref()?;
        Some(last.pending.dir().join(agent_folder(agent)))
    }

    /// Agent `agent` has finished; `backend` names the state it wrote into
    /// [`Self::final_agent_dir`], if it wrote any.
    pub fn agent_finished(&self, agent: &str, backend: Option<&str>) {
        let mut progress = self.lock();
        progress.agents_done.insert(agent.to_string());
        if let (Some(last), Some(backend)) = (progress.last.as_mut(), backend) {
            last.agents
                .insert(agent.to_string(), snapshot_entry(agent, backend));
        }
        self.advance(&mut progress);
    }

    /// Sink `sink` has made durable everything before barrier `id`.
    pub fn sink_barrier(&self, id: u64, sink: &str) {
        let mut progress = self.lock();
        if let Some(round) = progress.round.as_mut().filter(|r| r.pending.id == id) {
            round.sinks.insert(sink.to_string());
        }
        self.advance(&mut progress);
    }

    /// Sink `sink` has written and flushed everything.
    pub fn sink_finished(&self, sink: &str) {
        let mut progress = self.lock();
        progress.sinks_done.insert(sink.to_string());
        self.advance(&mut progress);
    }

    /// Gives up checkpoint `id` (a stage could not take its part); the next one starts later.
    pub fn abandon(&self, id: u64, reason: &str) {
        let mut progress = self.lock();
        if progress.round.as_ref().is_some_and(|r| r.pending.id == id) {
            progress.round = None;
            // The id is free again unless a later one was handed out since.
            if progress.next_id == id + 1 {
                progress.next_id = id;
            }
            tracing::warn!("checkpoint {id} abandoned: {reason}");
            if let Some(hook) = &self.hook {
                hook.abandoned(id);
            }
        }
        self.changed.notify_all();
    }

    /// A stage failed: no checkpoint completes any more; waiters are released.
    pub fn fail(&self) {
        let mut progress = self.lock();
        let first = !std::mem::replace(&mut progress.failed, true);
        progress.round = None;
        drop(progress);
        self.changed.notify_all();
        if first && let Some(hook) = &self.hook {
            hook.failed();
        }
    }

    /// The newest complete checkpoint of this run.
    pub fn completed(&self) -> Option<Arc<Manifest>> {
        self.lock().completed.clone()
    }

    /// Waits for the final checkpoint, calling `idle` about every 20 ms meanwhile (to keep a
    /// consumer's group membership alive). `None` when the job failed instead.
    pub fn wait_final(&self, mut idle: impl FnMut()) -> Option<Arc<Manifest>> {
        let mut progress = self.lock();
        loop {
            if progress.final_done {
                return progress.completed.clone();
            }
            if progress.failed {
                return None;
            }
            drop(progress);
            idle();
            progress = self.lock();
            if !progress.final_done && !progress.failed {
                progress = self
                    .changed
                    .wait_timeout(progress, Duration::from_millis(20))
                    .expect("checkpoint lock")
                    .0;
            }
        }
    }

    /// Completes what can be completed: the round in flight once everyone has reported, the
    /// final checkpoint once every stage has finished.
    fn advance(&self, progress: &mut Progress) {
        if progress.failed {
            return;
        }
        if progress.round.as_ref().is_some_and(|r| r.covers(&self.who)) {
            let round = progress.round.take().expect("checked");
            let id = round.pending.id;
            match self.complete(round, false) {
                Ok(manifest) => progress.completed = Some(manifest),
                Err(()) => {
                    if let Some(hook) = &self.hook {
                        hook.abandoned(id);
                    }
                }
            }
        }
        let finished = self.who.sources.is_subset(&progress.sources_done)
            && self.who.agents.is_subset(&progress.agents_done)
            && self.who.sinks.is_subset(&progress.sinks_done);
        if finished
            && progress.round.is_none()
            && !progress.final_done
            && let Some(last) = progress.last.take()
        {
            if let Ok(manifest) = self.complete(last, true) {
                progress.completed = Some(manifest);
            }
            progress.final_done = true;
        }
        self.changed.notify_all();
    }

    /// Makes the dead letters durable, writes the checkpoint's manifest, then runs the commit
    /// hook. A checkpoint that cannot be written is logged and skipped; a failed commit fails
    /// the job.
    fn complete(&self, round: Round, last: bool) -> Result<Arc<Manifest>, ()> {
        let id = round.pending.id;
        let elapsed = round.started.elapsed();
        self.dead
            .sync()
            .map_err(|err| tracing::error!("checkpoint {id} not taken: {err:#}"))?;
        let manifest = round
            .pending
            .complete(&self.store, round.sources, round.agents)
            .map_err(|err| tracing::error!("checkpoint {id} could not be written: {err:#}"))?;
        super::fault::before_commit(&manifest);
        if let Some(hook) = &self.hook
            && let Err(err) = hook.committed(&manifest, last)
        {
            tracing::error!("checkpoint {id}: {err:#}");
            return Err(());
        }
        let kind = if last {
            "final checkpoint"
        } else {
            "checkpoint"
        };
        tracing::info!(
            "{kind} {id} complete: {} agents, {} files, {:.1} MB, {} ms",
            manifest.agents.len(),
            manifest.files.len(),
            manifest.bytes() as f64 / 1e6,
            elapsed.as_millis()
        );
        Ok(Arc::new(manifest))
    }
}

fn snapshot_entry(agent: &str, backend: &str) -> AgentSnapshot {
    AgentSnapshot {
        backend: backend.to_string(),
        dir: agent_folder(agent),
    }
}
