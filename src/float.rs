//! The floating-point element types bcers computes in, and the one dtype dispatch: the generic
//! API hands its views to the executor as a [`DynView`] of `f32` or `f64`, so that the executor
//! is compiled once per type, inside the crate.

use core::fmt::{Debug, Display};
use core::ops::{Add, Div, Mul, Neg, Sub};

use ndarray::{ArrayD, ArrayViewD};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A view of `f32` or `f64` elements.
#[doc(hidden)]
pub enum DynView<'a> {
    /// float32.
    F32(ArrayViewD<'a, f32>),
    /// float64.
    F64(ArrayViewD<'a, f64>),
}

/// A caller's buffer of `f32` or `f64` elements, for an output.
#[doc(hidden)]
pub enum DynBuffer<'a> {
    /// float32.
    F32(&'a mut [f32]),
    /// float64.
    F64(&'a mut [f64]),
}

/// An array of `f32` or `f64` elements.
#[doc(hidden)]
pub enum DynArray {
    /// float32.
    F32(ArrayD<f32>),
    /// float64.
    F64(ArrayD<f64>),
}

/// A floating-point type bcers computes in: `f32` or `f64`.
///
/// The trait is sealed; its methods are the few operations the kernels need, all of them
/// branch-free so that loops over them vectorise.
pub trait Float:
    sealed::Sealed
    + Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + Debug
    + Display
    + core::fmt::LowerExp
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    /// The unsigned integer type of the same width, for bit manipulation.
    type Bits: Copy
        + PartialEq
        + PartialOrd
        + Debug
        + core::ops::BitAnd<Output = Self::Bits>
        + core::ops::BitOr<Output = Self::Bits>
        + core::ops::BitXor<Output = Self::Bits>
        + core::ops::Not<Output = Self::Bits>
        + core::ops::Shl<u32, Output = Self::Bits>
        + core::ops::Shr<u32, Output = Self::Bits>
        + core::ops::Add<Output = Self::Bits>
        + core::ops::Sub<Output = Self::Bits>;

    /// The sign bit.
    const SIGN_MASK: Self::Bits;
    /// `0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
    /// The smallest positive normal value.
    const MIN_POSITIVE: Self;
    /// Not a number.
    const NAN: Self;
    /// Positive infinity.
    const INFINITY: Self;
    /// A short name of the type, for messages.
    const NAME: &'static str;

    /// The IEEE-754 bits.
    fn to_bits(self) -> Self::Bits;
    /// From IEEE-754 bits.
    fn from_bits(bits: Self::Bits) -> Self;
    /// Conversion from `f64` (rounding to nearest).
    fn from_f64(v: f64) -> Self;
    /// Conversion to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Conversion from a count (rounding to nearest).
    fn from_usize(v: usize) -> Self;
    /// `a * b + c`, fused into one rounding.
    fn fused_mul_add(a: Self, b: Self, c: Self) -> Self;
    /// Whether the value is NaN.
    fn is_nan(self) -> bool;
    /// The view, as one of the element types.
    #[doc(hidden)]
    fn dyn_view(view: ArrayViewD<'_, Self>) -> DynView<'_>;
    /// The array, if it holds this type.
    #[doc(hidden)]
    fn from_dyn(array: DynArray) -> Option<ArrayD<Self>>;
    /// The buffer, as one of the element types.
    #[doc(hidden)]
    fn dyn_buffer(buffer: &mut [Self]) -> DynBuffer<'_>;
}

impl Float for f32 {
    type Bits = u32;
    const SIGN_MASK: u32 = 0x8000_0000;
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const MIN_POSITIVE: Self = f32::MIN_POSITIVE;
    const NAN: Self = f32::NAN;
    const INFINITY: Self = f32::INFINITY;
    const NAME: &'static str = "float32";

    #[inline(always)]
    fn to_bits(self) -> u32 {
        f32::to_bits(self)
    }
    #[inline(always)]
    fn from_bits(bits: u32) -> Self {
        f32::from_bits(bits)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn from_usize(v: usize) -> Self {
        v as f32
    }
    #[inline(always)]
    fn fused_mul_add(a: Self, b: Self, c: Self) -> Self {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn dyn_view(view: ArrayViewD<'_, Self>) -> DynView<'_> {
        DynView::F32(view)
    }
    fn from_dyn(array: DynArray) -> Option<ArrayD<Self>> {
        match array {
            DynArray::F32(a) => Some(a),
            _ => None,
        }
    }
    fn dyn_buffer(buffer: &mut [Self]) -> DynBuffer<'_> {
        DynBuffer::F32(buffer)
    }
}

impl Float for f64 {
    type Bits = u64;
    const SIGN_MASK: u64 = 0x8000_0000_0000_0000;
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const MIN_POSITIVE: Self = f64::MIN_POSITIVE;
    const NAN: Self = f64::NAN;
    const INFINITY: Self = f64::INFINITY;
    const NAME: &'static str = "float64";

    #[inline(always)]
    fn to_bits(self) -> u64 {
        f64::to_bits(self)
    }
    #[inline(always)]
    fn from_bits(bits: u64) -> Self {
        f64::from_bits(bits)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_usize(v: usize) -> Self {
        v as f64
    }
    #[inline(always)]
    fn fused_mul_add(a: Self, b: Self, c: Self) -> Self {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn dyn_view(view: ArrayViewD<'_, Self>) -> DynView<'_> {
        DynView::F64(view)
    }
    fn from_dyn(array: DynArray) -> Option<ArrayD<Self>> {
        match array {
            DynArray::F64(a) => Some(a),
            _ => None,
        }
    }
    fn dyn_buffer(buffer: &mut [Self]) -> DynBuffer<'_> {
        DynBuffer::F64(buffer)
    }
}
