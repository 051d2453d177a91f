//! The kernel over one block of contiguous elements: the unit the executor hands to a SIMD level.

use super::elementwise::{unit_key, weighted, LossFn};
use super::simd::{dispatch, Isa, Kernel, SimdLevel};
use crate::float::Float;

/// Number of `f64` accumulators a sum is spread over (one vector of them per few lanes).
const LANES: usize = 16;
/// Elements per pass of the loss loop before its values are summed.
const SUB: usize = 256;

/// What a block computes and where it writes.
pub(crate) enum Out<'a, F> {
    /// Only the sum of the losses.
    Sum,
    /// The elementwise losses.
    Loss(&'a mut [F]),
    /// The gradient times `scale` (and times `g` where given).
    Grad {
        /// Factor applied to every element (grad_output, divided by n for `mean`).
        scale: F,
        /// Where the gradient goes.
        grad: &'a mut [F],
    },
    /// The sum of the losses and the gradient times `scale`.
    SumGrad {
        /// Factor applied to every gradient element.
        scale: F,
        /// Where the gradient goes.
        grad: &'a mut [F],
    },
    /// The elementwise losses and the gradient times `scale`.
    LossGrad {
        /// Factor applied to every gradient element.
        scale: F,
        /// Where the losses go.
        loss: &'a mut [F],
        /// Where the gradient goes.
        grad: &'a mut [F],
    },
}

/// What a block reports back.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Partial {
    /// Sum of the (weighted) losses, for the reductions.
    pub sum: f64,
    /// An input element was outside `[0, 1]` (BCE only).
    pub bad_input: bool,
    /// A target element was outside `[0, 1]` (BCE only).
    pub bad_target: bool,
}

impl Partial {
    /// Combines two partials in order.
    pub(crate) fn then(self, next: Partial) -> Partial {
        Partial {
            sum: self.sum + next.sum,
            bad_input: self.bad_input | next.bad_input,
            bad_target: self.bad_target | next.bad_target,
        }
    }
}

/// One block's operands, all of one length (`x.len()`; longer slices are cut to it).
pub(crate) struct Block<'a, F, L> {
    /// Which loss (a type-level marker).
    pub loss: core::marker::PhantomData<L>,
    /// The input.
    pub x: &'a [F],
    /// The target.
    pub y: &'a [F],
    /// The weight, if any.
    pub w: Option<&'a [F]>,
    /// The positive-class weight (logits only), if any.
    pub pw: Option<&'a [F]>,
    /// The per-element grad_output (`Grad` with no reduction), if any.
    pub g: Option<&'a [F]>,
    /// What to compute.
    pub out: Out<'a, F>,
}

impl<F: Float, L: LossFn> Block<'_, F, L> {
    /// Runs the block at `level`.
    #[inline]
    pub(crate) fn run_at(self, level: SimdLevel) -> Partial {
        dispatch(level, self)
    }
}

/// A per-element operand: a slice, or the constant 1 when the argument is absent.
trait Src<F: Float>: Copy {
    fn at(self, i: usize) -> F;
    fn sub(self, start: usize, len: usize) -> Self;
    /// `v` weighted by element `i`: 0 where either is 0, even when the other is infinite.
    #[inline(always)]
    fn weigh(self, i: usize, v: F) -> F {
        weighted(self.at(i), v)
    }
}

#[derive(Clone, Copy)]
struct One;

impl<F: Float> Src<F> for One {
    #[inline(always)]
    fn at(self, _i: usize) -> F {
        F::ONE
    }
    #[inline(always)]
    fn weigh(self, _i: usize, v: F) -> F {
        v
    }
    #[inline(always)]
    fn sub(self, _start: usize, _len: usize) -> Self {
        self
    }
}

impl<F: Float> Src<F> for &[F] {
    #[inline(always)]
    fn at(self, i: usize) -> F {
        self[i]
    }
    #[inline(always)]
    fn sub(self, start: usize, len: usize) -> Self {
        &self[start..start + len]
    }
}

/// Cuts an optional operand to `n` elements.
#[inline(always)]
fn cut<F>(s: Option<&[F]>, n: usize) -> Option<&[F]> {
    s.map(|s| &s[..n.min(s.len())])
}

/// Adds `v` into the lane accumulators.
#[inline(always)]
fn add_lanes<F: Float>(v: &[F], acc: &mut [f64; LANES]) {
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x.to_f64();
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += x.to_f64();
    }
}

/// Sums the lane accumulators pairwise, in a fixed order.
#[inline(always)]
fn reduce_lanes(acc: &[f64; LANES]) -> f64 {
    let mut v = *acc;
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            v[i] += v[i + width];
        }
    }
    v[0]
}

/// Range flags, folded into the loop that computes the elements (a separate pass would take
/// the cache misses on its own, with no arithmetic to hide them behind): the largest
/// [`unit_key`] of each operand.
#[derive(Clone, Copy)]
struct Flags<F: Float> {
    x: F::Bits,
    y: F::Bits,
}

impl<F: Float> Flags<F> {
    #[inline(always)]
    fn new() -> Self {
        let zero = F::ZERO.to_bits();
        Flags { x: zero, y: zero }
    }

    #[inline(always)]
    fn check<L: LossFn>(&mut self, x: F, y: F) {
        if L::CHECKS_RANGE {
            let (bx, by) = (unit_key(x), unit_key(y));
            self.x = if bx > self.x { bx } else { self.x };
            self.y = if by > self.y { by } else { self.y };
        }
    }

    #[inline(always)]
    fn bad_input(&self) -> bool {
        self.x > F::ONE.to_bits()
    }

    #[inline(always)]
    fn bad_target(&self) -> bool {
        self.y > F::ONE.to_bits()
    }
}

/// The loops, for one combination of present operands.
#[inline(always)]
fn body<F, I, L, W, P, G>(x: &[F], y: &[F], w: W, pw: P, g: G, out: Out<'_, F>) -> Partial
where
    F: Float,
    I: Isa,
    L: LossFn,
    W: Src<F>,
    P: Src<F>,
    G: Src<F>,
{
    let n = x.len();
    let mut flags = Flags::<F>::new();
    let sum = match out {
        Out::Sum => {
            let mut acc = [0.0f64; LANES];
            let mut tmp = [F::ZERO; SUB];
            let mut start = 0;
            while start < n {
                let m = (n - start).min(SUB);
                let (xs, ys) = (&x[start..start + m], &y[start..start + m]);
                let (ws, ps) = (w.sub(start, m), pw.sub(start, m));
                let t = &mut tmp[..m];
                for i in 0..m {
                    let i = I::index(i);
                    flags.check::<L>(xs[i], ys[i]);
                    t[i] = ws.weigh(i, L::loss::<F, I>(xs[i], ys[i], ps.at(i)));
                }
                add_lanes(t, &mut acc);
                start += m;
            }
            reduce_lanes(&acc)
        }
        Out::Loss(out) => {
            let out = &mut out[..n];
            for i in 0..n {
                let i = I::index(i);
                flags.check::<L>(x[i], y[i]);
                out[i] = w.weigh(i, L::loss::<F, I>(x[i], y[i], pw.at(i)));
            }
            0.0
        }
        Out::Grad { scale, grad } => {
            let grad = &mut grad[..n];
            for i in 0..n {
                let i = I::index(i);
                flags.check::<L>(x[i], y[i]);
                grad[i] = w.weigh(i, L::grad::<F, I>(x[i], y[i], pw.at(i))) * (g.at(i) * scale);
            }
            0.0
        }
        Out::SumGrad { scale, grad } => {
            let mut acc = [0.0f64; LANES];
            let mut tmp = [F::ZERO; SUB];
            let mut start = 0;
            while start < n {
                let m = (n - start).min(SUB);
                let (xs, ys) = (&x[start..start + m], &y[start..start + m]);
                let (ws, ps) = (w.sub(start, m), pw.sub(start, m));
                let gr = &mut grad[start..start + m];
                let t = &mut tmp[..m];
                for i in 0..m {
                    let i = I::index(i);
                    flags.check::<L>(xs[i], ys[i]);
                    let (l, d) = L::loss_and_grad::<F, I>(xs[i], ys[i], ps.at(i));
                    t[i] = ws.weigh(i, l);
                    gr[i] = ws.weigh(i, d) * scale;
                }
                add_lanes(t, &mut acc);
                start += m;
            }
            reduce_lanes(&acc)
        }
        Out::LossGrad { scale, loss, grad } => {
            let loss = &mut loss[..n];
            let grad = &mut grad[..n];
            for i in 0..n {
                let i = I::index(i);
                flags.check::<L>(x[i], y[i]);
                let (l, d) = L::loss_and_grad::<F, I>(x[i], y[i], pw.at(i));
                loss[i] = w.weigh(i, l);
                grad[i] = w.weigh(i, d) * scale;
            }
            0.0
        }
    };
    Partial {
        sum,
        bad_input: flags.bad_input(),
        bad_target: flags.bad_target(),
    }
}

/// Cuts an output to `n` elements.
fn cut_out<F>(out: Out<'_, F>, n: usize) -> Out<'_, F> {
    fn c<F>(s: &mut [F], n: usize) -> &mut [F] {
        let n = n.min(s.len());
        &mut s[..n]
    }
    match out {
        Out::Sum => Out::Sum,
        Out::Loss(o) => Out::Loss(c(o, n)),
        Out::Grad { scale, grad } => Out::Grad {
            scale,
            grad: c(grad, n),
        },
        Out::SumGrad { scale, grad } => Out::SumGrad {
            scale,
            grad: c(grad, n),
        },
        Out::LossGrad { scale, loss, grad } => Out::LossGrad {
            scale,
            loss: c(loss, n),
            grad: c(grad, n),
        },
    }
}

/// The length every operand and output has.
fn common_len<F>(b: &Block<'_, F, impl LossFn>) -> usize {
    let mut n = b.x.len().min(b.y.len());
    for s in [b.w, b.pw, b.g].into_iter().flatten() {
        n = n.min(s.len());
    }
    match &b.out {
        Out::Sum => {}
        Out::Loss(o) | Out::Grad { grad: o, .. } | Out::SumGrad { grad: o, .. } => {
            n = n.min(o.len())
        }
        Out::LossGrad { loss, grad, .. } => n = n.min(loss.len()).min(grad.len()),
    }
    n
}

impl<F: Float, L: LossFn> Kernel for Block<'_, F, L> {
    type Output = Partial;

    #[inline(always)]
    fn run<I: Isa>(self) -> Partial {
        let n = common_len(&self);
        let (x, y) = (&self.x[..n], &self.y[..n]);
        let (w, pw, g) = (cut(self.w, n), cut(self.pw, n), cut(self.g, n));
        let out = cut_out(self.out, n);
        // Monomorphise over the operands that are present, so absent ones cost nothing. A
        // per-element grad_output only comes with `Grad`; pos_weight only with logits.
        match (w, pw, g) {
            (None, None, None) => body::<F, I, L, _, _, _>(x, y, One, One, One, out),
            (Some(w), None, None) => body::<F, I, L, _, _, _>(x, y, w, One, One, out),
            (None, Some(pw), None) => body::<F, I, L, _, _, _>(x, y, One, pw, One, out),
            (Some(w), Some(pw), None) => body::<F, I, L, _, _, _>(x, y, w, pw, One, out),
            (w, pw, Some(g)) => match (w, pw) {
                (None, None) => body::<F, I, L, _, _, _>(x, y, One, One, g, out),
                (Some(w), None) => body::<F, I, L, _, _, _>(x, y, w, One, g, out),
                (None, Some(pw)) => body::<F, I, L, _, _, _>(x, y, One, pw, g, out),
                (Some(w), Some(pw)) => body::<F, I, L, _, _, _>(x, y, w, pw, g, out),
            },
        }
    }
}
