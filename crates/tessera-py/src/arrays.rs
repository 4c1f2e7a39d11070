//! Pixel arrays between Rust and numpy: results handed to numpy without copying the Rust
//! buffer, compute results and wrapped arrays read from numpy.

use numpy::{Element, PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tessera_raster::{Array, DType, Data, Shape};

/// numpy's name of a data type.
pub fn numpy_name(dtype: DType) -> &'static str {
    match dtype {
        DType::U8 => "uint8",
        DType::U16 => "uint16",
        DType::I16 => "int16",
        DType::U32 => "uint32",
        DType::I32 => "int32",
        DType::F32 => "float32",
        DType::F64 => "float64",
    }
}

/// The data type of anything numpy reads as a dtype (`"float32"`, `np.uint8`, `np.dtype(…)`).
pub fn dtype_of(py: Python<'_>, any: &Bound<'_, PyAny>) -> PyResult<DType> {
    let name: String = py
        .import("numpy")?
        .call_method1("dtype", (any,))?
        .getattr("name")?
        .extract()?;
    DType::parse(&name).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "dtype {name} is not supported: use uint8, uint16, int16, uint32, int32, float32 or float64"
        ))
    })
}

/// `array` as numpy `(rows, columns)` when `flat`, else `(rows, columns, channels)`. The numpy
/// array owns the Rust vector: nothing is copied.
pub fn to_numpy(py: Python<'_>, array: Array, flat: bool) -> PyResult<Bound<'_, PyAny>> {
    let s = array.shape();
    let dims: Vec<usize> = if flat {
        vec![s.height, s.width]
    } else {
        vec![s.height, s.width, s.bands]
    };
    fn shaped<'py, T: Element>(
        py: Python<'py>,
        v: Vec<T>,
        dims: Vec<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyArray1::from_vec(py, v).reshape(dims)?.into_any())
    }
    match array.into_data() {
        Data::U8(v) => shaped(py, v, dims),
        Data::U16(v) => shaped(py, v, dims),
        Data::I16(v) => shaped(py, v, dims),
        Data::U32(v) => shaped(py, v, dims),
        Data::I32(v) => shaped(py, v, dims),
        Data::F32(v) => shaped(py, v, dims),
        Data::F64(v) => shaped(py, v, dims),
    }
}

/// A numpy array-like `(rows, columns)` or `(rows, columns, channels)` as an [`Array`] of
/// `dtype` (cast as numpy casts); `what` names it in errors.
pub fn from_numpy(any: &Bound<'_, PyAny>, dtype: DType, what: &str) -> PyResult<Array> {
    let py = any.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", numpy_name(dtype))?;
    let array = py
        .import("numpy")?
        .call_method("ascontiguousarray", (any,), Some(&kwargs))
        .map_err(|e| PyTypeError::new_err(format!("{what}: not an array of numbers ({e})")))?;
    let shape: Vec<usize> = array.getattr("shape")?.extract()?;
    let shape = match shape.as_slice() {
        [h, w] => Shape::new(*h, *w, 1),
        [h, w, c] => Shape::new(*h, *w, *c),
        other => {
            return Err(PyValueError::new_err(format!(
                "{what}: an array of shape {other:?}; expected (rows, columns) or (rows, columns, channels)"
            )));
        }
    };
    fn values<T: Element + Copy>(array: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
        let typed = array.cast::<PyArrayDyn<T>>()?;
        let read = typed.readonly();
        Ok(read
            .as_slice()
            .map_err(|e| PyValueError::new_err(e.to_string()))?
            .to_vec())
    }
    let data = match dtype {
        DType::U8 => Data::U8(values(&array)?),
        DType::U16 => Data::U16(values(&array)?),
        DType::I16 => Data::I16(values(&array)?),
        DType::U32 => Data::U32(values(&array)?),
        DType::I32 => Data::I32(values(&array)?),
        DType::F32 => Data::F32(values(&array)?),
        DType::F64 => Data::F64(values(&array)?),
    };
    Array::new(shape, data).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// The bytes this machine can hold: its physical memory (a window larger than that is an
/// error, not an allocation that aborts the process).
fn memory_limit() -> u128 {
    static LIMIT: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kb * 1024)
            })
            .unwrap_or(1 << 40)
    })
}

/// Refuses (`MemoryError`) a window whose array would not fit in memory.
pub fn check_size(
    fp: &tessera_raster::Footprint,
    bands: usize,
    dtype: DType,
    what: &str,
) -> PyResult<()> {
    let bytes = fp.width() as u128 * fp.height() as u128 * bands as u128 * dtype.size() as u128;
    if bytes > memory_limit() {
        return Err(pyo3::exceptions::PyMemoryError::new_err(format!(
            "{what}: a window of {} × {} pixels × {bands} channel(s) of {dtype} is {:.1} GB, more \
             than this machine's memory ({:.1} GB): read it in tiles (iter_data)",
            fp.width(),
            fp.height(),
            bytes as f64 / 1e9,
            memory_limit() as f64 / 1e9
        )));
    }
    Ok(())
}

/// Python's view of a channel selection: `None` (all), an int (one, flat array) or a list.
pub struct Channels {
    pub bands: Vec<usize>,
    pub flat: bool,
}

impl Channels {
    pub fn of(channels: Option<&Bound<'_, PyAny>>, count: usize, what: &str) -> PyResult<Channels> {
        let check = |i: i64| -> PyResult<usize> {
            // Negative indices count from the end, as in Python.
            let j = if i < 0 { i + count as i64 } else { i };
            if j < 0 || j >= count as i64 {
                return Err(PyValueError::new_err(format!(
                    "{what}: channel {i} does not exist (the raster has {count})"
                )));
            }
            Ok(j as usize)
        };
        match channels {
            None => Ok(Channels {
                bands: (0..count).collect(),
                flat: count == 1,
            }),
            Some(c) if c.is_none() => Ok(Channels {
                bands: (0..count).collect(),
                flat: count == 1,
            }),
            Some(c) => {
                if let Ok(i) = c.extract::<i64>() {
                    return Ok(Channels {
                        bands: vec![check(i)?],
                        flat: true,
                    });
                }
                let list: Vec<i64> = c.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "{what}: channels must be None, an int or a list of ints"
                    ))
                })?;
                if list.is_empty() {
                    return Err(PyValueError::new_err(format!("{what}: no channel asked")));
                }
                Ok(Channels {
                    bands: list.into_iter().map(check).collect::<PyResult<_>>()?,
                    flat: false,
                })
            }
        }
    }
}
