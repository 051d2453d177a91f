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
//! - The target gradient, `dalpha_t ce m + alpha_t m (-x + gamma ce (d(1 - p_t)/dy) / (1 - p_t))`
//!   (`m = (1 - p_t)^gamma`, `dalpha_t = 2 alpha - 1`, `d(1 - p_t)/dy = sigmoid(-x) - sigmoid(x)`),
//!   takes `ce / a` as `log1p(e) / e` where `c1 = 0`, so that it stays finite there too.
//! - The second derivative, `alpha_t m (sigmoid(x) sigmoid(-x) + 2 gamma r dce
//!   + gamma ce ((gamma - 1) r^2 + r (sigmoid(-x) - sigmoid(x))))`, can be negative (the focal
//!   loss is not convex in the logit for `gamma > 0`).
//!
//! So every finite input gives finite results; infinite logits give the mathematical limits,
//! every product with a factor 0 being 0 as in BCE with logits.
//!
//! The WGSL twin is `focal.wgsl`.

use super::{exp_neg_abs, max, sigmoids, weighted, Derivs, Elementwise, Products, Want};
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
    /// Its products keep the limits whatever `P` ([`weighted`]): a product's NaN may be
    /// dropped on its way to an output, so plain products are never tried first.
    #[inline(always)]
    fn eval<I: Isa, W: Want, P: Products>(&self, x: F, y: F, _pw: F) -> Derivs<F> {
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
        let exponent = weighted(self.gamma, log_a - sp);
        let modulating = exp::<F, I>(exponent);
        // (1 - p_t)^gamma is exactly 0 only where its exponent is -inf; an underflowing one
        // still makes an infinite factor infinite.
        let tiny_not_zero = modulating == F::ZERO && exponent > -F::INFINITY;
        let m_for_inf = if tiny_not_zero {
            F::MIN_POSITIVE
        } else {
            modulating
        };
        let alpha_t = if self.alpha >= F::ZERO {
            I::mul_add(self.alpha, y, (F::ONE - self.alpha) * one_minus_y)
        } else {
            F::ONE
        };
        let is_inf = |v: F| v == F::INFINITY || v == -F::INFINITY;
        if W::VALUE {
            let m = if is_inf(ce) { m_for_inf } else { modulating };
            d.value = weighted(alpha_t, weighted(ce, m));
        }
        let (sig_pos, sig_neg) = sigmoids(x, e);
        if W::GRAD || W::HESS {
            let dce = weighted(one_minus_y, sig_pos) - weighted(y, sig_neg);
            // r = (1 - 2y) / ((1 + e) (a / e)); a / e = c_e where c1 = 0 (e may be 0 there).
            let a_over_e = if hard { c_e } else { c1 / e + c_e };
            let r = (one_minus_y - y) / ((F::ONE + e) * a_over_e);
            let gamma_ce = weighted(self.gamma, ce);
            if W::GRAD {
                let inner = dce + weighted(gamma_ce, r);
                d.grad = weighted(alpha_t, weighted(modulating, inner));
            }
            if W::HESS {
                let two = F::ONE + F::ONE;
                let curvature = weighted(self.gamma - F::ONE, r * r) + r * (sig_neg - sig_pos);
                let inner = sig_pos * sig_neg
                    + weighted(two * self.gamma, r * dce)
                    + weighted(gamma_ce, curvature);
                d.hess = weighted(alpha_t, weighted(modulating, inner));
            }
        }
        if W::GRAD_TARGET {
            let dalpha = if self.alpha >= F::ZERO {
                self.alpha + self.alpha - F::ONE
            } else {
                F::ZERO
            };
            // (d(1 - p_t)/dy) / (1 - p_t) = s (1 - e) / a_true, s = -1 for x >= 0, a_true = a e
            // where c1 = 0 (then ce = log1p(e), and ce / a_true = (log1p(e) / e) / c_e).
            let ce_over_a = if hard {
                let sp_over_e = if e == F::ZERO { F::ONE } else { sp / e };
                sp_over_e / c_e
            } else {
                ce / a
            };
            let one_minus_e = F::ONE - e;
            let dq = if nonneg { -one_minus_e } else { one_minus_e };
            let inner = -x + weighted(self.gamma, dq * ce_over_a);
            let m_ce = if is_inf(ce) { m_for_inf } else { modulating };
            let m_inner = if is_inf(inner) { m_for_inf } else { modulating };
            d.grad_target =
                weighted(dalpha, weighted(ce, m_ce)) + weighted(alpha_t, weighted(m_inner, inner));
            // At an infinite logit both terms can be infinite, of opposite signs (inf - inf):
            // the limit is |x| (1 - p_t)^gamma (dalpha c1 - s alpha_t (1 + gamma)), with c1 the
            // limit of 1 - p_t (> 0 here) and s the sign of x; the rest vanishes.
            if is_inf(x) && !hard && !modulating.is_nan() {
                let s_alpha_t = if nonneg { alpha_t } else { -alpha_t };
                let coef = dalpha * c1 - s_alpha_t * (F::ONE + self.gamma);
                d.grad_target = weighted(coef, abs);
            }
        }
        d
    }
}
