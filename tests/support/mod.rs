//! Shared helpers of the integration tests: the guest components built from this repository,
//! and running the real `sabot-host` binary with a time limit.

#![allow(dead_code)] // each test binary uses a different subset

pub mod broker;
pub mod fraud;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Guest crates and the file each builds.
const GUESTS: [(&str, &str); 5] = [
    ("sabot-agent-filter", "sabot_agent_filter.wasm"),
    ("sabot-agent-fraud", "sabot_agent_fraud.wasm"),
    ("sabot-agent-faults", "sabot_agent_faults.wasm"),
    ("sabot-agent-counter", "sabot_agent_counter.wasm"),
    ("sabot-not-an-agent", "sabot-not-an-agent.wasm"),
];

/// Directory of the built guest components: `$SABOT_GUESTS` (set by `cargo xtask test`), or
/// built now with cargo into this test target's own directory.
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SABOT_GUESTS") {
            return PathBuf::from(dir);
        }
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-build");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(workspace())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target);
        for (krate, _) in GUESTS {
            cmd.args(["-p", krate]);
        }
        let status = cmd.status().expect("running cargo to build the guests");
        assert!(
            status.success(),
            "building the guest components failed (is the wasm32-wasip2 target installed?)"
        );
        target.join("wasm32-wasip2").join("release")
    })
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Path of a guest component: `filter`, `fraud`, `faults`, `counter` or `not-an-agent`.
pub fn guest(name: &str) -> PathBuf {
    let file = GUESTS
        .iter()
        .find(|(krate, _)| krate.ends_with(name))
        .unwrap_or_else(|| panic!("no guest named {name}"))
        .1;
    let path = guests_dir().join(file);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// What a finished `sabot-host` run left behind.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "sabot-host failed:\n{}", self.stderr);
        self
    }
}

/// `sabot-host` with a shared component cache and no progress lines.
pub fn host(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sabot-host"));
    cmd.args(args)
        .env(
            "SABOT_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        )
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd` with `stdin` as input, killing it after `limit`.
pub fn run_with(mut cmd: Command, stdin: &[u8], limit: Duration) -> Outcome {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sabot-host");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sabot-host did not finish within {limit:?}: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    Outcome {
        code,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
        elapsed: started.elapsed(),
    }
}

/// Runs `sabot-host ARGS` with no input and a two-minute limit.
pub fn run(args: &[&str]) -> Outcome {
    run_with(host(args), b"", Duration::from_secs(120))
}

/// Parses a JSON Lines file (missing file: no lines).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A path inside `dir` as a `&str` argument.
pub fn arg(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}
