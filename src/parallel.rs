//! Chunking, the thread pool, and the deterministic reduction.
//!
//! A call's elements (in the canonical layout of [`crate::layout`]) are cut into chunks of a
//! fixed size that depends on the shape alone, never on the number of threads. Each chunk
//! yields a float64 partial sum; the partials are added in chunk order. So `mean` and `sum` are
//! bitwise identical whatever the thread count, and small calls, which run on the caller's
//! thread, give the same bits as large ones would.

use std::sync::{Arc, Mutex, MutexGuard};

use ndarray::{s, ArrayD, ArrayView2, ArrayViewD, Ix2, IxDyn};
use rayon::prelude::*;

use crate::float::Float;
use crate::kernels::block::{Block, Out, Partial};
use crate::kernels::elementwise::{in_unit_interval, LossFn};
use crate::kernels::simd::{simd_level, SimdLevel};
use crate::layout::Canonical;
use crate::Error;

/// Elements per chunk: the unit of parallel work and of the deterministic sum.
pub(crate) const CHUNK: usize = 1 << 14;
/// Elements per kernel call (the size of the gather buffers).
const BLOCK: usize = 1 << 10;
/// Calls with fewer elements run on the caller's thread.
pub(crate) const PARALLEL_MIN: usize = 1 << 16;
/// At most this many chunks per rayon job. rayon otherwise stops splitting after a few
/// levels (about four leaves per thread), and a thread that runs slower (a busy or shared
/// core) ends the call alone on a leaf of a quarter of its share; leaves of 4 chunks
/// (65,536 elements) leave the others something to steal until the end.
const CHUNKS_PER_JOB: usize = 4;

// ---------------------------------------------------------------------------------------------
// The thread pool.

struct PoolState {
    /// Threads wanted (0: not decided yet).
    threads: usize,
    /// The pool and the process it was started in.
    pool: Option<(u32, Arc<rayon::ThreadPool>)>,
}

static POOL: Mutex<PoolState> = Mutex::new(PoolState {
    threads: 0,
    pool: None,
});

fn lock_pool() -> MutexGuard<'static, PoolState> {
    // A panic elsewhere while holding the lock leaves the state usable: recover it.
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The default thread count: `BCERS_NUM_THREADS` if it holds a positive integer, otherwise the
/// number of processors available to this process.
fn default_threads() -> usize {
    std::env::var("BCERS_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The number of threads large calls use.
///
/// Decided on first use: `BCERS_NUM_THREADS` if it is set to a positive integer, otherwise the
/// number of processors available to the process; [`set_num_threads`] changes it.
pub fn get_num_threads() -> usize {
    let mut state = lock_pool();
    if state.threads == 0 {
        state.threads = default_threads();
    }
    state.threads
}

/// Sets the number of threads large calls use. The crate's own pool is rebuilt on next use;
/// rayon's global pool is never touched.
///
/// # Errors
/// [`Error::InvalidThreadCount`] for 0.
pub fn set_num_threads(threads: usize) -> Result<(), Error> {
    if threads == 0 {
        return Err(Error::InvalidThreadCount);
    }
    let mut state = lock_pool();
    if state.threads != threads {
        state.threads = threads;
        state.pool = None;
    }
    Ok(())
}

/// The crate's pool, started on first use, and again in a child process after `fork` (whose
/// copy of the parent's pool has no threads behind it).
fn pool() -> Result<Arc<rayon::ThreadPool>, Error> {
    let pid = std::process::id();
    let mut state = lock_pool();
    if let Some((owner, pool)) = &state.pool {
        if *owner == pid {
            return Ok(Arc::clone(pool));
        }
        // Inherited through fork: its threads do not exist here. Dropping it would signal
        // them, so leave it be.
        if let Some((_, stale)) = state.pool.take() {
            std::mem::forget(stale);
        }
    }
    if state.threads == 0 {
        state.threads = default_threads();
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(state.threads)
        .thread_name(|i| format!("bcers-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))?;
    let pool = Arc::new(pool);
    state.pool = Some((pid, Arc::clone(&pool)));
    Ok(pool)
}

// ---------------------------------------------------------------------------------------------
// The operands and what to compute.

/// The operands of one call. `target` has the input's shape; the others broadcast to it.
pub(crate) struct Operands<'a, F> {
    pub x: ArrayViewD<'a, F>,
    pub y: ArrayViewD<'a, F>,
    pub w: Option<ArrayViewD<'a, F>>,
    pub pw: Option<ArrayViewD<'a, F>>,
    pub g: Option<ArrayViewD<'a, F>>,
}

/// What a call computes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Job<F> {
    /// The sum of the losses.
    Sum,
    /// The elementwise losses.
    Loss,
    /// The gradient, times `scale` (and the per-element grad_output, if given).
    Grad { scale: F },
    /// The sum of the losses and the gradient times `scale`.
    SumGrad { scale: F },
    /// The elementwise losses and the gradient times `scale`.
    LossGrad { scale: F },
}

impl<F> Job<F> {
    fn outputs(&self) -> usize {
        match self {
            Job::Sum => 0,
            Job::Loss | Job::Grad { .. } | Job::SumGrad { .. } => 1,
            Job::LossGrad { .. } => 2,
        }
    }
}

/// Where a call's outputs go: buffers of the caller's, of the input's element count and in C
/// order of its shape, or (`None`) buffers the executor allocates. A caller's buffer is used
/// when the walk is in C order (always, for inputs in C order); otherwise the executor
/// allocates one and says so in the [`Outcome`].
#[derive(Default)]
pub(crate) struct Dest<'o, F> {
    /// For the first output (losses, or the gradient).
    pub first: Option<&'o mut [F]>,
    /// For the second output (the gradient of `LossGrad`).
    pub second: Option<&'o mut [F]>,
}

/// What a call produced.
pub(crate) struct Outcome<F> {
    /// The sum of the losses (for jobs that sum).
    pub sum: f64,
    /// The first output (losses, or the gradient), in the input's shape, when the executor
    /// allocated it (`None`: it is in the caller's buffer).
    pub first: Option<ArrayD<F>>,
    /// The second output (the gradient of `LossGrad`), likewise.
    pub second: Option<ArrayD<F>>,
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

/// Cuts `out` into one slice per chunk, in chunk order.
fn split_chunks<'s, F>(mut out: &'s mut [F], geometry: &Geometry) -> Vec<&'s mut [F]> {
    let mut pieces = Vec::with_capacity(geometry.count());
    for c in 0..geometry.count() {
        let len = geometry.len(c);
        let rest = core::mem::take(&mut out);
        let (head, tail) = if len <= rest.len() {
            rest.split_at_mut(len)
        } else {
            (rest, Default::default())
        };
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

    /// Elements `start..start + len` of the chunk (`len <= BLOCK`, blocks taken in order).
    fn block(&mut self, start: usize, len: usize) -> &[F] {
        match self {
            Source::Slice(s) => s.get(start..start + len).unwrap_or_default(),
            Source::Const(buf) => &buf[..len.min(buf.len())],
            Source::Gather(it, buf) => {
                let len = len.min(buf.len());
                for (slot, v) in buf[..len].iter_mut().zip(it) {
                    *slot = *v;
                }
                &buf[..len]
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The executor.

struct Plan<'a, F, L> {
    loss: core::marker::PhantomData<L>,
    /// The canonical layout; `None` when every operand is contiguous in C order (then the
    /// walk is that order, over `slices`).
    canon: Option<Canonical<'a, F>>,
    /// With one canonical axis (or none built), each operand that is contiguous, as a slice,
    /// in the order input, target, then the present ones of weight, pos_weight, grad_output.
    slices: [Option<&'a [F]>; 5],
    has_w: bool,
    has_pw: bool,
    has_g: bool,
    geometry: Geometry,
    level: SimdLevel,
}

impl<'a, F: Float, L: LossFn> Plan<'a, F, L> {
    fn source(
        &self,
        index: usize,
        panel: usize,
        rows: &core::ops::Range<usize>,
        cols: &core::ops::Range<usize>,
    ) -> Option<Source<'a, F>> {
        // One contiguous axis: slice it directly.
        if let Some(slice) = self.slices.get(index).copied().flatten() {
            return slice.get(cols.clone()).map(Source::Slice);
        }
        let canon = self.canon.as_ref()?;
        let view = canon.views.get(index)?;
        let panel = canon.panel(view, panel)?;
        Some(Source::new(
            panel.slice_move(s![rows.clone(), cols.clone()]),
        ))
    }

    /// Runs chunk `c`, writing its part of the outputs.
    fn run_chunk(&self, c: usize, job: Job<F>, first: &mut [F], second: &mut [F]) -> Partial {
        let (panel, rows, cols) = self.geometry.locate(c);
        let len = rows.len() * cols.len();
        let mut index = 0;
        let mut next = |present: bool| {
            if present {
                index += 1;
                self.source(index - 1, panel, &rows, &cols)
            } else {
                None
            }
        };
        let (Some(mut x), Some(mut y)) = (next(true), next(true)) else {
            return Partial::default();
        };
        let mut w = next(self.has_w);
        let mut pw = next(self.has_pw);
        let mut g = next(self.has_g);

        let mut partial = Partial::default();
        let mut start = 0;
        while start < len {
            let m = (len - start).min(BLOCK);
            let end = start + m;
            let out = match job {
                Job::Sum => Out::Sum,
                Job::Loss => Out::Loss(first.get_mut(start..end).unwrap_or_default()),
                Job::Grad { scale } => Out::Grad {
                    scale,
                    grad: first.get_mut(start..end).unwrap_or_default(),
                },
                Job::SumGrad { scale } => Out::SumGrad {
                    scale,
                    grad: first.get_mut(start..end).unwrap_or_default(),
                },
                Job::LossGrad { scale } => Out::LossGrad {
                    scale,
                    loss: first.get_mut(start..end).unwrap_or_default(),
                    grad: second.get_mut(start..end).unwrap_or_default(),
                },
            };
            let block = Block::<F, L> {
                loss: core::marker::PhantomData,
                x: x.block(start, m),
                y: y.block(start, m),
                w: w.as_mut().map(|s| s.block(start, m)),
                pw: pw.as_mut().map(|s| s.block(start, m)),
                g: g.as_mut().map(|s| s.block(start, m)),
                out,
            };
            partial = partial.then(block.run_at(self.level));
            start = end;
        }
        partial
    }
}

/// Computes `job` for `loss` over `ops`, in parallel where it pays.
pub(crate) fn execute<'v, 'a: 'v, 'o, F: Float, L: LossFn>(
    loss: L,
    ops: &'v Operands<'a, F>,
    job: Job<F>,
    dest: Dest<'o, F>,
) -> Result<Outcome<F>, Error> {
    let shape = ops.x.shape().to_vec();
    let n: usize = shape.iter().product();
    let outputs = job.outputs();
    let empty = || ArrayD::from_elem(IxDyn(&shape), F::ZERO);
    let broadcast = |arg: &'static str, v: &'v Option<ArrayViewD<'a, F>>| match v {
        None => Ok(None),
        Some(v) => v
            .broadcast(IxDyn(&shape))
            .map(Some)
            .ok_or_else(|| Error::Broadcast {
                arg,
                shape: v.shape().to_vec(),
                input: shape.clone(),
            }),
    };
    let w = broadcast("weight", &ops.w)?;
    let pw = broadcast("pos_weight", &ops.pw)?;
    let g = broadcast("grad_output", &ops.g)?;
    if n == 0 {
        // Nothing to write: a caller's (empty) buffers are as good as ours.
        let own = |d: &Option<&mut [F]>, k: usize| (outputs >= k && d.is_none()).then(empty);
        return Ok(Outcome {
            sum: 0.0,
            first: own(&dest.first, 1),
            second: own(&dest.second, 2),
        });
    }

    let (has_w, has_pw, has_g) = (w.is_some(), pw.is_some(), g.is_some());
    let _ = loss;
    // Every operand contiguous in C order (the common case): one axis, no layout work and no
    // allocation. Otherwise the canonical layout.
    let mut slices = [None; 5];
    let mut flat = true;
    for (slot, view) in slices.iter_mut().zip(
        [Some(&ops.x), Some(&ops.y)]
            .into_iter()
            .chain([&w, &pw, &g].map(Option::as_ref))
            .flatten(),
    ) {
        *slot = view.to_slice();
        flat &= slot.is_some();
    }
    let (canon, geometry) = if flat {
        (None, Geometry::new(1, 1, n))
    } else {
        let mut views = vec![ops.x.clone(), ops.y.clone()];
        views.extend([w, pw, g].into_iter().flatten());
        let canon = Canonical::new(views);
        let (rows, cols) = canon.panel_shape();
        let geometry = Geometry::new(canon.panels(), rows, cols);
        slices = [None; 5];
        if canon.shape.len() == 1 {
            for (slot, v) in slices.iter_mut().zip(&canon.views) {
                *slot = v.to_slice();
            }
        }
        (Some(canon), geometry)
    };
    let perm: Vec<usize> = match &canon {
        Some(c) => c.perm.clone(),
        None => (0..shape.len()).collect(),
    };
    let plan = Plan::<F, L> {
        loss: core::marker::PhantomData,
        canon,
        slices,
        has_w,
        has_pw,
        has_g,
        geometry,
        level: simd_level(),
    };

    // The caller's buffers, when the walk is in C order (they are in C order of the shape);
    // otherwise buffers of our own, in the walk's order, permuted back at the end.
    let c_order = perm.iter().filter(|&&ax| shape[ax] > 1).is_sorted();
    let usable = |d: Option<&'o mut [F]>| d.filter(|s| c_order && s.len() == n);
    let (dest_first, dest_second) = (usable(dest.first), usable(dest.second));
    let mut first_vec = Vec::new();
    let mut second_vec = Vec::new();
    let first: &mut [F] = match dest_first {
        Some(s) => s,
        None if outputs >= 1 => {
            first_vec = vec![F::ZERO; n];
            &mut first_vec
        }
        None => &mut [],
    };
    let second: &mut [F] = match dest_second {
        Some(s) => s,
        None if outputs >= 2 => {
            second_vec = vec![F::ZERO; n];
            &mut second_vec
        }
        None => &mut [],
    };
    let chunks = geometry.count();
    let parallel = n >= PARALLEL_MIN && chunks > 1 && get_num_threads() > 1;

    let partials: Vec<Partial> = if outputs == 0 {
        if parallel {
            pool()?.install(|| {
                (0..chunks)
                    .into_par_iter()
                    .with_max_len(CHUNKS_PER_JOB)
                    .map(|c| plan.run_chunk(c, job, &mut [], &mut []))
                    .collect()
            })
        } else {
            (0..chunks)
                .map(|c| plan.run_chunk(c, job, &mut [], &mut []))
                .collect()
        }
    } else {
        let firsts = split_chunks(first, &geometry);
        let mut seconds = split_chunks(second, &geometry);
        seconds.resize_with(chunks, Default::default);
        let work: Vec<ChunkOutputs<'_, F>> = firsts.into_iter().zip(seconds).enumerate().collect();
        if parallel {
            pool()?.install(|| {
                work.into_par_iter()
                    .with_max_len(CHUNKS_PER_JOB)
                    .map(|(c, (a, b))| plan.run_chunk(c, job, a, b))
                    .collect()
            })
        } else {
            work.into_iter()
                .map(|(c, (a, b))| plan.run_chunk(c, job, a, b))
                .collect()
        }
    };
    let total = partials.into_iter().fold(Partial::default(), Partial::then);

    if total.bad_input || total.bad_target {
        return Err(Error::OutOfRange {
            arg: first_out_of_range(&ops.x, &ops.y, total),
        });
    }

    let to_array = |data: Vec<F>| -> Option<ArrayD<F>> {
        let permuted: Vec<usize> = perm.iter().map(|&ax| shape[ax]).collect();
        let mut inverse = vec![0; perm.len()];
        for (i, &ax) in perm.iter().enumerate() {
            inverse[ax] = i;
        }
        ArrayD::from_shape_vec(IxDyn(&permuted), data)
            .ok()
            .map(|a| a.permuted_axes(inverse))
    };
    Ok(Outcome {
        sum: total.sum,
        first: (!first_vec.is_empty())
            .then(|| to_array(first_vec))
            .flatten(),
        second: (!second_vec.is_empty())
            .then(|| to_array(second_vec))
            .flatten(),
    })
}

/// Which argument torch would name: the one failing first in C order, input before target.
fn first_out_of_range<F: Float>(
    x: &ArrayViewD<'_, F>,
    y: &ArrayViewD<'_, F>,
    seen: Partial,
) -> &'static str {
    if !(seen.bad_input && seen.bad_target) {
        return if seen.bad_input { "input" } else { "target" };
    }
    // `iter` walks in logical (C) order, as torch's check does.
    for (&a, &b) in x.iter().zip(y.iter()) {
        if !in_unit_interval(a) {
            return "input";
        }
        if !in_unit_interval(b) {
            return "target";
        }
    }
    "input"
}

// ---------------------------------------------------------------------------------------------
// The streaming-read limit, for benchmarks.

/// Sums `x` and `y` element by element, vectorised.
struct ReadKernel<'a, F> {
    x: &'a [F],
    y: &'a [F],
}

impl<F: Float> crate::kernels::simd::Kernel for ReadKernel<'_, F> {
    type Output = f64;

    #[inline(always)]
    fn run<I: crate::kernels::simd::Isa>(self) -> f64 {
        const LANES: usize = 16;
        let mut acc = [F::ZERO; LANES];
        let n = self.x.len().min(self.y.len());
        let (x, y) = (&self.x[..n], &self.y[..n]);
        let mut xc = x.chunks_exact(LANES);
        let mut yc = y.chunks_exact(LANES);
        for (a, b) in (&mut xc).zip(&mut yc) {
            for l in 0..LANES {
                acc[l] = acc[l] + a[l] + b[l];
            }
        }
        let tail: f64 = xc
            .remainder()
            .iter()
            .zip(yc.remainder())
            .map(|(a, b)| a.to_f64() + b.to_f64())
            .sum();
        acc.iter().map(|v| v.to_f64()).sum::<f64>() + tail
    }
}

/// Reads `x` and `y` once, in the crate's chunks and threads, and returns the sum of their
/// elements: the least work any loss over the two arrays can do. Benchmarks report the losses'
/// speed against it (the memory-bandwidth limit).
#[doc(hidden)]
pub fn stream_read<F: Float>(x: &[F], y: &[F]) -> Result<f64, Error> {
    let level = simd_level();
    let run =
        |(a, b): (&[F], &[F])| crate::kernels::simd::dispatch(level, ReadKernel { x: a, y: b });
    if x.len() >= PARALLEL_MIN && get_num_threads() > 1 {
        Ok(pool()?.install(|| {
            x.par_chunks(CHUNK)
                .zip(y.par_chunks(CHUNK))
                .with_max_len(CHUNKS_PER_JOB)
                .map(run)
                .collect::<Vec<f64>>()
                .into_iter()
                .sum()
        }))
    } else {
        Ok(x.chunks(CHUNK).zip(y.chunks(CHUNK)).map(run).sum())
    }
}
