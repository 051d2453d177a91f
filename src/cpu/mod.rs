//! The CPU executor: one loop, driven by the plan of a call, for every loss and every output.
//!
//! A call's elements (in the canonical layout of [`layout`]) are cut into chunks of a fixed
//! size that depends on the shape alone, never on the number of threads; chunks run on the
//! crate's pool ([`pool`]) and the caller's thread. Each chunk is taken block by block: the
//! operands' blocks are read in place or gathered; the loss's block function
//! ([`crate::loss::kernel`], which smooths the target, runs BCE's range check and drops the
//! elements a mask drops, in the same loop) writes the values and derivatives asked for; and
//! [`block`] weights and scales them and sums the values.
//!
//! Sums are per slot: one slot for a full reduction, one per element of the result for a
//! reduction over some axes (the walk then visits the kept axes outermost, so that each slot's
//! elements come one after the other). Each slot's sums (of the values, and of the weights of
//! its kept elements) are exact ([`crate::accumulate::ExactSum`]) until they are rounded once,
//! to the nearest `f64`, when every element of the slot is in: within a chunk for the slots it
//! holds whole, in the running total for a chunk's first and last slots, which it may share with
//! the chunks beside it. Counts are integers. So `mean`, `sum` and `weighted_mean` depend on the
//! multiset of the elements' values only: bitwise identical whatever the thread count, the
//! layout of the operands (C or F order, reversed strides, which set the walk's order) or the
//! order of the elements, and small calls, which run on the caller's thread, give the same bits
//! as large ones would.
//!
//! Everything here is generic over the float type only, and compiled inside the crate for
//! `f32` and `f64` ([`crate::engine`]).

mod block;
mod layout;
pub(crate) mod pool;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ndarray::{s, ArrayD, ArrayView2, ArrayViewD, Dimension, Ix2, IxDyn};

use crate::accumulate::LossSums;
use crate::error::{format_value, Error};
use crate::float::Float;
use crate::loss::{in_unit_interval, BlockFn, BlockIo, Params};
use crate::math::Real;
use crate::simd::{simd_level, SimdLevel};
pub(crate) use block::Closed;
use block::{Open, Partial};
use layout::Canonical;
pub(crate) use pool::get_num_threads;

/// Elements per chunk: the unit of parallel work and of the deterministic sum.
pub(crate) const CHUNK: usize = 1 << 14;
/// Elements per block: the unit of the block functions (the size of the gather buffers). A
/// block's fixed costs (the walk's bookkeeping, the calls of the block function, of the exact
/// sums and their setup) come to about 800 instructions: 0.2 an element at this size.
pub(crate) const BLOCK: usize = 1 << 12;
/// Calls with fewer elements run on the caller's thread.
pub(crate) const PARALLEL_MIN: usize = 1 << 16;
/// The slots of a reduction up to this many elements are first summed plainly in `f64` (one
/// pass), which is their exact sum when the values' magnitudes are close enough.
const SHORT_SLOT: usize = 1 << 10;

// ---------------------------------------------------------------------------------------------
// The operands and the plan.

/// The operands of one call. `target` has the input's shape; the others broadcast to it
/// (the request's checks made sure).
pub(crate) struct Operands<'a, F> {
    pub x: ArrayViewD<'a, F>,
    pub y: ArrayViewD<'a, F>,
    pub w: Option<ArrayViewD<'a, F>>,
    pub pw: Option<ArrayViewD<'a, F>>,
    /// The per-element factor of the derivatives (a `none` call's grad_output; a reduction
    /// over axes' per-slot factor, broadcast).
    pub g: Option<ArrayViewD<'a, F>>,
    /// Which elements count (`false`: as if absent).
    pub mask: Option<ArrayViewD<'a, bool>>,
}

/// How the loss values come out of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueOut {
    /// Not at all.
    None,
    /// One per element.
    Elementwise,
    /// Their sum, per slot.
    Sum,
}

/// What the executor computes for one call.
pub(crate) struct Plan<F> {
    /// The loss's block function for what is asked (`None`: no loss, only the denominators).
    pub kernel: Option<BlockFn<F>>,
    /// The loss's parameters.
    pub params: Params<F>,
    /// The values.
    pub value: ValueOut,
    /// The derivatives asked for: with respect to the input, to the target, the second.
    pub grad: bool,
    pub grad_target: bool,
    pub hess: bool,
    /// What the input's derivatives (first and second) are multiplied by, with the
    /// per-element factor.
    pub grad_scale: F,
    /// What the target gradient is multiplied by, likewise.
    pub grad_target_scale: F,
    /// Label smoothing: the target used is `y * .0 + .1`.
    pub smoothing: Option<(F, F)>,
    /// Sum, per slot, the weights of the kept elements (1 each without a weight) and count
    /// them: the denominators of `weighted_mean` and of a masked `mean`.
    pub denominators: bool,
    /// A reduction over some axes: the axes kept (one slot per element of their shape).
    /// `None`: one slot.
    pub kept: Option<Vec<usize>>,
    /// Return each slot's exact sums too ([`Outcome::states`]).
    pub states: bool,
}

impl<F> Plan<F> {
    /// The elementwise outputs: values, gradient, target gradient, second derivative.
    fn outputs(&self) -> [bool; 4] {
        [
            self.value == ValueOut::Elementwise,
            self.grad,
            self.grad_target,
            self.hess,
        ]
    }
}

/// Where a call's elementwise outputs go: buffers of the caller's, of the input's element
/// count and in C order of its shape, or (`None`) buffers the executor allocates. A caller's
/// buffer is used when the walk is in C order (always, for inputs in C order and calls that
/// reduce over no axes); otherwise the executor allocates one and says so in the [`Outcome`].
#[derive(Default)]
pub(crate) struct Dest<'o, F> {
    pub value: Option<&'o mut [F]>,
    pub grad: Option<&'o mut [F]>,
    pub grad_target: Option<&'o mut [F]>,
    pub hess: Option<&'o mut [F]>,
}

impl<F> Dest<'_, F> {
    /// The same buffers, borrowed for a shorter time.
    pub(crate) fn reborrow(&mut self) -> Dest<'_, F> {
        Dest {
            value: self.value.as_deref_mut(),
            grad: self.grad.as_deref_mut(),
            grad_target: self.grad_target.as_deref_mut(),
            hess: self.hess.as_deref_mut(),
        }
    }

    /// Output `k`'s buffer: values, gradient, target gradient, second derivative.
    pub(crate) fn slot(&mut self, k: usize) -> Option<&mut [F]> {
        match k {
            0 => self.value.as_deref_mut(),
            1 => self.grad.as_deref_mut(),
            2 => self.grad_target.as_deref_mut(),
            3 => self.hess.as_deref_mut(),
            _ => None,
        }
    }
}

/// The four elementwise outputs a call may allocate, boxed: a call's results pass through
/// several functions by value, and four arrays (some 450 bytes) were copied at each.
pub(crate) type OwnedOutputs<F> = [Option<Box<ArrayD<F>>>; 4];

/// What a call produced.
pub(crate) struct Outcome<F> {
    /// Per slot: the sum of the (weighted) values and, with [`Plan::denominators`], the sum
    /// of the kept elements' weights and their number.
    pub sums: Vec<Closed>,
    /// Per slot: the exact sums (with [`Plan::states`]; empty otherwise).
    pub states: Vec<LossSums>,
    /// The elementwise outputs, in the input's shape, that the executor allocated (`None`:
    /// in the caller's buffer, or not asked for): values, gradient, target gradient, second
    /// derivative.
    pub arrays: OwnedOutputs<F>,
}

// ---------------------------------------------------------------------------------------------
// Chunk geometry.

/// How the canonical layout is cut into chunks: whole rows of a panel when rows are short,
/// pieces of one row when they are long.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    rows: usize,
    cols: usize,
    /// Rows per chunk (short rows) or 1.
    rows_per_chunk: usize,
    /// Columns per chunk (long rows) or `cols`.
    cols_per_chunk: usize,
    chunks_per_panel: usize,
    panels: usize,
}

impl Geometry {
    fn new(panels: usize, rows: usize, cols: usize) -> Self {
        let (rows_per_chunk, cols_per_chunk) = if cols >= CHUNK {
            (1, CHUNK)
        } else {
            ((CHUNK / cols.max(1)).max(1), cols)
        };
        let chunks_per_row = cols.div_ceil(cols_per_chunk.max(1));
        let chunks_per_panel = if cols >= CHUNK {
            rows * chunks_per_row
        } else {
            rows.div_ceil(rows_per_chunk)
        };
        Geometry {
            rows,
            cols,
            rows_per_chunk,
            cols_per_chunk,
            chunks_per_panel,
            panels,
        }
    }

    fn count(&self) -> usize {
        self.panels * self.chunks_per_panel
    }

    /// Chunk `c`: its panel, row range and column range.
    fn locate(&self, c: usize) -> (usize, core::ops::Range<usize>, core::ops::Range<usize>) {
        let panel = c / self.chunks_per_panel.max(1);
        let j = c % self.chunks_per_panel.max(1);
        if self.cols >= CHUNK {
            let chunks_per_row = self.cols.div_ceil(self.cols_per_chunk);
            let row = j / chunks_per_row;
            let c0 = (j % chunks_per_row) * self.cols_per_chunk;
            (
                panel,
                row..row + 1,
                c0..(c0 + self.cols_per_chunk).min(self.cols),
            )
        } else {
            let r0 = j * self.rows_per_chunk;
            (
                panel,
                r0..(r0 + self.rows_per_chunk).min(self.rows),
                0..self.cols,
            )
        }
    }

    /// The walk index of chunk `c`'s first element.
    fn first_index(&self, c: usize) -> usize {
        let (panel, rows, cols) = self.locate(c);
        (panel * self.rows + rows.start) * self.cols + cols.start
    }

    fn len(&self, c: usize) -> usize {
        let (_, rows, cols) = self.locate(c);
        rows.len() * cols.len()
    }
}

/// A chunk's index and its parts of the four outputs.
type ChunkOutputs<'s, F> = (usize, [&'s mut [F]; 4]);

/// A piece's input, target, positive-class weight and mask (when it drops some element).
type PieceOperands<'s, F> = (&'s [F], &'s [F], Option<&'s [F]>, Option<&'s [bool]>);

/// Cuts `out` into one slice per chunk of `range`, in chunk order.
fn split_chunks<'s, F>(
    mut out: &'s mut [F],
    geometry: &Geometry,
    range: core::ops::Range<usize>,
) -> Vec<&'s mut [F]> {
    let mut pieces = Vec::with_capacity(range.len());
    for c in range {
        let len = geometry.len(c);
        debug_assert!(len <= out.len(), "an output is shorter than its chunks");
        let at = len.min(out.len());
        let (head, tail) = core::mem::take(&mut out).split_at_mut(at);
        pieces.push(head);
        out = tail;
    }
    pieces
}

// ---------------------------------------------------------------------------------------------
// Reading one operand's part of a chunk.

/// One operand's part of a chunk, handed out block by block as contiguous slices.
enum Source<'a, F: Copy> {
    /// Contiguous in memory: used in place.
    Slice(&'a [F]),
    /// One value repeated (a broadcast): a buffer filled once.
    Const(Vec<F>),
    /// Anything else: gathered block by block, in order.
    Gather(ndarray::iter::Iter<'a, F, Ix2>, Vec<F>),
}

impl<'a, F: Copy + Default> Source<'a, F> {
    fn new(view: ArrayView2<'a, F>) -> Self {
        let len = view.len();
        if let Some(slice) = view.to_slice() {
            return Source::Slice(slice);
        }
        let constant = view
            .strides()
            .iter()
            .zip(view.shape())
            .all(|(&stride, &n)| stride == 0 || n <= 1);
        match view.first() {
            Some(&v) if constant => Source::Const(vec![v; len.min(BLOCK)]),
            _ => Source::Gather(view.into_iter(), vec![F::default(); len.min(BLOCK)]),
        }
    }

    /// Elements `start..start + len` of the chunk (`len <= BLOCK`, blocks taken in order,
    /// within the chunk: the walk plans them so).
    fn block(&mut self, start: usize, len: usize) -> &[F] {
        match self {
            Source::Slice(s) => {
                debug_assert!(start + len <= s.len(), "a block past its operand's slice");
                &s[start..start + len]
            }
            Source::Const(buf) => {
                debug_assert!(len <= buf.len(), "a block longer than BLOCK");
                &buf[..len]
            }
            Source::Gather(it, buf) => {
                debug_assert!(len <= buf.len(), "a block longer than BLOCK");
                let part = &mut buf[..len];
                let mut filled = 0;
                for (slot, v) in part.iter_mut().zip(it) {
                    *slot = *v;
                    filled += 1;
                }
                debug_assert!(filled == len, "a gathered operand ran out");
                part
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The walk over the operands, chunk by chunk.

/// The operands' order in [`Walk`]: input, target, weight, pos_weight, per-element factor.
const X: usize = 0;
const Y: usize = 1;
const W: usize = 2;
/// The number of float operands.
const OPERANDS: usize = 5;

struct Walk<'a, F> {
    /// The canonical layout; `None` when every operand is contiguous in C order and the walk
    /// is that order (over `slices`).
    canon: Option<Canonical<'a, F>>,
    /// Float operand `k`'s position among the canonical views, if present.
    position: [Option<usize>; OPERANDS],
    /// With one canonical axis (or none built), each present operand that is contiguous.
    slices: [Option<&'a [F]>; OPERANDS],
    /// The mask: contiguous, or in the canonical layout's mask view.
    mask_slice: Option<&'a [bool]>,
    has_mask: bool,
    geometry: Geometry,
    /// Elements per slot, in walk order.
    per_slot: usize,
    level: SimdLevel,
}

impl<'a, F: Float> Walk<'a, F> {
    fn source(
        &self,
        k: usize,
        panel: usize,
        rows: &core::ops::Range<usize>,
        cols: &core::ops::Range<usize>,
    ) -> Option<Source<'a, F>> {
        let position = self.position[k]?;
        // One contiguous axis: slice it directly.
        if let Some(slice) = self.slices[position] {
            return slice.get(cols.clone()).map(Source::Slice);
        }
        let canon = self.canon.as_ref()?;
        let view = canon.views.get(position)?;
        let panel = canon.panel(view, panel)?;
        Some(Source::new(
            panel.slice_move(s![rows.clone(), cols.clone()]),
        ))
    }

    fn mask_source(
        &self,
        panel: usize,
        rows: &core::ops::Range<usize>,
        cols: &core::ops::Range<usize>,
    ) -> Option<Source<'a, bool>> {
        if let Some(slice) = self.mask_slice {
            return slice.get(cols.clone()).map(Source::Slice);
        }
        let canon = self.canon.as_ref()?;
        let view = canon.mask.as_ref()?;
        let panel = canon.panel(view, panel)?;
        Some(Source::new(
            panel.slice_move(s![rows.clone(), cols.clone()]),
        ))
    }

    /// Runs chunk `c` of `plan`, writing its parts of the elementwise outputs (each the
    /// chunk's length, or empty when the plan has no such output).
    fn run_chunk(
        &self,
        plan: &Plan<F>,
        c: usize,
        out: [&mut [F]; 4],
        scratch: &mut Scratch<F>,
    ) -> Partial
    where
        F: Real,
    {
        let (panel, rows, cols) = self.geometry.locate(c);
        let len = rows.len() * cols.len();
        let first = self.geometry.first_index(c);
        let per_slot = self.per_slot.max(1);
        let mut sources: [Option<Source<'a, F>>; OPERANDS] =
            core::array::from_fn(|k| self.source(k, panel, &rows, &cols));
        let mut mask = if self.has_mask {
            self.mask_source(panel, &rows, &cols)
        } else {
            None
        };
        let wanted = plan.outputs();
        let planned = sources[X].is_some()
            && sources[Y].is_some()
            && out.iter().zip(wanted).all(|(o, w)| !w || o.len() == len)
            && (1..OPERANDS).all(|k| sources[k].is_some() == self.position[k].is_some())
            && mask.is_some() == self.has_mask;
        if !planned {
            debug_assert!(
                false,
                "chunk {c}: an operand or output does not fit the plan"
            );
            return Partial::broken();
        }
        let mut out = out;
        let mut partial =
            Partial::starting_at(first / per_slot, per_slot).keeping_states(plan.states);
        // The values of a block, when they are summed.
        let Scratch {
            sums: sums_buffer,
            kept_weights,
        } = scratch;
        let sums_buffer = buffer(sums_buffer, plan.value == ValueOut::Sum, len.min(BLOCK));
        // The kept elements' weights of a block, when a mask drops some and they are summed.
        let kept_weights = buffer(
            kept_weights,
            plan.denominators && self.has_mask && self.position[W].is_some(),
            len.min(BLOCK),
        );
        let mut open = Open::for_slot(first / per_slot);
        // Short slots: blocks of whole slots (from a chunk that starts at a slot's first
        // element), so that each slot is one run, summed plainly when that is exact. A sum
        // that is the only output: half blocks. Its block alternates between reading the
        // operands (the block function) and reading none (the exact sum of its values); with
        // operands beyond the caches, shorter turns are faster (measured, n = 1e7 float32: 8%
        // at one thread and at two; in the caches the same within 1%; docs/benchmarks.md).
        // With elementwise outputs whole blocks are faster.
        let block = if per_slot <= SHORT_SLOT {
            (BLOCK / per_slot) * per_slot
        } else if plan.value == ValueOut::Sum && plan.outputs() == [false; 4] {
            BLOCK / 2
        } else {
            BLOCK
        };
        let mut start = 0;
        while start < len {
            let m = (len - start).min(block);
            let end = start + m;
            let [x, y, w, pw, g] = &mut sources;
            let (Some(x), Some(y)) = (x.as_mut(), y.as_mut()) else {
                return Partial::broken();
            };
            let xs = x.block(start, m);
            let ys = y.block(start, m);
            let ws = w.as_mut().map(|s| s.block(start, m));
            let pws = pw.as_mut().map(|s| s.block(start, m));
            let gs = g.as_mut().map(|s| s.block(start, m));
            // The mask: the block function neither range-checks the dropped elements nor
            // keeps their results (0 for every output); label smoothing is applied there too,
            // after the range check of the target as given.
            let keep = mask.as_mut().map(|s| s.block(start, m));
            let kept = keep.map(|k| (k, block::count_kept(self.level, k)));
            let kept = kept.filter(|&(k, count)| count != k.len());
            let keep = kept.map(|(k, _)| k);

            let summed = plan.value == ValueOut::Sum;
            let sums = summed.then(|| sums_buffer.get_mut(..m)).flatten();
            let mut outs = block_outputs(plan, &mut out, sums, start, end);
            let flags = run_piece(plan, self.level, (xs, ys, pws, keep), &mut outs, ws, gs);
            partial.flag(flags);
            if let Some(keep) = keep {
                // The block function's zeros, weighted and scaled, may have become -0 or NaN
                // (a weight or grad_output of -1 or inf there): dropped elements add exactly 0
                // to the sums (the summed values' buffer is ours, and so is that of the kept
                // weights), and their outputs are +0. Unweighted values are zeros as written.
                for (k, out) in outs.iter_mut().enumerate() {
                    if let Some(out) = out.as_deref_mut().filter(|_| k > 0 || ws.is_some()) {
                        block::zero_dropped(self.level, out, keep);
                    }
                }
            }
            if summed || plan.denominators {
                let weights = match (ws, keep) {
                    (Some(ws), Some(keep)) if plan.denominators => {
                        let Some(buffer) = kept_weights.get_mut(..m) else {
                            debug_assert!(false, "no buffer for the kept weights");
                            return Partial::broken();
                        };
                        buffer.copy_from_slice(ws);
                        block::zero_dropped(self.level, buffer, keep);
                        Some(&buffer[..])
                    }
                    (ws, _) => ws,
                };
                self.add_runs(
                    &mut partial,
                    &mut open,
                    first + start,
                    m,
                    summed.then(|| &sums_buffer[..m]),
                    plan.denominators.then_some(weights),
                    kept,
                );
            }
            start = end;
        }
        partial.close(&mut open);
        partial
    }

    /// Adds the values of a piece of `n` elements (and, with `weights`, its kept elements'
    /// weights, `None` for 1 each, and their count) to the sums of their slots: the piece
    /// starts at walk index `first`; `kept` is its part of the mask and the number of elements
    /// it keeps, if any element of its block is dropped (whose values and weights are already
    /// 0). `open` is the sum of the slot the walk is in; a slot the piece leaves is closed
    /// into `partial`.
    #[allow(clippy::too_many_arguments)]
    fn add_runs(
        &self,
        partial: &mut Partial,
        open: &mut Open,
        first: usize,
        n: usize,
        values: Option<&[F]>,
        weights: Option<Option<&[F]>>,
        kept: Option<(&[bool], usize)>,
    ) where
        F: Real,
    {
        let per_slot = self.per_slot.max(1);
        let mut i = 0;
        while i < n {
            let slot = (first + i) / per_slot;
            let run_end = n.min((slot + 1) * per_slot - first);
            if slot != open.slot {
                partial.close(open);
                open.slot = slot;
            }
            let kept = match kept {
                // The whole piece, one run (a full reduction): its count is known.
                Some((_, count)) if i == 0 && run_end == n => count,
                Some((k, _)) => block::count_kept(self.level, &k[i..run_end]),
                None => run_end - i,
            };
            let (vs, ws) = (
                values.map(|v| &v[i..run_end]),
                weights.map(|w| w.map(|w| &w[i..run_end])),
            );
            // A whole slot in this run, short: its plain sums, when they are exact.
            if run_end - i == per_slot && per_slot <= SHORT_SLOT && !partial.keeps_states() {
                if let Some(closed) = Closed::of_run(self.level, vs, ws, kept) {
                    partial.push_closed(slot, closed);
                    i = run_end;
                    continue;
                }
            }
            open.add(self.level, run_end - i, vs, ws, kept);
            i = run_end;
        }
    }
}

/// The block function and the weighting over one piece (`outs`: values, gradient, target
/// gradient, second derivative); the range flags.
fn run_piece<F: Real>(
    plan: &Plan<F>,
    level: SimdLevel,
    (x, y, pw, keep): PieceOperands<'_, F>,
    outs: &mut [Option<&mut [F]>; 4],
    w: Option<&[F]>,
    g: Option<&[F]>,
) -> (bool, bool) {
    let Some(kernel) = plan.kernel else {
        return (false, false);
    };
    let [value, grad, grad_target, hess] = outs;
    // Without weights and per-element factors, the block function scales the derivatives
    // as it writes them: the same product as `block::finish`'s, and the same bits, unless
    // a scale is NaN (a NaN times a NaN result gives either NaN, depending on the order
    // of the operands the compiler picks): those stay with `finish`.
    let scales = (plan.grad_scale, plan.grad_target_scale);
    let fused = w.is_none() && g.is_none() && !scales.0.is_nan() && !scales.1.is_nan();
    let io = BlockIo {
        x,
        y,
        pw,
        value: value.as_deref_mut(),
        grad: grad.as_deref_mut(),
        grad_target: grad_target.as_deref_mut(),
        hess: hess.as_deref_mut(),
        keep,
        smoothing: plan.smoothing,
        scales: if fused { scales } else { (F::ONE, F::ONE) },
    };
    let flags = kernel(&plan.params, level, io);
    block::finish(
        level,
        value.as_deref_mut(),
        [grad.as_deref_mut(), hess.as_deref_mut()],
        grad_target.as_deref_mut(),
        w,
        g,
        if fused { (F::ONE, F::ONE) } else { scales },
    );
    flags
}

/// A thread's buffers for the chunks it runs in a call (one allocation per thread and call,
/// not one per chunk): a block's values when they are summed, and a block's kept weights.
#[derive(Default)]
pub(crate) struct Scratch<F> {
    sums: Vec<F>,
    kept_weights: Vec<F>,
}

/// The first `n` elements of `v` (grown with zeros as needed) when `wanted`, else an empty
/// slice.
fn buffer<F: Float>(v: &mut Vec<F>, wanted: bool, n: usize) -> &mut [F] {
    if !wanted {
        return &mut [];
    }
    if v.len() < n {
        v.resize(n, F::ZERO);
    }
    &mut v[..n]
}

/// Each wanted output's buffer: the caller's (`dests`, those usable), else `n` zeros of our
/// own, in `owned`; empty for an output not wanted.
fn output_buffers<'o, F: Float>(
    dests: [Option<&'o mut [F]>; 4],
    wanted: [bool; 4],
    owned: &'o mut [Vec<F>; 4],
    n: usize,
) -> Result<[&'o mut [F]; 4], Error> {
    let mut outputs: [&mut [F]; 4] = Default::default();
    for (((out, dest), own), want) in outputs
        .iter_mut()
        .zip(dests)
        .zip(owned.iter_mut())
        .zip(wanted)
    {
        *out = match dest {
            Some(s) if want => s,
            _ if want => {
                *own = zeroed(n, "the output")?;
                own
            }
            _ => &mut [],
        };
    }
    Ok(outputs)
}

/// The parts `start..end` of the outputs `plan` has (values, gradient, target gradient, second
/// derivative), the values in `sums` instead when they are summed.
fn block_outputs<'s, F>(
    plan: &Plan<F>,
    out: &'s mut [&mut [F]; 4],
    sums: Option<&'s mut [F]>,
    start: usize,
    end: usize,
) -> [Option<&'s mut [F]>; 4] {
    let [value, grad, grad_target, hess] = out;
    [
        match sums {
            Some(sums) => Some(sums),
            None => sub(value, plan.value == ValueOut::Elementwise, start, end),
        },
        sub(grad, plan.grad, start, end),
        sub(grad_target, plan.grad_target, start, end),
        sub(hess, plan.hess, start, end),
    ]
}

/// `out[a..b]` if the output is wanted.
fn sub<F>(out: &mut [F], wanted: bool, a: usize, b: usize) -> Option<&mut [F]> {
    if wanted {
        out.get_mut(a..b)
    } else {
        None
    }
}

/// Computes `plan` over `ops`, in parallel where it pays, checking `interrupt` between batches
/// of a long call.
pub(crate) fn execute<'v, 'o, F: Real>(
    plan: &Plan<F>,
    ops: &'v Operands<'_, F>,
    dest: Dest<'o, F>,
    interrupt: Interrupt<'_>,
) -> Result<Outcome<F>, Error> {
    let shape = ops.x.shape();
    let n: usize = shape.iter().product();
    let wanted = plan.outputs();
    fn broadcast<'v, T>(
        v: &'v Option<ArrayViewD<'_, T>>,
        shape: &[usize],
    ) -> Result<Option<ArrayViewD<'v, T>>, Error> {
        match v {
            None => Ok(None),
            Some(v) => v.broadcast(IxDyn(shape)).map(Some).ok_or(Error::Internal(
                "an operand that does not broadcast passed the checks",
            )),
        }
    }
    let w = broadcast(&ops.w, shape)?;
    let pw = broadcast(&ops.pw, shape)?;
    let g = broadcast(&ops.g, shape)?;
    let mask = broadcast(&ops.mask, shape)?;
    if ops.y.shape() != shape {
        return Err(Error::Internal(
            "a target of another shape passed the checks",
        ));
    }
    // The slots: the kept axes' elements.
    let slots: usize = plan.kept.as_ref().map_or(1, |kept| {
        kept.iter()
            .map(|&ax| shape.get(ax).copied().unwrap_or(1))
            .product()
    });
    if n == 0 {
        // Nothing to write: a caller's (empty) buffers are as good as ours.
        let empty = |d: bool, w: bool| (w && !d).then(|| ArrayD::from_elem(IxDyn(shape), F::ZERO));
        let given = [
            dest.value.is_some(),
            dest.grad.is_some(),
            dest.grad_target.is_some(),
            dest.hess.is_some(),
        ];
        return Ok(Outcome {
            sums: vec![Closed::default(); slots],
            states: if plan.states {
                vec![LossSums::new(); slots]
            } else {
                Vec::new()
            },
            arrays: core::array::from_fn(|k| empty(given[k], wanted[k]).map(Box::new)),
        });
    }
    let per_slot = n / slots.max(1);

    // The operands present, in the walk's order.
    let present: [Option<ArrayViewD<'_, F>>; OPERANDS] =
        [Some(ops.x.view()), Some(ops.y.view()), w, pw, g];
    let mut position = [None; OPERANDS];
    let mut count = 0;
    for (k, v) in present.iter().enumerate() {
        if v.is_some() {
            position[k] = Some(count);
            count += 1;
        }
    }
    // Every operand contiguous in C order, and the walk in C order (no axes reduced, or the
    // trailing ones): one axis, no layout work, no allocation. Otherwise the canonical layout.
    let c_order_slots = plan
        .kept
        .as_ref()
        .is_none_or(|kept| kept.iter().enumerate().all(|(i, &ax)| i == ax));
    let mut slices = [None; OPERANDS];
    let mut flat = c_order_slots;
    for (slot, v) in slices.iter_mut().zip(present.iter().flatten()) {
        *slot = v.to_slice();
        flat &= slot.is_some();
    }
    let mask_flat = mask.as_ref().map(|m| m.to_slice());
    flat &= mask_flat.is_none_or(|m| m.is_some());
    let (canon, geometry, mask_slice) = if flat {
        (None, Geometry::new(1, 1, n), mask_flat.flatten())
    } else {
        let views: Vec<ArrayViewD<'_, F>> = present.into_iter().flatten().collect();
        let canon = Canonical::new(views, mask.clone(), plan.kept.as_deref());
        let (rows, cols) = canon.panel_shape();
        let geometry = Geometry::new(canon.panels(), rows, cols);
        slices = [None; OPERANDS];
        let mut mask_slice = None;
        if canon.shape.len() == 1 {
            for (slot, v) in slices.iter_mut().zip(&canon.views) {
                *slot = v.to_slice();
            }
            mask_slice = canon.mask.as_ref().and_then(|m| m.to_slice());
        }
        (Some(canon), geometry, mask_slice)
    };
    let has_mask = ops.mask.is_some();
    // The walk's axis order, when it is not the input's.
    let perm: Option<Vec<usize>> = canon.as_ref().map(|c| c.perm.clone());
    let walk = Walk {
        canon,
        position,
        slices,
        mask_slice,
        has_mask,
        geometry,
        per_slot,
        level: simd_level(),
    };

    // The caller's buffers, when the walk is in C order (they are in C order of the shape);
    // otherwise buffers of our own, in the walk's order, permuted back at the end.
    let c_order = perm
        .as_ref()
        .is_none_or(|perm| perm.iter().filter(|&&ax| shape[ax] > 1).is_sorted());
    let usable = |d: Option<&'o mut [F]>| d.filter(|s| c_order && s.len() == n);
    let dests = [
        usable(dest.value),
        usable(dest.grad),
        usable(dest.grad_target),
        usable(dest.hess),
    ];
    let mut owned: [Vec<F>; 4] = Default::default();
    let outputs = output_buffers(dests, wanted, &mut owned, n)?;
    let chunks = geometry.count();
    let pool = if n >= PARALLEL_MIN && chunks > 1 {
        match get_num_threads() {
            1 => None,
            threads => pool::pool(threads)?,
        }
    } else {
        None
    };
    let mut total = run_batches(
        &walk.geometry,
        wanted,
        outputs,
        (slots, per_slot, plan.states),
        pool.as_deref(),
        interrupt,
        |c, out, scratch| walk.run_chunk(plan, c, out, scratch),
    )?;
    if total.broken {
        return Err(Error::Internal("a chunk did not fit the plan"));
    }
    if total.bad_input || total.bad_target {
        return Err(first_out_of_range(&ops.x, &ops.y, mask.as_ref()));
    }
    let states = if plan.states {
        total
            .states(slots)
            .ok_or(Error::Internal("a slot's exact sums were left incomplete"))?
    } else {
        Vec::new()
    };
    let sums = total.sums().ok_or(Error::Internal(
        "a slot of the reduction was left incomplete",
    ))?;

    let to_array = |data: Vec<F>| -> Result<ArrayD<F>, Error> {
        let Some(perm) = &perm else {
            return ArrayD::from_shape_vec(IxDyn(shape), data)
                .map_err(|_| Error::Internal("an output of the wrong length"));
        };
        let permuted: Vec<usize> = perm.iter().map(|&ax| shape[ax]).collect();
        let mut inverse = vec![0; perm.len()];
        for (i, &ax) in perm.iter().enumerate() {
            inverse[ax] = i;
        }
        ArrayD::from_shape_vec(IxDyn(&permuted), data)
            .map(|a| a.permuted_axes(inverse))
            .map_err(|_| Error::Internal("an output of the wrong length"))
    };
    let mut arrays: OwnedOutputs<F> = Default::default();
    for (slot, data) in arrays.iter_mut().zip(owned) {
        if !data.is_empty() {
            *slot = Some(Box::new(to_array(data)?));
        }
    }
    Ok(Outcome {
        sums,
        states,
        arrays,
    })
}

/// The most elements [`execute_small`] takes: one chunk.
pub(crate) const SMALL_MAX: usize = CHUNK;
/// The most elements whose summed values [`execute_small`] keeps on the stack.
const SMALL_STACK: usize = 128;

/// What [`execute_small`] produced: the exact sum of the values (when they are summed), and
/// the elementwise outputs it allocated, as [`Outcome::arrays`].
pub(crate) struct SmallOutcome<F> {
    /// The sum of the values, correctly rounded (0 when they are not summed).
    pub sum: f64,
    /// The elementwise outputs not in the caller's buffers.
    pub arrays: OwnedOutputs<F>,
}

/// [`execute`] for a small call of one slot without weight, per-element factor or mask, over
/// an input, a target and a positive-class weight (if any) that are contiguous in C order, of
/// one shape and at most [`SMALL_MAX`] elements: the same block function over the same blocks
/// and the same exact sum, on the caller's thread, without the walk, the chunk reports and
/// their merges, whose fixed costs dominate such a call. The same results, bit for bit.
pub(crate) fn execute_small<'o, F: Real>(
    plan: &Plan<F>,
    x: &ArrayViewD<'_, F>,
    y: &ArrayViewD<'_, F>,
    pw: Option<&[F]>,
    dest: Dest<'o, F>,
) -> Result<SmallOutcome<F>, Error> {
    let n = x.len();
    let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice()) else {
        return Err(Error::Internal(
            "a small call's operands are not contiguous",
        ));
    };
    let planned = n > 0
        && n <= SMALL_MAX
        && ys.len() == n
        && pw.is_none_or(|p| p.len() == n)
        && plan.kept.is_none()
        && !plan.denominators
        && !plan.states;
    if !planned {
        return Err(Error::Internal("a call that is not small planned as one"));
    }
    let wanted = plan.outputs();
    let summed = plan.value == ValueOut::Sum;
    let fits = |d: Option<&'o mut [F]>| d.filter(|s: &&mut [F]| s.len() == n);
    let dests = [
        fits(dest.value),
        fits(dest.grad),
        fits(dest.grad_target),
        fits(dest.hess),
    ];
    let mut owned: [Vec<F>; 4] = Default::default();
    let mut outputs = output_buffers(dests, wanted, &mut owned, n)?;
    let level = simd_level();
    // The values of a block, when they are summed: on the stack for the smallest calls.
    let mut on_stack = [F::ZERO; SMALL_STACK];
    let mut on_heap: Vec<F>;
    let values: &mut [F] = match (summed, n <= SMALL_STACK) {
        (false, _) => &mut [],
        (true, true) => &mut on_stack[..n],
        (true, false) => {
            on_heap = vec![F::ZERO; n.min(BLOCK)];
            &mut on_heap
        }
    };
    // As the executor sums a slot: a short one plainly when that is exact, else exactly.
    let mut open: Option<Open> = None;
    let mut closed = None;
    let (mut bad_input, mut bad_target) = (false, false);
    let mut start = 0;
    while start < n {
        let end = n.min(start + BLOCK);
        let m = end - start;
        let sums = summed.then(|| values.get_mut(..m)).flatten();
        let mut outs = block_outputs(plan, &mut outputs, sums, start, end);
        let piece = (
            &xs[start..end],
            &ys[start..end],
            pw.map(|p| &p[start..end]),
            None,
        );
        let (a, b) = run_piece(plan, level, piece, &mut outs, None, None);
        bad_input |= a;
        bad_target |= b;
        if summed {
            let vs = &values[..m];
            if n <= SHORT_SLOT {
                closed = Closed::of_run(level, Some(vs), None, m);
            }
            if closed.is_none() {
                open.get_or_insert_with(|| Open::for_slot(0))
                    .add(level, m, Some(vs), None, m);
            }
        }
        start = end;
    }
    if bad_input || bad_target {
        return Err(first_out_of_range(x, y, None));
    }
    let sum = match (closed, open) {
        (Some(closed), _) => closed.sum,
        (None, Some(open)) => open.finish().sum,
        (None, None) => 0.0,
    };
    let mut arrays: OwnedOutputs<F> = Default::default();
    for (slot, data) in arrays.iter_mut().zip(owned) {
        if !data.is_empty() {
            let array = ArrayD::from_shape_vec(IxDyn(x.shape()), data)
                .map_err(|_| Error::Internal("an output of the wrong length"))?;
            *slot = Some(Box::new(array));
        }
    }
    Ok(SmallOutcome { sum, arrays })
}

/// The error for the first kept element out of `[0, 1]` in C order, the input's before the
/// target's at the same index (torch's check goes element by element, the input first).
fn first_out_of_range<F: Float>(
    x: &ArrayViewD<'_, F>,
    y: &ArrayViewD<'_, F>,
    mask: Option<&ArrayViewD<'_, bool>>,
) -> Error {
    // `indexed_iter` walks in logical (C) order.
    for ((index, &a), &b) in x.indexed_iter().zip(y.iter()) {
        if mask.is_some_and(|m| !m.get(index.slice()).copied().unwrap_or(true)) {
            continue;
        }
        for (arg, v) in [("input", a), ("target", b)] {
            if !in_unit_interval(v) {
                return Error::OutOfRange {
                    arg,
                    index: index.slice().to_vec(),
                    value: format_value(v),
                };
            }
        }
    }
    Error::Internal("a block saw an element out of range that is not there")
}

/// `n` zeros, or [`Error::OutOfMemory`]. `vec!` aborts the process when the allocation fails,
/// so the allocation is tried first with `try_reserve_exact`; the vector itself is then made
/// by `vec!`, whose zeroed allocation leaves the pages untouched until they are written.
pub(crate) fn zeroed<F: Float>(n: usize, what: &'static str) -> Result<Vec<F>, Error> {
    let mut probe: Vec<F> = Vec::new();
    probe.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        what,
        bytes: (n as u64).saturating_mul(core::mem::size_of::<F>() as u64),
    })?;
    drop(probe);
    Ok(vec![F::ZERO; n])
}

/// A check a long call makes between batches of chunks, on the caller's thread: an `Err`
/// (normally [`Error::Interrupted`]) stops the call with that error.
pub(crate) type Interrupt<'a> = Option<&'a (dyn Fn() -> Result<(), Error> + Sync)>;

/// Chunks in the first batch: calls of up to 16.7M elements run in one batch, as if there were
/// no batches.
const FIRST_BATCH: usize = 1 << 10;
/// The most chunks in one batch.
const MAX_BATCH: usize = 1 << 16;
/// Batches grow (doubling) while they take less than this, so that the interrupt check comes
/// every 25 to 50 ms of work.
const BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(25);

/// The parts of an output (`present`) for the chunks `range` (of `len` elements in all), cut
/// off the front of `rest`; empty slices for an output the plan lacks.
fn take_batch<'s, F>(
    rest: &mut &'s mut [F],
    present: bool,
    len: usize,
    geometry: &Geometry,
    range: core::ops::Range<usize>,
) -> Vec<&'s mut [F]> {
    if !present {
        return range.map(|_| Default::default()).collect();
    }
    debug_assert!(rest.len() >= len, "an output is shorter than its chunks");
    let all = core::mem::take(rest);
    let (head, tail) = all.split_at_mut(len.min(all.len()));
    *rest = tail;
    split_chunks(head, geometry, range)
}

/// Runs the chunks of `work` on the caller's thread and the pool's threads (the call's other
/// threads), and merges their reports into `total`.
///
/// Each thread runs a contiguous share of the chunks in order (threads writing far apart
/// in an output, not page beside page), then takes chunks from the end of the largest share
/// left. The caller starts at once and the pool's threads join as they wake (a sleeping thread
/// takes tens of microseconds): a call of a few chunks is not held up by a hand-off to the
/// pool and back, and a thread that runs slower (a busy or shared core) holds up the end of
/// the call by about one chunk.
fn run_shared<F: Float>(
    pool: &rayon::ThreadPool,
    work: Vec<ChunkOutputs<'_, F>>,
    total: Partial,
    run: &(impl Fn(usize, [&mut [F]; 4], &mut Scratch<F>) -> Partial + Sync),
) -> Partial {
    let helpers = pool.current_num_threads().min(work.len().saturating_sub(1));
    let threads = helpers + 1;
    let shares = Shares::new(work, threads);
    let shared = std::sync::Mutex::new(total);
    // A poisoned lock (a panic in another thread's chunk, which the call then re-raises) still
    // holds usable shares and a usable total.
    let drain = |me: usize| {
        let mut scratch = Scratch::default();
        loop {
            let next = shares.0.lock().unwrap_or_else(|e| e.into_inner()).take(me);
            let Some((c, out)) = next else {
                break;
            };
            let report = run(c, out, &mut scratch);
            shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .merge(report);
        }
    };
    // The caller waits for the helpers' last chunks awake for a while (a blocking wait at the
    // scope's end puts it to sleep, and waking it takes as long as waking a helper); past
    // [`LINGER`] (a helper not started yet: a pool busy with other calls), it blocks.
    let running = AtomicUsize::new(helpers);
    pool.in_place_scope(|scope| {
        for me in 1..threads {
            let (drain, running) = (&drain, &running);
            scope.spawn(move |_| {
                drain(me);
                running.fetch_sub(1, Ordering::Release);
            });
        }
        drain(0);
        let since = std::time::Instant::now();
        let mut spins = 0u32;
        while running.load(Ordering::Acquire) > 0 {
            if spins < SPINS {
                core::hint::spin_loop();
                spins += 1;
            } else if since.elapsed() < LINGER {
                std::thread::yield_now();
            } else {
                break;
            }
        }
    });
    linger(pool, helpers);
    shared.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// The chunks of a call, cut into one contiguous share per thread ([`run_shared`]).
struct Shares<'s, F>(std::sync::Mutex<SharesInner<'s, F>>);

struct SharesInner<'s, F> {
    /// The chunks not taken yet.
    work: Vec<Option<ChunkOutputs<'s, F>>>,
    /// Each thread's share: the positions in `work` it has left.
    left: Vec<core::ops::Range<usize>>,
}

impl<'s, F> Shares<'s, F> {
    fn new(work: Vec<ChunkOutputs<'s, F>>, threads: usize) -> Self {
        let n = work.len();
        let left = (0..threads)
            .map(|t| n * t / threads..n * (t + 1) / threads)
            .collect();
        let work = work.into_iter().map(Some).collect();
        Shares(std::sync::Mutex::new(SharesInner { work, left }))
    }
}

impl<'s, F> SharesInner<'s, F> {
    /// The next chunk for thread `me`: the first of its share, or the last of the largest
    /// share left; `None` when every chunk is taken.
    fn take(&mut self, me: usize) -> Option<ChunkOutputs<'s, F>> {
        let own = self.left.get_mut(me).and_then(|r| r.next());
        let position = own.or_else(|| {
            let largest = self.left.iter_mut().max_by_key(|r| r.len())?;
            largest.next_back()
        })?;
        self.work.get_mut(position)?.take()
    }
}

/// Busy-wait rounds before a waiting thread yields its core to the system between checks.
const SPINS: u32 = 1000;

/// How long a pool thread stays awake after a call, looking for the next call's chunks,
/// before it goes to sleep: a stream of mid-size calls (batches of a metric, say) finds its
/// helpers awake instead of waking them each time (tens of microseconds each).
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// The threads lingering ([`LINGER`]), with the process they were counted in (high 32 bits:
/// a forked child starts from none).
static LINGERING: AtomicU64 = AtomicU64::new(0);

/// Keeps `helpers` of `pool`'s threads awake (as many as are not already) for [`LINGER`] after
/// the last chunk each ran.
fn linger(pool: &rayon::ThreadPool, helpers: usize) {
    use Ordering::{AcqRel, Acquire};
    let pid = u64::from(std::process::id());
    let count = |v: u64| if v >> 32 == pid { v & 0xffff_ffff } else { 0 };
    let Ok(before) = LINGERING.fetch_update(AcqRel, Acquire, |v| {
        (count(v) < helpers as u64).then_some(pid << 32 | helpers as u64)
    }) else {
        return;
    };
    for _ in count(before)..helpers as u64 {
        pool.spawn(move || {
            let mut last = std::time::Instant::now();
            loop {
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => last = std::time::Instant::now(),
                    Some(rayon::Yield::Idle) if last.elapsed() < LINGER => std::thread::yield_now(),
                    _ => break,
                }
            }
            let _ = LINGERING.fetch_update(AcqRel, Acquire, |v| {
                (v >> 32 == pid).then(|| pid << 32 | (v & 0xffff_ffff).saturating_sub(1))
            });
        });
    }
}

/// Runs `run(c, outputs_c)` for every chunk `c`, with `outputs_c` its parts of the four outputs
/// (empty for outputs the plan lacks), on the caller's thread and `pool`'s ([`run_shared`]),
/// and merges the chunks' reports (exact sums: in any order, the same result, whatever the
/// threads or the batches). The chunks are taken in batches; between two, `interrupt` is
/// called and a range error stops the call early.
fn run_batches<F: Float>(
    geometry: &Geometry,
    wanted: [bool; 4],
    mut outputs: [&mut [F]; 4],
    (slots, per_slot, keep_states): (usize, usize, bool),
    pool: Option<&rayon::ThreadPool>,
    interrupt: Interrupt<'_>,
    run: impl Fn(usize, [&mut [F]; 4], &mut Scratch<F>) -> Partial + Sync,
) -> Result<Partial, Error> {
    let chunks = geometry.count();
    let mut total = Partial::total(slots, per_slot).keeping_states(keep_states);
    if chunks == 1 {
        // One chunk (every call below CHUNK elements): its outputs are the whole outputs, and
        // there is nothing to batch, time or share (the per-call cost matters for small calls).
        let lens_fit = outputs.iter().zip(wanted).all(|(o, w)| {
            if w {
                o.len() == geometry.len(0)
            } else {
                o.is_empty()
            }
        });
        if lens_fit {
            total.merge(run(0, outputs, &mut Scratch::default()));
            return Ok(total);
        }
    }
    let mut start = 0;
    let mut batch = FIRST_BATCH;
    // The caller's buffers when it runs the chunks alone (each thread has its own otherwise).
    let mut scratch = Scratch::default();
    while start < chunks {
        let end = chunks.min(start + batch);
        let len: usize = (start..end).map(|c| geometry.len(c)).sum();
        let mut parts = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for ((part, out), want) in parts.iter_mut().zip(outputs.iter_mut()).zip(wanted) {
            *part = take_batch(out, want, len, geometry, start..end);
        }
        let [a, b, c, d] = parts;
        let work: Vec<ChunkOutputs<'_, F>> = (start..end)
            .zip(a.into_iter().zip(b).zip(c.into_iter().zip(d)))
            .map(|(k, ((a, b), (c, d)))| (k, [a, b, c, d]))
            .collect();
        let clock = std::time::Instant::now();
        // Each chunk's report is merged into the total as soon as it is made (merges are exact,
        // so their order does not matter): a call holds a few reports at a time, not one per
        // chunk (a few hundred bytes each, which a thread's allocator would otherwise fetch
        // from the system, and fault in, on every call).
        match pool {
            Some(pool) => total = run_shared(pool, work, total, &run),
            None => {
                for (c, out) in work {
                    total.merge(run(c, out, &mut scratch));
                }
            }
        }
        start = end;
        if start < chunks {
            if total.bad_input || total.bad_target || total.broken {
                break;
            }
            if let Some(check) = interrupt {
                check()?;
            }
            if clock.elapsed() < BATCH_TIME {
                batch = (batch * 2).min(MAX_BATCH);
            }
        }
    }
    Ok(total)
}
