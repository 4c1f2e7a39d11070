//! Raster sources: GeoTIFF layouts and georeferencing (fixtures made by GDAL), write/read round
//! trips (checked by gdalinfo when installed), window reads with fill, band selection, nodata
//! remapping, dtype conversion, errors, concurrency, and off-grid reads against gdalwarp.

#[path = "sources/bench.rs"]
mod bench;
#[path = "sources/gdalwarp.rs"]
mod gdalwarp;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_raster::{
    Array, Compression, DType, Footprint, GeoTiff, GeoTransform, Interpolation, Projection,
    RasterSource, ReadRequest, Shape, SourceError, StripWriter, WriteOptions, write_geotiff,
};

/// A fixture file. The package directory is read when the test runs (cargo sets it), not
/// when it was compiled: a test binary reused from a build in another checkout (a shared
/// target directory) must not look for fixtures in that checkout.
fn fixture(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures")
        .join(name)
}

fn open(name: &str) -> GeoTiff {
    GeoTiff::open(fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// The value of the layout fixtures' pattern (see make_fixtures.sh).
fn pattern(dtype: DType, band: usize, row: usize, col: usize) -> f64 {
    let k = (band * 1000 + row * 37 + col) as f64;
    match dtype {
        DType::U8 => k % 251.0,
        DType::U16 => k * 7.0,
        DType::I16 => k * 7.0 - 10000.0,
        DType::U32 => k * 100000.0,
        DType::I32 => k * 100000.0 - 100000000.0,
        DType::F32 => k * 0.25 - 100.0,
        DType::F64 => k * 0.125 - 1000.5,
    }
}

const LAYOUT_GT: [f64; 6] = [500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0];

/// A footprint on the layout grid: `w × h` pixels from pixel (col, row).
fn window(col: i64, row: i64, w: usize, h: usize) -> Footprint {
    let gt = GeoTransform::from_gdal([
        LAYOUT_GT[0] + col as f64 * 10.0,
        10.0,
        0.0,
        LAYOUT_GT[3] - row as f64 * 10.0,
        0.0,
        -10.0,
    ]);
    Footprint::new(gt, w, h).unwrap()
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn layouts_written_by_gdal_read_exactly() {
    let files = std::fs::read_dir(fixture("")).unwrap();
    let mut names: Vec<String> = files
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("layout_"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 18);
    for name in names {
        let tiff = open(&name);
        let dtype = DType::parse(name.split('_').nth(1).unwrap()).unwrap();
        let bands = if name.contains("1band") { 1 } else { 3 };
        assert_eq!((tiff.dtype(), tiff.bands()), (dtype, bands), "{name}");
        assert_eq!(tiff.footprint(), window(0, 0, 37, 23), "{name}");
        assert_eq!(
            tiff.projection().and_then(|p| p.epsg()),
            Some(32631),
            "{name}"
        );
        assert_eq!(tiff.is_tiled(), name.contains("tiled"), "{name}");
        // Whole raster, a window across blocks, a window partly outside, bands shuffled.
        for (col, row, w, h) in [(0, 0, 37, 23), (5, 3, 20, 17), (30, -2, 10, 6)] {
            let sel: Vec<usize> = if bands == 3 {
                vec![2, 0, 2, 1]
            } else {
                vec![0, 0]
            };
            let req = ReadRequest::new(window(col, row, w, h), sel.clone());
            let a = tiff.read(&req).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(a.shape(), Shape::new(h, w, sel.len()));
            for r in 0..h {
                for c in 0..w {
                    let (sr, sc) = (row + r as i64, col + c as i64);
                    for (i, &b) in sel.iter().enumerate() {
                        let inside = (0..23).contains(&sr) && (0..37).contains(&sc);
                        let want = if inside {
                            pattern(dtype, b, sr as usize, sc as usize)
                        } else {
                            tiff.nodata().unwrap_or(0.0)
                        };
                        assert!(same(a.get_f64(r, c, i), want), "{name} ({r},{c},{b})");
                    }
                }
            }
        }
    }
}

#[test]
fn georeferencing_like_gdal() {
    let text = std::fs::read_to_string(fixture("georef.txt")).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let gt: Vec<f64> = parts[1..7].iter().map(|v| v.parse().unwrap()).collect();
        let tiff = open(parts[0]);
        let got = tiff.footprint().gt().to_gdal();
        for (g, w) in got.iter().zip(&gt) {
            assert!((g - w).abs() < 1e-9, "{}: {got:?} vs {gt:?}", parts[0]);
        }
        let epsg: u32 = parts[7].parse().unwrap();
        assert_eq!(
            tiff.projection().and_then(|p| p.epsg()).unwrap_or(0),
            epsg,
            "{}",
            parts[0]
        );
    }
}

/// An array whose samples differ everywhere (wrapping within the dtype's range).
fn ramp(dtype: DType, h: usize, w: usize, bands: usize) -> Array {
    let mut a = Array::filled(dtype, Shape::new(h, w, bands), 0.0);
    for r in 0..h {
        for c in 0..w {
            for b in 0..bands {
                let k = (r * w + c) * bands + b;
                let v = match dtype {
                    DType::U8 => (k % 256) as f64,
                    DType::I16 => (k % 60000) as f64 - 30000.0,
                    DType::U16 => (k % 65536) as f64,
                    DType::I32 => k as f64 * 1000.0 - 2e9,
                    DType::U32 => k as f64 * 1000.0 + 3e9,
                    DType::F32 => k as f64 * 0.5 - 7.25,
                    DType::F64 => k as f64 * 1e-3 + 1e10,
                };
                a.set_f64(r, c, b, v);
            }
        }
    }
    a
}

fn write_options(nodata: Option<f64>, compression: Compression, tiled: bool) -> WriteOptions {
    WriteOptions {
        nodata,
        projection: Some(Projection::Epsg(32631)),
        compression,
        tile_size: tiled.then_some(16),
    }
}

#[test]
fn round_trip_every_dtype_layout_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let fp = window(3, 4, 41, 19);
    for dtype in DType::ALL {
        for bands in [1, 3] {
            for compression in [Compression::None, Compression::Deflate] {
                for tiled in [false, true] {
                    let a = ramp(dtype, 19, 41, bands);
                    let path = dir
                        .path()
                        .join(format!("{dtype}_{bands}_{compression:?}_{tiled}.tif"));
                    write_geotiff(
                        &path,
                        &fp,
                        &a,
                        &write_options(Some(7.0), compression, tiled),
                    )
                    .unwrap();
                    let t = GeoTiff::open(&path).unwrap();
                    assert_eq!(
                        (t.dtype(), t.bands(), t.nodata()),
                        (dtype, bands, Some(7.0))
                    );
                    assert_eq!((t.footprint(), t.is_tiled()), (fp, tiled));
                    assert_eq!(t.projection().and_then(|p| p.epsg()), Some(32631));
                    let back = t.read(&ReadRequest::new(fp, (0..bands).collect())).unwrap();
                    assert_eq!(back, a, "{}", path.display());
                }
            }
        }
    }
}

#[test]
fn strip_writer_writes_what_write_geotiff_writes() {
    let dir = tempfile::tempdir().unwrap();
    // Rows wide enough for several strips of a few rows each.
    let fp = window(3, 4, 5000, 37);
    for dtype in [DType::U8, DType::F32, DType::I16] {
        let a = ramp(dtype, 37, 5000, 2);
        let whole = dir.path().join(format!("whole_{dtype}.tif"));
        let options = write_options(Some(7.0), Compression::None, false);
        write_geotiff(&whole, &fp, &a, &options).unwrap();
        let streamed = dir.path().join(format!("streamed_{dtype}.tif"));
        let mut w = StripWriter::create(&streamed, &fp, dtype, 2, &options).unwrap();
        // Pieces of uneven heights, not aligned on strips.
        let mut row = 0;
        for h in [1, 10, 3, 23] {
            let piece = t_rows(&a, row, h);
            w.write_rows(&piece).unwrap();
            row += h;
        }
        w.finish().unwrap();
        assert_eq!(
            std::fs::read(&whole).unwrap(),
            std::fs::read(&streamed).unwrap(),
            "{dtype}"
        );
    }
    // Bad pieces and missing rows are errors naming the file.
    let path = dir.path().join("bad.tif");
    let options = WriteOptions::default();
    let mut w = StripWriter::create(&path, &fp, DType::U8, 1, &options).unwrap();
    let err = w.write_rows(&ramp(DType::U8, 2, 4999, 1)).unwrap_err();
    assert!(err.to_string().contains("bad.tif"), "{err}");
    assert!(err.to_string().contains("do not continue"), "{err}");
    w.write_rows(&ramp(DType::U8, 2, 5000, 1)).unwrap();
    let err = w.finish().unwrap_err();
    assert!(
        err.to_string().contains("only 2 of 37 rows written"),
        "{err}"
    );
    let deflate = write_options(None, Compression::Deflate, false);
    assert!(StripWriter::create(&path, &fp, DType::U8, 1, &deflate).is_err());
}

/// Rows `row..row + h` of `a`.
fn t_rows(a: &Array, row: usize, h: usize) -> Array {
    let s = a.shape();
    let mut out = Array::filled(a.dtype(), Shape::new(h, s.width, s.bands), 0.0);
    for r in 0..h {
        for c in 0..s.width {
            for b in 0..s.bands {
                out.set_f64(r, c, b, a.get_f64(row + r, c, b));
            }
        }
    }
    out
}

#[test]
fn projection_keys_are_carried_to_written_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = open("georef_point.tif");
    let fp = src.footprint();
    let a = src.read(&ReadRequest::new(fp, vec![0])).unwrap();
    let path = dir.path().join("copy.tif");
    let options = WriteOptions {
        projection: src.projection(),
        ..WriteOptions::default()
    };
    write_geotiff(&path, &fp, &a, &options).unwrap();
    let copy = GeoTiff::open(&path).unwrap();
    assert_eq!(
        copy.footprint(),
        fp,
        "PixelIsPoint becomes PixelIsArea at the same place"
    );
    assert_eq!(copy.projection().and_then(|p| p.epsg()), Some(4326));
    assert_eq!(copy.read(&ReadRequest::new(fp, vec![0])).unwrap(), a);
}

fn gdalinfo(path: &Path) -> Option<serde_json::Value> {
    let out = std::process::Command::new("gdalinfo")
        .arg("-json")
        .arg(path)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "gdalinfo {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn gdal_reads_written_files() {
    let dir = tempfile::tempdir().unwrap();
    let fp = Footprint::new(
        GeoTransform::from_gdal([1000.5, 0.25, 0.0, 2000.0, 0.0, -0.5]),
        33,
        21,
    )
    .unwrap();
    let rotated = Footprint::new(
        GeoTransform::from_gdal([10.0, 2.0, 0.5, 20.0, 0.25, -2.0]),
        33,
        21,
    )
    .unwrap();
    let gdal_types = [
        (DType::U8, "Byte"),
        (DType::U16, "UInt16"),
        (DType::I16, "Int16"),
        (DType::U32, "UInt32"),
        (DType::I32, "Int32"),
        (DType::F32, "Float32"),
        (DType::F64, "Float64"),
    ];
    let wkt = "LOCAL_CS[\"a local frame\",UNIT[\"metre\",1]]";
    let projections = [
        Projection::Epsg(4326),
        Projection::Epsg(2154),
        Projection::Wkt(wkt.into()),
    ];
    for (i, (dtype, name)) in gdal_types.into_iter().enumerate() {
        for (j, (fp, tiled)) in [(fp, false), (rotated, true)].into_iter().enumerate() {
            let bands = 1 + 2 * j;
            let nodata = if dtype.is_float() && j == 1 {
                f64::NAN
            } else {
                3.0
            };
            let path = dir.path().join(format!("{dtype}_{j}.tif"));
            let mut options = write_options(
                Some(nodata),
                [Compression::None, Compression::Deflate][i % 2],
                tiled,
            );
            options.projection = Some(projections[(i + j) % 3].clone());
            write_geotiff(&path, &fp, &ramp(dtype, 21, 33, bands), &options).unwrap();
            let Some(info) = gdalinfo(&path) else {
                println!("gdalinfo not installed: skipping the GDAL check of written files");
                return;
            };
            let gt: Vec<f64> = info["geoTransform"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(gt, fp.gt().to_gdal().to_vec(), "{}", path.display());
            assert_eq!(info["size"], serde_json::json!([33, 21]));
            let bands_info = info["bands"].as_array().unwrap();
            assert_eq!(bands_info.len(), bands);
            for band in bands_info {
                assert_eq!(band["type"], name);
                let nd = &band["noDataValue"];
                if nodata.is_nan() {
                    assert_eq!(nd, "NaN", "{}", path.display());
                } else {
                    assert_eq!(nd.as_f64(), Some(3.0), "{}", path.display());
                }
            }
            let wkt_out = info["coordinateSystem"]["wkt"].as_str().unwrap_or("");
            match &options.projection {
                Some(Projection::Epsg(code)) => assert!(
                    wkt_out.contains(&format!("ID[\"EPSG\",{code}]")),
                    "{wkt_out}"
                ),
                _ => assert!(wkt_out.contains("a local frame"), "WKT lost: {wkt_out}"),
            }
            let stats = std::process::Command::new("gdallocationinfo")
                .args(["-valonly", "-b", "1"])
                .arg(&path)
                .args(["5", "2"])
                .output()
                .unwrap();
            let v: f64 = String::from_utf8_lossy(&stats.stdout)
                .trim()
                .parse()
                .unwrap();
            assert_eq!(
                v,
                ramp(dtype, 21, 33, bands).get_f64(2, 5, 0),
                "{}",
                path.display()
            );
        }
    }
}

fn nodata_source(dir: &Path) -> (GeoTiff, Array) {
    let a = ramp(DType::I16, 10, 12, 2);
    let path = dir.join("src.tif");
    write_geotiff(
        &path,
        &window(0, 0, 12, 10),
        &a,
        &write_options(Some(-29998.0), Compression::None, false),
    )
    .unwrap();
    (GeoTiff::open(&path).unwrap(), a)
}

#[test]
fn windows_inside_outside_remap_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let (t, a) = nodata_source(dir.path());
    assert_eq!(a.get_f64(0, 1, 0), -29998.0, "one source pixel is nodata");
    // Fully inside: exact copy.
    let inside = t
        .read(&ReadRequest::new(window(2, 3, 5, 4), vec![1, 0, 1]))
        .unwrap();
    for (r, c) in [(0, 0), (3, 4), (1, 2)] {
        assert_eq!(inside.get_f64(r, c, 0), a.get_f64(3 + r, 2 + c, 1));
        assert_eq!(inside.get_f64(r, c, 1), a.get_f64(3 + r, 2 + c, 0));
    }
    // Partly outside: source nodata, or dst_nodata which also replaces source nodata.
    let partly = t
        .read(&ReadRequest::new(window(-1, -1, 4, 3), vec![0]))
        .unwrap();
    assert_eq!(partly.get_f64(0, 0, 0), -29998.0);
    assert_eq!(partly.get_f64(1, 1, 0), a.get_f64(0, 0, 0));
    let remapped = t
        .read(&ReadRequest::new(window(-1, -1, 4, 3), vec![0]).dst_nodata(5.0))
        .unwrap();
    assert_eq!(remapped.get_f64(0, 0, 0), 5.0, "outside");
    assert_eq!(remapped.get_f64(1, 2, 0), 5.0, "source nodata remapped");
    assert_eq!(remapped.get_f64(1, 1, 0), a.get_f64(0, 0, 0));
    // Fully outside: all nodata, in the requested dtype.
    let outside = t
        .read(&ReadRequest::new(window(40, 0, 3, 3), vec![0, 1]).dtype(DType::F64))
        .unwrap();
    assert_eq!(
        outside,
        Array::filled(DType::F64, Shape::new(3, 3, 2), -29998.0)
    );
    // dtype conversion saturates like numpy's astype with clipping, NaN nodata allowed.
    let as_u8 = t
        .read(&ReadRequest::new(window(0, 0, 12, 10), vec![0]).dtype(DType::U8))
        .unwrap();
    assert_eq!(as_u8.get_f64(0, 0, 0), 0.0);
    let as_f32 = t
        .read(
            &ReadRequest::new(window(-1, 0, 3, 1), vec![0])
                .dtype(DType::F32)
                .dst_nodata(f64::NAN),
        )
        .unwrap();
    assert!(as_f32.get_f64(0, 0, 0).is_nan() && as_f32.get_f64(0, 2, 0).is_nan());
    assert_eq!(as_f32.get_f64(0, 1, 0), a.get_f64(0, 0, 0));
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = nodata_source(dir.path());
    let e = t
        .read(&ReadRequest::new(window(0, 0, 2, 2), vec![0, 2]))
        .unwrap_err();
    assert!(matches!(
        e,
        SourceError::BadBand {
            band: 2,
            bands: 2,
            ..
        }
    ));
    assert!(e.is_user_error());
    let msg = e.to_string();
    assert!(msg.contains("band 2") && msg.contains("src.tif"), "{msg}");

    let missing = GeoTiff::open(dir.path().join("nope.tif")).unwrap_err();
    assert!(matches!(missing, SourceError::Io { .. }) && !missing.is_user_error());

    let junk = dir.path().join("junk.tif");
    std::fs::write(&junk, b"this is not a tiff file at all").unwrap();
    let e = GeoTiff::open(&junk).unwrap_err();
    assert!(matches!(e, SourceError::Corrupt { .. }), "{e}");

    let full = std::fs::read(dir.path().join("src.tif")).unwrap();
    let cut = dir.path().join("cut.tif");
    std::fs::write(&cut, &full[..full.len() - 100]).unwrap();
    let e = GeoTiff::open(&cut).unwrap_err();
    assert!(
        matches!(e, SourceError::Corrupt { .. }) && e.to_string().contains("truncated"),
        "{e}"
    );
    assert!(e.to_string().contains("cut.tif"));

    // A corrupt deflate stream is reported when read.
    let a = ramp(DType::U8, 8, 8, 1);
    let z = dir.path().join("z.tif");
    write_geotiff(
        &z,
        &window(0, 0, 8, 8),
        &a,
        &write_options(None, Compression::Deflate, false),
    )
    .unwrap();
    let mut bytes = std::fs::read(&z).unwrap();
    let n = bytes.len();
    bytes[n - 8..].copy_from_slice(&[0xff; 8]);
    std::fs::write(&z, &bytes).unwrap();
    let e = GeoTiff::open(&z)
        .unwrap()
        .read(&ReadRequest::new(window(0, 0, 8, 8), vec![0]))
        .unwrap_err();
    assert!(matches!(e, SourceError::Corrupt { .. }), "{e}");

    let e = GeoTiff::open(fixture("ref_rs_u8_1b_down3.tif")).map(|_| ());
    assert!(e.is_ok());
    let jpeg = dir.path().join("jpeg.tif");
    let mut bytes = full.clone();
    // Patch Compression (259) to 7 (JPEG): tag entries are 12 bytes from offset 10.
    let count = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let entry = (0..count)
        .map(|i| 10 + 12 * i)
        .find(|&o| bytes[o..o + 2] == 259u16.to_le_bytes())
        .unwrap();
    bytes[entry + 8..entry + 10].copy_from_slice(&7u16.to_le_bytes());
    std::fs::write(&jpeg, &bytes).unwrap();
    let e = GeoTiff::open(&jpeg).unwrap_err();
    assert!(e.is_user_error());
    assert!(
        e.to_string().contains("Compression (259) = 7 (JPEG)")
            && e.to_string().contains("jpeg.tif"),
        "{e}"
    );
}

#[test]
fn concurrent_reads_equal_sequential_reads() {
    for name in [
        "layout_f32_tiled_lzw_pred3.tif",
        "layout_u16_striped_planar.tif",
        "layout_f32_1band_tiled.tif",
    ] {
        let tiff = Arc::new(open(name));
        let requests: Vec<ReadRequest> = (0..24)
            .map(|i| {
                let interpolation = Interpolation::ALL[i % 4];
                let fp = if i % 3 == 0 {
                    window(i as i64 % 30 - 3, i as i64 % 7 - 2, 11, 9)
                } else {
                    let gt = GeoTransform::from_gdal([
                        LAYOUT_GT[0] + i as f64 * 3.1,
                        7.0,
                        0.0,
                        LAYOUT_GT[3] - 5.0,
                        0.0,
                        -7.0,
                    ]);
                    Footprint::new(gt, 20, 13).unwrap()
                };
                ReadRequest::new(fp, (0..tiff.bands()).rev().collect()).interpolation(interpolation)
            })
            .collect();
        let sequential: Vec<Array> = requests.iter().map(|r| tiff.read(r).unwrap()).collect();
        let requests = Arc::new(requests);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (tiff, requests) = (tiff.clone(), requests.clone());
                std::thread::spawn(move || {
                    (0..requests.len())
                        .map(|i| (i + t * 5) % requests.len())
                        .map(|i| (i, tiff.read(&requests[i]).unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            for (i, a) in thread.join().unwrap() {
                assert_eq!(a, sequential[i], "{name} request {i}");
            }
        }
    }
}
