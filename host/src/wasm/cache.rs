//! On-disk cache of compiled components, keyed by the component's content hash and the
//! engine's compatibility hash, so a component is compiled once per machine and engine.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components.
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// Feeds `std::hash::Hash` output into SHA-256, for a stable cache key.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only the digest is used")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    /// A cache in `dir`, or no caching when `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The compiled form of `wasm`: from the cache when present and loadable, else compiled
    /// now and stored.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Result<Component> {
        let Some(dir) = &self.dir else {
            return Ok(Component::new(engine, wasm)?);
        };
        let path = dir.join(format!("{}.cwasm", key(engine, wasm)));
        if path.exists() {
            // SAFETY: files in the cache directory are written only by `store` below, from
            // `Component::serialize` of this same engine configuration (part of the key).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    tracing::debug!(path = %path.display(), "loaded compiled component from cache");
                    return Ok(component);
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {err:#}")
                }
            }
        }
        let started = std::time::Instant::now();
        let component = Component::new(engine, wasm)?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled component"
        );
        if let Err(err) = store(dir, &path, &component) {
            tracing::warn!(dir = %dir.display(), "cannot cache compiled component: {err:#}");
        }
        Ok(component)
    }
}

fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    hasher.write(wasm);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher
        .0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes atomically: a temporary file renamed into place.
fn store(dir: &Path, path: &Path, component: &Component) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = component.serialize()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
