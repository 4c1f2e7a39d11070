//! `tessera raster calc|slope`: band math and slope over GeoTIFFs, tiled, parallel and cached
//! (`tessera_raster::job`), with a progress bar in tiles; the report JSON goes to stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tessera_raster::DType;
use tessera_raster::focal::SlopeUnit;
use tessera_raster::job::{self, JobInput, JobSpec, Operation, Progress};

#[derive(Debug, Subcommand)]
pub enum RasterCommand {
    /// Band math like gdal_calc.py: `-i a=dem.tif -i b=ortho.tif --expr "(b - a) / (b + a)"`.
    /// Inputs by name (`a` is band 1, `b[2]` band 2); `+ - * / % ^`, comparisons, `&& || !`,
    /// abs sqrt exp ln log10 sin cos tan asin acos atan atan2 floor ceil round min max pow
    /// where(cond, then, else) isnan, pi. One output band per --expr. A pixel where an input
    /// used is nodata, or where the result is not finite, is nodata.
    Calc {
        /// Input `NAME=PATH` (repeatable); the output lies on the first input's grid.
        #[arg(short = 'i', long = "input", value_name = "NAME=PATH", required = true)]
        inputs: Vec<String>,
        /// Expression of one output band (repeatable).
        #[arg(long = "expr", required = true)]
        expressions: Vec<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Slope of an elevation raster (Horn's method, as `gdaldem slope`), in degrees by default.
    Slope {
        /// Elevation raster.
        input: PathBuf,
        /// Band of the elevation (1-based).
        #[arg(long, default_value_t = 1)]
        band: usize,
        /// Vertical units per horizontal unit (111120 for metres over a grid in degrees).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Slope in percent instead of degrees.
        #[arg(long)]
        percent: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Output GeoTIFF (written beside as a temporary file, renamed when complete).
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Cache directory: tiles computed once, reused by the next runs of the same job.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Recompute every cached tile.
    #[arg(long)]
    overwrite: bool,
    /// Output type: u8 u16 i16 u32 i32 f32 f64.
    #[arg(long = "type", default_value = "f32")]
    dtype: String,
    /// Output nodata (default -9999 for floats, the type's maximum for unsigned integers).
    #[arg(long)]
    nodata: Option<f64>,
    /// Cache tile size in pixels.
    #[arg(long, default_value_t = 512)]
    tile: usize,
    /// Computation tile size in pixels.
    #[arg(long, default_value_t = 256)]
    compute_tile: usize,
    /// Compute threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn raster(command: RasterCommand) -> Result<ExitCode> {
    let (inputs, operation, common) = match command {
        RasterCommand::Calc {
            inputs,
            expressions,
            common,
        } => {
            let inputs = inputs
                .iter()
                .map(|text| {
                    let Some((name, path)) = text.split_once('=') else {
                        bail!("--input `{text}`: expected NAME=PATH");
                    };
                    Ok(JobInput {
                        name: name.trim().to_string(),
                        path: path.into(),
                        content_id: None,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            (inputs, Operation::Calc { expressions }, common)
        }
        RasterCommand::Slope {
            input,
            band,
            scale,
            percent,
            common,
        } => {
            if band == 0 {
                bail!("--band: bands are numbered from 1");
            }
            let unit = if percent {
                SlopeUnit::Percent
            } else {
                SlopeUnit::Degrees
            };
            let operation = Operation::Slope {
                band: band - 1,
                scale,
                unit,
            };
            let inputs = vec![JobInput {
                name: "dem".into(),
                path: input,
                content_id: None,
            }];
            (inputs, operation, common)
        }
    };
    let dtype = DType::parse(&common.dtype).with_context(|| {
        format!(
            "--type `{}`: expected one of u8 u16 i16 u32 i32 f32 f64",
            common.dtype
        )
    })?;
    let spec = JobSpec {
        inputs,
        operation,
        output: common.output,
        dtype: Some(dtype),
        nodata: common.nodata,
        cache_dir: common.cache_dir,
        cache_tile: common.tile,
        compute_tile: common.compute_tile,
        threads: common.threads,
        overwrite: common.overwrite,
    };
    let mut bar = TileBar::new();
    let report = job::run(&spec, &mut |p| {
        bar.update(p);
        std::ops::ControlFlow::Continue(())
    });
    bar.finish();
    let report = report?;
    errln!(
        "{}: {}",
        report.output.display(),
        tessera_engine::raster_summary(&report)
    );
    let raster = serde_json::Value::String(report.output.display().to_string());
    let json = tessera_engine::raster_report_json(raster, &report);
    crate::output::json(&json)?;
    Ok(ExitCode::SUCCESS)
}

/// A bar of tiles on a terminal; otherwise a line at most every second, and the last one.
struct TileBar {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
    last: Option<Progress>,
}

impl TileBar {
    fn new() -> TileBar {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} tiles, {msg} ({per_sec}, eta {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        TileBar {
            bar,
            last_line: None,
            last: None,
        }
    }

    fn update(&mut self, p: Progress) {
        self.last = Some(p);
        if let Some(bar) = &self.bar {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("{} computed", p.computed));
            return;
        }
        if self
            .last_line
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.print(p);
        }
    }

    fn print(&mut self, p: Progress) {
        errln!(
            "tiles: {}/{} done, {} computed",
            p.done,
            p.total,
            p.computed
        );
        self.last_line = Some(Instant::now());
    }

    fn finish(&mut self) {
        match (&self.bar, self.last) {
            (Some(bar), _) => bar.finish_and_clear(),
            (None, Some(p)) => self.print(p),
            (None, None) => {}
        }
    }
}
