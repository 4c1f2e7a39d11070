//! buzzard's tiling test cases (`test_footprint_tile.py`, `test_footprint_tile_count.py`) ported
//! as explicit examples, to pin `Footprint::tile` and `Footprint::tile_count` to buzzard's
//! semantics.
//!
//! The fixture is buzzard's 5×5 grid of 1×1 pixels named by letters; a two-letter name is the
//! footprint from the first letter's pixel to the second's. The tiled footprint is `GS`, the
//! 3×3 center.
//!
//! ```text
//! A B C D E
//! F G H I J
//! K L M N O
//! P Q R S T
//! U V W X Y
//! ```

use tessera_raster::footprint::FootprintError;
use tessera_raster::{BoundaryEffect, BoundaryEffectLocus, Footprint, GeoTransform, Tiles};

use BoundaryEffect::{Exception, Exclude, Extend, Overlap, Shrink};
use BoundaryEffectLocus::{BottomLeft, BottomRight, TopLeft, TopRight};

/// Column and row of a letter in the 5×5 grid.
fn cell(letter: char) -> (usize, usize) {
    let i = (letter as u8 - b'A') as usize;
    (i % 5, i / 5)
}

/// The footprint named by one or two letters (top-left at (0, 5), pixels of 1).
fn fp(name: &str) -> Footprint {
    let mut letters = name.chars();
    let first = cell(letters.next().unwrap());
    let last = letters.next().map_or(first, cell);
    let gt = GeoTransform::north_up(first.0 as f64, 5.0 - first.1 as f64, 1.0);
    Footprint::new(gt, last.0 - first.0 + 1, last.1 - first.1 + 1).unwrap()
}

fn assert_tiles(tiles: &Tiles, truth: &[&[&str]], what: &str) {
    let got: Vec<Vec<String>> = (0..tiles.rows())
        .map(|r| {
            (0..tiles.cols())
                .map(|c| tiles.get(r, c).unwrap().to_string())
                .collect()
        })
        .collect();
    let want: Vec<Vec<String>> = truth
        .iter()
        .map(|row| row.iter().map(|name| fp(name).to_string()).collect())
        .collect();
    assert_eq!(got, want, "{what}: {truth:?}");
}

fn tile(
    w: usize,
    h: usize,
    ow: usize,
    oh: usize,
    e: BoundaryEffect,
    l: BoundaryEffectLocus,
) -> Tiles {
    fp("GS").tile((w, h), (ow, oh), e, l).unwrap()
}

const ANY: usize = usize::MAX;

/// Tile `(width, height, overlap x, overlap y)`; `ANY` in a pattern matches anything.
type Combo = (usize, usize, usize, usize);
/// Expected tiles, row by row, by letter names.
type Truth<'a> = &'a [&'a [&'a str]];
/// Patterns and their expected tiles; a combination matching no pattern must fail.
type Table<'a> = [(Combo, Truth<'a>)];

/// `(w, h, ow, oh)` matches a pattern where `ANY` matches anything.
fn matches(actual: (usize, usize, usize, usize), pattern: (usize, usize, usize, usize)) -> bool {
    let p = [pattern.0, pattern.1, pattern.2, pattern.3];
    let a = [actual.0, actual.1, actual.2, actual.3];
    p.iter().zip(a).all(|(&p, a)| p == ANY || p == a)
}

fn truth_of<'a>(combo: (usize, usize, usize, usize), table: &Table<'a>) -> Option<Truth<'a>> {
    table
        .iter()
        .find(|(p, _)| matches(combo, *p))
        .map(|(_, t)| *t)
}

/// All `(w, h, ow, oh)` in `0..5`⁴ that `tile` accepts.
fn valid_combos() -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..5usize)
        .flat_map(|w| {
            (0..5usize).flat_map(move |h| {
                (0..5usize).flat_map(move |ow| (0..5usize).map(move |oh| (w, h, ow, oh)))
            })
        })
        .filter(|&(w, h, ow, oh)| w > 0 && h > 0 && ow < w && oh < h)
}

fn fits(combo: (usize, usize, usize, usize)) -> bool {
    let (w, h, ow, oh) = combo;
    (w == 3 || (w == 2 && ow == 1) || w == 1) && (h == 3 || (h == 2 && oh == 1) || h == 1)
}

#[test]
fn invalid_sizes_and_overlaps_fail() {
    let mut failures = 0;
    for w in 0..5 {
        for h in 0..5 {
            for ow in 0..5 {
                for oh in 0..5 {
                    let result = fp("GS").tile((w, h), (ow, oh), Extend, BottomRight);
                    let invalid = w == 0 || h == 0 || ow >= w || oh >= h;
                    assert_eq!(result.is_err(), invalid, "{:?}", (w, h, ow, oh));
                    failures += usize::from(invalid);
                }
            }
        }
    }
    assert_eq!(failures, 525);
}

#[test]
fn fitting_tiles_are_the_same_for_every_effect_and_locus() {
    #[rustfmt::skip]
    let table: &Table = &[
        ((1, 1, 0, 0), &[&["G", "H", "I"], &["L", "M", "N"], &["Q", "R", "S"]]),
        ((1, 2, 0, 1), &[&["GL", "HM", "IN"], &["LQ", "MR", "NS"]]),
        ((1, 3, 0, ANY), &[&["GQ", "HR", "IS"]]),
        ((2, 1, 1, 0), &[&["GH", "HI"], &["LM", "MN"], &["QR", "RS"]]),
        ((2, 2, 1, 1), &[&["GM", "HN"], &["LR", "MS"]]),
        ((2, 3, 1, ANY), &[&["GR", "HS"]]),
        ((3, 1, ANY, 0), &[&["GI"], &["LN"], &["QS"]]),
        ((3, 2, ANY, 1), &[&["GN"], &["LS"]]),
        ((3, 3, ANY, ANY), &[&["GS"]]),
    ];
    let combos: Vec<_> = valid_combos().filter(|&c| fits(c)).collect();
    assert_eq!(combos.len(), 25);
    for (w, h, ow, oh) in combos {
        let truth = truth_of((w, h, ow, oh), table).unwrap();
        for e in BoundaryEffect::ALL {
            for l in BoundaryEffectLocus::ALL {
                let what = format!("{:?} {e} {l}", (w, h, ow, oh));
                assert_tiles(&tile(w, h, ow, oh, e, l), truth, &what);
            }
        }
    }
}

#[test]
fn non_fitting_tiles_fail_with_exception() {
    let combos: Vec<_> = valid_combos().filter(|&c| !fits(c)).collect();
    assert_eq!(combos.len(), 75);
    for (w, h, ow, oh) in combos {
        for l in BoundaryEffectLocus::ALL {
            let err = fp("GS").tile((w, h), (ow, oh), Exception, l).unwrap_err();
            assert!(
                matches!(
                    err,
                    FootprintError::TileGap { .. } | FootprintError::TileLargerThanRaster { .. }
                ),
                "{err}"
            );
        }
    }
}

/// Checks every non-fitting combination against a truth table, locus bottom-right.
fn check_non_fitting(effect: BoundaryEffect, table: &Table) {
    for combo in valid_combos().filter(|&c| !fits(c)) {
        let (w, h, ow, oh) = combo;
        let result = fp("GS").tile((w, h), (ow, oh), effect, BottomRight);
        match truth_of(combo, table) {
            Some(truth) => assert_tiles(&result.unwrap(), truth, &format!("{combo:?} {effect}")),
            None => assert!(result.is_err(), "{combo:?} {effect}: {result:?}"),
        }
    }
}

#[test]
fn non_fitting_extend() {
    #[rustfmt::skip]
    check_non_fitting(Extend, &[
        ((1, 2, 0, 0), &[&["GL", "HM", "IN"], &["QV", "RW", "SX"]]),
        ((2, 1, 0, 0), &[&["GH", "IJ"], &["LM", "NO"], &["QR", "ST"]]),
        ((2, 2, 0, 0), &[&["GM", "IO"], &["QW", "SY"]]),
        ((2, 2, 0, 1), &[&["GM", "IO"], &["LR", "NT"]]),
        ((2, 2, 1, 0), &[&["GM", "HN"], &["QW", "RX"]]),
        ((2, 3, 0, ANY), &[&["GR", "IT"]]),
        ((3, 2, ANY, 0), &[&["GN"], &["QX"]]),
        ((4, 1, ANY, 0), &[&["GJ"], &["LO"], &["QT"]]),
        ((4, 2, ANY, 0), &[&["GO"], &["QY"]]),
        ((4, 2, ANY, 1), &[&["GO"], &["LT"]]),
        ((4, 3, ANY, ANY), &[&["GT"]]),
        ((4, 4, ANY, ANY), &[&["GY"]]),
        ((1, 4, 0, ANY), &[&["GV", "HW", "IX"]]),
        ((2, 4, 0, ANY), &[&["GW", "IY"]]),
        ((2, 4, 1, ANY), &[&["GW", "HX"]]),
        ((3, 4, ANY, ANY), &[&["GX"]]),
    ]);
}

#[test]
fn non_fitting_overlap() {
    // Tiles of 4 (larger than GS) fail: the table has no entry for them.
    #[rustfmt::skip]
    check_non_fitting(Overlap, &[
        ((1, 2, 0, 0), &[&["GL", "HM", "IN"], &["LQ", "MR", "NS"]]),
        ((2, 1, 0, 0), &[&["GH", "HI"], &["LM", "MN"], &["QR", "RS"]]),
        ((2, 2, ANY, ANY), &[&["GM", "HN"], &["LR", "MS"]]),
        ((2, 3, 0, ANY), &[&["GR", "HS"]]),
        ((3, 2, ANY, 0), &[&["GN"], &["LS"]]),
    ]);
    let err = fp("GS")
        .tile((4, 1), (0, 0), Overlap, BottomRight)
        .unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");
}

#[test]
fn non_fitting_exclude() {
    #[rustfmt::skip]
    check_non_fitting(Exclude, &[
        ((1, 2, 0, 0), &[&["GL", "HM", "IN"]]),
        ((2, 1, 0, 0), &[&["GH"], &["LM"], &["QR"]]),
        ((2, 2, 0, 0), &[&["GM"]]),
        ((2, 2, 0, 1), &[&["GM"], &["LR"]]),
        ((2, 2, 1, 0), &[&["GM", "HN"]]),
        ((2, 3, 0, ANY), &[&["GR"]]),
        ((3, 2, ANY, 0), &[&["GN"]]),
        ((4, ANY, ANY, ANY), &[]),
        ((ANY, 4, ANY, ANY), &[]),
    ]);
}

#[test]
fn non_fitting_shrink() {
    #[rustfmt::skip]
    check_non_fitting(Shrink, &[
        ((1, 2, 0, 0), &[&["GL", "HM", "IN"], &["Q", "R", "S"]]),
        ((2, 1, 0, 0), &[&["GH", "I"], &["LM", "N"], &["QR", "S"]]),
        ((2, 2, 0, 0), &[&["GM", "IN"], &["QR", "S"]]),
        ((2, 2, 0, 1), &[&["GM", "IN"], &["LR", "NS"]]),
        ((2, 2, 1, 0), &[&["GM", "HN"], &["QR", "RS"]]),
        ((2, 3, 0, ANY), &[&["GR", "IS"]]),
        ((2, 4, 0, ANY), &[&["GR", "IS"]]),
        ((3, 2, ANY, 0), &[&["GN"], &["QS"]]),
        ((4, 2, ANY, 0), &[&["GN"], &["QS"]]),
        ((3, 4, ANY, ANY), &[&["GS"]]),
        ((4, 3, ANY, ANY), &[&["GS"]]),
        ((4, 4, ANY, ANY), &[&["GS"]]),
        ((1, 4, 0, ANY), &[&["GQ", "HR", "IS"]]),
        ((4, 1, ANY, 0), &[&["GI"], &["LN"], &["QS"]]),
        ((4, 2, ANY, 1), &[&["GN"], &["LS"]]),
        ((2, 4, 1, ANY), &[&["GR", "HS"]]),
    ]);
}

#[test]
fn other_loci() {
    // buzzard's test_extra: 2×2 tiles overlapping by 1 row.
    let cases: &[(BoundaryEffectLocus, BoundaryEffect, &[&[&str]])] = &[
        (TopRight, Extend, &[&["GM", "IO"], &["LR", "NT"]]),
        (TopRight, Overlap, &[&["GM", "HN"], &["LR", "MS"]]),
        (TopRight, Exclude, &[&["GM"], &["LR"]]),
        (TopRight, Shrink, &[&["GM", "IN"], &["LR", "NS"]]),
        (TopLeft, Extend, &[&["FL", "HN"], &["KQ", "MS"]]),
        (TopLeft, Overlap, &[&["GM", "HN"], &["LR", "MS"]]),
        (TopLeft, Exclude, &[&["HN"], &["MS"]]),
        (TopLeft, Shrink, &[&["GL", "HN"], &["LQ", "MS"]]),
        (BottomLeft, Extend, &[&["FL", "HN"], &["KQ", "MS"]]),
        (BottomLeft, Overlap, &[&["GM", "HN"], &["LR", "MS"]]),
        (BottomLeft, Exclude, &[&["HN"], &["MS"]]),
        (BottomLeft, Shrink, &[&["GL", "HN"], &["LQ", "MS"]]),
    ];
    for &(l, e, truth) in cases {
        assert_tiles(&tile(2, 2, 0, 1, e, l), truth, &format!("{e} {l}"));
    }
}

#[test]
fn tile_count_accepts_and_refuses_like_buzzard() {
    // test_footprint_tile_count.py's FAIL_COMBOS on GS (3×3), every locus.
    for tx in 0..4usize {
        for ty in 0..4usize {
            for ox in 0..4usize {
                for oy in 0..4usize {
                    for e in BoundaryEffect::ALL {
                        let fail = tx == 0
                            || ty == 0
                            || ox >= 3
                            || oy >= 3
                            || (ox == 2 && tx != 1)
                            || (oy == 2 && ty != 1)
                            || (ox == 1 && tx >= 3)
                            || (oy == 1 && ty >= 3)
                            || (e == Exception && ((tx == 2 && ox != 1) || (ty == 2 && oy != 1)));
                        for l in BoundaryEffectLocus::ALL {
                            let result = fp("GS").tile_count(tx, ty, (ox, oy), e, l);
                            let what = format!("{:?} {e} {l}: {result:?}", (tx, ty, ox, oy));
                            assert_eq!(result.is_err(), fail, "{what}");
                            if let Ok(tiles) = result {
                                assert_eq!((tiles.rows(), tiles.cols()), (ty, tx), "{what}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn tile_count_examples() {
    // Two columns of a 3 px wide raster: tiles of 2 (ceil) except Exclude (1, floor).
    let gs = fp("GS");
    let t = gs.tile_count(2, 1, (0, 0), Extend, BottomRight).unwrap();
    assert_tiles(&t, &[&["GR", "IT"]], "extend");
    let t = gs.tile_count(2, 1, (0, 0), Shrink, BottomRight).unwrap();
    assert_tiles(&t, &[&["GR", "IS"]], "shrink");
    let t = gs.tile_count(2, 1, (0, 0), Overlap, TopLeft).unwrap();
    assert_tiles(&t, &[&["GR", "HS"]], "overlap");
    let t = gs.tile_count(2, 1, (0, 0), Exclude, BottomLeft).unwrap();
    assert_tiles(&t, &[&["HR", "IS"]], "exclude");
    let t = gs.tile_count(2, 3, (1, 0), Exception, BottomRight).unwrap();
    assert_tiles(
        &t,
        &[&["GH", "HI"], &["LM", "MN"], &["QR", "RS"]],
        "exception",
    );
}
