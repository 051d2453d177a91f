//! Sigmoid focal loss (Lin et al. 2017), as `torchvision.ops.sigmoid_focal_loss` defines it.
//!
//! With `p = sigmoid(x)`, `ce` = BCE with logits of `(x, y)`, `p_t = p y + (1 - p)(1 - y)`:
//! `loss = alpha_t ce (1 - p_t)^gamma`, `alpha_t = alpha y + (1 - alpha)(1 - y)` when
//! `alpha >= 0`, else 1. Computed without torchvision's losses of precision:
//! - `1 - p_t` is never formed by a subtraction. With `e = exp(-|x|)`,
//!   `1 - p_t = y sigmoid(-x) + (1 - y) sigmoid(x) = a / (1 + e)`, where `a = c1 + c_e e`,
//!   `c_e` = `y` for `x >= 0` (`1 - y` below) and `c1 = 1 - c_e`; so
//!   `log(1 - p_t) = log(a) - log1p(e)`, and where `c1 = 0` (a hard target on the right side)
//!   `log(a) = log(c_e) - |x|` exactly, with no exponential to underflow.
//! - `(1 - p_t)^gamma = exp(gamma log(1 - p_t))`, with `0 * -inf = 0`: `gamma = 0` gives exactly
//!   1, so the loss is exactly `alpha_t` times BCE with logits (and `0^0 = 1`).
//! - The gradient, `alpha_t (1 - p_t)^gamma (dce + gamma ce r)`, with `dce` the gradient of
//!   BCE with logits (`(1 - y) sigmoid(x) - y sigmoid(-x)`) and
//!   `r = d log(1 - p_t) / dx = (1 - 2y) / ((1 + e)(a / e))`, never forms
//!   `(1 - p_t)^(gamma - 1)`, which is infinite at `1 - p_t = 0` for `gamma < 1` (torchvision's
//!   NaN there).
//!
//! So every finite input gives finite results; infinite logits give the mathematical limits,
//! every product with a factor 0 being 0 as in BCE with logits.
//!
//! The WGSL twin is `focal.wgsl`.

use super::{exp_neg_abs, max, sigmoids, weighted, Derivs, Elementwise, Want};
use crate::math::{exp, log, log1p_unit, Real};
use crate::simd::Isa;

/// Sigmoid focal loss, with its parameters in the call's float type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Focal<F> {
    /// `alpha` (negative: no `alpha_t`).
    pub alpha: F,
    /// `gamma`.
    pub gamma: F,
}

impl<F: Real> Elementwise<F> for Focal<F> {
    #[inline(always)]
    fn eval<I: Isa, W: Want>(&self, x: F, y: F, _pw: F) -> Derivs<F> {
        let mut d = Derivs::default();
        let abs = F::from_bits(x.to_bits() & !F::SIGN_MASK);
        let e = exp_neg_abs::<F, I>(x);
        let sp = log1p_unit::<F, I>(e);
        let nonneg = x >= F::ZERO;
        let one_minus_y = F::ONE - y;
        // BCE with logits (pos_weight 1).
        let ce = weighted(one_minus_y, max(x, F::ZERO)) + weighted(y, max(-x, F::ZERO)) + sp;
        // log(1 - p_t) = log(a) - log1p(e), a = c1 + c_e e.
        let c_e = if nonneg { y } else { one_minus_y };
        let c1 = if nonneg { one_minus_y } else { y };
        let hard = c1 == F::ZERO;
        let a = if hard { c_e } else { I::mul_add(c_e, e, c1) };
        let log_a = log::<F, I>(a) - if hard { abs } else { F::ZERO };
        let modulating = exp::<F, I>(weighted(self.gamma, log_a - sp));
        let alpha_t = if self.alpha >= F::ZERO {
            I::mul_add(self.alpha, y, (F::ONE - self.alpha) * one_minus_y)
        } else {
            F::ONE
        };
        if W::VALUE {
            d.value = weighted(alpha_t, weighted(ce, modulating));
        }
        if W::GRAD {
            let (sig_pos, sig_neg) = sigmoids(x, e);
            let dce = weighted(one_minus_y, sig_pos) - weighted(y, sig_neg);
            // r = (1 - 2y) / ((1 + e) (a / e)); a / e = c_e where c1 = 0 (e may be 0 there).
            let a_over_e = if hard { c_e } else { c1 / e + c_e };
            let r = (one_minus_y - y) / ((F::ONE + e) * a_over_e);
            let inner = dce + weighted(self.gamma, weighted(ce, r));
            d.grad = weighted(alpha_t, weighted(modulating, inner));
        }
        d
    }
}
