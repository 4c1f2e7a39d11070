//! The pipeline model: typed nodes, node kinds and their specific fields.
//!
//! Values here are produced by [`crate::parse`], which checks shapes and reports every error;
//! [`crate::validate`] then checks the graph (ids, cycles, reachability, paths, scripts).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::datapath::DataPath;
pub use crate::schedule::{Catchup, Schedule};

/// A parsed pipeline: nodes in declaration order plus pipeline-level settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The pipeline's name: the entry's `api.route`, or a name given by the caller.
    pub name: String,
    pub nodes: Vec<Node>,
    /// Named concurrency limits (`pool: gpu` on a node, `pools: {gpu: 1}` here).
    pub pools: BTreeMap<String, usize>,
    /// When tasks are created by the clock (`schedule: {cron: …}`), if ever (boxed: a
    /// compiled cron pattern is large, and most pipelines have none).
    pub schedule: Option<Box<Schedule>>,
}

impl Pipeline {
    /// Every node the document declares, loop bodies (nested ones too) included.
    pub fn declared_nodes(&self) -> usize {
        fn count(nodes: &[Node]) -> usize {
            nodes
                .iter()
                .map(|n| match &n.kind {
                    NodeKind::Loop(l) => 1 + count(&l.nodes),
                    _ => 1,
                })
                .sum()
        }
        count(&self.nodes)
    }

    /// What a process needs to run this pipeline's tasks: `pool:NAME` for each named pool its
    /// nodes use, `type:KIND` for each kind of external node (`command`, `http`, `service`,
    /// `batch`, `raster`), loop bodies included; sorted, each once. A process restricted to
    /// some pools or node kinds (`tessera worker --pools gpu`) claims only tasks whose needs
    /// it serves.
    pub fn needs(&self) -> Vec<String> {
        fn visit(nodes: &[Node], out: &mut std::collections::BTreeSet<String>) {
            for n in nodes {
                if let Some(pool) = &n.pool {
                    out.insert(format!("pool:{pool}"));
                }
                if n.kind.is_external() {
                    out.insert(format!("type:{}", n.kind.type_name()));
                }
                if let NodeKind::Loop(l) = &n.kind {
                    visit(&l.nodes, out);
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        visit(&self.nodes, &mut out);
        out.into_iter().collect()
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub fn entry(&self) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| matches!(n.kind, NodeKind::Entry(_)))
    }
}

/// One node of a pipeline (or of a loop's template sub-graph).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    pub params: Map<String, Value>,
    /// Explicit data directives; `None` means "merge the predecessors' outputs".
    pub input: Option<InputSpec>,
    pub next: Vec<String>,
    /// When the node may start, when not "every predecessor resolved and one edge taken".
    pub ready: Option<Readiness>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub cache: bool,
    pub pool: Option<String>,
    /// The node exactly as written, used for cache keys and display.
    pub definition: Value,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// Every successor id this node can lead to: `next`, plus a branch's `then`/`else` arms.
    pub fn successors(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.next.iter().map(String::as_str).collect();
        if let NodeKind::Branch(b) = &self.kind {
            for arm in [&b.then, &b.otherwise] {
                for id in &arm.next {
                    if !out.contains(&id.as_str()) {
                        out.push(id);
                    }
                }
            }
        }
        out
    }

    /// Every script attached to this node, with the field it came from.
    pub fn scripts(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if let Some(Readiness::Expression(e)) = &self.ready {
            out.push(("ready".to_string(), e.as_str()));
        }
        for (field, src) in [("before", &self.before), ("after", &self.after)] {
            if let Some(s) = src {
                out.push((field.to_string(), s.as_str()));
            }
        }
        if let NodeKind::Batch(b) = &self.kind
            && let BatchProcessor::Rows { columns, filter } = &b.processor
        {
            for (name, src) in columns {
                out.push((format!("processor.columns.{name}"), src.as_str()));
            }
            if let Some(f) = filter {
                out.push(("processor.filter".into(), f.as_str()));
            }
        }
        if let NodeKind::Branch(b) = &self.kind {
            out.push(("if".into(), b.condition.as_str()));
            for (name, arm) in [("then", &b.then), ("else", &b.otherwise)] {
                if let Some(e) = &arm.exec {
                    out.push((format!("{name}.exec"), e.as_str()));
                }
            }
        }
        out
    }
}

/// A node's `ready`: a named rule (as Airflow's trigger rules) or a boolean expression,
/// evaluated each time a predecessor resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Rule(ReadyRule),
    Expression(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyRule {
    /// Once every predecessor finished, failed or was skipped; a failure of a predecessor
    /// whose successors all have this rule does not fail the task (clean-up, reports).
    AllDone,
    /// As soon as one predecessor finished (skipped when none does).
    OneFinished,
    /// Only when every predecessor finished (skipped when one was skipped).
    AllFinished,
    /// When every predecessor finished or was skipped, even if all were skipped.
    NoneFailed,
}

impl ReadyRule {
    pub const ALL: [ReadyRule; 4] = [
        ReadyRule::AllDone,
        ReadyRule::OneFinished,
        ReadyRule::AllFinished,
        ReadyRule::NoneFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReadyRule::AllDone => "all_done",
            ReadyRule::OneFinished => "one_finished",
            ReadyRule::AllFinished => "all_finished",
            ReadyRule::NoneFailed => "none_failed",
        }
    }

    pub fn parse(word: &str) -> Option<ReadyRule> {
        ReadyRule::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

/// The closed set of node kinds this build can run.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Entry(EntrySpec),
    End(EndSpec),
    /// Generic pass-through node that runs its scripts.
    Node,
    Command(CommandSpec),
    Http(HttpSpec),
    /// Asynchronous call of a service that answers by callback.
    Service(ServiceSpec),
    Branch(BranchSpec),
    Loop(LoopSpec),
    /// Chunked, parallel, restartable processing of a file of records.
    Batch(Box<BatchSpec>),
    /// A raster computed tile by tile from GeoTIFF inputs, optionally cached.
    Raster(Box<RasterSpec>),
}

impl NodeKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Entry(_) => "entry",
            NodeKind::End(_) => "end",
            NodeKind::Node => "node",
            NodeKind::Command(_) => "command",
            NodeKind::Http(_) => "http",
            NodeKind::Service(_) => "service",
            NodeKind::Branch(_) => "branch",
            NodeKind::Loop(_) => "loop",
            NodeKind::Batch(_) => "batch",
            NodeKind::Raster(_) => "raster",
        }
    }

    /// Kinds whose work is done outside the scheduler (processes, network).
    pub fn is_external(&self) -> bool {
        matches!(
            self,
            NodeKind::Command(_)
                | NodeKind::Http(_)
                | NodeKind::Service(_)
                | NodeKind::Batch(_)
                | NodeKind::Raster(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntrySpec {
    pub route: Option<String>,
    /// Example body: object (typed JSON fields), string or list of strings (binary fields).
    pub body: Option<Value>,
    pub summary: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndSpec {
    /// Wait for every `end` node instead of finishing at the first one reached.
    pub wait_all: bool,
}

/// How a command is started: an argv list run directly, or a string run by `sh -c`.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandLine {
    Argv(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub command: CommandLine,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Send the input JSON on stdin (default true).
    pub stdin: bool,
    /// Directories besides the command's scratch directory that `{"$file": path}` outputs
    /// may be ingested from (the pipeline author's choice; never from input data).
    pub files_from: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub url: String,
    pub verb: String,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// Where the node's calls (`POST <endpoint>?task_id=..&callback_url=..`) go.
    pub target: ServiceTarget,
}

/// A `service` node names its endpoint by URL or by the name a service announced.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceTarget {
    /// `url:` the endpoint itself (may hold `{{path}}` and `${env:NAME}` templates).
    Url(String),
    /// `service: faces/detect`: an announced service's endpoint, looked up in the registry
    /// each time the node is dispatched (so a service that moved is found where it is now).
    Named(ServiceName),
}

/// `name/endpoint`: an announced service's name and the path of one of its endpoints
/// (`faces/detect` = service `faces`, endpoint path `/detect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    pub service: String,
    /// The endpoint's path without its leading `/` (`detect`, `v2/blur`).
    pub endpoint: String,
}

impl ServiceName {
    /// Reads `name/endpoint`; the error says what is wrong with the text.
    pub fn parse(text: &str) -> Result<ServiceName, String> {
        let expected = "expected `service-name/endpoint`, as announced (e.g. `faces/detect`)";
        let Some((service, endpoint)) = text.split_once('/') else {
            return Err(format!("`{text}`: {expected}"));
        };
        if !crate::parse::valid_id(service) {
            return Err(format!(
                "`{text}`: `{service}` is not a service name ([A-Za-z_][A-Za-z0-9_-]*); {expected}"
            ));
        }
        // A path, not a URL: no query, fragment, spaces, templates or empty segments.
        let path_ok = !endpoint.is_empty()
            && endpoint.split('/').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
            });
        if !path_ok {
            return Err(format!(
                "`{text}`: `{endpoint}` is not an endpoint path (letters, digits, `-._~` and `/` between segments); {expected}"
            ));
        }
        Ok(ServiceName {
            service: service.to_string(),
            endpoint: endpoint.to_string(),
        })
    }

    /// The endpoint's path as announced (`/detect`).
    pub fn path(&self) -> String {
        format!("/{}", self.endpoint)
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.service, self.endpoint)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BranchSpec {
    /// The `if` expression.
    pub condition: String,
    pub then: BranchArm,
    pub otherwise: BranchArm,
    pub max_iterations: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BranchArm {
    pub next: Vec<String>,
    pub out: Option<InputSpec>,
    pub exec: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoopSpec {
    pub items: DataPath,
    /// Template sub-graph; the first node starts each branch.
    pub nodes: Vec<Node>,
    /// Path inside a branch whose value is collected; default: the last template node's `out`.
    pub collect: Option<DataPath>,
    /// Branches in flight at once; 0 = no limit.
    pub max_parallel: usize,
    /// Items whose branch may fail (a body node failed for good) without failing the loop:
    /// such an item collects `null` and is listed under `failed` in the loop's output. 0: the
    /// first failed item fails the loop, as any failed node fails its task.
    pub max_failed_items: u64,
}

/// A `batch` node: reader → processor → writer over chunks of `chunk_size` records.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpec {
    pub reader: BatchReader,
    pub processor: BatchProcessor,
    pub writer: BatchWriter,
    /// Records per chunk (the unit of work, commit and restart).
    pub chunk_size: u64,
    /// Chunks processed at once; 0 = one per CPU core.
    pub parallelism: usize,
    pub skip: SkipPolicy,
    /// How many times the job may be started, first run and resumes included.
    pub start_limit: Option<u32>,
    /// Commit each chunk durably (fsync + checkpoint). Off: faster, but a failed run restarts
    /// from scratch.
    pub checkpoints: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    Csv,
    Jsonl,
    Lines,
}

impl RecordFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::Csv => "csv",
            RecordFormat::Jsonl => "jsonl",
            RecordFormat::Lines => "lines",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchReader {
    pub format: RecordFormat,
    pub source: BatchSource,
    /// CSV field delimiter (one byte).
    pub delimiter: u8,
    /// The CSV file starts with a header naming the columns (default true); without one,
    /// columns are named `c1`, `c2`, …
    pub header: bool,
}

/// Where the records come from: a file path (templated), or an object in the node's input.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchSource {
    Path(String),
    Object(DataPath),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchWriter {
    /// `Csv` or `Jsonl`.
    pub format: RecordFormat,
    pub target: BatchTarget,
    pub delimiter: u8,
}

/// Where the output goes: a file path (templated), or a new object (the node's output names it).
#[derive(Debug, Clone, PartialEq)]
pub enum BatchTarget {
    Path(String),
    Object { name: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchProcessor {
    /// Per-row expressions: `columns` added or replaced in order, rows kept when `filter` is true.
    Rows {
        columns: Vec<(String, String)>,
        filter: Option<String>,
    },
    /// A command fed one chunk at a time on stdin, answering the processed chunk on stdout.
    Command {
        /// Command line, `env` and `cwd` as for a `command` node (`stdin` is always the chunk).
        command: CommandSpec,
        /// What the command reads and writes (default: the reader's and the writer's formats).
        input: Option<RecordFormat>,
        output: Option<RecordFormat>,
        /// The command may drop rows; otherwise it must answer as many rows as it got.
        filters: bool,
    },
}

/// A `raster` node: an operation over named input rasters, written to a GeoTIFF.
#[derive(Debug, Clone, PartialEq)]
pub struct RasterSpec {
    pub operation: RasterOperation,
    /// Inputs by the names the operation uses; the output lies on the first one's grid.
    pub inputs: Vec<(String, RasterInput)>,
    pub output: RasterTarget,
    /// Output sample type (`u8`, `u16`, `i16`, `u32`, `i32`, `f32`, `f64`); default f32.
    pub dtype: Option<String>,
    pub nodata: Option<f64>,
    /// Tiles computed once, reused by later runs (templated path).
    pub cache_dir: Option<String>,
    pub overwrite: bool,
    /// Cache and computation tile sizes in pixels.
    pub tile: usize,
    pub compute_tile: usize,
    /// Compute threads; 0 = one per core.
    pub threads: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RasterOperation {
    /// Band math: one output band per expression (`(b - a) / (b + a)`, `a[2]` for band 2).
    Calc { expressions: Vec<String> },
    /// Slope of `band` (0-based) of the single input, as `gdaldem slope`.
    Slope {
        band: usize,
        scale: f64,
        percent: bool,
    },
}

/// Where an input raster comes from: a file path (templated), or an object in the node's input.
#[derive(Debug, Clone, PartialEq)]
pub enum RasterInput {
    Path(String),
    Object(DataPath),
}

/// Where the output goes: a file path (templated), or a new object.
#[derive(Debug, Clone, PartialEq)]
pub enum RasterTarget {
    Path(String),
    Object { name: Option<String> },
}

/// Which bad rows are skipped (and recorded) instead of failing the job, and how many at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SkipPolicy {
    pub limit: u64,
    pub parse_errors: bool,
    pub expression_errors: bool,
}

/// Data directives: a single path, or named paths and literals.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    Path(DataPath),
    Map(Vec<(String, Directive)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    Path(DataPath),
    Literal(Value),
}

impl InputSpec {
    /// Each path with the field it sits in, relative to the spec (`""` or `.name`).
    pub fn named_paths(&self) -> Vec<(String, &DataPath)> {
        match self {
            InputSpec::Path(p) => vec![(String::new(), p)],
            InputSpec::Map(entries) => entries
                .iter()
                .filter_map(|(name, d)| match d {
                    Directive::Path(p) => Some((format!(".{name}"), p)),
                    Directive::Literal(_) => None,
                })
                .collect(),
        }
    }

    pub fn paths(&self) -> Vec<&DataPath> {
        match self {
            InputSpec::Path(p) => vec![p],
            InputSpec::Map(entries) => entries
                .iter()
                .filter_map(|(_, d)| match d {
                    Directive::Path(p) => Some(p),
                    Directive::Literal(_) => None,
                })
                .collect(),
        }
    }
}

/// Retry policy: `attempts` in total (1 = no retry), exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `next_attempt` (2 = first retry): `backoff * 2^(n-2)` capped at
    /// `max_backoff`, then "equal jitter": half fixed, half drawn from `jitter` in [0, 1).
    pub fn delay_before(&self, next_attempt: u32, jitter: f64) -> Duration {
        let exp = next_attempt.saturating_sub(2).min(30);
        let base = self
            .backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Parses a duration: `"500ms"`, `"1s"`, `"1.5s"`, `"2m"`, `"1h"`, or a number of seconds.
pub fn parse_duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("`{n}` is not a non-negative number of seconds")),
        Value::String(s) => parse_duration_str(s),
        other => Err(format!(
            "expected a duration such as \"1s\", got {}",
            json_type(other)
        )),
    }
}

pub fn parse_duration_str(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 500ms, 1s, 2m, 1h)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit `{other}` in `{s}`")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A short name for a JSON value's type, for error messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration(&json!("500ms")).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration(&json!("1.5s")).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration(&json!("2m")).unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(parse_duration(&json!(3)).unwrap(), Duration::from_secs(3));
        assert!(parse_duration(&json!("3 parsecs")).is_err());
        assert!(parse_duration(&json!(-1)).is_err());
        assert!(parse_duration(&json!(true)).is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        };
        assert_eq!(p.delay_before(2, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay_before(3, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay_before(4, 0.0), Duration::from_secs(2));
        assert_eq!(p.delay_before(9, 1.0), Duration::from_secs(5));
        assert!(p.delay_before(3, 0.5) < Duration::from_secs(2));
    }
}
