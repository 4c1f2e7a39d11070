//! Jobs on real files: band math against values computed pixel by pixel, slope against
//! `gdaldem slope`, the cache across runs, and bad inputs.

use std::path::{Path, PathBuf};

use super::*;
use crate::{Footprint, GeoTransform, ReadRequest, write_geotiff};

/// A fixture file. The package directory is read when the test runs (cargo sets it), not
/// when it was compiled: a test binary reused from a build in another checkout (a shared
/// target directory) must not look for fixtures in that checkout.
fn fixture(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures")
        .join(name)
}

fn read_all(path: &Path) -> (GeoTiff, Array) {
    let tiff = GeoTiff::open(path).unwrap();
    let request = ReadRequest::new(tiff.footprint(), (0..tiff.bands()).collect());
    let array = tiff.read(&request).unwrap();
    (tiff, array)
}

/// Two inputs on one grid: `a` u16 with nodata 0, `b` f32 with two bands.
fn inputs(dir: &Path) -> (Footprint, Array, Array) {
    let fp = Footprint::new(
        GeoTransform::from_gdal([1000.0, 0.5, 0.0, 2000.0, 0.0, -0.5]),
        75,
        41,
    )
    .unwrap();
    let mut a = Array::filled(DType::U16, Shape::new(41, 75, 1), 0.0);
    let mut b = Array::filled(DType::F32, Shape::new(41, 75, 2), 0.0);
    for r in 0..41 {
        for c in 0..75 {
            a.set_f64(r, c, 0, ((r * 7 + c * 3) % 50) as f64);
            b.set_f64(r, c, 0, (r as f64 - 20.0) * 0.5 + c as f64);
            b.set_f64(r, c, 1, 2.0);
        }
    }
    let a_options = WriteOptions {
        nodata: Some(0.0),
        ..WriteOptions::default()
    };
    write_geotiff(dir.join("a.tif"), &fp, &a, &a_options).unwrap();
    write_geotiff(dir.join("b.tif"), &fp, &b, &WriteOptions::default()).unwrap();
    (fp, a, b)
}

fn calc_spec(dir: &Path, expressions: &[&str]) -> JobSpec {
    let input = |name: &str| JobInput {
        name: name.into(),
        path: dir.join(format!("{name}.tif")),
        content_id: None,
    };
    let mut spec = JobSpec::new(
        vec![input("a"), input("b")],
        Operation::Calc {
            expressions: expressions.iter().map(|e| e.to_string()).collect(),
        },
        dir.join("out.tif"),
    );
    spec.cache_tile = 32;
    spec.compute_tile = 16;
    spec
}

#[test]
fn calc_computes_every_pixel_with_nodata_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let (fp, a, b) = inputs(dir.path());
    let spec = calc_spec(dir.path(), &["(b - a) / (b + a)", "a * b[2] / (b - 10)"]);
    let mut seen = Vec::new();
    let report = run(&spec, &mut |p| {
        seen.push(p);
        ControlFlow::Continue(())
    })
    .unwrap();
    let (tiff, out) = read_all(&spec.output);
    assert_eq!(
        (tiff.footprint(), tiff.dtype(), tiff.bands()),
        (fp, DType::F32, 2)
    );
    assert_eq!(tiff.nodata(), Some(-9999.0));
    let mut valid = [0u64; 2];
    for r in 0..41 {
        for c in 0..75 {
            let (x, y, z) = (a.get_f64(r, c, 0), b.get_f64(r, c, 0), b.get_f64(r, c, 1));
            let expected = [(y - x) / (y + x), x * z / (y - 10.0)];
            for band in 0..2 {
                let got = out.get_f64(r, c, band);
                if x == 0.0 || !expected[band].is_finite() {
                    assert_eq!(got, -9999.0, "({r}, {c}) band {band}");
                } else {
                    valid[band] += 1;
                    assert_eq!(got, expected[band] as f32 as f64, "({r}, {c}) band {band}");
                }
            }
        }
    }
    assert_eq!(report.bands[0].valid_pixels, valid[0]);
    assert_eq!(report.bands[1].valid_pixels, valid[1]);
    assert!(
        valid[1] < valid[0],
        "b - 10 == 0 somewhere: division by zero is nodata"
    );
    // Without a cache, progress counts the 5 × 3 compute tiles of 16 px.
    assert_eq!(report.tiles.total, 15);
    assert_eq!(seen.last().map(|p| (p.done, p.total)), Some((15, 15)));
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(report.tiles.computed, 5 * 3);
}

#[test]
fn a_cached_job_run_again_computes_nothing_and_a_changed_one_recomputes() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let mut spec = calc_spec(dir.path(), &["b - a"]);
    spec.cache_dir = Some(dir.path().join("cache"));
    let mut seen = Vec::new();
    let first = run(&spec, &mut |p| {
        seen.push(p);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(first.tiles.computed, 15);
    // With a cache, progress counts the 3 × 2 cache tiles of 32 px.
    assert_eq!(first.tiles.total, 6);
    assert_eq!(
        (
            first.tiles.reused,
            first.tiles.size,
            first.tiles.compute_size
        ),
        (0, 32, 16)
    );
    assert_eq!(seen.last().map(|p| (p.done, p.total)), Some((6, 6)));
    let bytes = std::fs::read(&spec.output).unwrap();
    std::fs::remove_file(&spec.output).unwrap();
    let second = run(&spec, &mut |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(second.tiles.computed, 0);
    assert_eq!(second.tiles.reused, 6, "every cache tile read back");
    assert_eq!(std::fs::read(&spec.output).unwrap(), bytes);
    // Another expression, another dtype: nothing reused.
    spec.operation = Operation::Calc {
        expressions: vec!["b + a".into()],
    };
    assert_eq!(
        run(&spec, &mut |_| ControlFlow::Continue(()))
            .unwrap()
            .tiles
            .computed,
        15
    );
    spec.dtype = Some(DType::I16);
    assert_eq!(
        run(&spec, &mut |_| ControlFlow::Continue(()))
            .unwrap()
            .tiles
            .computed,
        15
    );
    // Overwrite recomputes.
    spec.overwrite = true;
    assert_eq!(
        run(&spec, &mut |_| ControlFlow::Continue(()))
            .unwrap()
            .tiles
            .computed,
        15
    );
}

fn slope_matches_gdaldem(unit: SlopeUnit, scale: f64, reference: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = JobSpec::new(
        vec![JobInput {
            name: "dem".into(),
            path: fixture("dem.tif"),
            content_id: None,
        }],
        Operation::Slope {
            band: 0,
            scale,
            unit,
        },
        dir.path().join("slope.tif"),
    );
    spec.cache_tile = 32;
    spec.compute_tile = 16;
    spec.cache_dir = Some(dir.path().join("cache"));
    run(&spec, &mut |_| ControlFlow::Continue(())).unwrap();
    let (ours_tiff, ours) = read_all(&spec.output);
    let (gdal_tiff, gdal) = read_all(&fixture(reference));
    assert_eq!(ours_tiff.footprint(), gdal_tiff.footprint());
    assert_eq!(gdal_tiff.nodata(), Some(-9999.0));
    let s = gdal.shape();
    let mut nodata = 0;
    for r in 0..s.height {
        for c in 0..s.width {
            let (g, o) = (gdal.get_f64(r, c, 0), ours.get_f64(r, c, 0));
            if g == -9999.0 {
                nodata += 1;
                assert_eq!(o, -9999.0, "({r}, {c})");
            } else {
                assert!(
                    (g - o).abs() <= 1e-4 * g.abs().max(1.0),
                    "({r}, {c}): gdaldem {g}, ours {o}"
                );
            }
        }
    }
    // The edges and the hole's neighbourhood.
    assert_eq!(nodata, 2 * 70 + 2 * 48 + 6 * 5);
}

#[test]
fn slope_in_degrees_equals_gdaldem() {
    slope_matches_gdaldem(SlopeUnit::Degrees, 1.0, "slope_degrees.tif");
}

#[test]
fn slope_in_percent_with_a_scale_equals_gdaldem() {
    slope_matches_gdaldem(SlopeUnit::Percent, 2.0, "slope_percent_s2.tif");
}

#[test]
fn bad_jobs_are_clear_errors_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let err = |spec: &JobSpec| {
        let e = run(spec, &mut |_| ControlFlow::Continue(())).unwrap_err();
        assert!(!spec.output.exists(), "no output after `{e}`");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().all(|f| !f
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("tessera-tmp")),
            "no temporary file after `{e}`"
        );
        e.to_string()
    };
    let e = err(&calc_spec(dir.path(), &["(b - c) / 2"]));
    assert_eq!(
        e,
        "expression `(b - c) / 2`, column 6: unknown input `c` (inputs: a, b)"
    );
    let e = err(&calc_spec(dir.path(), &["b[3]"]));
    assert_eq!(
        e,
        "expression `b[3]`: input `b` has 2 band(s), band 3 asked"
    );
    let mut spec = calc_spec(dir.path(), &["a"]);
    spec.inputs[1].path = dir.path().join("missing.tif");
    let e = err(&spec);
    assert!(
        e.starts_with("input `b`: ") && e.contains("missing.tif"),
        "{e}"
    );
    let mut spec = calc_spec(dir.path(), &["a"]);
    spec.output = dir.path().join("no/such/dir/out.tif");
    assert!(err(&spec).contains("does not exist"));
    let mut spec = calc_spec(dir.path(), &["a"]);
    spec.inputs[1].name = "a".into();
    assert_eq!(err(&spec), "input `a` is given twice");
    let mut spec = calc_spec(dir.path(), &["a"]);
    spec.operation = Operation::Slope {
        band: 0,
        scale: 1.0,
        unit: SlopeUnit::Degrees,
    };
    assert_eq!(err(&spec), "slope takes one input, got 2");
    // Not a GeoTIFF.
    std::fs::write(dir.path().join("text.tif"), "hello").unwrap();
    let mut spec = calc_spec(dir.path(), &["a"]);
    spec.inputs[0].path = dir.path().join("text.tif");
    assert!(err(&spec).starts_with("input `a`: "));
}

#[test]
fn a_job_stopped_by_its_progress_callback_is_cancelled_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let mut spec = calc_spec(dir.path(), &["b - a"]);
    // One strip per compute tile row: the stop is seen after the first strip.
    spec.compute_tile = 8;
    let mut calls = 0;
    let err = run(&spec, &mut |_| {
        calls += 1;
        ControlFlow::Break(())
    })
    .unwrap_err();
    assert_eq!(err, RasterError::Cancelled);
    assert!(calls > 0);
    assert!(!spec.output.exists());
    assert!(!dir.path().join(".out.tif.tessera-tmp").exists());
}

#[test]
fn an_input_named_by_its_content_reuses_tiles_from_another_path() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let mut spec = calc_spec(dir.path(), &["b - a"]);
    spec.cache_dir = Some(dir.path().join("cache"));
    spec.inputs[0].content_id = Some("sha256:a".into());
    let go = |spec: &JobSpec| run(spec, &mut |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(go(&spec).tiles.computed, 15);
    // The same content elsewhere (a new upload of the same file).
    std::fs::copy(dir.path().join("a.tif"), dir.path().join("a2.tif")).unwrap();
    spec.inputs[0].path = dir.path().join("a2.tif");
    assert_eq!(go(&spec).tiles.computed, 0);
    // Known by its path instead: a new file, computed again.
    spec.inputs[0].content_id = None;
    assert_eq!(go(&spec).tiles.computed, 15);
}

#[cfg(feature = "gdal")]
#[test]
fn with_gdal_any_format_is_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let calc = |input: &str, output: &str| {
        let spec = JobSpec::new(
            vec![JobInput {
                name: "a".into(),
                path: fixture(input),
                content_id: None,
            }],
            Operation::Calc {
                expressions: vec!["a[1] + 2 * a[3]".into()],
            },
            dir.path().join(output),
        );
        run(&spec, &mut |_| ControlFlow::Continue(())).unwrap();
        read_all(&spec.output).1
    };
    // The same pixels as a GeoTIFF, a VRT and a PNG (with a world file).
    let reference = calc("rs_u8_3b.tif", "tif.tif");
    assert_eq!(calc("rs_u8_3b.vrt", "vrt.tif"), reference);
    assert_eq!(calc("rs_u8_3b.png", "png.tif"), reference);
}

#[test]
fn an_input_outside_the_output_is_an_error_not_an_all_nodata_result() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    // `b` moved 100 units east of `a` (which is 37.5 wide): they share no area.
    let far = Footprint::new(
        GeoTransform::from_gdal([1100.0, 0.5, 0.0, 2000.0, 0.0, -0.5]),
        75,
        41,
    )
    .unwrap();
    let b = Array::filled(DType::F32, Shape::new(41, 75, 1), 1.0);
    write_geotiff(dir.path().join("b.tif"), &far, &b, &WriteOptions::default()).unwrap();
    let spec = calc_spec(dir.path(), &["a + b"]);
    let err = run(&spec, &mut |_| ControlFlow::Continue(())).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RasterError::Invalid(_)), "{text}");
    assert!(
        text.contains("input `b` (x 1100..1137.5, y 1979.5..2000) does not overlap the output's extent, which is input `a`'s (x 1000..1037.5"),
        "{text}"
    );
    assert!(!spec.output.exists(), "no output written");
    // Touching is not overlapping either; sharing a corner area is.
    let near = Footprint::new(
        GeoTransform::from_gdal([1037.0, 0.5, 0.0, 2000.0, 0.0, -0.5]),
        75,
        41,
    )
    .unwrap();
    write_geotiff(
        dir.path().join("b.tif"),
        &near,
        &b,
        &WriteOptions::default(),
    )
    .unwrap();
    let report = run(&spec, &mut |_| ControlFlow::Continue(())).unwrap();
    assert!(
        report.bands[0].valid_pixels > 0,
        "one column of overlap is enough"
    );
}
