//! The accuracy of the elementary functions, at every SIMD level: the `f32` results against
//! `f64` libm, the `f64` results against libm itself, in ulps, and every level against the
//! scalar one. The default tests take random, special and named inputs, and check that the unit
//! variants give the bits of the general functions where they share their evaluation; the
//! exhaustive ones (`#[ignore]`d, run by `make test-exhaustive`) take every `f32` input of the
//! losses' ranges, and 5e7 random `f64` ones per function (2e7 for the unit variants' bits).

use super::*;
use crate::simd::{available_simd_levels, dispatch, Kernel, SimdLevel};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Func {
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

impl<F: Real> Kernel for Map<'_, F> {
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

fn eval<F: Real>(level: SimdLevel, func: Func, x: &[F]) -> Vec<F> {
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
pub(super) trait TestFloat: Real + core::fmt::LowerExp {
    /// Explicit mantissa bits and smallest normal exponent.
    const P: i32;
    const EMIN: i32;
    /// Largest finite exponent.
    const EMAX: i32;
    /// The reference: `f64` libm at `x` (for `f32`, close enough to the exact value; for `f64`,
    /// libm's own result, so that errors are distances from libm).
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
    // 2^(P - e), P - e at most P - EMIN (1074 for f64, beyond the normal range: computed as
    // the product of two powers).
    let k = i64::from(F::P) - e;
    let half = k / 2;
    f64::from_bits(((half + 1023) as u64) << 52) * f64::from_bits(((k - half + 1023) as u64) << 52)
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
        // Branch-free passes that vectorise; the rare special values (and differences over
        // 1 ulp from the scalar level) take a slow, exact path.
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
pub(super) struct Rng(pub(super) u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * pow2(-53)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// About 2^u with u uniform in [lo, hi): log-uniform magnitudes.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = self.uniform(lo, hi);
        let e = u.floor();
        // 2^(u - e) approximated by 1 + (u - e): only the spread over binades matters.
        pow2(e as i32) * (1.0 + (u - e))
    }
}

/// Random arguments of `func` for type `F`: log-uniform magnitudes and uniform values over
/// its domain (`[0, 1]` for the unit variants), then the special values (for the unit
/// variants only those in `[0, 1]` and NaN, and for `log_unit` none of 0 and NaN).
fn samples<F: TestFloat>(func: Func, n: usize, seed: u64) -> Vec<F> {
    let mut rng = Rng(seed);
    let min_exp = f64::from(F::EMIN - F::P);
    let max_exp = f64::from(F::EMAX + 1);
    let mut v: Vec<f64> = Vec::with_capacity(n);
    while v.len() < n {
        let x = match (func, v.len() % 4) {
            // log: positive magnitudes over every binade, [0, 1), towards 0, and [1/2, 2);
            // log1p: towards -0, every positive binade, [-1, 1), and towards -1; exp: either
            // sign up to 2^12, [-800, 800), and [-1, 1).
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
            (Func::Log1pUnit | Func::LogUnit | Func::Log1mUnit, 0) => rng.log_uniform(min_exp, 0.0),
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
    // 13 more than `n`: with the special values, lengths that are no multiple of 4, so that
    // the vector loops' tails are tested too.
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

/// `func(x)` within `bound` ulps of the reference at every level (21 copies of `x`: full
/// vectors and a tail).
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
    assert!((log::<f32, crate::simd::ScalarIsa>(1e-40) + 92.1034).abs() < 1e-3);
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
        exp::<f32, crate::simd::ScalarIsa>(-100.0),
        (-100f64).exp() as f32
    );
    for x in [-710.0f64, -720.0, -740.0, -744.5, -745.1] {
        close(Func::Exp, x, 1.0);
    }
    // The smallest subnormal (f32 at -103.28), then results that round to 0, down to and past
    // the clamp of the argument.
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
// Exhaustive tests (`make test-exhaustive`:
// `cargo test --profile fast --features gpu --lib -- --ignored exhaustive --nocapture`).

/// Every f32 whose bits lie in each of `ranges` (inclusive), in parallel chunks, at every
/// level: within 2 ulps of the reference, and 1 ulp of the scalar level.
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

impl<F: Real> Kernel for UnitPair<'_, F> {
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
/// +0 and -0, `log_unit` is at most BCE's floor of -100 and `log1m_unit` is zero; where a
/// type keeps the precise tail (`f64`, and `f32` at the levels without FMA), `log_unit` and
/// `log1m_unit` give the bits of `log(x)` and `log1p(-x)`; `exp_nonpos(-x)` gives those of
/// `exp(-x)`. (Their accuracy is held to the references as `Func::LogUnit` and
/// `Func::Log1mUnit`.)
fn check_unit_variants<F: Real>(x: &[F]) {
    let same =
        |a: F, b: F| a.to_bits() == b.to_bits() || (a.to_f64().is_nan() && b.to_f64().is_nan());
    for level in available_simd_levels() {
        let mut out = vec![[F::ZERO; 4]; x.len()];
        dispatch(level, UnitPair { x, out: &mut out });
        let general_tail = !F::SHORT_TAIL || !dispatch(level, HasFma);
        for (&v, r) in x.iter().zip(&out) {
            if v == F::ZERO {
                let floor = F::from_f64(crate::loss::bce::LOG_FLOOR);
                assert!(r[0] <= floor, "log_unit(0) = {} at {level}", r[0]);
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

impl<F: Real> Kernel for ExpPair<'_, F> {
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

/// `exp_nonpos(-x)` has the bits of `exp(-x)` at every level, for `x >= 0` (and NaN).
fn check_exp_nonpos<F: Real>(x: &[F]) {
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
    // exp_nonpos over the rest of the non-negative f32 arguments of exp(-x), from 1 up
    // (check_unit_variants took [0, 1]), infinity and the positive NaNs too.
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
    // 2 * 10^7 random f64 in [0, 1]: uniform, log-uniform towards 0 and towards 1; and as
    // many arguments of exp(-x), log-uniform over the positive range.
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
    // [0, 1], subnormals included: the focal loss's logarithm, and what log_unit stands for.
    exhaustive_f32(Func::Log, "log", &[(0, 0x3f80_0000)]);
}

#[test]
#[ignore = "exhaustive: run in release mode"]
fn exhaustive_log1p_f32_neg() {
    // [-1, -0]: log1p(-p) for probabilities p, what log1m_unit (BCE) stands for.
    exhaustive_f32(Func::Log1p, "log1p", &[(0x8000_0000, 0xbf80_0000)]);
}

#[test]
#[ignore = "exhaustive: run in release mode"]
fn exhaustive_log1p_f32_pos() {
    // [0, 1]: log1p(e) for e = exp(-|z|), what log1p_unit (the losses on logits) computes.
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
    // (-1, 0]: +0, and -0 down to the float just above -1.
    exhaustive_f32(Func::Exp, "exp", &[(0, 0), (0x8000_0000, 0xbf7f_ffff)]);
}

#[test]
#[ignore = "exhaustive: run in release mode"]
fn exhaustive_exp_f32_large() {
    // [-inf, -1]: down to -inf, through the subnormal results and 0.
    exhaustive_f32(Func::Exp, "exp", &[(0xbf80_0000, 0xff80_0000)]);
}

/// 5 * 10^7 random f64 arguments over the losses' domain of `func`, at every level: within
/// 1 ulp of libm, and of the scalar level.
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
