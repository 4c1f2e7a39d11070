//! Property tests of footprints: tiling (coverage, sizes, overlaps, boundary effects and their
//! locus, `tile_count`), grid relations (same grid, windows, intersection) and morphology.

use proptest::prelude::*;
use tessera_raster::{
    BoundaryEffect, BoundaryEffectLocus, Footprint, GeoTransform, PixelWindow, Tiles,
};

/// A footprint with random origin, pixel size (not square), orientation and (sometimes)
/// rotation; with `skew`, pixel sides are sometimes not perpendicular (a legal GDAL
/// geotransform too).
fn footprint_with(skew: bool) -> impl Strategy<Value = Footprint> {
    (
        (-1e6..1e6f64, -1e6..1e6f64),
        (0.01..100.0f64, 0.2..5.0f64),
        prop_oneof![Just(0.0), -180.0..180.0f64],
        prop_oneof![2 => Just(0.0), 1 => -40.0..40.0f64],
        any::<bool>(),
        (1..60usize, 1..60usize),
    )
        .prop_map(
            move |((x, y), (size, ratio), angle, skew_angle, flip, (w, h))| {
                let (s, c) = angle.to_radians().sin_cos();
                let row_angle = angle + if skew { skew_angle } else { 0.0 };
                let (rs, rc) = row_angle.to_radians().sin_cos();
                let (px, py) = (size, if flip { -size * ratio } else { size * ratio });
                // Columns along (px, 0) and rows along (0, -py), each rotated.
                let gt = GeoTransform::from_gdal([x, px * c, py * rs, y, px * s, -py * rc]);
                Footprint::new(gt, w, h).unwrap()
            },
        )
}

fn footprint() -> impl Strategy<Value = Footprint> {
    footprint_with(true)
}

/// `fp` with each side pushed out by the spatial distance `delta` (pixel sides perpendicular).
fn grown(fp: &Footprint, delta: f64) -> Footprint {
    let (px, py) = fp.pixel_size();
    let (ex, ey) = (delta / px, delta / py);
    let (w, h) = (fp.width() as f64, fp.height() as f64);
    let (sx, sy) = ((w + 2.0 * ex) / w, (h + 2.0 * ey) / h);
    let (x, y) = fp.pixel_to_spatial(-ex, -ey);
    let g = fp.gt();
    let gt = GeoTransform::from_gdal([
        x,
        g.pixel_width * sx,
        g.row_rotation * sy,
        y,
        g.col_rotation * sx,
        g.pixel_height * sy,
    ]);
    Footprint::new(gt, fp.width(), fp.height()).unwrap()
}

fn raster(w: usize, h: usize) -> Footprint {
    Footprint::new(GeoTransform::north_up(1000.0, 2000.0, 0.5), w, h).unwrap()
}

fn effect() -> impl Strategy<Value = BoundaryEffect> {
    prop::sample::select(BoundaryEffect::ALL.to_vec())
}

fn locus() -> impl Strategy<Value = BoundaryEffectLocus> {
    prop::sample::select(BoundaryEffectLocus::ALL.to_vec())
}

/// Tiles fit exactly along an axis: one tile plus whole strides.
fn fits_exactly(raster: usize, tile: usize, overlap: usize) -> bool {
    tile <= raster && (raster - tile).is_multiple_of(tile - overlap)
}

/// Tile spans along one axis (first row for x, first column for y) as offsets from the origin
/// side, ordered from the origin.
fn origin_spans(tiles: &Tiles, x: bool, raster: usize, reversed: bool) -> Vec<(i64, usize)> {
    let mut spans: Vec<(i64, usize)> = if x {
        (0..tiles.cols())
            .map(|c| tiles.window(0, c).unwrap())
            .map(|w| (w.col, w.width))
            .collect()
    } else {
        (0..tiles.rows())
            .map(|r| tiles.window(r, 0).unwrap())
            .map(|w| (w.row, w.height))
            .collect()
    };
    if reversed {
        spans.reverse();
        for (start, len) in &mut spans {
            *start = raster as i64 - *start - *len as i64;
        }
    }
    spans
}

/// The per-axis rules of each boundary effect, on offsets from the origin side.
fn check_axis(
    spans: &[(i64, usize)],
    raster: usize,
    tile: usize,
    overlap: usize,
    effect: BoundaryEffect,
) -> Result<(), TestCaseError> {
    let stride = (tile - overlap) as i64;
    let r = raster as i64;
    let t = tile as i64;
    let n = spans.len();
    if effect == BoundaryEffect::Exclude && n == 0 {
        prop_assert!(tile > raster);
        return Ok(());
    }
    prop_assert!(n >= 1);
    // Every tile but the one at the locus is regular.
    for (k, &(off, len)) in spans[..n - 1].iter().enumerate() {
        prop_assert_eq!(
            (off, len),
            (k as i64 * stride, tile),
            "tile {} of {:?}",
            k,
            spans
        );
    }
    let (off, len) = spans[n - 1];
    let end = off + len as i64;
    // No tile is useless: without the last one, the raster is not covered.
    let covered_before = if n >= 2 {
        (n as i64 - 2) * stride + t
    } else {
        0
    };
    match effect {
        BoundaryEffect::Extend => {
            prop_assert_eq!((off, len), ((n as i64 - 1) * stride, tile));
            prop_assert!(end >= r && off < r && covered_before < r);
        }
        BoundaryEffect::Overlap => {
            prop_assert_eq!((end, len), (r, tile));
            prop_assert!(off <= (n as i64 - 1) * stride && covered_before < r);
        }
        BoundaryEffect::Shrink => {
            prop_assert_eq!((off, end), ((n as i64 - 1) * stride, r));
            prop_assert!(len <= tile && covered_before < r);
            if n >= 2 {
                prop_assert!(len > overlap);
            }
        }
        BoundaryEffect::Exclude => {
            prop_assert_eq!((off, len), ((n as i64 - 1) * stride, tile));
            prop_assert!(end <= r && end + stride > r);
        }
        BoundaryEffect::Exception => {
            prop_assert_eq!((off, len, end), ((n as i64 - 1) * stride, tile, r));
        }
    }
    Ok(())
}

/// How many tiles contain each pixel of a `w`×`h` raster.
fn coverage(tiles: &Tiles, w: usize, h: usize) -> Vec<u32> {
    let mut counts = vec![0u32; w * h];
    for win in tiles.windows() {
        if let Some(c) = win.clip_to(w, h) {
            for row in c.row..c.row_end() {
                for col in c.col..c.col_end() {
                    counts[row as usize * w + col as usize] += 1;
                }
            }
        }
    }
    counts
}

/// Pixels covered with `Exclude` along one axis: the whole tiles from the origin side.
fn excluded_range(raster: usize, tile: usize, overlap: usize, reversed: bool) -> (usize, usize) {
    let len = if tile > raster {
        0
    } else {
        let count = 1 + (raster - tile) / (tile - overlap);
        tile + (count - 1) * (tile - overlap)
    };
    if reversed {
        (raster - len, raster)
    } else {
        (0, len)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tiling_follows_boundary_effect_rules(
        (w, h) in (1..40usize, 1..40usize),
        (tw, th) in (1..16usize, 1..16usize),
        (ox, oy) in (0..16usize, 0..16usize),
        effect in effect(),
        locus in locus(),
    ) {
        let (ox, oy) = (ox % tw, oy % th);
        let fp = raster(w, h);
        let result = fp.tile((tw, th), (ox, oy), effect, locus);
        let expect_err = match effect {
            BoundaryEffect::Overlap => tw > w || th > h,
            BoundaryEffect::Exception => !(fits_exactly(w, tw, ox) && fits_exactly(h, th, oy)),
            _ => false,
        };
        prop_assert_eq!(result.is_err(), expect_err, "{:?}", result);
        let Ok(tiles) = result else { return Ok(()) };
        prop_assert_eq!(tiles.len(), tiles.rows() * tiles.cols());
        if tiles.is_empty() {
            // Only Exclude drops every tile, when they are larger than the raster.
            prop_assert!(effect == BoundaryEffect::Exclude && (tw > w || th > h));
            return Ok(());
        }

        // A grid: every tile of a row has the row's span, every tile of a column the column's;
        // rows top to bottom, columns left to right; each tile on the raster's grid.
        for r in 0..tiles.rows() {
            for c in 0..tiles.cols() {
                let win = tiles.window(r, c).unwrap();
                let (w0r, wc0) = (tiles.window(r, 0).unwrap(), tiles.window(0, c).unwrap());
                prop_assert_eq!((win.row, win.height), (w0r.row, w0r.height));
                prop_assert_eq!((win.col, win.width), (wc0.col, wc0.width));
                if c > 0 {
                    prop_assert!(tiles.window(r, c - 1).unwrap().col < win.col);
                }
                if r > 0 {
                    prop_assert!(tiles.window(r - 1, c).unwrap().row < win.row);
                }
                prop_assert_eq!(tiles.get(r, c).unwrap().window_in(&fp), Some(win));
            }
        }

        let xs = origin_spans(&tiles, true, w, locus.is_left());
        let ys = origin_spans(&tiles, false, h, locus.is_top());
        check_axis(&xs, w, tw, ox, effect)?;
        check_axis(&ys, h, th, oy, effect)?;

        let counts = coverage(&tiles, w, h);
        match effect {
            BoundaryEffect::Exclude => {
                let (c0, c1) = excluded_range(w, tw, ox, locus.is_left());
                let (r0, r1) = excluded_range(h, th, oy, locus.is_top());
                for row in 0..h {
                    for col in 0..w {
                        let n = counts[row * w + col];
                        let inside = (c0..c1).contains(&col) && (r0..r1).contains(&row);
                        prop_assert_eq!(n >= 1, inside, "pixel ({}, {})", col, row);
                        if ox == 0 && oy == 0 {
                            prop_assert!(n <= 1);
                        }
                    }
                }
            }
            _ => {
                prop_assert!(counts.iter().all(|&n| n >= 1), "gap in {:?}", counts);
                let exact = matches!(effect, BoundaryEffect::Shrink | BoundaryEffect::Exception);
                if exact && ox == 0 && oy == 0 {
                    prop_assert!(counts.iter().all(|&n| n == 1), "overlap in {:?}", counts);
                }
            }
        }
        // Only Extend tiles may stick out of the raster.
        let inside = tiles.windows().all(|win| win.clip_to(w, h) == Some(*win));
        prop_assert!(inside || effect == BoundaryEffect::Extend);
        let all_full = tiles.iter().all(|t| t.rsize() == (tw, th));
        prop_assert!(all_full || effect == BoundaryEffect::Shrink);
    }

    #[test]
    fn exact_fits_tile_the_same_whatever_the_effect_and_locus(
        (tw, th) in (1..12usize, 1..12usize),
        (ox, oy) in (0..12usize, 0..12usize),
        (nx, ny) in (1..6usize, 1..6usize),
    ) {
        // buzzard's FIT_XY cases: when tiles fit exactly, boundary effects have nothing to do.
        let (ox, oy) = (ox % tw, oy % th);
        let w = tw + (nx - 1) * (tw - ox);
        let h = th + (ny - 1) * (th - oy);
        let fp = raster(w, h);
        let reference = fp
            .tile((tw, th), (ox, oy), BoundaryEffect::Exception, BoundaryEffectLocus::BottomRight)
            .unwrap();
        prop_assert_eq!((reference.cols(), reference.rows()), (nx, ny));
        prop_assert!(coverage(&reference, w, h).iter().all(|&n| n >= 1));
        for effect in BoundaryEffect::ALL {
            for locus in BoundaryEffectLocus::ALL {
                let tiles = fp.tile((tw, th), (ox, oy), effect, locus).unwrap();
                prop_assert_eq!(
                    tiles.windows().collect::<Vec<_>>(),
                    reference.windows().collect::<Vec<_>>(),
                    "{} {}", effect, locus
                );
                for (a, b) in tiles.iter().zip(&reference) {
                    prop_assert!(a.almost_equals(b));
                }
                let counted = fp.tile_count(nx, ny, (ox, oy), effect, locus).unwrap();
                prop_assert_eq!(
                    counted.windows().collect::<Vec<_>>(),
                    reference.windows().collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn tile_count_gives_the_asked_grid(
        (w, h) in (1..40usize, 1..40usize),
        (cols, rows) in (1..9usize, 1..9usize),
        (ox, oy) in (0..5usize, 0..5usize),
        effect in effect(),
        locus in locus(),
    ) {
        let fp = raster(w, h);
        let Ok(tiles) = fp.tile_count(cols, rows, (ox, oy), effect, locus) else {
            // Failing is only allowed when no tile size (no larger than the raster, as in
            // buzzard) gives that many tiles in `tile`.
            if effect != BoundaryEffect::Exception {
                for tw in 1..=w {
                    for th in 1..=h {
                        if let Ok(t) = fp.tile((tw, th), (ox, oy), effect, locus) {
                            let exact = (t.cols(), t.rows()) == (cols, rows);
                            prop_assert!(!exact || effect == BoundaryEffect::Exclude,
                                "{}×{} tiles of {}×{} exist", cols, rows, tw, th);
                        }
                    }
                }
            }
            return Ok(());
        };
        prop_assert_eq!((tiles.cols(), tiles.rows()), (cols, rows));
        prop_assert!(tiles.iter().all(|t| t.width() <= w && t.height() <= h));
        // The tile at the origin corner has the tile size; `tile` with it gives the same tiles
        // (a subset next to the origin corner for Exclude).
        let origin = (
            if locus.is_left() { cols - 1 } else { 0 },
            if locus.is_top() { rows - 1 } else { 0 },
        );
        let size = tiles.get(origin.1, origin.0).unwrap().rsize();
        let full = fp.tile(size, (ox, oy), effect, locus).unwrap();
        if effect == BoundaryEffect::Exclude {
            let dc = if locus.is_left() { full.cols() - cols } else { 0 };
            let dr = if locus.is_top() { full.rows() - rows } else { 0 };
            for r in 0..rows {
                for c in 0..cols {
                    prop_assert_eq!(tiles.get(r, c), full.get(r + dr, c + dc));
                }
            }
        } else {
            prop_assert_eq!(&tiles, &full);
            prop_assert!(coverage(&tiles, w, h).iter().all(|&n| n >= 1));
        }
    }

    #[test]
    fn window_and_window_in_round_trip(
        fp in footprint(),
        (col, row) in (-100..100i64, -100..100i64),
        (ww, wh) in (1..80usize, 1..80usize),
    ) {
        let win = PixelWindow::new(col, row, ww, wh);
        let sub = fp.window(win);
        prop_assert!(sub.same_grid(&fp));
        prop_assert_eq!(sub.window_in(&fp), Some(win));
        prop_assert_eq!(sub.pixel_offset_in(&fp), Some((col, row)));
        let back = PixelWindow::new(-col, -row, fp.width(), fp.height());
        prop_assert_eq!(fp.window_in(&sub), Some(back));
        prop_assert!(sub.window(back).almost_equals(&fp));
    }

    #[test]
    fn same_grid_is_reflexive_and_symmetric(
        fp in footprint(),
        other in footprint(),
        (col, row) in (-50..50i64, -50..50i64),
        frac in 0.05..0.95f64,
    ) {
        prop_assert!(fp.same_grid(&fp));
        prop_assert_eq!(fp.same_grid(&other), other.same_grid(&fp));
        let on = fp.window(PixelWindow::new(col, row, 3, 4));
        prop_assert!(fp.same_grid(&on) && on.same_grid(&fp));
        let (x, y) = fp.pixel_to_spatial(col as f64 + frac, row as f64);
        let off = on.move_to(x, y);
        prop_assert!(!fp.same_grid(&off) && !off.same_grid(&fp));
    }

    #[test]
    fn same_grid_intersection_commutes_and_is_exact(
        fp in footprint(),
        (a, b) in (
            (-30..30i64, -30..30i64, 1..40usize, 1..40usize),
            (-30..30i64, -30..30i64, 1..40usize, 1..40usize),
        ),
    ) {
        let wa = PixelWindow::new(a.0, a.1, a.2, a.3);
        let wb = PixelWindow::new(b.0, b.1, b.2, b.3);
        let (fa, fb) = (fp.window(wa), fp.window(wb));
        let ab = fa.intersection(&fb);
        let ba = fb.intersection(&fa);
        prop_assert_eq!(ab.is_some(), fa.share_area(&fb));
        prop_assert_eq!(fa.share_area(&fb), fb.share_area(&fa));
        match (ab, ba, wa.intersection(&wb)) {
            (Some(ab), Some(ba), Some(w)) => {
                prop_assert!(ab.almost_equals(&ba) && ab.same_grid(&fa));
                prop_assert_eq!(ab.window_in(&fp), Some(w));
            }
            (None, None, None) => {}
            other => prop_assert!(false, "{:?}", other),
        }
        let u = fa.union(&fb).unwrap();
        prop_assert_eq!(u.window_in(&fp), Some(wa.bounding(&wb)));
    }

    #[test]
    fn intersection_on_other_grid_covers_and_is_minimal(
        fp in footprint_with(false),
        other in footprint_with(false),
        (cx, cy) in (0.0..1.0f64, 0.0..1.0f64),
    ) {
        // Move `other` so that it overlaps `fp` somewhere.
        let (x, y) = fp.pixel_to_spatial(cx * fp.width() as f64, cy * fp.height() as f64);
        let (ox, oy) = other.center();
        let (tx, ty) = other.tl();
        let other = other.move_to(tx + x - ox, ty + y - oy);
        let Some(i) = fp.intersection(&other) else {
            prop_assert!(!fp.share_area(&other));
            return Ok(());
        };
        prop_assert!(fp.share_area(&other));
        let win = i.window_in(&fp).unwrap();
        prop_assert_eq!(win.clip_to(fp.width(), fp.height()), Some(win));
        // Covers: pixel centers of `other` inside `fp` are inside the result.
        let step_c = (other.width() / 7).max(1);
        let step_r = (other.height() / 7).max(1);
        for r in (0..other.height() as i64).step_by(step_r) {
            for c in (0..other.width() as i64).step_by(step_c) {
                let (x, y) = other.pixel_center(c, r);
                let (pc, pr) = fp.spatial_to_pixel(x, y);
                if pc > 0.0 && pr > 0.0 && pc < fp.width() as f64 && pr < fp.height() as f64 {
                    prop_assert!(win.contains(pc.floor() as i64, pr.floor() as i64));
                }
            }
        }
        // Minimal: each border line of pixels reaches `other` (up to the precision: slivers
        // thinner than it may count or not, so reach `other` grown by twice the precision).
        let (a, b) = (fp.pixel_size(), other.pixel_size());
        let reach = grown(&other, 0.02 * a.0.min(a.1).min(b.0).min(b.1));
        for strip in [
            i.clip(0, 0, 1, i64::MAX),
            i.clip(-1, 0, i64::MAX, i64::MAX),
            i.clip(0, 0, i64::MAX, 1),
            i.clip(0, -1, i64::MAX, i64::MAX),
        ] {
            let strip = strip.unwrap();
            prop_assert!(strip.share_area(&reach), "{} does not reach {}", strip, other);
        }
    }

    #[test]
    fn dilate_then_erode_is_identity(fp in footprint(), n in 0..50usize) {
        let back = fp.dilate(n).erode(n).unwrap();
        prop_assert!(back.almost_equals(&fp) && back.same_grid(&fp));
        prop_assert_eq!(back.window_in(&fp), Some(fp.full_window()));
        prop_assert_eq!(fp.dilate(n).rsize(), (fp.width() + 2 * n, fp.height() + 2 * n));
        let too_much = fp.width().min(fp.height()).div_ceil(2);
        prop_assert!(fp.erode(too_much).is_err());
    }

    #[test]
    fn conversions_round_trip(fp in footprint(), (c, r) in (-200..200i64, -200..200i64)) {
        let (x, y) = fp.pixel_center(c, r);
        prop_assert_eq!(fp.spatial_to_pixel_floor(x, y), (c, r));
        let (x, y) = fp.pixel_to_spatial(c as f64, r as f64);
        prop_assert_eq!(fp.spatial_to_pixel_round(x, y), (c, r));
        prop_assert_eq!(fp.spatial_to_pixel_floor(x, y), (c, r));
        let (fc, fr) = fp.spatial_to_pixel(x, y);
        prop_assert!((fc - c as f64).abs() < 1e-6 && (fr - r as f64).abs() < 1e-6);
    }

    #[test]
    fn clip_matches_python_slices(
        (w, h) in (1..20usize, 1..20usize),
        (c0, r0, c1, r1) in (-25..25i64, -25..25i64, -25..25i64, -25..25i64),
    ) {
        let fp = raster(w, h);
        let bound = |i: i64, n: usize| {
            let n = n as i64;
            (if i < 0 { i + n } else { i }).clamp(0, n)
        };
        let (a, b) = (bound(c0, w), bound(c1, w));
        let (c, d) = (bound(r0, h), bound(r1, h));
        match fp.clip(c0, r0, c1, r1) {
            Ok(clip) => {
                prop_assert!(a < b && c < d);
                let want = PixelWindow::new(a, c, (b - a) as usize, (d - c) as usize);
                prop_assert_eq!(clip.window_in(&fp), Some(want));
            }
            Err(_) => prop_assert!(a >= b || c >= d),
        }
    }

    #[test]
    fn pixel_window_clip_counts_inside_pixels(
        (col, row, ww, wh) in (-20..20i64, -20..20i64, 0..30usize, 0..30usize),
        (w, h) in (1..20usize, 1..20usize),
    ) {
        let win = PixelWindow::new(col, row, ww, wh);
        let inside = (0..h as i64)
            .flat_map(|r| (0..w as i64).map(move |c| (c, r)))
            .filter(|&(c, r)| win.contains(c, r))
            .count();
        match win.clip_to(w, h) {
            Some(clip) => {
                prop_assert_eq!(clip.len(), inside);
                prop_assert!(clip.col >= 0 && clip.row >= 0);
                prop_assert!(clip.col_end() <= w as i64 && clip.row_end() <= h as i64);
            }
            None => prop_assert_eq!(inside, 0),
        }
    }
}
