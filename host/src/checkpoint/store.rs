//! Checkpoints on disk. Each checkpoint is a directory `chk-<id>` holding its files and a
//! `manifest.json` that lists every file with its size and CRC-32. It is written under a
//! temporary name and renamed once complete, so a crash leaves either a whole checkpoint or a
//! `.tmp` directory that is ignored; a damaged checkpoint (missing manifest, truncated or
//! altered file) is detected and skipped for the previous one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Name of the manifest inside a checkpoint directory.
pub const MANIFEST: &str = "manifest.json";
/// Version of the manifest's layout.
const FORMAT: u32 = 1;
const PREFIX: &str = "chk-";
const PENDING_SUFFIX: &str = ".tmp";

/// Where a source stood at a checkpoint: the next record to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourcePosition {
    /// A Kafka topic: the next offset of each partition.
    Kafka {
        topic: String,
        offsets: BTreeMap<i32, i64>,
    },
    /// A file: the offset (line number or row index) of the next record to read.
    File { next_offset: i64 },
}

/// A file of a checkpoint, relative to its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub crc32: u32,
}

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: u64,
    /// Wall-clock time of completion, ms since the Unix epoch.
    pub created_ms: u64,
    /// Position of each source, by source name.
    pub sources: BTreeMap<String, SourcePosition>,
    /// The state backend of each agent and the folder of its snapshot, by agent name.
    pub agents: BTreeMap<String, AgentSnapshot>,
    /// Every file of the checkpoint.
    pub files: Vec<FileEntry>,
}

/// One agent's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// `memory` or `rocksdb`.
    pub backend: String,
    /// The agent's folder, relative to the checkpoint.
    pub dir: String,
}

/// In an agent's folder: the snapshot of its state backend.
pub const STATE_FOLDER: &str = "state";
/// In an agent's folder: what the agent's own `snapshot` export returned, if anything.
pub const GUEST_FILE: &str = "guest.bin";

impl AgentSnapshot {
    /// The state backend's snapshot, in the checkpoint at `checkpoint`.
    pub fn state_dir(&self, checkpoint: &Path) -> PathBuf {
        checkpoint.join(&self.dir).join(STATE_FOLDER)
    }

    /// The agent's own snapshot, if it wrote one, in the checkpoint at `checkpoint`.
    pub fn guest_snapshot(&self, checkpoint: &Path) -> Result<Option<Vec<u8>>> {
        let path = checkpoint.join(&self.dir).join(GUEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

impl Manifest {
    /// Total bytes of the checkpoint's files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// A checkpoint found on disk.
#[derive(Debug)]
pub struct Listed {
    pub id: u64,
    pub path: PathBuf,
    /// The manifest, or why the checkpoint cannot be used.
    pub manifest: Result<Manifest, String>,
}

/// The checkpoint directory of a job.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    keep: usize,
}

impl CheckpointStore {
    /// The store in `dir` (created if missing) keeping the newest `keep` checkpoints.
    pub fn open(dir: &Path, keep: usize) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the checkpoint directory {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
        })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts checkpoint `id`: a fresh temporary directory its parts are written into.
    pub fn begin(&self, id: u64) -> Result<PendingCheckpoint> {
        let path = self.dir.join(format!("{PREFIX}{id:08}{PENDING_SUFFIX}"));
        if path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot clear {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(PendingCheckpoint {
            id,
            path,
            target: self.dir.join(format!("{PREFIX}{id:08}")),
        })
    }

    /// Every checkpoint, newest first, each verified.
    pub fn list(&self) -> Result<Vec<Listed>> {
        Ok(self.newest_first()?.collect())
    }

    /// Every checkpoint, newest first, each verified only when the iterator reaches it (a
    /// caller that stops at the first usable one reads no older checkpoint).
    pub fn newest_first(&self) -> Result<impl Iterator<Item = Listed>> {
        Ok(self.ids()?.into_iter().map(|(id, path)| {
            let manifest = verify(&path).map_err(|err| format!("{err:#}"));
            Listed { id, path, manifest }
        }))
    }

    /// The id and directory of every complete checkpoint, newest first, unverified.
    fn ids(&self) -> Result<Vec<(u64, PathBuf)>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((id, entry.path()));
        }
        found.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        Ok(found)
    }

    /// An id above every checkpoint in the directory, damaged or not (a job restored from an
    /// older checkpoint goes on above the newer ones, never over them).
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.ids()?.first().map_or(1, |(id, _)| id + 1))
    }

    /// The newest checkpoint that verifies; each damaged one on the way is logged and skipped.
    pub fn latest(&self) -> Result<Option<(PathBuf, Manifest)>> {
        for listed in self.newest_first()? {
            match listed.manifest {
                Ok(manifest) => return Ok(Some((listed.path, manifest))),
                Err(reason) => tracing::warn!(
                    "skipping checkpoint {} ({}): {reason}; trying the previous one",
                    listed.id,
                    listed.path.display()
                ),
            }
        }
        Ok(None)
    }

    /// Deletes checkpoints beyond the newest `keep` (damaged or not, so none is read to
    /// decide), and temporary ones older than the newest.
    fn prune(&self) -> Result<()> {
        let checkpoints = self.ids()?;
        for (_, path) in checkpoints.iter().skip(self.keep) {
            fs::remove_dir_all(path)
                .with_context(|| format!("cannot delete {}", path.display()))?;
        }
        let newest = checkpoints.first().map_or(0, |(id, _)| *id);
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if pending_id(&path).is_some_and(|id| id < newest) {
                fs::remove_dir_all(&path)
                    .with_context(|| format!("cannot delete {}", path.display()))?;
            }
        }
        Ok(())
    }
}

fn pending_id(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .strip_suffix(PENDING_SUFFIX)?
        .parse()
        .ok()
}

/// A checkpoint being written.
#[derive(Debug)]
pub struct PendingCheckpoint {
    pub id: u64,
    path: PathBuf,
    target: PathBuf,
}

impl PendingCheckpoint {
    /// The directory to write the checkpoint's files into.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Lists and checksums every file written, writes the manifest, makes it all durable and
    /// renames the directory into place; then prunes old checkpoints. Returns the manifest.
    pub fn complete(
        self,
        store: &CheckpointStore,
        sources: BTreeMap<String, SourcePosition>,
        agents: BTreeMap<String, AgentSnapshot>,
    ) -> Result<Manifest> {
        let mut files = Vec::new();
        collect_files(&self.path, &self.path, &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Manifest {
            format: FORMAT,
            id: self.id,
            created_ms: crate::state::now_ms(),
            sources,
            agents,
            files,
        };
        let mut out = File::create(self.path.join(MANIFEST))?;
        out.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
        out.sync_all()?;
        File::open(&self.path)?.sync_all()?;
        fs::rename(&self.path, &self.target).with_context(|| {
            format!(
                "cannot move {} to {}",
                self.path.display(),
                self.target.display()
            )
        })?;
        File::open(&store.dir)?.sync_all()?;
        store.prune()?;
        Ok(manifest)
    }
}

/// Adds every file under `dir` (recursively), synced to disk, with its checksum.
fn collect_files(root: &Path, dir: &Path, files: &mut Vec<FileEntry>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, files)?;
            continue;
        }
        let (bytes, crc32) = checksum(&path)?;
        File::open(&path)?.sync_all()?;
        let relative = path.strip_prefix(root).expect("under the root");
        files.push(FileEntry {
            path: relative.to_string_lossy().into_owned(),
            bytes,
            crc32,
        });
    }
    Ok(())
}

/// Size and CRC-32 of a file.
fn checksum(path: &Path) -> Result<(u64, u32)> {
    let mut reader = BufReader::with_capacity(
        1 << 20,
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hasher.finalize()))
}

/// Reads a checkpoint's manifest and checks every file it lists.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let text = fs::read(dir.join(MANIFEST)).with_context(|| format!("no readable {MANIFEST}"))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).with_context(|| format!("{MANIFEST} is damaged"))?;
    if manifest.format != FORMAT {
        bail!(
            "manifest format {} (this host reads {FORMAT})",
            manifest.format
        );
    }
    for file in &manifest.files {
        let path = dir.join(&file.path);
        let (bytes, crc32) =
            checksum(&path).with_context(|| format!("file {} is missing", file.path))?;
        if bytes != file.bytes {
            bail!(
                "file {} has {bytes} bytes, the manifest says {}",
                file.path,
                file.bytes
            );
        }
        if crc32 != file.crc32 {
            bail!("file {} fails its checksum", file.path);
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_checkpoint(store: &CheckpointStore, id: u64, payload: &[u8]) -> PathBuf {
        let pending = store.begin(id).unwrap();
        fs::create_dir_all(pending.dir().join("agent")).unwrap();
        fs::write(pending.dir().join("agent/state.bin"), payload).unwrap();
        let sources = BTreeMap::from([(
            "input".to_string(),
            SourcePosition::File {
                next_offset: id as i64 * 10,
            },
        )]);
        pending.complete(store, sources, BTreeMap::new()).unwrap();
        store.dir.join(format!("{PREFIX}{id:08}"))
    }

    #[test]
    fn the_newest_sound_checkpoint_wins_and_damaged_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 5).unwrap();
        write_checkpoint(&store, 1, b"one");
        let second = write_checkpoint(&store, 2, b"two two");
        let third = write_checkpoint(&store, 3, b"three three");
        assert_eq!(store.latest().unwrap().unwrap().1.id, 3);

        // A truncated file: the checkpoint is skipped for the previous one.
        fs::write(third.join("agent/state.bin"), b"thr").unwrap();
        assert_eq!(store.latest().unwrap().unwrap().1.id, 2);
        // Same size, other bytes.
        fs::write(second.join("agent/state.bin"), b"two-two").unwrap();
        assert_eq!(store.latest().unwrap().unwrap().1.id, 1);
        // No manifest at all.
        fs::remove_file(store.dir.join("chk-00000001").join(MANIFEST)).unwrap();
        assert!(store.latest().unwrap().is_none());
        let reasons: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|l| l.manifest.unwrap_err())
            .collect();
        assert!(
            reasons[0].contains("has 3 bytes, the manifest says 11"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("fails its checksum"), "{reasons:?}");
        assert!(
            reasons[2].contains("no readable manifest.json"),
            "{reasons:?}"
        );
    }

    #[test]
    fn an_unfinished_checkpoint_is_never_used_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 2).unwrap();
        for id in 1..=4 {
            write_checkpoint(&store, id, b"state");
        }
        let pending = store.begin(5).unwrap();
        fs::write(pending.dir().join("partial"), b"x").unwrap();
        let ids: Vec<u64> = store.list().unwrap().iter().map(|l| l.id).collect();
        assert_eq!(
            ids,
            vec![4, 3],
            "keeps the newest two; ignores the unfinished one"
        );
        let latest = store.latest().unwrap().unwrap().1;
        assert_eq!(latest.id, 4);
        assert_eq!(
            latest.sources["input"],
            SourcePosition::File { next_offset: 40 }
        );
    }
}
