//! The `raster` executor: resolves the node's inputs (paths or objects) and output,
//! runs the tiled job of `tessera_raster::job` on a blocking thread (cancelled with the node),
//! and stores the result as an object when asked. Its output names the raster and its stats.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tessera_core::model::{RasterInput, RasterOperation, RasterSpec, RasterTarget};
use tessera_core::scheduler::JobError;
use tessera_raster::focal::SlopeUnit;
use tessera_raster::job::{self, JobInput, JobReport, JobSpec, Operation};
use tessera_raster::{DType, RasterError, Tiling};

use crate::jobs::{CancelFlag, CancelOnDrop, JobContext};
use crate::template::{no_objects, render};

/// The tile maps of one task's raster jobs, by node key: what its page draws while they run.
#[derive(Debug, Default)]
pub(crate) struct RasterBoard {
    maps: std::sync::Mutex<std::collections::BTreeMap<String, TileMap>>,
}

#[derive(Debug)]
struct TileMap {
    cols: usize,
    rows: usize,
    done: usize,
    /// One letter per tile (`RasterProgress::STATES`), row by row.
    tiles: Vec<u8>,
}

impl RasterBoard {
    fn update(&self, key: &str, p: &job::Progress) {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let map = maps.entry(key.to_string()).or_insert_with(|| TileMap {
            cols: p.cols,
            rows: p.rows,
            done: 0,
            tiles: vec![b'.'; p.cols * p.rows],
        });
        map.done = p.done;
        if let Some((tile, state)) = p.tile {
            let at = tile.row * map.cols + tile.col;
            if let Some(t) = map.tiles.get_mut(at) {
                *t = letter(state);
            }
        }
    }

    pub fn snapshot(&self) -> Vec<tessera_core::scheduler::RasterProgress> {
        let maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.iter()
            .map(|(key, m)| tessera_core::scheduler::RasterProgress {
                key: key.clone(),
                cols: m.cols,
                rows: m.rows,
                done: m.done,
                total: m.cols * m.rows,
                tiles: String::from_utf8_lossy(&m.tiles).into_owned(),
            })
            .collect()
    }
}

fn letter(state: tessera_raster::TileState) -> u8 {
    use tessera_raster::TileState as S;
    match state {
        S::Queued => b'q',
        S::Reading => b'r',
        S::Computing => b'c',
        S::Writing => b'w',
        S::Cached => b'C',
        S::Delivered => b'd',
        S::Failed => b'f',
    }
}

pub(crate) async fn run(ctx: &mut JobContext, spec: &RasterSpec) -> Result<Value, JobError> {
    let values = ctx.template_values();
    let scope = values.scope();
    let user = |e: String| JobError::permanent(e);
    let work_dir = ctx.work_dir("raster");
    let mut no_objects =
        no_objects("object references cannot be used in a path; use `object:` instead");
    // Relative paths resolve against the pipeline file's directory (local runs).
    let run = ctx.run.clone();
    let mut templated = |field: &str, text: &str| -> Result<PathBuf, JobError> {
        render(text, &scope, &mut no_objects)
            .map(|p| run.resolve(p))
            .map_err(|e| user(format!("{field}: {e}")))
    };
    let mut inputs = Vec::new();
    for (name, source) in &spec.inputs {
        let (path, content_id) = match source {
            RasterInput::Path(p) => (templated(&format!("inputs.{name}"), p)?, None),
            RasterInput::Object(path) => {
                let field = format!("inputs.{name}.object");
                let (file, meta) = ctx.object_file(&field, path, &work_dir).await?;
                // Each upload is a new object: its content, not its path, names its tiles.
                (file, Some(format!("sha256:{}", meta.sha256)))
            }
        };
        inputs.push(JobInput {
            name: name.clone(),
            path,
            content_id,
        });
    }
    let output = match &spec.output {
        RasterTarget::Path(p) => templated("output", p)?,
        RasterTarget::Object { .. } => {
            tokio::fs::create_dir_all(&work_dir).await.map_err(|e| {
                JobError::retryable(format!("cannot create {}: {e}", work_dir.display()))
            })?;
            work_dir.join("output.tif")
        }
    };
    let cache_dir = match &spec.cache_dir {
        Some(dir) => Some(templated("cache_dir", dir)?),
        None => None,
    };
    let operation = match &spec.operation {
        RasterOperation::Calc { expressions } => Operation::Calc {
            expressions: expressions.clone(),
        },
        RasterOperation::Slope {
            band,
            scale,
            percent,
        } => Operation::Slope {
            band: *band,
            scale: *scale,
            unit: if *percent {
                SlopeUnit::Percent
            } else {
                SlopeUnit::Degrees
            },
        },
    };
    let job_spec = JobSpec {
        inputs,
        operation,
        output,
        // Checked when the pipeline was parsed.
        dtype: spec.dtype.as_deref().and_then(DType::parse),
        nodata: spec.nodata,
        cache_dir,
        cache_tile: spec.tile,
        compute_tile: spec.compute_tile,
        threads: spec.threads,
        overwrite: spec.overwrite,
    };
    let cancel = Arc::new(CancelFlag::default());
    let _guard = CancelOnDrop(cancel.clone());
    let (board, key) = (ctx.engine.raster_board(&ctx.task_id), ctx.key.clone());
    let report = tokio::task::spawn_blocking(move || {
        job::run(&job_spec, &mut |p| {
            board.update(&key, &p);
            if cancel.flag.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
    })
    .await
    .map_err(|e| JobError::permanent(format!("the raster job panicked: {e}")))?
    .map_err(job_error)?;
    ctx.log("engine", format!("raster: {}", summary(&report)));
    let raster = match &spec.output {
        RasterTarget::Path(_) => Value::String(report.output.display().to_string()),
        RasterTarget::Object { name } => {
            let meta = ctx
                .engine
                .objects
                .put_file(&report.output, name.clone(), Some("image/tiff".into()))
                .await
                .map_err(|e| JobError::retryable(format!("cannot store the output: {e}")))?;
            ctx.record_object(&meta).await?;
            let _ = tokio::fs::remove_dir_all(&work_dir).await;
            meta.to_json()
        }
    };
    Ok(report_json(raster, &report))
}

fn job_error(e: RasterError) -> JobError {
    if e.is_retryable() {
        JobError::retryable(e.to_string())
    } else {
        JobError::permanent(e.to_string())
    }
}

/// One line on a finished job: size, tiles reused and computed, time.
pub fn summary(report: &JobReport) -> String {
    let t = &report.tiles;
    let reused = match t.tiling {
        Tiling::Cache => format!(", {} reused from the cache", t.reused),
        Tiling::Compute => String::new(),
    };
    format!(
        "{} × {}, {} {} tiles of {}²{reused}, {} compute tiles of {}² computed, in {:.2} s",
        report.width,
        report.height,
        t.total,
        tiling_name(t.tiling),
        t.size,
        t.computed,
        t.compute_size,
        report.seconds
    )
}

fn tiling_name(t: Tiling) -> &'static str {
    match t {
        Tiling::Cache => "cache",
        Tiling::Compute => "compute",
    }
}

/// What a raster job produced, as the node's `out` and `tessera raster`'s report: the raster
/// (a path, or an object reference), what it holds, and its tiles. `tiles.total` and
/// `tiles.reused` count tiles of `tiles.tiling` (`cache` tiles — one file each in the cache
/// directory — with a cache, `compute` tiles without), `tiles.size` pixels a side;
/// `tiles.computed` counts computation tiles (`tiles.compute_size` pixels a side) the compute
/// function ran on in this run: 0 when everything came from the cache.
pub fn report_json(raster: Value, report: &JobReport) -> Value {
    let number = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
    json!({
        "raster": raster,
        "width": report.width,
        "height": report.height,
        "dtype": report.dtype.name(),
        "nodata": number(report.nodata),
        "tiles": {
            "tiling": tiling_name(report.tiles.tiling),
            "size": report.tiles.size,
            "total": report.tiles.total,
            "reused": report.tiles.reused,
            "compute_size": report.tiles.compute_size,
            "computed": report.tiles.computed,
        },
        "bands": report.bands.iter().map(|b| json!({
            "min": number(b.min),
            "max": number(b.max),
            "mean": number(b.mean),
            "valid_pixels": b.valid_pixels,
        })).collect::<Vec<_>>(),
    })
}
