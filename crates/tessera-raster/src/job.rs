//! Whole-raster jobs — band math and slope from GeoTIFF inputs to a GeoTIFF output — shared by
//! `tessera raster` and the pipelines' `raster` node. A job is a recipe over the inputs, read in
//! full-width strips of tiles and written as it arrives (memory bounded), with progress counted
//! in tiles and a cache directory making a re-run compute nothing.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::calc::{Expr, Variable};
use crate::error::{RasterError, Result};
use crate::events::{TileEvent, TileState, Tiling};
use crate::focal::{self, SlopeOptions, SlopeUnit};
use crate::geotiff::{GeoTiff, StripWriter, WriteOptions};
use crate::recipe::{ComputeInput, Conversion, Recipe};
use crate::source::{RasterSource, SourceError};
use crate::{Array, DType, Dataset, DatasetOptions, PixelWindow, Raster, Shape};

/// What a job computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// One output band per expression, over the inputs' bands (see [`crate::calc`]).
    Calc { expressions: Vec<String> },
    /// The slope of one band of the single input.
    Slope {
        /// 0-based.
        band: usize,
        scale: f64,
        unit: SlopeUnit,
    },
}

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Operation::Calc { .. } => "calc",
            Operation::Slope { .. } => "slope",
        }
    }
}

/// A named input file.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInput {
    pub name: String,
    pub path: PathBuf,
    /// A stable name of the file's content (e.g. `sha256:…`) for files whose path changes
    /// between runs: cached tiles computed from it are then reused whatever its path. Without
    /// it the file is known by its path, size and modification time.
    pub content_id: Option<String>,
}

/// Everything a job needs. The output lies on the first input's grid; other inputs are read
/// onto it (nearest neighbour when their grids differ).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub inputs: Vec<JobInput>,
    pub operation: Operation,
    pub output: PathBuf,
    /// Output type (default f32).
    pub dtype: Option<DType>,
    /// Output nodata (default: -9999 for floats, the type's maximum for integers).
    pub nodata: Option<f64>,
    /// Cache directory: tiles computed once, across runs.
    pub cache_dir: Option<PathBuf>,
    pub cache_tile: usize,
    pub compute_tile: usize,
    /// Compute threads; 0 = one per core.
    pub threads: usize,
    /// Recompute every tile (with a cache).
    pub overwrite: bool,
}

impl JobSpec {
    pub fn new(inputs: Vec<JobInput>, operation: Operation, output: impl Into<PathBuf>) -> JobSpec {
        JobSpec {
            inputs,
            operation,
            output: output.into(),
            dtype: None,
            nodata: None,
            cache_dir: None,
            cache_tile: 512,
            compute_tile: 256,
            threads: 0,
            overwrite: false,
        }
    }
}

/// Tiles done so far (cache tiles with a cache, compute tiles without).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    /// Compute function calls so far (0 on a warm cache).
    pub computed: usize,
    /// The grid of the tiles `done` counts: columns and rows.
    pub cols: usize,
    pub rows: usize,
    /// The tile of that grid whose state just changed, and its new state (for a tile map);
    /// `None` on the last call.
    pub tile: Option<(crate::error::TileIndex, TileState)>,
}

/// Statistics of one output band, over its valid (not nodata) pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandStats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub valid_pixels: u64,
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    pub output: PathBuf,
    pub width: usize,
    pub height: usize,
    pub dtype: DType,
    pub nodata: f64,
    pub bands: Vec<BandStats>,
    pub tiles: TileCounts,
    pub seconds: f64,
}

/// What a job's tiles were, each count saying which tiles it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileCounts {
    /// The tiling `total` and `reused` count (and progress is counted in): cache tiles (one
    /// file each in the cache directory) with a cache, computation tiles without.
    pub tiling: Tiling,
    /// Pixels per side of the tiles of `tiling`.
    pub size: usize,
    /// Tiles of `tiling` covering the output.
    pub total: usize,
    /// Cache tiles found valid in the cache directory and read instead of computed (0 without
    /// a cache).
    pub reused: usize,
    /// Pixels per side of a computation tile (what the compute function receives).
    pub compute_size: usize,
    /// Computation tiles the compute function ran on in this run (0 when every cache tile was
    /// reused).
    pub computed: usize,
}

fn default_nodata(dtype: DType) -> f64 {
    match dtype {
        DType::U8 => u8::MAX as f64,
        DType::U16 => u16::MAX as f64,
        DType::I16 => i16::MIN as f64,
        DType::U32 => u32::MAX as f64,
        DType::I32 => i32::MIN as f64,
        DType::F32 | DType::F64 => -9999.0,
    }
}

fn invalid(message: String) -> RasterError {
    RasterError::Invalid(message)
}

/// Runs `spec`, calling `on_progress` as tiles change state; it answers `Break` to cancel the
/// job (checked between strips of tiles). The output appears (renamed from a temporary file
/// beside it) only when complete.
pub fn run(
    spec: &JobSpec,
    on_progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<JobReport> {
    let started = Instant::now();
    if spec.inputs.is_empty() {
        return Err(invalid("raster job: no input".into()));
    }
    if spec.cache_tile == 0 || spec.compute_tile == 0 {
        return Err(invalid("raster job: tile sizes must be positive".into()));
    }
    let threads = match spec.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let ds = Dataset::new(DatasetOptions {
        io_threads: 2,
        compute_threads: threads,
        pools: Vec::new(),
    })?;
    let mut rasters: Vec<Raster> = Vec::new();
    let mut projection = None;
    for input in &spec.inputs {
        let source = open_source(&input.path).map_err(|e| match RasterError::from(e) {
            RasterError::Invalid(m) => invalid(format!("input `{}`: {m}", input.name)),
            RasterError::Io(m) => RasterError::Io(format!("input `{}`: {m}", input.name)),
            e => e,
        })?;
        if rasters.is_empty() {
            projection = source.projection();
        }
        let name = match &input.content_id {
            Some(id) => id.clone(),
            None => input.path.display().to_string(),
        };
        let raster = ds.add_source(&name, source)?;
        // The output lies on the first input: another input outside it would make every
        // pixel nodata, a result that looks like success.
        if let Some(first) = rasters.first()
            && !raster.footprint().share_area(&first.footprint())
        {
            return Err(invalid(format!(
                "input `{}` ({}) does not overlap the output's extent, which is input `{}`'s ({}): \
                 every output pixel would be nodata; give inputs that cover the same area",
                input.name,
                extent_text(&raster.footprint()),
                spec.inputs[0].name,
                extent_text(&first.footprint()),
            )));
        }
        rasters.push(raster);
    }
    let dtype = spec.dtype.unwrap_or(DType::F32);
    let nodata = spec.nodata.unwrap_or_else(|| default_nodata(dtype));
    let computed = Arc::new(AtomicUsize::new(0));
    let recipe = build_recipe(spec, &rasters, dtype, nodata, computed.clone())?;
    let bands = recipe.bands;
    let footprint = rasters[0].footprint();
    let events = ds.subscribe();
    let raster = ds.create_recipe(recipe)?;

    let (tile, tiling) = match spec.cache_dir {
        Some(_) => (spec.cache_tile, Tiling::Cache),
        None => (spec.compute_tile, Tiling::Compute),
    };
    let (width, height) = (footprint.width(), footprint.height());
    let (cols, rows) = (width.div_ceil(tile), height.div_ceil(tile));
    let total = cols * rows;
    let strips: Vec<_> = (0..height)
        .step_by(tile)
        .map(|row| {
            footprint.window(PixelWindow::new(
                0,
                row as i64,
                width,
                tile.min(height - row),
            ))
        })
        .collect();

    let temp = temporary_path(&spec.output)?;
    let options = WriteOptions {
        nodata: Some(nodata),
        projection,
        ..WriteOptions::default()
    };
    let mut stats = vec![Accumulator::default(); bands];
    let stop = AtomicBool::new(false);
    let written = std::thread::scope(|scope| {
        let (done_tx, done_rx) = crossbeam_channel::bounded::<Result<()>>(1);
        let output = Output {
            raster: &raster,
            temp: &temp,
            dtype,
            options: &options,
            nodata,
            stop: &stop,
        };
        let stats = &mut stats;
        scope.spawn(move || {
            let _ = done_tx.send(output.write(strips, stats));
        });
        // Progress on this thread: the callback need not be `Send`.
        let name = raster.name().to_string();
        let mut seen = HashSet::new();
        // Cache tiles written by this run: the other cached ones were reused.
        let mut written = HashSet::new();
        let done_state = match tiling {
            Tiling::Cache => TileState::Cached,
            Tiling::Compute => TileState::Delivered,
        };
        let mut note = |event: &TileEvent| {
            if event.raster != name {
                return;
            }
            if event.tiling == tiling && event.state == done_state {
                seen.insert(event.tile);
            }
            if event.tiling == Tiling::Cache && event.state == TileState::Writing {
                written.insert(event.tile);
            }
            let flow = on_progress(Progress {
                done: seen.len(),
                total,
                computed: computed.load(Ordering::Relaxed),
                cols,
                rows,
                tile: (event.tiling == tiling).then_some((event.tile, event.state)),
            });
            if flow.is_break() {
                stop.store(true, Ordering::SeqCst);
            }
        };
        let mut live = events.clone();
        loop {
            crossbeam_channel::select! {
                recv(live) -> event => {
                    match event {
                        Ok(event) => note(&event),
                        // No more events (the scheduler stopped): wait for the writer alone.
                        Err(_) => live = crossbeam_channel::never(),
                    }
                }
                recv(done_rx) -> result => {
                    // Events sent before the writer ended may still be queued (`select!` picks
                    // any ready channel): counted before the tiles are.
                    for event in events.try_iter() {
                        note(&event);
                    }
                    let reused = match tiling {
                        Tiling::Cache => seen.difference(&written).count(),
                        Tiling::Compute => 0,
                    };
                    break result
                        .unwrap_or_else(|_| Err(RasterError::Internal("writer thread died".into())))
                        .map(|()| reused);
                }
            }
        }
    });
    let reused = match written {
        Ok(reused) => reused,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    std::fs::rename(&temp, &spec.output).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        RasterError::Io(format!(
            "cannot rename {} to {}: {e}",
            temp.display(),
            spec.output.display()
        ))
    })?;
    let _ = on_progress(Progress {
        done: total,
        total,
        computed: computed.load(Ordering::Relaxed),
        cols,
        rows,
        tile: None,
    });
    Ok(JobReport {
        output: spec.output.clone(),
        width,
        height,
        dtype,
        nodata,
        bands: stats.iter().map(Accumulator::finish).collect(),
        tiles: TileCounts {
            tiling,
            size: tile,
            total,
            reused,
            compute_size: spec.compute_tile,
            computed: computed.load(Ordering::Relaxed),
        },
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `x0..x1 × y0..y1` of a footprint, for messages.
fn extent_text(f: &crate::Footprint) -> String {
    let e = f.extent();
    format!("x {}..{}, y {}..{}", e.minx, e.maxx, e.miny, e.maxy)
}

/// A GeoTIFF, or with the `gdal` feature any format GDAL reads.
fn open_source(path: &Path) -> std::result::Result<Arc<dyn RasterSource>, SourceError> {
    match GeoTiff::open(path) {
        Ok(tiff) => Ok(Arc::new(tiff)),
        #[cfg(feature = "gdal")]
        Err(e) if path.is_file() => crate::GdalSource::open(path)
            .map(|s| Arc::new(s) as Arc<dyn RasterSource>)
            .map_err(|_| e),
        Err(e) => Err(e),
    }
}

/// `.{name}.tessera-tmp` beside `output` (its directory must exist).
fn temporary_path(output: &Path) -> Result<PathBuf> {
    let name = output
        .file_name()
        .ok_or_else(|| invalid(format!("output {}: not a file name", output.display())))?;
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir
        && !dir.is_dir()
    {
        return Err(invalid(format!(
            "output {}: directory {} does not exist",
            output.display(),
            dir.display()
        )));
    }
    let temp = format!(".{}.tessera-tmp", name.to_string_lossy());
    Ok(dir.map_or_else(|| PathBuf::from(&temp), |d| d.join(&temp)))
}

/// Where and how the job's strips are written.
struct Output<'a> {
    raster: &'a Raster,
    temp: &'a Path,
    dtype: DType,
    options: &'a WriteOptions,
    nodata: f64,
    stop: &'a AtomicBool,
}

impl Output<'_> {
    fn write(&self, strips: Vec<crate::Footprint>, stats: &mut [Accumulator]) -> Result<()> {
        let footprint = self.raster.footprint();
        let bands = self.raster.bands();
        let mut writer =
            StripWriter::create(self.temp, &footprint, self.dtype, bands, self.options)?;
        // Dropping the queue on an early return cancels the tiles not started.
        for strip in self.raster.queue_data(strips, 2) {
            if self.stop.load(Ordering::SeqCst) {
                return Err(RasterError::Cancelled);
            }
            let strip = strip?;
            for (band, acc) in stats.iter_mut().enumerate() {
                acc.add(&strip, band, self.nodata);
            }
            writer.write_rows(&strip)?;
        }
        writer.finish()?;
        Ok(())
    }
}

/// Running min, max and mean of a band.
#[derive(Debug, Clone, Copy)]
struct Accumulator {
    min: f64,
    max: f64,
    sum: f64,
    count: u64,
}

impl Default for Accumulator {
    fn default() -> Accumulator {
        Accumulator {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            count: 0,
        }
    }
}

impl Accumulator {
    fn add(&mut self, array: &Array, band: usize, nodata: f64) {
        let s = array.shape();
        for pixel in 0..s.height * s.width {
            let v = array.data().get_f64(pixel * s.bands + band);
            if v != nodata && !v.is_nan() {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
                self.sum += v;
                self.count += 1;
            }
        }
    }

    fn finish(&self) -> BandStats {
        if self.count == 0 {
            return BandStats {
                min: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
                valid_pixels: 0,
            };
        }
        BandStats {
            min: self.min,
            max: self.max,
            mean: self.sum / self.count as f64,
            valid_pixels: self.count,
        }
    }
}

/// The recipe of `spec` over the opened inputs. Its version names the operation and the
/// inputs, so a changed expression or input never reuses cached tiles.
fn build_recipe(
    spec: &JobSpec,
    rasters: &[Raster],
    dtype: DType,
    nodata: f64,
    computed: Arc<AtomicUsize>,
) -> Result<Recipe> {
    let names: Vec<&str> = spec.inputs.iter().map(|i| i.name.as_str()).collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(invalid(format!("input `{name}` is given twice")));
        }
    }
    let footprint = rasters[0].footprint();
    let version = format!(
        "job-v1 {} {:?} inputs={names:?} dtype={dtype} nodata={nodata}",
        spec.operation.name(),
        spec.operation
    );
    let recipe = match &spec.operation {
        Operation::Calc { expressions } => {
            if expressions.is_empty() {
                return Err(invalid("calc: no expression".into()));
            }
            let mut parsed = Vec::new();
            for text in expressions {
                let expr = Expr::parse(text, &names).map_err(|e| invalid(e.to_string()))?;
                for v in expr.variables() {
                    let bands = rasters[v.input].bands();
                    if v.band >= bands {
                        return Err(invalid(format!(
                            "expression `{text}`: input `{}` has {bands} band(s), band {} asked",
                            names[v.input],
                            v.band + 1
                        )));
                    }
                }
                parsed.push(expr);
            }
            let input_nodata: Vec<Option<f64>> = rasters.iter().map(Raster::nodata).collect();
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let bands = parsed.len();
            let mut recipe = Recipe::new("calc", footprint, dtype, bands, move |input| {
                computed.fetch_add(1, Ordering::Relaxed);
                calc_tile(input, &parsed, &names, &input_nodata, dtype, nodata)
            });
            for (input, raster) in spec.inputs.iter().zip(rasters) {
                recipe = recipe.primitive(input.name.clone(), raster, Conversion::Same);
            }
            recipe
        }
        Operation::Slope { band, scale, unit } => {
            if rasters.len() != 1 {
                return Err(invalid(format!(
                    "slope takes one input, got {}",
                    rasters.len()
                )));
            }
            if *band >= rasters[0].bands() {
                return Err(invalid(format!(
                    "slope: input `{}` has {} band(s), band {} asked",
                    names[0],
                    rasters[0].bands(),
                    band + 1
                )));
            }
            let options = SlopeOptions {
                scale: *scale,
                unit: *unit,
                nodata,
            };
            let (band, input_nodata) = (*band, rasters[0].nodata());
            Recipe::new("slope", footprint, dtype, 1, move |input| {
                computed.fetch_add(1, Ordering::Relaxed);
                let halo = &input.primitives[0];
                let out = focal::slope(
                    &footprint,
                    input.footprint,
                    &halo.array,
                    band,
                    input_nodata,
                    &options,
                )?;
                Ok(out.cast(dtype))
            })
            .primitive(names[0], &rasters[0], Conversion::Dilate(1))
        }
    };
    let mut recipe = recipe
        .version(version)
        .nodata(nodata)
        .compute_tiles(spec.compute_tile, spec.compute_tile);
    if let Some(dir) = &spec.cache_dir {
        recipe = recipe
            .cache(dir, spec.cache_tile, spec.cache_tile)
            .overwrite(spec.overwrite);
    }
    Ok(recipe)
}

/// One tile of band math: each variable's band as f64; a pixel where a variable is its
/// input's nodata, or where the result is not finite, is `nodata`.
fn calc_tile(
    input: &ComputeInput<'_>,
    expressions: &[Expr],
    names: &[String],
    input_nodata: &[Option<f64>],
    dtype: DType,
    nodata: f64,
) -> std::result::Result<Array, String> {
    let (h, w) = (input.footprint.height(), input.footprint.width());
    let len = h * w;
    let mut variables: Vec<Variable> = expressions.iter().flat_map(Expr::variables).collect();
    variables.sort();
    variables.dedup();
    let mut missing = vec![false; len];
    let mut columns: Vec<(Variable, Vec<f64>)> = Vec::with_capacity(variables.len());
    for v in variables {
        let primitive = input
            .primitive(&names[v.input])
            .ok_or_else(|| format!("input `{}` missing", names[v.input]))?;
        let a = &primitive.array;
        let bands = a.shape().bands;
        let values: Vec<f64> = (0..len)
            .map(|p| a.data().get_f64(p * bands + v.band))
            .collect();
        if let Some(nd) = input_nodata[v.input] {
            for (m, x) in missing.iter_mut().zip(&values) {
                *m |= *x == nd || x.is_nan();
            }
        }
        columns.push((v, values));
    }
    let lookup = |v: Variable| -> &[f64] {
        columns
            .iter()
            .find(|(var, _)| *var == v)
            .map_or(&[][..], |(_, values)| values.as_slice())
    };
    let bands = expressions.len();
    let mut out = Array::filled(dtype, Shape::new(h, w, bands), nodata);
    for (band, expr) in expressions.iter().enumerate() {
        let values = expr.eval(len, &lookup);
        let data = out.data_mut();
        for (p, value) in values.into_iter().enumerate() {
            if !missing[p] && value.is_finite() {
                data.set_f64(p * bands + band, value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
