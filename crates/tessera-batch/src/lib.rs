//! Tessera's batch processing (SPEC §9), under construction: chunk planning on record
//! boundaries (`plan`). Per-chunk processing, checkpoints and the `batch` node come next.

pub mod plan;

pub use plan::{Chunk, Format, Plan, PlanError, PlanOptions, plan_chunks};
