//! Chunking, the thread pool, and the deterministic reduction.
//!
//! A call's elements (in the canonical layout of [`crate::layout`]) are cut into chunks of a
//! fixed size that depends on the shape alone, never on the number of threads. Each chunk
//! yields a float64 partial sum; the partials are added in chunk order. So `mean` and `sum` are
//! bitwise identical whatever the thread count, and small calls, which run on the caller's
//! thread, give the same bits as large ones would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use ndarray::{s, ArrayD, ArrayView2, ArrayViewD, Dimension, Ix2, IxDyn};
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
//
// Fork safety: a child process forked while another thread of its parent held a lock keeps that
// lock held forever (the holder does not exist in the child). So no lock is held while a pool is
// built (that takes a while), the lock is never waited for (only tried, briefly; a call that
// cannot get it runs on the caller's thread, with the same result), and a pool inherited through
// fork (its threads do not exist in the child) is replaced by a new one.

/// The most threads [`set_num_threads`] and `BCERS_NUM_THREADS` accept.
pub const MAX_THREADS: usize = 1024;

/// Threads wanted (0: not decided yet).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The pool: the process it was started in, its thread count, the pool.
type PoolSlot = Option<(u32, usize, Arc<rayon::ThreadPool>)>;

static POOL: Mutex<PoolSlot> = Mutex::new(None);

/// The pool's lock, if it can be had at once or after a short spin (it is only ever held for a
/// few instructions). `None` when it cannot: held by a thread that does not exist in this
/// process (a fork) or, very rarely, contended.
fn try_lock_pool() -> Option<MutexGuard<'static, PoolSlot>> {
    for attempt in 0..2000 {
        match POOL.try_lock() {
            Ok(guard) => return Some(guard),
            // A panic elsewhere while holding the lock leaves the state usable: recover it.
            Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if attempt < 1000 => core::hint::spin_loop(),
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

/// What the environment variable `BCERS_NUM_THREADS` asks for: `Ok(None)` when it is unset or
/// empty, `Ok(Some(n))` for a whole number `n` from 1 to [`MAX_THREADS`], and `Err` with its
/// value when it is anything else (then it is ignored: the Python package warns about it).
pub fn num_threads_from_env() -> Result<Option<usize>, String> {
    parse_num_threads(std::env::var_os("BCERS_NUM_THREADS").as_deref())
}

/// [`num_threads_from_env`] of the variable's value.
fn parse_num_threads(raw: Option<&std::ffi::OsStr>) -> Result<Option<usize>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match trimmed.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(Some(n)),
        _ => Err(text.into_owned()),
    }
}

/// The default thread count: `BCERS_NUM_THREADS` if it holds a usable value, otherwise the
/// number of processors available to this process (at most [`MAX_THREADS`]).
fn default_threads() -> usize {
    match num_threads_from_env() {
        Ok(Some(n)) => n,
        _ => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS),
    }
}

/// The number of threads large calls use.
///
/// Decided on first use: `BCERS_NUM_THREADS` if it is set to a whole number from 1 to
/// [`MAX_THREADS`] (other values are ignored), otherwise the number of processors available to
/// the process; [`set_num_threads`] changes it.
pub fn get_num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = default_threads();
            // Another thread may have decided first (or set a count): keep theirs.
            match THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => n,
                Err(current) => current,
            }
        }
        n => n,
    }
}

/// Sets the number of threads large calls use, from 1 to [`MAX_THREADS`]. The crate's own
/// pool is rebuilt on next use; rayon's global pool is never touched.
///
/// # Errors
/// [`Error::InvalidThreadCount`] for 0 or more than [`MAX_THREADS`].
pub fn set_num_threads(threads: usize) -> Result<(), Error> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(Error::InvalidThreadCount { requested: threads });
    }
    THREADS.store(threads, Ordering::Relaxed);
    Ok(())
}

/// The crate's pool of `threads` threads, started on first use, again after
/// [`set_num_threads`] changed the count, and again in a child process after `fork` (whose copy
/// of the parent's pool has no threads behind it). `None` when the pool's lock cannot be had
/// (see above): the caller then runs on its own thread.
fn pool(threads: usize) -> Result<Option<Arc<rayon::ThreadPool>>, Error> {
    let pid = std::process::id();
    {
        let Some(slot) = try_lock_pool() else {
            return Ok(None);
        };
        if let Some((owner, n, pool)) = slot.as_ref() {
            if *owner == pid && *n == threads {
                return Ok(Some(Arc::clone(pool)));
            }
        }
    }
    // Built with no lock held.
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("bcers-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))?;
    let built = Arc::new(built);
    let Some(mut slot) = try_lock_pool() else {
        return Ok(Some(built));
    };
    if let Some((owner, n, pool)) = slot.as_ref() {
        if *owner == pid && *n == threads {
            // Another thread built one meanwhile: use it, drop ours.
            return Ok(Some(Arc::clone(pool)));
        }
    }
    let old = slot.replace((pid, threads, Arc::clone(&built)));
    drop(slot);
    match old {
        // Inherited through fork: its threads do not exist here, and dropping it would signal
        // them. Leave it be.
        Some((owner, _, stale)) if owner != pid => std::mem::forget(stale),
        // Replaced after a change of the thread count: its threads end once idle.
        other => drop(other),
    }
    Ok(Some(built))
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
    interrupt: Interrupt<'_>,
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
            first_vec = zeroed(n, "the output")?;
            &mut first_vec
        }
        None => &mut [],
    };
    let second: &mut [F] = match dest_second {
        Some(s) => s,
        None if outputs >= 2 => {
            second_vec = zeroed(n, "the output")?;
            &mut second_vec
        }
        None => &mut [],
    };
    let chunks = geometry.count();
    let pool = if n >= PARALLEL_MIN && chunks > 1 {
        match get_num_threads() {
            1 => None,
            threads => pool(threads)?,
        }
    } else {
        None
    };
    let total = run_batches(
        &geometry,
        outputs,
        first,
        second,
        pool.as_deref(),
        interrupt,
        |c, a, b| plan.run_chunk(c, job, a, b),
    )?;

    if total.bad_input || total.bad_target {
        return Err(first_out_of_range(&ops.x, &ops.y));
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
    // Unreachable when a block saw a bad element; say so rather than invent an index.
    debug_assert!(
        false,
        "a block reported an element out of range that is not there"
    );
    Error::OutOfRange {
        arg: "input",
        index: Vec::new(),
        value: "unknown".to_owned(),
    }
}

/// A value for a message, as Python prints a float (and NumPy a float32): the shortest digits
/// that give the value back in its type, positional from 1e-4 to below 1e16 (`2.0`, `0.0001`,
/// `-0.0`), scientific with at least two exponent digits elsewhere (`1e-05`, `1.5e+300`);
/// `inf`, `-inf`, and `NaN` for any NaN.
pub(crate) fn format_value<F: Float>(v: F) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v == F::INFINITY || v == -F::INFINITY {
        return if v > F::ZERO { "inf" } else { "-inf" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits: `-1.25e-7`, `2e0`.
    let sci = format!("{v:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let body = if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let point = exponent as usize + 1;
            let int: String = digits
                .chars()
                .chain(core::iter::repeat('0'))
                .take(point.max(digits.len()))
                .collect();
            let (whole, frac) = int.split_at(point);
            let frac = if frac.is_empty() { "0" } else { frac };
            format!("{whole}.{frac}")
        } else {
            let zeros = "0".repeat((-exponent - 1) as usize);
            format!("0.{zeros}{digits}")
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let point = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{point}e{esign}{:02}", exponent.unsigned_abs())
    };
    format!("{sign}{body}")
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

/// Runs `run(c, first_c, second_c)` for every chunk `c`, with `first_c` and `second_c` its parts
/// of the outputs (empty for outputs the job lacks), on `pool` (or the caller's thread), and
/// combines the partials in chunk order: the result does not depend on the threads or the
/// batches. The chunks are taken in batches; between two, `interrupt` is called and a range
/// error stops the call early.
fn run_batches<F: Float>(
    geometry: &Geometry,
    outputs: usize,
    mut first: &mut [F],
    mut second: &mut [F],
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
        let firsts = take_batch(&mut first, outputs >= 1, len, geometry, start..end);
        let seconds = take_batch(&mut second, outputs >= 2, len, geometry, start..end);
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
            if total.bad_input || total.bad_target {
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
    let threads = get_num_threads();
    let pool = if x.len() >= PARALLEL_MIN && threads > 1 {
        pool(threads)?
    } else {
        None
    };
    Ok(match pool {
        Some(pool) => pool.install(|| {
            x.par_chunks(CHUNK)
                .zip(y.par_chunks(CHUNK))
                .with_max_len(CHUNKS_PER_JOB)
                .map(run)
                .collect::<Vec<f64>>()
                .into_iter()
                .sum()
        }),
        None => x.chunks(CHUNK).zip(y.chunks(CHUNK)).map(run).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_from_the_environment() {
        let parse = |v: &str| parse_num_threads(Some(std::ffi::OsStr::new(v)));
        assert_eq!(parse_num_threads(None), Ok(None));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("  "), Ok(None));
        assert_eq!(parse("1"), Ok(Some(1)));
        assert_eq!(parse(" 8 "), Ok(Some(8)));
        assert_eq!(parse("1024"), Ok(Some(1024)));
        for bad in [
            "0",
            "1025",
            "99999",
            "-1",
            "abc",
            "2.5",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(parse(bad), Err(bad.to_owned()), "{bad}");
        }
    }

    #[test]
    fn values_print_as_python_prints_floats() {
        for (v, want) in [
            (0.0f64, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (2.0, "2.0"),
            (-0.25, "-0.25"),
            (1e-4, "0.0001"),
            (1.25e-5, "1.25e-05"),
            (123456.75, "123456.75"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (-1.5e300, "-1.5e+300"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "NaN"),
            (-f64::NAN, "NaN"),
        ] {
            assert_eq!(format_value(v), want, "{v:e}");
        }
        // float32 values: their own shortest digits, not those of the float64 of equal value.
        for (v, want) in [
            (1.1f32, "1.1"),
            (123456789.0, "123456790.0"),
            (-1e-30, "-1e-30"),
            (3.4028235e38, "3.4028235e+38"),
            (1.0000001, "1.0000001"),
        ] {
            assert_eq!(format_value(v), want, "{v:e}");
        }
    }
}
