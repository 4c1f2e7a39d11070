//! Footprints: where a raster (or a window of it) lies — an affine geotransform plus a size in
//! pixels. A cheap `Copy` value; everything here is pure arithmetic.
//!
//! The semantics are those of buzzard's `Footprint`: pixel `(col, row)` covers the spatial
//! parallelogram between pixel corners `(col, row)` and `(col + 1, row + 1)`; footprints on the
//! same grid relate by whole pixel offsets ([`Footprint::same_grid`], [`PixelWindow`]); coordinates
//! are compared with a tolerance ([`Footprint::precision`]) so that footprints built by floating
//! point arithmetic still line up. Submodules: `grid` (windows, grid relations, morphology),
//! `intersection` (shared area, intersection on a grid), `tiling` (`tile`, `tile_count`),
//! `boundary` (tiling options), `error` (`FootprintError`).

mod boundary;
mod error;
mod grid;
mod intersection;
mod tiling;

use std::fmt;

pub use boundary::{BoundaryEffect, BoundaryEffectLocus};
pub use error::{Axis, FootprintError};
pub use grid::PixelWindow;
pub use tiling::Tiles;

/// GDAL's affine geotransform: `x = origin_x + col·pixel_width + row·row_rotation`,
/// `y = origin_y + col·col_rotation + row·pixel_height` (pixel corners; `pixel_height` is
/// negative for north-up rasters).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoTransform {
    pub origin_x: f64,
    pub pixel_width: f64,
    pub row_rotation: f64,
    pub origin_y: f64,
    pub col_rotation: f64,
    pub pixel_height: f64,
}

impl GeoTransform {
    /// From GDAL's 6-number order `[origin_x, pixel_width, row_rotation, origin_y,
    /// col_rotation, pixel_height]`.
    pub fn from_gdal(gt: [f64; 6]) -> GeoTransform {
        GeoTransform {
            origin_x: gt[0],
            pixel_width: gt[1],
            row_rotation: gt[2],
            origin_y: gt[3],
            col_rotation: gt[4],
            pixel_height: gt[5],
        }
    }

    pub fn to_gdal(&self) -> [f64; 6] {
        [
            self.origin_x,
            self.pixel_width,
            self.row_rotation,
            self.origin_y,
            self.col_rotation,
            self.pixel_height,
        ]
    }

    /// North-up with square pixels of `size`, top-left corner at (`x`, `y`).
    pub fn north_up(x: f64, y: f64, size: f64) -> GeoTransform {
        GeoTransform::from_gdal([x, size, 0.0, y, 0.0, -size])
    }

    fn determinant(&self) -> f64 {
        self.pixel_width * self.pixel_height - self.row_rotation * self.col_rotation
    }

    /// Spatial coordinates of a (fractional) pixel position `(col, row)`.
    pub fn pixel_to_spatial(&self, col: f64, row: f64) -> (f64, f64) {
        (
            self.origin_x + col * self.pixel_width + row * self.row_rotation,
            self.origin_y + col * self.col_rotation + row * self.pixel_height,
        )
    }

    /// Fractional pixel position `(col, row)` of spatial coordinates.
    pub fn spatial_to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        let det = self.determinant();
        let dx = x - self.origin_x;
        let dy = y - self.origin_y;
        (
            (dx * self.pixel_height - dy * self.row_rotation) / det,
            (dy * self.pixel_width - dx * self.col_rotation) / det,
        )
    }

    /// The same grid with its origin moved to pixel corner `(col, row)`.
    fn shifted(&self, col: f64, row: f64) -> GeoTransform {
        let (origin_x, origin_y) = self.pixel_to_spatial(col, row);
        GeoTransform {
            origin_x,
            origin_y,
            ..*self
        }
    }
}

/// A geotransform with a width and height in pixels (both at least 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Footprint {
    gt: GeoTransform,
    width: usize,
    height: usize,
}

/// A spatial rectangle aligned on the axes: what [`Footprint::extent`] returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extent {
    pub minx: f64,
    pub maxx: f64,
    pub miny: f64,
    pub maxy: f64,
}

/// Significant decimal digits trusted in coordinates when comparing them (buzzard's
/// `env.significant` default).
const SIGNIFICANT_DIGITS: i32 = 9;

/// The comparison tolerance never exceeds this fraction of a pixel, however large the
/// coordinates (where buzzard would refuse to compare).
const MAX_PIXEL_FRACTION: f64 = 0.01;

/// Spatial distance under which two coordinates of these footprints are considered equal:
/// `significant digits` of the largest coordinate (or of the pixel size near the origin), at
/// most 1/100 of the smallest pixel.
fn tolerance(fps: &[&Footprint]) -> f64 {
    let mut largest = 0.0f64;
    let mut pixel = f64::INFINITY;
    for fp in fps {
        for (x, y) in fp.corners() {
            largest = largest.max(x.abs()).max(y.abs());
        }
        let (px, py) = fp.pixel_size();
        pixel = pixel.min(px).min(py);
    }
    (largest.max(pixel) * 10f64.powi(-SIGNIFICANT_DIGITS)).min(pixel * MAX_PIXEL_FRACTION)
}

/// `floor(v)`, except that a value within `tol` of an integer is that integer.
fn snap_floor(v: f64, tol: f64) -> f64 {
    let r = v.round();
    if (v - r).abs() <= tol { r } else { v.floor() }
}

/// `ceil(v)`, except that a value within `tol` of an integer is that integer.
fn snap_ceil(v: f64, tol: f64) -> f64 {
    let r = v.round();
    if (v - r).abs() <= tol { r } else { v.ceil() }
}

impl Footprint {
    /// A footprint of `width`×`height` pixels (both at least 1) placed by `gt`.
    pub fn new(gt: GeoTransform, width: usize, height: usize) -> Result<Footprint, FootprintError> {
        let numbers = gt.to_gdal();
        if numbers.iter().any(|v| !v.is_finite()) || gt.determinant() == 0.0 {
            return Err(FootprintError::Degenerate(numbers));
        }
        if width == 0 || height == 0 {
            return Err(FootprintError::EmptySize { width, height });
        }
        Ok(Footprint { gt, width, height })
    }

    /// North-up footprint with pixels of `pixel_size` = (width, height) (both positive) covering
    /// `extent`, top-left at (`minx`, `maxy`); the pixel counts are the extent's size divided by
    /// the pixel size, rounded to the nearest (buzzard's `of_extent`).
    pub fn of_extent(extent: Extent, pixel_size: (f64, f64)) -> Result<Footprint, FootprintError> {
        let (pw, ph) = (pixel_size.0.abs(), pixel_size.1.abs());
        let gt = GeoTransform::from_gdal([extent.minx, pw, 0.0, extent.maxy, 0.0, -ph]);
        let width = ((extent.maxx - extent.minx) / pw).round();
        let height = ((extent.maxy - extent.miny) / ph).round();
        if !(width.is_finite() && height.is_finite()) {
            return Err(FootprintError::Degenerate(gt.to_gdal()));
        }
        Footprint::new(gt, width.max(0.0) as usize, height.max(0.0) as usize)
    }

    pub fn gt(&self) -> GeoTransform {
        self.gt
    }

    /// Width in pixels (columns).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels (rows).
    pub fn height(&self) -> usize {
        self.height
    }

    /// `(width, height)` in pixels (buzzard's `rsize`).
    pub fn rsize(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Number of pixels.
    pub fn len(&self) -> usize {
        self.width * self.height
    }

    /// Always false: a footprint has at least one pixel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole footprint as a window of itself: `(0, 0)`, `width`×`height`.
    pub fn full_window(&self) -> PixelWindow {
        PixelWindow::new(0, 0, self.width, self.height)
    }

    /// Spatial length of a pixel's top side and of its left side (both positive, whatever the
    /// rotation or orientation; buzzard's `pxsize`).
    pub fn pixel_size(&self) -> (f64, f64) {
        let g = &self.gt;
        (
            g.pixel_width.hypot(g.col_rotation),
            g.row_rotation.hypot(g.pixel_height),
        )
    }

    /// Signed `(pixel_width, pixel_height)` of the geotransform (buzzard's `scale` for a
    /// footprint without rotation; `pixel_height` is negative when north-up).
    pub fn scale(&self) -> (f64, f64) {
        (self.gt.pixel_width, self.gt.pixel_height)
    }

    /// No rotation, columns going east and rows going south.
    pub fn is_north_up(&self) -> bool {
        let g = &self.gt;
        g.row_rotation == 0.0
            && g.col_rotation == 0.0
            && g.pixel_width > 0.0
            && g.pixel_height < 0.0
    }

    /// Spatial coordinates of the top-left corner (pixel corner `(0, 0)`).
    pub fn tl(&self) -> (f64, f64) {
        (self.gt.origin_x, self.gt.origin_y)
    }

    /// Spatial coordinates of the top-right corner (pixel corner `(width, 0)`).
    pub fn tr(&self) -> (f64, f64) {
        self.gt.pixel_to_spatial(self.width as f64, 0.0)
    }

    /// Spatial coordinates of the bottom-right corner (pixel corner `(width, height)`).
    pub fn br(&self) -> (f64, f64) {
        self.gt
            .pixel_to_spatial(self.width as f64, self.height as f64)
    }

    /// Spatial coordinates of the bottom-left corner (pixel corner `(0, height)`).
    pub fn bl(&self) -> (f64, f64) {
        self.gt.pixel_to_spatial(0.0, self.height as f64)
    }

    /// The four corners clockwise in pixel space: top-left, top-right, bottom-right, bottom-left.
    pub fn corners(&self) -> [(f64, f64); 4] {
        [self.tl(), self.tr(), self.br(), self.bl()]
    }

    /// Spatial center.
    pub fn center(&self) -> (f64, f64) {
        self.gt
            .pixel_to_spatial(self.width as f64 / 2.0, self.height as f64 / 2.0)
    }

    /// Spatial size along the footprint's own sides: `(width × pixel width, height × pixel
    /// height)`, both positive.
    pub fn size(&self) -> (f64, f64) {
        let (px, py) = self.pixel_size();
        (px * self.width as f64, py * self.height as f64)
    }

    /// Smallest axis-aligned spatial rectangle containing the footprint.
    pub fn extent(&self) -> Extent {
        let mut e = Extent {
            minx: f64::INFINITY,
            maxx: f64::NEG_INFINITY,
            miny: f64::INFINITY,
            maxy: f64::NEG_INFINITY,
        };
        for (x, y) in self.corners() {
            e.minx = e.minx.min(x);
            e.maxx = e.maxx.max(x);
            e.miny = e.miny.min(y);
            e.maxy = e.maxy.max(y);
        }
        e
    }

    /// The extent in the `(minx, miny, maxx, maxy)` order of shapely and rasterio (buzzard's
    /// `bounds`).
    pub fn bounds(&self) -> [f64; 4] {
        let e = self.extent();
        [e.minx, e.miny, e.maxx, e.maxy]
    }

    /// Spatial area.
    pub fn area(&self) -> f64 {
        self.gt.determinant().abs() * self.len() as f64
    }

    /// Spatial distance under which coordinates of this footprint are considered equal (the
    /// tolerance of [`Footprint::same_grid`] and of the rounded conversions): 9 significant
    /// digits of its largest coordinate, at most 1/100 of a pixel.
    pub fn precision(&self) -> f64 {
        tolerance(&[self])
    }

    /// Spatial coordinates of a fractional pixel position `(col, row)` (pixel corners at whole
    /// numbers).
    pub fn pixel_to_spatial(&self, col: f64, row: f64) -> (f64, f64) {
        self.gt.pixel_to_spatial(col, row)
    }

    /// Spatial coordinates of the center of pixel `(col, row)` (which may lie outside).
    pub fn pixel_center(&self, col: i64, row: i64) -> (f64, f64) {
        self.gt.pixel_to_spatial(col as f64 + 0.5, row as f64 + 0.5)
    }

    /// Fractional pixel position `(col, row)` of spatial coordinates.
    pub fn spatial_to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        self.gt.spatial_to_pixel(x, y)
    }

    /// Tolerance of this footprint's conversions, in pixels along x and y.
    fn pixel_tolerance(&self) -> (f64, f64) {
        let tol = self.precision();
        let (px, py) = self.pixel_size();
        (tol / px, tol / py)
    }

    /// Index `(col, row)` of the pixel containing spatial coordinates (which may lie outside the
    /// footprint: indices can be negative or too large). A point within [`Footprint::precision`]
    /// of a pixel corner counts as on it, as in buzzard's `spatial_to_raster`.
    pub fn spatial_to_pixel_floor(&self, x: f64, y: f64) -> (i64, i64) {
        let (c, r) = self.spatial_to_pixel(x, y);
        let (tc, tr) = self.pixel_tolerance();
        (snap_floor(c, tc) as i64, snap_floor(r, tr) as i64)
    }

    /// Pixel corner `(col, row)` nearest to spatial coordinates.
    pub fn spatial_to_pixel_round(&self, x: f64, y: f64) -> (i64, i64) {
        let (c, r) = self.spatial_to_pixel(x, y);
        (c.round() as i64, r.round() as i64)
    }

    /// Same pixel count and corners within [`Footprint::precision`] of each other (buzzard's
    /// `almost_equals`).
    pub fn almost_equals(&self, other: &Footprint) -> bool {
        let tol = tolerance(&[self, other]);
        self.rsize() == other.rsize()
            && self
                .corners()
                .iter()
                .zip(other.corners())
                .all(|(a, b)| (a.0 - b.0).abs() <= tol && (a.1 - b.1).abs() <= tol)
    }
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (x, y) = self.gt.pixel_to_spatial(0.0, 0.0);
        write!(
            f,
            "{}×{} px at ({x}, {y}), pixel {}×{}",
            self.width, self.height, self.gt.pixel_width, self.gt.pixel_height
        )?;
        if !(self.gt.row_rotation == 0.0 && self.gt.col_rotation == 0.0) {
            write!(
                f,
                ", rotation {}/{}",
                self.gt.row_rotation, self.gt.col_rotation
            )?;
        }
        Ok(())
    }
}

/// Footprints the unit tests of this module and its children build.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Footprint, GeoTransform};

    pub fn fp(gt: [f64; 6], w: usize, h: usize) -> Footprint {
        Footprint::new(GeoTransform::from_gdal(gt), w, h).unwrap()
    }

    /// Pixels of 1 × 1, north up, top-left corner at (`x`, `y`).
    pub fn unit(x: f64, y: f64, w: usize, h: usize) -> Footprint {
        fp([x, 1.0, 0.0, y, 0.0, -1.0], w, h)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::fp;
    use super::*;

    /// 30° rotation, pixels of 2 × 3, origin far from 0.
    fn rotated() -> Footprint {
        let (s, c) = 30f64.to_radians().sin_cos();
        fp(
            [500_000.0, 2.0 * c, 3.0 * s, 6_000_000.0, 2.0 * s, -3.0 * c],
            40,
            25,
        )
    }

    #[test]
    fn new_rejects_degenerate_and_empty() {
        let gt = GeoTransform::north_up(0.0, 0.0, 1.0);
        assert_eq!(
            Footprint::new(gt, 0, 3),
            Err(FootprintError::EmptySize {
                width: 0,
                height: 3
            })
        );
        let flat = GeoTransform::from_gdal([0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
        assert!(matches!(
            Footprint::new(flat, 2, 2),
            Err(FootprintError::Degenerate(_))
        ));
        let nan = GeoTransform::from_gdal([f64::NAN, 1.0, 0.0, 0.0, 0.0, -1.0]);
        assert!(Footprint::new(nan, 2, 2).is_err());
        let msg = Footprint::new(gt, 4, 0).unwrap_err().to_string();
        assert!(msg.contains("4×0"), "{msg}");
    }

    #[test]
    fn of_extent_rounds_pixel_counts() {
        let e = Extent {
            minx: 10.0,
            maxx: 20.0000001,
            miny: -5.0,
            maxy: 5.0,
        };
        let f = Footprint::of_extent(e, (0.5, 0.25)).unwrap();
        assert_eq!(f.rsize(), (20, 40));
        assert_eq!(f.tl(), (10.0, 5.0));
        assert_eq!(f.scale(), (0.5, -0.25));
        assert!(Footprint::of_extent(e, (100.0, 1.0)).is_err());
    }

    #[test]
    fn accessors_north_up() {
        let f = fp([100.0, 2.0, 0.0, 50.0, 0.0, -0.5], 10, 4);
        assert_eq!(f.rsize(), (10, 4));
        assert_eq!(f.len(), 40);
        assert!(!f.is_empty());
        assert!(f.is_north_up());
        assert_eq!(f.pixel_size(), (2.0, 0.5));
        assert_eq!(f.scale(), (2.0, -0.5));
        assert_eq!(f.tl(), (100.0, 50.0));
        assert_eq!(f.tr(), (120.0, 50.0));
        assert_eq!(f.br(), (120.0, 48.0));
        assert_eq!(f.bl(), (100.0, 48.0));
        assert_eq!(f.center(), (110.0, 49.0));
        assert_eq!(f.size(), (20.0, 2.0));
        assert_eq!(f.area(), 40.0);
        assert_eq!(
            f.extent(),
            Extent {
                minx: 100.0,
                maxx: 120.0,
                miny: 48.0,
                maxy: 50.0
            }
        );
        assert_eq!(f.bounds(), [100.0, 48.0, 120.0, 50.0]);
        assert_eq!(f.full_window(), PixelWindow::new(0, 0, 10, 4));
    }

    #[test]
    fn accessors_rotated_and_flipped() {
        let f = rotated();
        assert!(!f.is_north_up());
        let (px, py) = f.pixel_size();
        assert!((px - 2.0).abs() < 1e-12 && (py - 3.0).abs() < 1e-12);
        assert!((f.area() - 6.0 * 1000.0).abs() < 1e-6);
        let e = f.extent();
        for (x, y) in f.corners() {
            assert!(e.minx <= x && x <= e.maxx && e.miny <= y && y <= e.maxy);
        }
        // south-up: pixel height positive.
        let s = fp([0.0, 1.0, 0.0, 0.0, 0.0, 1.0], 2, 2);
        assert!(!s.is_north_up());
        assert_eq!(s.pixel_size(), (1.0, 1.0));
        assert_eq!(s.extent().maxy, 2.0);
    }

    #[test]
    fn conversions_round_trip_rotated() {
        let f = rotated();
        for (c, r) in [(0.0, 0.0), (3.25, 7.5), (-4.0, 100.0), (40.0, 25.0)] {
            let (x, y) = f.pixel_to_spatial(c, r);
            let (c2, r2) = f.spatial_to_pixel(x, y);
            assert!((c - c2).abs() < 1e-9 && (r - r2).abs() < 1e-9, "{c},{r}");
        }
        for (col, row) in [(0i64, 0i64), (5, 3), (-2, 30), (39, 24)] {
            let (x, y) = f.pixel_center(col, row);
            assert_eq!(f.spatial_to_pixel_floor(x, y), (col, row));
            let (x, y) = f.pixel_to_spatial(col as f64, row as f64);
            assert_eq!(f.spatial_to_pixel_floor(x, y), (col, row));
            assert_eq!(f.spatial_to_pixel_round(x, y), (col, row));
        }
    }

    #[test]
    fn floor_snaps_to_corners_within_precision() {
        let f = fp([0.0, 0.1, 0.0, 0.0, 0.0, -0.1], 10, 10);
        // 0.3 / 0.1 = 2.9999999999999996 in floating point: the point is on the corner.
        assert!(std::hint::black_box(0.3f64) / 0.1 < 3.0);
        assert_eq!(f.spatial_to_pixel_floor(0.3, -0.7), (3, 7));
        // Well inside pixel 2 stays there.
        assert_eq!(f.spatial_to_pixel_floor(0.29, -0.71), (2, 7));
        assert_eq!(f.spatial_to_pixel_floor(-0.05, 0.05), (-1, -1));
        assert_eq!(f.spatial_to_pixel_round(0.26, -0.74), (3, 7));
    }

    #[test]
    fn precision_scales_with_coordinates_and_is_capped_by_pixel() {
        let small = fp([0.0, 1.0, 0.0, 0.0, 0.0, -1.0], 10, 10);
        assert!((small.precision() - 1e-8).abs() < 1e-12); // largest coordinate 10
        let utm = fp([672_939.37, 0.02, 0.0, 6_876_118.1, 0.0, -0.02], 1201, 1201);
        assert!((utm.precision() - 0.02 * MAX_PIXEL_FRACTION).abs() < 1e-15);
        let (tx, ty) = utm.pixel_tolerance();
        assert!(tx <= MAX_PIXEL_FRACTION * 1.0001 && ty <= MAX_PIXEL_FRACTION * 1.0001);
    }

    #[test]
    fn almost_equals_tolerates_float_noise() {
        let a = fp([0.3, 0.1, 0.0, 1.0, 0.0, -0.1], 5, 5);
        let b = fp([0.1 + 0.2, 0.1, 0.0, 1.0, 0.0, -0.1], 5, 5);
        assert_ne!(a, b);
        assert!(a.almost_equals(&b));
        let c = fp([0.31, 0.1, 0.0, 1.0, 0.0, -0.1], 5, 5);
        assert!(!a.almost_equals(&c));
        let d = fp([0.3, 0.1, 0.0, 1.0, 0.0, -0.1], 5, 6);
        assert!(!a.almost_equals(&d));
    }

    #[test]
    fn display_is_short() {
        let f = fp([1.0, 2.0, 0.0, 3.0, 0.0, -2.0], 4, 5);
        assert_eq!(f.to_string(), "4×5 px at (1, 3), pixel 2×-2");
        assert!(rotated().to_string().contains("rotation"));
        assert_eq!(Axis::X.to_string(), "x (columns)");
    }

    #[test]
    fn snapping_helpers() {
        assert_eq!(snap_floor(2.9999999, 1e-6), 3.0);
        assert_eq!(snap_floor(2.99, 1e-6), 2.0);
        assert_eq!(snap_ceil(3.0000001, 1e-6), 3.0);
        assert_eq!(snap_ceil(3.01, 1e-6), 4.0);
        assert_eq!(snap_floor(-0.5, 1e-6), -1.0);
    }
}
