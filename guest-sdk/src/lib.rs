//! # sabot-guest: write Sabot agents in Rust
//!
//! An agent is a type implementing [`Agent`], exported with [`export_agent!`]. It receives
//! plain Arrow [`RecordBatch`]es and emits batches to named outputs; the SDK hides the WIT
//! contract and the IPC encoding.
//!
//! ```ignore
//! use sabot_guest::prelude::*;
//!
//! struct BigSpenders { min: f64 }
//!
//! impl Agent for BigSpenders {
//!     fn describe() -> AgentInfo {
//!         AgentInfo::new("big-spenders", "Keeps transactions of at least `min_amount`.")
//!             .input("transactions", "Transactions with an `amount` column")
//!             .output("big", "The transactions that pass")
//!             .config("min_amount", "Smallest amount kept", Some("1000"))
//!     }
//!     fn init(config: &Config) -> Result<Self> {
//!         Ok(Self { min: config.parse_or("min_amount", 1000.0)? })
//!     }
//!     fn process(&mut self, _ctx: &Context, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
//!         let amount = batch.f64_column("amount")?;
//!         let keep = gt_eq(amount, &Float64Array::new_scalar(self.min))?;
//!         out.emit("big", filter_record_batch(&batch, &keep)?)
//!     }
//! }
//! export_agent!(BigSpenders);
//! ```
//!
//! Keyed state lives in the host: a [`Table`] survives instance replacement, and its writes
//! count only when `process` succeeds.
//!
//! A returned [`Error`] reaches the host as a typed error (retryable, bad data or fatal); only a
//! panic traps, and the host then replaces the instance.

extern crate self as sabot_guest;

mod agent;
mod columns;
mod config;
mod error;
mod info;
pub mod log;
pub mod state;

#[doc(hidden)]
pub mod __private;

pub use agent::{Agent, Context, Emitter};
pub use arrow;
pub use columns::BatchExt;
pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use info::{AgentInfo, ConfigKey, StreamSpec};
pub use state::Table;

/// Everything an agent usually needs, including the common Arrow types and kernels.
pub mod prelude {
    pub use crate::export_agent;
    pub use crate::{Agent, AgentInfo, BatchExt, Config, Context, Emitter, Error, Result, Table};
    pub use arrow::array::{
        Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    };
    pub use arrow::compute::filter_record_batch;
    pub use arrow::compute::kernels::cmp::{eq, gt, gt_eq, lt, lt_eq, neq};
    pub use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
}

/// Exports a type implementing [`Agent`] as the component's `sabot:agent/agent` interface.
/// Use it once per component, at the crate root.
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: ::std::cell::RefCell<::std::option::Option<$agent>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct Export;

            impl $crate::__private::Guest for Export {
                fn describe() -> $crate::__private::WitAgentInfo {
                    $crate::__private::describe::<$agent>()
                }
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), $crate::__private::WitAgentError> {
                    $crate::__private::init::<$agent>(&INSTANCE, config)
                }
                fn process(
                    ctx: $crate::__private::WitBatchContext,
                    batch: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<
                    $crate::__private::WitProcessResult,
                    $crate::__private::WitAgentError,
                > {
                    $crate::__private::process::<$agent>(&INSTANCE, ctx, batch)
                }
                fn snapshot() -> ::std::result::Result<
                    ::std::option::Option<::std::vec::Vec<u8>>,
                    $crate::__private::WitAgentError,
                > {
                    $crate::__private::snapshot::<$agent>(&INSTANCE)
                }
                fn restore(
                    snapshot: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<(), $crate::__private::WitAgentError> {
                    $crate::__private::restore::<$agent>(&INSTANCE, snapshot)
                }
            }

    $crate::__private::export!(Export with_types_in $crate::__private::bindings);
        };
    };
}
