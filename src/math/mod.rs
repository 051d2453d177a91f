//! Vectorisable elementary functions: `log`, `log1p`, `exp`, for `f32` and `f64`.
//!
//! Each function is one generic scalar body, branch-free and `#[inline(always)]`, so that the
//! kernels' loops that call it vectorise at every SIMD level. Only constants differ between
//! `f32` and `f64` (the polynomials above all, see [`Real`]). There is no table, no
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
//! Accuracy, measured by the tests (`tests.rs`) at every SIMD level (every `f32` input of the
//! losses' ranges: `log` on `[0, 1]`, `log1p` on `[-1, 1]`, `exp` on `(-inf, 0]`, against
//! `f64` libm; 5e7 random `f64` inputs each, against libm): below one ulp everywhere. The
//! largest `f32` errors are 0.90 ulp (`log`), 0.94 ulp (`log1p`), 0.92 ulp (`exp`) without FMA,
//! 0.88, 0.88 and 0.91 with it. The `f64` results are faithful (within 1 ulp of libm's, about
//! 0.9 ulp at most from the exact value in a check against 40-digit arithmetic).

use crate::float::Float;
use crate::simd::Isa;

/// A float type of the kernels: [`Float`] with the per-type constants of the elementary
/// functions' generic bodies. Implemented for `f32` and `f64`; unreachable from outside the
/// crate.
pub(crate) trait Real: Float + crate::accumulate::Summand {
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
    /// Whether the unit variants' logarithms ([`log_unit`], [`log1m_unit`], [`log1p_unit`])
    /// take [`log_tail_unit`]'s shorter evaluation (at the levels with fused multiply-add).
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

impl Real for f32 {
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

impl Real for f64 {
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

/// Natural logarithm of `x`: the focal loss's `log(a)` (`a` in `[0, 1]` for targets in
/// `[0, 1]`). (BCE takes [`log_unit`], which the tests hold to this general function.)
#[inline(always)]
pub(crate) fn log<F: Real, I: Isa>(x: F) -> F {
    log_body::<F, I, true>(x)
}

/// `log(1 + x)`, accurate for small `x`. (The kernels need only [`log1p_unit`] and
/// [`log1m_unit`], which the tests hold to this general function.)
#[cfg_attr(not(test), allow(dead_code))]
#[inline(always)]
pub(crate) fn log1p<F: Real, I: Isa>(x: F) -> F {
    log1p_body::<F, I, true>(x)
}

/// `e^x`: the focal loss's `(1 - p_t)^gamma = exp(gamma log(1 - p_t))` (an argument `<= 0`
/// for targets in `[0, 1]`). (The losses' `exp(-|x|)` takes [`exp_nonpos`].)
#[inline(always)]
pub(crate) fn exp<F: Real, I: Isa>(x: F) -> F {
    exp_body::<F, I, false>(x)
}

/// [`log`] for the probabilities of BCE, `x` in `[0, 1]`, without the special-value selects:
/// at +0 and -0 a finite value below -100 (-103.97 in `f32`, -745.1 in `f64`) instead of
/// `-inf`, which the kernels' floor of -100 makes -100 as it does `-inf`. In `f64`, and at
/// levels without FMA, the bits of [`log`]; in `f32` with FMA, [`log_tail_unit`]'s shorter
/// evaluation (every `f32` in `(0, 1]` within 0.87 ulp). Outside `[0, 1]` the value is
/// unspecified (BCE rejects such inputs).
#[inline(always)]
pub(crate) fn log_unit<F: Real, I: Isa>(x: F) -> F {
    log_body::<F, I, false>(x)
}

/// `log1p(-x)` for `x` in `[0, 1]`, in fewer operations than [`log1p`], since `1 - x` is
/// reduced exactly: `-inf` at 1, +0 at +0 and -0. In `f64`, and at levels without FMA, the
/// bits of [`log1p`]`(-x)` elsewhere (tested for every `f32` and 2e7 random `f64`); in `f32`
/// with FMA, [`log_tail_unit`]'s shorter evaluation (every `f32` in `[0, 1]` within 0.88 ulp).
/// Outside `[0, 1]` the value is unspecified (BCE rejects such inputs).
#[inline(always)]
pub(crate) fn log1m_unit<F: Real, I: Isa>(x: F) -> F {
    log1m_unit_body::<F, I>(x)
}

/// `log(1 + x)` for `x` in `[0, 1]` (`log1p(exp(-|x|))` of the losses on logits: BCE with
/// logits and the focal loss), NaN for NaN. Its own algorithm, with an exact reduced argument
/// (see [`log1p_unit_body`]): below one ulp like [`log1p`] (tested for every `f32`, 0.91 ulp at
/// most against `log1p`'s 0.88 on `[0, 1]`, and 5e7 random `f64`), not always the same bits.
/// Outside `[0, 1]` the value is unspecified.
#[inline(always)]
pub(crate) fn log1p_unit<F: Real, I: Isa>(x: F) -> F {
    log1p_unit_body::<F, I>(x)
}

/// [`exp`] for `x <= 0` (`exp(-|x|)` of the losses on logits), NaN included: the same bits
/// there, with one clamp and no sign selects fewer. For `x > 0` the value is unspecified.
#[inline(always)]
pub(crate) fn exp_nonpos<F: Real, I: Isa>(x: F) -> F {
    exp_body::<F, I, true>(x)
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
/// a float (`k_bias` is [`Real::K_BIAS`], or [`Real::K_BIAS_SCALED`] for a `w` scaled by
/// `2^p`), and `bits(w) + LOG_OFFSET`, whose exponent field is `k`'s. Garbage for other `w`.
#[inline(always)]
fn reduce<F: Real>(w: F, k_bias: F) -> (F, F, F::Bits) {
    let ix = F::wrapping_add(w.to_bits(), F::LOG_OFFSET);
    // The biased exponent (and the sign, for negative garbage) as the float 2^p + field.
    let field = F::from_bits((ix >> F::MANT) | F::TWO_P.to_bits());
    let m = F::from_bits(F::wrapping_add(ix & F::MANT_MASK, F::SQRT_HALF_BITS));
    (m, k_bias - field, ix)
}

/// `k ln2 + log1p(f) + (lo0 - k ln2_lo)`, with `nk = -k` and `lo0 = k ln2_lo + (small terms)`:
/// `k ln2_hi + (f + (-f^2/2 + f^3 Q(f) + lo0))`, the powers of `f` taken of `fp`, which is `f`
/// or a zero that stands for a negligible `f`. `Q`'s coefficients are `q_coefs`
/// ([`Real::LOG_Q`] or [`Real::LOG1P_UNIT_Q`]).
///
/// Signed zeros survive: with `nk = +0` the products with the negative constants are `-0`.
#[inline(always)]
fn log_tail<F: Real, I: Isa>(f: F, fp: F, nk: F, lo0: F, q_coefs: &[F]) -> F {
    let f2 = fp * fp;
    let q = poly::<F, I>(fp, f2, q_coefs);
    // -f^2/2 exactly (with FMA), then the much smaller f^3 Q(f).
    let lo = I::mul_add(f2, fp * q, I::mul_add(fp * F::NEG_HALF, fp, lo0));
    I::mul_add(nk, F::NEG_LN2_HI, f + lo)
}

/// [`log_tail`] for the unit variants' logarithms (`lo0 = k ln2_lo`), four operations
/// shorter where the level has fused multiply-add and the type takes it
/// ([`Real::SHORT_TAIL`]): `k ln2 + log1p(f)` as `fma(-k, -ln 2, fma(f^2, -1/2 + f Q(f), f))`,
/// three roundings, `k ln 2` in one. Over every `f32` in `[0, 1]` its largest error is no
/// larger (0.868 ulp for `log`, 0.872 for `log1p(-x)`, against 0.882 for both with
/// [`log_tail`]), but fewer results are correctly rounded (96.6% for `log`, against 99.4%).
/// In `f64`, and without FMA, it is [`log_tail`].
#[inline(always)]
fn log_tail_unit<F: Real, I: Isa>(f: F, fp: F, nk: F, q_coefs: &[F]) -> F {
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
fn log_body<F: Real, I: Isa, const SPECIAL: bool>(x: F) -> F {
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
fn log1p_body<F: Real, I: Isa, const SPECIAL: bool>(x: F) -> F {
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
fn log1m_unit_body<F: Real, I: Isa>(x: F) -> F {
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
/// [`Real::LOG1P_UNIT_Q`] is fitted.
#[inline(always)]
fn log1p_unit_body<F: Real, I: Isa>(x: F) -> F {
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
fn exp_body<F: Real, I: Isa, const NONPOS: bool>(x: F) -> F {
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
mod bench;
#[cfg(test)]
mod tests;
