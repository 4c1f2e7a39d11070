//! `tessera.Dataset`, its rasters and their queues: buzzard's names over tessera-raster. Every
//! wait (a read, a queue, closing) happens with the GIL released.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyAttributeError, PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tessera_raster::{
    DataQueue, Dataset, DatasetOptions, GeoTiff, Interpolation, MemorySource, Raster, RasterInfo,
    RasterSource, ReadRequest,
};

use crate::arrays::{self, Channels};
use crate::compute::Raised;
use crate::events::PyEvents;
use crate::footprint::PyFootprint;
use crate::recipes::{RecipeArgs, nodata_of, refuse_observers, tile_size};

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
            None => Err(PyRuntimeError::new_err("it is closed")),
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
    pub(crate) info: RasterInfo,
    inner: Detached<Raster>,
    pub(crate) raised: Arc<Raised>,
    cache_tiles: Option<(usize, usize)>,
    /// Computed by a recipe: reading it from a compute function would deadlock.
    recipe: bool,
}

struct ReadOptions<'a, 'py> {
    channels: Option<&'a Bound<'py, PyAny>>,
    dst_nodata: Option<f64>,
    interpolation: &'a str,
}

impl PyRaster {
    pub(crate) fn raster(&self) -> PyResult<Raster> {
        self.inner.with(|r| r.clone())
    }

    fn requests(
        &self,
        fps: Vec<Footprint>,
        options: &ReadOptions<'_, '_>,
    ) -> PyResult<(Vec<ReadRequest>, bool)> {
        let what = format!("raster `{}`", self.key);
        if self.recipe && crate::compute::in_compute() {
            return Err(PyRuntimeError::new_err(format!(
                "{what} is read inside a compute_array: the computation would wait for \
                 computations that wait for it; declare it in queue_data_per_primitive"
            )));
        }
        let channels = Channels::of(options.channels, self.info.bands, &what)?;
        for fp in &fps {
            crate::arrays::check_size(fp, channels.bands.len(), self.info.dtype, &what)?;
        }
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
            closed: std::sync::atomic::AtomicBool::new(false),
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
        let result = match py.detach(|| raster.read_cached(&request)) {
            Some(result) => result,
            None => {
                let mut queue = py.detach(|| raster.queue_requests(vec![request], 1));
                match wait_next(py, &mut queue)? {
                    Some(result) => result,
                    None => Err(tessera_raster::RasterError::Internal("no result".into())),
                }
            }
        };
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

/// Waits for a query's next result with the GIL released, a few times a second looking for
/// a pending signal (Ctrl-C raises `KeyboardInterrupt` here, the caller drops the query).
fn wait_next(
    py: Python<'_>,
    queue: &mut DataQueue,
) -> PyResult<Option<tessera_raster::error::Result<tessera_raster::Array>>> {
    loop {
        match py.detach(|| queue.next_timeout(std::time::Duration::from_millis(100))) {
            Ok(next) => return Ok(next),
            Err(()) => py.check_signals()?,
        }
    }
}

impl PyQueue {
    fn deliver<'py>(
        &self,
        py: Python<'py>,
        next: Option<tessera_raster::error::Result<tessera_raster::Array>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match next {
            None => Ok(None),
            Some(Ok(array)) => arrays::to_numpy(py, array, self.flat).map(Some),
            Some(Err(e)) => Err(self.raised.to_py(py, e)),
        }
    }
}

/// Arrays of a query in request order. Dropping it (or `close()`) cancels the rest.
#[pyclass(frozen, name = "DataQueue", module = "tessera")]
pub struct PyQueue {
    inner: Detached<DataQueue>,
    /// Closed (or exhausted), as opposed to taken by a reader meanwhile.
    closed: std::sync::atomic::AtomicBool,
    flat: bool,
    pub(crate) raised: Arc<Raised>,
}

#[pymethods]
impl PyQueue {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(mut queue) = self.inner.take() else {
            if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(None);
            }
            return Err(PyRuntimeError::new_err(
                "this queue is being read by another thread",
            ));
        };
        let next = wait_next(py, &mut queue);
        // Put back for the next call; on Ctrl-C it is dropped here, which cancels the query.
        match next {
            Ok(next) => {
                *self.inner.0.lock().expect("queue") = Some(queue);
                self.deliver(py, next)
            }
            Err(e) => {
                self.closed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                py.detach(move || drop(queue));
                Err(e)
            }
        }
    }

    /// The next array (buzzard's `queue.get()`); `IndexError` past the last.
    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.__next__(py)?.ok_or_else(|| {
            pyo3::exceptions::PyIndexError::new_err("the queue is exhausted or closed")
        })
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
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(q) = self.inner.take() {
            py.detach(move || drop(q));
        }
    }
}

/// A set of rasters sharing thread pools and a scheduler (buzzard's `Dataset`).
#[pyclass(frozen, name = "Dataset", module = "tessera")]
pub struct PyDataset {
    pub(crate) inner: Detached<Dataset>,
    pub(crate) rasters: Mutex<Vec<(String, Py<PyRaster>)>>,
    pub(crate) raised: Arc<Raised>,
    pub(crate) anonymous: std::sync::atomic::AtomicUsize,
}

impl PyDataset {
    pub(crate) fn dataset(&self) -> PyResult<Dataset> {
        self.inner
            .with(|d| d.clone())
            .map_err(|_| PyRuntimeError::new_err("the dataset is closed"))
    }

    pub(crate) fn add(
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
                recipe: raster.is_recipe(),
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

    pub(crate) fn key_or_anonymous(&self, key: Option<String>) -> PyResult<String> {
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
        self.dataset()?;
        self.rasters
            .lock()
            .expect("rasters")
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone_ref(py))
            .ok_or_else(|| PyKeyError::new_err(key.to_string()))
    }

    fn __getattr__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyRaster>> {
        self.dataset()?;
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
