//! `tessera raster calc|slope` and the `raster` node, through the real binary: outputs equal to
//! GDAL's, a re-run computing nothing, objects in and out, and clear errors.

use std::path::PathBuf;
use std::time::SystemTime;

use super::example;
use super::support::*;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tessera-raster/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Names and modification times of the files of a directory.
fn listing(dir: &std::path::Path) -> Vec<(String, SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().modified().unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn slope_cli_is_cached_across_runs() {
    let env = Env::new();
    let dem = fixture("dem.tif");
    let args = [
        "raster",
        "slope",
        &dem,
        "-o",
        "slope.tif",
        "--cache-dir",
        "cache",
        "--tile",
        "32",
        "--compute-tile",
        "16",
    ];
    let first = env.run(&args).ok();
    assert_eq!(
        first["tiles"],
        serde_json::json!({"tiling": "cache", "size": 32, "total": 6, "reused": 0, "compute_size": 16, "computed": 20}),
        "{first}"
    );
    assert_eq!(first["bands"][0]["valid_pixels"], 3234);
    let max = first["bands"][0]["max"].as_f64().unwrap();
    assert!((max - 72.0027).abs() < 1e-3, "gdaldem's maximum: {max}");
    let bytes = std::fs::read(env.path("slope.tif")).unwrap();
    let cache = listing(&env.path("cache"));
    assert!(cache.len() >= 6, "{cache:?}");

    let second = env.run(&args);
    let out = second.ok();
    assert_eq!(out["tiles"]["computed"], 0, "{out}");
    assert_eq!(out["tiles"]["reused"], 6, "{out}");
    assert!(
        second.stderr.contains("tiles: 6/6 done, 0 computed"),
        "{}",
        second.stderr
    );
    assert_eq!(std::fs::read(env.path("slope.tif")).unwrap(), bytes);
    assert_eq!(listing(&env.path("cache")), cache, "cache files untouched");
}

#[test]
fn calc_cli_computes_band_math_and_reports_bad_input() {
    let env = Env::new();
    let dem = fixture("dem.tif");
    let slope = fixture("slope_degrees.tif");
    let a = format!("a={dem}");
    let b = format!("b={slope}");
    let out = env
        .run(&[
            "raster",
            "calc",
            "-i",
            &a,
            "-i",
            &b,
            "--expr",
            "where(b > 30, a, 0)",
            "--expr",
            "b",
            "-o",
            "out.tif",
            "--type",
            "f64",
        ])
        .ok();
    assert_eq!(out["dtype"], "f64");
    assert_eq!(out["bands"].as_array().unwrap().len(), 2);
    // Band 2 is the slope itself: gdaldem's statistics.
    assert_eq!(out["bands"][1]["valid_pixels"], 3234);
    assert!((out["bands"][1]["mean"].as_f64().unwrap() - 45.6395).abs() < 1e-3);

    let r = env.run(&[
        "raster",
        "calc",
        "-i",
        &a,
        "--expr",
        "(a - c) * 2",
        "-o",
        "bad.tif",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.last_stderr_line(),
        "error: expression `(a - c) * 2`, column 6: unknown input `c` (inputs: a)"
    );
    let r = env.run(&["raster", "calc", "-i", "a", "--expr", "a", "-o", "bad.tif"]);
    assert_eq!(
        r.last_stderr_line(),
        "error: --input `a`: expected NAME=PATH"
    );
    let r = env.run(&["raster", "slope", "missing.tif", "-o", "bad.tif"]);
    assert!(
        r.last_stderr_line()
            .starts_with("error: input `dem`: missing.tif: "),
        "{}",
        r.stderr
    );
    let r = env.run(&["raster", "slope", &dem, "-o", "bad.tif", "--type", "f16"]);
    assert!(
        r.last_stderr_line().contains("--type `f16`"),
        "{}",
        r.stderr
    );
    assert!(!env.path("bad.tif").exists());
}

#[test]
fn raster_nodes_chain_objects_and_reuse_the_cache() {
    let env = Env::new();
    let file = format!("dem=@{}", fixture("dem.tif"));
    // The example as it is, two levels down (its cache directory is `../../.tessera/`).
    std::fs::create_dir_all(env.path("examples/pipelines")).unwrap();
    let copy = env.path("examples/pipelines/raster-slope.yaml");
    std::fs::copy(example("raster-slope.yaml"), &copy).unwrap();
    let pipeline = copy.display().to_string();
    let out = env.run(&["run", &pipeline, "--file", &file]).ok();
    let slope = &out["slope"];
    assert_eq!(slope["tiles"]["computed"], 1, "one 256² tile: {out}");
    assert_eq!(slope["bands"][0]["valid_pixels"], 3234);
    assert_eq!(slope["raster"]["content_type"], "image/tiff", "{out}");
    let steep = &out["steep"];
    assert_eq!(steep["dtype"], "u8");
    assert_eq!(steep["bands"][0]["min"], 0.0);
    assert_eq!(steep["bands"][0]["max"], 1.0);
    assert_eq!(steep["bands"][0]["valid_pixels"], 3234);

    let again = env.run(&["run", &pipeline, "--file", &file]).ok();
    assert_eq!(again["slope"]["tiles"]["computed"], 0, "{again}");
    assert_eq!(again["slope"]["tiles"]["reused"], 1, "{again}");
    assert_eq!(again["steep"]["bands"], out["steep"]["bands"]);

    // A bad expression is caught when the pipeline is read.
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("s > 30", "s > 30 +");
    let bad = env.write("bad.yaml", &text);
    let r = env.run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("node `steep`, field `expr`: column 9: expected a value, found the end"),
        "{}",
        r.stderr
    );
}

#[test]
fn inputs_outside_the_output_are_a_clear_error() {
    let env = Env::new();
    // Two fixtures far apart on the ground: the DEM and a 3-band image elsewhere.
    let a = format!("a={}", fixture("dem.tif"));
    let b = format!("b={}", fixture("rs_f32_1b.tif"));
    let r = env.run(&[
        "raster", "calc", "-i", &a, "-i", &b, "--expr", "a + b", "-o", "out.tif",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.last_stderr_line().contains("input `b` (x ")
            && r.last_stderr_line()
                .contains("does not overlap the output's extent, which is input `a`'s"),
        "{}",
        r.stderr
    );
    assert!(!env.path("out.tif").exists());
    // The same in a pipeline's `raster` node fails the node with that cause.
    let p = env.write(
        "far.yaml",
        &format!(
            "nodes:\n  - {{id: in, type: entry, next: [calc]}}\n  - {{id: calc, type: raster, inputs: {{a: '{}', b: '{}'}}, expr: 'a + b', output: out.tif, next: [end]}}\n  - {{id: end, type: end}}\n",
            fixture("dem.tif"),
            fixture("rs_f32_1b.tif")
        ),
    );
    let r = env.run(&["run", p.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.last_stderr_line()
            .contains("node `calc` failed (attempt 1)"),
        "{}",
        r.stderr
    );
    assert!(
        r.last_stderr_line().contains("does not overlap"),
        "{}",
        r.stderr
    );
}
