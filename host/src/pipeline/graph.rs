//! Turning a job configuration into a plan: agents loaded and described, every agent input
//! wired to a stream, every stream that nobody reads sent to a sink.

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::config::{self, JobConfig, ResolvedLimits, SourceConfig, value_text};
use crate::io::Format;
use crate::io::schema;
use crate::io::sink::SinkSpec;
use crate::io::source::SourceSpec;
use crate::kafka::{DecodeSpec, KafkaConfig, KafkaSinkSpec, KafkaSourceSpec};
use crate::wasm::{AgentComponent, AgentInfo, Runtime};

/// An agent ready to run.
pub struct PlannedAgent {
    /// Unique name; its outputs are the streams `name.output`.
    pub name: String,
    pub component: Arc<AgentComponent>,
    pub info: AgentInfo,
    pub config: Vec<(String, String)>,
    pub limits: ResolvedLimits,
    /// (agent input name, stream it reads).
    pub inputs: Vec<(String, String)>,
}

/// A resolved job.
pub struct Plan {
    pub sources: Vec<SourceSpec>,
    pub agents: Vec<PlannedAgent>,
    pub sinks: Vec<SinkSpec>,
}

/// Loads every agent of `job` into `runtime` and wires the graph.
pub fn plan(job: &JobConfig, runtime: &Runtime) -> Result<Plan> {
    let mut sources = job
        .sources
        .iter()
        .map(|s| {
            let kafka = config::kafka_topic(&s.path).is_some();
            Ok(SourceSpec {
                name: s.name.clone(),
                path: s.path.clone(),
                format: match (s.format, kafka) {
                    (None, true) => Format::Jsonl,
                    (explicit, _) => Format::resolve(explicit, &s.path)?,
                },
                schema: s
                    .schema
                    .as_ref()
                    .map(schema::from_toml)
                    .transpose()
                    .with_context(|| format!("schema of source `{}`", s.name))?,
                event_time_column: s.event_time_column.clone(),
                allowed_lateness_ms: s.allowed_lateness_ms,
                resume_from: 0,
                kafka: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if sources.is_empty() {
        bail!("the job has no input; give one with --input PATH or [[sources]] in the config");
    }
    for source in sources
        .iter()
        .filter(|s| config::kafka_topic(&s.path).is_none())
    {
        crate::io::source::check_readable(source)?;
    }

    let mut agents: Vec<PlannedAgent> = Vec::new();
    for (index, cfg) in job.agents.iter().enumerate() {
        let limits = cfg.limits.resolve(&job.limits)?;
        let component = runtime.load(&cfg.wasm)?;
        let info = component
            .describe(&limits.wasm)
            .map_err(|err| anyhow::anyhow!("{}: describe failed: {err}", cfg.wasm.display()))?;
        let name = match &cfg.name {
            Some(name) if agents.iter().any(|a| a.name == *name) => {
                bail!("two agents are named `{name}`")
            }
            Some(name) => name.clone(),
            // The same component twice: `filter`, then `filter-2`.
            None => (1..)
                .map(|n| {
                    if n == 1 {
                        info.name.clone()
                    } else {
                        format!("{}-{n}", info.name)
                    }
                })
                .find(|candidate| !agents.iter().any(|a| a.name == *candidate))
                .expect("an unused name exists"),
        };
        if info.inputs.is_empty() {
            bail!("agent `{name}` declares no inputs");
        }
        let inputs = wire_inputs(&name, &info, &cfg.inputs, index, &sources, agents.last())?;
        let config = cfg
            .config
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect();
        agents.push(PlannedAgent {
            name,
            component: Arc::new(component),
            info,
            config,
            limits,
            inputs,
        });
    }

    check_streams(&sources, &agents)?;
    let group = job
        .kafka
        .group_id
        .clone()
        .unwrap_or_else(|| match agents.first() {
            Some(agent) => format!("sabot-{}", agent.name),
            None => "sabot-copy".to_string(),
        });
    for (source, cfg) in sources.iter_mut().zip(&job.sources) {
        source.kafka = kafka_source(source, cfg, &job.kafka, &group)?;
    }
    let streams = stream_names(&sources, &agents);
    let mut sinks = Vec::new();
    for cfg in &job.sinks {
        let stream = resolve_stream(&cfg.stream, &streams, &agents)?;
        let topic = config::kafka_topic(&cfg.path);
        let format = match (cfg.format, topic) {
            (None, Some(_)) => Format::Jsonl,
            (explicit, _) => Format::resolve(explicit, &cfg.path)?,
        };
        let kafka = match topic {
            Some(topic) => Some(KafkaSinkSpec {
                topic: topic.to_string(),
                format,
                key_column: cfg.key_column.clone(),
                client: job.kafka.clone(),
            }),
            None if cfg.key_column.is_some() => {
                bail!(
                    "output `{}`: key_column applies to Kafka outputs only",
                    cfg.path
                )
            }
            None => None,
        };
        sinks.push(SinkSpec {
            stream,
            path: cfg.path.clone(),
            format,
            kafka,
        });
    }
    for agent in &agents {
        for output in &agent.info.outputs {
            let stream = format!("{}.{}", agent.name, output.name);
            let read_by_agent = agents
                .iter()
                .any(|a| a.inputs.iter().any(|(_, s)| *s == stream));
            if !read_by_agent && !sinks.iter().any(|s| s.stream == stream) {
                tracing::info!("stream `{stream}` has no sink; writing it to stdout as JSON Lines");
                sinks.push(SinkSpec {
                    stream,
                    path: "-".into(),
                    format: Format::Jsonl,
                    kafka: None,
                });
            }
        }
    }
    Ok(Plan {
        sources,
        agents,
        sinks,
    })
}

/// The Kafka side of a `kafka:TOPIC` source; `None` for files.
fn kafka_source(
    source: &SourceSpec,
    cfg: &SourceConfig,
    kafka: &KafkaConfig,
    group: &str,
) -> Result<Option<KafkaSourceSpec>> {
    let Some(topic) = config::kafka_topic(&source.path) else {
        if !cfg.metadata.is_empty()
            || cfg.dead_letter_topic.is_some()
            || cfg.max_record_bytes.is_some()
        {
            bail!(
                "source `{}`: metadata, dead_letter_topic and max_record_bytes apply to Kafka sources only",
                source.name
            );
        }
        return Ok(None);
    };
    if topic.is_empty() {
        bail!("source `{}`: `kafka:` needs a topic name", source.name);
    }
    kafka.bootstrap()?;
    Ok(Some(KafkaSourceSpec {
        topic: topic.to_string(),
        group: group.to_string(),
        decode: DecodeSpec {
            format: source.format,
            key_format: cfg.key_format,
            metadata: cfg.metadata.clone(),
            schema: source.schema.clone(),
            max_record_bytes: cfg.max_record_bytes.unwrap_or(1 << 20),
        },
        dead_letter_topic: cfg
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{topic}.dlq")),
        stop_at_end: kafka.stop_at_end,
        event_time_column: source.event_time_column.clone(),
        allowed_lateness_ms: source.allowed_lateness_ms,
        resume_offsets: Default::default(),
        client: kafka.clone(),
    }))
}

fn wire_inputs(
    name: &str,
    info: &AgentInfo,
    configured: &toml::Table,
    index: usize,
    sources: &[SourceSpec],
    previous: Option<&PlannedAgent>,
) -> Result<Vec<(String, String)>> {
    let declared: Vec<&str> = info.inputs.iter().map(|i| i.name.as_str()).collect();
    let mut inputs = Vec::new();
    for (input, stream) in configured {
        if !declared.contains(&input.as_str()) {
            bail!(
                "agent `{name}` has no input `{input}` (it declares: {})",
                declared.join(", ")
            );
        }
        let Some(stream) = stream.as_str() else {
            bail!("input `{input}` of agent `{name}` must name a stream")
        };
        inputs.push((input.clone(), stream.to_string()));
    }
    if inputs.is_empty() {
        let stream = match (index, previous) {
            (0, _) if sources.len() == 1 => sources[0].name.clone(),
            (0, _) => bail!(
                "agent `{name}` has several sources to choose from ({}); wire them with `inputs`",
                sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (_, Some(prev)) => match prev.info.outputs.first() {
                Some(output) => format!("{}.{}", prev.name, output.name),
                None => bail!("agent `{}` has no output to feed `{name}`", prev.name),
            },
            (_, None) => unreachable!("every agent after the first has a predecessor"),
        };
        inputs.push((declared[0].to_string(), stream));
    }
    Ok(inputs)
}

fn stream_names(sources: &[SourceSpec], agents: &[PlannedAgent]) -> Vec<String> {
    let mut names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    for agent in agents {
        names.extend(
            agent
                .info
                .outputs
                .iter()
                .map(|o| format!("{}.{}", agent.name, o.name)),
        );
    }
    names
}

/// `agent.output`, a source name, or an output name only one agent has.
fn resolve_stream(wanted: &str, streams: &[String], agents: &[PlannedAgent]) -> Result<String> {
    if wanted == crate::cli::LAST_OUTPUT {
        let Some(last) = agents.last() else {
            // A job without agents copies its only source.
            return match streams {
                [only] => Ok(only.clone()),
                _ => bail!("without agents, name the stream of each --output as SOURCE=PATH"),
            };
        };
        let output = last
            .info
            .outputs
            .first()
            .with_context(|| format!("agent `{}` has no outputs", last.name))?;
        return Ok(format!("{}.{}", last.name, output.name));
    }
    if streams.iter().any(|s| s == wanted) {
        return Ok(wanted.to_string());
    }
    let matches: Vec<String> = agents
        .iter()
        .filter(|a| a.info.outputs.iter().any(|o| o.name == wanted))
        .map(|a| format!("{}.{wanted}", a.name))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no stream `{wanted}` (streams: {})", streams.join(", ")),
        many => bail!(
            "`{wanted}` is ambiguous ({}); name it as agent.output",
            many.join(", ")
        ),
    }
}

/// Checks that every agent input reads a source or the output of an agent listed before it
/// (so the graph has no cycles).
fn check_streams(sources: &[SourceSpec], agents: &[PlannedAgent]) -> Result<()> {
    for (index, agent) in agents.iter().enumerate() {
        let upstream = stream_names(sources, &agents[..index]);
        for (input, stream) in &agent.inputs {
            if !upstream.contains(stream) {
                bail!(
                    "input `{input}` of agent `{}` reads `{stream}`, which no source or earlier agent produces (available: {})",
                    agent.name,
                    upstream.join(", ")
                );
            }
        }
    }
    Ok(())
}
