//! An agent that misbehaves on purpose, written against the raw WIT bindings so it can also
//! return bytes no SDK would produce. `mode` selects the fault; the fault fires only on the
//! batch holding offset `trigger_offset` (default: every batch). Other batches pass through.

use std::cell::RefCell;

wit_bindgen::generate!({ world: "sabot-agent", path: "../../../wit" });

use exports::sabot::agent::agent::Guest;
use sabot::agent::types::{
    AgentError, AgentInfo, BatchContext, ConfigKey, ErrorKind, OutputBatch, ProcessResult,
    RejectedRow, StreamSpec,
};

#[derive(Default)]
struct Settings {
    mode: String,
    trigger_offset: Option<i64>,
}

thread_local! {
    static SETTINGS: RefCell<Settings> = RefCell::new(Settings::default());
}

struct Faults;

fn key(name: &str, description: &str) -> ConfigKey {
    ConfigKey {
        name: name.into(),
        description: description.into(),
        required: false,
        default_value: None,
    }
}

impl Guest for Faults {
    fn describe() -> AgentInfo {
        AgentInfo {
            name: "faults".into(),
            version: "0.1.0".into(),
            description: "Misbehaves on purpose for tests.".into(),
            inputs: vec![StreamSpec {
                name: "records".into(),
                description: "anything".into(),
            }],
            outputs: vec![StreamSpec {
                name: "out".into(),
                description: "the input, unchanged".into(),
            }],
            config: vec![
                key(
                    "mode",
                    "pass|trap|spin|hog|malformed|undeclared|bad-data|fatal|retryable|reject-first|fail-init|probe",
                ),
                key(
                    "trigger_offset",
                    "fire only on the batch holding this offset",
                ),
            ],
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), AgentError> {
        let mut settings = Settings {
            mode: "pass".into(),
            trigger_offset: None,
        };
        for (k, v) in config {
            match k.as_str() {
                "mode" => settings.mode = v,
                "trigger_offset" => settings.trigger_offset = v.parse().ok(),
                _ => {}
            }
        }
        if settings.mode == "fail-init" {
            return Err(AgentError {
                kind: ErrorKind::BadData,
                message: "init refused on purpose".into(),
            });
        }
        SETTINGS.with(|s| *s.borrow_mut() = settings);
        Ok(())
    }

    fn process(ctx: BatchContext, batch: Vec<u8>) -> Result<ProcessResult, AgentError> {
        let (mode, fire) = SETTINGS.with(|s| {
            let s = s.borrow();
            let fire = s
                .trigger_offset
                .is_none_or(|t| ctx.first_offset <= t && t <= ctx.last_offset);
            (s.mode.clone(), fire)
        });
        let pass = |batch| {
            Ok(ProcessResult {
                outputs: vec![OutputBatch {
                    output: "out".into(),
                    batch,
                }],
                rejected: vec![],
            })
        };
        if !fire {
            return pass(batch);
        }
        let error = |kind, message: &str| {
            Err(AgentError {
                kind,
                message: message.into(),
            })
        };
        match mode.as_str() {
            "trap" => panic!("trapping on purpose at offset {}", ctx.first_offset),
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "malformed" => pass(b"\xff\xff\xff\xffthis is not an arrow ipc stream".to_vec()),
            "undeclared" => Ok(ProcessResult {
                outputs: vec![OutputBatch {
                    output: "nowhere".into(),
                    batch,
                }],
                rejected: vec![],
            }),
            "bad-data" => error(ErrorKind::BadData, "batch refused on purpose"),
            "fatal" => error(ErrorKind::Fatal, "giving up on purpose"),
            "retryable" => error(ErrorKind::Retryable, "try again later (on purpose)"),
            "probe" => {
                // What the sandbox lets the guest see, printed to stdout (the host's log).
                let env = std::env::vars().count();
                let args = std::env::args().count();
                let fs = match std::fs::read_dir("/") {
                    Ok(_) => "granted",
                    Err(_) => "denied",
                };
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                println!("probe: env={env} args={args} fs={fs} clock={clock}");
                println!(
                    "probe: input={} watermark={:?}",
                    ctx.input, ctx.watermark_ms
                );
                pass(batch)
            }
            "reject-first" => Ok(ProcessResult {
                outputs: vec![OutputBatch {
                    output: "out".into(),
                    batch,
                }],
                rejected: vec![RejectedRow {
                    row: 0,
                    reason: "first row refused on purpose".into(),
                }],
            }),
            _ => pass(batch),
        }
    }

    fn snapshot() -> Result<Option<Vec<u8>>, AgentError> {
        Ok(None)
    }

    fn restore(_snapshot: Vec<u8>) -> Result<(), AgentError> {
        Err(AgentError {
            kind: ErrorKind::Fatal,
            message: "the faults agent keeps no snapshot".into(),
        })
    }
}

export!(Faults);
