//! Benchmarks of the raster engine (BENCHMARKS.md, issue 5):
//!   cargo run --release -p tessera-raster --example raster_bench -- all
//! `mandelbrot [SIZE]`: cold computation of a Mandelbrot recipe (512² cache tiles, 256²
//! compute tiles) with 1 then 2 compute threads, then a warm re-run (computations counted).
//! `warm [SIZE]`: windows read through a cached recipe whose cache is warm vs the same windows
//! read directly from GeoTIFF files, on a new dataset's first pass (each tile validated on first
//! use) and second pass (tiles validated); and the fixed cost per query (1-pixel windows).
//! `stream [SIZE]`: a SIZE × SIZE recipe streamed in row order with `queue_data`; peak RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tessera_raster::{
    Array, DType, Dataset, DatasetOptions, Footprint, GeoTransform, PixelWindow, Recipe, Shape,
    WriteOptions, write_geotiff,
};

fn dataset(compute_threads: usize) -> Dataset {
    Dataset::new(DatasetOptions {
        io_threads: 2,
        compute_threads,
        pools: Vec::new(),
    })
    .expect("dataset")
}

fn mandelbrot(fp: Footprint, counter: Arc<AtomicUsize>) -> Recipe {
    let size = fp.width() as f64;
    Recipe::new("mandelbrot", fp, DType::U8, 1, move |input| {
        counter.fetch_add(1, Ordering::Relaxed);
        let t = input.footprint;
        let (c0, r0) = t.pixel_offset_in(&fp).ok_or("off grid")?;
        let mut out = vec![0u8; t.width() * t.height()];
        for r in 0..t.height() {
            for c in 0..t.width() {
                let x0 = (c0 + c as i64) as f64 / size * 3.0 - 2.0;
                let y0 = (r0 + r as i64) as f64 / size * 3.0 - 1.5;
                let (mut x, mut y, mut i) = (0.0f64, 0.0f64, 0u8);
                while x * x + y * y <= 4.0 && i < 64 {
                    let xt = x * x - y * y + x0;
                    y = 2.0 * x * y + y0;
                    x = xt;
                    i += 1;
                }
                out[r * t.width() + c] = i;
            }
        }
        Array::from_vec(Shape::new(t.height(), t.width(), 1), out).map_err(|e| e.to_string())
    })
    .compute_tiles(256, 256)
}

fn grid(size: usize) -> Footprint {
    Footprint::new(GeoTransform::north_up(0.0, size as f64, 1.0), size, size).expect("footprint")
}

fn tiles_of(fp: &Footprint, tile: usize) -> Vec<Footprint> {
    let mut out = Vec::new();
    for r in (0..fp.height()).step_by(tile) {
        for c in (0..fp.width()).step_by(tile) {
            let w = tile.min(fp.width() - c);
            let h = tile.min(fp.height() - r);
            out.push(fp.window(PixelWindow::new(c as i64, r as i64, w, h)));
        }
    }
    out
}

fn bench_mandelbrot(size: usize) {
    let fp = grid(size);
    let mut times = Vec::new();
    for threads in [1, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = Arc::new(AtomicUsize::new(0));
        let ds = dataset(threads);
        let r = ds
            .create_recipe(mandelbrot(fp, counter.clone()).cache(dir.path(), 512, 512))
            .expect("recipe");
        let windows = tiles_of(&fp, 512);
        let started = Instant::now();
        for a in r.queue_data(windows.clone(), 2 * threads + 2) {
            a.expect("tile");
        }
        let cold = started.elapsed().as_secs_f64();
        let computed = counter.load(Ordering::Relaxed);
        drop(r);
        drop(ds);
        // Warm: a new dataset on the same cache directory.
        let warm_counter = Arc::new(AtomicUsize::new(0));
        let ds = dataset(threads);
        let r = ds
            .create_recipe(mandelbrot(fp, warm_counter.clone()).cache(dir.path(), 512, 512))
            .expect("recipe");
        let started = Instant::now();
        for a in r.queue_data(windows, 4) {
            a.expect("tile");
        }
        let warm = started.elapsed().as_secs_f64();
        println!(
            "mandelbrot {size}² compute_threads={threads}: cold {cold:.3} s ({computed} compute tiles), warm re-run {warm:.3} s ({} computations)",
            warm_counter.load(Ordering::Relaxed)
        );
        times.push(cold);
    }
    println!(
        "mandelbrot speed-up 1 → 2 threads: {:.2}×",
        times[0] / times[1]
    );
}

fn bench_warm(size: usize) {
    let fp = grid(size);
    let dir = tempfile::tempdir().expect("tempdir");
    let counter = Arc::new(AtomicUsize::new(0));
    {
        let ds = dataset(2);
        let r = ds
            .create_recipe(mandelbrot(fp, counter.clone()).cache(dir.path(), 512, 512))
            .expect("recipe");
        for a in r.queue_data(tiles_of(&fp, 512), 6) {
            a.expect("tile");
        }
    }
    // The same pixels as plain GeoTIFF files, one per 512² tile (what a user would otherwise read).
    let files_dir = tempfile::tempdir().expect("tempdir");
    let ds = dataset(2);
    let r = ds
        .create_recipe(mandelbrot(fp, counter.clone()).cache(dir.path(), 512, 512))
        .expect("recipe");
    let whole_tiles = tiles_of(&fp, 512);
    let mut files = Vec::new();
    for (i, t) in whole_tiles.iter().enumerate() {
        let path = files_dir.path().join(format!("t{i}.tif"));
        write_geotiff(
            &path,
            t,
            &r.get_data(t).expect("tile"),
            &WriteOptions::default(),
        )
        .expect("write");
        files.push(path);
    }
    drop(r);
    drop(ds);
    let open = || {
        let ds = dataset(2);
        let r = ds
            .create_recipe(mandelbrot(fp, counter.clone()).cache(dir.path(), 512, 512))
            .expect("recipe");
        (ds, r)
    };
    // Medians of a few repetitions: the machine is shared, single passes are noisy.
    const REPEAT: usize = 5;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let computed = counter.load(Ordering::Relaxed);
    let mut fixed = (0.0, 0.0);
    for (label, window) in [
        ("512² windows (one cache tile each)", 512usize),
        ("128² windows", 128),
        ("1-pixel windows", 1),
    ] {
        // Windows inside one tile each, the same list for both ways.
        // Up to 4 windows per tile, along its diagonal.
        let mut wins = Vec::new();
        for (i, t) in whole_tiles.iter().enumerate() {
            for k in 0..4 {
                let p = k * window;
                if p + window > t.width().min(t.height()) {
                    break;
                }
                wins.push((
                    i,
                    t.window(PixelWindow::new(p as i64, p as i64, window, window)),
                ));
            }
        }
        let n = wins.len() as f64;
        let per_window = |started: Instant| started.elapsed().as_secs_f64() * 1e6 / n;
        // Direct: open the file, read the window.
        let direct = median(
            (0..REPEAT)
                .map(|_| {
                    let started = Instant::now();
                    for (i, w) in &wins {
                        let f = tessera_raster::GeoTiff::open(&files[*i]).expect("open");
                        let a = tessera_raster::RasterSource::read(
                            &f,
                            &tessera_raster::ReadRequest::new(*w, vec![0]),
                        )
                        .expect("read");
                        std::hint::black_box(a);
                    }
                    per_window(started)
                })
                .collect(),
        );
        // Through the cached recipe: a new dataset's first pass validates each tile on its
        // first read; the second pass reads validated tiles.
        let (mut first, mut second, mut queued) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..REPEAT {
            let (_ds, r) = open();
            for pass in [&mut first, &mut second] {
                let started = Instant::now();
                for (_, w) in &wins {
                    std::hint::black_box(r.get_data(w).expect("read"));
                }
                pass.push(per_window(started));
            }
            let started = Instant::now();
            for a in r.queue_data(wins.iter().map(|(_, w)| *w).collect(), 8) {
                std::hint::black_box(a.expect("read"));
            }
            queued.push(per_window(started));
        }
        let (first, second, queued) = (median(first), median(second), median(queued));
        let versus = |t: f64| {
            format!(
                "{:+.1} %, {:+.1} µs per query",
                (t / direct - 1.0) * 100.0,
                t - direct
            )
        };
        println!(
            "warm {label}: {} windows; direct file reads {direct:.1} µs/window; get_data through the cache: first pass (validates each tile) {first:.1} µs/window ({}), second pass {second:.1} µs/window ({}); queue_data {queued:.1} µs/window",
            wins.len(),
            versus(first),
            versus(second),
        );
        if window == 1 {
            fixed = (first - direct, second - direct);
        }
    }
    println!(
        "warm fixed cost per query (1-pixel windows, vs direct reads): {:+.1} µs on first use of a tile, {:+.1} µs once validated; {} computations (medians of {REPEAT} runs)",
        fixed.0,
        fixed.1,
        counter.load(Ordering::Relaxed) - computed,
    );
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench_stream(size: usize) {
    let fp = grid(size);
    let ds = dataset(2);
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = counter.clone();
    let r = ds
        .create_recipe(
            Recipe::new("stream", fp, DType::U8, 1, move |input| {
                seen.fetch_add(1, Ordering::Relaxed);
                let t = input.footprint;
                let (c0, r0) = t.pixel_offset_in(&fp).ok_or("off grid")?;
                let v = ((c0 / 1024 + r0 / 1024) % 251) as f64;
                Ok(Array::filled(
                    DType::U8,
                    Shape::new(t.height(), t.width(), 1),
                    v,
                ))
            })
            .compute_tiles(1024, 1024),
        )
        .expect("recipe");
    let strip = 512;
    let windows: Vec<Footprint> = (0..size)
        .step_by(strip)
        .map(|row| fp.window(PixelWindow::new(0, row as i64, size, strip.min(size - row))))
        .collect();
    let n = windows.len();
    let started = Instant::now();
    let mut bytes = 0usize;
    for a in r.queue_data(windows, 2) {
        bytes += a.expect("strip").shape().len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "stream {size}×{size} u8 in {n} row strips of {strip} rows, queue_data(max_queue_size=2): {secs:.1} s, {:.0} MB/s, {} compute tiles, peak RSS {:.0} MiB",
        bytes as f64 / secs / 1e6,
        counter.load(Ordering::Relaxed),
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map_or("all", String::as_str);
    let size = |default: usize| args.get(1).and_then(|s| s.parse().ok()).unwrap_or(default);
    match what {
        "mandelbrot" => bench_mandelbrot(size(8192)),
        "warm" => bench_warm(size(4096)),
        "stream" => bench_stream(size(100_000)),
        "all" => {
            bench_warm(4096);
            bench_mandelbrot(8192);
            bench_stream(100_000);
        }
        other => eprintln!("unknown benchmark `{other}`: mandelbrot | warm | stream | all"),
    }
}
