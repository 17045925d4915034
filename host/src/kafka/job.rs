//! What a job needs from the Kafka cluster before it starts: its topics, and the dead-letter
//! topics of its Kafka sources.

use std::collections::HashMap;

use anyhow::Result;

use super::admin::Admin;
use super::dead_letter::{DeadLetterTopics, Route};
use crate::pipeline::Plan;

/// A topic the job reads or writes does not exist (and `--create-topics` was not given).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MissingTopic(pub String);

/// Checks (or creates) every topic of `plan` and opens the dead-letter topics. `None` when
/// the job uses no Kafka.
pub fn prepare(plan: &Plan) -> Result<Option<DeadLetterTopics>> {
    let sources: Vec<_> = plan
        .sources
        .iter()
        .filter_map(|s| Some((s, s.kafka.as_ref()?)))
        .collect();
    let sinks: Vec<_> = plan.sinks.iter().filter_map(|s| s.kafka.as_ref()).collect();
    let Some(kafka) = sources
        .first()
        .map(|(_, k)| &k.client)
        .or_else(|| sinks.first().map(|k| &k.client))
    else {
        return Ok(None);
    };
    let admin = Admin::connect(kafka)?;
    let topics: Vec<&str> = sources
        .iter()
        .map(|(_, k)| k.topic.as_str())
        .chain(sinks.iter().map(|k| k.topic.as_str()))
        .collect();
    admin.ensure(&topics, kafka.create_topics)?;
    let mut routes = HashMap::new();
    for (source, spec) in &sources {
        // Dead-letter topics belong to the job: created when missing.
        admin.ensure(&[spec.dead_letter_topic.as_str()], true)?;
        tracing::info!(
            "dead letters of `{}` go to topic `{}`",
            source.name,
            spec.dead_letter_topic
        );
        routes.insert(
            source.name.clone(),
            Route {
                source_topic: spec.topic.clone(),
                dead_letter_topic: spec.dead_letter_topic.clone(),
            },
        );
    }
    if routes.is_empty() {
        return Ok(None);
    }
    Ok(Some(DeadLetterTopics::new(kafka, routes)?))
}
