//! Vectorisable elementary functions: `log`, `log1p`, `exp`.
//!
//! PLACEHOLDER: delegates to std (libm) until the polynomial versions land.

use super::simd::Isa;

/// The elementary functions the kernels need, per float type. A supertrait of
/// [`crate::Float`]; unreachable from outside the crate.
pub trait Math: Copy {
    /// Natural logarithm.
    fn log_impl<I: Isa>(self) -> Self;
    /// `log(1 + x)`.
    fn log1p_impl<I: Isa>(self) -> Self;
    /// `e^x`.
    fn exp_impl<I: Isa>(self) -> Self;
}

impl Math for f32 {
    #[inline(always)]
    fn log_impl<I: Isa>(self) -> Self {
        self.ln()
    }
    #[inline(always)]
    fn log1p_impl<I: Isa>(self) -> Self {
        self.ln_1p()
    }
    #[inline(always)]
    fn exp_impl<I: Isa>(self) -> Self {
        self.exp()
    }
}

impl Math for f64 {
    #[inline(always)]
    fn log_impl<I: Isa>(self) -> Self {
        self.ln()
    }
    #[inline(always)]
    fn log1p_impl<I: Isa>(self) -> Self {
        self.ln_1p()
    }
    #[inline(always)]
    fn exp_impl<I: Isa>(self) -> Self {
        self.exp()
    }
}

/// Natural logarithm of `x`.
#[inline(always)]
pub(crate) fn log<F: Math, I: Isa>(x: F) -> F {
    x.log_impl::<I>()
}

/// `log(1 + x)`, accurate for small `x`.
#[inline(always)]
pub(crate) fn log1p<F: Math, I: Isa>(x: F) -> F {
    x.log1p_impl::<I>()
}

/// `e^x`.
#[inline(always)]
pub(crate) fn exp<F: Math, I: Isa>(x: F) -> F {
    x.exp_impl::<I>()
}
