//! Recipes from Python: buzzard's `create_raster_recipe` / `create_cached_raster_recipe`
//! arguments (primitives as `queue_data` partials, tilings, pools, channels schema) turned into
//! a tessera-raster `Recipe` whose compute function is the Python bridge.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyWeakrefReference};
use tessera_raster::recipe::Recipe;

use crate::arrays::{self, Channels};
use crate::compute::{Bridge, Conversions, PrimitiveView, Runner};
use crate::dataset::{PyDataset, PyRaster};
use crate::footprint::PyFootprint;

/// What `create_raster_recipe` and `create_cached_raster_recipe` share.
pub(crate) struct RecipeArgs<'py> {
    pub(crate) key: Option<String>,
    pub(crate) fp: PyFootprint,
    pub(crate) dtype: Bound<'py, PyAny>,
    pub(crate) channel_count: usize,
    pub(crate) channels_schema: Option<Bound<'py, PyDict>>,
    pub(crate) compute_array: Option<Bound<'py, PyAny>>,
    pub(crate) merge_arrays: Option<Bound<'py, PyAny>>,
    pub(crate) queue_data_per_primitive: Option<Bound<'py, PyDict>>,
    pub(crate) convert_footprint_per_primitive: Option<Bound<'py, PyDict>>,
    pub(crate) computation_pool: Option<Bound<'py, PyAny>>,
    pub(crate) computation_tiles: Option<(usize, usize)>,
    pub(crate) cache: Option<(std::path::PathBuf, bool, (usize, usize))>,
}

/// buzzard's `channels_schema={"nodata": v}` (one value for every channel).
pub(crate) fn nodata_of(schema: Option<&Bound<'_, PyDict>>) -> PyResult<Option<f64>> {
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

impl PyDataset {
    pub(crate) fn recipe(&self, py: Python<'_>, a: RecipeArgs<'_>) -> PyResult<Py<PyRaster>> {
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
pub(crate) fn tile_size(
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

pub(crate) fn refuse_observers(observers: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    match observers {
        Some(o) if !o.is_none() && o.len().unwrap_or(1) > 0 => Err(PyValueError::new_err(
            "debug_observers are not supported: use Dataset.subscribe() for tile events",
        )),
        _ => Ok(()),
    }
}
