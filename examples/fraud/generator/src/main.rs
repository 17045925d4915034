//! `sabot-fraud-gen`: writes generated transactions as JSON Lines.

use std::io::BufWriter;
use std::path::PathBuf;

use clap::Parser;
use sabot_fraud_gen::{GeneratorConfig, generate, write_jsonl};

/// Generate realistic bank transactions with planted fraud (deterministic per seed).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Number of transactions.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    count: usize,
    /// Random seed; the same seed gives the same transactions.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Probability that a transaction starts a planted fraud pattern.
    #[arg(long, default_value_t = 0.01)]
    fraud_rate: f64,
    /// Output file (JSON Lines); `-` for stdout.
    #[arg(short, long, default_value = "-")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = GeneratorConfig::new(args.count, args.seed);
    config.fraud_rate = args.fraud_rate;
    let transactions = generate(&config);
    if args.out.as_os_str() == "-" {
        write_jsonl(BufWriter::new(std::io::stdout().lock()), &transactions)?;
    } else {
        let file = std::fs::File::create(&args.out)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.out.display()))?;
        write_jsonl(BufWriter::new(file), &transactions)?;
        eprintln!(
            "wrote {} transactions to {}",
            transactions.len(),
            args.out.display()
        );
    }
    Ok(())
}
