//! The scheduler: one thread owns the state of every query, fetch, product and tile, and wakes
//! only on messages (a new query, a consumer taking a result, a dropped queue, a finished job) —
//! no polling, no sleeps. Work goes to pools once its inputs are ready, prioritised by the
//! consumer's order; identical in-flight requests are shared, so each tile is computed once.
//!
//! The chain for one window of a query: a *fetch* (raster + read request) needs a *product*
//! (the recipe's pixels over the on-grid window the read touches), which needs *cache tiles*
//! (cached recipes) or *compute tiles*, which need fetches of their primitives. Sources are
//! fetched with one read job. Reads of a cached recipe whose tiles are valid skip all this: they
//! run on the caller's thread ([`direct`]).

mod direct;
pub(crate) mod jobs;
mod tiles;

pub(crate) use direct::Direct;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crossbeam_channel::{Receiver, Sender};

use crate::cache::{Loaded, TileCache, TileSpec};
use crate::dataset::{DatasetOptions, RasterInfo};
use crate::error::{RasterError, Result, TileIndex};
use crate::events::{TileEvent, TileState, Tiling};
use crate::footprint::PixelWindow;
use crate::pool::{Pool, PoolUsage, Priority};
use crate::recipe::{CacheOptions, ComputeFn, Conversion, Recipe};
use crate::resample;
use crate::source::{RasterSource, ReadRequest};
use crate::{Array, DType, Footprint};

pub(crate) type QueryId = u64;
type RasterId = usize;
type FetchId = u64;
type ProductId = u64;

pub(crate) enum NewRaster {
    Source(Arc<dyn RasterSource>),
    Recipe(Box<RecipeNode>),
}

/// A recipe as the scheduler keeps it: primitives by id (no handles, so no cycle keeps the
/// dataset alive).
pub(crate) struct RecipeNode {
    pub name: String,
    pub version: String,
    pub footprint: Footprint,
    pub dtype: DType,
    pub bands: usize,
    pub nodata: Option<f64>,
    pub primitives: Vec<(String, RasterId, Conversion)>,
    pub compute: ComputeFn,
    pub compute_tile: (usize, usize),
    pub cache_options: Option<CacheOptions>,
    pub cache: Option<Arc<TileCache>>,
    pub pool: String,
}

impl RecipeNode {
    pub fn new(recipe: &Recipe) -> Result<RecipeNode> {
        let bad = |what: String| {
            Err(RasterError::Invalid(format!(
                "recipe `{}`: {what}",
                recipe.name
            )))
        };
        if recipe.bands == 0 {
            return bad("needs at least one band".into());
        }
        if recipe.footprint.is_empty() {
            return bad(format!("its footprint {} is empty", recipe.footprint));
        }
        let (w, h) = recipe.compute_tile_size;
        if w == 0 || h == 0 {
            return bad(format!("computation tiles of {w}×{h} pixels"));
        }
        if let Some(c) = &recipe.cache
            && (c.tile_size.0 == 0 || c.tile_size.1 == 0)
        {
            return bad(format!(
                "cache tiles of {}×{} pixels",
                c.tile_size.0, c.tile_size.1
            ));
        }
        let mut names = HashSet::new();
        for p in &recipe.primitives {
            if !names.insert(p.name.as_str()) {
                return bad(format!("two primitives are named `{}`", p.name));
            }
        }
        Ok(RecipeNode {
            name: recipe.name.clone(),
            version: recipe.version.clone(),
            footprint: recipe.footprint,
            dtype: recipe.dtype,
            bands: recipe.bands,
            nodata: recipe.nodata,
            primitives: recipe
                .primitives
                .iter()
                .map(|p| (p.name.clone(), p.raster.id, p.conversion.clone()))
                .collect(),
            compute: recipe.compute.clone(),
            compute_tile: recipe.compute_tile_size,
            cache_options: recipe.cache.clone(),
            cache: None,
            pool: recipe.pool.clone(),
        })
    }

    fn tile_size(&self, tiling: Tiling) -> (usize, usize) {
        match (tiling, &self.cache_options) {
            (Tiling::Cache, Some(c)) => c.tile_size,
            _ => self.compute_tile,
        }
    }

    /// The pixels of tile `t` (tiles shrink at the right and bottom edges).
    fn tile_window(&self, tiling: Tiling, t: TileIndex) -> PixelWindow {
        let (tw, th) = self.tile_size(tiling);
        let (w, h) = (self.footprint.width(), self.footprint.height());
        let (c, r) = (t.col * tw, t.row * th);
        PixelWindow::new(c as i64, r as i64, tw.min(w - c), th.min(h - r))
    }

    /// The tiles of `tiling` that `window` (inside the raster) touches, row by row.
    fn tiles_of(&self, tiling: Tiling, window: PixelWindow) -> Vec<TileIndex> {
        let (tw, th) = self.tile_size(tiling);
        if window.width == 0 || window.height == 0 {
            return Vec::new();
        }
        let (c0, r0) = (window.col as usize / tw, window.row as usize / th);
        let c1 = (window.col as usize + window.width - 1) / tw;
        let r1 = (window.row as usize + window.height - 1) / th;
        (r0..=r1)
            .flat_map(|row| (c0..=c1).map(move |col| TileIndex { col, row }))
            .collect()
    }

    fn fill(&self) -> f64 {
        self.nodata.unwrap_or(0.0)
    }
}

pub(crate) enum Msg {
    AddRaster {
        info: Arc<RasterInfo>,
        raster: NewRaster,
        /// The id, and the reader of a cached recipe's valid tiles.
        reply: Sender<Result<(RasterId, Option<Arc<Direct>>)>>,
    },
    Query {
        raster: RasterId,
        requests: Vec<ReadRequest>,
        max_queue_size: usize,
        results: Sender<Result<Array>>,
        reply: Sender<QueryId>,
    },
    /// The consumer took one result.
    Pulled(QueryId),
    Dropped(QueryId),
    Subscribe(Sender<TileEvent>),
    PoolUsage(Sender<Vec<PoolUsage>>),
    /// A read on the caller's thread validated a cache tile.
    CacheValidated(RasterId, TileIndex),
    Done(Done),
    Shutdown,
}

/// A job's outcome.
pub(crate) enum Done {
    Fetch(FetchId, Result<Arc<Array>>),
    Product(ProductId, Result<Arc<Array>>),
    CacheLoaded(RasterId, TileIndex, Result<Loaded>),
    ComputeStarted(RasterId, TileIndex),
    Computed(RasterId, TileIndex, Result<Arc<Array>>),
    Written(RasterId, TileIndex, Result<Arc<Array>>),
}

enum Node {
    Source(Arc<dyn RasterSource>),
    Recipe(Arc<RecipeNode>),
}

struct RasterEntry {
    info: Arc<RasterInfo>,
    node: Node,
    fingerprint: String,
}

/// Who waits for a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchDep {
    Query(QueryId, usize),
    /// Primitive `slot` of a computation tile.
    Compute(RasterId, TileIndex, usize),
}

struct Fetch {
    raster: RasterId,
    key: FetchKey,
    request: ReadRequest,
    deps: Vec<FetchDep>,
    priority: Priority,
    /// The product it waits for (recipes), or the cancel flag of its read job (sources).
    product: Option<ProductId>,
    cancel: Option<Arc<AtomicBool>>,
}

/// Identical requests in flight are one fetch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FetchKey {
    raster: RasterId,
    gt: [u64; 6],
    size: (usize, usize),
    bands: Vec<usize>,
    interpolation: resample::Interpolation,
    dst_nodata: Option<u64>,
    dtype: Option<DType>,
}

impl FetchKey {
    fn new(raster: RasterId, r: &ReadRequest) -> FetchKey {
        FetchKey {
            raster,
            gt: r.footprint.gt().to_gdal().map(f64::to_bits),
            size: r.footprint.rsize(),
            bands: r.bands.clone(),
            interpolation: r.interpolation,
            dst_nodata: r.dst_nodata.map(f64::to_bits),
            dtype: r.dtype,
        }
    }
}

struct Query {
    raster: RasterId,
    requests: Vec<ReadRequest>,
    max_queue_size: usize,
    next_activate: usize,
    consumed: usize,
    next_send: usize,
    ready: BTreeMap<usize, Result<Arc<Array>>>,
    fetches: HashMap<usize, FetchId>,
    results: Sender<Result<Array>>,
}

pub(crate) struct Sched {
    tx: Sender<Msg>,
    pools: HashMap<String, Pool>,
    rasters: Vec<RasterEntry>,
    queries: HashMap<QueryId, Query>,
    fetches: HashMap<FetchId, Fetch>,
    fetch_index: HashMap<FetchKey, FetchId>,
    products: HashMap<ProductId, tiles::Product>,
    product_index: HashMap<(RasterId, PixelWindow), ProductId>,
    compute: HashMap<(RasterId, TileIndex), tiles::ComputeTile>,
    cache: HashMap<(RasterId, TileIndex), tiles::CacheTile>,
    subscribers: Vec<Sender<TileEvent>>,
    next_id: u64,
}

/// Starts the scheduler thread and the pools.
pub(crate) fn start(
    options: &DatasetOptions,
) -> Result<(Sender<Msg>, std::thread::JoinHandle<()>)> {
    let mut pools = HashMap::new();
    let specs = [
        ("io".to_string(), options.io_threads),
        ("compute".to_string(), options.compute_threads),
    ];
    for (name, threads) in specs.iter().chain(&options.pools) {
        if pools.contains_key(name) {
            return Err(RasterError::Invalid(format!(
                "two pools are named `{name}`"
            )));
        }
        let pool = Pool::new(name, *threads)
            .map_err(|e| RasterError::Io(format!("cannot start pool `{name}`: {e}")))?;
        pools.insert(name.clone(), pool);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let sched = Sched {
        tx: tx.clone(),
        pools,
        rasters: Vec::new(),
        queries: HashMap::new(),
        fetches: HashMap::new(),
        fetch_index: HashMap::new(),
        products: HashMap::new(),
        product_index: HashMap::new(),
        compute: HashMap::new(),
        cache: HashMap::new(),
        subscribers: Vec::new(),
        next_id: 0,
    };
    let thread = std::thread::Builder::new()
        .name("raster-scheduler".into())
        .spawn(move || sched.run(&rx))
        .map_err(|e| RasterError::Io(format!("cannot start the raster scheduler: {e}")))?;
    Ok((tx, thread))
}

impl Sched {
    fn run(mut self, rx: &Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::AddRaster {
                    info,
                    raster,
                    reply,
                } => {
                    let _ = reply.send(self.add_raster(info, raster));
                }
                Msg::Query {
                    raster,
                    requests,
                    max_queue_size,
                    results,
                    reply,
                } => {
                    let id = self.id();
                    let _ = reply.send(id);
                    self.start_query(id, raster, requests, max_queue_size, results);
                }
                Msg::Pulled(q) => self.pulled(q),
                Msg::Dropped(q) => self.drop_query(q),
                Msg::Subscribe(tx) => self.subscribers.push(tx),
                Msg::PoolUsage(reply) => {
                    let mut usage: Vec<PoolUsage> = self.pools.values().map(Pool::usage).collect();
                    usage.sort_by(|a, b| a.name.cmp(&b.name));
                    let _ = reply.send(usage);
                }
                Msg::CacheValidated(raster, tile) => {
                    self.validated_elsewhere(raster, tile);
                }
                Msg::Done(done) => self.done(done),
                Msg::Shutdown => break,
            }
        }
        // Pools join their threads when dropped; queued jobs are abandoned.
        for q in self.queries.values() {
            let _ = q
                .results
                .send(Err(RasterError::Internal("the dataset was closed".into())));
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn emit(
        &mut self,
        raster: RasterId,
        tiling: Tiling,
        tile: TileIndex,
        state: TileState,
        message: Option<String>,
    ) {
        if self.subscribers.is_empty() {
            return;
        }
        let event = TileEvent {
            raster: self.rasters[raster].info.name.clone(),
            tiling,
            tile,
            state,
            message,
        };
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    fn submit(
        &self,
        pool: &str,
        priority: Priority,
        cancel: Option<Arc<AtomicBool>>,
        job: impl FnOnce(&Sender<Msg>) + Send + 'static,
    ) {
        let tx = self.tx.clone();
        // Pool names are checked when a recipe is added.
        let pool = &self.pools[pool];
        pool.submit(priority, cancel, move || job(&tx));
    }

    fn add_raster(
        &mut self,
        info: Arc<RasterInfo>,
        raster: NewRaster,
    ) -> Result<(RasterId, Option<Arc<Direct>>)> {
        let id = self.rasters.len();
        let mut direct = None;
        let (node, fingerprint) = match raster {
            NewRaster::Source(source) => {
                let mut h = format!(
                    "source|{}|{:?}|{}|{}|{:?}",
                    info.name, info.footprint, info.dtype, info.bands, info.nodata
                );
                if let Ok(meta) = std::fs::metadata(&info.name) {
                    h.push_str(&format!("|{}|{:?}", meta.len(), meta.modified().ok()));
                }
                (Node::Source(source), fingerprint(&h))
            }
            NewRaster::Recipe(mut recipe) => {
                if !self.pools.contains_key(&recipe.pool) {
                    return Err(RasterError::Invalid(format!(
                        "recipe `{}`: no pool is named `{}` (pools: {})",
                        recipe.name,
                        recipe.pool,
                        self.pool_names()
                    )));
                }
                let mut h = format!(
                    "recipe|{}|{:?}|{}|{}|{:?}|{:?}",
                    recipe.version,
                    recipe.footprint.gt().to_gdal(),
                    recipe.dtype,
                    recipe.bands,
                    recipe.nodata,
                    recipe.footprint.rsize()
                );
                for (name, prim, conversion) in &recipe.primitives {
                    let Some(p) = self.rasters.get(*prim) else {
                        return Err(RasterError::Invalid(format!(
                            "recipe `{}`: primitive `{name}` is unknown",
                            recipe.name
                        )));
                    };
                    h.push_str(&format!(
                        "|{name}:{}:{}",
                        conversion.describe(),
                        p.fingerprint
                    ));
                }
                if let Some(c) = &recipe.cache_options {
                    h.push_str(&format!("|cache {:?}", c.tile_size));
                }
                let fp = fingerprint(&h);
                if let Some(c) = &recipe.cache_options {
                    let spec = TileSpec {
                        dtype: recipe.dtype,
                        bands: recipe.bands,
                        nodata: recipe.nodata,
                    };
                    let cache = TileCache::open(&c.dir, &fp, spec, c.overwrite)?;
                    recipe.cache = Some(Arc::new(cache));
                }
                let recipe = Arc::new(*recipe);
                direct = Direct::new(id, &recipe).map(Arc::new);
                (Node::Recipe(recipe), fp)
            }
        };
        self.rasters.push(RasterEntry {
            info,
            node,
            fingerprint,
        });
        Ok((id, direct))
    }

    fn pool_names(&self) -> String {
        let mut names: Vec<&str> = self.pools.keys().map(String::as_str).collect();
        names.sort();
        names.join(", ")
    }

    // ---- queries ----

    fn start_query(
        &mut self,
        id: QueryId,
        raster: RasterId,
        requests: Vec<ReadRequest>,
        max_queue_size: usize,
        results: Sender<Result<Array>>,
    ) {
        self.queries.insert(
            id,
            Query {
                raster,
                requests,
                max_queue_size,
                next_activate: 0,
                consumed: 0,
                next_send: 0,
                ready: BTreeMap::new(),
                fetches: HashMap::new(),
                results,
            },
        );
        self.activate(id);
    }

    /// Starts the query's next windows while fewer than `max_queue_size` are ahead of the
    /// consumer.
    fn activate(&mut self, id: QueryId) {
        loop {
            let Some(q) = self.queries.get_mut(&id) else {
                return;
            };
            if q.next_activate >= q.requests.len()
                || q.next_activate - q.consumed >= q.max_queue_size
            {
                return;
            }
            let index = q.next_activate;
            q.next_activate += 1;
            let (raster, request) = (q.raster, q.requests[index].clone());
            let fetch = self.fetch(
                raster,
                request,
                FetchDep::Query(id, index),
                (id, index as u64),
            );
            if let Some(q) = self.queries.get_mut(&id)
                && let Some(f) = fetch
            {
                q.fetches.insert(index, f);
            }
        }
    }

    fn pulled(&mut self, id: QueryId) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        q.consumed += 1;
        if q.consumed >= q.requests.len() {
            self.queries.remove(&id);
            return;
        }
        self.activate(id);
    }

    fn query_result(&mut self, id: QueryId, index: usize, result: Result<Arc<Array>>) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        q.fetches.remove(&index);
        q.ready.insert(index, result);
        while let Some(result) = q.ready.remove(&q.next_send) {
            let result = result.map(|a| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()));
            let _ = q.results.send(result);
            q.next_send += 1;
        }
    }

    fn drop_query(&mut self, id: QueryId) {
        let Some(q) = self.queries.remove(&id) else {
            return;
        };
        for (index, fetch) in q.fetches {
            self.forget_fetch(fetch, FetchDep::Query(id, index));
        }
    }

    // ---- fetches ----

    /// Requests `request` of `raster` for `dep`; `None` when answered at once (an error).
    fn fetch(
        &mut self,
        raster: RasterId,
        request: ReadRequest,
        dep: FetchDep,
        priority: Priority,
    ) -> Option<FetchId> {
        let key = FetchKey::new(raster, &request);
        if let Some(&id) = self.fetch_index.get(&key)
            && let Some(f) = self.fetches.get_mut(&id)
        {
            f.deps.push(dep);
            return Some(id);
        }
        let id = self.id();
        self.fetch_index.insert(key.clone(), id);
        self.fetches.insert(
            id,
            Fetch {
                raster,
                key,
                request: request.clone(),
                deps: vec![dep],
                priority,
                product: None,
                cancel: None,
            },
        );
        match &self.rasters[raster].node {
            Node::Source(source) => {
                let source = source.clone();
                let cancel = Arc::new(AtomicBool::new(false));
                self.fetches.get_mut(&id)?.cancel = Some(cancel.clone());
                self.submit("io", priority, Some(cancel), move |tx| {
                    let result = source
                        .read(&request)
                        .map(Arc::new)
                        .map_err(RasterError::from);
                    let _ = tx.send(Msg::Done(Done::Fetch(id, result)));
                });
            }
            Node::Recipe(recipe) => {
                let recipe = recipe.clone();
                let window = needed_window(&recipe, &request);
                if let Some(direct) = Direct::new(raster, &recipe)
                    && window.is_some_and(|w| direct.all_valid(w))
                {
                    // Warm cache: one I/O job reads the tiles' open files, as a caller's thread
                    // would — no product, no per-tile jobs.
                    self.submit("io", priority, None, move |tx| {
                        let result = direct.read(&request, tx).unwrap_or_else(|| {
                            Err(RasterError::Io(format!(
                                "raster `{}`: a cache tile could not be read",
                                direct.name()
                            )))
                        });
                        let _ = tx.send(Msg::Done(Done::Fetch(id, result.map(Arc::new))));
                    });
                    return Some(id);
                }
                match window {
                    Some(window) => {
                        let product = self.product(raster, &recipe, window, id, priority);
                        if let Some(f) = self.fetches.get_mut(&id) {
                            f.product = Some(product);
                        }
                    }
                    // Entirely outside the recipe: nodata, nothing to compute.
                    None => self.finish_fetch(id, None),
                }
            }
        }
        self.fetches.contains_key(&id).then_some(id)
    }

    /// The product of a recipe fetch is ready (or not needed): select bands, resample, convert.
    fn finish_fetch(&mut self, id: FetchId, held: Option<(PixelWindow, Arc<Array>)>) {
        let Some(f) = self.fetches.get(&id) else {
            return;
        };
        let Node::Recipe(recipe) = &self.rasters[f.raster].node else {
            return;
        };
        let request = f.request.clone();
        let source = match answer(recipe, &request, held) {
            Answer::Ready(array) => return self.fetch_done(id, Ok(array)),
            Answer::Read(source) => source,
        };
        let pool = if resample_needed(&recipe.footprint, &request) {
            "compute"
        } else {
            "io"
        };
        self.submit(pool, f.priority, None, move |tx| {
            let result = crate::source::RasterSource::read(&source, &request)
                .map(Arc::new)
                .map_err(RasterError::from);
            let _ = tx.send(Msg::Done(Done::Fetch(id, result)));
        });
    }

    fn fetch_done(&mut self, id: FetchId, result: Result<Arc<Array>>) {
        let Some(f) = self.fetches.remove(&id) else {
            return;
        };
        self.fetch_index.remove(&f.key);
        let mut result = Some(result);
        let last = f.deps.len().saturating_sub(1);
        for (i, dep) in f.deps.into_iter().enumerate() {
            // The last consumer takes the array itself: a query can then hand it over
            // without copying it.
            let result = match i == last {
                true => result.take().expect("taken once, by the last"),
                false => result.clone().expect("kept until the last"),
            };
            match dep {
                FetchDep::Query(q, index) => self.query_result(q, index, result),
                FetchDep::Compute(raster, tile, slot) => {
                    let footprint = f.request.footprint;
                    self.primitive_ready(raster, tile, slot, footprint, result)
                }
            }
        }
    }

    /// `dep` no longer needs fetch `id`; a fetch nobody needs is cancelled.
    fn forget_fetch(&mut self, id: FetchId, dep: FetchDep) {
        let Some(f) = self.fetches.get_mut(&id) else {
            return;
        };
        f.deps.retain(|d| *d != dep);
        if !f.deps.is_empty() {
            return;
        }
        let Some(f) = self.fetches.remove(&id) else {
            return;
        };
        self.fetch_index.remove(&f.key);
        if let Some(c) = f.cancel {
            c.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if let Some(p) = f.product {
            self.forget_product(p, id);
        }
    }

    fn done(&mut self, done: Done) {
        match done {
            Done::Fetch(id, result) => self.fetch_done(id, result),
            Done::Product(id, result) => self.product_done(id, result),
            Done::CacheLoaded(raster, tile, result) => self.cache_loaded(raster, tile, result),
            Done::ComputeStarted(raster, tile) => self.compute_started(raster, tile),
            Done::Computed(raster, tile, result) => self.computed(raster, tile, result),
            Done::Written(raster, tile, result) => self.written(raster, tile, result),
        }
    }
}

fn fingerprint(text: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// How a recipe read is answered from its product (the pixels of [`needed_window`], if any).
enum Answer {
    /// The product is exactly the answer: no copy, no job.
    Ready(Arc<Array>),
    /// Read from the product like a file: band selection, dtype, nodata, resampling.
    Read(jobs::ArraySource),
}

fn answer(
    recipe: &RecipeNode,
    request: &ReadRequest,
    held: Option<(PixelWindow, Arc<Array>)>,
) -> Answer {
    if let Some((window, array)) = &held
        && is_plain_copy(recipe, request, *window)
    {
        return Answer::Ready(array.clone());
    }
    Answer::Read(jobs::ArraySource {
        name: PathBuf::from(format!("raster `{}`", recipe.name)),
        footprint: recipe.footprint,
        dtype: recipe.dtype,
        bands: recipe.bands,
        nodata: recipe.nodata,
        held,
    })
}

/// Whether `request` asks for exactly the pixels of `window`, all bands in order, as stored.
fn is_plain_copy(recipe: &RecipeNode, request: &ReadRequest, window: PixelWindow) -> bool {
    let same_nodata = match (request.dst_nodata, recipe.nodata) {
        (None, _) => true,
        (Some(a), Some(b)) => a == b || (a.is_nan() && b.is_nan()),
        (Some(_), None) => false,
    };
    crate::source::grid_offset(&recipe.footprint.gt(), &request.footprint)
        == Some((window.col, window.row))
        && request.footprint.rsize() == (window.width, window.height)
        && request.bands.iter().copied().eq(0..recipe.bands)
        && request.dtype.is_none_or(|d| d == recipe.dtype)
        && same_nodata
}

fn resample_needed(raster: &Footprint, request: &ReadRequest) -> bool {
    crate::source::grid_offset(&raster.gt(), &request.footprint).is_none()
}

/// The pixels of the recipe (inside it) a read touches: the window itself on the grid, the
/// kernel's reach off it; `None` when it touches nothing.
fn needed_window(recipe: &RecipeNode, request: &ReadRequest) -> Option<PixelWindow> {
    let fp = &recipe.footprint;
    let (w, h) = fp.rsize();
    match crate::source::grid_offset(&fp.gt(), &request.footprint) {
        Some((col, row)) => PixelWindow::new(
            col,
            row,
            request.footprint.width(),
            request.footprint.height(),
        )
        .clip_to(w, h),
        None => {
            let s = resample::source_window(fp, &request.footprint, request.interpolation)?;
            PixelWindow::new(s.col, s.row, s.width, s.height).clip_to(w, h)
        }
    }
}
