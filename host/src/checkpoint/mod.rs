//! Checkpoints: barriers injected at the sources, aligned by every agent, acknowledged by every
//! sink; each complete checkpoint holds the source positions and every agent's state, so a job
//! restarted from it neither loses nor repeats the effect of any record on its state.

mod config;
mod coordinator;
mod fault;
mod store;

pub use config::CheckpointConfig;
pub use coordinator::{CommitHook, Coordinator, Participants, agent_folder};
pub use fault::CRASH_BEFORE_COMMIT;
pub use store::{
    AgentSnapshot, CheckpointStore, GUEST_FILE, Listed, MANIFEST, Manifest, STATE_FOLDER,
    SourcePosition, verify,
};
