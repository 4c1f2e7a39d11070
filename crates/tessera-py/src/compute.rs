//! The bridge from the raster engine's compute threads to a Python `compute_array`: the GIL is
//! taken only for the call, exceptions are kept so that the reader gets the same type back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyWeakrefReference};
use tessera_raster::recipe::{ComputeFn, Conversion};
use tessera_raster::{Array, ComputeInput, DType, Footprint, PixelWindow, RasterError};

use crate::arrays::{self, Channels};
use crate::footprint::PyFootprint;

thread_local! {
    /// Set while this thread runs a compute function: a read of a recipe from there would
    /// wait for computations that may be waiting for this one.
    static IN_COMPUTE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is running a compute function.
pub fn in_compute() -> bool {
    IN_COMPUTE.get()
}

/// Exceptions raised by compute functions, by raster and message, until a reader takes them.
#[derive(Default)]
pub struct Raised(Mutex<HashMap<(String, String), PyErr>>);

/// More distinct failures than this are reported by message only (memory stays bounded).
const MAX_KEPT: usize = 1024;

impl Raised {
    fn keep(&self, raster: &str, message: &str, err: PyErr) {
        let mut kept = self.0.lock().expect("raised exceptions");
        if kept.len() < MAX_KEPT {
            kept.insert((raster.to_string(), message.to_string()), err);
        }
    }

    /// The Python exception for a read's error: a compute function's exception comes back as
    /// the same type, its message naming the raster and the tile, the original as its cause.
    pub fn to_py(&self, py: Python<'_>, e: RasterError) -> PyErr {
        use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
        let text = e.to_string();
        match e {
            RasterError::Compute {
                raster, message, ..
            } => {
                let original = self
                    .0
                    .lock()
                    .expect("raised exceptions")
                    .get(&(raster, message))
                    .map(|err| err.clone_ref(py));
                let Some(original) = original else {
                    return PyRuntimeError::new_err(text);
                };
                match original.get_type(py).call1((text.clone(),)) {
                    Ok(value) => {
                        let err = PyErr::from_value(value);
                        err.set_cause(py, Some(original));
                        err
                    }
                    // A type whose constructor wants more: the original, with a note saying
                    // where (Python 3.11+).
                    Err(_) => {
                        let value = original.value(py);
                        if value.hasattr("add_note").unwrap_or(false) {
                            let _ = value.call_method1("add_note", (text,));
                        }
                        original
                    }
                }
            }
            RasterError::Invalid(_) => PyValueError::new_err(text),
            RasterError::Io(_) => PyOSError::new_err(text),
            RasterError::Cancelled | RasterError::Internal(_) => PyRuntimeError::new_err(text),
        }
    }
}

/// A primitive as the compute function sees it: its name and the channels its `queue_data`
/// partial asked for.
pub struct PrimitiveView {
    pub name: String,
    pub channels: Channels,
}

/// Where `compute_array` runs: on the engine's compute threads, or sent to a process pool
/// (`pool.apply`) for code that holds the GIL.
pub enum Runner {
    Threads,
    Processes(Py<PyAny>),
}

pub struct Bridge {
    pub raster: String,
    pub function: Py<PyAny>,
    pub dtype: DType,
    pub primitives: Vec<PrimitiveView>,
    pub runner: Runner,
    /// The recipe's own raster (passed as `raster`), weakly: the engine holds this bridge.
    pub this: Arc<Mutex<Option<Py<PyWeakrefReference>>>>,
    pub raised: Arc<Raised>,
    pub conversions: Arc<Conversions>,
}

impl Bridge {
    pub fn into_compute(self) -> ComputeFn {
        let bridge = Arc::new(self);
        Arc::new(move |input: &ComputeInput<'_>| bridge.compute(input))
    }

    fn compute(&self, input: &ComputeInput<'_>) -> Result<Array, String> {
        if let Some(message) = self.conversions.failure(input.footprint) {
            return Err(message);
        }
        IN_COMPUTE.set(true);
        let result = Python::try_attach(|py| match self.call(py, input) {
            Ok(array) => Ok(array),
            Err(err) => {
                let message = describe(py, &err);
                self.raised.keep(&self.raster, &message, err);
                Err(message)
            }
        })
        .unwrap_or_else(|| Err("the Python interpreter is not running".into()));
        IN_COMPUTE.set(false);
        result
    }

    fn call(&self, py: Python<'_>, input: &ComputeInput<'_>) -> PyResult<Array> {
        let fps = PyDict::new(py);
        let arrays = PyDict::new(py);
        for (view, prim) in self.primitives.iter().zip(input.primitives) {
            fps.set_item(&view.name, PyFootprint(prim.footprint))?;
            let array = if view
                .channels
                .bands
                .iter()
                .copied()
                .eq(0..prim.array.shape().bands)
            {
                (*prim.array).clone()
            } else {
                prim.array.select_bands(&view.channels.bands)
            };
            arrays.set_item(&view.name, arrays::to_numpy(py, array, view.channels.flat)?)?;
        }
        let fp = PyFootprint(*input.footprint);
        let result = match &self.runner {
            Runner::Threads => {
                let this = self
                    .this
                    .lock()
                    .expect("recipe raster")
                    .as_ref()
                    .and_then(|w| w.bind(py).upgrade());
                self.function.bind(py).call1((fp, fps, arrays, this))?
            }
            // The raster does not cross to another process.
            Runner::Processes(pool) => pool.bind(py).call_method1(
                "apply",
                (self.function.bind(py), (fp, fps, arrays, py.None())),
            )?,
        };
        let what = format!("compute_array of `{}`", self.raster);
        if result.is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{what} returned None; it must return the tile's array"
            )));
        }
        arrays::from_numpy(&result, self.dtype, &what)
    }
}

/// `TypeName: message` of a Python exception.
fn describe(py: Python<'_>, err: &PyErr) -> String {
    let name = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    format!("{name}: {}", err.value(py))
}

/// A Python `convert_footprint` function, called for every computation tile when the recipe
/// is made (so that the engine's scheduler never waits for the GIL), its results kept.
pub struct Conversions {
    recipe: Footprint,
    /// Per computation tile (its window in the recipe): the primitive footprints, or why not.
    by_tile: Mutex<HashMap<PixelWindow, Result<Vec<Footprint>, String>>>,
    functions: Vec<Option<Py<PyAny>>>,
}

impl Conversions {
    pub fn new(recipe: Footprint, functions: Vec<Option<Py<PyAny>>>) -> Conversions {
        Conversions {
            recipe,
            by_tile: Mutex::new(HashMap::new()),
            functions,
        }
    }

    /// Converts every tile of `tile_size` now (the GIL is held by the caller).
    pub fn precompute(&self, py: Python<'_>, tile_size: (usize, usize)) {
        if self.functions.iter().all(Option::is_none) {
            return;
        }
        let (tw, th) = tile_size;
        let (w, h) = self.recipe.rsize();
        // Beyond this many tiles, conversions are made when a tile is first computed (the
        // GIL taken briefly then): a whole-planet raster must not cost minutes to declare.
        const MAX_PRECOMPUTED: usize = 100_000;
        if w.div_ceil(tw.max(1)).saturating_mul(h.div_ceil(th.max(1))) > MAX_PRECOMPUTED {
            return;
        }
        let mut by_tile = HashMap::new();
        for row in (0..h).step_by(th.max(1)) {
            for col in (0..w).step_by(tw.max(1)) {
                let window =
                    PixelWindow::new(col as i64, row as i64, tw.min(w - col), th.min(h - row));
                by_tile.insert(window, self.convert(py, &self.recipe.window(window)));
            }
        }
        *self.by_tile.lock().expect("conversions") = by_tile;
    }

    fn convert(&self, py: Python<'_>, tile: &Footprint) -> Result<Vec<Footprint>, String> {
        self.functions
            .iter()
            .map(|f| match f {
                None => Ok(*tile),
                Some(f) => f
                    .bind(py)
                    .call1((PyFootprint(*tile),))
                    .and_then(|fp| Ok(fp.extract::<PyFootprint>()?.0))
                    .map_err(|e| format!("convert_footprint: {}", describe(py, &e))),
            })
            .collect()
    }

    fn lookup(&self, tile: &Footprint) -> Result<Vec<Footprint>, String> {
        let window = tile.window_in(&self.recipe);
        if let Some(found) =
            window.and_then(|w| self.by_tile.lock().expect("conversions").get(&w).cloned())
        {
            return found;
        }
        // A tile not foreseen: the GIL for this one call.
        let converted = Python::try_attach(|py| self.convert(py, tile))
            .unwrap_or_else(|| Err("the Python interpreter is not running".into()));
        if let Some(w) = window {
            self.by_tile
                .lock()
                .expect("conversions")
                .insert(w, converted.clone());
        }
        converted
    }

    fn failure(&self, tile: &Footprint) -> Option<String> {
        self.lookup(tile).err()
    }

    /// The engine's conversion of primitive `slot` (a failed conversion gives the tile itself;
    /// the compute function then reports the failure for that tile).
    pub fn conversion(self: &Arc<Self>, slot: usize) -> Conversion {
        if self.functions.get(slot).is_none_or(Option::is_none) {
            return Conversion::Same;
        }
        let this = self.clone();
        Conversion::Custom(Arc::new(move |tile: &Footprint| match this.lookup(tile) {
            Ok(fps) => fps[slot],
            Err(_) => *tile,
        }))
    }
}
