//! `sabot-host topics`: list, create and describe Kafka topics, so a job needs no other Kafka
//! tooling.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::BrokerArgs;
use crate::kafka::{Admin, KafkaConfig, TopicInfo};

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List topics with their partition counts.
    List(ListArgs),
    /// Create a topic.
    Create(CreateArgs),
    /// Show a topic's partitions and offsets; with --group, the group's committed offsets
    /// and lag.
    Describe(DescribeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    #[arg(short, long, default_value_t = 3)]
    pub partitions: i32,
    /// Replicas of each partition.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Topic configuration KEY=VALUE, e.g. retention.ms=86400000 (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
    /// Succeed if the topic exists already.
    #[arg(long)]
    pub if_not_exists: bool,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Topic name.
    pub name: String,
    /// Consumer group whose committed offsets and lag to show.
    #[arg(short, long)]
    pub group: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

/// Runs a `topics` command.
pub fn execute(command: TopicsCommand) -> Result<()> {
    match command {
        TopicsCommand::List(args) => {
            let topics = admin(&args.broker)?.list()?;
            if args.json {
                let list: Vec<_> = topics
                    .iter()
                    .map(|(name, partitions)| serde_json::json!({"name": name, "partitions": partitions}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for (name, partitions) in topics {
                    println!("{name:<40} {partitions:>4} partitions");
                }
            }
        }
        TopicsCommand::Create(args) => {
            let configs = args
                .configs
                .iter()
                .map(|c| {
                    c.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--config `{c}`: expected KEY=VALUE"))
                })
                .collect::<Result<Vec<_>>>()?;
            if args.partitions < 1 {
                bail!("--partitions must be at least 1");
            }
            admin(&args.broker)?.create(
                &args.name,
                args.partitions,
                args.replication_factor,
                &configs,
                args.if_not_exists,
            )?;
            println!(
                "topic `{}` ready ({} partitions)",
                args.name, args.partitions
            );
        }
        TopicsCommand::Describe(args) => {
            let info = admin(&args.broker)?.describe(&args.name, args.group.as_deref())?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_topic(&info, args.group.as_deref());
            }
        }
    }
    Ok(())
}

fn admin(broker: &BrokerArgs) -> Result<Admin> {
    let mut kafka = KafkaConfig {
        brokers: Some("kafka://localhost:9092".into()),
        ..Default::default()
    };
    broker.apply(&mut kafka)?;
    Admin::connect(&kafka)
}

fn print_topic(info: &TopicInfo, group: Option<&str>) {
    println!("topic {} ({} partitions)", info.name, info.partitions.len());
    match group {
        Some(group) => println!(
            "{:>9} {:>12} {:>12} {:>12} {:>10}   group {group}",
            "partition", "low", "high", "committed", "lag"
        ),
        None => println!("{:>9} {:>12} {:>12}", "partition", "low", "high"),
    }
    for p in &info.partitions {
        let records = format!("{:>9} {:>12} {:>12}", p.partition, p.low, p.high);
        match group {
            Some(_) => println!(
                "{records} {:>12} {:>10}",
                p.committed.map_or("-".to_string(), |c| c.to_string()),
                p.lag.unwrap_or_default()
            ),
            None => println!("{records}"),
        }
    }
    if let Some(lag) = info.total_lag() {
        println!("total lag {lag}");
    }
    if info
        .partitions
        .iter()
        .any(|p| p.lag.is_some_and(|lag| lag < 0))
    {
        println!(
            "note: committed offsets past `high` mean the broker reports a stale end offset \
             (tansu 0.6 answers ListOffsets with the start of its last record batch)"
        );
    }
}
