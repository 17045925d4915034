//! Glue used by [`crate::export_agent!`]: the generated WIT bindings and the conversions
//! between them and the SDK's types. Not part of the public API.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::thread::LocalKey;

use sabot_ipc::Trust;

use crate::{Agent, AgentInfo, Config, Context, Emitter, Error, ErrorKind};

#[allow(missing_docs, unsafe_op_in_unsafe_fn)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "sabot-agent",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "sabot_guest::__private::bindings",
        runtime_path: "sabot_guest::__private::wit_bindgen::rt",
    });
}

pub use bindings::export;
pub use bindings::exports::sabot::agent::agent::Guest;
pub use wit_bindgen;

use bindings::sabot::agent::types as wit;
pub use wit::{
    AgentError as WitAgentError, AgentInfo as WitAgentInfo, BatchContext as WitBatchContext,
    ProcessResult as WitProcessResult,
};

/// Output names declared by the agent, computed once per instance.
static OUTPUTS: OnceLock<Vec<String>> = OnceLock::new();

fn outputs<A: Agent>() -> &'static [String] {
    OUTPUTS.get_or_init(|| A::describe().outputs.into_iter().map(|s| s.name).collect())
}

/// `describe` export.
pub fn describe<A: Agent>() -> WitAgentInfo {
    let AgentInfo {
        name,
        version,
        description,
        inputs,
        outputs,
        config,
    } = A::describe();
    let streams = |specs: Vec<crate::StreamSpec>| {
        specs
            .into_iter()
            .map(|s| wit::StreamSpec {
                name: s.name,
                description: s.description,
            })
            .collect()
    };
    WitAgentInfo {
        name,
        version,
        description,
        inputs: streams(inputs),
        outputs: streams(outputs),
        config: config
            .into_iter()
            .map(|k| wit::ConfigKey {
                name: k.name,
                description: k.description,
                required: k.required,
                default_value: k.default_value,
            })
            .collect(),
    }
}

/// `init` export: checks the keys against the description, then builds the agent.
pub fn init<A: Agent>(
    slot: &'static LocalKey<RefCell<Option<A>>>,
    pairs: Vec<(String, String)>,
) -> Result<(), WitAgentError> {
    let info = A::describe();
    let config = Config::from_pairs(pairs);
    for key in config.keys() {
        if !info.config.iter().any(|k| k.name == key) {
            let known: Vec<_> = info.config.iter().map(|k| k.name.as_str()).collect();
            return Err(to_wit(Error::bad_data(format!(
                "unknown config key `{key}` (known: {})",
                known.join(", ")
            ))));
        }
    }
    for key in info.config.iter().filter(|k| k.required) {
        if config.get(&key.name).is_none() {
            return Err(to_wit(Error::bad_data(format!(
                "config `{}` is required",
                key.name
            ))));
        }
    }
    let agent = A::init(&config).map_err(to_wit)?;
    slot.with(|cell| *cell.borrow_mut() = Some(agent));
    Ok(())
}

/// `snapshot` export of the agent in `slot`.
pub fn snapshot<A: Agent>(
    slot: &'static LocalKey<RefCell<Option<A>>>,
) -> Result<Option<Vec<u8>>, WitAgentError> {
    slot.with(|cell| match cell.borrow().as_ref() {
        Some(agent) => agent.snapshot(),
        None => Err(Error::fatal("snapshot called before init")),
    })
    .map_err(to_wit)
}

/// `restore` export of the agent in `slot`.
pub fn restore<A: Agent>(
    slot: &'static LocalKey<RefCell<Option<A>>>,
    snapshot: Vec<u8>,
) -> Result<(), WitAgentError> {
    slot.with(|cell| match cell.borrow_mut().as_mut() {
        Some(agent) => agent.restore(&snapshot),
        None => Err(Error::fatal("restore called before init")),
    })
    .map_err(to_wit)
}

/// `process` export: decode, run the agent, encode what it emitted.
pub fn process<A: Agent>(
    slot: &'static LocalKey<RefCell<Option<A>>>,
    ctx: WitBatchContext,
    batch: Vec<u8>,
) -> Result<WitProcessResult, WitAgentError> {
    let batch = sabot_ipc::decode(batch, Trust::Trusted)
        .map_err(|err| to_wit(Error::bad_data(format!("cannot decode input batch: {err}"))))?;
    let ctx = Context {
        input: ctx.input,
        partition: ctx.partition,
        first_offset: ctx.first_offset,
        last_offset: ctx.last_offset,
        watermark_ms: ctx.watermark_ms,
    };
    let mut out = Emitter::new(outputs::<A>());
    slot.with(|cell| match cell.borrow_mut().as_mut() {
        Some(agent) => agent.process(&ctx, batch, &mut out),
        None => Err(Error::fatal("process called before init")),
    })
    .map_err(to_wit)?;

    let mut outputs = Vec::with_capacity(out.batches.len());
    for (output, batch) in out.batches {
        let batch = sabot_ipc::encode(&batch)
            .map_err(|err| to_wit(Error::fatal(format!("cannot encode output batch: {err}"))))?;
        outputs.push(wit::OutputBatch { output, batch });
    }
    let rejected = out
        .rejected
        .into_iter()
        .map(|(row, reason)| wit::RejectedRow { row, reason })
        .collect();
    Ok(WitProcessResult { outputs, rejected })
}

fn to_wit(err: Error) -> WitAgentError {
    let kind = match err.kind {
        ErrorKind::Retryable => wit::ErrorKind::Retryable,
        ErrorKind::BadData => wit::ErrorKind::BadData,
        ErrorKind::Fatal => wit::ErrorKind::Fatal,
    };
    WitAgentError {
        kind,
        message: err.message,
    }
}
