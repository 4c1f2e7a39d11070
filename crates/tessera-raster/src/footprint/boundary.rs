//! Tiling options: what happens where tiles do not fit exactly in the raster (the boundary
//! effect) and at which corner (its locus), with buzzard's names.

use std::fmt;

/// What to do where tiles do not fit exactly in the raster (buzzard's `boundary_effect`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BoundaryEffect {
    /// Keep tile size and overlap: the last tiles stick out of the raster.
    #[default]
    Extend,
    /// Keep tile size and overlap, drop the tiles that would stick out: pixels at the locus may
    /// be in no tile.
    Exclude,
    /// Keep tile size, move the last tiles back inside the raster: they overlap their neighbours
    /// more (fails when a tile is larger than the raster).
    Overlap,
    /// Keep overlap, shrink the last tiles to the raster.
    Shrink,
    /// Fail unless the tiles fit exactly.
    Exception,
}

impl BoundaryEffect {
    pub const ALL: [BoundaryEffect; 5] = [
        BoundaryEffect::Extend,
        BoundaryEffect::Exclude,
        BoundaryEffect::Overlap,
        BoundaryEffect::Shrink,
        BoundaryEffect::Exception,
    ];

    /// buzzard's name: `"extend"`, `"exclude"`, `"overlap"`, `"shrink"`, `"exception"`.
    pub fn name(self) -> &'static str {
        match self {
            BoundaryEffect::Extend => "extend",
            BoundaryEffect::Exclude => "exclude",
            BoundaryEffect::Overlap => "overlap",
            BoundaryEffect::Shrink => "shrink",
            BoundaryEffect::Exception => "exception",
        }
    }

    /// Parses a name as written by [`BoundaryEffect::name`].
    pub fn parse(name: &str) -> Option<BoundaryEffect> {
        BoundaryEffect::ALL.into_iter().find(|e| e.name() == name)
    }
}

impl fmt::Display for BoundaryEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The corner where the boundary effect happens; tiles are aligned on the opposite corner
/// (buzzard's `boundary_effect_locus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BoundaryEffectLocus {
    /// `"br"`: tiles start at the top-left corner.
    #[default]
    BottomRight,
    /// `"tr"`: tiles start at the bottom-left corner.
    TopRight,
    /// `"tl"`: tiles start at the bottom-right corner.
    TopLeft,
    /// `"bl"`: tiles start at the top-right corner.
    BottomLeft,
}

impl BoundaryEffectLocus {
    pub const ALL: [BoundaryEffectLocus; 4] = [
        BoundaryEffectLocus::BottomRight,
        BoundaryEffectLocus::TopRight,
        BoundaryEffectLocus::TopLeft,
        BoundaryEffectLocus::BottomLeft,
    ];

    /// buzzard's name: `"br"`, `"tr"`, `"tl"`, `"bl"`.
    pub fn name(self) -> &'static str {
        match self {
            BoundaryEffectLocus::BottomRight => "br",
            BoundaryEffectLocus::TopRight => "tr",
            BoundaryEffectLocus::TopLeft => "tl",
            BoundaryEffectLocus::BottomLeft => "bl",
        }
    }

    /// Parses a name as written by [`BoundaryEffectLocus::name`].
    pub fn parse(name: &str) -> Option<BoundaryEffectLocus> {
        BoundaryEffectLocus::ALL
            .into_iter()
            .find(|l| l.name() == name)
    }

    /// Whether the boundary effect is on the left (columns laid from the right edge).
    pub fn is_left(self) -> bool {
        matches!(
            self,
            BoundaryEffectLocus::TopLeft | BoundaryEffectLocus::BottomLeft
        )
    }

    /// Whether the boundary effect is at the top (rows laid from the bottom edge).
    pub fn is_top(self) -> bool {
        matches!(
            self,
            BoundaryEffectLocus::TopLeft | BoundaryEffectLocus::TopRight
        )
    }
}

impl fmt::Display for BoundaryEffectLocus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BoundaryEffect::*;
    use BoundaryEffectLocus::*;

    #[test]
    fn names_round_trip() {
        for e in BoundaryEffect::ALL {
            assert_eq!(BoundaryEffect::parse(e.name()), Some(e));
        }
        for l in BoundaryEffectLocus::ALL {
            assert_eq!(BoundaryEffectLocus::parse(&l.to_string()), Some(l));
        }
        assert_eq!(BoundaryEffect::parse("nope"), None);
        assert_eq!(BoundaryEffect::default(), Extend);
        assert_eq!(BoundaryEffectLocus::default(), BottomRight);
    }
}
