//! Any raster GDAL reads (feature `gdal`): [`GdalSource`] reads windows with GDAL's RasterIO and
//! shares everything else with [`crate::GeoTiff`] — band checks, fill, nodata remapping, dtype
//! conversion and off-grid resampling (this crate's, so results are identical for both).
//!
//! GDAL datasets are not thread-safe: the source keeps a small pool of open datasets, one per
//! thread reading at the same time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gdal::Dataset;
use gdal::raster::{GdalDataType, GdalType};

use crate::source::{
    PixelWindow, Projection, RasterSource, ReadRequest, SourceError, WindowRead, read_windowed,
};
use crate::{Array, DType, Footprint, GeoTransform, Pixel};

/// A raster opened through GDAL.
#[derive(Debug)]
pub struct GdalSource {
    path: PathBuf,
    footprint: Footprint,
    dtype: DType,
    bands: usize,
    nodata: Option<f64>,
    projection: Option<Projection>,
    /// Datasets not in use.
    pool: Mutex<Vec<Dataset>>,
}

fn gdal_error(path: &Path, e: gdal::errors::GdalError) -> SourceError {
    SourceError::Gdal {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn dtype_of(path: &Path, t: GdalDataType) -> Result<DType, SourceError> {
    Ok(match t {
        GdalDataType::UInt8 => DType::U8,
        GdalDataType::UInt16 => DType::U16,
        GdalDataType::Int16 => DType::I16,
        GdalDataType::UInt32 => DType::U32,
        GdalDataType::Int32 => DType::I32,
        GdalDataType::Float32 => DType::F32,
        GdalDataType::Float64 => DType::F64,
        other => {
            return Err(SourceError::unsupported(
                path,
                "GDAL data type",
                other.name(),
            ));
        }
    })
}

impl GdalSource {
    /// Opens `path` with GDAL (any format it reads).
    pub fn open(path: impl AsRef<Path>) -> Result<GdalSource, SourceError> {
        let path = path.as_ref().to_path_buf();
        let ds = Dataset::open(&path).map_err(|e| gdal_error(&path, e))?;
        let bands = ds.raster_count();
        if bands == 0 {
            return Err(SourceError::unsupported(&path, "raster bands", 0));
        }
        let mut dtype = None;
        for i in 1..=bands {
            let band = ds.rasterband(i).map_err(|e| gdal_error(&path, e))?;
            let t = dtype_of(&path, band.band_type())?;
            if dtype.is_some_and(|d| d != t) {
                return Err(SourceError::unsupported(
                    &path,
                    "band data types",
                    format!("band {} is {t}, band 1 {}", i, dtype.unwrap_or(t)),
                ));
            }
            dtype = Some(t);
        }
        let nodata = ds
            .rasterband(1)
            .map_err(|e| gdal_error(&path, e))?
            .no_data_value();
        let gt = ds.geo_transform().unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        let (width, height) = ds.raster_size();
        let footprint = Footprint::new(GeoTransform::from_gdal(gt), width, height)
            .map_err(|e| SourceError::corrupt(&path, e.to_string()))?;
        let wkt = ds.projection();
        Ok(GdalSource {
            footprint,
            dtype: dtype.expect("at least one band"),
            bands,
            nodata,
            projection: (!wkt.is_empty()).then_some(Projection::Wkt(wkt)),
            pool: Mutex::new(vec![ds]),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_typed<T: GdalType + Pixel + Default>(
        &self,
        ds: &Dataset,
        window: PixelWindow,
        bands: &[usize],
        out: &mut Array,
        (col, row): (usize, usize),
    ) -> Result<(), SourceError> {
        let shape = out.shape();
        let data = out
            .as_slice_mut::<T>()
            .expect("the driver passes arrays of the source's dtype");
        let (w, h) = (window.width, window.height);
        let mut buf = vec![T::default(); w * h];
        for (k, &b) in bands.iter().enumerate() {
            if bands[..k].contains(&b) {
                continue;
            }
            let band = ds
                .rasterband(b + 1)
                .map_err(|e| gdal_error(&self.path, e))?;
            band.read_into_slice::<T>(
                (window.col as isize, window.row as isize),
                (w, h),
                (w, h),
                &mut buf,
                None,
            )
            .map_err(|e| gdal_error(&self.path, e))?;
            for (i, _) in bands.iter().enumerate().filter(|(_, x)| **x == b) {
                for r in 0..h {
                    let start = shape.index(row + r, col, i);
                    for (c, &v) in buf[r * w..(r + 1) * w].iter().enumerate() {
                        data[start + c * shape.bands] = v;
                    }
                }
            }
        }
        Ok(())
    }
}

impl RasterSource for GdalSource {
    fn footprint(&self) -> Footprint {
        self.footprint
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn bands(&self) -> usize {
        self.bands
    }

    fn nodata(&self) -> Option<f64> {
        self.nodata
    }

    fn projection(&self) -> Option<Projection> {
        self.projection.clone()
    }

    fn read(&self, request: &ReadRequest) -> Result<Array, SourceError> {
        read_windowed(self, request)
    }
}

impl WindowRead for GdalSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn read_window_into(
        &self,
        window: PixelWindow,
        bands: &[usize],
        out: &mut Array,
        at: (usize, usize),
    ) -> Result<(), SourceError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let ds = match pooled {
            Some(ds) => ds,
            None => Dataset::open(&self.path).map_err(|e| gdal_error(&self.path, e))?,
        };
        let result = match self.dtype {
            DType::U8 => self.read_typed::<u8>(&ds, window, bands, out, at),
            DType::U16 => self.read_typed::<u16>(&ds, window, bands, out, at),
            DType::I16 => self.read_typed::<i16>(&ds, window, bands, out, at),
            DType::U32 => self.read_typed::<u32>(&ds, window, bands, out, at),
            DType::I32 => self.read_typed::<i32>(&ds, window, bands, out, at),
            DType::F32 => self.read_typed::<f32>(&ds, window, bands, out, at),
            DType::F64 => self.read_typed::<f64>(&ds, window, bands, out, at),
        };
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(ds);
        result
    }
}
