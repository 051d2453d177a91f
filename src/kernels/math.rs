//! Vectorisable elementary functions: `log`, `log1p`, `exp`, for `f32` and `f64`.
//!
//! Each function is one generic scalar body, branch-free and `#[inline(always)]`, so that the
//! kernels' loops that call it vectorise at every SIMD level. Only constants differ between
//! `f32` and `f64` (the polynomials above all, see [`Consts`]). There is no table, no
//! division and no call into libm: the range reductions work on the IEEE bits, rounding to an
//! integer adds and subtracts the shifter `1.5 * 2^p` (`p` = 23 for `f32`, 52 for `f64`), and
//! fused multiply-adds go through [`Isa::mul_add`] (two roundings on the levels without FMA).
//!
//! - `log(x)`: subnormal `x` is first scaled by `2^p`. Then `x = 2^k m` with `m` in
//!   `[sqrt(1/2), sqrt(2))`, taken from the bits, `f = m - 1` (exact), and
//!   `log(x) = k ln2_hi + (f + (-f^2/2 + f^3 Q(f) + k ln2_lo))`, with `Q` a minimax polynomial
//!   for `(log1p(f) - f + f^2/2) / f^3` (degree 7 for `f32`, 19 for `f64`). `k ln2_hi` is
//!   exact, `-f^2/2` is exact inside a fused multiply-add, and the last addition is exact
//!   (`|k| = 1`) or its operand `f + ...` at most a quarter of the result, which keeps the
//!   error below one ulp.
//! - `log1p(x)`: `w = 1 + x` rounded, its rounding error `c = x - (w - 1)` (exact), `w` reduced
//!   as in `log`, and the reduced argument carried as `f + f_lo = (1 + x) 2^-k - 1`:
//!   `f = c 2^-k + (m - 1)`, which is `x` itself when `k = 0` (so tiny `x` give `x`), and its
//!   rounding error `f_lo` (Fast2Sum). Then `log`'s formula at `f`, plus
//!   `f_lo / (1 + f) ~ f_lo (1 - f)`.
//! - `exp(x)`: `x` is clamped to a range beyond which the result is 0 or infinite,
//!   `k = round(x / ln2)`, `r = x - k ln2` as `r_hi + r_lo` (`r_hi` exact), and
//!   `e^r = 1 + (r_hi + (r_lo + r^2 Q(r)))`, `Q` a minimax polynomial for `(e^r - 1 - r) / r^2`
//!   (degree 4 for `f32`, 9 for `f64`). The scaling by `2^k` takes two steps (`2^(k -+ B)`,
//!   then `2^(+-B)`), so that subnormal results are rounded once, correctly, and large ones
//!   overflow to infinity.
//!
//! Special values: `log(+-0) = -inf`, `log(x < 0) = NaN`, `log(inf) = inf`, `log(1) = +0`;
//! `log1p(-1) = -inf`, `log1p(x < -1) = NaN`, `log1p(+-0) = +-0`, `log1p(inf) = inf`;
//! `exp(-inf) = +0`, `exp(inf) = inf`, `exp(+-0) = 1`; NaN gives NaN.
//!
//! Accuracy, measured by the tests below at every SIMD level (every `f32` input the losses
//! use: `log` on `[0, 1]`, `log1p` on `[-1, 1]`, `exp` on `(-inf, 0]`, against `f64` libm;
//! random `f64` inputs, against libm): below one ulp everywhere. The largest `f32` errors are
//! 0.90 ulp (`log`), 0.94 ulp (`log1p`), 0.92 ulp (`exp`) without FMA, 0.88, 0.88 and 0.91
//! with it. The `f64` results are faithful (within 1 ulp of libm's, about 0.9 ulp at most
//! from the exact value in a check against 40-digit arithmetic).

use super::simd::Isa;
use crate::float::Float;

/// The elementary functions the kernels need, per float type. A supertrait of
/// [`crate::Float`]; unreachable from outside the crate.
pub trait Math: Copy {
    /// Natural logarithm.
    fn log_impl<I: Isa>(self) -> Self;
    /// `log(1 + x)`.
    fn log1p_impl<I: Isa>(self) -> Self;
    /// `e^x`.
    fn exp_impl<I: Isa>(self) -> Self;
    /// `log(x)` for `x` in `[0, 1]`; see [`log_unit`].
    fn log_unit_impl<I: Isa>(self) -> Self;
    /// `log1p(-x)` for `x` in `[0, 1]`; see [`log1m_unit`].
    fn log1m_unit_impl<I: Isa>(self) -> Self;
    /// `log1p(x)` for `x` in `[0, 1]`; see [`log1p_unit`].
    fn log1p_unit_impl<I: Isa>(self) -> Self;
    /// `e^x` for `x <= 0`; see [`exp_nonpos`].
    fn exp_nonpos_impl<I: Isa>(self) -> Self;
}

/// The per-type constants of the generic bodies.
trait Consts: Float {
    /// Number of explicit mantissa bits: 23 or 52.
    const MANT: u32;
    /// The mantissa field.
    const MANT_MASK: Self::Bits;
    /// The exponent field.
    const EXP_MASK: Self::Bits;
    /// The bits of `sqrt(1/2)` rounded: the smallest reduced mantissa `m`.
    const SQRT_HALF_BITS: Self::Bits;
    /// `bits(1) - bits(sqrt(1/2))`: added to `bits(x)`, moves the exponent boundary to `sqrt(2)`.
    const LOG_OFFSET: Self::Bits;
    /// `(2 bias) << p`: less the exponent field of `2^k` (in place), the bits of `2^-k`.
    const TWO_BIAS: Self::Bits;
    /// `2^p`: scales subnormals, and turns a small integer `n` into the float `2^p + n` by
    /// or-ing `n` into its bits.
    const TWO_P: Self;
    /// `2^p + bias`: `K_BIAS - float(2^p + biased exponent) = -k`.
    const K_BIAS: Self;
    /// `K_BIAS + p`: the same for an input scaled by `2^p`.
    const K_BIAS_SCALED: Self;
    /// `-1/2`.
    const NEG_HALF: Self;
    /// `-ln2_hi`: `ln 2` truncated to few enough bits that `k ln2_hi` is exact for every `k`
    /// the functions meet.
    const NEG_LN2_HI: Self;
    /// `-ln2_lo`, `ln2_lo = ln 2 - ln2_hi > 0` rounded.
    const NEG_LN2_LO: Self;
    /// `-ln 2` rounded.
    const NEG_LN2: Self;
    /// Whether the loss kernels' logarithms take [`log_tail_unit`]'s shorter evaluation (at
    /// the levels with fused multiply-add).
    const SHORT_TAIL: bool;
    /// `log1p` ignores the rounding error of `1 + x` from here on (`2^(p+1)`).
    const LOG1P_EXACT_LIMIT: Self;
    /// Below this, `log1p(f) = f` to well under an ulp (`f/2 < 2^-(p+8)`).
    const LOG1P_TINY: Self;
    /// Coefficients, constant term first, of `Q(f) ~ (log1p(f) - f + f^2 / 2) / f^3` on
    /// `[sqrt(1/2) - 1, sqrt(2) - 1]`.
    const LOG_Q: &'static [Self];
    /// The same for [`log1p_unit`]'s reduced argument, on `[-1/4, 1/2]`
    /// (`scripts/fit_log1p_unit.py` fits them).
    const LOG1P_UNIT_Q: &'static [Self];
    /// `1 / ln 2`.
    const LOG2E: Self;
    /// `1.5 * 2^p`: `(v + SHIFTER) - SHIFTER` rounds `v` to an integer.
    const SHIFTER: Self;
    /// `exp` clamps its argument to `[EXP_MIN, EXP_MAX]`. At `EXP_MIN`, `k = -(bias + B)` and
    /// the first scale `2^(k + B)` is exactly 0: results that round to 0 come out of exact
    /// products, with no underflow (which is slow on x86).
    const EXP_MIN: Self;
    /// Above this, `exp` is infinite.
    const EXP_MAX: Self;
    /// Coefficients, constant term first, of `Q(r) ~ (e^r - 1 - r) / r^2` on
    /// `[-ln2 / 2, ln2 / 2]`.
    const EXP_Q: &'static [Self];
    /// `(bias + B) << p`: the first scale of `exp` for `x < 0` is `2^(k + B)`.
    const EXP_BIAS_NEG: Self::Bits;
    /// `(bias - B) << p`: the first scale for `x >= 0` is `2^(k - B)`.
    const EXP_BIAS_POS: Self::Bits;
    /// `2^-B`, the second scale for `x < 0`.
    const EXP_SCALE_NEG: Self;
    /// `2^B`, the second scale for `x >= 0`.
    const EXP_SCALE_POS: Self;

    /// `a + b`, wrapping.
    fn wrapping_add(a: Self::Bits, b: Self::Bits) -> Self::Bits;
    /// `a - b`, wrapping.
    fn wrapping_sub(a: Self::Bits, b: Self::Bits) -> Self::Bits;
}

impl Consts for f32 {
    const MANT: u32 = 23;
    const MANT_MASK: u32 = 0x007f_ffff;
    const EXP_MASK: u32 = 0x7f80_0000;
    const SQRT_HALF_BITS: u32 = 0x3f35_04f3;
    const LOG_OFFSET: u32 = 0x3f80_0000 - 0x3f35_04f3;
    const TWO_BIAS: u32 = 254 << 23;
    const TWO_P: f32 = 8_388_608.0;
    const K_BIAS: f32 = 8_388_608.0 + 127.0;
    const K_BIAS_SCALED: f32 = 8_388_608.0 + 127.0 + 23.0;
    const NEG_HALF: f32 = -0.5;
    // 0.693145751953125: 15 significant bits, so k * LN2_HI is exact for |k| < 2^9.
    const NEG_LN2_HI: f32 = f32::from_bits(0xbf31_7200);
    const NEG_LN2_LO: f32 = -1.4286068e-6;
    const NEG_LN2: f32 = -core::f32::consts::LN_2;
    const SHORT_TAIL: bool = true;
    const LOG1P_EXACT_LIMIT: f32 = 16_777_216.0;
    const LOG1P_TINY: f32 = f32::from_bits((127 - 32) << 23);
    // Relative error of f - f^2/2 + f^3 Q(f) against log1p(f): 2^-27.3.
    const LOG_Q: &'static [f32] = &[
        3.333333e-1,
        -2.500082e-1,
        2.0001242e-1,
        -1.6623409e-1,
        1.4201589e-1,
        -1.3159613e-1,
        1.2762132e-1,
        -7.636309e-2,
    ];
    // Relative error of f - f^2/2 + f^3 Q(f) against log1p(f) on [-1/4, 1/2]: 2^-27.6.
    const LOG1P_UNIT_Q: &'static [f32] = &[
        0.3333345,
        -0.250001,
        0.19990814,
        -0.16647115,
        0.14478657,
        -0.13162991,
        0.10464885,
        -0.04507568,
    ];
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const SHIFTER: f32 = 12_582_912.0;
    const EXP_MIN: f32 = -132.5;
    const EXP_MAX: f32 = 100.0;
    // Relative error of 1 + r + r^2 Q(r) against e^r: 2^-28.2.
    const EXP_Q: &'static [f32] = &[
        4.9999994e-1,
        1.6666521e-1,
        4.166833e-2,
        8.368706e-3,
        1.3814573e-3,
    ];
    const EXP_BIAS_NEG: u32 = (127 + 64) << 23;
    const EXP_BIAS_POS: u32 = (127 - 64) << 23;
    const EXP_SCALE_NEG: f32 = f32::from_bits((127 - 64) << 23);
    const EXP_SCALE_POS: f32 = f32::from_bits((127 + 64) << 23);

    #[inline(always)]
    fn wrapping_add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    fn wrapping_sub(a: u32, b: u32) -> u32 {
        a.wrapping_sub(b)
    }
}

impl Consts for f64 {
    const MANT: u32 = 52;
    const MANT_MASK: u64 = 0x000f_ffff_ffff_ffff;
    const EXP_MASK: u64 = 0x7ff0_0000_0000_0000;
    const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;
    const LOG_OFFSET: u64 = 0x3ff0_0000_0000_0000 - 0x3fe6_a09e_667f_3bcd;
    const TWO_BIAS: u64 = 2046 << 52;
    const TWO_P: f64 = 4_503_599_627_370_496.0;
    const K_BIAS: f64 = 4_503_599_627_370_496.0 + 1023.0;
    const K_BIAS_SCALED: f64 = 4_503_599_627_370_496.0 + 1023.0 + 52.0;
    const NEG_HALF: f64 = -0.5;
    // fdlibm's ln2_hi: 32 significant bits, so k * LN2_HI is exact for |k| < 2^21.
    const NEG_LN2_HI: f64 = f64::from_bits(0xbfe6_2e42_fee0_0000);
    const NEG_LN2_LO: f64 = -1.9082149292705877e-10;
    const NEG_LN2: f64 = -core::f64::consts::LN_2;
    // In f64 the shorter tail rounds off more often (18% of random arguments in [0, 1] more
    // than 1/2 ulp from libm, against 5%): the precise one stays.
    const SHORT_TAIL: bool = false;
    const LOG1P_EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;
    const LOG1P_TINY: f64 = f64::from_bits((1023 - 60) << 52);
    // Relative error of f - f^2/2 + f^3 Q(f) against log1p(f): 2^-59.0.
    const LOG_Q: &'static [f64] = &[
        0.33333333333333454,
        -0.24999999999998948,
        0.1999999999994601,
        -0.16666666666909627,
        0.14285714293839713,
        -0.12499999982343525,
        0.11111110516674316,
        -0.10000000371829013,
        0.09090933473444375,
        -0.08333345987116554,
        0.0769171528352924,
        -0.07141997568703767,
        0.06675136838398793,
        -0.06269814123644192,
        0.05817870769668822,
        -0.05326777123199697,
        0.05415602137147529,
        -0.06274794092595289,
        0.05697428863062337,
        -0.02428228233127568,
    ];
    // Relative error of f - f^2/2 + f^3 Q(f) against log1p(f) on [-1/4, 1/2]: 2^-59.2.
    const LOG1P_UNIT_Q: &'static [f64] = &[
        0.3333333333333327,
        -0.25000000000001904,
        0.2000000000003233,
        -0.16666666666197036,
        0.14285714280071868,
        -0.12500000038323378,
        0.11111111583289096,
        -0.09999998835319904,
        0.09090887923696132,
        -0.08333329552448769,
        0.0769282147442177,
        -0.07143928908680872,
        0.06660709315354461,
        -0.06224710384331115,
        0.05891848515611192,
        -0.057782579715418746,
        0.05659602354578663,
        -0.04721944122684222,
        0.026599315545887445,
        -0.007090046741471384,
    ];
    const LOG2E: f64 = core::f64::consts::LOG2_E;
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    const EXP_MIN: f64 = -1064.0;
    const EXP_MAX: f64 = 720.0;
    // Relative error of 1 + r + r^2 Q(r) against e^r: 2^-57.9.
    const EXP_Q: &'static [f64] = &[
        0.5000000000000011,
        0.16666666666666466,
        0.0416666666665288,
        0.008333333333470201,
        0.0013888888943699815,
        0.00019841269546265805,
        2.4801493170905913e-5,
        2.755755846322159e-6,
        2.7630195073713777e-7,
        2.5007222140762878e-8,
    ];
    const EXP_BIAS_NEG: u64 = (1023 + 512) << 52;
    const EXP_BIAS_POS: u64 = (1023 - 512) << 52;
    const EXP_SCALE_NEG: f64 = f64::from_bits((1023 - 512) << 52);
    const EXP_SCALE_POS: f64 = f64::from_bits((1023 + 512) << 52);

    #[inline(always)]
    fn wrapping_add(a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    fn wrapping_sub(a: u64, b: u64) -> u64 {
        a.wrapping_sub(b)
    }
}

macro_rules! impl_math {
    ($($t:ty),*) => {$(
        impl Math for $t {
            #[inline(always)]
            fn log_impl<I: Isa>(self) -> Self {
                log_body::<$t, I, true>(self)
            }
            #[inline(always)]
            fn log1p_impl<I: Isa>(self) -> Self {
                log1p_body::<$t, I, true>(self)
            }
            #[inline(always)]
            fn exp_impl<I: Isa>(self) -> Self {
                exp_body::<$t, I, false>(self)
            }
            #[inline(always)]
            fn log_unit_impl<I: Isa>(self) -> Self {
                log_body::<$t, I, false>(self)
            }
            #[inline(always)]
            fn log1m_unit_impl<I: Isa>(self) -> Self {
                log1m_unit_body::<$t, I>(self)
            }
            #[inline(always)]
            fn log1p_unit_impl<I: Isa>(self) -> Self {
                log1p_unit_body::<$t, I>(self)
            }
            #[inline(always)]
            fn exp_nonpos_impl<I: Isa>(self) -> Self {
                exp_body::<$t, I, true>(self)
            }
        }
    )*};
}

impl_math!(f32, f64);

/// Natural logarithm of `x`. (The kernels need only [`log_unit`]; this general function is
/// what the tests hold it to.)
#[cfg_attr(not(test), allow(dead_code))]
#[inline(always)]
pub(crate) fn log<F: Math, I: Isa>(x: F) -> F {
    x.log_impl::<I>()
}

/// `log(1 + x)`, accurate for small `x`. (The kernels need only [`log1p_unit`].)
#[cfg_attr(not(test), allow(dead_code))]
#[inline(always)]
pub(crate) fn log1p<F: Math, I: Isa>(x: F) -> F {
    x.log1p_impl::<I>()
}

/// `e^x`. (The kernels need only [`exp_nonpos`].)
#[cfg_attr(not(test), allow(dead_code))]
#[inline(always)]
pub(crate) fn exp<F: Math, I: Isa>(x: F) -> F {
    x.exp_impl::<I>()
}

/// [`log`] for the probabilities of BCE, `x` in `[0, 1]`, without the special-value selects:
/// at +0 and -0 a finite value below -100 (-103.97 in `f32`, -745.1 in `f64`) instead of
/// `-inf`, which the kernels' floor of -100 makes -100 as it does `-inf`. In `f64`, and at
/// levels without FMA, the bits of [`log`]; in `f32` with FMA, [`log_tail_unit`]'s shorter
/// evaluation (every `f32` in `(0, 1]` within 0.87 ulp). Outside `[0, 1]` the value is
/// unspecified (BCE rejects such inputs).
#[inline(always)]
pub(crate) fn log_unit<F: Math, I: Isa>(x: F) -> F {
    x.log_unit_impl::<I>()
}

/// `log1p(-x)` for `x` in `[0, 1]`, in fewer operations than [`log1p`], since `1 - x` is
/// reduced exactly: `-inf` at 1, +0 at +0 and -0. In `f64`, and at levels without FMA, the
/// bits of [`log1p`]`(-x)` elsewhere (tested for every `f32` and 2e7 random `f64`); in `f32`
/// with FMA, [`log_tail_unit`]'s shorter evaluation (every `f32` in `[0, 1]` within 0.88 ulp).
/// Outside `[0, 1]` the value is unspecified (BCE rejects such inputs).
#[inline(always)]
pub(crate) fn log1m_unit<F: Math, I: Isa>(x: F) -> F {
    x.log1m_unit_impl::<I>()
}

/// `log(1 + x)` for `x` in `[0, 1]` (`log1p(exp(-|x|))` of the logits loss), NaN for NaN. Its
/// own algorithm, with an exact reduced argument (see [`log1p_unit_body`]): as accurate as
/// [`log1p`] (tested for every `f32` and 5e7 random `f64`), not always the same bits. Outside
/// `[0, 1]` the value is unspecified.
#[inline(always)]
pub(crate) fn log1p_unit<F: Math, I: Isa>(x: F) -> F {
    x.log1p_unit_impl::<I>()
}

/// [`exp`] for `x <= 0` (`exp(-|x|)` of the logits loss), NaN included: the same bits there,
/// with one clamp and no sign selects fewer. For `x > 0` the value is unspecified.
#[inline(always)]
pub(crate) fn exp_nonpos<F: Math, I: Isa>(x: F) -> F {
    x.exp_nonpos_impl::<I>()
}

/// `c[0] + c[1] x + c[2] x^2 + ...` (at least two coefficients), with `x2 = x^2`, as
/// `E(x^2) + x O(x^2)`: two independent Horner chains, as many operations as one chain and half
/// its latency. The loops have constant trip counts and unroll.
#[inline(always)]
fn poly<F: Float, I: Isa>(x: F, x2: F, c: &[F]) -> F {
    let n = c.len();
    let mut i = (n - 1) & !1;
    let mut even = c[i];
    while i >= 2 {
        i -= 2;
        even = I::mul_add(even, x2, c[i]);
    }
    let mut i = (n - 2) | 1;
    let mut odd = c[i];
    while i >= 3 {
        i -= 2;
        odd = I::mul_add(odd, x2, c[i]);
    }
    I::mul_add(odd, x, even)
}

/// For positive normal `w`: `w = 2^k m`, `m` in `[sqrt(1/2), sqrt(2))`. Returns `m`, `-k` as
/// a float (`k_bias` is [`Consts::K_BIAS`], or [`Consts::K_BIAS_SCALED`] for a `w` scaled by
/// `2^p`), and `bits(w) + LOG_OFFSET`, whose exponent field is `k`'s. Garbage for other `w`.
#[inline(always)]
fn reduce<F: Consts>(w: F, k_bias: F) -> (F, F, F::Bits) {
    let ix = F::wrapping_add(w.to_bits(), F::LOG_OFFSET);
    // The biased exponent (and the sign, for negative garbage) as the float 2^p + field.
    let field = F::from_bits((ix >> F::MANT) | F::TWO_P.to_bits());
    let m = F::from_bits(F::wrapping_add(ix & F::MANT_MASK, F::SQRT_HALF_BITS));
    (m, k_bias - field, ix)
}

/// `k ln2 + log1p(f) + (lo0 - k ln2_lo)`, with `nk = -k` and `lo0 = k ln2_lo + (small terms)`:
/// `k ln2_hi + (f + (-f^2/2 + f^3 Q(f) + lo0))`, the powers of `f` taken of `fp`, which is `f`
/// or a zero that stands for a negligible `f`. `Q`'s coefficients are `q_coefs`
/// ([`Consts::LOG_Q`] or [`Consts::LOG1P_UNIT_Q`]).
///
/// Signed zeros survive: with `nk = +0` the products with the negative constants are `-0`.
#[inline(always)]
fn log_tail<F: Consts, I: Isa>(f: F, fp: F, nk: F, lo0: F, q_coefs: &[F]) -> F {
    let f2 = fp * fp;
    let q = poly::<F, I>(fp, f2, q_coefs);
    // -f^2/2 exactly (with FMA), then the much smaller f^3 Q(f).
    let lo = I::mul_add(f2, fp * q, I::mul_add(fp * F::NEG_HALF, fp, lo0));
    I::mul_add(nk, F::NEG_LN2_HI, f + lo)
}

/// [`log_tail`] for the loss kernels' logarithms (`lo0 = k ln2_lo`), four operations
/// shorter where the level has fused multiply-add and the type takes it
/// ([`Consts::SHORT_TAIL`]): `k ln2 + log1p(f)` as `fma(-k, -ln 2, fma(f^2, -1/2 + f Q(f), f))`,
/// three roundings, `k ln 2` in one. Over every `f32` in `[0, 1]` its largest error is no
/// larger (0.868 ulp for `log`, 0.872 for `log1p(-x)`, against 0.882 for both with
/// [`log_tail`]), but fewer results are correctly rounded (96.6% for `log`, against 99.4%).
/// In `f64`, and without FMA, it is [`log_tail`].
#[inline(always)]
fn log_tail_unit<F: Consts, I: Isa>(f: F, fp: F, nk: F, q_coefs: &[F]) -> F {
    if !(I::FMA && F::SHORT_TAIL) {
        return log_tail::<F, I>(f, fp, nk, nk * F::NEG_LN2_LO, q_coefs);
    }
    let f2 = fp * fp;
    let q = poly::<F, I>(fp, f2, q_coefs);
    let y = I::mul_add(f2, I::mul_add(fp, q, F::NEG_HALF), f);
    I::mul_add(nk, F::NEG_LN2, y)
}

/// `y` where `w` is positive and finite; otherwise the logarithm's special values at `w`:
/// `-inf` at 0, `+inf` at `+inf`, NaN below 0 and at NaN.
#[inline(always)]
fn log_special<F: Float>(w: F, y: F) -> F {
    let y = if w < F::INFINITY { y } else { w };
    let bad = if w == F::ZERO { -F::INFINITY } else { F::NAN };
    if w > F::ZERO {
        y
    } else {
        bad
    }
}

/// `log(x)`; with `SPECIAL = false`, only for `x` in `[0, 1]` (see [`log_unit`]).
#[inline(always)]
fn log_body<F: Consts, I: Isa, const SPECIAL: bool>(x: F) -> F {
    let (xs, k_bias) = if SPECIAL {
        // Subnormals are scaled by 2^p into the normal range.
        let subnormal = x < F::MIN_POSITIVE;
        let xs = if subnormal { x * F::TWO_P } else { x };
        let k_bias = if subnormal {
            F::K_BIAS_SCALED
        } else {
            F::K_BIAS
        };
        (xs, k_bias)
    } else {
        // On [0, 1] every value can be scaled by 2^p, exactly and without overflow: one
        // product instead of a compare and two selects. `+ 0` makes -0 the +0 whose
        // logarithm the floor of -100 catches (the range check computes the same sum).
        ((x + F::ZERO) * F::TWO_P, F::K_BIAS_SCALED)
    };
    let (m, nk, _) = reduce::<F>(xs, k_bias);
    let f = m - F::ONE;
    let y = if SPECIAL {
        log_tail::<F, I>(f, f, nk, nk * F::NEG_LN2_LO, F::LOG_Q)
    } else {
        log_tail_unit::<F, I>(f, f, nk, F::LOG_Q)
    };
    if SPECIAL {
        log_special(x, y)
    } else {
        y
    }
}

/// `log1p(x)`; with `SPECIAL = false`, only for `x` in `[0, 1]` (see [`log1p_unit`]).
#[inline(always)]
fn log1p_body<F: Consts, I: Isa, const SPECIAL: bool>(x: F) -> F {
    let w = F::ONE + x;
    // The rounding error of `w`, exact while `w <= 2^(p+1)` (Sterbenz).
    let c = x - (w - F::ONE);
    let (m, nk, ix) = reduce::<F>(w, F::K_BIAS);
    // 2^-k from the exponent field of `ix`.
    let scale = F::from_bits(F::wrapping_sub(F::TWO_BIAS, ix & F::EXP_MASK));
    let cs = if !SPECIAL || w < F::LOG1P_EXACT_LIMIT {
        c * scale
    } else {
        F::ZERO
    };
    // f + f_lo = (1 + x) 2^-k - 1 = (m - 1) + c 2^-k exactly. `-(1 - m)`, not `m - 1`, so that
    // log1p(-0) = -0. Fast2Sum: |1 - m| >= |cs| unless 1 - m = 0.
    let nf = F::ONE - m;
    let f = cs - nf;
    let f_lo = cs - (f + nf);
    // log1p(f + f_lo) = log1p(f) + f_lo / (1 + f) + O(f_lo^2).
    let lo0 = I::mul_add(nk, F::NEG_LN2_LO, I::mul_add(-f, f_lo, f_lo));
    // Below LOG1P_TINY the powers of `f` are negligible, and they would underflow, which is
    // slow on x86 (tiny probabilities are common): they are taken of -0 instead.
    let tiny = F::from_bits(f.to_bits() & !F::SIGN_MASK) < F::LOG1P_TINY;
    let fp = if tiny { -F::ZERO } else { f };
    let y = log_tail::<F, I>(f, fp, nk, lo0, F::LOG_Q);
    if SPECIAL {
        log_special(w, y)
    } else {
        y
    }
}

/// `log1p(-x)` for `x` in `[0, 1]` (see [`log1m_unit`]), as a logarithm of `w = 1 - x`
/// whose reduced argument is exact, so that no correction term is needed.
///
/// With `w = 2^k m` as [`reduce`] finds it from the rounded `w` and `s = 2^-k`, the reduced
/// argument is `f = s (1 - x) - 1 = fma(-x, s, s - 1)`, and it is exact: `s - 1` is (`s` is
/// at most `2^p`, since `w >= 2^-p`), and so is the result. For `x >= 1/2`, `w` is exact and
/// `f = m - 1`; for `x < 1/2`, `k` is 0 or -1 and `f` is `-x` or `1 - 2x`, both floats. The
/// rounding of `w` only decides which of the two (they agree to an ulp at the boundary).
#[inline(always)]
fn log1m_unit_body<F: Consts, I: Isa>(x: F) -> F {
    let w = F::ONE - x;
    let (_, nk, ix) = reduce::<F>(w, F::K_BIAS);
    let s = F::from_bits(F::wrapping_sub(F::TWO_BIAS, ix & F::EXP_MASK));
    let f = I::mul_add(-x, s, s - F::ONE);
    // Below LOG1P_TINY the powers of `f` are negligible, and they would underflow, which is
    // slow on x86: they are taken of -0 instead. (`f` is `-x` there, so `x` tells.)
    let fp = if x < F::LOG1P_TINY { -F::ZERO } else { f };
    let y = log_tail_unit::<F, I>(f, fp, nk, F::LOG_Q);
    if w == F::ZERO {
        -F::INFINITY
    } else {
        y
    }
}

/// `log1p(x)` for `x` in `[0, 1]` (see [`log1p_unit`]), with `1 + x = 2^k (1 + f)`, `k` 0 or 1,
/// and `f` exact, so that no correction term is needed: `f = x` below 1/2; from 1/2 up,
/// `f = (1 + x) / 2 - 1 = x / 2 - 1/2`, exact (`x / 2` and `1/2` are within a factor of two:
/// Sterbenz), one fused operation. `f` lies in `[-1/4, 1/2)`, where
/// [`Consts::LOG1P_UNIT_Q`] is fitted.
#[inline(always)]
fn log1p_unit_body<F: Consts, I: Isa>(x: F) -> F {
    let half = -F::NEG_HALF;
    let upper = x >= half;
    let f = if upper {
        I::mul_add(x, half, F::NEG_HALF)
    } else {
        x
    };
    let nk = if upper { -F::ONE } else { F::ZERO };
    // Below LOG1P_TINY the powers of `f` (`x` there) are negligible, and they would
    // underflow, which is slow on x86: they are taken of -0 instead.
    let fp = if x < F::LOG1P_TINY { -F::ZERO } else { f };
    log_tail_unit::<F, I>(f, fp, nk, F::LOG1P_UNIT_Q)
}

/// `e^x`; with `NONPOS`, only for `x <= 0` or NaN (see [`exp_nonpos`]).
#[inline(always)]
fn exp_body<F: Consts, I: Isa, const NONPOS: bool>(x: F) -> F {
    // NaN passes both clamps.
    let x = if x < F::EXP_MIN { F::EXP_MIN } else { x };
    let x = if !NONPOS && x > F::EXP_MAX {
        F::EXP_MAX
    } else {
        x
    };
    // For x <= 0, k <= 0 and the negative side's scales serve (exactly, at k = 0 too).
    let neg = NONPOS || x < F::ZERO;
    // t = SHIFTER + k: its low bits hold k in two's complement.
    let t = I::mul_add(x, F::LOG2E, F::SHIFTER);
    let k = t - F::SHIFTER;
    // x - k ln2 = r_hi + r_lo, r_hi exact (k ln2_hi exact, then Sterbenz).
    let r_hi = I::mul_add(k, F::NEG_LN2_HI, x);
    let r_lo = k * F::NEG_LN2_LO;
    let r = r_hi + r_lo;
    let r2 = r * r;
    let q = poly::<F, I>(r, r2, F::EXP_Q);
    let y = F::ONE + (r_hi + I::mul_add(r2, q, r_lo));
    // 2^k in two steps: 2^(k -+ B) is normal, and the product is rounded once, by 2^(+-B).
    let bias = if neg {
        F::EXP_BIAS_NEG
    } else {
        F::EXP_BIAS_POS
    };
    let s1 = F::from_bits(F::wrapping_add(t.to_bits() << F::MANT, bias));
    let s2 = if neg {
        F::EXP_SCALE_NEG
    } else {
        F::EXP_SCALE_POS
    };
    y * s1 * s2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::{available_simd_levels, dispatch, Kernel, SimdLevel};
    use rayon::prelude::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Func {
        Log,
        Log1p,
        Exp,
        /// [`log1p_unit`], held to the reference of `log1p` on `[0, 1]`.
        Log1pUnit,
        /// [`log_unit`], held to the reference of `log` on `(0, 1]`.
        LogUnit,
        /// [`log1m_unit`]: `log1p(-x)` on `[0, 1]`.
        Log1mUnit,
    }

    /// Maps one of the functions over a slice, at a dispatch level: the vectorised code.
    struct Map<'a, F> {
        func: Func,
        x: &'a [F],
        out: &'a mut [F],
    }

    impl<F: Float> Kernel for Map<'_, F> {
        type Output = ();
        #[inline(always)]
        fn run<I: Isa>(self) {
            let n = self.x.len().min(self.out.len());
            let (x, out) = (&self.x[..n], &mut self.out[..n]);
            match self.func {
                Func::Log => map_each::<F, I>(x, out, log::<F, I>),
                Func::Log1p => map_each::<F, I>(x, out, log1p::<F, I>),
                Func::Exp => map_each::<F, I>(x, out, exp::<F, I>),
                Func::Log1pUnit => map_each::<F, I>(x, out, log1p_unit::<F, I>),
                Func::LogUnit => map_each::<F, I>(x, out, log_unit::<F, I>),
                Func::Log1mUnit => map_each::<F, I>(x, out, log1m_unit::<F, I>),
            }
        }
    }

    /// `out[i] = f(x[i])`, one loop per function (`f` is inlined, and the loop vectorised).
    #[inline(always)]
    fn map_each<F: Float, I: Isa>(x: &[F], out: &mut [F], f: impl Fn(F) -> F) {
        for i in 0..x.len().min(out.len()) {
            let i = I::index(i);
            out[i] = f(x[i]);
        }
    }

    fn eval<F: Float>(level: SimdLevel, func: Func, x: &[F]) -> Vec<F> {
        let mut out = vec![F::ZERO; x.len()];
        dispatch(
            level,
            Map {
                func,
                x,
                out: &mut out,
            },
        );
        out
    }

    /// 2^e as an f64, for e >= -1074.
    fn pow2(e: i32) -> f64 {
        if e >= -1022 {
            f64::from_bits(((e + 1023) as u64) << 52)
        } else {
            f64::from_bits(1u64 << (e + 1074))
        }
    }

    /// The test's view of a float type.
    trait TestFloat: Consts + core::fmt::LowerExp {
        /// Explicit mantissa bits and smallest normal exponent.
        const P: i32;
        const EMIN: i32;
        /// Largest finite exponent.
        const EMAX: i32;
        /// The reference: an f64 close enough to the exact value.
        fn reference(func: Func, x: Self) -> f64;
        /// Position in the ordered sequence of floats (for differences in ulps).
        fn ordinal(self) -> i64;
    }

    impl TestFloat for f32 {
        const P: i32 = 23;
        const EMIN: i32 = -126;
        const EMAX: i32 = 127;
        fn reference(func: Func, x: f32) -> f64 {
            let x = f64::from(x);
            match func {
                Func::Log | Func::LogUnit => x.ln(),
                Func::Log1p | Func::Log1pUnit => x.ln_1p(),
                Func::Log1mUnit => (-x).ln_1p(),
                Func::Exp => x.exp(),
            }
        }
        fn ordinal(self) -> i64 {
            let b = i64::from(self.to_bits() & 0x7fff_ffff);
            if self.to_bits() >> 31 == 1 {
                -b
            } else {
                b
            }
        }
    }

    impl TestFloat for f64 {
        const P: i32 = 52;
        const EMIN: i32 = -1022;
        const EMAX: i32 = 1023;
        fn reference(func: Func, x: f64) -> f64 {
            match func {
                Func::Log | Func::LogUnit => x.ln(),
                Func::Log1p | Func::Log1pUnit => x.ln_1p(),
                Func::Log1mUnit => (-x).ln_1p(),
                Func::Exp => x.exp(),
            }
        }
        fn ordinal(self) -> i64 {
            let b = (self.to_bits() & 0x7fff_ffff_ffff_ffff) as i64;
            if self.to_bits() >> 63 == 1 {
                -b
            } else {
                b
            }
        }
    }

    /// |ours - reference| in ulps of the reference, in `F`'s format (0 where both are the same
    /// special value, infinite where one is NaN and not the other). An infinite result against
    /// a finite reference counts as 2^(EMAX + 1).
    fn ulp_error<F: TestFloat>(ours: F, reference: f64) -> f64 {
        let o = ours.to_f64();
        if reference.is_nan() || o.is_nan() {
            return if reference.is_nan() && o.is_nan() {
                0.0
            } else {
                f64::INFINITY
            };
        }
        // A reference that rounds to infinity in `F`.
        let rounded = F::from_f64(reference).to_f64();
        if rounded.is_infinite() {
            return if o == rounded { 0.0 } else { f64::INFINITY };
        }
        let e = (((reference.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(F::EMIN);
        let ulp = pow2(e - F::P);
        if o.is_infinite() {
            if o.signum() != reference.signum() {
                return f64::INFINITY;
            }
            // 2^(EMAX + 1) - |reference|, without overflow.
            let big = pow2(F::EMAX);
            return ((big - reference.abs()) + big) / ulp;
        }
        (o - reference).abs() / ulp
    }

    /// Maximum error of each level against the reference, the argument where it occurs, and
    /// the largest difference (in ulps) of each level from the scalar level.
    #[derive(Clone, Debug)]
    struct Stats<F> {
        err: Vec<(f64, F)>,
        vs_scalar: Vec<i64>,
        /// Results more than half an ulp from the reference: not correctly rounded (`f32`),
        /// different from libm (`f64`, where the reference is libm's result).
        off: Vec<u64>,
        count: u64,
    }

    impl<F: TestFloat> Stats<F> {
        fn new(n: usize) -> Self {
            Stats {
                err: vec![(0.0, F::ZERO); n],
                vs_scalar: vec![0; n],
                off: vec![0; n],
                count: 0,
            }
        }
        fn merge(mut self, other: Self) -> Self {
            for (a, b) in self.err.iter_mut().zip(other.err) {
                if b.0 > a.0 {
                    *a = b;
                }
            }
            for (a, b) in self.vs_scalar.iter_mut().zip(other.vs_scalar) {
                *a = (*a).max(b);
            }
            for (a, b) in self.off.iter_mut().zip(other.off) {
                *a += b;
            }
            self.count += other.count;
            self
        }
    }

    /// 1 / ulp(r) in `F`'s format, for finite `r` (branch-free).
    #[inline(always)]
    fn inv_ulp_of<F: TestFloat>(r: f64) -> f64 {
        let e = (((r.to_bits() >> 52) & 0x7ff) as i64 - 1023).max(i64::from(F::EMIN));
        // 2^(P - e), P - e in [P - EMAX, P - EMIN] (at most 1074: computed as a product).
        let k = i64::from(F::P) - e;
        let half = k / 2;
        f64::from_bits(((half + 1023) as u64) << 52)
            * f64::from_bits(((k - half + 1023) as u64) << 52)
    }

    /// Runs `func` at every level on `x` and measures it.
    fn measure<F: TestFloat>(func: Func, x: &[F], levels: &[SimdLevel]) -> Stats<F> {
        let reference: Vec<f64> = x.iter().map(|&v| F::reference(func, v)).collect();
        // 1 / ulp of each reference (garbage where it is not finite: the slow path sees those).
        let inv_ulp: Vec<f64> = reference.iter().map(|&r| inv_ulp_of::<F>(r)).collect();
        let mut stats = Stats::new(levels.len());
        stats.count = x.len() as u64;
        let scalar = eval(SimdLevel::Scalar, func, x);
        for (li, &level) in levels.iter().enumerate() {
            let other;
            let ours = if level == SimdLevel::Scalar {
                &scalar
            } else {
                other = eval(level, func, x);
                &other
            };
            // Branch-free passes that vectorise; the rare special values take a slow path.
            let (mut worst, mut special, mut diff, mut off) = (0.0f64, false, 0i64, 0u64);
            for i in 0..x.len() {
                let e = (ours[i].to_f64() - reference[i]).abs() * inv_ulp[i];
                special |= !e.is_finite();
                off += u64::from(e > 0.5);
                worst = if e > worst { e } else { worst };
                diff = diff.max(
                    ours[i]
                        .ordinal()
                        .saturating_sub(scalar[i].ordinal())
                        .saturating_abs(),
                );
            }
            let mut at = x
                .iter()
                .zip(ours.iter().zip(&reference))
                .find_map(|(&x, (&o, &r))| {
                    ((o.to_f64() - r).abs() * inv_ulp_of::<F>(r) == worst).then_some(x)
                });
            if special || diff > 1 {
                // Exact comparison: equal special values agree, NaN must meet NaN.
                (worst, at, diff, off) = (0.0, None, 0, 0);
                for i in 0..x.len() {
                    let e = ulp_error(ours[i], reference[i]);
                    off += u64::from(e > 0.5);
                    if e > worst || e.is_nan() {
                        worst = e;
                        at = Some(x[i]);
                    }
                    let (a, b) = (ours[i], scalar[i]);
                    let d = if a.to_f64().is_nan() && b.to_f64().is_nan() {
                        0
                    } else if a.to_f64().is_nan() || b.to_f64().is_nan() {
                        i64::MAX
                    } else {
                        a.ordinal().saturating_sub(b.ordinal()).saturating_abs()
                    };
                    diff = diff.max(d);
                }
            }
            let at = at.unwrap_or(F::ZERO);
            stats.err[li] = (worst, at);
            stats.vs_scalar[li] = diff;
            stats.off[li] = off;
        }
        stats
    }

    fn report<F: TestFloat>(name: &str, levels: &[SimdLevel], stats: &Stats<F>, bound: f64) {
        for (li, level) in levels.iter().enumerate() {
            let (e, at) = stats.err[li];
            println!(
                "{name} {} {:>8}: max error {e:.4} ulp (at {at:e}), {:.3}% over 1/2 ulp, \
                 max difference from scalar {} ulp",
                F::NAME,
                level.name(),
                100.0 * stats.off[li] as f64 / stats.count.max(1) as f64,
                stats.vs_scalar[li],
            );
        }
        for (li, level) in levels.iter().enumerate() {
            let (e, at) = stats.err[li];
            assert!(
                e <= bound,
                "{name} {} at {}: error {e} ulp at {at:e}",
                F::NAME,
                level.name()
            );
            assert!(
                stats.vs_scalar[li] <= 1,
                "{name} {} at {}: {} ulp from the scalar level",
                F::NAME,
                level.name(),
                stats.vs_scalar[li]
            );
        }
    }

    /// A small deterministic generator (SplitMix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 * pow2(-53)
        }
        /// Uniform in [lo, hi).
        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.unit()
        }
        /// 2^u with u uniform in [lo, hi): log-uniform magnitudes.
        fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
            let u = self.uniform(lo, hi);
            let e = u.floor();
            // 2^(u - e) approximated by 1 + (u - e): only the spread over binades matters.
            pow2(e as i32) * (1.0 + (u - e))
        }
    }

    /// Random arguments of `func` for type `F`: log-uniform magnitudes and uniform values over
    /// the whole domain, then the special values.
    fn samples<F: TestFloat>(func: Func, n: usize, seed: u64) -> Vec<F> {
        let mut rng = Rng(seed);
        let min_exp = f64::from(F::EMIN - F::P);
        let max_exp = f64::from(F::EMAX + 1);
        let mut v: Vec<f64> = Vec::with_capacity(n);
        while v.len() < n {
            let x = match (func, v.len() % 4) {
                // Whole domain of magnitudes, either sign.
                (Func::Log, 0) => rng.log_uniform(min_exp, max_exp),
                (Func::Log, 1) => rng.uniform(0.0, 1.0),
                (Func::Log, 2) => rng.log_uniform(min_exp, 0.0),
                (Func::Log, _) => 1.0 + rng.uniform(-0.5, 1.0),
                (Func::Log1p, 0) => -rng.log_uniform(min_exp, 0.0),
                (Func::Log1p, 1) => rng.log_uniform(min_exp, max_exp),
                (Func::Log1p, 2) => rng.uniform(-1.0, 1.0),
                (Func::Log1p, _) => -1.0 + rng.log_uniform(min_exp, 0.0),
                (Func::Exp, 0) => -rng.log_uniform(min_exp, 12.0),
                (Func::Exp, 1) => rng.log_uniform(min_exp, 12.0),
                (Func::Exp, 2) => rng.uniform(-800.0, 800.0),
                (Func::Exp, _) => rng.uniform(-1.0, 1.0),
                // [0, 1] only: towards 0, uniform, towards 1, and around each function's split
                // (1/2 for log1p_unit; sqrt(1/2) and 1 - sqrt(1/2), where the reductions of
                // log_unit and log1m_unit change k).
                (Func::Log1pUnit | Func::LogUnit | Func::Log1mUnit, 0) => {
                    rng.log_uniform(min_exp, 0.0)
                }
                (Func::Log1pUnit | Func::LogUnit | Func::Log1mUnit, 1) => rng.unit(),
                (Func::Log1pUnit | Func::LogUnit | Func::Log1mUnit, 2) => {
                    1.0 - rng.log_uniform(-f64::from(F::P) - 1.0, -1.0)
                }
                (Func::Log1pUnit, _) => rng.uniform(0.49, 0.51),
                (Func::LogUnit, _) => rng.uniform(0.70, 0.71),
                (Func::Log1mUnit, _) => rng.uniform(0.29, 0.30),
            };
            v.push(x);
        }
        let mut out: Vec<F> = v.into_iter().map(F::from_f64).collect();
        let unit = matches!(func, Func::Log1pUnit | Func::LogUnit | Func::Log1mUnit);
        out.extend(
            specials::<F>()
                .into_iter()
                .filter(|v| !unit || v.to_f64().is_nan() || (0.0..=1.0).contains(&v.to_f64())),
        );
        if func == Func::LogUnit {
            // At 0, log_unit is finite and below the floor (tested on its own); NaN is out of
            // its domain.
            out.retain(|v| v.to_f64() > 0.0);
        }
        out
    }

    fn specials<F: TestFloat>() -> Vec<F> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            2.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            1e-10,
            -1e-10,
            1e-40,
            -1e-40,
            100.0,
            -100.0,
            88.7,
            88.72,
            -87.3,
            -103.9,
            -104.0,
            709.7,
            -708.5,
            -745.0,
            -745.2,
        ];
        for e in [F::EMIN - F::P, F::EMIN - 1, F::EMIN, 0, F::P, F::EMAX] {
            v.push(pow2(e));
            v.push(-pow2(e));
        }
        v.into_iter().map(F::from_f64).collect()
    }

    fn random_test<F: TestFloat>(func: Func, name: &str, n: usize, bound: f64) {
        let levels = available_simd_levels();
        // A length that is no multiple of any vector width, so that tails are tested too.
        let x = samples::<F>(func, n + 13, 0x5eed ^ n as u64);
        let stats = measure(func, &x, &levels);
        report(name, &levels, &stats, bound);
    }

    const RANDOM: usize = 100_000;

    #[test]
    fn random_log_f32() {
        random_test::<f32>(Func::Log, "log", RANDOM, 1.0);
    }
    #[test]
    fn random_log1p_f32() {
        random_test::<f32>(Func::Log1p, "log1p", RANDOM, 1.0);
    }
    #[test]
    fn random_log1p_unit_f32() {
        random_test::<f32>(Func::Log1pUnit, "log1p_unit", RANDOM, 1.0);
    }
    #[test]
    fn random_log1p_unit_f64() {
        random_test::<f64>(Func::Log1pUnit, "log1p_unit", RANDOM, 1.0);
    }
    #[test]
    fn random_log_unit_f32() {
        random_test::<f32>(Func::LogUnit, "log_unit", RANDOM, 1.0);
    }
    #[test]
    fn random_log_unit_f64() {
        random_test::<f64>(Func::LogUnit, "log_unit", RANDOM, 1.0);
    }
    #[test]
    fn random_log1m_unit_f32() {
        random_test::<f32>(Func::Log1mUnit, "log1m_unit", RANDOM, 1.0);
    }
    #[test]
    fn random_log1m_unit_f64() {
        random_test::<f64>(Func::Log1mUnit, "log1m_unit", RANDOM, 1.0);
    }
    #[test]
    fn random_exp_f32() {
        random_test::<f32>(Func::Exp, "exp", RANDOM, 1.0);
    }
    #[test]
    fn random_log_f64() {
        random_test::<f64>(Func::Log, "log", RANDOM, 1.0);
    }
    #[test]
    fn random_log1p_f64() {
        random_test::<f64>(Func::Log1p, "log1p", RANDOM, 1.0);
    }
    #[test]
    fn random_exp_f64() {
        random_test::<f64>(Func::Exp, "exp", RANDOM, 1.0);
    }

    /// Every level gives exactly `want` (bitwise, NaN for NaN) at `x`.
    fn check_exact<F: TestFloat>(func: Func, x: F, want: F) {
        for level in available_simd_levels() {
            // Padded to a full vector and a tail, the value in every position class.
            let xs = vec![x; 37];
            for got in eval(level, func, &xs) {
                let ok = if want.to_f64().is_nan() {
                    got.to_f64().is_nan()
                } else {
                    got.to_bits() == want.to_bits()
                };
                assert!(
                    ok,
                    "{func:?}({x:e}) {} at {}: {got:e}, want {want:e}",
                    F::NAME,
                    level.name()
                );
            }
        }
    }

    fn special_values<F: TestFloat>() {
        let inf = F::INFINITY;
        let (zero, one, nan) = (F::ZERO, F::ONE, F::NAN);
        let neg_zero = -F::ZERO;
        for (x, want) in [
            (zero, -inf),
            (neg_zero, -inf),
            (-one, nan),
            (-F::MIN_POSITIVE, nan),
            (-inf, nan),
            (nan, nan),
            (inf, inf),
            (one, zero),
        ] {
            check_exact(Func::Log, x, want);
        }
        for (x, want) in [
            (-one, -inf),
            (zero, zero),
            (neg_zero, neg_zero),
            (F::from_f64(-1.5), nan),
            (-inf, nan),
            (nan, nan),
            (inf, inf),
        ] {
            check_exact(Func::Log1p, x, want);
        }
        for (x, want) in [(zero, zero), (nan, nan)] {
            check_exact(Func::Log1pUnit, x, want);
        }
        // Both sides of the split at 1/2, and the ends.
        let below_half = F::from_f64(0.5 - f64::from(F::P + 2).exp2().recip());
        for x in [below_half, F::from_f64(0.5), one, F::MIN_POSITIVE] {
            close(Func::Log1pUnit, x, 1.0);
        }
        for (x, want) in [
            (-inf, zero),
            (inf, inf),
            (nan, nan),
            (zero, one),
            (neg_zero, one),
            (F::from_f64(1e4), inf),
            (F::from_f64(-1e4), zero),
        ] {
            check_exact(Func::Exp, x, want);
        }
    }

    #[test]
    fn special_values_f32() {
        special_values::<f32>();
    }

    #[test]
    fn special_values_f64() {
        special_values::<f64>();
    }

    /// Values named in the specification, within 1 ulp at every level.
    fn close<F: TestFloat>(func: Func, x: F, bound: f64) {
        let reference = F::reference(func, x);
        for level in available_simd_levels() {
            let xs = vec![x; 21];
            for got in eval(level, func, &xs) {
                let e = ulp_error(got, reference);
                assert!(
                    e <= bound,
                    "{func:?}({x:e}) {} at {}: {got:e}, reference {reference:e}, {e} ulp",
                    F::NAME,
                    level.name()
                );
            }
        }
    }

    #[test]
    fn named_values() {
        // Subnormal logarithm argument.
        close(Func::Log, 1e-40f32, 1.0);
        close(Func::Log, f32::from_bits(1), 1.0);
        close(Func::Log, f64::from_bits(1), 1.0);
        close(Func::Log, 1e-310f64, 1.0);
        assert!((log::<f32, crate::kernels::simd::ScalarIsa>(1e-40) + 92.1034).abs() < 1e-3);
        // Tiny log1p arguments: log1p(x) = x.
        for x in [-1e-10f32, 1e-10, -1e-30, 1e-38, -1e-45, 3e-8, -3e-8] {
            close(Func::Log1p, x, 1.0);
        }
        for x in [-1e-10f64, 1e-10, -1e-200, 1e-300, -5e-324, 1e-17, -1e-17] {
            close(Func::Log1p, x, 1.0);
        }
        // The largest finite floats.
        close(Func::Log, f32::MAX, 1.0);
        close(Func::Log1p, f32::MAX, 1.0);
        close(Func::Log, f64::MAX, 1.0);
        close(Func::Log1p, f64::MAX, 1.0);
        close(Func::Log1p, 3e38f32, 1.0);
        close(Func::Log1p, 1.7e308f64, 1.0);
        // Subnormal results of exp: the gradient at logit 100, and around the underflow.
        for x in [-100.0f32, -87.5, -90.0, -95.0, -100.5, -103.0, -103.97] {
            close(Func::Exp, x, 1.0);
        }
        // The gradient of the logits loss at logit 100: -exp(-100) = -3.7e-44, a subnormal.
        assert_eq!(
            exp::<f32, crate::kernels::simd::ScalarIsa>(-100.0),
            (-100f64).exp() as f32
        );
        for x in [-710.0f64, -720.0, -740.0, -744.5, -745.1] {
            close(Func::Exp, x, 1.0);
        }
        // Results that round to 0, down to and past the clamp of the argument.
        for x in [
            -103.28f32, -103.98, -104.5, -120.0, -132.0, -132.5, -140.0, -1e30,
        ] {
            close(Func::Exp, x, 1.0);
        }
        for x in [-745.2f64, -746.0, -800.0, -1063.0, -1064.0, -1100.0, -1e300] {
            close(Func::Exp, x, 1.0);
        }
        // Just below overflow, and just above.
        for x in [88.0f32, 88.5, 88.72, 88.7228, 88.73] {
            close(Func::Exp, x, 1.0);
        }
        for x in [709.0f64, 709.78, 709.79] {
            close(Func::Exp, x, 1.0);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Exhaustive tests (`cargo test --release --lib -- --ignored exhaustive --nocapture`).

    /// Every f32 whose bits lie in each of `ranges` (inclusive), in parallel chunks.
    fn exhaustive_f32(func: Func, name: &str, ranges: &[(u32, u32)]) {
        let levels = available_simd_levels();
        let start = std::time::Instant::now();
        const CHUNK: u64 = 1 << 16;
        let mut total = Stats::<f32>::new(levels.len());
        let mut count = 0u64;
        for &(lo, hi) in ranges {
            let (lo, hi) = (u64::from(lo), u64::from(hi));
            let chunks = (hi - lo) / CHUNK + 1;
            count += hi - lo + 1;
            let stats = (0..chunks)
                .into_par_iter()
                .map(|c| {
                    let a = lo + c * CHUNK;
                    let b = (a + CHUNK - 1).min(hi);
                    let x: Vec<f32> = (a..=b).map(|bits| f32::from_bits(bits as u32)).collect();
                    measure(func, &x, &levels)
                })
                .reduce(|| Stats::new(levels.len()), Stats::merge);
            total = total.merge(stats);
        }
        println!(
            "exhaustive {name} f32: {count} inputs, {:.1} s",
            start.elapsed().as_secs_f64()
        );
        report(name, &levels, &total, 2.0);
    }

    /// Maps `x` to BCE's logarithm variants and the general functions they stand for, at a
    /// dispatch level: `[log_unit(x), log1m_unit(x)]` and `[log(x), log1p(-x)]`.
    /// (`exp_nonpos` is compared by [`check_exp_nonpos`]; `log1p_unit` has an algorithm of its
    /// own, held to the reference as `Func::Log1pUnit`.)
    struct UnitPair<'a, F> {
        x: &'a [F],
        out: &'a mut [[F; 4]],
    }

    impl<F: Float> Kernel for UnitPair<'_, F> {
        type Output = ();
        #[inline(always)]
        fn run<I: Isa>(self) {
            let n = self.x.len().min(self.out.len());
            let (x, out) = (&self.x[..n], &mut self.out[..n]);
            for i in 0..n {
                let i = I::index(i);
                let v = x[i];
                out[i] = [
                    log_unit::<F, I>(v),
                    log1m_unit::<F, I>(v),
                    log::<F, I>(v),
                    log1p::<F, I>(-v),
                ];
            }
        }
    }

    /// The loss kernels' variants on `[0, 1]` (`exp_nonpos` on `[-1, 0]`), at every level: at
    /// 0, `log_unit` is finite and below -100 instead of -inf; where a type keeps the precise
    /// tail (`f64`, and every type without FMA), `log_unit` and `log1m_unit` give the bits of
    /// `log(x)` and `log1p(-x)`. (Their accuracy is held to the references as
    /// `Func::LogUnit` and `Func::Log1mUnit`.)
    fn check_unit_variants<F: Consts>(x: &[F]) {
        let same =
            |a: F, b: F| a.to_bits() == b.to_bits() || (a.to_f64().is_nan() && b.to_f64().is_nan());
        for level in available_simd_levels() {
            let mut out = vec![[F::ZERO; 4]; x.len()];
            dispatch(level, UnitPair { x, out: &mut out });
            let general_tail = !F::SHORT_TAIL || !dispatch(level, HasFma);
            for (&v, r) in x.iter().zip(&out) {
                if v == F::ZERO {
                    assert!(r[0] <= F::LOG_FLOOR, "log_unit(0) = {} at {level}", r[0]);
                    assert!(r[1] == F::ZERO, "log1m_unit({v}) = {} at {level}", r[1]);
                    continue;
                }
                if general_tail {
                    assert!(same(r[0], r[2]), "log_unit({v}) at {level}");
                    assert!(same(r[1], r[3]), "log1m_unit({v}) at {level}");
                }
            }
        }
        check_exp_nonpos(x);
    }

    /// Whether a level has fused multiply-add.
    struct HasFma;

    impl Kernel for HasFma {
        type Output = bool;
        #[inline(always)]
        fn run<I: Isa>(self) -> bool {
            I::FMA
        }
    }

    /// Maps `x` to `[exp_nonpos(-x), exp(-x)]`, at a dispatch level.
    struct ExpPair<'a, F> {
        x: &'a [F],
        out: &'a mut [[F; 2]],
    }

    impl<F: Float> Kernel for ExpPair<'_, F> {
        type Output = ();
        #[inline(always)]
        fn run<I: Isa>(self) {
            let n = self.x.len().min(self.out.len());
            let (x, out) = (&self.x[..n], &mut self.out[..n]);
            for i in 0..n {
                let i = I::index(i);
                out[i] = [exp_nonpos::<F, I>(-x[i]), exp::<F, I>(-x[i])];
            }
        }
    }

    /// `exp_nonpos(-x)` is `exp(-x)` at every level, for `x >= 0` (and NaN).
    fn check_exp_nonpos<F: Float>(x: &[F]) {
        for level in available_simd_levels() {
            let mut out = vec![[F::ZERO; 2]; x.len()];
            dispatch(level, ExpPair { x, out: &mut out });
            for (&v, r) in x.iter().zip(&out) {
                let same = r[0].to_bits() == r[1].to_bits()
                    || (r[0].to_f64().is_nan() && r[1].to_f64().is_nan());
                assert!(same, "exp_nonpos(-{v}) at {level}");
            }
        }
    }

    fn unit_samples<F: Float>() -> Vec<F> {
        let mut x: Vec<F> = (0..=200_000)
            .map(|i| F::from_f64(f64::from(i) / 200_000.0))
            .collect();
        for e in 1..1100 {
            x.push(F::from_f64(2f64.powi(-e)));
            x.push(F::ONE - F::from_f64(2f64.powi(-e)));
        }
        x.retain(|v| *v >= F::ZERO && *v <= F::ONE);
        // -0 passes the range check too.
        x.push(-F::ZERO);
        x
    }

    /// Non-negative arguments of `exp(-x)`: log-uniform over the whole range, and specials.
    fn exp_samples<F: TestFloat>() -> Vec<F> {
        let mut rng = Rng(0xe4);
        let mut x: Vec<F> = (0..200_000)
            .map(|_| F::from_f64(rng.log_uniform(f64::from(F::EMIN - F::P), f64::from(F::EMAX))))
            .collect();
        x.extend([
            F::ZERO,
            F::INFINITY,
            F::NAN,
            F::from_f64(0.3),
            F::from_f64(1e4),
        ]);
        x
    }

    #[test]
    fn unit_variants_match_f32() {
        check_unit_variants(&unit_samples::<f32>());
        check_exp_nonpos(&exp_samples::<f32>());
    }

    #[test]
    fn unit_variants_match_f64() {
        check_unit_variants(&unit_samples::<f64>());
        check_exp_nonpos(&exp_samples::<f64>());
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_unit_variants_f32() {
        // Every f32 in [0, 1].
        let start = std::time::Instant::now();
        (0u32..=0x3f80_0000 >> 16).into_par_iter().for_each(|c| {
            let lo = c << 16;
            let hi = (lo | 0xffff).min(0x3f80_0000);
            let x: Vec<f32> = (lo..=hi).map(f32::from_bits).collect();
            check_unit_variants(&x);
        });
        // exp_nonpos over every non-negative f32 argument of exp(-x), infinity and NaN too.
        (0x3f80u32..=0x7fff).into_par_iter().for_each(|c| {
            let x: Vec<f32> = (c << 16..=(c << 16) | 0xffff).map(f32::from_bits).collect();
            check_exp_nonpos(&x);
        });
        println!(
            "exhaustive unit variants f32: {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_unit_variants_f64() {
        // 2 * 10^7 random f64 in [0, 1]: uniform, log-uniform towards 0 and towards 1.
        let start = std::time::Instant::now();
        (0u64..320).into_par_iter().for_each(|c| {
            let mut rng = Rng(0x1092 ^ (c << 24));
            let x: Vec<f64> = (0..1usize << 16)
                .map(|i| match i % 3 {
                    0 => rng.unit(),
                    1 => rng.log_uniform(-1074.0, 0.0).min(1.0),
                    _ => 1.0 - rng.log_uniform(-54.0, -1.0),
                })
                .collect();
            check_unit_variants(&x);
            let e: Vec<f64> = (0..1usize << 16)
                .map(|_| rng.log_uniform(-1074.0, 1024.0))
                .collect();
            check_exp_nonpos(&e);
        });
        println!(
            "random unit variants f64: {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log_f32() {
        // [0, 1], subnormals included.
        exhaustive_f32(Func::Log, "log", &[(0, 0x3f80_0000)]);
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log1p_f32_neg() {
        // [-1, -0]: log1p(-p) for probabilities p.
        exhaustive_f32(Func::Log1p, "log1p", &[(0x8000_0000, 0xbf80_0000)]);
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log1p_f32_pos() {
        // [0, 1]: log1p(e) for e = exp(-|z|).
        exhaustive_f32(Func::Log1p, "log1p", &[(0, 0x3f80_0000)]);
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log_unit_f32() {
        // (0, 1]: BCE's logarithm of the input (0 is tested on its own).
        exhaustive_f32(Func::LogUnit, "log_unit", &[(1, 0x3f80_0000)]);
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log1m_unit_f32() {
        // [0, 1] and -0: BCE's logarithm of 1 - input.
        exhaustive_f32(
            Func::Log1mUnit,
            "log1m_unit",
            &[(0, 0x3f80_0000), (0x8000_0000, 0x8000_0000)],
        );
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log1p_unit_f32() {
        // [0, 1]: the domain of log1p(exp(-|x|)).
        exhaustive_f32(Func::Log1pUnit, "log1p_unit", &[(0, 0x3f80_0000)]);
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_exp_f32_small() {
        // (-1, 0]: +0, and -0 down to the largest float above -1.
        exhaustive_f32(Func::Exp, "exp", &[(0, 0), (0x8000_0000, 0xbf7f_ffff)]);
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_exp_f32_large() {
        // (-inf, -1]: down to -inf, through the subnormal results and 0.
        exhaustive_f32(Func::Exp, "exp", &[(0xbf80_0000, 0xff80_0000)]);
    }

    /// 5 * 10^7 random f64 arguments over the losses' domain of `func`.
    fn exhaustive_f64(func: Func, name: &str) {
        let levels = available_simd_levels();
        let start = std::time::Instant::now();
        const CHUNK: usize = 1 << 16;
        const N: usize = 50_000_000;
        // BCE's logarithms: towards 0, uniform, and towards 1.
        let unit3 = matches!(func, Func::LogUnit | Func::Log1mUnit);
        let stats = (0..N.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let mut rng = Rng(0xdead_beef ^ ((c as u64) << 20));
                let x: Vec<f64> = (0..CHUNK)
                    .map(|i| match (func, i % if unit3 { 3 } else { 2 }) {
                        (Func::Log, 0) => rng.log_uniform(-1074.0, 0.0),
                        (Func::Log, _) => rng.unit(),
                        (Func::Log1p, 0) => {
                            let m = rng.log_uniform(-1074.0, 0.0);
                            if i % 4 == 0 {
                                -m
                            } else {
                                m
                            }
                        }
                        (Func::Log1p, _) => rng.uniform(-1.0, 1.0),
                        (Func::Log1pUnit | Func::LogUnit | Func::Log1mUnit, 0) => {
                            rng.log_uniform(-1074.0, 0.0)
                        }
                        (Func::Log1pUnit | Func::LogUnit | Func::Log1mUnit, 1) => rng.unit(),
                        (Func::LogUnit | Func::Log1mUnit, _) => 1.0 - rng.log_uniform(-54.0, -1.0),
                        (Func::Log1pUnit, _) => rng.unit(),
                        (Func::Exp, 0) => -rng.log_uniform(-1074.0, 10.0),
                        (Func::Exp, _) => rng.uniform(-746.0, 0.0),
                    })
                    .collect();
                measure(func, &x, &levels)
            })
            .reduce(|| Stats::new(levels.len()), Stats::merge);
        println!(
            "random {name} f64: {} inputs, {:.1} s",
            N.div_ceil(CHUNK) * CHUNK,
            start.elapsed().as_secs_f64()
        );
        report(name, &levels, &stats, 1.0);
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log_f64() {
        exhaustive_f64(Func::Log, "log");
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log1p_f64() {
        exhaustive_f64(Func::Log1p, "log1p");
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log1p_unit_f64() {
        exhaustive_f64(Func::Log1pUnit, "log1p_unit");
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log_unit_f64() {
        exhaustive_f64(Func::LogUnit, "log_unit");
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_log1m_unit_f64() {
        exhaustive_f64(Func::Log1mUnit, "log1m_unit");
    }

    #[test]
    #[ignore = "exhaustive: run in release mode"]
    fn exhaustive_exp_f64() {
        exhaustive_f64(Func::Exp, "exp");
    }

    // ---------------------------------------------------------------------------------------
    // Throughput (`cargo test --release --lib -- --ignored bench_math --nocapture`).

    struct Bench<'a, F> {
        logits: bool,
        x: &'a [F],
        out: &'a mut [F],
    }

    impl<F: Float> Kernel for Bench<'_, F> {
        type Output = ();
        #[inline(always)]
        fn run<I: Isa>(self) {
            let n = self.x.len().min(self.out.len());
            let (x, out) = (&self.x[..n], &mut self.out[..n]);
            if self.logits {
                for i in 0..n {
                    let i = I::index(i);
                    let e = exp::<F, I>(-x[i]);
                    out[i] = log1p::<F, I>(e);
                }
            } else {
                for i in 0..n {
                    let i = I::index(i);
                    out[i] = log::<F, I>(x[i]) + log1p::<F, I>(-x[i]);
                }
            }
        }
    }

    /// Seconds this thread has run (Linux), else wall-clock seconds: the machine may be shared.
    fn cpu_time() -> f64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map(|ns| ns * 1e-9)
            .unwrap_or_else(|| {
                START
                    .get_or_init(std::time::Instant::now)
                    .elapsed()
                    .as_secs_f64()
            })
    }

    fn bench<F: TestFloat>() {
        let n = 1_000_000;
        let mut rng = Rng(7);
        let x: Vec<F> = (0..n).map(|_| F::from_f64(rng.unit())).collect();
        let mut out = vec![F::ZERO; n];
        for level in available_simd_levels() {
            for logits in [false, true] {
                // The thread's CPU time is coarse (scheduler ticks): time many passes.
                let (start, mut reps) = (cpu_time(), 0);
                while reps < 5 || cpu_time() - start < 0.5 {
                    dispatch(
                        level,
                        Bench {
                            logits,
                            x: &x,
                            out: &mut out,
                        },
                    );
                    reps += 1;
                }
                let per_pass = (cpu_time() - start) / f64::from(reps);
                println!(
                    "{} {:>8} {}: {:.3} ns/element",
                    F::NAME,
                    level.name(),
                    if logits {
                        "log1p(exp(-x))"
                    } else {
                        "log(x) + log1p(-x)"
                    },
                    per_pass * 1e9 / n as f64
                );
            }
        }
        std::hint::black_box(&out);
    }

    #[test]
    #[ignore = "benchmark: run in release mode"]
    fn bench_math() {
        bench::<f32>();
        bench::<f64>();
    }
}
