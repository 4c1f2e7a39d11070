//! A raster held in memory (buzzard's `wrap_numpy_raster`): read exactly like a file, so band
//! selection, dtype, nodata and resampling behave as for GeoTIFF sources.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::RasterError;
use crate::scheduler::jobs::ArraySource;
use crate::source::{Projection, RasterSource, ReadRequest, SourceError};
use crate::{Array, DType, Footprint};

/// Pixels in memory laid on a footprint.
pub struct MemorySource(ArraySource);

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemorySource({})", self.0.name.display())
    }
}

impl MemorySource {
    /// `array` must be `footprint`'s height × width (× any number of bands).
    pub fn new(
        name: &str,
        footprint: Footprint,
        array: Array,
        nodata: Option<f64>,
    ) -> Result<MemorySource, RasterError> {
        let shape = array.shape();
        if (shape.width, shape.height) != footprint.rsize() {
            return Err(RasterError::Invalid(format!(
                "raster `{name}`: an array of {} rows × {} columns does not fit a footprint of \
                 {} rows × {} columns",
                shape.height,
                shape.width,
                footprint.height(),
                footprint.width()
            )));
        }
        if shape.bands == 0 {
            return Err(RasterError::Invalid(format!(
                "raster `{name}`: an array with no channel"
            )));
        }
        Ok(MemorySource(ArraySource {
            name: PathBuf::from(format!("raster `{name}`")),
            footprint,
            dtype: array.dtype(),
            bands: shape.bands,
            nodata,
            held: Some((footprint.full_window(), Arc::new(array))),
        }))
    }
}

impl RasterSource for MemorySource {
    fn footprint(&self) -> Footprint {
        self.0.footprint()
    }
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
    fn bands(&self) -> usize {
        self.0.bands()
    }
    fn nodata(&self) -> Option<f64> {
        self.0.nodata()
    }
    fn projection(&self) -> Option<Projection> {
        None
    }
    fn read(&self, request: &ReadRequest) -> Result<Array, SourceError> {
        self.0.read(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GeoTransform, Shape};

    #[test]
    fn reads_a_window_and_refuses_a_misfit() {
        let fp = Footprint::new(GeoTransform::north_up(0.0, 4.0, 1.0), 4, 4).unwrap();
        let values: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let array = Array::from_vec(Shape::new(4, 4, 1), values).unwrap();
        let source = MemorySource::new("m", fp, array.clone(), None).unwrap();
        let window = fp.clip(1, 1, 3, 3).unwrap();
        let got = source.read(&ReadRequest::new(window, vec![0])).unwrap();
        assert_eq!(got.as_slice::<f32>().unwrap(), &[5.0, 6.0, 9.0, 10.0]);
        let small = Footprint::new(GeoTransform::north_up(0.0, 4.0, 1.0), 3, 4).unwrap();
        let err = MemorySource::new("m", small, array, None).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
}
