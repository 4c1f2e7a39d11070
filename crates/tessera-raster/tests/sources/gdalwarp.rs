//! Off-grid reads compared with gdalwarp's outputs (fixtures `ref_*.tif`), for GeoTiff and,
//! with the `gdal` feature, GdalSource on the same pixels through other drivers.

use super::*;

/// Compares off-grid reads of every `rs_*` source with gdalwarp's outputs; returns the largest
/// absolute difference per method (nearest must be exact, nodata masks identical).
fn compare_with_gdalwarp(open_source: &dyn Fn(&str) -> Box<dyn RasterSource>) -> [f64; 4] {
    let mut worst = [0.0f64; 4];
    let mut names: Vec<String> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("ref_"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 24);
    for name in names {
        let parts: Vec<&str> = name.trim_start_matches("ref_").split('_').collect();
        let source_name = format!("{}.tif", parts[..3].join("_"));
        let src = open_source(&source_name);
        let reference = open(&name);
        let fp = reference.footprint();
        let nb = src.bands();
        for (m, interpolation) in Interpolation::ALL.into_iter().enumerate() {
            let req = ReadRequest::new(fp, (0..nb).collect()).interpolation(interpolation);
            let got = src.read(&req).unwrap();
            let want = reference
                .read(&ReadRequest::new(fp, (m * nb..(m + 1) * nb).collect()))
                .unwrap();
            let nodata = reference.nodata();
            let is_nodata = |v: f64| nodata.is_some_and(|n| same(v, n));
            for r in 0..fp.height() {
                for c in 0..fp.width() {
                    for b in 0..nb {
                        let (g, w) = (got.get_f64(r, c, b), want.get_f64(r, c, b));
                        let at = format!(
                            "{name} {} pixel ({r},{c}) band {b}: got {g}, gdal {w}",
                            interpolation.name()
                        );
                        assert_eq!(is_nodata(g), is_nodata(w), "nodata mask differs: {at}");
                        if interpolation == Interpolation::Nearest {
                            assert!(same(g, w), "{at}");
                        } else if !is_nodata(w) {
                            worst[m] = worst[m].max((g - w).abs());
                            assert!((g - w).abs() <= 1.0, "{at}");
                        }
                    }
                }
            }
        }
    }
    worst
}

#[test]
fn off_grid_reads_match_gdalwarp() {
    // Bit-identical to GDAL 3.6.2 (the fixtures' version) for every method.
    let worst = compare_with_gdalwarp(&|name| Box::new(open(name)));
    println!("max |tessera − gdalwarp| (near, bilinear, cubic, average): {worst:?}");
    assert_eq!(worst, [0.0; 4]);
}

#[cfg(feature = "gdal")]
#[test]
fn gdal_source_reads_like_geotiff() {
    use tessera_raster::GdalSource;
    let tif = open("rs_u8_3b.tif");
    for other in ["rs_u8_3b.vrt", "rs_u8_3b.png"] {
        let g = GdalSource::open(fixture(other)).unwrap();
        assert_eq!(
            (g.footprint(), g.dtype(), g.bands()),
            (tif.footprint(), tif.dtype(), 3)
        );
        // On the grid (partly outside), then off it with every interpolation.
        let on_grid = GeoTransform::from_gdal([998.0, 2.0, 0.0, 5004.0, 0.0, -2.0]);
        let off_grid = GeoTransform::from_gdal([996.7, 1.3, 0.0, 5003.1, 0.0, -1.7]);
        let mut requests = vec![ReadRequest::new(
            Footprint::new(on_grid, 25, 20).unwrap(),
            vec![2, 0, 0],
        )];
        for interpolation in Interpolation::ALL {
            let fp = Footprint::new(off_grid, 40, 30).unwrap();
            requests.push(
                ReadRequest::new(fp, vec![2, 0, 0])
                    .interpolation(interpolation)
                    .dst_nodata(7.0),
            );
        }
        for req in &requests {
            assert_eq!(
                g.read(req).unwrap(),
                tif.read(req).unwrap(),
                "{other} {req:?}"
            );
        }
        let e = g
            .read(&ReadRequest::new(tif.footprint(), vec![3]))
            .unwrap_err();
        assert!(
            e.to_string().contains("band 3") && e.to_string().contains(other),
            "{e}"
        );
    }
    let worst = compare_with_gdalwarp(&|name| Box::new(GdalSource::open(fixture(name)).unwrap()));
    assert_eq!(worst, [0.0; 4]);
}
