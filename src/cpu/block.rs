//! What the executor does to a block besides the loss: BCE's range check, weighting and
//! scaling the loss's outputs, and summing the values. Each is one generic loop, compiled per
//! SIMD level by the dispatch (like the losses' block functions), generic over the float type
//! only.

use crate::float::Float;
use crate::loss::{unit_key, weighted};
use crate::simd::{dispatch, Isa, Kernel, SimdLevel};

/// Number of `f64` accumulators a sum is spread over (one vector of them per few lanes).
const LANES: usize = 16;

/// What a chunk reports back.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Partial {
    /// Sum of the (weighted) values, for the reductions.
    pub sum: f64,
    /// An input element was outside `[0, 1]` (BCE only).
    pub bad_input: bool,
    /// A target element was outside `[0, 1]` (BCE only).
    pub bad_target: bool,
    /// The chunk did not fit the plan (a bug: the executor reports it as such).
    pub broken: bool,
}

impl Partial {
    /// The report of a chunk that did not fit the plan.
    pub(crate) fn broken() -> Partial {
        Partial {
            broken: true,
            ..Partial::default()
        }
    }

    /// Combines two partials in order.
    pub(crate) fn then(self, next: Partial) -> Partial {
        Partial {
            sum: self.sum + next.sum,
            bad_input: self.bad_input | next.bad_input,
            bad_target: self.bad_target | next.bad_target,
            broken: self.broken | next.broken,
        }
    }

    /// Records whether any element of `x` or `y` lies outside `[0, 1]` (or is NaN).
    pub(crate) fn check_range<F: Float>(&mut self, level: SimdLevel, x: &[F], y: &[F]) {
        let (kx, ky) = dispatch(level, LargestKeys { x, y });
        self.bad_input |= kx > F::ONE.to_bits();
        self.bad_target |= ky > F::ONE.to_bits();
    }
}

/// The largest [`unit_key`] of each of two slices: the range check in two operations an
/// element.
struct LargestKeys<'a, F> {
    x: &'a [F],
    y: &'a [F],
}

impl<F: Float> Kernel for LargestKeys<'_, F> {
    type Output = (F::Bits, F::Bits);

    #[inline(always)]
    fn run<I: Isa>(self) -> (F::Bits, F::Bits) {
        let largest = |v: &[F]| {
            let mut m = F::ZERO.to_bits();
            for i in 0..v.len() {
                let k = unit_key(v[I::index(i)]);
                m = if k > m { k } else { m };
            }
            m
        };
        (largest(self.x), largest(self.y))
    }
}

/// Weights and scales a block's outputs in place: each value becomes `weighted(w, v)`, each
/// derivative `weighted(w, d) * (g * scale)` (`w` and `g` are 1 where absent).
pub(crate) fn finish<F: Float>(
    level: SimdLevel,
    value: Option<&mut [F]>,
    grad: Option<&mut [F]>,
    w: Option<&[F]>,
    g: Option<&[F]>,
    scale: F,
) {
    if let (Some(value), Some(w)) = (value, w) {
        dispatch(level, Weigh { w, out: value });
    }
    if let Some(grad) = grad {
        match (w, g) {
            // The common case: nothing to do but a factor of 1.
            (None, None) if scale == F::ONE => {}
            (w, g) => dispatch(
                level,
                Scale {
                    w,
                    g,
                    scale,
                    out: grad,
                },
            ),
        }
    }
}

/// `out[i] = weighted(w[i], out[i])`.
struct Weigh<'a, F> {
    w: &'a [F],
    out: &'a mut [F],
}

impl<F: Float> Kernel for Weigh<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run<I: Isa>(self) {
        let n = self.out.len();
        debug_assert!(self.w.len() == n, "a weight block of another length");
        let (w, out) = (&self.w[..n], &mut self.out[..n]);
        for i in 0..n {
            let i = I::index(i);
            out[i] = weighted(w[i], out[i]);
        }
    }
}

/// `out[i] = weighted(w[i], out[i]) * (g[i] * scale)`, monomorphised over the operands present.
struct Scale<'a, F> {
    w: Option<&'a [F]>,
    g: Option<&'a [F]>,
    scale: F,
    out: &'a mut [F],
}

impl<F: Float> Kernel for Scale<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run<I: Isa>(self) {
        let n = self.out.len();
        let out = &mut self.out[..n];
        let scale = self.scale;
        match (self.w, self.g) {
            (None, None) => {
                for i in 0..n {
                    let i = I::index(i);
                    out[i] = out[i] * scale;
                }
            }
            (Some(w), None) => {
                let w = &w[..n];
                for i in 0..n {
                    let i = I::index(i);
                    out[i] = weighted(w[i], out[i]) * scale;
                }
            }
            (None, Some(g)) => {
                let g = &g[..n];
                for i in 0..n {
                    let i = I::index(i);
                    out[i] = out[i] * (g[i] * scale);
                }
            }
            (Some(w), Some(g)) => {
                let (w, g) = (&w[..n], &g[..n]);
                for i in 0..n {
                    let i = I::index(i);
                    out[i] = weighted(w[i], out[i]) * (g[i] * scale);
                }
            }
        }
    }
}

/// The sum of a block's values in float64: spread over [`LANES`] accumulators in order, then
/// added pairwise in a fixed order.
pub(crate) fn sum<F: Float>(level: SimdLevel, v: &[F]) -> f64 {
    dispatch(level, Sum { v })
}

struct Sum<'a, F> {
    v: &'a [F],
}

impl<F: Float> Kernel for Sum<'_, F> {
    type Output = f64;

    #[inline(always)]
    fn run<I: Isa>(self) -> f64 {
        let mut acc = [0.0f64; LANES];
        let mut chunks = self.v.chunks_exact(LANES);
        for c in &mut chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += x.to_f64();
            }
        }
        for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
            *a += x.to_f64();
        }
        let mut width = LANES;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                acc[i] += acc[i + width];
            }
        }
        acc[0]
    }
}
