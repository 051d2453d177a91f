//! The CPU executor: one loop, driven by the plan of a call, for every loss and every output.
//!
//! A call's elements (in the canonical layout of [`layout`]) are cut into chunks of a fixed
//! size that depends on the shape alone, never on the number of threads; chunks run on the
//! crate's pool ([`pool`]) or on the caller's thread. Each chunk is taken block by block: the
//! operands' blocks are read in place or gathered, BCE's range check looks at them, the loss's
//! block function ([`crate::loss::kernel`]) writes the values and derivatives asked for, and
//! [`block`] weights and scales them and sums the values (in float64, per chunk; the chunks'
//! sums are added in chunk order). So `mean` and `sum` are bitwise identical whatever the
//! thread count, and small calls, which run on the caller's thread, give the same bits as
//! large ones would.
//!
//! Everything here is generic over the float type only, and compiled inside the crate for
//! `f32` and `f64` ([`crate::engine`]).

mod block;
mod layout;
pub(crate) mod pool;

use ndarray::{s, ArrayD, ArrayView2, ArrayViewD, Dimension, Ix2, IxDyn};
use rayon::prelude::*;

use crate::error::{format_value, Error};
use crate::float::Float;
use crate::loss::{in_unit_interval, BlockFn, BlockIo, Params};
use crate::math::Real;
use crate::simd::{simd_level, SimdLevel};
use block::Partial;
use layout::Canonical;
pub(crate) use pool::get_num_threads;

/// Elements per chunk: the unit of parallel work and of the deterministic sum.
pub(crate) const CHUNK: usize = 1 << 14;
/// Elements per block: the unit of the block functions (the size of the gather buffers).
pub(crate) const BLOCK: usize = 1 << 10;
/// Calls with fewer elements run on the caller's thread.
pub(crate) const PARALLEL_MIN: usize = 1 << 16;
/// At most this many chunks per rayon job. rayon otherwise stops splitting after a few
/// levels (about four leaves per thread), and a thread that runs slower (a busy or shared
/// core) ends the call alone on a leaf of a quarter of its share; leaves of 4 chunks
/// (65,536 elements) leave the others something to steal until the end.
const CHUNKS_PER_JOB: usize = 4;

// ---------------------------------------------------------------------------------------------
// The operands and the plan.

/// The operands of one call. `target` has the input's shape; the others broadcast to it
/// (the request's checks made sure).
pub(crate) struct Operands<'a, F> {
    pub x: ArrayViewD<'a, F>,
    pub y: ArrayViewD<'a, F>,
    pub w: Option<ArrayViewD<'a, F>>,
    pub pw: Option<ArrayViewD<'a, F>>,
    /// The per-element grad_output (reduction `none`).
    pub g: Option<ArrayViewD<'a, F>>,
}

/// How the loss values come out of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueOut {
    /// Not at all.
    None,
    /// One per element.
    Elementwise,
    /// Their sum.
    Sum,
}

/// What the executor computes for one call.
pub(crate) struct Plan<F> {
    /// The loss's block function for what is asked.
    pub kernel: BlockFn<F>,
    /// The loss's parameters.
    pub params: Params<F>,
    /// Whether input and target must lie in `[0, 1]`.
    pub checks_range: bool,
    /// The values.
    pub value: ValueOut,
    /// Whether the input gradient is asked for.
    pub grad: bool,
    /// What every derivative is multiplied by (with the per-element grad_output).
    pub grad_scale: F,
}

impl<F> Plan<F> {
    fn outputs(&self) -> (bool, bool) {
        (self.value == ValueOut::Elementwise, self.grad)
    }
}

/// Where a call's outputs go: buffers of the caller's, of the input's element count and in C
/// order of its shape, or (`None`) buffers the executor allocates. A caller's buffer is used
/// when the walk is in C order (always, for inputs in C order); otherwise the executor
/// allocates one and says so in the [`Outcome`].
#[derive(Default)]
pub(crate) struct Dest<'o, F> {
    /// For the elementwise values.
    pub value: Option<&'o mut [F]>,
    /// For the input gradient.
    pub grad: Option<&'o mut [F]>,
}

/// What a call produced.
pub(crate) struct Outcome<F> {
    /// The sum of the values (for [`ValueOut::Sum`]).
    pub sum: f64,
    /// The elementwise values, in the input's shape, when the executor allocated them
    /// (`None`: they are in the caller's buffer, or were not asked for).
    pub value: Option<ArrayD<F>>,
    /// The input gradient, likewise.
    pub grad: Option<ArrayD<F>>,
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

    fn len(&self, c: usize) -> usize {
        let (_, rows, cols) = self.locate(c);
        rows.len() * cols.len()
    }
}

/// A chunk's index and its parts of the two outputs.
type ChunkOutputs<'s, F> = (usize, (&'s mut [F], &'s mut [F]));

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
enum Source<'a, F> {
    /// Contiguous in memory: used in place.
    Slice(&'a [F]),
    /// One value repeated (a broadcast): a buffer filled once.
    Const(Vec<F>),
    /// Anything else: gathered block by block, in order.
    Gather(ndarray::iter::Iter<'a, F, Ix2>, Vec<F>),
}

impl<'a, F: Float> Source<'a, F> {
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
            _ => Source::Gather(view.into_iter(), vec![F::ZERO; len.min(BLOCK)]),
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

/// The operands' order in [`Walk`]: input, target, then weight, pos_weight, grad_output.
const X: usize = 0;
const Y: usize = 1;

struct Walk<'a, F> {
    /// The canonical layout; `None` when every operand is contiguous in C order (then the
    /// walk is that order, over `slices`).
    canon: Option<Canonical<'a, F>>,
    /// Operand `k`'s position among the canonical views, if present.
    position: [Option<usize>; 5],
    /// With one canonical axis (or none built), each present operand that is contiguous.
    slices: [Option<&'a [F]>; 5],
    geometry: Geometry,
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

    /// Runs chunk `c` of `plan`, writing its parts of the outputs (`value`, `grad`: each the
    /// chunk's length, or empty when the plan has no such output).
    fn run_chunk(&self, plan: &Plan<F>, c: usize, value: &mut [F], grad: &mut [F]) -> Partial
    where
        F: Real,
    {
        let (panel, rows, cols) = self.geometry.locate(c);
        let len = rows.len() * cols.len();
        let mut sources: [Option<Source<'a, F>>; 5] =
            core::array::from_fn(|k| self.source(k, panel, &rows, &cols));
        let (want_value, want_grad) = plan.outputs();
        let planned = sources[X].is_some()
            && sources[Y].is_some()
            && (!want_value || value.len() == len)
            && (!want_grad || grad.len() == len)
            && (1..5).all(|k| sources[k].is_some() == self.position[k].is_some());
        if !planned {
            debug_assert!(
                false,
                "chunk {c}: an operand or output does not fit the plan"
            );
            return Partial::broken();
        }
        let mut tmp = [F::ZERO; BLOCK];
        let mut partial = Partial::default();
        let mut start = 0;
        while start < len {
            let m = (len - start).min(BLOCK);
            let end = start + m;
            let [x, y, w, pw, g] = &mut sources;
            let (Some(x), Some(y)) = (x.as_mut(), y.as_mut()) else {
                return Partial::broken();
            };
            let (xs, ys) = (x.block(start, m), y.block(start, m));
            if plan.checks_range {
                partial.check_range(self.level, xs, ys);
            }
            let mut values = match plan.value {
                ValueOut::None => None,
                ValueOut::Elementwise => Some(&mut value[start..end]),
                ValueOut::Sum => Some(&mut tmp[..m]),
            };
            let mut grads = want_grad.then(|| &mut grad[start..end]);
            let io = BlockIo {
                x: xs,
                y: ys,
                pw: pw.as_mut().map(|s| s.block(start, m)),
                value: values.as_deref_mut(),
                grad: grads.as_deref_mut(),
                grad_target: None,
                hess: None,
            };
            (plan.kernel)(&plan.params, self.level, io);
            let ws = w.as_mut().map(|s| s.block(start, m));
            let gs = g.as_mut().map(|s| s.block(start, m));
            block::finish(self.level, values, grads, ws, gs, plan.grad_scale);
            if plan.value == ValueOut::Sum {
                partial.sum += block::sum(self.level, &tmp[..m]);
            }
            start = end;
        }
        partial
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
    let shape = ops.x.shape().to_vec();
    let n: usize = shape.iter().product();
    let (want_value, want_grad) = plan.outputs();
    fn broadcast<'v, F>(
        v: &'v Option<ArrayViewD<'_, F>>,
        shape: &[usize],
    ) -> Result<Option<ArrayViewD<'v, F>>, Error> {
        match v {
            None => Ok(None),
            Some(v) => v.broadcast(IxDyn(shape)).map(Some).ok_or(Error::Internal(
                "an operand that does not broadcast passed the checks",
            )),
        }
    }
    let w = broadcast(&ops.w, &shape)?;
    let pw = broadcast(&ops.pw, &shape)?;
    let g = broadcast(&ops.g, &shape)?;
    if ops.y.shape() != shape.as_slice() {
        return Err(Error::Internal(
            "a target of another shape passed the checks",
        ));
    }
    if n == 0 {
        // Nothing to write: a caller's (empty) buffers are as good as ours.
        let empty = || ArrayD::from_elem(IxDyn(&shape), F::ZERO);
        return Ok(Outcome {
            sum: 0.0,
            value: (want_value && dest.value.is_none()).then(empty),
            grad: (want_grad && dest.grad.is_none()).then(empty),
        });
    }

    // The operands present, in the walk's order.
    let present: [Option<ArrayViewD<'_, F>>; 5] =
        [Some(ops.x.view()), Some(ops.y.view()), w, pw, g];
    let mut position = [None; 5];
    let mut views = Vec::with_capacity(5);
    for (k, v) in present.into_iter().enumerate() {
        if let Some(v) = v {
            position[k] = Some(views.len());
            views.push(v);
        }
    }
    // Every operand contiguous in C order (the common case): one axis, no layout work and no
    // allocation. Otherwise the canonical layout.
    let flat: Option<Vec<&[F]>> = views.iter().map(|v| v.to_slice()).collect();
    let mut slices = [None; 5];
    let (canon, geometry) = match flat {
        Some(flat) => {
            for (slot, s) in slices.iter_mut().zip(flat) {
                *slot = Some(s);
            }
            (None, Geometry::new(1, 1, n))
        }
        None => {
            let canon = Canonical::new(views);
            let (rows, cols) = canon.panel_shape();
            let geometry = Geometry::new(canon.panels(), rows, cols);
            if canon.shape.len() == 1 {
                for (slot, v) in slices.iter_mut().zip(&canon.views) {
                    *slot = v.to_slice();
                }
            }
            (Some(canon), geometry)
        }
    };
    let perm: Vec<usize> = match &canon {
        Some(c) => c.perm.clone(),
        None => (0..shape.len()).collect(),
    };
    let walk = Walk {
        canon,
        position,
        slices,
        geometry,
        level: simd_level(),
    };

    // The caller's buffers, when the walk is in C order (they are in C order of the shape);
    // otherwise buffers of our own, in the walk's order, permuted back at the end.
    let c_order = perm.iter().filter(|&&ax| shape[ax] > 1).is_sorted();
    let usable = |d: Option<&'o mut [F]>| d.filter(|s| c_order && s.len() == n);
    let (dest_value, dest_grad) = (usable(dest.value), usable(dest.grad));
    let mut value_vec = Vec::new();
    let mut grad_vec = Vec::new();
    let value: &mut [F] = match dest_value {
        Some(s) => s,
        None if want_value => {
            value_vec = zeroed(n, "the output")?;
            &mut value_vec
        }
        None => &mut [],
    };
    let grad: &mut [F] = match dest_grad {
        Some(s) => s,
        None if want_grad => {
            grad_vec = zeroed(n, "the output")?;
            &mut grad_vec
        }
        None => &mut [],
    };
    let chunks = geometry.count();
    let pool = if n >= PARALLEL_MIN && chunks > 1 {
        match get_num_threads() {
            1 => None,
            threads => pool::pool(threads)?,
        }
    } else {
        None
    };
    let total = run_batches(
        &walk.geometry,
        (want_value, want_grad),
        value,
        grad,
        pool.as_deref(),
        interrupt,
        |c, a, b| walk.run_chunk(plan, c, a, b),
    )?;
    if total.broken {
        return Err(Error::Internal("a chunk did not fit the plan"));
    }
    if total.bad_input || total.bad_target {
        return Err(first_out_of_range(&ops.x, &ops.y));
    }

    let to_array = |data: Vec<F>| -> Result<ArrayD<F>, Error> {
        let permuted: Vec<usize> = perm.iter().map(|&ax| shape[ax]).collect();
        let mut inverse = vec![0; perm.len()];
        for (i, &ax) in perm.iter().enumerate() {
            inverse[ax] = i;
        }
        ArrayD::from_shape_vec(IxDyn(&permuted), data)
            .map(|a| a.permuted_axes(inverse))
            .map_err(|_| Error::Internal("an output of the wrong length"))
    };
    Ok(Outcome {
        sum: total.sum,
        value: (!value_vec.is_empty())
            .then(|| to_array(value_vec))
            .transpose()?,
        grad: (!grad_vec.is_empty())
            .then(|| to_array(grad_vec))
            .transpose()?,
    })
}

/// The error for the first element out of `[0, 1]` in C order, the input's before the
/// target's at the same index (torch's check goes element by element, the input first).
fn first_out_of_range<F: Float>(x: &ArrayViewD<'_, F>, y: &ArrayViewD<'_, F>) -> Error {
    // `indexed_iter` walks in logical (C) order.
    for ((index, &a), &b) in x.indexed_iter().zip(y.iter()) {
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
/// off the front of `rest`; empty slices for an output the job lacks.
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

/// Runs `run(c, value_c, grad_c)` for every chunk `c`, with `value_c` and `grad_c` its parts
/// of the outputs (empty for outputs the plan lacks), on `pool` (or the caller's thread), and
/// combines the partials in chunk order: the result does not depend on the threads or the
/// batches. The chunks are taken in batches; between two, `interrupt` is called and a range
/// error stops the call early.
fn run_batches<F: Float>(
    geometry: &Geometry,
    (want_value, want_grad): (bool, bool),
    mut value: &mut [F],
    mut grad: &mut [F],
    pool: Option<&rayon::ThreadPool>,
    interrupt: Interrupt<'_>,
    run: impl Fn(usize, &mut [F], &mut [F]) -> Partial + Sync,
) -> Result<Partial, Error> {
    let chunks = geometry.count();
    let mut total = Partial::default();
    let mut start = 0;
    let mut batch = FIRST_BATCH;
    while start < chunks {
        let end = chunks.min(start + batch);
        let len: usize = (start..end).map(|c| geometry.len(c)).sum();
        let firsts = take_batch(&mut value, want_value, len, geometry, start..end);
        let seconds = take_batch(&mut grad, want_grad, len, geometry, start..end);
        let work: Vec<ChunkOutputs<'_, F>> =
            (start..end).zip(firsts.into_iter().zip(seconds)).collect();
        let clock = std::time::Instant::now();
        let partials: Vec<Partial> = match pool {
            Some(pool) => pool.install(|| {
                work.into_par_iter()
                    .with_max_len(CHUNKS_PER_JOB)
                    .map(|(c, (a, b))| run(c, a, b))
                    .collect()
            }),
            None => work.into_iter().map(|(c, (a, b))| run(c, a, b)).collect(),
        };
        total = partials.into_iter().fold(total, Partial::then);
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
