//! `tessera.Footprint`: tessera-raster's footprint with buzzard's constructor, properties and
//! method names.

use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use tessera_raster::{BoundaryEffect, BoundaryEffectLocus, Footprint, GeoTransform};

/// A rectangle of pixels placed in space (immutable, hashable).
#[pyclass(
    frozen,
    eq,
    hash,
    from_py_object,
    name = "Footprint",
    module = "tessera"
)]
#[derive(Clone, Copy, PartialEq)]
pub struct PyFootprint(pub Footprint);

impl std::hash::Hash for PyFootprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for v in self.0.gt().to_gdal() {
            v.to_bits().hash(state);
        }
        self.0.rsize().hash(state);
    }
}

/// A numpy vector, as buzzard gives its footprints' coordinates (so `fp.tl + 1` is arithmetic).
fn vector<'py, const N: usize>(py: Python<'py>, values: [f64; N]) -> PyResult<Bound<'py, PyAny>> {
    Ok(numpy::PyArray1::from_slice(py, &values).into_any())
}

fn int_vector<'py>(py: Python<'py>, values: [usize; 2]) -> PyResult<Bound<'py, PyAny>> {
    let values = values.map(|v| v as i64);
    Ok(numpy::PyArray1::from_slice(py, &values).into_any())
}

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn effect(name: &str) -> PyResult<BoundaryEffect> {
    BoundaryEffect::parse(name).ok_or_else(|| {
        let names: Vec<&str> = BoundaryEffect::ALL.iter().map(|e| e.name()).collect();
        PyValueError::new_err(format!(
            "boundary_effect `{name}` is not one of {}",
            names.join(", ")
        ))
    })
}

fn locus(name: &str) -> PyResult<BoundaryEffectLocus> {
    BoundaryEffectLocus::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "boundary_effect_locus `{name}` is not one of tl, tr, br, bl"
        ))
    })
}

/// A 2-d numpy object array of footprints, `rows × cols` (what buzzard's `tile` returns).
fn grid<'py>(py: Python<'py>, tiles: tessera_raster::Tiles) -> PyResult<Bound<'py, PyAny>> {
    let rows: Vec<Vec<PyFootprint>> = (0..tiles.rows())
        .map(|r| {
            (0..tiles.cols())
                .map(|c| PyFootprint(*tiles.get(r, c).expect("inside the tiling")))
                .collect()
        })
        .collect();
    let numpy = py.import("numpy")?;
    let out = numpy.call_method1("empty", ((tiles.rows(), tiles.cols()), "object"))?;
    for (r, row) in rows.into_iter().enumerate() {
        for (c, fp) in row.into_iter().enumerate() {
            out.set_item((r, c), fp)?;
        }
    }
    Ok(out)
}

/// Applies `f` to every (x, y) pair of a `(..., 2)` array-like, keeping its shape.
fn map_pairs<'py>(
    py: Python<'py>,
    xy: &Bound<'py, PyAny>,
    f: impl Fn(f64, f64) -> (f64, f64),
) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let numpy = py.import("numpy")?;
    let array = numpy.call_method1("array", (xy, "float64"))?;
    let array = array.cast_into::<PyArrayDyn<f64>>()?;
    if array.shape().last() != Some(&2) {
        return Err(PyValueError::new_err(format!(
            "coordinates must have a last dimension of 2 (x, y), not shape {:?}",
            array.shape()
        )));
    }
    {
        let mut view = array.readwrite();
        let values = view.as_slice_mut().map_err(value_error)?;
        for pair in values.chunks_exact_mut(2) {
            let (a, b) = f(pair[0], pair[1]);
            pair[0] = a;
            pair[1] = b;
        }
    }
    Ok(array)
}

impl PyFootprint {
    /// Tiles of `size` (extend at the edges, buzzard's default) as a numpy object array.
    pub fn tile_with<'py>(
        &self,
        py: Python<'py>,
        size: (usize, usize),
    ) -> PyResult<Bound<'py, PyAny>> {
        let tiles = self
            .0
            .tile(
                size,
                (0, 0),
                BoundaryEffect::Shrink,
                BoundaryEffectLocus::parse("br").expect("br"),
            )
            .map_err(value_error)?;
        grid(py, tiles)
    }

    /// A footprint, or a geometry's bounding box on self's grid (rounded outwards).
    fn footprint_of(&self, other: &Bound<'_, PyAny>) -> PyResult<Footprint> {
        if let Ok(fp) = other.extract::<PyFootprint>() {
            return Ok(fp.0);
        }
        let Ok(bounds) = other
            .getattr("bounds")
            .and_then(|b| b.extract::<[f64; 4]>())
        else {
            return Err(PyTypeError::new_err(format!(
                "expected a Footprint or a geometry with `bounds`, not {}",
                other.get_type().name()?
            )));
        };
        let [minx, miny, maxx, maxy] = bounds;
        let corners = [(minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy)];
        let (mut c0, mut r0, mut c1, mut r1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in corners {
            let (c, r) = self.0.spatial_to_pixel(x, y);
            (c0, r0, c1, r1) = (c0.min(c), r0.min(r), c1.max(c), r1.max(r));
        }
        let (c0, r0) = (c0.floor() as i64, r0.floor() as i64);
        let (c1, r1) = (c1.ceil() as i64, r1.ceil() as i64);
        if c1 <= c0 || r1 <= r0 {
            return Err(PyValueError::new_err(format!(
                "the geometry's bounds {bounds:?} cover no pixel of {}",
                self.0
            )));
        }
        Ok(self.0.window(tessera_raster::PixelWindow::new(
            c0,
            r0,
            (c1 - c0) as usize,
            (r1 - r0) as usize,
        )))
    }

    pub fn repr(&self) -> String {
        let (x, y) = self.0.tl();
        let (w, h) = self.0.size();
        let (cols, rows) = self.0.rsize();
        format!("Footprint(tl=({x}, {y}), size=({w}, {h}), rsize=({cols}, {rows}))")
    }
}

#[pymethods]
impl PyFootprint {
    /// buzzard's constructor: `Footprint(tl=(x, y), size=(w, h), rsize=(cols, rows))` (north
    /// up) or `Footprint(gt=(6 numbers), rsize=(cols, rows))`.
    #[new]
    #[pyo3(signature = (*, gt=None, rsize=None, tl=None, size=None))]
    fn new(
        gt: Option<[f64; 6]>,
        rsize: Option<[usize; 2]>,
        tl: Option<[f64; 2]>,
        size: Option<[f64; 2]>,
    ) -> PyResult<Self> {
        let Some([cols, rows]) = rsize else {
            return Err(PyTypeError::new_err(
                "Footprint needs rsize=(columns, rows)",
            ));
        };
        let gt = match (gt, tl, size) {
            (Some(gt), None, None) => gt,
            (None, Some([x, y]), Some([w, h])) => {
                if !(w > 0.0 && h > 0.0) {
                    return Err(value_error(format!(
                        "size ({w}, {h}): both must be positive (the spatial width and height)"
                    )));
                }
                if cols == 0 || rows == 0 {
                    return Err(value_error(format!(
                        "rsize ({cols}, {rows}) is empty: both sizes must be at least 1"
                    )));
                }
                [x, w / cols as f64, 0.0, y, 0.0, -h / rows as f64]
            }
            _ => {
                return Err(PyTypeError::new_err(
                    "Footprint takes gt= and rsize=, or tl=, size= and rsize=",
                ));
            }
        };
        Footprint::new(GeoTransform::from_gdal(gt), cols, rows)
            .map(PyFootprint)
            .map_err(value_error)
    }

    /// `(columns, rows)` in pixels.
    #[getter]
    fn rsize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (w, h) = self.0.rsize();
        int_vector(py, [w, h])
    }
    #[getter]
    fn rw(&self) -> usize {
        self.0.width()
    }
    #[getter]
    fn rh(&self) -> usize {
        self.0.height()
    }
    /// numpy's `(rows, columns)`.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.0.height(), self.0.width())
    }
    #[getter]
    fn rarea(&self) -> usize {
        self.0.len()
    }
    /// Spatial `(width, height)`.
    #[getter]
    fn size<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (w, h) = self.0.size();
        vector(py, [w, h])
    }
    #[getter]
    fn w(&self) -> f64 {
        self.0.size().0
    }
    #[getter]
    fn h(&self) -> f64 {
        self.0.size().1
    }
    #[getter]
    fn area(&self) -> f64 {
        self.0.area()
    }
    #[getter]
    fn tl<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (x, y) = self.0.tl();
        vector(py, [x, y])
    }
    #[getter]
    fn tlx(&self) -> f64 {
        self.0.tl().0
    }
    #[getter]
    fn tly(&self) -> f64 {
        self.0.tl().1
    }
    #[getter]
    fn brx(&self) -> f64 {
        self.0.br().0
    }
    #[getter]
    fn bry(&self) -> f64 {
        self.0.br().1
    }
    #[getter]
    fn rsizex(&self) -> usize {
        self.0.width()
    }
    #[getter]
    fn rsizey(&self) -> usize {
        self.0.height()
    }
    #[getter]
    fn sizex(&self) -> f64 {
        self.0.size().0
    }
    #[getter]
    fn sizey(&self) -> f64 {
        self.0.size().1
    }
    #[getter]
    fn tr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (x, y) = self.0.tr();
        vector(py, [x, y])
    }
    #[getter]
    fn br<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (x, y) = self.0.br();
        vector(py, [x, y])
    }
    #[getter]
    fn bl<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (x, y) = self.0.bl();
        vector(py, [x, y])
    }
    /// The centre.
    #[getter]
    fn c<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (x, y) = self.0.center();
        vector(py, [x, y])
    }
    /// Positive pixel `(width, height)`.
    #[getter]
    fn pxsize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (x, y) = self.0.pixel_size();
        vector(py, [x, y])
    }
    /// Signed pixel `(width, height)` (`gt[1]`, `gt[5]`; negative height when north up).
    #[getter]
    fn scale<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (x, y) = self.0.scale();
        vector(py, [x, y])
    }
    #[getter]
    fn pxsizex(&self) -> f64 {
        self.0.pixel_size().0
    }
    #[getter]
    fn pxsizey(&self) -> f64 {
        self.0.pixel_size().1
    }
    #[getter]
    fn gt<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        vector(py, self.0.gt().to_gdal())
    }
    /// `(minx, maxx, miny, maxy)`, buzzard's order.
    #[getter]
    fn extent<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let e = self.0.extent();
        vector(py, [e.minx, e.maxx, e.miny, e.maxy])
    }
    /// `(minx, miny, maxx, maxy)`, shapely's order.
    #[getter]
    fn bounds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        vector(py, self.0.bounds())
    }
    /// The four corners, `tl, tr, br, bl`, as a `(4, 2)` numpy array.
    #[getter]
    fn coords<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let corners: Vec<[f64; 2]> = self.0.corners().iter().map(|&(x, y)| [x, y]).collect();
        py.import("numpy")?.call_method1("array", (corners,))
    }

    /// Grown by `left` pixels on every side, or by each side's count.
    #[pyo3(signature = (left, right=None, top=None, bottom=None))]
    fn dilate(
        &self,
        left: i64,
        right: Option<i64>,
        top: Option<i64>,
        bottom: Option<i64>,
    ) -> PyResult<Self> {
        let (r, t, b) = (
            right.unwrap_or(left),
            top.unwrap_or(left),
            bottom.unwrap_or(left),
        );
        self.0
            .dilate_sides(left, r, t, b)
            .map(PyFootprint)
            .map_err(value_error)
    }

    /// Shrunk by `left` pixels on every side, or by each side's count.
    #[pyo3(signature = (left, right=None, top=None, bottom=None))]
    fn erode(
        &self,
        left: i64,
        right: Option<i64>,
        top: Option<i64>,
        bottom: Option<i64>,
    ) -> PyResult<Self> {
        let (r, t, b) = (
            right.unwrap_or(left),
            top.unwrap_or(left),
            bottom.unwrap_or(left),
        );
        self.0
            .dilate_sides(-left, -r, -t, -b)
            .map(PyFootprint)
            .map_err(value_error)
    }

    /// The pixels of columns `startx..endx` and rows `starty..endy` (Python slice rules:
    /// negative counts from the end, `None` for the edge).
    #[pyo3(signature = (startx=None, starty=None, endx=None, endy=None))]
    fn clip(
        &self,
        startx: Option<i64>,
        starty: Option<i64>,
        endx: Option<i64>,
        endy: Option<i64>,
    ) -> PyResult<Self> {
        self.0
            .clip(
                startx.unwrap_or(0),
                starty.unwrap_or(0),
                endx.unwrap_or(i64::MAX),
                endy.unwrap_or(i64::MAX),
            )
            .map(PyFootprint)
            .map_err(value_error)
    }

    /// The part shared with every footprint or geometry given (anything with shapely's
    /// `bounds`: its bounding box, rounded outwards to self's pixels), on self's grid.
    #[pyo3(signature = (*others, **options))]
    fn intersection(
        &self,
        others: &Bound<'_, PyTuple>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if let Some(options) = options {
            for (key, value) in options.iter() {
                let key: String = key.extract()?;
                let named = |v: &Bound<'_, PyAny>| {
                    v.extract::<String>()
                        .is_ok_and(|v| v == "self" || v == "auto")
                };
                let own_scale = |v: &Bound<'_, PyAny>| {
                    let (x, y) = self.0.scale();
                    v.extract::<[f64; 2]>().is_ok_and(|[a, b]| a == x && b == y)
                };
                let supported = match key.as_str() {
                    "scale" => named(&value) || own_scale(&value),
                    "rotation" | "alignment" => named(&value),
                    "homogeneous" => {
                        if value.is_truthy()? {
                            return Err(PyValueError::new_err(
                                "intersection: homogeneous=True is not supported (Tessera's \
                                 footprints have no rotation to check)",
                            ));
                        }
                        true
                    }
                    _ => false,
                };
                if !supported {
                    return Err(PyValueError::new_err(format!(
                        "intersection: `{key}={value}` is not supported: the result is on \
                         self's grid (build another Footprint for another resolution)"
                    )));
                }
            }
        }
        let mut out = self.0;
        for other in others.iter() {
            let other = self.footprint_of(&other)?;
            out = out.intersection(&other).ok_or_else(|| {
                PyValueError::new_err(format!("{} and {} share no area", self.0, other))
            })?;
        }
        Ok(PyFootprint(out))
    }

    fn __and__(&self, other: &Bound<'_, PyAny>) -> PyResult<Self> {
        let other = self.footprint_of(other)?;
        self.0
            .intersection(&other)
            .map(PyFootprint)
            .ok_or_else(|| PyValueError::new_err(format!("{} and {} share no area", self.0, other)))
    }

    /// Whether `other`'s pixels lie on self's grid (same size and rotation, whole offsets).
    fn same_grid(&self, other: PyFootprint) -> bool {
        self.0.same_grid(&other.0)
    }

    /// Equal within the coordinates' precision (buzzard's `almost_equals`).
    fn almost_equals(&self, other: PyFootprint) -> bool {
        self.0.almost_equals(&other.0)
    }

    /// Moved so that its top-left corner is at `tl`.
    #[pyo3(name = "move")]
    fn move_to(&self, tl: [f64; 2]) -> PyResult<Self> {
        if !tl.iter().all(|v| v.is_finite()) {
            return Err(value_error(format!("move: tl {tl:?} is not finite")));
        }
        Ok(PyFootprint(self.0.move_to(tl[0], tl[1])))
    }

    /// Tiles of `size = (columns, rows)` pixels: a `(rows, columns)` numpy array of footprints.
    #[pyo3(signature = (size, overlapx=0, overlapy=0, boundary_effect="extend", boundary_effect_locus="br"))]
    fn tile<'py>(
        &self,
        py: Python<'py>,
        size: (usize, usize),
        overlapx: usize,
        overlapy: usize,
        boundary_effect: &str,
        boundary_effect_locus: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tiles = self
            .0
            .tile(
                size,
                (overlapx, overlapy),
                effect(boundary_effect)?,
                locus(boundary_effect_locus)?,
            )
            .map_err(value_error)?;
        grid(py, tiles)
    }

    /// `rowcount × colcount` tiles covering self.
    #[pyo3(signature = (rowcount, colcount, overlapx=0, overlapy=0, boundary_effect="extend", boundary_effect_locus="br"))]
    #[allow(clippy::too_many_arguments)] // buzzard's signature
    fn tile_count<'py>(
        &self,
        py: Python<'py>,
        rowcount: usize,
        colcount: usize,
        overlapx: usize,
        overlapy: usize,
        boundary_effect: &str,
        boundary_effect_locus: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tiles = self
            .0
            .tile_count(
                colcount,
                rowcount,
                (overlapx, overlapy),
                effect(boundary_effect)?,
                locus(boundary_effect_locus)?,
            )
            .map_err(value_error)?;
        grid(py, tiles)
    }

    /// Spatial coordinates `(..., 2)` to pixel coordinates: `op=` (numpy's floor when not
    /// given; `None` keeps fractions) then `dtype` (int64 after an `op`, float64 without).
    #[pyo3(signature = (xy, dtype=None, **kwargs))]
    fn spatial_to_raster<'py>(
        &self,
        py: Python<'py>,
        xy: &Bound<'py, PyAny>,
        dtype: Option<&Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut op = None;
        if let Some(kwargs) = kwargs {
            for (key, value) in kwargs.iter() {
                match key.extract::<String>()?.as_str() {
                    "op" => op = Some(value),
                    other => {
                        return Err(PyTypeError::new_err(format!(
                            "spatial_to_raster() got an unexpected keyword argument '{other}'"
                        )));
                    }
                }
            }
        }
        let fp = self.0;
        let pixels = map_pairs(py, xy, |x, y| fp.spatial_to_pixel(x, y))?.into_any();
        let rounded = match op {
            None => py.import("numpy")?.call_method1("floor", (pixels,))?,
            Some(op) if op.is_none() => {
                return match dtype {
                    Some(d) => pixels.call_method1("astype", (d,)),
                    None => Ok(pixels),
                };
            }
            Some(op) => op.call1((pixels,))?,
        };
        match dtype {
            Some(d) => rounded.call_method1("astype", (d,)),
            None => rounded.call_method1("astype", ("int64",)),
        }
    }

    /// Pixel coordinates `(..., 2)` to spatial coordinates.
    fn raster_to_spatial<'py>(
        &self,
        py: Python<'py>,
        xy: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fp = self.0;
        Ok(map_pairs(py, xy, |c, r| fp.pixel_to_spatial(c, r))?.into_any())
    }

    fn __repr__(&self) -> String {
        self.repr()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        // Pickled by gt and rsize, for process pools.
        let rebuild = py.import("tessera")?.getattr("_footprint_from_gt")?;
        Ok((
            rebuild,
            (self.0.gt().to_gdal(), self.0.rsize())
                .into_pyobject(py)?
                .into_any(),
        ))
    }
}
