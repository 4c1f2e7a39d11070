//! Footprints on a grid: pixel windows, whether two footprints share a grid and where one lies in
//! the other, and the footprints built on a footprint's grid (windows, clip, dilate/erode, move,
//! union).

use std::fmt;

use super::{Footprint, FootprintError, tolerance};

/// A rectangle of pixels in some raster's grid: top-left pixel `(col, row)` — possibly negative —
/// and a size. It may stick out of the raster; [`PixelWindow::clip_to`] gives the part inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PixelWindow {
    pub col: i64,
    pub row: i64,
    pub width: usize,
    pub height: usize,
}

impl PixelWindow {
    pub fn new(col: i64, row: i64, width: usize, height: usize) -> PixelWindow {
        PixelWindow {
            col,
            row,
            width,
            height,
        }
    }

    /// Column just after the window's last one.
    pub fn col_end(&self) -> i64 {
        self.col + self.width as i64
    }

    /// Row just after the window's last one.
    pub fn row_end(&self) -> i64 {
        self.row + self.height as i64
    }

    /// Number of pixels.
    pub fn len(&self) -> usize {
        self.width * self.height
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether pixel `(col, row)` is in the window.
    pub fn contains(&self, col: i64, row: i64) -> bool {
        (self.col..self.col_end()).contains(&col) && (self.row..self.row_end()).contains(&row)
    }

    /// The pixels in both windows, `None` when there are none.
    pub fn intersection(&self, other: &PixelWindow) -> Option<PixelWindow> {
        let col = self.col.max(other.col);
        let row = self.row.max(other.row);
        let col_end = self.col_end().min(other.col_end());
        let row_end = self.row_end().min(other.row_end());
        (col < col_end && row < row_end)
            .then(|| PixelWindow::new(col, row, (col_end - col) as usize, (row_end - row) as usize))
    }

    /// The smallest window containing both (which must not be empty).
    pub fn bounding(&self, other: &PixelWindow) -> PixelWindow {
        let col = self.col.min(other.col);
        let row = self.row.min(other.row);
        let col_end = self.col_end().max(other.col_end());
        let row_end = self.row_end().max(other.row_end());
        PixelWindow::new(col, row, (col_end - col) as usize, (row_end - row) as usize)
    }

    /// The part of the window inside a `width`×`height` raster (pixels `0..width`,
    /// `0..height`), `None` when nothing is inside.
    pub fn clip_to(&self, width: usize, height: usize) -> Option<PixelWindow> {
        self.intersection(&PixelWindow::new(0, 0, width, height))
    }

    /// The same window moved by `(dcol, drow)` pixels.
    pub fn translate(&self, dcol: i64, drow: i64) -> PixelWindow {
        PixelWindow::new(self.col + dcol, self.row + drow, self.width, self.height)
    }
}

impl fmt::Display for PixelWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}×{} px at col {}, row {}",
            self.width, self.height, self.col, self.row
        )
    }
}

/// Python's `slice(start, end).indices(len)` bound: negative counts from the end, then clamped to
/// `0..=len`.
fn slice_bound(index: i64, len: usize) -> i64 {
    let len = len as i64;
    let index = if index < 0 { index + len } else { index };
    index.clamp(0, len)
}

impl Footprint {
    /// Whether `other` lies on the same grid: same pixel vectors (size and rotation) and
    /// top-left corners a whole number of pixels apart, all within the pair's precision
    /// ([`Footprint::precision`] of both; symmetric and reflexive).
    pub fn same_grid(&self, other: &Footprint) -> bool {
        let tol = tolerance(&[self, other]);
        let (a, b) = (&self.gt, &other.gt);
        let close = |u: f64, v: f64| (u - v).abs() <= tol;
        // Pixel vectors, accumulated over the larger of the two extents.
        let cols = self.width.max(other.width) as f64;
        let rows = self.height.max(other.height) as f64;
        if !(close(a.pixel_width * cols, b.pixel_width * cols)
            && close(a.col_rotation * cols, b.col_rotation * cols)
            && close(a.row_rotation * rows, b.row_rotation * rows)
            && close(a.pixel_height * rows, b.pixel_height * rows))
        {
            return false;
        }
        // Each top-left corner on the other's grid.
        let on_grid = |fp: &Footprint, (x, y): (f64, f64)| {
            let (c, r) = fp.spatial_to_pixel(x, y);
            let (gx, gy) = fp.pixel_to_spatial(c.round(), r.round());
            close(x, gx) && close(y, gy)
        };
        on_grid(self, other.tl()) && on_grid(other, self.tl())
    }

    /// Column and row of self's top-left pixel in `other`'s grid, when both are on the same grid
    /// (may be negative or beyond `other`).
    pub fn pixel_offset_in(&self, other: &Footprint) -> Option<(i64, i64)> {
        self.same_grid(other).then(|| {
            let (x, y) = self.tl();
            other.spatial_to_pixel_round(x, y)
        })
    }

    /// Where self lies in `other`'s grid as a window (possibly sticking out of `other`), when
    /// both are on the same grid.
    pub fn window_in(&self, other: &Footprint) -> Option<PixelWindow> {
        self.pixel_offset_in(other)
            .map(|(col, row)| PixelWindow::new(col, row, self.width, self.height))
    }

    /// The footprint of `window` in self's grid: same pixels, top-left at pixel `(window.col,
    /// window.row)` of self (negative and beyond self allowed).
    ///
    /// # Panics
    /// When the window is empty (a footprint has at least one pixel).
    pub fn window(&self, window: PixelWindow) -> Footprint {
        assert!(
            !window.is_empty(),
            "Footprint::window: window {window} is empty"
        );
        Footprint {
            gt: self.gt.shifted(window.col as f64, window.row as f64),
            width: window.width,
            height: window.height,
        }
    }

    /// The pixels of columns `col0..col1` and rows `row0..row1` of self, with buzzard's (Python
    /// slice) rules: a negative index counts from the end (`-1` is the last column), and indices
    /// are then clamped to self. Use `i64::MAX` for "up to the end". Fails when nothing is left.
    pub fn clip(
        &self,
        col0: i64,
        row0: i64,
        col1: i64,
        row1: i64,
    ) -> Result<Footprint, FootprintError> {
        let (c0, c1) = (slice_bound(col0, self.width), slice_bound(col1, self.width));
        let (r0, r1) = (
            slice_bound(row0, self.height),
            slice_bound(row1, self.height),
        );
        if c1 <= c0 || r1 <= r0 {
            return Err(FootprintError::EmptyClip {
                width: self.width,
                height: self.height,
                col0,
                row0,
                col1,
                row1,
            });
        }
        Ok(self.window(PixelWindow::new(
            c0,
            r0,
            (c1 - c0) as usize,
            (r1 - r0) as usize,
        )))
    }

    /// Self grown by `n` pixels on each side, on the same grid.
    pub fn dilate(&self, n: usize) -> Footprint {
        let n = n as i64;
        self.window(PixelWindow::new(
            -n,
            -n,
            self.width + 2 * n as usize,
            self.height + 2 * n as usize,
        ))
    }

    /// Self shrunk by `n` pixels on each side, on the same grid; fails when no pixel would be
    /// left.
    pub fn erode(&self, n: usize) -> Result<Footprint, FootprintError> {
        let n = -(n as i64);
        self.dilate_sides(n, n, n, n)
    }

    /// Self with each side moved outward by that many pixels (inward when negative), on the same
    /// grid (buzzard's 4-argument `dilate`); fails when no pixel would be left.
    pub fn dilate_sides(
        &self,
        left: i64,
        right: i64,
        top: i64,
        bottom: i64,
    ) -> Result<Footprint, FootprintError> {
        let width = self.width as i64 + left + right;
        let height = self.height as i64 + top + bottom;
        if width <= 0 || height <= 0 {
            return Err(FootprintError::ErodedAway {
                width: self.width,
                height: self.height,
                left,
                right,
                top,
                bottom,
            });
        }
        Ok(self.window(PixelWindow::new(
            -left,
            -top,
            width as usize,
            height as usize,
        )))
    }

    /// Self translated so that its top-left corner is at (`x`, `y`): same pixel size, rotation
    /// and pixel count (buzzard's `move(tl)`).
    pub fn move_to(&self, x: f64, y: f64) -> Footprint {
        let mut gt = self.gt;
        gt.origin_x = x;
        gt.origin_y = y;
        Footprint { gt, ..*self }
    }

    /// The smallest footprint on self's grid containing both, when `other` is on the same grid.
    pub fn union(&self, other: &Footprint) -> Option<Footprint> {
        let w = other.window_in(self)?;
        Some(self.window(self.full_window().bounding(&w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::fixtures::{fp, unit};

    fn rotated() -> Footprint {
        let (s, c) = 20f64.to_radians().sin_cos();
        fp(
            [1000.0, 0.5 * c, 0.5 * s, 2000.0, 0.5 * s, -0.5 * c],
            30,
            20,
        )
    }

    #[test]
    fn pixel_window_basics() {
        let w = PixelWindow::new(-2, 3, 5, 4);
        assert_eq!((w.col_end(), w.row_end(), w.len()), (3, 7, 20));
        assert!(!w.is_empty() && PixelWindow::new(0, 0, 0, 3).is_empty());
        assert!(w.contains(-2, 3) && w.contains(2, 6));
        assert!(!w.contains(3, 3) && !w.contains(0, 7));
        assert_eq!(w.clip_to(10, 10), Some(PixelWindow::new(0, 3, 3, 4)));
        assert_eq!(w.clip_to(10, 3), None);
        assert_eq!(
            PixelWindow::new(8, 8, 5, 5).clip_to(10, 9),
            Some(PixelWindow::new(8, 8, 2, 1))
        );
        assert_eq!(PixelWindow::new(-5, 0, 5, 1).clip_to(10, 9), None);
        let o = PixelWindow::new(0, 0, 2, 2);
        assert_eq!(w.intersection(&o), None);
        assert_eq!(
            w.intersection(&PixelWindow::new(0, 0, 9, 4)),
            Some(PixelWindow::new(0, 3, 3, 1))
        );
        assert_eq!(w.bounding(&o), PixelWindow::new(-2, 0, 5, 7));
        assert_eq!(w.translate(2, -3), PixelWindow::new(0, 0, 5, 4));
        assert_eq!(w.to_string(), "5×4 px at col -2, row 3");
    }

    #[test]
    fn same_grid_cases() {
        let a = unit(0.0, 0.0, 10, 10);
        assert!(a.same_grid(&a));
        assert!(a.same_grid(&unit(3.0, -7.0, 2, 40)));
        assert!(!a.same_grid(&unit(0.5, 0.0, 10, 10)));
        assert!(!a.same_grid(&fp([0.0, 1.0, 0.0, 0.0, 0.0, 1.0], 10, 10)));
        assert!(!a.same_grid(&fp([0.0, 2.0, 0.0, 0.0, 0.0, -1.0], 10, 10)));
        // Pixel size differing a little: the drift over 10 000 pixels shows.
        let big = fp([0.0, 1.0, 0.0, 0.0, 0.0, -1.0], 10_000, 1);
        assert!(!big.same_grid(&fp([0.0, 1.000001, 0.0, 0.0, 0.0, -1.0], 10_000, 1)));
        let r = rotated();
        assert!(r.same_grid(&r.window(PixelWindow::new(-7, 12, 3, 3))));
        assert!(!r.same_grid(&unit(1000.0, 2000.0, 3, 3)));
    }

    #[test]
    fn same_grid_within_precision() {
        // Top-lefts computed by accumulating 0.1 px steps, far from the origin.
        let a = fp([672_939.3, 0.1, 0.0, 6_876_118.1, 0.0, -0.1], 1000, 1000);
        let mut x = 672_939.3;
        let mut y = 6_876_118.1;
        for _ in 0..777 {
            x += 0.1;
            y -= 0.1;
        }
        assert_ne!(x, 672_939.3 + 77.7);
        let b = fp([x, 0.1, 0.0, y, 0.0, -0.1], 10, 10);
        assert!(a.same_grid(&b) && b.same_grid(&a));
        assert_eq!(b.pixel_offset_in(&a), Some((777, 777)));
        // Pixel size from an extent division.
        let c = fp(
            [672_939.3, 123.4 / 1234.0, 0.0, 6_876_118.1, 0.0, -0.1],
            10,
            10,
        );
        assert!(a.same_grid(&c));
        // Two hundredths of a pixel are not noise.
        let d = b.move_to(x + 0.002, y);
        assert!(!a.same_grid(&d));
    }

    #[test]
    fn offsets_and_windows_in_other() {
        let a = unit(10.0, 20.0, 6, 6);
        let b = unit(12.0, 19.0, 3, 2);
        assert_eq!(b.pixel_offset_in(&a), Some((2, 1)));
        assert_eq!(a.pixel_offset_in(&b), Some((-2, -1)));
        assert_eq!(b.window_in(&a), Some(PixelWindow::new(2, 1, 3, 2)));
        assert_eq!(unit(10.5, 20.0, 1, 1).window_in(&a), None);
        let r = rotated();
        let w = PixelWindow::new(-4, 9, 50, 2);
        assert_eq!(r.window(w).window_in(&r), Some(w));
    }

    #[test]
    fn window_builds_on_grid() {
        let a = fp([100.0, 2.0, 0.0, 50.0, 0.0, -2.0], 10, 10);
        let w = a.window(PixelWindow::new(-1, 2, 3, 4));
        assert_eq!(w.tl(), (98.0, 46.0));
        assert_eq!(w.rsize(), (3, 4));
        assert_eq!(w.scale(), a.scale());
    }

    #[test]
    #[should_panic(expected = "empty")]
    fn window_panics_when_empty() {
        unit(0.0, 0.0, 3, 3).window(PixelWindow::new(0, 0, 0, 1));
    }

    #[test]
    fn clip_follows_python_slices() {
        // buzzard's test_clip: all of these are the center pixel E of the 3×3 AI.
        let ai = unit(0.0, 3.0, 3, 3);
        let e = unit(1.0, 2.0, 1, 1);
        assert_eq!(ai.clip(1, 1, 2, 2), Ok(e));
        assert_eq!(ai.clip(-2, -2, -1, -1), Ok(e));
        assert_eq!(e.clip(0, 0, 1, 1), Ok(e));
        assert_eq!(e.clip(-1, -1, 1, 1), Ok(e));
        let bi = unit(1.0, 3.0, 2, 3);
        assert_eq!(bi.clip(0, 1, 1, 2), Ok(e));
        assert_eq!(bi.clip(-2, -2, -1, -1), Ok(e));
        // Clamped to self.
        assert_eq!(ai.clip(-10, 1, i64::MAX, 100), Ok(unit(0.0, 2.0, 3, 2)));
        let err = ai.clip(2, 0, 1, 3).unwrap_err();
        assert!(err.to_string().contains("columns 2..1"), "{err}");
        assert!(ai.clip(0, 3, 3, 10).is_err());
    }

    #[test]
    fn dilate_and_erode() {
        // buzzard's test_morpho.
        let create = |w, h| unit(0.0, 0.0, w, h);
        assert_eq!(create(3, 3).erode(1).unwrap().len(), 1);
        assert_eq!(create(4, 4).erode(1).unwrap().len(), 4);
        assert_eq!(create(5, 5).erode(2).unwrap().len(), 1);
        assert_eq!(create(3, 4).erode(1).unwrap().rsize(), (1, 2));
        assert_eq!(create(2, 3).dilate(1).rsize(), (4, 5));
        let one = create(1, 1).dilate(1).dilate(2).erode(3).unwrap();
        assert_eq!(one, create(1, 1));
        assert_eq!(create(2, 3).dilate(1).tl(), (-1.0, 1.0));
        assert_eq!(create(5, 5).dilate(0), create(5, 5));
        let err = create(4, 9).erode(2).unwrap_err();
        assert_eq!(
            err,
            FootprintError::ErodedAway {
                width: 4,
                height: 9,
                left: -2,
                right: -2,
                top: -2,
                bottom: -2
            }
        );
        let sides = create(4, 4).dilate_sides(1, -2, 0, 3).unwrap();
        assert_eq!((sides.tl(), sides.rsize()), ((-1.0, 0.0), (3, 7)));
        assert!(create(4, 4).dilate_sides(-2, -2, 0, 0).is_err());
    }

    #[test]
    fn move_to_keeps_grid_shape() {
        let r = rotated();
        let m = r.move_to(5.0, 6.0);
        assert_eq!(m.tl(), (5.0, 6.0));
        assert_eq!(m.rsize(), r.rsize());
        assert_eq!(m.pixel_size(), r.pixel_size());
        assert!(!m.same_grid(&r.move_to(5.25, 6.0)));
    }

    #[test]
    fn union_on_same_grid() {
        let a = unit(0.0, 0.0, 2, 2);
        let b = unit(5.0, -3.0, 1, 4);
        let u = a.union(&b).unwrap();
        assert_eq!((u.tl(), u.rsize()), ((0.0, 0.0), (6, 7)));
        assert_eq!(b.union(&a).unwrap(), u);
        assert_eq!(a.union(&a), Some(a));
        assert_eq!(a.union(&unit(0.5, 0.0, 1, 1)), None);
    }
}
