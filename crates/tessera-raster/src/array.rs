//! Pixel arrays: a dynamically typed buffer laid out row by row, pixel-interleaved
//! (`[row][col][band]`, numpy's `(height, width, bands)` like buzzard), with its data type.

use std::fmt;

/// Data type of a raster's pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    U8,
    U16,
    I16,
    U32,
    I32,
    F32,
    F64,
}

impl DType {
    /// Every data type, in declaration order.
    pub const ALL: [DType; 7] = [
        DType::U8,
        DType::U16,
        DType::I16,
        DType::U32,
        DType::I32,
        DType::F32,
        DType::F64,
    ];

    /// Bytes per sample.
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    /// The lowercase name used in recipes, pipelines and error messages (`"f32"`).
    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::I16 => "i16",
            DType::U32 => "u32",
            DType::I32 => "i32",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    /// Parses a name as written by [`DType::name`] (also accepts numpy's `uint8`, `float32`, …).
    pub fn parse(name: &str) -> Option<DType> {
        Some(match name {
            "u8" | "uint8" => DType::U8,
            "u16" | "uint16" => DType::U16,
            "i16" | "int16" => DType::I16,
            "u32" | "uint32" => DType::U32,
            "i32" | "int32" => DType::I32,
            "f32" | "float32" => DType::F32,
            "f64" | "float64" => DType::F64,
            _ => return None,
        })
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Height, width and band count of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub height: usize,
    pub width: usize,
    pub bands: usize,
}

impl Shape {
    pub fn new(height: usize, width: usize, bands: usize) -> Shape {
        Shape {
            height,
            width,
            bands,
        }
    }

    /// Number of samples (`height × width × bands`).
    pub fn len(&self) -> usize {
        self.height * self.width * self.bands
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of a sample in the pixel-interleaved buffer.
    pub fn index(&self, row: usize, col: usize, band: usize) -> usize {
        (row * self.width + col) * self.bands + band
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.height, self.width, self.bands)
    }
}

/// The samples of an array, one variant per data type.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Applies `$body` to the typed vector inside a [`Data`], whatever its variant.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::Data::U8($v) => $body,
            $crate::Data::U16($v) => $body,
            $crate::Data::I16($v) => $body,
            $crate::Data::U32($v) => $body,
            $crate::Data::I32($v) => $body,
            $crate::Data::F32($v) => $body,
            $crate::Data::F64($v) => $body,
        }
    };
}

impl Data {
    pub fn dtype(&self) -> DType {
        match self {
            Data::U8(_) => DType::U8,
            Data::U16(_) => DType::U16,
            Data::I16(_) => DType::I16,
            Data::U32(_) => DType::U32,
            Data::I32(_) => DType::I32,
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` samples of `dtype`, all equal to `value` (converted as by [`Pixel::from_f64`]).
    pub fn filled(dtype: DType, len: usize, value: f64) -> Data {
        match dtype {
            DType::U8 => Data::U8(vec![u8::from_f64(value); len]),
            DType::U16 => Data::U16(vec![u16::from_f64(value); len]),
            DType::I16 => Data::I16(vec![i16::from_f64(value); len]),
            DType::U32 => Data::U32(vec![u32::from_f64(value); len]),
            DType::I32 => Data::I32(vec![i32::from_f64(value); len]),
            DType::F32 => Data::F32(vec![f32::from_f64(value); len]),
            DType::F64 => Data::F64(vec![value; len]),
        }
    }

    pub fn get_f64(&self, index: usize) -> f64 {
        with_data!(self, v => v[index].to_f64())
    }

    pub fn set_f64(&mut self, index: usize, value: f64) {
        with_data!(self, v => v[index] = Pixel::from_f64(value))
    }
}

/// A sample type: converts to and from `f64` (saturating, rounding to nearest for integers,
/// NaN → 0), and names its [`Data`] variant.
pub trait Pixel: Copy + Send + Sync + PartialEq + fmt::Debug + 'static {
    const DTYPE: DType;
    fn from_f64(value: f64) -> Self;
    fn to_f64(self) -> f64;
    fn wrap(values: Vec<Self>) -> Data;
    fn slice(data: &Data) -> Option<&[Self]>;
    fn slice_mut(data: &mut Data) -> Option<&mut [Self]>;
}

macro_rules! pixel {
    ($t:ty, $variant:ident, $round:expr) => {
        impl Pixel for $t {
            const DTYPE: DType = DType::$variant;
            fn from_f64(value: f64) -> Self {
                // `as` saturates and maps NaN to 0 for integers.
                let round: fn(f64) -> f64 = $round;
                round(value) as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn wrap(values: Vec<Self>) -> Data {
                Data::$variant(values)
            }
            fn slice(data: &Data) -> Option<&[Self]> {
                match data {
                    Data::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(data: &mut Data) -> Option<&mut [Self]> {
                match data {
                    Data::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

pixel!(u8, U8, f64::round);
pixel!(u16, U16, f64::round);
pixel!(i16, I16, f64::round);
pixel!(u32, U32, f64::round);
pixel!(i32, I32, f64::round);
pixel!(f32, F32, |v| v);
pixel!(f64, F64, |v| v);

/// A pixel array: shape plus typed samples, pixel-interleaved.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    shape: Shape,
    data: Data,
}

/// A buffer whose length does not match the shape it was given.
#[derive(Debug, thiserror::Error)]
#[error("array of shape {shape} needs {expected} samples, got {actual}")]
pub struct ShapeMismatch {
    pub shape: Shape,
    pub expected: usize,
    pub actual: usize,
}

impl Array {
    pub fn new(shape: Shape, data: Data) -> Result<Array, ShapeMismatch> {
        if data.len() != shape.len() {
            return Err(ShapeMismatch {
                shape,
                expected: shape.len(),
                actual: data.len(),
            });
        }
        Ok(Array { shape, data })
    }

    pub fn from_vec<T: Pixel>(shape: Shape, values: Vec<T>) -> Result<Array, ShapeMismatch> {
        Array::new(shape, T::wrap(values))
    }

    /// An array of `shape` where every sample is `value`.
    pub fn filled(dtype: DType, shape: Shape, value: f64) -> Array {
        Array {
            shape,
            data: Data::filled(dtype, shape.len(), value),
        }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut Data {
        &mut self.data
    }

    pub fn into_data(self) -> Data {
        self.data
    }

    /// The samples as `T`, or `None` when the array holds another type.
    pub fn as_slice<T: Pixel>(&self) -> Option<&[T]> {
        T::slice(&self.data)
    }

    pub fn as_slice_mut<T: Pixel>(&mut self) -> Option<&mut [T]> {
        T::slice_mut(&mut self.data)
    }

    pub fn get_f64(&self, row: usize, col: usize, band: usize) -> f64 {
        self.data.get_f64(self.shape.index(row, col, band))
    }

    pub fn set_f64(&mut self, row: usize, col: usize, band: usize, value: f64) {
        let index = self.shape.index(row, col, band);
        self.data.set_f64(index, value)
    }

    /// The same samples converted to `dtype` (see [`Pixel::from_f64`]); a no-op clone when equal.
    pub fn cast(&self, dtype: DType) -> Array {
        if dtype == self.dtype() {
            return self.clone();
        }
        let mut out = Data::filled(dtype, self.shape.len(), 0.0);
        for index in 0..self.shape.len() {
            out.set_f64(index, self.data.get_f64(index));
        }
        Array {
            shape: self.shape,
            data: out,
        }
    }

    /// The bands listed, in that order (repeats allowed).
    pub fn select_bands(&self, bands: &[usize]) -> Array {
        let shape = Shape::new(self.shape.height, self.shape.width, bands.len());
        let source = &self.data;
        let pixels = self.shape.height * self.shape.width;
        let data = with_data!(source, v => {
            let mut out = Vec::with_capacity(pixels * bands.len());
            for pixel in 0..pixels {
                let base = pixel * self.shape.bands;
                out.extend(bands.iter().map(|&b| v[base + b]));
            }
            Pixel::wrap(out)
        });
        Array { shape, data }
    }
}
