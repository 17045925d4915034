//! The `sabot-host` command line on real components: inspect, deploy over every input format,
//! pipelines, stdio, and clear exits for things that are not agents.

mod support;

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;
use support::{arg, guest, read_jsonl, run, run_with};

/// `n` records `{id, amount, account}` with amount = id * 10 and an account per id % 7.
fn records(n: i64) -> Vec<(i64, f64, String)> {
    (0..n)
        .map(|i| (i, i as f64 * 10.0, format!("acct-{}", i % 7)))
        .collect()
}

fn jsonl(records: &[(i64, f64, String)]) -> String {
    records
        .iter()
        .map(|(id, amount, account)| {
            format!("{{\"id\":{id},\"amount\":{amount:.1},\"account\":\"{account}\"}}\n")
        })
        .collect()
}

fn batch(records: &[(i64, f64, String)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("account", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.0))),
            Arc::new(Float64Array::from_iter_values(records.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.2.clone()),
            )),
        ],
    )
    .unwrap()
}

/// Ids in an output file, in order.
fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}

fn expected_ids(records: &[(i64, f64, String)], min: f64) -> Vec<i64> {
    records.iter().filter(|r| r.1 >= min).map(|r| r.0).collect()
}

#[test]
fn help_is_available_for_every_command() {
    for args in [
        &["--help"][..],
        &["deploy", "--help"],
        &["inspect", "--help"],
    ] {
        let out = run(args);
        out.assert_success();
        assert!(out.stdout.contains("Usage"), "{args:?}: {}", out.stdout);
    }
    let out = run(&["deploy", "--help"]);
    for flag in [
        "--input",
        "--output",
        "--config",
        "--memory-mb",
        "--timeout-ms",
        "--dead-letter",
    ] {
        assert!(out.stdout.contains(flag), "deploy --help lacks {flag}");
    }
}

#[test]
fn inspect_prints_what_the_agent_describes() {
    let fraud = guest("fraud");
    let out = run(&["inspect", fraud.to_str().unwrap()]);
    out.assert_success();
    for needle in [
        "fraud-detector",
        "sabot:agent/sabot-agent@0.3.0",
        "transactions",
        "alerts",
        "zscore_threshold",
        "sabot:agent/agent@0.3.0",
    ] {
        assert!(
            out.stdout.contains(needle),
            "inspect output lacks {needle}:\n{}",
            out.stdout
        );
    }
    let out = run(&["inspect", "--json", fraud.to_str().unwrap()]);
    out.assert_success();
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["name"], "fraud-detector");
    assert_eq!(json["outputs"][0]["name"], "alerts");
    assert_eq!(json["config"].as_array().unwrap().len(), 6);
}

#[test]
fn files_that_are_not_agents_exit_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0\x07\x07garbage").unwrap();
    let other_world = guest("not-an-agent");
    let missing = dir.path().join("missing.wasm");

    let cases = [
        (&core, 3, "core WebAssembly module"),
        (&garbage, 3, "not a WebAssembly file"),
        (&broken, 3, "not a valid component"),
        (
            &other_world,
            3,
            "does not implement the world sabot:agent/sabot-agent@0.3.0",
        ),
        (&missing, 2, "cannot read"),
    ];
    for (path, code, message) in cases {
        let path = path.to_str().unwrap();
        for args in [vec!["inspect", path], vec!["deploy", path, "--input", "-"]] {
            let out = run(&args);
            assert_eq!(out.code, Some(code), "{args:?}: {}", out.stderr);
            assert!(
                out.stderr.contains(message),
                "{args:?}: expected {message:?} in:\n{}",
                out.stderr
            );
        }
    }
}

#[test]
fn bad_configuration_exits_with_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let filter = guest("filter");
    let config = dir.path().join("job.toml");
    std::fs::write(&config, "[batch]\nmax_rowz = 3\n").unwrap();
    let out = run(&[
        "deploy",
        filter.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "-i",
        "x.jsonl",
    ]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("max_rowz"), "{}", out.stderr);

    let out = run(&[
        "deploy",
        filter.to_str().unwrap(),
        "-i",
        &arg(dir.path(), "nope.jsonl"),
    ]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("cannot open input"), "{}", out.stderr);

    std::fs::write(dir.path().join("in.jsonl"), jsonl(&records(3))).unwrap();
    let out = run(&[
        "deploy",
        filter.to_str().unwrap(),
        "-i",
        &arg(dir.path(), "in.jsonl"),
        "--set",
        "bogus=1",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown config key `bogus`"),
        "{}",
        out.stderr
    );

    let out = run(&[
        "deploy",
        filter.to_str().unwrap(),
        "-i",
        &arg(dir.path(), "in.jsonl"),
        "-o",
        "nosuch=out.jsonl",
    ]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("no stream `nosuch`"), "{}", out.stderr);
}

#[test]
fn filter_agent_over_jsonl_with_a_declared_schema() {
    let dir = tempfile::tempdir().unwrap();
    let input = records(1000);
    std::fs::write(dir.path().join("in.jsonl"), jsonl(&input)).unwrap();
    std::fs::write(
        dir.path().join("job.toml"),
        format!(
            r#"
            dead_letter = "dead.jsonl"
            [batch]
            max_rows = 128
            [[sources]]
            name = "records"
            path = "in.jsonl"
            schema = {{ id = "int64", amount = "float64", account = "utf8" }}
            [[agents]]
            wasm = "{}"
            config = {{ min = 2500, keep = "id,account" }}
            [[sinks]]
            stream = "out"
            path = "out.jsonl"
            "#,
            guest("filter").display()
        ),
    )
    .unwrap();
    run(&["deploy", "--config", &arg(dir.path(), "job.toml")]).assert_success();
    let out = read_jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(ids(&out), expected_ids(&input, 2500.0));
    assert!(
        out.iter()
            .all(|r| r.get("amount").is_none() && r["account"].is_string()),
        "projection kept `amount`"
    );
    assert!(!dir.path().join("dead.jsonl").exists());
}

#[test]
fn two_agents_form_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let input = records(500);
    std::fs::write(dir.path().join("in.jsonl"), jsonl(&input)).unwrap();
    std::fs::write(
        dir.path().join("job.toml"),
        format!(
            r#"
            [[sources]]
            name = "records"
            path = "in.jsonl"
            [[agents]]
            name = "coarse"
            wasm = "{filter}"
            config = {{ min = 1000 }}
            [[agents]]
            name = "fine"
            wasm = "{filter}"
            inputs = {{ records = "coarse.out" }}
            config = {{ min = 3000, keep = "id" }}
            [[sinks]]
            stream = "fine.out"
            path = "out.jsonl"
            [[sinks]]
            stream = "coarse.out"
            path = "coarse.csv"
            "#,
            filter = guest("filter").display()
        ),
    )
    .unwrap();
    run(&["deploy", "--config", &arg(dir.path(), "job.toml")]).assert_success();
    assert_eq!(
        ids(&read_jsonl(&dir.path().join("out.jsonl"))),
        expected_ids(&input, 3000.0)
    );
    let csv = std::fs::read_to_string(dir.path().join("coarse.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("id,amount,account"));
    assert_eq!(csv.lines().count() - 1, expected_ids(&input, 1000.0).len());
}

#[test]
fn chained_agents_on_the_command_line_read_stdin_and_write_stdout() {
    let input = records(300);
    let filter = guest("filter");
    let cmd = support::host(&[
        "deploy",
        filter.to_str().unwrap(),
        filter.to_str().unwrap(),
        "--input",
        "-",
        "--dead-letter",
        "/dev/null",
    ]);
    let out = run_with(
        cmd,
        jsonl(&input).as_bytes(),
        std::time::Duration::from_secs(120),
    );
    out.assert_success();
    let rows: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ids(&rows), expected_ids(&input, 0.0));
}

#[test]
fn csv_arrow_and_parquet_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = records(2000);
    let expected = expected_ids(&input, 5000.0);
    let csv: String = std::iter::once("id,amount,account\n".to_string())
        .chain(
            input
                .iter()
                .map(|(id, amount, account)| format!("{id},{amount:.1},{account}\n")),
        )
        .collect();
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();

    let batch = batch(&input);
    let mut file = arrow::ipc::writer::FileWriter::try_new(
        std::fs::File::create(dir.path().join("in.arrow")).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    file.write(&batch).unwrap();
    file.finish().unwrap();
    let mut stream = arrow::ipc::writer::StreamWriter::try_new(
        std::fs::File::create(dir.path().join("in.arrows")).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    stream.write(&batch).unwrap();
    stream.finish().unwrap();
    let mut parquet = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dir.path().join("in.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    parquet.write(&batch).unwrap();
    parquet.close().unwrap();

    for file in ["in.csv", "in.arrow", "in.arrows", "in.parquet"] {
        let out = arg(dir.path(), &format!("{file}.out.arrow"));
        run(&[
            "deploy",
            guest("filter").to_str().unwrap(),
            "-i",
            &arg(dir.path(), file),
            "-o",
            &out,
            "--set",
            "min=5000",
            "--max-rows",
            "300",
        ])
        .assert_success();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::fs::File::open(&out).unwrap(), None)
                .unwrap();
        let got: Vec<i64> = reader
            .flat_map(|b| {
                let b = b.unwrap();
                let ids = b
                    .column_by_name("id")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone();
                ids.values().to_vec()
            })
            .collect();
        assert_eq!(got, expected, "input {file}");
    }
}

#[test]
fn ctrl_c_drains_what_was_read_and_exits_cleanly() {
    stop_with_signal("INT");
}

#[test]
fn sigterm_drains_what_was_read_and_exits_cleanly() {
    stop_with_signal("TERM");
}

/// Sends `SIG<signal>` to a job whose input is still open, after it processed what it read.
fn stop_with_signal(signal: &str) {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let output = arg(dir.path(), "out.jsonl");
    let filter = guest("filter");
    let mut child = support::host(&[
        "deploy",
        filter.to_str().unwrap(),
        "-i",
        "-",
        "-o",
        &output,
        "--linger-ms",
        "50",
        "--progress-secs",
        "1",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (log, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(jsonl(&records(5)).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The input stays open: only the linger time hands these five records on, and the
    // progress line shows when they went through.
    let started = Instant::now();
    while !log.lock().unwrap().contains("progress: 5 records in") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "records not processed while the input stayed open:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sabot-host did not stop after SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let log = log.lock().unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("interrupted") && log.contains("stopped: 5 records in"),
        "{log}"
    );
    assert_eq!(
        ids(&read_jsonl(std::path::Path::new(&output))),
        [0, 1, 2, 3, 4]
    );
    drop(stdin);
}

#[test]
fn csv_on_stdin_infers_its_schema_from_the_header() {
    let input = records(50);
    let csv: String = std::iter::once("id,amount,account\n".to_string())
        .chain(
            input
                .iter()
                .map(|(id, amount, account)| format!("{id},{amount:.1},{account}\n")),
        )
        .collect();
    let filter = guest("filter");
    let cmd = support::host(&[
        "deploy",
        filter.to_str().unwrap(),
        "--input",
        "-",
        "--input-format",
        "csv",
        "--set",
        "min=200",
        "--dead-letter",
        "/dev/null",
    ]);
    let out = run_with(cmd, csv.as_bytes(), std::time::Duration::from_secs(120));
    out.assert_success();
    let rows: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ids(&rows), expected_ids(&input, 200.0));
}

#[test]
fn without_an_agent_deploy_copies_its_input_to_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let all = records(25);
    std::fs::write(dir.path().join("in.jsonl"), jsonl(&all)).unwrap();
    let out = run(&[
        "deploy",
        "-i",
        &arg(dir.path(), "in.jsonl"),
        "-o",
        &arg(dir.path(), "out.jsonl"),
        "--max-rows",
        "10",
    ]);
    out.assert_success();
    let rows = read_jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(ids(&rows), (0..25).collect::<Vec<_>>());
    assert_eq!(rows[3]["account"], "acct-3");

    let nothing = run(&["deploy", "-i", &arg(dir.path(), "in.jsonl")]);
    assert_eq!(
        nothing.code,
        Some(2),
        "no agent and no output: {}",
        nothing.stderr
    );
}
