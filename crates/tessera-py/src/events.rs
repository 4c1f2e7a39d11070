//! `Dataset.subscribe()`: the raster engine's tile events as Python dicts.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tessera_raster::TileEvent;

/// Tile events of a dataset, as dicts.
#[pyclass(frozen, name = "TileEvents", module = "tessera")]
pub struct PyEvents {
    pub(crate) rx: crossbeam_channel::Receiver<TileEvent>,
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
