//! Micro-measurements of the hot paths (ignored by default): window reads from uncompressed
//! tiled and striped GeoTIFFs, and writing then reading back a cache-tile-like GeoTIFF.

use super::*;

fn micros(f: &mut dyn FnMut(), runs: usize) -> f64 {
    f();
    let start = std::time::Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / runs as f64
}

#[test]
#[ignore = "micro-measurement: cargo test --release --test sources -- --ignored --nocapture"]
fn micro_measurements() {
    let dir = tempfile::tempdir().unwrap();
    let big = Footprint::new(GeoTransform::north_up(0.0, 0.0, 1.0), 2048, 2048).unwrap();
    let a = ramp(DType::F32, 2048, 2048, 1);
    let tiled = dir.path().join("tiled.tif");
    let striped = dir.path().join("striped.tif");
    write_geotiff(
        &tiled,
        &big,
        &a,
        &WriteOptions {
            tile_size: Some(256),
            ..Default::default()
        },
    )
    .unwrap();
    write_geotiff(&striped, &big, &a, &WriteOptions::default()).unwrap();
    let win = Footprint::new(GeoTransform::north_up(512.0, -768.0, 1.0), 256, 256).unwrap();
    let unaligned = Footprint::new(GeoTransform::north_up(500.0, -700.0, 1.0), 256, 256).unwrap();
    let mut sink = 0.0;
    for (name, path) in [("tiled 256", &tiled), ("striped", &striped)] {
        let t = GeoTiff::open(path).unwrap();
        for (label, fp) in [("aligned", win), ("unaligned", unaligned)] {
            let req = ReadRequest::new(fp, vec![0]);
            let us = micros(&mut || sink += t.read(&req).unwrap().get_f64(1, 1, 0), 2000);
            println!(
                "read 256×256×1 f32 window, {label}, from {name} uncompressed GeoTIFF: {us:.1} µs"
            );
        }
    }
    let memcpy = micros(
        &mut || sink += a.as_slice::<f32>().unwrap()[..65536].to_vec()[7] as f64,
        2000,
    );
    println!("memcpy of 256×256 f32 (for scale): {memcpy:.1} µs");
    let tile = ramp(DType::F32, 512, 512, 1);
    let fp = Footprint::new(GeoTransform::north_up(0.0, 0.0, 1.0), 512, 512).unwrap();
    let path = dir.path().join("cache_tile.tif");
    let options = WriteOptions {
        nodata: Some(-9999.0),
        ..Default::default()
    };
    let write = micros(
        &mut || write_geotiff(&path, &fp, &tile, &options).unwrap(),
        500,
    );
    let req = ReadRequest::new(fp, vec![0]);
    let read = micros(
        &mut || {
            sink += GeoTiff::open(&path)
                .unwrap()
                .read(&req)
                .unwrap()
                .get_f64(3, 3, 0)
        },
        500,
    );
    let raw = dir.path().join("raw.bin");
    let bytes = vec![1u8; 512 * 512 * 4];
    let fs_write = micros(&mut || std::fs::write(&raw, &bytes).unwrap(), 500);
    let fs_read = micros(&mut || sink += std::fs::read(&raw).unwrap()[9] as f64, 500);
    println!("write 512×512×1 f32 cache tile: {write:.1} µs; open + read it back: {read:.1} µs");
    println!(
        "(std::fs::write of the same 1 MiB: {fs_write:.1} µs; std::fs::read: {fs_read:.1} µs)"
    );
    let deflate = WriteOptions {
        compression: Compression::Deflate,
        ..options.clone()
    };
    let write_z = micros(
        &mut || write_geotiff(&path, &fp, &tile, &deflate).unwrap(),
        50,
    );
    let read_z = micros(
        &mut || {
            sink += GeoTiff::open(&path)
                .unwrap()
                .read(&req)
                .unwrap()
                .get_f64(3, 3, 0)
        },
        50,
    );
    println!("same, deflate: write {write_z:.1} µs; open + read {read_z:.1} µs");
    assert!(sink.is_finite());
}

#[test]
#[ignore = "micro-measurement: cargo test --release --test sources -- --ignored --nocapture"]
fn micro_measurements_resampling() {
    let dir = tempfile::tempdir().unwrap();
    let big = Footprint::new(GeoTransform::north_up(0.0, 0.0, 1.0), 1024, 1024).unwrap();
    let path = dir.path().join("src.tif");
    let options = WriteOptions {
        nodata: Some(-1.0),
        tile_size: Some(256),
        ..Default::default()
    };
    write_geotiff(&path, &big, &ramp(DType::F32, 1024, 1024, 1), &options).unwrap();
    let t = GeoTiff::open(&path).unwrap();
    let mut sink = 0.0;
    for (label, size) in [("×1.3 upsampled", 1.0 / 1.3), ("÷2.7 downsampled", 2.7)] {
        let fp = Footprint::new(GeoTransform::north_up(100.3, -100.7, size), 256, 256).unwrap();
        for interpolation in Interpolation::ALL {
            let req = ReadRequest::new(fp, vec![0]).interpolation(interpolation);
            let us = micros(&mut || sink += t.read(&req).unwrap().get_f64(1, 1, 0), 50);
            println!(
                "off-grid 256×256×1 f32 read, {label}, {}: {us:.0} µs",
                interpolation.name()
            );
        }
    }
    assert!(sink.is_finite());
}
