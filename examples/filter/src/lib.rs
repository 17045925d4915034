//! Example agent: keeps the rows whose numeric column reaches a threshold and projects the
//! columns it is asked to keep. Stateless; used by the `wasm_vs_native` benchmark.

use sabot_guest::prelude::*;

struct Filter {
    column: String,
    min: f64,
    keep: Option<Vec<String>>,
}

impl Agent for Filter {
    fn describe() -> AgentInfo {
        AgentInfo::new(
            "filter",
            "Keeps rows where `column` >= `min`; projects to `keep`.",
        )
        .input("records", "Any records with a Float64 column")
        .output("out", "The rows that pass, with the kept columns")
        .config("column", "Float64 column to test", Some("amount"))
        .config("min", "Smallest value kept", Some("0"))
        .config(
            "keep",
            "Comma-separated columns to keep (default: all)",
            None,
        )
    }

    fn init(config: &Config) -> Result<Self> {
        Ok(Self {
            column: config.get("column").unwrap_or("amount").to_string(),
            min: config.parse_or("min", 0.0)?,
            keep: config
                .get("keep")
                .map(|k| k.split(',').map(|c| c.trim().into()).collect()),
        })
    }

    fn process(&mut self, _ctx: &Context, batch: RecordBatch, out: &mut Emitter) -> Result<()> {
        let values = batch.f64_column(&self.column)?;
        let mask = gt_eq(values, &Float64Array::new_scalar(self.min))?;
        let kept = filter_record_batch(&batch, &mask)?;
        let projected = match &self.keep {
            None => kept,
            Some(names) => {
                let indices = names
                    .iter()
                    .map(|n| kept.schema().index_of(n))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                kept.project(&indices)?
            }
        };
        out.emit("out", projected)
    }
}

export_agent!(Filter);
