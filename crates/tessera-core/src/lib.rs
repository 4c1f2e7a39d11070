//! Tessera's pure core: the pipeline model and parser, validation, data paths, sandboxed
//! scripts and the scheduler state machine. Nothing here does I/O, so it is tested fast.

pub mod data;
pub mod datapath;
pub mod graph;
pub mod input;
pub mod loops;
pub mod model;
pub mod parse;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod scheduler;
pub mod script;
pub mod services;
pub mod template;
pub mod time;
pub mod topology;
pub mod validate;

pub use data::Data;
pub use model::{Node, NodeKind, Pipeline};
pub use plan::Plan;
pub use report::{Issue, Report};
pub use rhai;
pub use schedule::{Catchup, Schedule};
pub use script::Scripts;
pub use validate::{count_nodes, load_document, load_pipeline, load_value};
