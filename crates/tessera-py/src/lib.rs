//! Python bindings of Tessera (the `tessera._native` module of the `tessera` wheel): buzzard's
//! raster API over tessera-raster, and pipelines run in this process on the embedded defaults.
//! Bindings only: no engine logic lives here.

mod arrays;
mod compute;
mod dataset;
mod events;
mod footprint;
mod pipelines;
mod recipes;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<footprint::PyFootprint>()?;
    m.add_class::<dataset::PyDataset>()?;
    m.add_class::<dataset::PyRaster>()?;
    m.add_class::<dataset::PyQueue>()?;
    m.add_class::<events::PyEvents>()?;
    m.add_function(wrap_pyfunction!(pipelines::run_local, m)?)?;
    m.add_function(wrap_pyfunction!(pipelines::resume_local, m)?)?;
    m.add_function(wrap_pyfunction!(pipelines::object_path, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
