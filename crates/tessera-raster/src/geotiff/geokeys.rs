//! GeoTIFF georeferencing: the geotransform from ModelPixelScale + ModelTiepoint or from
//! ModelTransformation (PixelIsPoint shifted by half a pixel, as GDAL does), the GeoKey
//! directory kept as stored, and the keys written for an EPSG code or a WKT.

use std::path::Path;

use super::ifd::{self, Ifd};
use crate::GeoTransform;
use crate::source::{Projection, SourceError};

const GT_MODEL_TYPE: u16 = 1024;
const GT_RASTER_TYPE: u16 = 1025;
const GT_CITATION: u16 = 1026;
const GEOGRAPHIC_TYPE: u16 = 2048;
const PROJECTED_CS_TYPE: u16 = 3072;
const USER_DEFINED: u16 = 32767;
const PIXEL_IS_AREA: u16 = 1;
const PIXEL_IS_POINT: u16 = 2;

/// The GeoTIFF keys of a file, as stored: the GeoKeyDirectory (34735) shorts, GeoDoubleParams
/// (34736) and GeoAsciiParams (34737).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GeoKeys {
    pub directory: Vec<u16>,
    pub doubles: Vec<f64>,
    pub ascii: String,
}

impl GeoKeys {
    /// The keys of a file, when it has a well-formed directory.
    pub(crate) fn from_ifd(ifd: &Ifd) -> Option<GeoKeys> {
        let directory: Vec<u16> = ifd
            .uints(ifd::GEO_KEY_DIRECTORY)?
            .into_iter()
            .map(|v| v as u16)
            .collect();
        let keys = GeoKeys {
            directory,
            doubles: ifd.doubles(ifd::GEO_DOUBLE_PARAMS).unwrap_or_default(),
            ascii: ifd.ascii(ifd::GEO_ASCII_PARAMS).unwrap_or_default(),
        };
        keys.entries().is_some().then_some(keys)
    }

    /// The key entries (id, location, count, value or offset).
    fn entries(&self) -> Option<&[u16]> {
        let d = &self.directory;
        let n = *d.get(3)? as usize;
        d.get(4..4 + 4 * n)
    }

    /// A key stored as one SHORT in the directory.
    pub fn short(&self, key: u16) -> Option<u16> {
        self.entries()?
            .chunks_exact(4)
            .find(|e| e[0] == key && e[1] == 0)
            .map(|e| e[3])
    }

    /// The EPSG code of the projected or geographic CRS, when the keys name one.
    pub fn epsg(&self) -> Option<u32> {
        let code = |key| self.short(key).filter(|&c| c > 0 && c != USER_DEFINED);
        code(PROJECTED_CS_TYPE)
            .or_else(|| code(GEOGRAPHIC_TYPE))
            .map(u32::from)
    }

    /// Sets a SHORT key, keeping the keys sorted.
    fn set_short(&mut self, key: u16, value: u16) {
        let Some(entries) = self.entries() else {
            return;
        };
        let mut keys: Vec<[u16; 4]> = entries
            .chunks_exact(4)
            .map(|e| [e[0], e[1], e[2], e[3]])
            .filter(|e| e[0] != key)
            .collect();
        keys.push([key, 0, 1, value]);
        keys.sort_by_key(|e| e[0]);
        let header = [self.directory[0], self.directory[1], self.directory[2]];
        self.directory = header.to_vec();
        self.directory.push(keys.len() as u16);
        self.directory.extend(keys.into_iter().flatten());
    }

    fn with_keys(keys: &[[u16; 4]], ascii: String) -> GeoKeys {
        let mut directory = vec![1, 1, 0, keys.len() as u16];
        directory.extend(keys.iter().flatten());
        GeoKeys {
            directory,
            doubles: Vec::new(),
            ascii,
        }
    }

    /// The keys GDAL writes for an EPSG code (raster type PixelIsArea).
    pub fn for_epsg(code: u32, geographic: bool) -> GeoKeys {
        let code = code.min(u16::MAX as u32) as u16;
        let (model, key) = if geographic {
            (2, GEOGRAPHIC_TYPE)
        } else {
            (1, PROJECTED_CS_TYPE)
        };
        GeoKeys::with_keys(
            &[
                [GT_MODEL_TYPE, 0, 1, model],
                [GT_RASTER_TYPE, 0, 1, PIXEL_IS_AREA],
                [key, 0, 1, code],
            ],
            String::new(),
        )
    }

    /// The keys to write for `projection`, raster type PixelIsArea (the writer always writes
    /// the geotransform of pixel corners).
    pub(crate) fn for_writing(projection: &Projection) -> GeoKeys {
        match projection {
            Projection::GeoKeys(keys) => {
                let mut keys = keys.clone();
                keys.set_short(GT_RASTER_TYPE, PIXEL_IS_AREA);
                keys
            }
            // EPSG 4000–4999 are geographic CRSs; there is no registry here to tell otherwise.
            Projection::Epsg(code) => GeoKeys::for_epsg(*code, (4000..5000).contains(code)),
            Projection::Wkt(wkt) => match wkt_epsg(wkt) {
                Some((code, geographic)) => GeoKeys::for_epsg(code, geographic),
                None => {
                    // GDAL reads a WKT from an "ESRI PE String" citation.
                    let ascii = format!("ESRI PE String = {}|", wkt.replace('|', " "));
                    let len = (ascii.len() as u64).min(u16::MAX as u64) as u16;
                    GeoKeys::with_keys(
                        &[
                            [GT_MODEL_TYPE, 0, 1, USER_DEFINED],
                            [GT_RASTER_TYPE, 0, 1, PIXEL_IS_AREA],
                            [GT_CITATION, ifd::GEO_ASCII_PARAMS, len, 0],
                        ],
                        ascii,
                    )
                }
            },
        }
    }
}

/// The EPSG code at the top level of a WKT (1 or 2) and whether the CRS is geographic.
pub(crate) fn wkt_epsg(wkt: &str) -> Option<(u32, bool)> {
    let wkt = wkt.trim();
    let open = wkt.find(['[', '('])?;
    let geographic = match wkt[..open].trim().to_ascii_uppercase().as_str() {
        "GEOGCS" | "GEOGCRS" | "GEODCRS" | "GEOGRAPHICCRS" | "GEODETICCRS" => true,
        "PROJCS" | "PROJCRS" | "PROJECTEDCRS" => false,
        _ => return None,
    };
    // Scan the top level for AUTHORITY["EPSG","code"] or ID["EPSG",code]; keep the last.
    let bytes = wkt.as_bytes();
    let (mut depth, mut quoted, mut found) = (0usize, false, None);
    let mut word_start = open;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            _ if quoted => {}
            b'[' | b'(' => {
                depth += 1;
                if depth == 2 {
                    let word = wkt[word_start..i].trim().to_ascii_uppercase();
                    if word == "AUTHORITY" || word == "ID" {
                        found = parse_authority(&wkt[i + 1..]).or(found);
                    }
                }
            }
            b']' | b')' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => word_start = i + 1,
            _ => {}
        }
    }
    found.map(|code| (code, geographic))
}

/// `"EPSG","4326"]` or `"EPSG",4326]` → 4326.
fn parse_authority(rest: &str) -> Option<u32> {
    let end = rest.find([']', ')'])?;
    let mut parts = rest[..end].split(',').map(|p| p.trim().trim_matches('"'));
    if !parts.next()?.eq_ignore_ascii_case("EPSG") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// GDAL's geotransform of a TIFF: from ModelTransformation, else ModelTiepoint + ModelPixelScale,
/// else `[0, 1, 0, 0, 0, 1]`; shifted by half a pixel for PixelIsPoint rasters.
pub(crate) fn geotransform(
    ifd: &Ifd,
    keys: Option<&GeoKeys>,
    path: &Path,
) -> Result<GeoTransform, SourceError> {
    let matrix = ifd.doubles(ifd::MODEL_TRANSFORMATION);
    let tiepoints = ifd.doubles(ifd::MODEL_TIEPOINT);
    let scale = ifd.doubles(ifd::MODEL_PIXEL_SCALE);
    let mut gt = if let Some(m) = matrix.filter(|m| m.len() >= 16) {
        [m[3], m[0], m[1], m[7], m[4], m[5]]
    } else if let Some(tp) = tiepoints.filter(|t| t.len() >= 6) {
        match scale.filter(|s| s.len() >= 2) {
            Some(s) if tp.len() == 6 => [
                tp[3] - tp[0] * s[0],
                s[0],
                0.0,
                tp[4] + tp[1] * s[1],
                0.0,
                -s[1],
            ],
            _ => {
                return Err(SourceError::unsupported(
                    path,
                    ifd::tag_name(ifd::MODEL_TIEPOINT),
                    format!(
                        "{} tie points without ModelPixelScale (ground control points)",
                        tp.len() / 6
                    ),
                ));
            }
        }
    } else {
        [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    };
    if keys.and_then(|k| k.short(GT_RASTER_TYPE)) == Some(PIXEL_IS_POINT) {
        gt[0] -= gt[1] * 0.5 + gt[2] * 0.5;
        gt[3] -= gt[4] * 0.5 + gt[5] * 0.5;
    }
    Ok(GeoTransform::from_gdal(gt))
}

/// The tags that place a footprint: ModelPixelScale + ModelTiepoint for north-up rasters,
/// ModelTransformation otherwise.
pub(crate) fn georeferencing_tags(gt: &GeoTransform) -> Vec<(u16, Vec<f64>)> {
    let g = gt.to_gdal();
    if g[2] == 0.0 && g[4] == 0.0 && g[5] < 0.0 {
        vec![
            (ifd::MODEL_PIXEL_SCALE, vec![g[1], -g[5], 0.0]),
            (ifd::MODEL_TIEPOINT, vec![0.0, 0.0, 0.0, g[0], g[3], 0.0]),
        ]
    } else {
        let m = vec![
            g[1], g[2], 0.0, g[0], g[4], g[5], 0.0, g[3], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ];
        vec![(ifd::MODEL_TRANSFORMATION, m)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsg_of_wkt_1_and_2_at_the_top_level_only() {
        let wkt1 = r#"PROJCS["WGS 84 / UTM zone 31N",GEOGCS["WGS 84",AUTHORITY["EPSG","4326"]],UNIT["metre",1],AUTHORITY["EPSG","32631"]]"#;
        assert_eq!(wkt_epsg(wkt1), Some((32631, false)));
        let wkt2 = r#"GEOGCRS["WGS 84",DATUM["x",ID["EPSG",6326]],ID["EPSG",4326]]"#;
        assert_eq!(wkt_epsg(wkt2), Some((4326, true)));
        assert_eq!(
            wkt_epsg(r#"PROJCS["a",GEOGCS["b",AUTHORITY["EPSG","4326"]]]"#),
            None
        );
        assert_eq!(wkt_epsg(r#"LOCAL_CS["x"]"#), None);
    }

    #[test]
    fn raster_type_is_set_to_area_and_keys_stay_sorted() {
        let mut keys = GeoKeys::for_epsg(32631, false);
        keys.set_short(GT_RASTER_TYPE, PIXEL_IS_POINT);
        keys.set_short(GT_CITATION + 1, 7);
        let ids: Vec<u16> = keys
            .entries()
            .unwrap()
            .chunks_exact(4)
            .map(|e| e[0])
            .collect();
        assert_eq!(ids, [1024, 1025, 1027, 3072]);
        let written = GeoKeys::for_writing(&Projection::GeoKeys(keys));
        assert_eq!(written.short(GT_RASTER_TYPE), Some(PIXEL_IS_AREA));
        assert_eq!(written.epsg(), Some(32631));
    }
}
