//! Rows and arguments of the [`crate::Store`] trait.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tessera_core::scheduler::{Record, TaskState};

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub pipeline: String,
    /// The pipeline document (JSON form), so a task can be resumed from the store alone.
    pub definition: Value,
    pub input: Value,
    pub created_at: u64,
}

/// Everything one scheduler step must make durable.
#[derive(Debug)]
pub struct CommitBatch<'a> {
    pub task_id: &'a str,
    pub records: Vec<&'a Record>,
    pub cache: Vec<(&'a str, &'a str, &'a Arc<Value>)>,
    pub now: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub id: String,
    pub pipeline: String,
    #[serde(skip)]
    pub definition: Value,
    pub input: Value,
    pub state: String,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// Which process runs (or last ran) the task: `host:pid`.
    #[serde(skip)]
    pub runner: Option<String>,
}

impl TaskRow {
    pub fn task_state(&self) -> TaskState {
        TaskState::parse(&self.state).unwrap_or(TaskState::Failed)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskSummary {
    pub id: String,
    pub pipeline: String,
    pub state: String,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub pipeline: Option<String>,
    pub state: Option<String>,
    pub limit: usize,
    /// Only tasks created strictly before this (created_at, id): keyset pagination.
    pub before: Option<(u64, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRunRow {
    pub key: String,
    pub node: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub iteration: u32,
    pub attempt: u32,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub cached: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub task_id: String,
    pub key: String,
    pub attempt: u32,
    /// `stdout`, `stderr` or `engine`.
    pub stream: String,
    pub line: String,
    pub at: u64,
}
