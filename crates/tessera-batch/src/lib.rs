//! Tessera's batch processing: chunk planning on record boundaries (`plan`), records
//! and cells (`row`). Per-chunk processing, checkpoints and the `batch` node come next.

pub mod chunk;
pub mod expr;
pub mod plan;
pub mod records;
pub mod row;
pub mod sample;

pub use expr::{ExprError, ExprSpec, RowProgram};
pub use plan::{Chunk, Format, Plan, PlanError, PlanOptions, plan_chunks};
pub use row::{Cell, Fields, RowRef};
