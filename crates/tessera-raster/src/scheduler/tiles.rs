//! Products (a recipe's pixels over an on-grid window), computation tiles and cache tiles: their
//! states, who waits for them, and how failures and cancellations travel along the chain.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::jobs::{self, Part};
use super::{Done, FetchDep, FetchId, Msg, ProductId, RasterId, RecipeNode, Sched};
use crate::cache::Loaded;
use crate::error::{RasterError, Result, TileIndex};
use crate::events::{TileState, Tiling};
use crate::footprint::PixelWindow;
use crate::pool::Priority;
use crate::recipe::PrimitiveArray;
use crate::source::ReadRequest;
use crate::{Array, Footprint};

pub(super) struct Product {
    raster: RasterId,
    window: PixelWindow,
    fetches: Vec<FetchId>,
    priority: Priority,
    parts: Vec<Part>,
    /// Tiles not delivered yet.
    waiting: Vec<(Tiling, TileIndex)>,
}

/// Who waits for a computation tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ComputeDep {
    Product(ProductId),
    Cache(TileIndex),
}

enum ComputeState {
    Gathering,
    Queued(Arc<AtomicBool>),
    Running,
    Done(Arc<Array>),
}

pub(super) struct ComputeTile {
    footprint: Footprint,
    window: PixelWindow,
    deps: Vec<ComputeDep>,
    primitives: Vec<Option<PrimitiveArray>>,
    fetches: Vec<Option<FetchId>>,
    pending: usize,
    state: ComputeState,
    /// Cache tiles it overlaps that have not received it yet: a computed tile is kept until
    /// they all have, so it is never computed twice.
    hold: HashSet<TileIndex>,
    priority: Priority,
}

enum CacheState {
    Checking,
    Computing {
        pending: usize,
        parts: Vec<Part>,
        tiles: Vec<TileIndex>,
    },
    Writing,
    /// Valid on disk; its file is known to the recipe's `TileCache`.
    Valid,
}

pub(super) struct CacheTile {
    footprint: Footprint,
    window: PixelWindow,
    deps: Vec<ProductId>,
    state: CacheState,
    priority: Priority,
}

impl Sched {
    fn recipe(&self, raster: RasterId) -> Arc<RecipeNode> {
        match &self.rasters[raster].node {
            super::Node::Recipe(r) => r.clone(),
            super::Node::Source(_) => unreachable!("tiles belong to recipes"),
        }
    }

    // ---- products ----

    pub(super) fn product(
        &mut self,
        raster: RasterId,
        recipe: &RecipeNode,
        window: PixelWindow,
        fetch: FetchId,
        priority: Priority,
    ) -> ProductId {
        if let Some(&id) = self.product_index.get(&(raster, window))
            && let Some(p) = self.products.get_mut(&id)
        {
            p.fetches.push(fetch);
            return id;
        }
        let id = self.id();
        self.product_index.insert((raster, window), id);
        self.products.insert(
            id,
            Product {
                raster,
                window,
                fetches: vec![fetch],
                priority,
                parts: Vec::new(),
                waiting: Vec::new(),
            },
        );
        let tiling = if recipe.cache.is_some() {
            Tiling::Cache
        } else {
            Tiling::Compute
        };
        for tile in recipe.tiles_of(tiling, window) {
            let part = match tiling {
                Tiling::Cache => self.cache_tile(raster, recipe, tile, id, priority),
                Tiling::Compute => self
                    .compute_tile(raster, recipe, tile, ComputeDep::Product(id), priority)
                    .map(|a| Part::Memory(recipe.tile_window(Tiling::Compute, tile), a)),
            };
            let Some(p) = self.products.get_mut(&id) else {
                break;
            };
            match part {
                Some(part) => p.parts.push(part),
                None => p.waiting.push((tiling, tile)),
            }
        }
        if self.products.get(&id).is_some_and(|p| p.waiting.is_empty()) {
            self.assemble(id);
        }
        id
    }

    fn product_part(&mut self, id: ProductId, tiling: Tiling, tile: TileIndex, part: Part) {
        let Some(p) = self.products.get_mut(&id) else {
            return;
        };
        p.parts.push(part);
        p.waiting.retain(|w| *w != (tiling, tile));
        if p.waiting.is_empty() {
            self.assemble(id);
        }
    }

    fn assemble(&mut self, id: ProductId) {
        let Some(p) = self.products.get(&id) else {
            return;
        };
        let recipe = self.recipe(p.raster);
        let (window, parts) = (p.window, p.parts.clone());
        self.submit("io", p.priority, None, move |tx| {
            let cache = recipe.cache.as_deref();
            let result = jobs::assemble(
                window,
                recipe.dtype,
                recipe.bands,
                recipe.fill(),
                cache,
                &parts,
            );
            let _ = tx.send(Msg::Done(Done::Product(id, result)));
        });
    }

    fn take_product(&mut self, id: ProductId) -> Option<Product> {
        let p = self.products.remove(&id)?;
        self.product_index.remove(&(p.raster, p.window));
        Some(p)
    }

    pub(super) fn product_done(&mut self, id: ProductId, result: Result<Arc<Array>>) {
        let Some(p) = self.take_product(id) else {
            return;
        };
        for fetch in p.fetches {
            match &result {
                Ok(array) => self.finish_fetch(fetch, Some((p.window, array.clone()))),
                Err(e) => self.fetch_done(fetch, Err(e.clone())),
            }
        }
    }

    fn fail_product(&mut self, id: ProductId, error: &RasterError) {
        let Some(p) = self.take_product(id) else {
            return;
        };
        self.release_product_tiles(id, &p);
        for fetch in p.fetches {
            self.fetch_done(fetch, Err(error.clone()));
        }
    }

    /// Fetch `fetch` no longer needs product `id`.
    pub(super) fn forget_product(&mut self, id: ProductId, fetch: FetchId) {
        let Some(p) = self.products.get_mut(&id) else {
            return;
        };
        p.fetches.retain(|f| *f != fetch);
        if !p.fetches.is_empty() {
            return;
        }
        if let Some(p) = self.take_product(id) {
            self.release_product_tiles(id, &p);
        }
    }

    fn release_product_tiles(&mut self, id: ProductId, p: &Product) {
        for &(tiling, tile) in &p.waiting {
            match tiling {
                Tiling::Cache => self.forget_cache_dep(p.raster, tile, id),
                Tiling::Compute => self.forget_compute_dep(p.raster, tile, ComputeDep::Product(id)),
            }
        }
    }

    // ---- computation tiles ----

    /// The tile's array if computed and still held; otherwise registers `dep` (starting the
    /// tile if new) and returns `None`.
    fn compute_tile(
        &mut self,
        raster: RasterId,
        recipe: &RecipeNode,
        tile: TileIndex,
        dep: ComputeDep,
        priority: Priority,
    ) -> Option<Arc<Array>> {
        let key = (raster, tile);
        if let Some(c) = self.compute.get_mut(&key) {
            if let ComputeState::Done(array) = &c.state {
                let array = array.clone();
                if let ComputeDep::Cache(ct) = dep {
                    c.hold.remove(&ct);
                }
                if c.hold.is_empty() && c.deps.is_empty() {
                    self.compute.remove(&key);
                }
                return Some(array);
            }
            c.deps.push(dep);
            return None;
        }
        let window = recipe.tile_window(Tiling::Compute, tile);
        let footprint = recipe.footprint.window(window);
        let hold = self.cache_tiles_waiting(raster, recipe, window);
        let n = recipe.primitives.len();
        self.compute.insert(
            key,
            ComputeTile {
                footprint,
                window,
                deps: vec![dep],
                primitives: vec![None; n],
                fetches: vec![None; n],
                pending: n,
                state: ComputeState::Gathering,
                hold,
                priority,
            },
        );
        for (slot, (_, prim, conversion)) in recipe.primitives.iter().enumerate() {
            let bands = self.rasters[*prim].info.bands;
            let request = ReadRequest::new(conversion.apply(&footprint), (0..bands).collect());
            let fetch = self.fetch(
                *prim,
                request,
                FetchDep::Compute(raster, tile, slot),
                priority,
            );
            if let Some(c) = self.compute.get_mut(&key) {
                c.fetches[slot] = fetch;
            }
        }
        if n == 0 {
            self.launch_compute(raster, tile);
        }
        None
    }

    /// Cache tiles overlapping `window` that are not valid yet (empty without a cache).
    fn cache_tiles_waiting(
        &self,
        raster: RasterId,
        recipe: &RecipeNode,
        window: PixelWindow,
    ) -> HashSet<TileIndex> {
        if recipe.cache.is_none() {
            return HashSet::new();
        }
        recipe
            .tiles_of(Tiling::Cache, window)
            .into_iter()
            .filter(|t| {
                !matches!(
                    self.cache.get(&(raster, *t)).map(|c| &c.state),
                    Some(CacheState::Valid | CacheState::Writing)
                )
            })
            .collect()
    }

    pub(super) fn primitive_ready(
        &mut self,
        raster: RasterId,
        tile: TileIndex,
        slot: usize,
        footprint: Footprint,
        result: Result<Arc<Array>>,
    ) {
        let array = match result {
            Ok(a) => a,
            Err(e) => return self.fail_compute(raster, tile, &e),
        };
        let name = self.recipe(raster).primitives[slot].0.clone();
        let Some(c) = self.compute.get_mut(&(raster, tile)) else {
            return;
        };
        if c.primitives[slot].is_some() {
            return;
        }
        c.primitives[slot] = Some(PrimitiveArray {
            name,
            footprint,
            array,
        });
        c.fetches[slot] = None;
        c.pending -= 1;
        if c.pending == 0 {
            self.launch_compute(raster, tile);
        }
    }

    fn launch_compute(&mut self, raster: RasterId, tile: TileIndex) {
        let recipe = self.recipe(raster);
        let Some(c) = self.compute.get_mut(&(raster, tile)) else {
            return;
        };
        let cancel = Arc::new(AtomicBool::new(false));
        c.state = ComputeState::Queued(cancel.clone());
        let primitives: Vec<PrimitiveArray> =
            c.primitives.iter_mut().filter_map(Option::take).collect();
        let (footprint, priority) = (c.footprint, c.priority);
        let pool = recipe.pool.clone();
        self.emit(raster, Tiling::Compute, tile, TileState::Queued, None);
        self.submit(&pool, priority, Some(cancel), move |tx| {
            let _ = tx.send(Msg::Done(Done::ComputeStarted(raster, tile)));
            let result = jobs::compute(&recipe, tile, &footprint, &primitives).map(Arc::new);
            let _ = tx.send(Msg::Done(Done::Computed(raster, tile, result)));
        });
    }

    pub(super) fn compute_started(&mut self, raster: RasterId, tile: TileIndex) {
        if let Some(c) = self.compute.get_mut(&(raster, tile)) {
            c.state = ComputeState::Running;
        }
        self.emit(raster, Tiling::Compute, tile, TileState::Computing, None);
    }

    pub(super) fn computed(
        &mut self,
        raster: RasterId,
        tile: TileIndex,
        result: Result<Arc<Array>>,
    ) {
        let array = match result {
            Ok(a) => a,
            Err(e) => return self.fail_compute(raster, tile, &e),
        };
        let key = (raster, tile);
        let recipe = self.recipe(raster);
        if !self.compute.contains_key(&key) {
            // Cancelled after it had started: keep the work for the cache tiles it covers.
            let window = recipe.tile_window(Tiling::Compute, tile);
            let hold = self.cache_tiles_waiting(raster, &recipe, window);
            if hold.is_empty() {
                return;
            }
            self.compute.insert(
                key,
                ComputeTile {
                    footprint: recipe.footprint.window(window),
                    window,
                    deps: Vec::new(),
                    primitives: Vec::new(),
                    fetches: Vec::new(),
                    pending: 0,
                    state: ComputeState::Done(array),
                    hold,
                    priority: (u64::MAX, 0),
                },
            );
            return;
        }
        self.emit(raster, Tiling::Compute, tile, TileState::Delivered, None);
        let Some(c) = self.compute.get_mut(&key) else {
            return;
        };
        c.state = ComputeState::Done(array.clone());
        let deps = std::mem::take(&mut c.deps);
        let window = c.window;
        for dep in &deps {
            if let ComputeDep::Cache(ct) = dep {
                c.hold.remove(ct);
            }
        }
        if c.hold.is_empty() {
            self.compute.remove(&key);
        }
        for dep in deps {
            match dep {
                ComputeDep::Product(p) => self.product_part(
                    p,
                    Tiling::Compute,
                    tile,
                    Part::Memory(window, array.clone()),
                ),
                ComputeDep::Cache(ct) => {
                    self.cache_part(raster, ct, Part::Memory(window, array.clone()))
                }
            }
        }
    }

    fn fail_compute(&mut self, raster: RasterId, tile: TileIndex, error: &RasterError) {
        let Some(c) = self.compute.remove(&(raster, tile)) else {
            return;
        };
        self.emit(
            raster,
            Tiling::Compute,
            tile,
            TileState::Failed,
            Some(error.to_string()),
        );
        for (slot, fetch) in c.fetches.iter().enumerate() {
            if let Some(f) = fetch {
                self.forget_fetch(*f, FetchDep::Compute(raster, tile, slot));
            }
        }
        for dep in c.deps {
            match dep {
                ComputeDep::Product(p) => self.fail_product(p, error),
                ComputeDep::Cache(ct) => self.fail_cache(raster, ct, error),
            }
        }
    }

    fn forget_compute_dep(&mut self, raster: RasterId, tile: TileIndex, dep: ComputeDep) {
        let key = (raster, tile);
        let Some(c) = self.compute.get_mut(&key) else {
            return;
        };
        c.deps.retain(|d| *d != dep);
        if !c.deps.is_empty() {
            return;
        }
        match &c.state {
            ComputeState::Gathering => {}
            ComputeState::Queued(cancel) => cancel.store(true, Ordering::SeqCst),
            // Started or done: its result is kept for the cache (see `computed`).
            ComputeState::Running | ComputeState::Done(_) => return,
        }
        if let Some(c) = self.compute.remove(&key) {
            for (slot, fetch) in c.fetches.iter().enumerate() {
                if let Some(f) = fetch {
                    self.forget_fetch(*f, FetchDep::Compute(raster, tile, slot));
                }
            }
        }
    }

    // ---- cache tiles ----

    fn cache_tile(
        &mut self,
        raster: RasterId,
        recipe: &RecipeNode,
        tile: TileIndex,
        product: ProductId,
        priority: Priority,
    ) -> Option<Part> {
        let key = (raster, tile);
        if self.validated_elsewhere(raster, tile) {
            return Some(Part::File(recipe.tile_window(Tiling::Cache, tile), tile));
        }
        if let Some(c) = self.cache.get_mut(&key) {
            if let CacheState::Valid = c.state {
                return Some(Part::File(c.window, tile));
            }
            c.deps.push(product);
            return None;
        }
        let window = recipe.tile_window(Tiling::Cache, tile);
        let footprint = recipe.footprint.window(window);
        self.cache.insert(
            key,
            CacheTile {
                footprint,
                window,
                deps: vec![product],
                state: CacheState::Checking,
                priority,
            },
        );
        let cache = recipe.cache.clone()?;
        self.emit(raster, Tiling::Cache, tile, TileState::Reading, None);
        self.submit("io", priority, None, move |tx| {
            let result = cache.load(tile, &footprint);
            let _ = tx.send(Msg::Done(Done::CacheLoaded(raster, tile, result)));
        });
        None
    }

    pub(super) fn cache_loaded(
        &mut self,
        raster: RasterId,
        tile: TileIndex,
        result: Result<Loaded>,
    ) {
        let key = (raster, tile);
        let loaded = match result {
            Ok(l) => l,
            Err(e) => return self.fail_cache(raster, tile, &e),
        };
        let recipe = self.recipe(raster);
        match loaded {
            Loaded::Valid(array) => self.valid(raster, tile, Some(Arc::new(array))),
            Loaded::AlreadyValid => self.valid(raster, tile, None),
            Loaded::Missing | Loaded::Corrupt(_) => {
                if let Loaded::Corrupt(reason) = loaded {
                    self.emit(
                        raster,
                        Tiling::Cache,
                        tile,
                        TileState::Reading,
                        Some(format!("corrupt, recomputed: {reason}")),
                    );
                }
                let Some(c) = self.cache.get(&key) else {
                    return;
                };
                if c.deps.is_empty() {
                    self.cache.remove(&key);
                    return;
                }
                let (window, priority) = (c.window, c.priority);
                let tiles = recipe.tiles_of(Tiling::Compute, window);
                if let Some(c) = self.cache.get_mut(&key) {
                    c.state = CacheState::Computing {
                        pending: 0,
                        parts: Vec::new(),
                        tiles: tiles.clone(),
                    };
                }
                for t in tiles {
                    let part = self
                        .compute_tile(raster, &recipe, t, ComputeDep::Cache(tile), priority)
                        .map(|a| Part::Memory(recipe.tile_window(Tiling::Compute, t), a));
                    let Some(CacheTile {
                        state: CacheState::Computing { pending, parts, .. },
                        ..
                    }) = self.cache.get_mut(&key)
                    else {
                        return;
                    };
                    match part {
                        Some(p) => parts.push(p),
                        None => *pending += 1,
                    }
                }
                if let Some(CacheTile {
                    state: CacheState::Computing { pending: 0, .. },
                    ..
                }) = self.cache.get(&key)
                {
                    self.launch_write(raster, tile);
                }
            }
        }
    }

    fn cache_part(&mut self, raster: RasterId, tile: TileIndex, part: Part) {
        let Some(CacheTile {
            state: CacheState::Computing { pending, parts, .. },
            ..
        }) = self.cache.get_mut(&(raster, tile))
        else {
            return;
        };
        parts.push(part);
        *pending -= 1;
        if *pending == 0 {
            self.launch_write(raster, tile);
        }
    }

    fn launch_write(&mut self, raster: RasterId, tile: TileIndex) {
        let recipe = self.recipe(raster);
        let Some(c) = self.cache.get_mut(&(raster, tile)) else {
            return;
        };
        let CacheState::Computing { parts, .. } =
            std::mem::replace(&mut c.state, CacheState::Writing)
        else {
            return;
        };
        let (window, footprint, priority) = (c.window, c.footprint, c.priority);
        let Some(cache) = recipe.cache.clone() else {
            return;
        };
        self.emit(raster, Tiling::Cache, tile, TileState::Writing, None);
        self.submit("io", priority, None, move |tx| {
            let result = jobs::assemble(
                window,
                recipe.dtype,
                recipe.bands,
                recipe.fill(),
                None,
                &parts,
            )
            .and_then(|array| {
                cache.store(tile, &footprint, &array)?;
                Ok(array)
            });
            let _ = tx.send(Msg::Done(Done::Written(raster, tile, result)));
        });
    }

    pub(super) fn written(
        &mut self,
        raster: RasterId,
        tile: TileIndex,
        result: Result<Arc<Array>>,
    ) {
        match result {
            Ok(array) => self.valid(raster, tile, Some(array)),
            Err(e) => self.fail_cache(raster, tile, &e),
        }
    }

    /// Records a cache tile the recipe's `TileCache` knows valid but this scheduler has not seen
    /// (a read on the caller's thread validated it), with the events a load sends; false when
    /// it is not valid or already seen.
    pub(super) fn validated_elsewhere(&mut self, raster: RasterId, tile: TileIndex) -> bool {
        if self.cache.contains_key(&(raster, tile)) {
            return false;
        }
        let recipe = self.recipe(raster);
        if !recipe.cache.as_ref().is_some_and(|c| c.is_valid(tile)) {
            return false;
        }
        let window = recipe.tile_window(Tiling::Cache, tile);
        self.cache.insert(
            (raster, tile),
            CacheTile {
                footprint: recipe.footprint.window(window),
                window,
                deps: Vec::new(),
                state: CacheState::Checking,
                priority: (u64::MAX, 0),
            },
        );
        self.emit(raster, Tiling::Cache, tile, TileState::Reading, None);
        self.valid(raster, tile, None);
        true
    }

    /// A cache tile is on disk (`array`: its pixels, when in memory): its waiting products get
    /// them, computed tiles held for it are released.
    fn valid(&mut self, raster: RasterId, tile: TileIndex, array: Option<Arc<Array>>) {
        let Some(c) = self.cache.get_mut(&(raster, tile)) else {
            return;
        };
        c.state = CacheState::Valid;
        let deps = std::mem::take(&mut c.deps);
        let window = c.window;
        self.emit(raster, Tiling::Cache, tile, TileState::Cached, None);
        let recipe = self.recipe(raster);
        for t in recipe.tiles_of(Tiling::Compute, window) {
            if let Some(ct) = self.compute.get_mut(&(raster, t))
                && matches!(ct.state, ComputeState::Done(_))
            {
                ct.hold.remove(&tile);
                if ct.hold.is_empty() && ct.deps.is_empty() {
                    self.compute.remove(&(raster, t));
                }
            }
        }
        for p in deps {
            let part = match &array {
                Some(a) => Part::Memory(window, a.clone()),
                None => Part::File(window, tile),
            };
            self.product_part(p, Tiling::Cache, tile, part);
        }
    }

    fn fail_cache(&mut self, raster: RasterId, tile: TileIndex, error: &RasterError) {
        let Some(c) = self.cache.remove(&(raster, tile)) else {
            return;
        };
        self.emit(
            raster,
            Tiling::Cache,
            tile,
            TileState::Failed,
            Some(error.to_string()),
        );
        if let CacheState::Computing { tiles, .. } = &c.state {
            for t in tiles {
                self.forget_compute_dep(raster, *t, ComputeDep::Cache(tile));
            }
        }
        for p in c.deps {
            self.fail_product(p, error);
        }
    }

    fn forget_cache_dep(&mut self, raster: RasterId, tile: TileIndex, product: ProductId) {
        let key = (raster, tile);
        let Some(c) = self.cache.get_mut(&key) else {
            return;
        };
        c.deps.retain(|p| *p != product);
        if !c.deps.is_empty() {
            return;
        }
        // Nobody waits: stop computing it unless some of its pixels are already computed
        // (they would be lost); checks and writes run to the end.
        if let CacheState::Computing { parts, tiles, .. } = &c.state
            && parts.is_empty()
        {
            let tiles = tiles.clone();
            self.cache.remove(&key);
            for t in tiles {
                self.forget_compute_dep(raster, t, ComputeDep::Cache(tile));
            }
        }
    }
}
