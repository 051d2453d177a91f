//! The per-element formulas: the scalar reference every vector level computes, lane by lane.

use super::math::{exp_nonpos, log1m_unit, log1p_unit, log_unit};
use super::simd::Isa;
use crate::float::Float;

/// `max(a, b)` for the kernels: `b` when `a` is NaN or `a <= b`. Branch-free (a select).
#[inline(always)]
pub(crate) fn max<F: Float>(a: F, b: F) -> F {
    if a > b {
        a
    } else {
        b
    }
}

/// `coef * v`, but 0 where one factor is 0 and the other infinite: the limit of a loss term,
/// or of a weighted loss, as the infinite factor grows without bound (IEEE arithmetic says NaN).
/// A NaN factor still gives NaN. The zero has the sign a product of finite factors would have.
#[inline(always)]
pub(crate) fn weighted<F: Float>(coef: F, v: F) -> F {
    let product = coef * v;
    // NaN only from 0 * inf here, since neither factor is NaN.
    if product.is_nan() && !coef.is_nan() && !v.is_nan() {
        F::from_bits((coef.to_bits() ^ v.to_bits()) & F::SIGN_MASK)
    } else {
        product
    }
}

/// One of the two losses, per element.
pub(crate) trait LossFn: Copy + Send + Sync + 'static {
    /// Whether `input` and `target` must lie in `[0, 1]`.
    const CHECKS_RANGE: bool;

    /// The unweighted loss of one element.
    fn loss<F: Float, I: Isa>(x: F, y: F, pw: F) -> F;

    /// The unweighted derivative of the loss with respect to `x`.
    fn grad<F: Float, I: Isa>(x: F, y: F, pw: F) -> F;

    /// Both at once, sharing the work they have in common.
    fn loss_and_grad<F: Float, I: Isa>(x: F, y: F, pw: F) -> (F, F);
}

/// `bits(v + 0)`, unsigned: at most `bits(1)` exactly when `v` lies in `[0, 1]`. `v + 0`
/// turns -0 into +0 and leaves every other value as it is; negative values have the sign bit
/// set, NaN and values above 1 a larger exponent. The largest key over many values tells
/// whether all of them are in range, in two operations a value.
#[inline(always)]
pub(crate) fn unit_key<F: Float>(v: F) -> F::Bits {
    (v + F::ZERO).to_bits()
}

/// Whether `v` lies in `[0, 1]` (false for NaN).
#[inline(always)]
pub(crate) fn in_unit_interval<F: Float>(v: F) -> bool {
    unit_key(v) <= F::ONE.to_bits()
}

/// Binary cross entropy on probabilities, as torch computes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bce;

impl LossFn for Bce {
    const CHECKS_RANGE: bool = true;

    /// `(y - 1) * max(log1p(-x), -100) - y * max(log(x), -100)`. The logarithms are the
    /// variants for `x` in `[0, 1]`: other inputs are rejected by the range check.
    #[inline(always)]
    fn loss<F: Float, I: Isa>(x: F, y: F, _pw: F) -> F {
        let log_x = max(log_unit::<F, I>(x), F::LOG_FLOOR);
        let log_1mx = max(log1m_unit::<F, I>(x), F::LOG_FLOOR);
        (y - F::ONE) * log_1mx - y * log_x
    }

    /// `(x - y) / max((1 - x) * x, EPS)`.
    #[inline(always)]
    fn grad<F: Float, I: Isa>(x: F, y: F, _pw: F) -> F {
        (x - y) / max((F::ONE - x) * x, F::GRAD_EPS)
    }

    #[inline(always)]
    fn loss_and_grad<F: Float, I: Isa>(x: F, y: F, pw: F) -> (F, F) {
        (Self::loss::<F, I>(x, y, pw), Self::grad::<F, I>(x, y, pw))
    }
}

/// Binary cross entropy on logits, with `pos_weight`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Logits;

impl Logits {
    /// The loss from the shared pieces: `e = exp(-|x|)` and `sp = log1p(e)`.
    ///
    /// torch's `(1 - y) x - (1 + (pw - 1) y) logsigmoid(x)` rewritten with
    /// `logsigmoid(x) = min(x, 0) - log1p(exp(-|x|))` as
    /// `(1 - y) max(x, 0) + pw y max(-x, 0) + (1 + (pw - 1) y) log1p(exp(-|x|))`:
    /// the same value for finite arguments, and the mathematical limit where one is infinite:
    /// every product with a factor 0 is 0 ([`weighted`]; torch computes `0 * inf = NaN`).
    #[inline(always)]
    fn loss_from<F: Float>(x: F, y: F, pw: F, sp: F) -> F {
        let relu_pos = max(x, F::ZERO);
        let relu_neg = max(-x, F::ZERO);
        let log_weight = weighted(pw - F::ONE, y) + F::ONE;
        weighted(F::ONE - y, relu_pos)
            + weighted(weighted(pw, y), relu_neg)
            + weighted(log_weight, sp)
    }

    /// The gradient from `e = exp(-|x|)`: `(1 - y) sigmoid(x) - pw y sigmoid(-x)`.
    ///
    /// Equal to torch's `(pw y + 1 - y) sigmoid(x) - pw y`, without its cancellation: both
    /// sigmoids come straight from `e`, so tiny exact values survive (x = 20, y = 1 gives
    /// `-sigmoid(-20)`, not 0).
    /// Products with a factor 0 are 0, as in [`Logits::loss_from`].
    #[inline(always)]
    fn grad_from<F: Float>(x: F, y: F, pw: F, e: F) -> F {
        let d = F::ONE / (F::ONE + e);
        let de = e * d;
        let nonneg = x >= F::ZERO;
        let sig_pos = if nonneg { d } else { de };
        let sig_neg = if nonneg { de } else { d };
        weighted(F::ONE - y, sig_pos) - weighted(weighted(pw, y), sig_neg)
    }

    #[inline(always)]
    fn exp_neg_abs<F: Float, I: Isa>(x: F) -> F {
        let abs = F::from_bits(x.to_bits() & !F::SIGN_MASK);
        exp_nonpos::<F, I>(-abs)
    }
}

impl LossFn for Logits {
    const CHECKS_RANGE: bool = false;

    #[inline(always)]
    fn loss<F: Float, I: Isa>(x: F, y: F, pw: F) -> F {
        let e = Self::exp_neg_abs::<F, I>(x);
        Self::loss_from(x, y, pw, log1p_unit::<F, I>(e))
    }

    #[inline(always)]
    fn grad<F: Float, I: Isa>(x: F, y: F, pw: F) -> F {
        Self::grad_from(x, y, pw, Self::exp_neg_abs::<F, I>(x))
    }

    #[inline(always)]
    fn loss_and_grad<F: Float, I: Isa>(x: F, y: F, pw: F) -> (F, F) {
        let e = Self::exp_neg_abs::<F, I>(x);
        (
            Self::loss_from(x, y, pw, log1p_unit::<F, I>(e)),
            Self::grad_from(x, y, pw, e),
        )
    }
}
