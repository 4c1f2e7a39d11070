//! Where two footprints overlap: whether they share area, and the footprint on the first one's
//! grid covering their spatial intersection (exact for footprints on the same grid).

use super::{Footprint, PixelWindow, snap_ceil, snap_floor, tolerance};

/// Unit normals of a footprint's sides (one per pair of parallel sides).
fn side_normals(fp: &Footprint) -> [(f64, f64); 2] {
    let g = fp.gt();
    let normal = |dx: f64, dy: f64| {
        let n = dx.hypot(dy);
        (-dy / n, dx / n)
    };
    [
        normal(g.pixel_width, g.col_rotation),
        normal(g.row_rotation, g.pixel_height),
    ]
}

/// Projection interval of a footprint's corners on an axis.
fn project(fp: &Footprint, (nx, ny): (f64, f64)) -> (f64, f64) {
    fp.corners()
        .iter()
        .map(|(x, y)| x * nx + y * ny)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// Clips a convex polygon to `lo <= coordinate[axis] <= hi` (one Sutherland–Hodgman pass per
/// bound).
fn clip_polygon(points: Vec<(f64, f64)>, axis: usize, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let coord = |p: (f64, f64)| if axis == 0 { p.0 } else { p.1 };
    let mut points = points;
    for (bound, keep_above) in [(lo, true), (hi, false)] {
        let inside = |p: (f64, f64)| {
            if keep_above {
                coord(p) >= bound
            } else {
                coord(p) <= bound
            }
        };
        let mut out = Vec::with_capacity(points.len() + 2);
        for i in 0..points.len() {
            let current = points[i];
            let previous = points[(i + points.len() - 1) % points.len()];
            if inside(current) != inside(previous) {
                let t = (bound - coord(previous)) / (coord(current) - coord(previous));
                out.push((
                    previous.0 + t * (current.0 - previous.0),
                    previous.1 + t * (current.1 - previous.1),
                ));
            }
            if inside(current) {
                out.push(current);
            }
        }
        points = out;
        if points.is_empty() {
            break;
        }
    }
    points
}

impl Footprint {
    /// Whether the two footprints share some area (touching along a side or at a corner is not
    /// sharing; overlaps thinner than the pair's precision are not either). Exact on the same
    /// grid.
    pub fn share_area(&self, other: &Footprint) -> bool {
        if let Some(w) = other.window_in(self) {
            return w.clip_to(self.width(), self.height()).is_some();
        }
        // Separating axis test: two convex polygons share area unless their projections on one
        // of their sides' normals at most touch.
        let tol = tolerance(&[self, other]);
        side_normals(self)
            .into_iter()
            .chain(side_normals(other))
            .all(|axis| {
                let (a0, a1) = project(self, axis);
                let (b0, b1) = project(other, axis);
                a1.min(b1) - a0.max(b0) > tol
            })
    }

    /// The smallest footprint on self's grid covering the spatial intersection of both, `None`
    /// when they share no area (buzzard's `intersection`, which keeps the first footprint's
    /// grid). On the same grid, exactly the pixels in both. On different grids, the bounding box
    /// in self's pixel space of the intersection polygon, widened to whole pixels (coordinates
    /// within the pair's precision of a pixel corner count as on it).
    pub fn intersection(&self, other: &Footprint) -> Option<Footprint> {
        if let Some(w) = other.window_in(self) {
            return w
                .clip_to(self.width(), self.height())
                .map(|w| self.window(w));
        }
        if !self.share_area(other) {
            return None;
        }
        let corners: Vec<(f64, f64)> = other
            .corners()
            .iter()
            .map(|&(x, y)| self.spatial_to_pixel(x, y))
            .collect();
        let clipped = clip_polygon(corners, 0, 0.0, self.width() as f64);
        let clipped = clip_polygon(clipped, 1, 0.0, self.height() as f64);
        if clipped.is_empty() {
            return None;
        }
        let tol = tolerance(&[self, other]);
        let (px, py) = self.pixel_size();
        let (tc, tr) = (tol / px, tol / py);
        let (mut c0, mut c1, mut r0, mut r1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for (c, r) in clipped {
            c0 = c0.min(c);
            c1 = c1.max(c);
            r0 = r0.min(r);
            r1 = r1.max(r);
        }
        // Whole pixels, at least one, inside self.
        let span = |lo: f64, hi: f64, tol: f64, len: usize| {
            let len = len as i64;
            let start = (snap_floor(lo, tol) as i64).clamp(0, len - 1);
            let end = (snap_ceil(hi, tol) as i64).clamp(start + 1, len);
            (start, (end - start) as usize)
        };
        let (col, width) = span(c0, c1, tc, self.width());
        let (row, height) = span(r0, r1, tr, self.height());
        Some(self.window(PixelWindow::new(col, row, width, height)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::fixtures::{fp, unit};

    /// A `size`-wide square rotated 45° centered on (`cx`, `cy`), one pixel.
    fn diamond(cx: f64, cy: f64, size: f64) -> Footprint {
        let h = size / 2f64.sqrt();
        fp([cx, h, -h, cy + size / 2f64.sqrt(), -h, -h], 1, 1)
    }

    #[test]
    fn share_area_same_grid() {
        let a = unit(0.0, 0.0, 3, 3);
        assert!(a.share_area(&a));
        assert!(a.share_area(&unit(2.0, -2.0, 5, 5)));
        assert!(!a.share_area(&unit(3.0, 0.0, 2, 2))); // touching side
        assert!(!a.share_area(&unit(3.0, -3.0, 2, 2))); // touching corner
        assert!(!a.share_area(&unit(10.0, 0.0, 2, 2)));
    }

    #[test]
    fn share_area_different_grids() {
        let a = unit(0.0, 0.0, 4, 4); // x 0..4, y -4..0
        assert!(a.share_area(&fp([0.5, 2.0, 0.0, -0.5, 0.0, -2.0], 1, 1)));
        assert!(!a.share_area(&fp([4.0, 0.5, 0.0, 0.0, 0.0, -0.5], 3, 3)));
        assert!(a.share_area(&fp([3.9, 0.5, 0.0, 0.0, 0.0, -0.5], 3, 3)));
        // A diamond whose bounding box overlaps a's corner but which does not reach it.
        let d = diamond(5.0, 1.0, 2.0);
        assert!(d.extent().minx < 4.0 && d.extent().miny < 0.0);
        assert!(!a.share_area(&d) && !d.share_area(&a));
        assert!(a.share_area(&diamond(4.0, 0.0, 2.0)));
    }

    #[test]
    fn intersection_same_grid_is_exact_and_commutes() {
        let a = unit(0.0, 0.0, 5, 5);
        let b = unit(3.0, -1.0, 4, 2);
        let ab = a.intersection(&b).unwrap();
        assert_eq!((ab.tl(), ab.rsize()), ((3.0, -1.0), (2, 2)));
        assert!(ab.almost_equals(&b.intersection(&a).unwrap()));
        assert_eq!(a.intersection(&a), Some(a));
        assert_eq!(a.intersection(&unit(5.0, 0.0, 2, 2)), None);
        // buzzard's test_rectangles: DF = AF ∩ DI (3×3 grid of 0.1 pixels).
        let g = |x: f64, y: f64, w, h| fp([x, 0.1, 0.0, y, 0.0, -0.1], w, h);
        let af = g(0.0, 0.3, 3, 2);
        let di = g(0.0, 0.2, 3, 2);
        let df = af.intersection(&di).unwrap();
        assert!(df.almost_equals(&g(0.0, 0.2, 3, 1)));
    }

    #[test]
    fn intersection_different_grid_covers_and_is_minimal() {
        let a = unit(0.0, 0.0, 10, 10);
        // Pixels of 0.75 from (2.2, -1.1): spans x 2.2..4.45, y -3.35..-1.1.
        let b = fp([2.2, 0.75, 0.0, -1.1, 0.0, -0.75], 3, 3);
        let i = a.intersection(&b).unwrap();
        assert!(i.same_grid(&a));
        assert_eq!(i.window_in(&a), Some(PixelWindow::new(2, 1, 3, 3)));
        // Aligned edges stay aligned (no extra pixel from float noise).
        let c = fp([0.1 + 0.2, 0.1, 0.0, -1.0, 0.0, -0.1], 27, 10); // x 0.3..3.0
        let i = unit(0.0, 0.0, 10, 10).intersection(&c).unwrap();
        assert_eq!(i.window_in(&a), Some(PixelWindow::new(0, 1, 3, 1)));
        // Clipped to self.
        let d = fp([-5.5, 3.0, 0.0, 3.0, 0.0, -3.0], 3, 3);
        assert_eq!(
            a.intersection(&d).unwrap().window_in(&a),
            Some(PixelWindow::new(0, 0, 4, 6))
        );
        // Touching only: none.
        assert_eq!(
            a.intersection(&fp([10.0, 0.5, 0.0, 0.0, 0.0, -0.5], 2, 2)),
            None
        );
    }

    #[test]
    fn intersection_with_rotated_uses_polygon_not_bounding_boxes() {
        let a = unit(0.0, 0.0, 10, 10);
        // Diamond centered on the top-left corner of a: only its lower-right quarter is inside.
        let d = diamond(0.0, 0.0, 4.0);
        let i = a.intersection(&d).unwrap();
        // The quarter is a triangle (0,0), (2.83,0), (0,-2.83): 3×3 pixels.
        assert_eq!(i.window_in(&a), Some(PixelWindow::new(0, 0, 3, 3)));
        // On the diamond's grid it is its only pixel.
        assert_eq!(d.intersection(&a), Some(d));
    }

    #[test]
    fn clip_polygon_passes() {
        let square = vec![(-1.0, -1.0), (3.0, -1.0), (3.0, 3.0), (-1.0, 3.0)];
        let c = clip_polygon(square, 0, 0.0, 2.0);
        assert!(c.iter().all(|p| (0.0..=2.0).contains(&p.0)));
        assert_eq!(c.len(), 4);
        let gone = clip_polygon(vec![(5.0, 0.0), (6.0, 0.0), (6.0, 1.0)], 0, 0.0, 2.0);
        assert!(gone.is_empty());
    }
}
