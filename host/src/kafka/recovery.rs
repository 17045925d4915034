//! Which checkpoint an exactly-once job resumes from. A checkpoint's outputs and input offsets
//! are committed together in one Kafka transaction after its manifest is written, so the
//! broker decides: the job resumes from the checkpoint whose source offsets are the ones its
//! consumer group has committed. A newer checkpoint whose transaction never committed (the
//! process died in between) is passed over, and its outputs, aborted, are produced again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};

use super::admin::Admin;
use crate::checkpoint::{CheckpointStore, Manifest, SourcePosition};
use crate::pipeline::Plan;

/// The checkpoint matching the offsets the group of `plan`'s Kafka sources has committed;
/// `None` when nothing is committed yet (a first start). An error when the committed offsets
/// match no checkpoint in `store`.
pub fn committed_checkpoint(
    store: &CheckpointStore,
    plan: &Plan,
) -> Result<Option<(PathBuf, Manifest)>> {
    let sources: Vec<_> = plan
        .sources
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.kafka.as_ref()?)))
        .collect();
    let Some((_, first)) = sources.first() else {
        bail!("exactly-once output needs Kafka inputs");
    };
    let admin = Admin::connect(&first.client)?;
    let mut committed: BTreeMap<&str, BTreeMap<i32, i64>> = BTreeMap::new();
    for (name, spec) in &sources {
        committed.insert(name, admin.group_offsets(&spec.topic, &spec.group)?);
    }
    if committed.values().all(BTreeMap::is_empty) {
        tracing::info!(
            "group `{}` has committed nothing yet: no checkpoint to resume from",
            first.group
        );
        return Ok(None);
    }
    for listed in store.newest_first()? {
        let manifest = match listed.manifest {
            Ok(manifest) => manifest,
            Err(reason) => {
                tracing::warn!("skipping checkpoint {} ({reason})", listed.id);
                continue;
            }
        };
        let matches = committed
            .iter()
            .all(|(name, offsets)| match manifest.sources.get(*name) {
                Some(SourcePosition::Kafka { offsets: at, .. }) => at == offsets,
                _ => offsets.is_empty(),
            });
        if matches {
            return Ok(Some((listed.path, manifest)));
        }
        tracing::info!(
            "checkpoint {} is not the committed one (its transaction did not commit); trying the previous one",
            listed.id
        );
    }
    bail!(
        "the offsets group `{}` has committed ({committed:?}) match no checkpoint in {}: \
         exactly-once recovery is impossible; restore one with --from-checkpoint (outputs after it may repeat) or start with a new group",
        first.group,
        store.dir().display()
    )
}
