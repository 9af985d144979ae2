//! Element types, tensor types and concrete tensors.
//!
//! Floating tensors are held as `f64` whatever their declared `DType` (the reference interpreter
//! computes in f64); integer tensors as `i64`; booleans as `bool`. The declared dtype is kept so that
//! outputs are written back in the model's own type and so that `Cast` means what ONNX says.

use std::fmt;

/// Element type of a tensor.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum DType {
    F16,
    F32,
    F64,
    I8,
    U8,
    I32,
    I64,
    Bool,
}

impl DType {
    pub const ALL: [DType; 8] =
        [DType::F16, DType::F32, DType::F64, DType::I8, DType::U8, DType::I32, DType::I64, DType::Bool];

    /// The name used in the text form (`f32`, `i64`, `bool`...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| d.name() == s)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::F32 | DType::F64)
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::I8 | DType::U8 | DType::I32 | DType::I64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Static type of a value: element type and shape. Text form: `f32[1,16,64]`, `i64[]` for a scalar.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>) -> Self {
        TensorType { dtype, shape }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Element storage of a tensor (see the module doc for which dtypes use which variant).
#[derive(Clone, PartialEq, Debug)]
pub enum Data {
    Float(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::Float(v) => v.len(),
            Data::Int(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A concrete tensor, row-major.
#[derive(Clone, PartialEq, Debug)]
pub struct Tensor {
    pub ty: TensorType,
    pub data: Data,
}

impl Tensor {
    /// Builds a tensor, checking that the storage variant fits the dtype and the length fits the shape.
    pub fn new(ty: TensorType, data: Data) -> Result<Tensor, crate::IrError> {
        let ok_variant = match &data {
            Data::Float(_) => ty.dtype.is_float(),
            Data::Int(_) => ty.dtype.is_int(),
            Data::Bool(_) => ty.dtype == DType::Bool,
        };
        if !ok_variant {
            return Err(crate::IrError::InvalidTensor(format!("storage does not match dtype {}", ty.dtype)));
        }
        if data.len() != ty.numel() {
            return Err(crate::IrError::InvalidTensor(format!(
                "{} elements for type {} (expected {})",
                data.len(),
                ty,
                ty.numel()
            )));
        }
        Ok(Tensor { ty, data })
    }

    pub fn float(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor, crate::IrError> {
        Tensor::new(TensorType::new(dtype, shape), Data::Float(v))
    }

    pub fn int(dtype: DType, shape: Vec<usize>, v: Vec<i64>) -> Result<Tensor, crate::IrError> {
        Tensor::new(TensorType::new(dtype, shape), Data::Int(v))
    }

    pub fn boolean(shape: Vec<usize>, v: Vec<bool>) -> Result<Tensor, crate::IrError> {
        Tensor::new(TensorType::new(DType::Bool, shape), Data::Bool(v))
    }

    pub fn scalar_f32(x: f64) -> Tensor {
        Tensor { ty: TensorType::new(DType::F32, vec![]), data: Data::Float(vec![x]) }
    }

    pub fn shape(&self) -> &[usize] {
        &self.ty.shape
    }

    pub fn dtype(&self) -> DType {
        self.ty.dtype
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Elements as f64 (ints and bools converted), for comparisons and reports.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            Data::Float(v) => v.clone(),
            Data::Int(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
        }
    }

    /// Elements as i64 (floats truncated toward zero), for shape-like tensors.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::Float(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Int(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }
}
