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
        // Waited for in slices, with the GIL released, so that Ctrl-C is seen.
        let slice = std::time::Duration::from_millis(100);
        let deadline = timeout
            .map(|t| std::time::Instant::now() + std::time::Duration::from_secs_f64(t.max(0.0)));
        loop {
            let wait = match deadline {
                Some(d) => d
                    .saturating_duration_since(std::time::Instant::now())
                    .min(slice),
                None => slice,
            };
            let rx = self.rx.clone();
            match py.detach(move || rx.recv_timeout(wait)) {
                Ok(e) => return event_dict(py, &e).map(Some),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(None),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                        return Ok(None);
                    }
                    py.check_signals()?;
                }
            }
        }
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
