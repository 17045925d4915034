//! Bad input never crashes the host and never disappears: every record that cannot be decoded
//! lands in the dead-letter file with its reason and line number, and the good records around
//! it are processed.

mod support;

use serde_json::Value;
use support::{arg, guest, read_jsonl, run};

const GOOD: &str = r#"{"id":1,"amount":10.5,"account":"a"}"#;

fn deploy(dir: &std::path::Path, input: &str, extra: &[&str]) -> support::Outcome {
    let filter = guest("filter");
    let mut args = vec![
        "deploy".to_string(),
        filter.display().to_string(),
        "-i".into(),
        arg(dir, input),
        "-o".into(),
        arg(dir, "out.jsonl"),
        "--dead-letter".into(),
        arg(dir, "dead.jsonl"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn job_with_schema(dir: &std::path::Path) -> String {
    let path = dir.join("job.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            dead_letter = "dead.jsonl"
            [[sources]]
            path = "in.jsonl"
            schema = {{ id = "int64", amount = "float64", account = "utf8" }}
            [[agents]]
            wasm = "{}"
            [[sinks]]
            stream = "out"
            path = "out.jsonl"
            "#,
            guest("filter").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn malformed_missing_and_mistyped_records_are_dead_lettered_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        GOOD.to_string(),
        r#"{"id":2,"amount":20.0,"account":"b""#.to_string(), // truncated JSON
        r#"{"id":3,"account":"c"}"#.to_string(),              // missing amount
        r#"{"id":4,"amount":"lots","account":"d"}"#.to_string(), // wrong type
        String::new(),                                        // blank line: skipped, not an error
        "[1,2,3]".to_string(),                                // not an object
        r#"{"id":7,"amount":70.0,"account":"g"}"#.to_string(),
    ];
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let out = run(&["deploy", "--config", &job_with_schema(dir.path())]);
    out.assert_success();

    let good: Vec<i64> = read_jsonl(&dir.path().join("out.jsonl"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(good, [1, 7]);

    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    let offsets: Vec<i64> = dead.iter().map(|d| d["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, [1, 2, 3, 5], "{dead:#?}");
    let reason = |i: usize| dead[i]["reason"].as_str().unwrap().to_lowercase();
    assert!(
        reason(0).contains("eof") || reason(0).contains("json"),
        "{}",
        reason(0)
    );
    assert!(
        reason(1).contains("missing required field `amount`"),
        "{}",
        reason(1)
    );
    assert!(
        reason(2).contains("lots") || reason(2).contains("float64"),
        "{}",
        reason(2)
    );
    for letter in &dead {
        assert_eq!(letter["stage"], "source:input");
        assert!(
            letter["record"].as_str().is_some_and(|r| !r.is_empty()),
            "raw line kept: {letter}"
        );
    }
    assert!(out.stderr.contains("4 dead letters"), "{}", out.stderr);
}

#[test]
fn inferred_schema_dead_letters_values_of_another_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"id":{i},"amount":{i}.5,"account":"x"}}"#))
        .collect();
    lines.push(r#"{"id":20,"amount":{"nested":true},"account":"x"}"#.into());
    lines.push(r#"{"id":"twenty-one","amount":1.5,"account":"x"}"#.into());
    lines.push(r#"{"id":22,"amount":22.5,"account":"x"}"#.into());
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    // One batch holds everything, so inference sees the bad lines too and must still
    // settle on the majority types.
    deploy(dir.path(), "in.jsonl", &["--max-rows", "10"]).assert_success();
    let good = read_jsonl(&dir.path().join("out.jsonl"));
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(good.len() + dead.len(), 23, "every record accounted for");
    assert_eq!(good.len(), 21, "{dead:#?}");
    let dead_offsets: Vec<i64> = dead.iter().map(|d| d["offset"].as_i64().unwrap()).collect();
    assert_eq!(dead_offsets, [20, 21]);
}

#[test]
fn an_empty_file_is_a_clean_run_with_no_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "").unwrap();
    let out = deploy(dir.path(), "in.jsonl", &[]);
    out.assert_success();
    assert!(out.stderr.contains("holds no records"), "{}", out.stderr);
    assert_eq!(
        read_jsonl(&dir.path().join("out.jsonl")),
        Vec::<Value>::new()
    );
    assert!(!dir.path().join("dead.jsonl").exists());

    std::fs::write(dir.path().join("in.csv"), "").unwrap();
    deploy(dir.path(), "in.csv", &[]).assert_success();
}

#[test]
fn bad_csv_rows_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.csv"),
        "id,amount,account\n1,1.5,a\n2,not-a-number,b\n3,3.5\n4,4.5,d\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("job.toml"),
        format!(
            "dead_letter = \"dead.jsonl\"\n[[sources]]\npath = \"in.csv\"\nschema = {{ id = \"int64\", amount = \"float64\", account = \"utf8\" }}\n[[agents]]\nwasm = \"{}\"\n[[sinks]]\nstream = \"out\"\npath = \"out.jsonl\"\n",
            guest("filter").display()
        ),
    )
    .unwrap();
    run(&["deploy", "--config", &arg(dir.path(), "job.toml")]).assert_success();
    let good: Vec<i64> = read_jsonl(&dir.path().join("out.jsonl"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(good, [1, 4]);
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    let offsets: Vec<i64> = dead.iter().map(|d| d["offset"].as_i64().unwrap()).collect();
    assert_eq!(
        offsets,
        [2, 3],
        "CSV line numbers count the header: {dead:#?}"
    );
}

#[test]
fn a_wrong_schema_for_the_agent_is_dead_lettered_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    // `amount` is text here: the filter agent reports bad data for the batch.
    std::fs::write(
        dir.path().join("in.jsonl"),
        r#"{"id":1,"amount":"ten","account":"a"}"#,
    )
    .unwrap();
    deploy(dir.path(), "in.jsonl", &[]).assert_success();
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("column `amount` is Utf8, expected Float64"),
        "{reason}"
    );
    assert_eq!(dead[0]["stage"], "agent:filter");
    assert_eq!(dead[0]["record"]["id"], 1);
}
