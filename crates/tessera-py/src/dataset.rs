//! `tessera.Dataset`, its rasters and their queues: buzzard's names over tessera-raster. Every
//! wait (a read, a queue, closing) happens with the GIL released.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyAttributeError, PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyWeakrefReference};
use tessera_raster::recipe::Recipe;
use tessera_raster::{
    DataQueue, Dataset, DatasetOptions, GeoTiff, Interpolation, MemorySource, Raster, RasterInfo,
    RasterSource, ReadRequest, TileEvent,
};

use crate::arrays::{self, Channels};
use crate::compute::{Bridge, Conversions, PrimitiveView, Raised, Runner};
use crate::footprint::PyFootprint;

/// A Rust value dropped with the GIL released: dropping the last handle of a dataset joins its
/// threads, which may be waiting for the GIL to run a compute function.
pub struct Detached<T: Send>(Mutex<Option<T>>);

impl<T: Send> Detached<T> {
    fn new(value: T) -> Self {
        Detached(Mutex::new(Some(value)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> PyResult<R> {
        let mut guard = self.0.lock().expect("detached value");
        match guard.as_mut() {
            Some(v) => Ok(f(v)),
            None => Err(PyRuntimeError::new_err("closed")),
        }
    }

    fn take(&self) -> Option<T> {
        self.0.lock().expect("detached value").take()
    }
}

impl<T: Send> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some(value) = self.take() {
            // Without an interpreter (exiting), the value is dropped where we are.
            let _ = Python::try_attach(move |py| py.detach(move || drop(value)));
        }
    }
}

fn interpolation(name: &str) -> PyResult<Interpolation> {
    // buzzard's OpenCV names, then Tessera's.
    let native = match name {
        "cv_area" => "average",
        "cv_nearest" => "nearest",
        "cv_linear" => "bilinear",
        "cv_cubic" => "cubic",
        other => other,
    };
    Interpolation::parse(native).ok_or_else(|| {
        PyValueError::new_err(format!(
            "interpolation `{name}` is not one of cv_area, cv_nearest, cv_linear, cv_cubic, \
             average, nearest, bilinear, cubic"
        ))
    })
}

/// A raster of a dataset: a file, a wrapped numpy array or a recipe.
#[pyclass(frozen, weakref, name = "Raster", module = "tessera")]
pub struct PyRaster {
    key: String,
    info: RasterInfo,
    inner: Detached<Raster>,
    raised: Arc<Raised>,
    cache_tiles: Option<(usize, usize)>,
}

struct ReadOptions<'a, 'py> {
    channels: Option<&'a Bound<'py, PyAny>>,
    dst_nodata: Option<f64>,
    interpolation: &'a str,
}

impl PyRaster {
    fn raster(&self) -> PyResult<Raster> {
        self.inner.with(|r| r.clone())
    }

    fn requests(
        &self,
        fps: Vec<Footprint>,
        options: &ReadOptions<'_, '_>,
    ) -> PyResult<(Vec<ReadRequest>, bool)> {
        let what = format!("raster `{}`", self.key);
        let channels = Channels::of(options.channels, self.info.bands, &what)?;
        let interpolation = interpolation(options.interpolation)?;
        let requests = fps
            .into_iter()
            .map(|fp| ReadRequest {
                footprint: fp,
                bands: channels.bands.clone(),
                interpolation,
                dst_nodata: options.dst_nodata,
                dtype: None,
            })
            .collect();
        Ok((requests, channels.flat))
    }

    fn queue(
        &self,
        py: Python<'_>,
        fps: Vec<Footprint>,
        options: &ReadOptions<'_, '_>,
        max_queue_size: usize,
    ) -> PyResult<PyQueue> {
        let (requests, flat) = self.requests(fps, options)?;
        let raster = self.raster()?;
        let queue = py.detach(|| raster.queue_requests(requests, max_queue_size));
        Ok(PyQueue {
            inner: Detached::new(queue),
            flat,
            raised: self.raised.clone(),
        })
    }
}

type Footprint = tessera_raster::Footprint;

fn footprints(fps: &Bound<'_, PyAny>) -> PyResult<Vec<Footprint>> {
    let mut out = Vec::new();
    for fp in fps.try_iter()? {
        out.push(fp?.extract::<PyFootprint>()?.0);
    }
    Ok(out)
}

#[pymethods]
impl PyRaster {
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }
    /// buzzard's `get_keys()`: the keys this raster is known by.
    fn get_keys(&self) -> Vec<String> {
        vec![self.key.clone()]
    }
    #[getter]
    fn fp(&self) -> PyFootprint {
        PyFootprint(self.info.footprint)
    }
    #[getter]
    fn dtype<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("numpy")?
            .call_method1("dtype", (arrays::numpy_name(self.info.dtype),))
    }
    #[getter]
    fn nodata(&self) -> Option<f64> {
        self.info.nodata
    }
    /// The cache tiles of a cached recipe, as a `(rows, columns)` array of footprints.
    #[getter]
    fn cache_tiles_fps<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(size) = self.cache_tiles else {
            return Ok(None);
        };
        PyFootprint(self.info.footprint)
            .tile_with(py, size)
            .map(Some)
    }
    fn __len__(&self) -> usize {
        self.info.bands
    }

    /// A lazy dask array, one chunk per cache tile (needs dask).
    #[pyo3(signature = (chunks=None))]
    fn to_dask<'py>(
        slf: &Bound<'py, Self>,
        chunks: Option<(usize, usize)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("tessera._dask")?
            .call_method1("to_dask", (slf, chunks))
    }

    /// The pixels of `fp` (the whole raster by default): numpy `(rows, columns)` for one
    /// channel, `(rows, columns, channels)` otherwise.
    #[pyo3(signature = (fp=None, channels=None, dst_nodata=None, interpolation="cv_area", max_queue_size=5))]
    fn get_data<'py>(
        &self,
        py: Python<'py>,
        fp: Option<PyFootprint>,
        channels: Option<&Bound<'py, PyAny>>,
        dst_nodata: Option<f64>,
        interpolation: &str,
        max_queue_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = max_queue_size; // one window: nothing to queue
        let fp = fp.map_or(self.info.footprint, |f| f.0);
        let options = ReadOptions {
            channels,
            dst_nodata,
            interpolation,
        };
        let (mut requests, flat) = self.requests(vec![fp], &options)?;
        let raster = self.raster()?;
        let request = requests.pop().expect("one request");
        let result = py.detach(|| raster.read(request));
        match result {
            Ok(array) => arrays::to_numpy(py, array, flat),
            Err(e) => Err(self.raised.to_py(py, e)),
        }
    }

    /// The windows' arrays in request order, computed ahead (at most `max_queue_size`).
    #[pyo3(signature = (fps, channels=None, dst_nodata=None, interpolation="cv_area", max_queue_size=5))]
    fn iter_data(
        &self,
        py: Python<'_>,
        fps: &Bound<'_, PyAny>,
        channels: Option<&Bound<'_, PyAny>>,
        dst_nodata: Option<f64>,
        interpolation: &str,
        max_queue_size: usize,
    ) -> PyResult<PyQueue> {
        let options = ReadOptions {
            channels,
            dst_nodata,
            interpolation,
        };
        self.queue(py, footprints(fps)?, &options, max_queue_size)
    }

    /// A bounded queue of the windows' arrays (`get()` or iterate); dropping it cancels the
    /// work not started.
    #[pyo3(signature = (fps, channels=None, dst_nodata=None, interpolation="cv_area", max_queue_size=5))]
    fn queue_data(
        &self,
        py: Python<'_>,
        fps: &Bound<'_, PyAny>,
        channels: Option<&Bound<'_, PyAny>>,
        dst_nodata: Option<f64>,
        interpolation: &str,
        max_queue_size: usize,
    ) -> PyResult<PyQueue> {
        self.iter_data(py, fps, channels, dst_nodata, interpolation, max_queue_size)
    }

    fn __repr__(&self) -> String {
        format!(
            "<tessera.Raster `{}` {} {} channel(s) {}>",
            self.key,
            self.info.dtype,
            self.info.bands,
            PyFootprint(self.info.footprint).repr()
        )
    }
}

/// Arrays of a query in request order. Dropping it (or `close()`) cancels the rest.
#[pyclass(frozen, name = "DataQueue", module = "tessera")]
pub struct PyQueue {
    inner: Detached<DataQueue>,
    flat: bool,
    raised: Arc<Raised>,
}

#[pymethods]
impl PyQueue {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let next = py.detach(|| self.inner.with(|q| q.next()).ok().flatten());
        match next {
            None => Ok(None),
            Some(Ok(array)) => arrays::to_numpy(py, array, self.flat).map(Some),
            Some(Err(e)) => Err(self.raised.to_py(py, e)),
        }
    }

    /// The next array (buzzard's `queue.get()`); `IndexError` past the last.
    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.__next__(py)?
            .ok_or_else(|| pyo3::exceptions::PyIndexError::new_err("the queue is exhausted"))
    }

    /// Arrays computed and not yet taken.
    fn qsize(&self) -> usize {
        self.inner.with(|q| q.ready()).unwrap_or(0)
    }

    fn __len__(&self) -> usize {
        self.inner.with(|q| q.remaining()).unwrap_or(0)
    }

    /// Cancels the work not started.
    fn close(&self, py: Python<'_>) {
        if let Some(q) = self.inner.take() {
            py.detach(move || drop(q));
        }
    }
}

/// A set of rasters sharing thread pools and a scheduler (buzzard's `Dataset`).
#[pyclass(frozen, name = "Dataset", module = "tessera")]
pub struct PyDataset {
    inner: Detached<Dataset>,
    rasters: Mutex<Vec<(String, Py<PyRaster>)>>,
    raised: Arc<Raised>,
    anonymous: std::sync::atomic::AtomicUsize,
}

impl PyDataset {
    fn dataset(&self) -> PyResult<Dataset> {
        self.inner.with(|d| d.clone())
    }

    fn add(
        &self,
        py: Python<'_>,
        key: Option<String>,
        raster: Raster,
        cache_tiles: Option<(usize, usize)>,
    ) -> PyResult<Py<PyRaster>> {
        let key = self.key_or_anonymous(key)?;
        let proxy = Py::new(
            py,
            PyRaster {
                key: key.clone(),
                info: raster.info().clone(),
                inner: Detached::new(raster),
                raised: self.raised.clone(),
                cache_tiles,
            },
        )?;
        self.rasters
            .lock()
            .expect("rasters")
            .push((key, proxy.clone_ref(py)));
        Ok(proxy)
    }

    fn key_or_anonymous(&self, key: Option<String>) -> PyResult<String> {
        let key = match key {
            Some(k) => k,
            None => {
                let n = self
                    .anonymous
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("anonymous-{n}")
            }
        };
        if self
            .rasters
            .lock()
            .expect("rasters")
            .iter()
            .any(|(k, _)| *k == key)
        {
            return Err(PyValueError::new_err(format!(
                "the dataset already has a raster `{key}`"
            )));
        }
        Ok(key)
    }

    fn source(
        &self,
        py: Python<'_>,
        key: Option<String>,
        source: Arc<dyn RasterSource>,
    ) -> PyResult<Py<PyRaster>> {
        let key = self.key_or_anonymous(key)?;
        let dataset = self.dataset()?;
        let raster = py
            .detach(|| dataset.add_source(&key, source))
            .map_err(|e| self.raised.to_py(py, e))?;
        self.add(py, Some(key), raster, None)
    }
}

/// What `create_raster_recipe` and `create_cached_raster_recipe` share.
struct RecipeArgs<'py> {
    key: Option<String>,
    fp: PyFootprint,
    dtype: Bound<'py, PyAny>,
    channel_count: usize,
    channels_schema: Option<Bound<'py, PyDict>>,
    compute_array: Option<Bound<'py, PyAny>>,
    merge_arrays: Option<Bound<'py, PyAny>>,
    queue_data_per_primitive: Option<Bound<'py, PyDict>>,
    convert_footprint_per_primitive: Option<Bound<'py, PyDict>>,
    computation_pool: Option<Bound<'py, PyAny>>,
    computation_tiles: Option<(usize, usize)>,
    cache: Option<(std::path::PathBuf, bool, (usize, usize))>,
}

/// buzzard's `channels_schema={"nodata": v}` (one value for every channel).
fn nodata_of(schema: Option<&Bound<'_, PyDict>>) -> PyResult<Option<f64>> {
    let Some(schema) = schema else {
        return Ok(None);
    };
    for (k, _) in schema.iter() {
        let k: String = k.extract()?;
        if k != "nodata" {
            return Err(PyValueError::new_err(format!(
                "channels_schema: `{k}` is not supported (only `nodata`)"
            )));
        }
    }
    match schema.get_item("nodata")? {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => match v.extract::<f64>() {
            Ok(x) => Ok(Some(x)),
            Err(_) => {
                let all: Vec<Option<f64>> = v.extract()?;
                let first = all.first().copied().flatten();
                if all.iter().any(|x| *x != first) {
                    return Err(PyValueError::new_err(
                        "channels_schema: a nodata per channel is not supported (one for all)",
                    ));
                }
                Ok(first)
            }
        },
    }
}

/// The raster and channels a `queue_data_per_primitive` value asks for:
/// `functools.partial(prim.queue_data, channels=…)` or `prim.queue_data`.
fn primitive_of<'py>(name: &str, value: &Bound<'py, PyAny>) -> PyResult<(Py<PyRaster>, Channels)> {
    let bad = |why: &str| {
        PyTypeError::new_err(format!(
            "queue_data_per_primitive[`{name}`]: {why}; give functools.partial(raster.queue_data, …) or raster.queue_data"
        ))
    };
    let (method, keywords) = match value.getattr("func") {
        Ok(func) => {
            let args: Vec<Bound<'py, PyAny>> = value.getattr("args")?.extract()?;
            if !args.is_empty() {
                return Err(bad("positional arguments are not supported"));
            }
            (
                func,
                Some(value.getattr("keywords")?.cast_into::<PyDict>()?),
            )
        }
        Err(_) => (value.clone(), None),
    };
    let name_of: String = method
        .getattr("__name__")
        .map_err(|_| bad("not a method"))?
        .extract()?;
    if name_of != "queue_data" && name_of != "iter_data" {
        return Err(bad(&format!("`{name_of}` is not queue_data")));
    }
    let raster = method
        .getattr("__self__")
        .map_err(|_| bad("not a raster's method"))?
        .cast_into::<PyRaster>()
        .map_err(|_| bad("not a tessera raster's method"))?;
    let mut channels = None;
    if let Some(keywords) = &keywords {
        for (k, v) in keywords.iter() {
            match k.extract::<String>()?.as_str() {
                "channels" => channels = Some(v),
                "max_queue_size" => {}
                "interpolation" | "dst_nodata" if v.is_none() => {}
                other => {
                    return Err(bad(&format!(
                        "`{other}` is not supported for primitives (only channels)"
                    )));
                }
            }
        }
    }
    let what = format!("queue_data_per_primitive[`{name}`]");
    let bands = raster.get().info.bands;
    let channels = Channels::of(channels.as_ref(), bands, &what)?;
    Ok((raster.unbind(), channels))
}

#[pymethods]
impl PyDataset {
    /// `compute_threads` run compute functions (the cores by default), `io_threads` read and
    /// write files.
    #[new]
    #[pyo3(signature = (compute_threads=None, io_threads=None, **buzzard))]
    fn new(
        py: Python<'_>,
        compute_threads: Option<usize>,
        io_threads: Option<usize>,
        buzzard: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // buzzard's options about spatial references and geometry checks: Tessera does not
        // reproject, so they change nothing here.
        const IGNORED: [&str; 8] = [
            "sr_work",
            "sr_fallback",
            "sr_forced",
            "analyse_transformation",
            "allow_none_geometry",
            "allow_interpolation",
            "max_active",
            "debug_observers",
        ];
        for key in buzzard.iter().flat_map(|d| d.keys()) {
            let key: String = key.extract()?;
            if !IGNORED.contains(&key.as_str()) {
                return Err(PyTypeError::new_err(format!(
                    "Dataset() got an unexpected keyword argument '{key}'"
                )));
            }
        }
        let mut options = DatasetOptions::default();
        if let Some(n) = compute_threads {
            options.compute_threads = n.max(1);
        }
        if let Some(n) = io_threads {
            options.io_threads = n.max(1);
        }
        let dataset = py
            .detach(|| Dataset::new(options))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(PyDataset {
            inner: Detached::new(dataset),
            rasters: Mutex::new(Vec::new()),
            raised: Arc::new(Raised::default()),
            anonymous: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Opens a GeoTIFF file (any GDAL format when built with the `gdal` feature) under `key`.
    #[pyo3(signature = (key, path, driver="GTiff", options=None, mode="r"))]
    fn open_raster(
        &self,
        py: Python<'_>,
        key: Option<String>,
        path: std::path::PathBuf,
        driver: &str,
        options: Option<&Bound<'_, PyAny>>,
        mode: &str,
    ) -> PyResult<Py<PyRaster>> {
        let _ = options;
        if mode != "r" {
            return Err(PyValueError::new_err(format!(
                "open_raster: mode `{mode}`: rasters open read-only (mode='r')"
            )));
        }
        let source: Arc<dyn RasterSource> = if driver.eq_ignore_ascii_case("GTiff") {
            Arc::new(py.detach(|| GeoTiff::open(&path)).map_err(source_error)?)
        } else {
            open_with_gdal(py, &path, driver)?
        };
        self.source(py, key, source)
    }

    /// `open_raster` without a key.
    #[pyo3(signature = (path, driver="GTiff", options=None, mode="r"))]
    fn aopen_raster(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        driver: &str,
        options: Option<&Bound<'_, PyAny>>,
        mode: &str,
    ) -> PyResult<Py<PyRaster>> {
        self.open_raster(py, None, path, driver, options, mode)
    }

    /// A numpy array `(rows, columns[, channels])` laid on `fp` (copied once).
    #[pyo3(signature = (key, fp, array, channels_schema=None, sr=None, mode="r"))]
    #[allow(clippy::too_many_arguments)] // buzzard's signature
    fn wrap_numpy_raster(
        &self,
        py: Python<'_>,
        key: Option<String>,
        fp: PyFootprint,
        array: &Bound<'_, PyAny>,
        channels_schema: Option<&Bound<'_, PyDict>>,
        sr: Option<&Bound<'_, PyAny>>,
        mode: &str,
    ) -> PyResult<Py<PyRaster>> {
        let _ = (sr, mode);
        let dtype = arrays::dtype_of(py, &array.getattr("dtype")?)?;
        let what = format!(
            "wrap_numpy_raster `{}`",
            key.as_deref().unwrap_or("(anonymous)")
        );
        let pixels = arrays::from_numpy(array, dtype, &what)?;
        let nodata = nodata_of(channels_schema)?;
        let name = key.clone().unwrap_or_else(|| "anonymous".into());
        let source = MemorySource::new(&name, fp.0, pixels, nodata)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.source(py, key, Arc::new(source))
    }

    /// A raster computed tile by tile by `compute_array`, nothing kept on disk.
    #[pyo3(signature = (key, fp, dtype, channel_count, channels_schema=None, sr=None,
        compute_array=None, merge_arrays=None, queue_data_per_primitive=None,
        convert_footprint_per_primitive=None, computation_pool=None, merge_pool=None,
        resample_pool=None, computation_tiles=None, max_computation_size=None,
        max_resampling_size=None, automatic_remapping=true, debug_observers=None))]
    #[allow(clippy::too_many_arguments)] // buzzard's signature
    fn create_raster_recipe<'py>(
        &self,
        py: Python<'py>,
        key: Option<String>,
        fp: PyFootprint,
        dtype: Bound<'py, PyAny>,
        channel_count: usize,
        channels_schema: Option<Bound<'py, PyDict>>,
        sr: Option<Bound<'py, PyAny>>,
        compute_array: Option<Bound<'py, PyAny>>,
        merge_arrays: Option<Bound<'py, PyAny>>,
        queue_data_per_primitive: Option<Bound<'py, PyDict>>,
        convert_footprint_per_primitive: Option<Bound<'py, PyDict>>,
        computation_pool: Option<Bound<'py, PyAny>>,
        merge_pool: Option<Bound<'py, PyAny>>,
        resample_pool: Option<Bound<'py, PyAny>>,
        computation_tiles: Option<Bound<'py, PyAny>>,
        max_computation_size: Option<Bound<'py, PyAny>>,
        max_resampling_size: Option<Bound<'py, PyAny>>,
        automatic_remapping: bool,
        debug_observers: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyRaster>> {
        let _ = (
            sr,
            merge_pool,
            resample_pool,
            max_computation_size,
            max_resampling_size,
        );
        if !automatic_remapping {
            return Err(PyValueError::new_err(
                "automatic_remapping=False is not supported: compute_array always receives \
                 tiles of the recipe's own grid, and reads elsewhere are resampled",
            ));
        }
        refuse_observers(debug_observers.as_ref())?;
        self.recipe(
            py,
            RecipeArgs {
                key,
                fp,
                dtype,
                channel_count,
                channels_schema,
                compute_array,
                merge_arrays,
                queue_data_per_primitive,
                convert_footprint_per_primitive,
                computation_tiles: tile_size(&fp, computation_tiles.as_ref(), "computation_tiles")?,
                computation_pool,
                cache: None,
            },
        )
    }

    /// A raster computed tile by tile by `compute_array`, its tiles kept in `cache_dir` and
    /// reused by later runs (`ow=True` recomputes them).
    #[pyo3(signature = (key, fp, dtype, channel_count, channels_schema=None, sr=None,
        compute_array=None, merge_arrays=None, cache_dir=None, ow=false,
        queue_data_per_primitive=None, convert_footprint_per_primitive=None,
        computation_pool=None, merge_pool=None, io_pool=None, resample_pool=None,
        cache_tiles=None, computation_tiles=None, max_resampling_size=None,
        debug_observers=None))]
    #[allow(clippy::too_many_arguments)] // buzzard's signature
    fn create_cached_raster_recipe<'py>(
        &self,
        py: Python<'py>,
        key: Option<String>,
        fp: PyFootprint,
        dtype: Bound<'py, PyAny>,
        channel_count: usize,
        channels_schema: Option<Bound<'py, PyDict>>,
        sr: Option<Bound<'py, PyAny>>,
        compute_array: Option<Bound<'py, PyAny>>,
        merge_arrays: Option<Bound<'py, PyAny>>,
        cache_dir: Option<std::path::PathBuf>,
        ow: bool,
        queue_data_per_primitive: Option<Bound<'py, PyDict>>,
        convert_footprint_per_primitive: Option<Bound<'py, PyDict>>,
        computation_pool: Option<Bound<'py, PyAny>>,
        merge_pool: Option<Bound<'py, PyAny>>,
        io_pool: Option<Bound<'py, PyAny>>,
        resample_pool: Option<Bound<'py, PyAny>>,
        cache_tiles: Option<Bound<'py, PyAny>>,
        computation_tiles: Option<Bound<'py, PyAny>>,
        max_resampling_size: Option<Bound<'py, PyAny>>,
        debug_observers: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyRaster>> {
        let _ = (sr, merge_pool, io_pool, resample_pool, max_resampling_size);
        refuse_observers(debug_observers.as_ref())?;
        let Some(cache_dir) = cache_dir else {
            return Err(PyTypeError::new_err(
                "create_cached_raster_recipe needs cache_dir=",
            ));
        };
        self.recipe(
            py,
            RecipeArgs {
                key,
                fp,
                dtype,
                channel_count,
                channels_schema,
                compute_array,
                merge_arrays,
                queue_data_per_primitive,
                convert_footprint_per_primitive,
                computation_tiles: tile_size(&fp, computation_tiles.as_ref(), "computation_tiles")?,
                computation_pool,
                cache: Some((
                    cache_dir,
                    ow,
                    tile_size(&fp, cache_tiles.as_ref(), "cache_tiles")?.unwrap_or((512, 512)),
                )),
            },
        )
    }

    /// Tile events from now on (queued, computing, written, delivered, failed…): an iterator
    /// of dicts; `next()` waits for the next event.
    fn subscribe(&self) -> PyResult<PyEvents> {
        let rx = self.inner.with(|d| d.subscribe())?;
        Ok(PyEvents { rx })
    }

    fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyRaster>> {
        self.rasters
            .lock()
            .expect("rasters")
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone_ref(py))
            .ok_or_else(|| PyKeyError::new_err(key.to_string()))
    }

    fn __getattr__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyRaster>> {
        self.__getitem__(py, key)
            .map_err(|_| PyAttributeError::new_err(format!("the dataset has no raster `{key}`")))
    }

    fn __contains__(&self, key: &str) -> bool {
        self.rasters
            .lock()
            .expect("rasters")
            .iter()
            .any(|(k, _)| k == key)
    }

    fn __len__(&self) -> usize {
        self.rasters.lock().expect("rasters").len()
    }

    fn keys(&self) -> Vec<String> {
        self.rasters
            .lock()
            .expect("rasters")
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Stops the dataset's threads now; its rasters fail to read from then on.
    fn close(&self, py: Python<'_>) {
        if let Some(dataset) = self.inner.take() {
            py.detach(move || {
                dataset.close();
                drop(dataset);
            });
        }
        // The recipes' compute functions may refer to this dataset: let them go.
        self.rasters.lock().expect("rasters").clear();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }
}

impl PyDataset {
    fn recipe(&self, py: Python<'_>, a: RecipeArgs<'_>) -> PyResult<Py<PyRaster>> {
        let key = self.key_or_anonymous(a.key)?;
        let Some(compute_array) = a.compute_array else {
            return Err(PyTypeError::new_err(format!(
                "recipe `{key}`: compute_array= is required"
            )));
        };
        if a.merge_arrays.as_ref().is_some_and(|m| !m.is_none()) {
            return Err(PyValueError::new_err(format!(
                "recipe `{key}`: merge_arrays is not supported: each computation tile is \
                 computed whole and cut by the engine"
            )));
        }
        let dtype = arrays::dtype_of(py, &a.dtype)?;
        let nodata = nodata_of(a.channels_schema.as_ref())?;
        let mut names = Vec::new();
        let mut views = Vec::new();
        let mut rasters = Vec::new();
        if let Some(prims) = &a.queue_data_per_primitive {
            for (name, value) in prims.iter() {
                let name: String = name.extract()?;
                let (raster, channels) = primitive_of(&name, &value)?;
                names.push(name.clone());
                views.push(PrimitiveView { name, channels });
                rasters.push(raster);
            }
        }
        let mut functions: Vec<Option<Py<PyAny>>> = names.iter().map(|_| None).collect();
        if let Some(converts) = &a.convert_footprint_per_primitive {
            for (name, f) in converts.iter() {
                let name: String = name.extract()?;
                let Some(slot) = names.iter().position(|n| *n == name) else {
                    return Err(PyValueError::new_err(format!(
                        "recipe `{key}`: convert_footprint_per_primitive names `{name}`, which is \
                         not in queue_data_per_primitive"
                    )));
                };
                functions[slot] = Some(f.unbind());
            }
        }
        let runner = match &a.computation_pool {
            None => Runner::Threads,
            Some(p) if p.is_none() => Runner::Threads,
            Some(p) => match p.extract::<String>() {
                // buzzard's named pools: the dataset's compute threads here.
                Ok(_) => Runner::Threads,
                // A thread pool adds nothing to the dataset's own threads.
                Err(_) if is_thread_pool(p)? => Runner::Threads,
                Err(_) if p.hasattr("apply")? => Runner::Processes(p.clone().unbind()),
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "recipe `{key}`: computation_pool must be \"cpu\" or a pool with apply()"
                    )));
                }
            },
        };
        let cache_tiles = a.cache.as_ref().map(|c| c.2);
        let compute_tiles = a.computation_tiles.or(cache_tiles).unwrap_or((512, 512));
        let conversions = Arc::new(Conversions::new(a.fp.0, functions));
        conversions.precompute(py, compute_tiles);
        let this = Arc::new(Mutex::new(None));
        let bridge = Bridge {
            raster: key.clone(),
            function: compute_array.unbind(),
            dtype,
            primitives: views,
            runner,
            this: this.clone(),
            raised: self.raised.clone(),
            conversions: conversions.clone(),
        };
        let mut recipe = Recipe::new(key.clone(), a.fp.0, dtype, a.channel_count, |_| {
            Err("unreachable".into())
        });
        recipe.compute = bridge.into_compute();
        recipe.compute_tile_size = compute_tiles;
        if let Some(n) = nodata {
            recipe = recipe.nodata(n);
        }
        for (slot, (name, raster)) in names.iter().zip(&rasters).enumerate() {
            let raster = raster.get().raster()?;
            recipe = recipe.primitive(name.clone(), &raster, conversions.conversion(slot));
        }
        if let Some((dir, ow, (w, h))) = a.cache {
            recipe = recipe.cache(dir, w, h).overwrite(ow);
        }
        let dataset = self.dataset()?;
        let raster = py
            .detach(|| dataset.create_recipe(recipe))
            .map_err(|e| self.raised.to_py(py, e))?;
        let proxy = self.add(py, Some(key), raster, cache_tiles)?;
        let weak = PyWeakrefReference::new(proxy.bind(py))?;
        *this.lock().expect("recipe raster") = Some(weak.unbind());
        Ok(proxy)
    }
}

fn is_thread_pool(pool: &Bound<'_, PyAny>) -> PyResult<bool> {
    let class = pool
        .py()
        .import("multiprocessing.pool")?
        .getattr("ThreadPool")?;
    pool.is_instance(&class)
}

/// A tile size given as `(columns, rows)` or as buzzard's tiling (a numpy array of
/// footprints, which must be `fp`'s regular tiling, shrunk at the right and bottom edges).
fn tile_size(
    fp: &PyFootprint,
    given: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<(usize, usize)>> {
    let Some(given) = given.filter(|g| !g.is_none()) else {
        return Ok(None);
    };
    if let Ok([w, h]) = given.extract::<[usize; 2]>() {
        return Ok(Some((w, h)));
    }
    let bad = || {
        PyTypeError::new_err(format!(
            "{what}: give (columns, rows) or fp.tile(size, boundary_effect='shrink')"
        ))
    };
    let tiles: Vec<PyFootprint> = given
        .getattr("flat")
        .map_err(|_| bad())?
        .try_iter()?
        .map(|t| t.and_then(|t| t.extract::<PyFootprint>().map_err(PyErr::from)))
        .collect::<PyResult<_>>()
        .map_err(|_| bad())?;
    let first = tiles.first().ok_or_else(bad)?;
    let size = first.0.rsize();
    let expected =
        fp.0.tile(
            size,
            (0, 0),
            tessera_raster::BoundaryEffect::Shrink,
            tessera_raster::BoundaryEffectLocus::parse("br").expect("br"),
        )
        .map_err(|e| PyValueError::new_err(format!("{what}: {e}")))?;
    let same = expected.len() == tiles.len()
        && expected
            .iter()
            .zip(&tiles)
            .all(|(a, b)| a.almost_equals(&b.0));
    if !same {
        return Err(PyValueError::new_err(format!(
            "{what}: only the regular tiling of the raster's footprint in tiles of {} × {} \
             pixels (fp.tile(({}, {}), boundary_effect='shrink')) is supported",
            size.0, size.1, size.0, size.1
        )));
    }
    Ok(Some(size))
}

fn refuse_observers(observers: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    match observers {
        Some(o) if !o.is_none() && o.len().unwrap_or(1) > 0 => Err(PyValueError::new_err(
            "debug_observers are not supported: use Dataset.subscribe() for tile events",
        )),
        _ => Ok(()),
    }
}

fn source_error(e: tessera_raster::SourceError) -> PyErr {
    let text = e.to_string();
    if let tessera_raster::SourceError::Io { source, .. } = &e
        && source.kind() == std::io::ErrorKind::NotFound
    {
        return pyo3::exceptions::PyFileNotFoundError::new_err(text);
    }
    if e.is_user_error() {
        PyValueError::new_err(text)
    } else {
        pyo3::exceptions::PyOSError::new_err(text)
    }
}

#[cfg(feature = "gdal")]
fn open_with_gdal(
    py: Python<'_>,
    path: &std::path::Path,
    _driver: &str,
) -> PyResult<Arc<dyn RasterSource>> {
    let source = py
        .detach(|| tessera_raster::GdalSource::open(path))
        .map_err(source_error)?;
    Ok(Arc::new(source))
}

#[cfg(not(feature = "gdal"))]
fn open_with_gdal(
    _py: Python<'_>,
    path: &std::path::Path,
    driver: &str,
) -> PyResult<Arc<dyn RasterSource>> {
    Err(PyValueError::new_err(format!(
        "open_raster {}: driver `{driver}` needs a wheel built with the `gdal` feature; \
         this one reads GeoTIFF (driver='GTiff')",
        path.display()
    )))
}

/// Tile events of a dataset, as dicts.
#[pyclass(frozen, name = "TileEvents", module = "tessera")]
pub struct PyEvents {
    rx: crossbeam_channel::Receiver<TileEvent>,
}

#[pymethods]
impl PyEvents {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next event, waiting at most `timeout` seconds (forever by default).
    #[pyo3(signature = (timeout=None))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let rx = self.rx.clone();
        let event = py.detach(move || match timeout {
            Some(t) => rx
                .recv_timeout(std::time::Duration::from_secs_f64(t.max(0.0)))
                .ok(),
            None => rx.recv().ok(),
        });
        event.map(|e| event_dict(py, &e)).transpose()
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.next(py, None)
    }

    /// Events already waiting, without blocking.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.rx.try_iter().map(|e| event_dict(py, &e)).collect()
    }
}

fn event_dict<'py>(py: Python<'py>, e: &TileEvent) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("raster", &e.raster)?;
    d.set_item("tiling", format!("{:?}", e.tiling).to_lowercase())?;
    d.set_item("col", e.tile.col)?;
    d.set_item("row", e.tile.row)?;
    d.set_item("state", e.state.name())?;
    d.set_item("message", e.message.as_deref())?;
    Ok(d)
}
