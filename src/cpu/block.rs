//! What the executor does to a block besides the loss (whose block function also runs BCE's
//! range check): weighting and scaling the loss's outputs, and summing the values. Each is one generic loop, compiled per
//! SIMD level by the dispatch (like the losses' block functions), generic over the float type
//! only.

use crate::float::Float;
use crate::loss::weighted;
use crate::simd::{dispatch, Isa, Kernel, SimdLevel};

/// Number of `f64` accumulators a sum is spread over (one vector of them per few lanes).
const LANES: usize = 16;

/// What a chunk reports back: per slot of the reduction, from slot `first` on, the sums of
/// its values, of its kept elements' weights and of their count; and what went wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Partial {
    /// The slot of `sums[0]`.
    first: usize,
    /// Per slot: the sum of the (weighted) values.
    pub sums: Vec<f64>,
    /// Per slot: the sum of the kept elements' weights (1 each without a weight).
    pub weights: Vec<f64>,
    /// Per slot: the number of kept elements.
    pub counts: Vec<f64>,
    /// A kept input element was outside `[0, 1]` (BCE only).
    pub bad_input: bool,
    /// A kept target element was outside `[0, 1]` (BCE only).
    pub bad_target: bool,
    /// The chunk did not fit the plan (a bug: the executor reports it as such).
    pub broken: bool,
}

/// `v[i]`, the vector grown with zeros to reach it.
fn entry(v: &mut Vec<f64>, i: usize) -> &mut f64 {
    if v.len() <= i {
        v.resize(i + 1, 0.0);
    }
    &mut v[i]
}

impl Partial {
    /// The report of a chunk whose first element belongs to slot `first`.
    pub(crate) fn starting_at(first: usize) -> Partial {
        Partial {
            first,
            ..Partial::default()
        }
    }

    /// The running total of a call with `slots` slots.
    pub(crate) fn total(slots: usize) -> Partial {
        Partial {
            first: 0,
            sums: vec![0.0; slots],
            weights: vec![0.0; slots],
            counts: vec![0.0; slots],
            ..Partial::default()
        }
    }

    /// The report of a chunk that did not fit the plan.
    pub(crate) fn broken() -> Partial {
        Partial {
            broken: true,
            ..Partial::default()
        }
    }

    /// Records a block function's range flags.
    pub(crate) fn flag(&mut self, (input, target): (bool, bool)) {
        self.bad_input |= input;
        self.bad_target |= target;
    }

    /// Adds the sum so far of `lanes`' slot to it, and empties `lanes`.
    pub(crate) fn close(&mut self, lanes: &mut LaneSum) {
        let sum = lanes.take();
        match lanes.slot.checked_sub(self.first) {
            Some(i) => *entry(&mut self.sums, i) += sum,
            None => self.broken = true,
        }
    }

    /// Adds `weight` and `count` to the denominators of `slot`.
    pub(crate) fn add_denominators(&mut self, slot: usize, weight: f64, count: f64) {
        match slot.checked_sub(self.first) {
            Some(i) => {
                *entry(&mut self.weights, i) += weight;
                *entry(&mut self.counts, i) += count;
            }
            None => self.broken = true,
        }
    }

    /// Adds the next chunk's report (in chunk order) to this running total.
    pub(crate) fn merge(&mut self, next: Partial) {
        self.bad_input |= next.bad_input;
        self.bad_target |= next.bad_target;
        self.broken |= next.broken;
        let first = self.first;
        let mut broken = false;
        for (mine, theirs) in [
            (&mut self.sums, &next.sums),
            (&mut self.weights, &next.weights),
            (&mut self.counts, &next.counts),
        ] {
            for (i, &v) in theirs.iter().enumerate() {
                match (next.first + i)
                    .checked_sub(first)
                    .and_then(|j| mine.get_mut(j))
                {
                    Some(m) => *m += v,
                    None => broken = true,
                }
            }
        }
        self.broken |= broken;
    }
}

/// The running sum of one slot's values within a block: spread over [`LANES`] `f64`
/// accumulators in order (element `i` of the run into accumulator `i % LANES`), then added
/// pairwise in a fixed order when the run ends.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LaneSum {
    /// The slot the values belong to.
    pub slot: usize,
    acc: [f64; LANES],
    /// The accumulator of the next value.
    pos: usize,
}

impl LaneSum {
    /// An empty sum of slot `slot`.
    pub(crate) fn for_slot(slot: usize) -> LaneSum {
        LaneSum {
            slot,
            ..LaneSum::default()
        }
    }

    /// Adds `values`, in order.
    pub(crate) fn add<F: Float>(&mut self, level: SimdLevel, values: &[F]) {
        dispatch(
            level,
            AddLanes {
                acc: &mut self.acc,
                pos: self.pos,
                v: values,
            },
        );
        self.pos = (self.pos + values.len()) % LANES;
    }

    /// The sum of the values added since the last call, added pairwise in a fixed order.
    fn take(&mut self) -> f64 {
        let mut acc = core::mem::take(&mut self.acc);
        self.pos = 0;
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

struct AddLanes<'a, F> {
    acc: &'a mut [f64; LANES],
    pos: usize,
    v: &'a [F],
}

impl<F: Float> Kernel for AddLanes<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run<I: Isa>(self) {
        add_lanes(self.acc, self.pos, self.v);
    }
}

/// `acc[(pos + i) % LANES] += v[i]`, with the accumulators in registers for the loop (a
/// local copy: through the reference, every addition would be a store).
#[inline(always)]
fn add_lanes<F: Float>(acc_out: &mut [f64; LANES], pos: usize, v: &[F]) {
    let mut acc = *acc_out;
    // Up to the next multiple of LANES one by one, then whole rows of LANES.
    let pos = pos % LANES;
    let head = ((LANES - pos) % LANES).min(v.len());
    let (first, rest) = v.split_at(head);
    for (a, &x) in acc[pos..].iter_mut().zip(first) {
        *a += x.to_f64();
    }
    let mut chunks = rest.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x.to_f64();
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += x.to_f64();
    }
    *acc_out = acc;
}

/// The sum of `w` over the elements kept by `keep` (every element without a mask; 1 each
/// without a weight), and their count: the denominators of a run of `len` elements.
pub(crate) fn weights_and_count<F: Float>(
    w: Option<&[F]>,
    keep: Option<&[bool]>,
    len: usize,
) -> (f64, f64) {
    match (w, keep) {
        (None, None) => (len as f64, len as f64),
        (None, Some(keep)) => {
            let count = keep.iter().filter(|&&k| k).count() as f64;
            (count, count)
        }
        (Some(w), None) => (w.iter().map(|v| v.to_f64()).sum(), len as f64),
        (Some(w), Some(keep)) => {
            let mut sum = 0.0;
            let mut count = 0usize;
            for (&v, &k) in w.iter().zip(keep) {
                if k {
                    sum += v.to_f64();
                    count += 1;
                }
            }
            (sum, count as f64)
        }
    }
}

/// Weights and scales a block's outputs in place: each value becomes `weighted(w, v)`, the
/// input's derivatives `weighted(w, d) * (g * scale_x)`, the target's `weighted(w, d) *
/// (g * scale_y)` (`w` and `g` are 1 where absent).
pub(crate) fn finish<F: Float>(
    level: SimdLevel,
    value: Option<&mut [F]>,
    input_derivatives: [Option<&mut [F]>; 2],
    grad_target: Option<&mut [F]>,
    w: Option<&[F]>,
    g: Option<&[F]>,
    (scale_x, scale_y): (F, F),
) {
    if let (Some(value), Some(w)) = (value, w) {
        dispatch(level, Weigh { w, out: value });
    }
    let [a, b] = input_derivatives;
    for (out, scale) in [(a, scale_x), (b, scale_x), (grad_target, scale_y)] {
        let Some(out) = out else { continue };
        match (w, g) {
            // The common case: nothing to do but a factor of 1.
            (None, None) if scale == F::ONE => {}
            (w, g) => dispatch(level, Scale { w, g, scale, out }),
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

/// The input and target a block function is handed when a mask or label smoothing changes
/// them: `x_out[i] = keep[i] ? x[i] : fill.0`, `y_out[i] = keep[i] ? y[i] * a + b : fill.1`
/// (`(a, b) = (1, 0)` without smoothing); with `check_target`, whether a kept target as given
/// lies outside `[0, 1]`. Branch-free: a mask is as random as the data.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare<F: Float>(
    level: SimdLevel,
    keep: Option<&[bool]>,
    (x, y): (&[F], &[F]),
    (x_out, y_out): (&mut [F], &mut [F]),
    fill: (F, F),
    smoothing: Option<(F, F)>,
    check_target: bool,
) -> bool {
    dispatch(
        level,
        Prepare {
            keep,
            x,
            y,
            x_out,
            y_out,
            fill,
            smoothing,
            check_target,
        },
    )
}

struct Prepare<'a, F> {
    keep: Option<&'a [bool]>,
    x: &'a [F],
    y: &'a [F],
    x_out: &'a mut [F],
    y_out: &'a mut [F],
    fill: (F, F),
    smoothing: Option<(F, F)>,
    check_target: bool,
}

impl<F: Float> Kernel for Prepare<'_, F> {
    type Output = bool;

    #[inline(always)]
    fn run<I: Isa>(self) -> bool {
        let n = self.y_out.len();
        let (y, y_out) = (&self.y[..n], &mut self.y_out[..n]);
        let (a, b) = self.smoothing.unwrap_or((F::ONE, F::ZERO));
        let one = F::ONE.to_bits();
        let mut bad = false;
        match self.keep {
            None => {
                // Label smoothing alone: the input is used as it is.
                for i in 0..n {
                    let i = I::index(i);
                    let v = y[i];
                    bad |= crate::loss::unit_key(v) > one;
                    y_out[i] = v * a + b;
                }
            }
            Some(keep) => {
                let (keep, x) = (&keep[..n], &self.x[..n]);
                let x_out = &mut self.x_out[..n];
                let (fx, fy) = self.fill;
                for i in 0..n {
                    let i = I::index(i);
                    let k = keep[i];
                    let v = y[i];
                    bad |= k & (crate::loss::unit_key(v) > one);
                    x_out[i] = if k { x[i] } else { fx };
                    y_out[i] = if k { v * a + b } else { fy };
                }
            }
        }
        self.check_target && bad
    }
}

/// Sets the outputs of the elements `keep` drops to 0, branch-free.
pub(crate) fn zero_dropped<F: Float>(level: SimdLevel, out: &mut [F], keep: &[bool]) {
    dispatch(level, ZeroDropped { out, keep });
}

struct ZeroDropped<'a, F> {
    out: &'a mut [F],
    keep: &'a [bool],
}

impl<F: Float> Kernel for ZeroDropped<'_, F> {
    type Output = ();

    #[inline(always)]
    fn run<I: Isa>(self) {
        let n = self.out.len();
        let (out, keep) = (&mut self.out[..n], &self.keep[..n]);
        for i in 0..n {
            let i = I::index(i);
            out[i] = if keep[i] { out[i] } else { F::ZERO };
        }
    }
}
