//! Benchmark `wasm_vs_native`: the same filter + projection run natively and as a Wasm agent,
//! the host↔guest boundary on its own, and fraud-detection throughput through the agent path.
//!
//! Run with `cargo xtask bench` (builds the guests first). Variants are measured in alternating
//! rounds and reported as medians, so ratios compare like with like on a noisy machine.
//! `-- --quick` runs fewer rounds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::gt_eq;
use arrow::datatypes::{DataType, Field, Schema};
use sabot_host::state::MemoryBackend;
use sabot_host::wasm::{AgentComponent, AgentInstance, BatchContext, Limits, Runtime};
use sabot_ipc::Trust;

const ROWS: usize = 8192;
const MIN_AMOUNT: f64 = 500.0;

fn guests() -> PathBuf {
    PathBuf::from(
        std::env::var_os("SABOT_GUESTS").expect("SABOT_GUESTS is unset: run `cargo xtask bench`"),
    )
}

/// 8192 rows: id, amount uniform in [0, 1000), a 10-character account.
fn sample_batch() -> RecordBatch {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let ids = Int64Array::from_iter_values(0..ROWS as i64);
    let amounts =
        Float64Array::from_iter_values((0..ROWS).map(|_| (next() % 100_000) as f64 / 100.0));
    let accounts =
        StringArray::from_iter_values((0..ROWS).map(|_| format!("acct-{:05}", next() % 100_000)));
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("account", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(ids), Arc::new(amounts), Arc::new(accounts)],
    )
    .unwrap()
}

/// The filter agent's logic, natively.
fn native_filter(batch: &RecordBatch) -> RecordBatch {
    let amount = batch
        .column(1)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    let mask = gt_eq(amount, &Float64Array::new_scalar(MIN_AMOUNT)).unwrap();
    let kept = filter_record_batch(batch, &mask).unwrap();
    kept.project(&[0, 2]).unwrap()
}

fn context(rows: usize) -> BatchContext {
    BatchContext {
        input: "records".into(),
        partition: 0,
        first_offset: 0,
        last_offset: rows as i64 - 1,
        watermark_ms: None,
    }
}

/// The whole agent path: host encode, call (copy in, guest work, copy out), host decode.
fn through_agent(agent: &mut AgentInstance, batch: &RecordBatch) -> Vec<RecordBatch> {
    let bytes = sabot_ipc::encode(batch).unwrap();
    let result = agent
        .process(&context(batch.num_rows()), &bytes)
        .unwrap_or_else(|e| panic!("{e}"));
    result
        .outputs
        .into_iter()
        .map(|o| sabot_ipc::decode(o.batch, Trust::Untrusted).unwrap())
        .collect()
}

fn instance(runtime: &Runtime, file: &str, config: &[(&str, &str)]) -> AgentInstance {
    instantiate(&runtime.load(&guests().join(file)).unwrap(), config)
}

/// An initialised instance of an already compiled component.
fn instantiate(component: &AgentComponent, config: &[(&str, &str)]) -> AgentInstance {
    let mut agent = component
        .instantiate(
            Arc::from("bench"),
            &Limits::default(),
            Some(Arc::new(MemoryBackend::default())),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    agent.init(&config).unwrap_or_else(|e| panic!("{e}"));
    agent
}

/// A named measurement: runs `iters` times, returns the time of one run.
struct Variant<'a> {
    name: &'a str,
    run: Box<dyn FnMut() + 'a>,
    samples: Vec<Duration>,
}

fn measure(variants: &mut [Variant], rounds: usize, iters: u32) {
    for v in variants.iter_mut() {
        for _ in 0..iters {
            (v.run)(); // warm-up
        }
    }
    for _ in 0..rounds {
        for v in variants.iter_mut() {
            let started = Instant::now();
            for _ in 0..iters {
                (v.run)();
            }
            v.samples.push(started.elapsed() / iters);
        }
    }
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, iters) = if quick { (5, 20) } else { (21, 50) };
    let runtime = Runtime::new(None).unwrap();
    let batch = sample_batch();
    let expected = native_filter(&batch);

    let mut filter = instance(
        &runtime,
        "sabot_agent_filter.wasm",
        &[("min", "500"), ("keep", "id,account")],
    );
    let mut echo = instance(&runtime, "sabot_agent_faults.wasm", &[("mode", "pass")]);
    assert_eq!(
        through_agent(&mut filter, &batch),
        vec![expected.clone()],
        "the Wasm filter must agree with the native one"
    );

    let encoded = sabot_ipc::encode(&batch).unwrap();
    let encoded_out = sabot_ipc::encode(&expected).unwrap();
    let ctx = context(ROWS);
    let mut variants = vec![
        Variant {
            name: "native filter+project",
            run: Box::new(|| drop(std::hint::black_box(native_filter(&batch)))),
            samples: vec![],
        },
        Variant {
            name: "wasm filter+project (whole path)",
            run: Box::new(|| drop(std::hint::black_box(through_agent(&mut filter, &batch)))),
            samples: vec![],
        },
        Variant {
            name: "native, the guest's IPC path (copy in, decode, filter+project, encode)",
            run: Box::new(|| {
                let decoded = sabot_ipc::decode(encoded.clone(), Trust::Trusted).unwrap();
                drop(std::hint::black_box(
                    sabot_ipc::encode(&native_filter(&decoded)).unwrap(),
                ))
            }),
            samples: vec![],
        },
        Variant {
            name: "boundary: call + copy in + copy out",
            run: Box::new(|| drop(std::hint::black_box(echo.process(&ctx, &encoded).unwrap()))),
            samples: vec![],
        },
        Variant {
            name: "host IPC encode (input)",
            run: Box::new(|| drop(std::hint::black_box(sabot_ipc::encode(&batch).unwrap()))),
            samples: vec![],
        },
        Variant {
            name: "host IPC decode, validated (output)",
            run: Box::new(|| {
                drop(std::hint::black_box(
                    sabot_ipc::decode(encoded_out.clone(), Trust::Untrusted).unwrap(),
                ))
            }),
            samples: vec![],
        },
    ];
    measure(&mut variants, rounds, iters);

    let native = median(&variants[0].samples);
    println!(
        "## wasm_vs_native ({ROWS}-row batches, 3 columns, filter amount >= {MIN_AMOUNT} (~50%) and project 2 columns)"
    );
    println!();
    println!("| variant | ns/row | × native |");
    println!("|---|---:|---:|");
    for v in &variants {
        let t = median(&v.samples);
        println!(
            "| {} | {:.2} | {:.2} |",
            v.name,
            t.as_nanos() as f64 / ROWS as f64,
            t.as_secs_f64() / native.as_secs_f64()
        );
    }
    let boundary = median(&variants[3].samples).as_nanos() as f64 / ROWS as f64;
    println!();
    println!(
        "boundary per direction: {:.2} ns/row ({} bytes in per batch)",
        boundary / 2.0,
        encoded.len()
    );
    drop(variants);

    fraud_throughput(&runtime, quick);
}

/// Transactions per second through the fraud agent on one core: generated batches from
/// memory, host encode, agent, host decode of the alerts, nothing written.
fn fraud_throughput(runtime: &Runtime, quick: bool) {
    let count = if quick { 200_000 } else { 1_000_000 };
    let transactions = sabot_fraud_gen::generate(&sabot_fraud_gen::GeneratorConfig::new(count, 7));
    let batches = sabot_fraud_gen::to_batches(&transactions, ROWS);
    let runs = if quick { 3 } else { 5 };
    let component = runtime
        .load(&guests().join("sabot_agent_fraud.wasm"))
        .unwrap();
    let mut rates = Vec::new();
    let mut alerts = 0;
    for _ in 0..runs {
        let mut agent = instantiate(&component, &[]);
        let started = Instant::now();
        alerts = 0;
        for batch in &batches {
            alerts += through_agent(&mut agent, batch)
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>();
        }
        rates.push(count as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!();
    println!(
        "## fraud throughput (agent path, one core, {count} generated transactions, {ROWS}-row batches, null sink)"
    );
    println!();
    println!(
        "median {:.0} transactions/s over {runs} runs (min {:.0}, max {:.0}); {alerts} alerts per run",
        rates[runs / 2],
        rates[0],
        rates[runs - 1]
    );
}
