//! The public face of the engine: a `Dataset` owns the pools and the scheduler thread; rasters
//! (GeoTIFF files, any `RasterSource`, recipes) are added to it and read through `Raster`
//! handles with `get_data`, `iter_data` and `queue_data`. A single read of a cached recipe whose
//! tiles are valid runs on the caller's thread, without the scheduler.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use crate::error::{RasterError, Result};
use crate::events::TileEvent;
use crate::geotiff::GeoTiff;
use crate::pool::PoolUsage;
use crate::recipe::Recipe;
use crate::scheduler::{self, Msg, QueryId};
use crate::source::{RasterSource, ReadRequest};
use crate::{Array, DType, Footprint};

/// Threads of the dataset's pools.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// Reading and writing files (sources, cache tiles).
    pub io_threads: usize,
    /// Running compute functions, resampling, assembling windows.
    pub compute_threads: usize,
    /// More pools recipes can name (e.g. `("gpu", 1)`).
    pub pools: Vec<(String, usize)>,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        DatasetOptions {
            io_threads: cores.max(2),
            compute_threads: cores,
            pools: Vec::new(),
        }
    }
}

pub(crate) struct Shared {
    pub tx: Sender<Msg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Shared {
    /// Stops the scheduler and waits for it (once; later calls do nothing).
    fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What every raster has.
#[derive(Debug, Clone, PartialEq)]
pub struct RasterInfo {
    pub name: String,
    pub footprint: Footprint,
    pub dtype: DType,
    pub bands: usize,
    pub nodata: Option<f64>,
}

/// A set of rasters sharing pools and a scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Dataset {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dataset")
    }
}

/// A raster of a dataset. Cheap to clone; keeps the dataset alive.
#[derive(Clone)]
pub struct Raster {
    shared: Arc<Shared>,
    pub(crate) id: usize,
    info: Arc<RasterInfo>,
    /// Cached recipes: reads of valid tiles without the scheduler.
    pub(crate) direct: Option<Arc<scheduler::Direct>>,
    recipe: bool,
}

impl std::fmt::Debug for Raster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Raster({})", self.info.name)
    }
}

fn gone() -> RasterError {
    RasterError::Internal("the dataset's scheduler has stopped".into())
}

impl Dataset {
    pub fn new(options: DatasetOptions) -> Result<Dataset> {
        let (tx, thread) = scheduler::start(&options)?;
        Ok(Dataset {
            shared: Arc::new(Shared {
                tx,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Opens a GeoTIFF file.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Raster> {
        let path = path.as_ref();
        let source = GeoTiff::open(path)?;
        self.add_source(&path.display().to_string(), Arc::new(source))
    }

    /// Adds any source (a GDAL dataset, an in-memory raster…).
    pub fn add_source(&self, name: &str, source: Arc<dyn RasterSource>) -> Result<Raster> {
        let info = RasterInfo {
            name: name.to_string(),
            footprint: source.footprint(),
            dtype: source.dtype(),
            bands: source.bands(),
            nodata: source.nodata(),
        };
        self.register(info, scheduler::NewRaster::Source(source))
    }

    /// Adds a recipe; its primitives must be rasters of this dataset.
    pub fn create_recipe(&self, recipe: Recipe) -> Result<Raster> {
        for p in &recipe.primitives {
            if !Arc::ptr_eq(&p.raster.shared, &self.shared) {
                return Err(RasterError::Invalid(format!(
                    "recipe `{}`: primitive `{}` belongs to another dataset",
                    recipe.name, p.name
                )));
            }
        }
        let info = RasterInfo {
            name: recipe.name.clone(),
            footprint: recipe.footprint,
            dtype: recipe.dtype,
            bands: recipe.bands,
            nodata: recipe.nodata,
        };
        let node = scheduler::RecipeNode::new(&recipe)?;
        self.register(info, scheduler::NewRaster::Recipe(Box::new(node)))
    }

    fn register(&self, info: RasterInfo, raster: scheduler::NewRaster) -> Result<Raster> {
        let recipe = matches!(raster, scheduler::NewRaster::Recipe(_));
        let (reply, rx) = crossbeam_channel::bounded(1);
        let info = Arc::new(info);
        self.shared
            .tx
            .send(Msg::AddRaster {
                info: info.clone(),
                raster,
                reply,
            })
            .map_err(|_| gone())?;
        let (id, direct) = rx.recv().map_err(|_| gone())??;
        Ok(Raster {
            shared: self.shared.clone(),
            id,
            info,
            direct,
            recipe,
        })
    }

    /// Tile events from now on (dropped receivers are forgotten).
    pub fn subscribe(&self) -> Receiver<TileEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let _ = self.shared.tx.send(Msg::Subscribe(tx));
        rx
    }

    /// Stops the scheduler now, whoever still holds a raster of the dataset: their reads fail
    /// from then on, and the recipes (and the compute functions they hold) are dropped.
    pub fn close(&self) {
        self.shared.shutdown();
    }

    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        if self.shared.tx.send(Msg::PoolUsage(reply)).is_err() {
            return Vec::new();
        }
        rx.recv().unwrap_or_default()
    }
}

impl Raster {
    pub fn info(&self) -> &RasterInfo {
        &self.info
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn footprint(&self) -> Footprint {
        self.info.footprint
    }

    pub fn dtype(&self) -> DType {
        self.info.dtype
    }

    pub fn bands(&self) -> usize {
        self.info.bands
    }

    pub fn nodata(&self) -> Option<f64> {
        self.info.nodata
    }

    /// Every band over `window` (on the raster's grid or not, inside it or not).
    pub fn get_data(&self, window: &Footprint) -> Result<Array> {
        self.read(self.request(window))
    }

    /// A read with every option ([`ReadRequest`]: bands, interpolation, dst_nodata, dtype).
    pub fn read(&self, request: ReadRequest) -> Result<Array> {
        if let Some(result) = self.read_cached(&request) {
            return result;
        }
        let mut queue = self.queue_requests(vec![request], 1);
        queue
            .next()
            .unwrap_or_else(|| Err(RasterError::Internal("no result".into())))
    }

    /// The read of a cached recipe whose tiles are all valid on disk, on this thread without
    /// the scheduler; `None` when it needs the scheduler (a tile to compute or validate, or
    /// not a cached recipe).
    pub fn read_cached(&self, request: &ReadRequest) -> Option<Result<Array>> {
        self.direct.as_ref()?.read(request, &self.shared.tx)
    }

    /// Whether this raster is computed (a recipe), not read from a source.
    pub fn is_recipe(&self) -> bool {
        self.recipe
    }

    /// All bands of `window`, nearest neighbour, the raster's nodata and dtype.
    pub fn request(&self, window: &Footprint) -> ReadRequest {
        ReadRequest::new(*window, (0..self.info.bands).collect())
    }

    /// The windows' arrays in order, computed a few ahead (buzzard's default: 5).
    pub fn iter_data(&self, windows: Vec<Footprint>) -> DataQueue {
        self.queue_data(windows, 5)
    }

    /// The windows' arrays in order, at most `max_queue_size` computed or in progress ahead
    /// of the consumer. Dropping the queue cancels the work not started.
    pub fn queue_data(&self, windows: Vec<Footprint>, max_queue_size: usize) -> DataQueue {
        let requests = windows.iter().map(|w| self.request(w)).collect();
        self.queue_requests(requests, max_queue_size)
    }

    pub fn queue_requests(&self, requests: Vec<ReadRequest>, max_queue_size: usize) -> DataQueue {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (reply, id_rx) = crossbeam_channel::bounded(1);
        let total = requests.len();
        let sent = self.shared.tx.send(Msg::Query {
            raster: self.id,
            requests,
            max_queue_size: max_queue_size.max(1),
            results: tx,
            reply,
        });
        let id = match sent {
            Ok(()) => id_rx.recv().ok(),
            Err(_) => None,
        };
        DataQueue {
            shared: self.shared.clone(),
            id,
            results: rx,
            remaining: total,
        }
    }
}

/// Results of a query, in request order. An iterator; dropping it cancels the rest.
pub struct DataQueue {
    shared: Arc<Shared>,
    id: Option<QueryId>,
    results: Receiver<Result<Array>>,
    remaining: usize,
}

impl std::fmt::Debug for DataQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataQueue({} remaining)", self.remaining)
    }
}

impl DataQueue {
    /// Results ready and not yet taken.
    pub fn ready(&self) -> usize {
        self.results.len()
    }

    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The next result, waiting at most `timeout`: `Err(())` when none came in time (call
    /// again), `Ok(None)` when every result has been taken.
    #[allow(clippy::result_unit_err)] // "not yet" carries nothing
    pub fn next_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> std::result::Result<Option<Result<Array>>, ()> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let Some(id) = self.id else {
            self.remaining = 0;
            return Ok(Some(Err(gone())));
        };
        let result = match self.results.recv_timeout(timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Err(()),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(gone()),
        };
        self.remaining -= 1;
        let _ = self.shared.tx.send(Msg::Pulled(id));
        Ok(Some(result))
    }
}

impl Iterator for DataQueue {
    type Item = Result<Array>;

    fn next(&mut self) -> Option<Result<Array>> {
        if self.remaining == 0 {
            return None;
        }
        let Some(id) = self.id else {
            self.remaining = 0;
            return Some(Err(gone()));
        };
        let result = self.results.recv().unwrap_or_else(|_| Err(gone()));
        self.remaining -= 1;
        let _ = self.shared.tx.send(Msg::Pulled(id));
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl Drop for DataQueue {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let _ = self.shared.tx.send(Msg::Dropped(id));
        }
    }
}
