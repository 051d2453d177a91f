//! Binary cross entropy on logits, with `pos_weight`.
//!
//! torch's `(1 - y) x - (1 + (pw - 1) y) logsigmoid(x)`, rewritten with
//! `logsigmoid(x) = min(x, 0) - log1p(exp(-|x|))` as
//! `(1 - y) max(x, 0) + pw y max(-x, 0) + (1 + (pw - 1) y) log1p(exp(-|x|))`: the same value for
//! finite arguments, and the mathematical limit where one is infinite, since every product with
//! a factor 0 is 0 ([`weighted`](super::weighted); torch computes `0 * inf = NaN`). The gradient is
//! `(1 - y) sigmoid(x) - pw y sigmoid(-x)`, torch's `(pw y + 1 - y) sigmoid(x) - pw y` without
//! its cancellation: both sigmoids come straight from `exp(-|x|)`, so tiny exact values survive
//! (x = 20, y = 1 gives `-sigmoid(-20)`, not 0). The target gradient is
//! `pw log1p(exp(-x)) - log1p(exp(x))` (as `pw (max(-x, 0) + sp) - (max(x, 0) + sp)`), the
//! second derivative `(1 + (pw - 1) y) sigmoid(x) sigmoid(-x)`.
//!
//! The WGSL twin is `logits.wgsl`.

use super::{exp_neg_abs, max, sigmoids, Derivs, Elementwise, Products, Want};
use crate::math::{log1p_unit, Real};
use crate::simd::Isa;

/// Binary cross entropy on logits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Logits;

impl<F: Real> Elementwise<F> for Logits {
    const TAKES_POS_WEIGHT: bool = true;
    /// Every product is of `P`, and its NaN reaches the outputs that use it: the only
    /// selects are on `pw` and on the sign of `x`, and no comparison reads a product.
    const PLAIN_FIRST: bool = true;

    #[inline(always)]
    fn eval<I: Isa, W: Want, P: Products>(&self, x: F, y: F, pw: F) -> Derivs<F> {
        let mut d = Derivs::default();
        let e = exp_neg_abs::<F, I>(x);
        let pw_y = P::weighted(pw, y);
        let log_weight = P::weighted(pw - F::ONE, y) + F::ONE;
        if W::VALUE || W::GRAD_TARGET {
            let sp = log1p_unit::<F, I>(e);
            let relu_pos = max(x, F::ZERO);
            let relu_neg = max(-x, F::ZERO);
            // pw y relu_neg: an underflowing pw y times an infinite relu_neg is infinite. With
            // pw = 1 the log weight is 1 for every target but NaN, where the first term is NaN
            // anyway: so it is 1 (which an absent pos_weight folds away).
            let value_weight = if pw == F::ONE { F::ONE } else { log_weight };
            d.value = P::weighted(F::ONE - y, relu_pos)
                + P::weighted3(pw, y, relu_neg)
                + P::weighted(value_weight, sp);
            d.grad_target = P::weighted(pw, relu_neg + sp) - (relu_pos + sp);
        }
        if W::GRAD || W::HESS {
            let (sig_pos, sig_neg) = sigmoids(x, e);
            d.grad = P::weighted(F::ONE - y, sig_pos) - P::weighted(pw_y, sig_neg);
            d.hess = P::weighted(log_weight, sig_pos * sig_neg);
        }
        d
    }
}
