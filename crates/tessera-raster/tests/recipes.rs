//! Recipes end to end, re-creating buzzard's cached-recipe scenarios: values against a
//! reference, cache reuse across datasets, overwrite, corrupt tiles, reads outside and off the
//! grid, band selection, chains of recipes, concurrent queues, failures.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tessera_raster::{
    Array, Conversion, DType, Dataset, DatasetOptions, Footprint, GeoTransform, Interpolation,
    PixelWindow, Raster, ReadRequest, Recipe, Shape, TileEvent, TileState, Tiling,
};

fn grid(width: usize, height: usize) -> Footprint {
    Footprint::new(GeoTransform::north_up(1000.0, 2000.0, 2.0), width, height).unwrap()
}

fn value(col: i64, row: i64, band: usize) -> f64 {
    (row * 1000 + col) as f64 + band as f64 * 0.5
}

/// The recipe's pixels computed directly, for comparison.
fn reference(raster: &Footprint, window: &Footprint, bands: usize, nodata: f64) -> Array {
    let (c0, r0) = window.pixel_offset_in(raster).expect("on grid");
    let mut out = Array::filled(
        DType::F32,
        Shape::new(window.height(), window.width(), bands),
        0.0,
    );
    for r in 0..window.height() {
        for c in 0..window.width() {
            let (col, row) = (c0 + c as i64, r0 + r as i64);
            let inside =
                col >= 0 && row >= 0 && col < raster.width() as i64 && row < raster.height() as i64;
            for b in 0..bands {
                out.set_f64(r, c, b, if inside { value(col, row, b) } else { nodata });
            }
        }
    }
    out
}

/// Counts computations per pixel of the recipe.
#[derive(Default, Clone)]
struct Counter(Arc<Mutex<HashMap<(i64, i64), usize>>>);

impl Counter {
    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
    fn max(&self) -> usize {
        self.0.lock().unwrap().values().copied().max().unwrap_or(0)
    }
    fn pixels(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn reset(&self) {
        self.0.lock().unwrap().clear();
    }
}

fn coords_recipe(name: &str, fp: Footprint, bands: usize, counter: &Counter) -> Recipe {
    let counter = counter.clone();
    Recipe::new(name, fp, DType::F32, bands, move |input| {
        let (c0, r0) = input.footprint.pixel_offset_in(&fp).ok_or("off grid")?;
        let t = input.footprint;
        let mut out = Array::filled(DType::F32, Shape::new(t.height(), t.width(), bands), 0.0);
        let mut seen = counter.0.lock().unwrap();
        for r in 0..t.height() {
            for c in 0..t.width() {
                let (col, row) = (c0 + c as i64, r0 + r as i64);
                *seen.entry((col, row)).or_default() += 1;
                for b in 0..bands {
                    out.set_f64(r, c, b, value(col, row, b));
                }
            }
        }
        Ok(out)
    })
    .nodata(-1.0)
    .compute_tiles(16, 16)
}

fn dataset() -> Dataset {
    Dataset::new(DatasetOptions {
        io_threads: 2,
        compute_threads: 2,
        pools: Vec::new(),
    })
    .unwrap()
}

fn tile_files(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tif"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn windows(fp: &Footprint) -> Vec<Footprint> {
    let (w, h) = (fp.width() as i64, fp.height() as i64);
    vec![
        *fp,
        fp.window(PixelWindow::new(0, 0, 1, 1)),
        fp.window(PixelWindow::new(5, 7, 40, 21)),
        fp.window(PixelWindow::new(w - 3, h - 2, 3, 2)),
        // Partly outside, fully outside.
        fp.window(PixelWindow::new(-5, -4, 20, 12)),
        fp.window(PixelWindow::new(w - 10, h - 5, 30, 30)),
        fp.window(PixelWindow::new(w + 3, 0, 8, 8)),
        fp.window(PixelWindow::new(-20, -20, w as usize + 40, h as usize + 40)),
    ]
}

#[test]
fn cached_values_equal_the_reference_whether_cache_tiles_divide_the_raster_or_not() {
    for cache_tile in [(20, 10), (33, 17), (100, 70), (7, 64)] {
        let dir = tempfile::tempdir().unwrap();
        let fp = grid(100, 70);
        let counter = Counter::default();
        let ds = dataset();
        let r = ds
            .create_recipe(coords_recipe("coords", fp, 2, &counter).cache(
                dir.path(),
                cache_tile.0,
                cache_tile.1,
            ))
            .unwrap();
        for w in windows(&fp) {
            assert_eq!(
                r.get_data(&w).unwrap(),
                reference(&fp, &w, 2, -1.0),
                "{cache_tile:?} {w}"
            );
        }
        assert_eq!(
            counter.max(),
            1,
            "each pixel computed once ({cache_tile:?})"
        );
        assert_eq!(counter.pixels(), 100 * 70);
        let expected_files = 100_usize.div_ceil(cache_tile.0) * 70_usize.div_ceil(cache_tile.1);
        assert_eq!(tile_files(dir.path()).len(), expected_files);
    }
}

#[test]
fn a_second_dataset_reads_the_cache_without_computing_and_leaves_the_files_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let fp = grid(90, 60);
    let counter = Counter::default();
    {
        let ds = dataset();
        let r = ds
            .create_recipe(coords_recipe("coords", fp, 1, &counter).cache(dir.path(), 32, 32))
            .unwrap();
        r.get_data(&fp).unwrap();
    }
    let before = tile_files(dir.path());
    let ds = dataset();
    let r = ds
        .create_recipe(
            Recipe::new("coords", fp, DType::F32, 1, |_| {
                Err("must not be called".into())
            })
            .nodata(-1.0)
            .compute_tiles(16, 16)
            .cache(dir.path(), 32, 32),
        )
        .unwrap();
    for w in windows(&fp) {
        assert_eq!(r.get_data(&w).unwrap(), reference(&fp, &w, 1, -1.0));
    }
    assert_eq!(tile_files(dir.path()), before);
}

#[test]
fn overwrite_recomputes_everything_and_a_changed_recipe_does_not_reuse_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let fp = grid(64, 48);
    let counter = Counter::default();
    dataset()
        .create_recipe(coords_recipe("a", fp, 1, &counter).cache(dir.path(), 32, 16))
        .unwrap()
        .get_data(&fp)
        .unwrap();
    counter.reset();
    let ds = dataset();
    let r = ds
        .create_recipe(
            coords_recipe("a", fp, 1, &counter)
                .cache(dir.path(), 32, 16)
                .overwrite(true),
        )
        .unwrap();
    // While it is in use, the directory cannot be overwritten.
    let err = dataset()
        .create_recipe(
            coords_recipe("a", fp, 1, &counter)
                .cache(dir.path(), 32, 16)
                .overwrite(true),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("another recipe or process is using it"),
        "{err}"
    );
    r.get_data(&fp).unwrap();
    assert_eq!((counter.total(), counter.max()), (64 * 48, 1));
    counter.reset();
    let changed = ds
        .create_recipe(
            coords_recipe("a", fp, 1, &counter)
                .version("2")
                .cache(dir.path(), 32, 16),
        )
        .unwrap();
    changed.get_data(&fp).unwrap();
    assert_eq!(
        counter.total(),
        64 * 48,
        "another version computes its own tiles"
    );
}

#[test]
fn one_corrupt_tile_is_recomputed_alone_and_all_corrupt_tiles_still_give_correct_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let fp = grid(64, 64);
    let counter = Counter::default();
    dataset()
        .create_recipe(coords_recipe("c", fp, 1, &counter).cache(dir.path(), 32, 32))
        .unwrap()
        .get_data(&fp)
        .unwrap();
    let files = tile_files(dir.path());
    assert_eq!(files.len(), 4);
    // Flip bytes in the middle of one file (pixels), truncate nothing.
    let victim = dir.path().join(&files[1].0);
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 100..n - 50] {
        *b ^= 0x5a;
    }
    std::fs::write(&victim, bytes).unwrap();
    counter.reset();
    let r = dataset()
        .create_recipe(coords_recipe("c", fp, 1, &counter).cache(dir.path(), 32, 32))
        .unwrap();
    assert_eq!(r.get_data(&fp).unwrap(), reference(&fp, &fp, 1, -1.0));
    assert_eq!(
        counter.total(),
        32 * 32,
        "only the corrupt tile is recomputed"
    );

    // Every file damaged (truncated, emptied, garbage): 13 queries all correct.
    for (i, (name, _)) in tile_files(dir.path()).iter().enumerate() {
        let path = dir.path().join(name);
        match i % 3 {
            0 => std::fs::write(&path, b"").unwrap(),
            1 => {
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            }
            _ => std::fs::write(&path, b"II*\0garbage").unwrap(),
        }
    }
    counter.reset();
    let r = dataset()
        .create_recipe(coords_recipe("c", fp, 1, &counter).cache(dir.path(), 32, 32))
        .unwrap();
    let queries: Vec<Footprint> = (0..13)
        .map(|i| fp.window(PixelWindow::new(i * 4 - 8, i * 3 - 4, 30, 20)))
        .collect();
    for (w, got) in queries.iter().zip(r.queue_data(queries.clone(), 4)) {
        assert_eq!(got.unwrap(), reference(&fp, w, 1, -1.0));
    }
    assert_eq!(counter.max(), 1);
}

#[test]
fn off_grid_reads_resample_like_a_file_and_bands_come_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let fp = grid(50, 40);
    let counter = Counter::default();
    let ds = dataset();
    let r = ds
        .create_recipe(coords_recipe("c", fp, 3, &counter).cache(dir.path(), 16, 16))
        .unwrap();
    // The same pixels as a GeoTIFF file: reads through the recipe and through the file agree.
    let file = dir.path().join("reference.tif");
    tessera_raster::write_geotiff(
        &file,
        &fp,
        &reference(&fp, &fp, 3, -1.0),
        &tessera_raster::WriteOptions {
            nodata: Some(-1.0),
            ..Default::default()
        },
    )
    .unwrap();
    let f = ds.open(&file).unwrap();
    let shifted = Footprint::new(GeoTransform::north_up(1003.3, 1990.1, 1.3), 37, 29).unwrap();
    let coarse = Footprint::new(GeoTransform::north_up(990.0, 2010.0, 6.0), 12, 10).unwrap();
    for w in [shifted, coarse] {
        for interpolation in [
            Interpolation::Nearest,
            Interpolation::Bilinear,
            Interpolation::Cubic,
            Interpolation::Average,
        ] {
            let request = ReadRequest::new(w, vec![2, 0, 2])
                .interpolation(interpolation)
                .dst_nodata(-9.0);
            assert_eq!(
                r.read(request.clone()).unwrap(),
                f.read(request).unwrap(),
                "{w} {interpolation:?}"
            );
        }
    }
    let on_grid = fp.window(PixelWindow::new(3, 4, 10, 10));
    let got = r
        .read(ReadRequest::new(on_grid, vec![1, 1, 0]).dtype(DType::F64))
        .unwrap();
    let full = reference(&fp, &on_grid, 3, -1.0);
    assert_eq!(got.dtype(), DType::F64);
    assert_eq!(got, full.select_bands(&[1, 1, 0]).cast(DType::F64));
    let all = r
        .read(ReadRequest::new(on_grid, vec![0, 1, 2]).dtype(DType::F64))
        .unwrap();
    assert_eq!(all, full.cast(DType::F64));
    let err = r.read(ReadRequest::new(on_grid, vec![3])).unwrap_err();
    assert!(err.to_string().contains("band 3 does not exist"), "{err}");
}

fn slope_of(parent: &Raster, counter: &Counter, dir: &Path) -> Recipe {
    let fp = parent.footprint();
    let counter = counter.clone();
    Recipe::new("sum3x3", fp, DType::F32, 1, move |input| {
        let p = input.primitive("parent").unwrap();
        let (c0, r0) = input.footprint.pixel_offset_in(&fp).unwrap();
        let t = input.footprint;
        assert_eq!(p.footprint, t.dilate(1));
        let mut out = Array::filled(DType::F32, Shape::new(t.height(), t.width(), 1), 0.0);
        let mut seen = counter.0.lock().unwrap();
        for r in 0..t.height() {
            for c in 0..t.width() {
                *seen.entry((c0 + c as i64, r0 + r as i64)).or_default() += 1;
                let mut sum = 0.0;
                for dr in 0..3 {
                    for dc in 0..3 {
                        sum += p.array.get_f64(r + dr, c + dc, 0);
                    }
                }
                out.set_f64(r, c, 0, sum);
            }
        }
        Ok(out)
    })
    .primitive("parent", parent, Conversion::Dilate(1))
    .compute_tiles(10, 10)
    .cache(dir, 16, 16)
}

#[test]
fn a_chain_of_two_recipes_computes_each_pixel_once_and_nothing_when_cached() {
    let (pdir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fp = grid(48, 40);
    let (pc, cc) = (Counter::default(), Counter::default());
    let open = |pc: &Counter, cc: &Counter| {
        let ds = dataset();
        let parent = ds
            .create_recipe(coords_recipe("parent", fp, 1, pc).cache(pdir.path(), 16, 8))
            .unwrap();
        let child = ds
            .create_recipe(slope_of(&parent, cc, cdir.path()))
            .unwrap();
        (ds, parent, child)
    };
    let (_ds, _parent, child) = open(&pc, &cc);
    let whole = child.get_data(&fp).unwrap();
    assert_eq!((cc.max(), cc.pixels()), (1, 48 * 40));
    assert_eq!(
        pc.max(),
        1,
        "every parent pixel computed once, halos included"
    );
    assert_eq!(pc.pixels(), 48 * 40);
    // Interior pixel: the sum of its 3×3 neighbourhood of the parent.
    let expected: f64 = (-1..=1)
        .flat_map(|dr| (-1..=1).map(move |dc| value(10 + dc, 20 + dr, 0)))
        .sum();
    assert_eq!(whole.get_f64(20, 10, 0), expected);
    // Edge pixel: outside the parent is its nodata (-1).
    let edge: f64 = (-1..=1)
        .flat_map(|dr| (-1..=1).map(move |dc| (dr, dc)))
        .map(|(dr, dc)| {
            if dc < 0 || dr < 0 {
                -1.0
            } else {
                value(dc, dr, 0)
            }
        })
        .sum();
    assert_eq!(whole.get_f64(0, 0, 0), edge);

    pc.reset();
    cc.reset();
    let (_ds, _parent, child) = open(&pc, &cc);
    assert_eq!(child.get_data(&fp).unwrap(), whole);
    assert_eq!((pc.total(), cc.total()), (0, 0), "warm: nothing computed");

    // Only the parent's cache wiped: the child's tiles are still valid, nothing is computed.
    for (name, _) in tile_files(pdir.path()) {
        std::fs::remove_file(pdir.path().join(name)).unwrap();
    }
    let (_ds, _parent, child) = open(&pc, &cc);
    assert_eq!(child.get_data(&fp).unwrap(), whole);
    assert_eq!((pc.total(), cc.total()), (0, 0));
}

#[test]
fn four_concurrent_queues_in_different_orders_one_dropped_midway() {
    let dir = tempfile::tempdir().unwrap();
    let fp = grid(128, 128);
    let counter = Counter::default();
    let ds = dataset();
    let r = ds
        .create_recipe(coords_recipe("c", fp, 1, &counter).cache(dir.path(), 32, 32))
        .unwrap();
    let tiles: Vec<Footprint> = (0..16)
        .map(|i| fp.window(PixelWindow::new((i % 4) * 32, (i / 4) * 32, 32, 32)))
        .collect();
    let orders: Vec<Vec<Footprint>> = vec![
        tiles.clone(),
        tiles.iter().rev().copied().collect(),
        tiles
            .iter()
            .step_by(2)
            .chain(tiles.iter().skip(1).step_by(2))
            .copied()
            .collect(),
        tiles
            .iter()
            .skip(8)
            .chain(tiles.iter().take(8))
            .copied()
            .collect(),
    ];
    let handles: Vec<_> = orders
        .into_iter()
        .enumerate()
        .map(|(i, order)| {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut queue = r.queue_data(order.clone(), 3);
                for (n, w) in order.iter().enumerate() {
                    if i == 2 && n == 5 {
                        drop(queue);
                        return n;
                    }
                    assert_eq!(queue.next().unwrap().unwrap(), reference(&fp, w, 1, -1.0));
                }
                order.len()
            })
        })
        .collect();
    let done: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(done, [16, 16, 5, 16]);
    assert_eq!(counter.max(), 1, "shared tiles computed once");
    assert_eq!(counter.pixels(), 128 * 128);
}

#[test]
fn a_failing_tile_fails_only_the_windows_that_need_it() {
    let fp = grid(64, 32);
    let ds = dataset();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let r = ds
        .create_recipe(
            Recipe::new("flaky", fp, DType::U8, 1, move |input| {
                seen.fetch_add(1, Ordering::SeqCst);
                let (c0, _) = input.footprint.pixel_offset_in(&fp).unwrap();
                if c0 == 32 {
                    return Err("sensor offline".into());
                }
                Ok(Array::filled(
                    DType::U8,
                    Shape::new(input.footprint.height(), input.footprint.width(), 1),
                    7.0,
                ))
            })
            .compute_tiles(32, 32),
        )
        .unwrap();
    let left = fp.window(PixelWindow::new(0, 0, 32, 32));
    let right = fp.window(PixelWindow::new(32, 0, 32, 32));
    let results: Vec<_> = r.queue_data(vec![left, right, left, fp], 2).collect();
    assert!(results[0].is_ok() && results[2].is_ok());
    let err = results[1].as_ref().unwrap_err().to_string();
    assert!(
        err.contains("raster `flaky`")
            && err.contains("(col 1, row 0)")
            && err.contains("sensor offline"),
        "{err}"
    );
    assert!(results[3].is_err());

    let wrong = ds
        .create_recipe(Recipe::new("wrong", fp, DType::F32, 1, |_| {
            Ok(Array::filled(DType::F32, Shape::new(3, 3, 1), 0.0))
        }))
        .unwrap();
    let err = wrong.get_data(&left).unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("returned a 3×3×1 array of f32"),
        "{err}"
    );
}

#[test]
fn a_queue_never_runs_more_than_its_size_ahead_of_the_consumer() {
    let fp = grid(16 * 40, 16);
    let ds = dataset();
    let started = Arc::new(AtomicUsize::new(0));
    let seen = started.clone();
    let r = ds
        .create_recipe(
            Recipe::new("ahead", fp, DType::U8, 1, move |input| {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(Array::filled(
                    DType::U8,
                    Shape::new(input.footprint.height(), input.footprint.width(), 1),
                    1.0,
                ))
            })
            .compute_tiles(16, 16),
        )
        .unwrap();
    let windows: Vec<Footprint> = (0..40)
        .map(|i| fp.window(PixelWindow::new(i * 16, 0, 16, 16)))
        .collect();
    let mut queue = r.queue_data(windows, 3);
    for consumed in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(started.load(Ordering::SeqCst) <= consumed + 3);
        queue.next().unwrap().unwrap();
    }
    assert_eq!(started.load(Ordering::SeqCst), 40);
}

/// The tile events received so far (a round trip to the scheduler first, so that it has sent
/// those of everything before).
fn events_so_far(
    ds: &Dataset,
    rx: &crossbeam_channel::Receiver<TileEvent>,
) -> Vec<(Tiling, usize, usize, TileState, Option<String>)> {
    ds.pool_usage();
    rx.try_iter()
        .map(|e| (e.tiling, e.tile.col, e.tile.row, e.state, e.message))
        .collect()
}

#[test]
fn single_reads_of_a_warm_cache_run_no_job_and_report_each_tile_once() {
    let dir = tempfile::tempdir().unwrap();
    let fp = grid(64, 64);
    let counter = Counter::default();
    dataset()
        .create_recipe(coords_recipe("w", fp, 2, &counter).cache(dir.path(), 32, 32))
        .unwrap()
        .get_data(&fp)
        .unwrap();
    let before = tile_files(dir.path());
    let ds = dataset();
    let events = ds.subscribe();
    let r = ds
        .create_recipe(
            Recipe::new("w", fp, DType::F32, 2, |_| Err("must not be called".into()))
                .nodata(-1.0)
                .compute_tiles(16, 16)
                .cache(dir.path(), 32, 32),
        )
        .unwrap();
    // Inside a tile, across two, partly outside, outside; each at most two tiles.
    let wins: Vec<Footprint> = [
        (3, 4, 20, 20),
        (20, 5, 30, 10),
        (40, 20, 10, 30),
        (-5, -4, 20, 12),
        (50, 60, 30, 30),
        (70, 0, 5, 5),
        (10, 40, 5, 5),
        (0, 0, 1, 1),
    ]
    .iter()
    .map(|&(c, r, w, h)| fp.window(PixelWindow::new(c, r, w, h)))
    .collect();
    for w in &wins {
        assert_eq!(r.get_data(w).unwrap(), reference(&fp, w, 2, -1.0), "{w}");
    }
    let mut seen = events_so_far(&ds, &events);
    seen.sort_by_key(|e| (e.1, e.2));
    let expected: Vec<_> = [(0, 0), (0, 1), (1, 0), (1, 1)]
        .into_iter()
        .flat_map(|(c, r)| {
            [TileState::Reading, TileState::Cached].map(|s| (Tiling::Cache, c, r, s, None))
        })
        .collect();
    assert_eq!(seen, expected, "each cache tile read and checked once");
    // Steady state: no event, no job, the files untouched.
    for w in &wins {
        assert_eq!(r.get_data(w).unwrap(), reference(&fp, w, 2, -1.0), "{w}");
    }
    assert_eq!(events_so_far(&ds, &events), []);
    let jobs: usize = ds.pool_usage().iter().map(|p| p.done).sum();
    assert_eq!(jobs, 0, "every read answered on the caller's thread");
    assert_eq!(tile_files(dir.path()), before);
    // Queries through the scheduler reuse the tiles validated on the caller's thread.
    for (w, got) in wins.iter().zip(r.queue_data(wins.clone(), 3)) {
        assert_eq!(got.unwrap(), reference(&fp, w, 2, -1.0), "{w}");
    }
    assert_eq!(events_so_far(&ds, &events), []);
}

#[test]
fn a_tile_corrupted_after_the_listing_but_before_its_first_read_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let fp = grid(64, 64);
    let counter = Counter::default();
    dataset()
        .create_recipe(coords_recipe("c", fp, 1, &counter).cache(dir.path(), 32, 32))
        .unwrap()
        .get_data(&fp)
        .unwrap();
    counter.reset();
    let ds = dataset();
    let events = ds.subscribe();
    let r = ds
        .create_recipe(coords_recipe("c", fp, 1, &counter).cache(dir.path(), 32, 32))
        .unwrap();
    // Listed at open (known by name only); damaged before anything reads it: tile (0, 1).
    let files = tile_files(dir.path());
    let victim = dir.path().join(&files[1].0);
    assert!(files[1].0.contains("_x0000_y0001_"), "{}", files[1].0);
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 100..n - 50] {
        *b ^= 0x5a;
    }
    std::fs::write(&victim, bytes).unwrap();
    let inside = fp.window(PixelWindow::new(4, 36, 10, 10));
    assert_eq!(
        r.get_data(&inside).unwrap(),
        reference(&fp, &inside, 1, -1.0)
    );
    assert_eq!(
        counter.total(),
        32 * 32,
        "the corrupt tile alone, recomputed"
    );
    let seen = events_so_far(&ds, &events);
    assert!(
        seen.iter().any(
            |e| (e.0, e.1, e.2, e.3) == (Tiling::Cache, 0, 1, TileState::Reading)
                && e.4.as_deref().is_some_and(|m| m.contains("corrupt"))
        ),
        "{seen:?}"
    );
    // Rewritten under the same name; then read like any valid tile.
    assert_eq!(
        tile_files(dir.path())
            .iter()
            .map(|f| &f.0)
            .collect::<Vec<_>>(),
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    counter.reset();
    assert_eq!(r.get_data(&fp).unwrap(), reference(&fp, &fp, 1, -1.0));
    assert_eq!(counter.total(), 0);
}
