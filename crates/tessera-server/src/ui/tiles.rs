//! A raster job's tile map on a task's page: each tile's state (queued, computing, cached,
//! delivered, failed…) as a cell of a grid, grouped into at most [`MAX_SIDE`]² cells so that a
//! raster of a million tiles costs the page what one of four thousand does.

use std::fmt::Write as _;

use serde_json::{Value, json};
use tessera_core::scheduler::RasterProgress;

use super::html::{count, esc};

/// Cells per side of a drawn map, at most.
const MAX_SIDE: usize = 64;
/// Pixels per cell side.
const CELL: usize = 8;

/// How far a tile has gone: a group of tiles shows the least advanced of its tiles, except
/// that a failure shows whatever else is in the group.
fn rank(letter: u8) -> u8 {
    match letter {
        b'f' => 0,
        b'c' | b'r' | b'w' => 1,
        b'q' => 2,
        b'.' => 3,
        _ => 4, // cached, delivered
    }
}

fn name(letter: u8) -> &'static str {
    RasterProgress::STATES
        .iter()
        .find(|(c, _)| *c as u8 == letter)
        .map_or("waiting", |(_, n)| n)
}

/// The map grouped: (columns, rows, one letter per cell).
pub(super) fn grouped(r: &RasterProgress) -> (usize, usize, Vec<u8>) {
    let tiles = r.tiles.as_bytes();
    let step = r.cols.max(r.rows).div_ceil(MAX_SIDE).max(1);
    let (gcols, grows) = (r.cols.div_ceil(step), r.rows.div_ceil(step));
    let mut cells = vec![b'C'; gcols * grows];
    let mut best = vec![u8::MAX; gcols * grows];
    for row in 0..r.rows {
        for col in 0..r.cols {
            let Some(&t) = tiles.get(row * r.cols + col) else {
                continue;
            };
            let at = (row / step) * gcols + col / step;
            if rank(t) < best[at] {
                best[at] = rank(t);
                cells[at] = t;
            }
        }
    }
    (gcols, grows, cells)
}

/// What a live snapshot carries of a raster job.
pub(super) fn snapshot(r: &RasterProgress) -> Value {
    let (gcols, grows, cells) = grouped(r);
    json!({
        "key": r.key, "done": r.done, "total": r.total, "cols": gcols, "rows": grows,
        "cells": String::from_utf8_lossy(&cells),
    })
}

/// The map as an SVG grid, with counts per state as text beside it.
pub(super) fn map(r: &RasterProgress) -> String {
    let (gcols, grows, cells) = grouped(r);
    let mut s = format!(
        "<div class=\"raster\" data-raster=\"{}\"><h3><code>{}</code></h3>\
         <p class=\"raster-text\">{} of {} tiles done{}</p>\
         <svg class=\"tile-map\" role=\"img\" aria-label=\"tile map of {}\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\">",
        esc(&r.key),
        esc(&r.key),
        count(r.done as u64),
        count(r.total as u64),
        if gcols < r.cols {
            format!(" (a cell per {0}×{0} tiles)", r.cols.div_ceil(gcols))
        } else {
            String::new()
        },
        esc(&r.key),
        gcols * CELL,
        grows * CELL,
        gcols * CELL,
        grows * CELL,
    );
    for (i, c) in cells.iter().enumerate() {
        let _ = write!(
            s,
            "<rect class=\"t-{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            name(*c),
            (i % gcols) * CELL,
            (i / gcols) * CELL,
            CELL - 1,
            CELL - 1
        );
    }
    s.push_str("</svg><ul class=\"legend\">");
    for (c, n) in RasterProgress::STATES {
        let k = r.tiles.bytes().filter(|b| *b == c as u8).count();
        if k > 0 {
            let _ = write!(
                s,
                "<li><span class=\"swatch t-{n}\"></span> {n} {}</li>",
                count(k as u64)
            );
        }
    }
    s.push_str("</ul></div>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(cols: usize, rows: usize, tiles: &str) -> RasterProgress {
        RasterProgress {
            key: "dem".into(),
            cols,
            rows,
            done: tiles.bytes().filter(|b| *b == b'C').count(),
            total: cols * rows,
            tiles: tiles.into(),
        }
    }

    #[test]
    fn small_maps_are_drawn_tile_by_tile() {
        let r = raster(3, 2, "Cqc.fC");
        let (c, w, cells) = grouped(&r);
        assert_eq!((c, w), (3, 2));
        assert_eq!(cells, b"Cqc.fC");
        let svg = map(&r);
        assert_eq!(svg.matches("<rect").count(), 6);
        assert!(svg.contains("class=\"t-computing\""));
        assert!(svg.contains("failed 1"));
    }

    #[test]
    fn big_maps_are_grouped_showing_the_least_advanced_tile() {
        let (cols, rows) = (1_000, 1_000);
        let mut tiles = vec![b'C'; cols * rows];
        tiles[0] = b'c';
        tiles[999_999] = b'f';
        let r = raster(cols, rows, std::str::from_utf8(&tiles).unwrap());
        let (c, w, cells) = grouped(&r);
        assert!(c <= MAX_SIDE && w <= MAX_SIDE, "{c}×{w}");
        assert_eq!(cells[0], b'c');
        assert_eq!(*cells.last().unwrap(), b'f');
        assert_eq!(cells.iter().filter(|c| **c == b'C').count(), c * w - 2);
        assert!(map(&r).contains("a cell per 16×16 tiles"));
    }
}
