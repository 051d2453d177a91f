//! Binary cross entropy on probabilities, as torch computes it.
//!
//! Per element, for `x` and `y` in `[0, 1]` (the executor checks the range first):
//! - value: `(y - 1) max(log1p(-x), -100) - y max(log(x), -100)`;
//! - gradient: `(x - y) / max((1 - x) x, EPS)`, with torch's float32 `EPS = 1e-12`;
//! - target gradient: `max(log1p(-x), -100) - max(log(x), -100)`, the derivative of the loss
//!   as computed, with its floors (torch's autograd gives the unclamped `log(1 - x) - log(x)`);
//! - second derivative: `y / max(x^2, EPS) + (1 - y) / max((1 - x)^2, EPS)`.
//!
//! The WGSL twin is `bce.wgsl`.

use super::{max, Derivs, Elementwise, Products, Want};
use crate::math::{log1m_unit, log_unit, Real};
use crate::simd::Isa;

/// `-100`, torch's floor for the logarithms of BCE.
pub(crate) const LOG_FLOOR: f64 = -100.0;

/// torch's `EPSILON` for the BCE input gradient: the float32 constant `1e-12` (widened for
/// float64: 9.99999996e-13).
pub(crate) const GRAD_EPS: f32 = 1e-12;

/// Binary cross entropy on probabilities.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bce;

impl<F: Real> Elementwise<F> for Bce {
    const CHECKS_RANGE: bool = true;
    /// Every result is finite for `x` and `y` in `[0, 1]`: the logarithms are floored, the
    /// denominators at least `EPS`.
    const NEVER_NAN: bool = true;

    /// The logarithms are the variants for `x` in `[0, 1]`: other inputs are rejected by the
    /// range check.
    #[inline(always)]
    fn eval<I: Isa, W: Want, P: Products>(&self, x: F, y: F, _pw: F) -> Derivs<F> {
        let mut d = Derivs::default();
        let eps = F::from_f64(f64::from(GRAD_EPS));
        if W::VALUE || W::GRAD_TARGET {
            let floor = F::from_f64(LOG_FLOOR);
            let log_x = max(log_unit::<F, I>(x), floor);
            let log_1mx = max(log1m_unit::<F, I>(x), floor);
            d.value = (y - F::ONE) * log_1mx - y * log_x;
            d.grad_target = log_1mx - log_x;
        }
        if W::GRAD {
            d.grad = (x - y) / max((F::ONE - x) * x, eps);
        }
        if W::HESS {
            let one_minus_x = F::ONE - x;
            d.hess = y / max(x * x, eps) + (F::ONE - y) / max(one_minus_x * one_minus_x, eps);
        }
        d
    }
}
