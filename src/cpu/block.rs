//! What the executor does to a block besides the loss (whose block function also runs BCE's
//! range check): weighting and scaling the loss's outputs, and summing the values (exactly,
//! with [`ExactSum`], per slot). Each is one generic loop, compiled per
//! SIMD level by the dispatch (like the losses' block functions), generic over the float type
//! only.

use crate::accumulate::{plain_exact_sum, ExactSum, LossSums, Summand};
use crate::float::Float;
use crate::loss::weighted;
use crate::simd::{dispatch, Isa, Kernel, SimdLevel};

/// The finished sums of a slot whose every element has been added.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Closed {
    /// The sum of the (weighted) values, correctly rounded.
    pub sum: f64,
    /// The sum of the kept elements' weights (1 each without a weight), correctly rounded.
    pub weight: f64,
    /// The number of kept elements.
    pub count: u64,
}

/// The exact sums of one slot while some of its elements may still be added (by this chunk,
/// or by the chunk before or after it): finished to [`Closed`] once every element is in.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Open {
    /// The slot.
    pub slot: usize,
    /// The (weighted) values.
    values: ExactSum,
    /// The kept elements' weights.
    weights: ExactSum,
    /// The number of kept elements.
    count: u64,
    /// The number of the slot's elements walked so far, kept or not: the slot is complete
    /// when it reaches the elements per slot.
    seen: u64,
}

impl Closed {
    /// The sums of a whole slot's run (as [`Open::add`] takes it) when plain `f64` sums of
    /// its values and weights are exact (`None` otherwise): for short slots, where an
    /// [`Open`]'s fixed costs would dominate. The same sums as [`Open`]'s, finished.
    pub(crate) fn of_run<F: Summand>(
        level: SimdLevel,
        values: Option<&[F]>,
        weights: Option<Option<&[F]>>,
        kept: usize,
    ) -> Option<Closed> {
        let sum = match values {
            Some(v) => plain_exact_sum(level, v)?,
            None => 0.0,
        };
        let weight = match weights {
            Some(Some(w)) => plain_exact_sum(level, w)?,
            Some(None) => kept as f64,
            None => 0.0,
        };
        Some(Closed {
            sum,
            weight,
            count: kept as u64,
        })
    }
}

impl Open {
    /// An empty sum of slot `slot`.
    pub(crate) fn for_slot(slot: usize) -> Open {
        Open {
            slot,
            ..Open::default()
        }
    }

    /// Adds a run of `len` elements of the slot: `values` (the dropped ones already 0), the
    /// kept elements' `weights` (the dropped ones already 0; `None`: 1 each) and their
    /// number `kept`. Absent sums (`None`) are not wanted.
    pub(crate) fn add<F: Summand>(
        &mut self,
        level: SimdLevel,
        len: usize,
        values: Option<&[F]>,
        weights: Option<Option<&[F]>>,
        kept: usize,
    ) {
        if let Some(values) = values {
            self.values.add_block_at(level, values);
        }
        match weights {
            Some(Some(w)) => self.weights.add_block_at(level, w),
            // A run is at most a chunk long: its count is exact in `f64`.
            Some(None) => self.weights.add(kept as f64),
            None => {}
        }
        self.count += kept as u64;
        self.seen += len as u64;
    }

    /// Whether each of the slot's `per_slot` elements has been added.
    fn complete(&self, per_slot: usize) -> bool {
        debug_assert!(
            self.seen <= per_slot as u64,
            "slot {}: {} elements of {per_slot}",
            self.slot,
            self.seen
        );
        self.seen == per_slot as u64
    }

    /// The sums, correctly rounded: the slot's own when it is complete.
    pub(crate) fn finish(&self) -> Closed {
        Closed {
            sum: self.values.finish(),
            weight: self.weights.finish(),
            count: self.count,
        }
    }

    /// The exact sums (of a complete slot).
    pub(crate) fn into_sums(self) -> LossSums {
        LossSums {
            values: self.values,
            weights: self.weights,
            count: self.count,
        }
    }

    /// Adds the elements `other` (of the same slot) holds.
    fn merge(&mut self, other: &Open) {
        debug_assert!(self.slot == other.slot, "a merge of two slots");
        self.values.merge(&other.values);
        self.weights.merge(&other.weights);
        self.count += other.count;
        self.seen += other.seen;
    }
}

/// What a chunk reports back, and the running total of a call's chunks: the finished sums of
/// the slots complete so far, the exact states of the slots that are not (a chunk's first and
/// last, whose other elements are in the chunks beside it), and what went wrong.
///
/// Every sum is exact until it is finished, once, from every element of its slot: the result
/// depends on the values only, not on the chunks, their order or the threads.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Partial {
    /// The elements of each slot (in walk order, one run per slot).
    per_slot: usize,
    /// The slot of `closed[0]`.
    first: usize,
    /// The complete slots, from `first` on: in a chunk, the slots it adds every element of (one
    /// run of slots); in a total, every slot (those not complete yet hold zeros).
    closed: Vec<Closed>,
    /// The slots that some elements, not all, have been added to.
    open: Vec<Open>,
    /// Keep the exact sums of the complete slots (in `states`) besides finishing them.
    keep_states: bool,
    /// With `keep_states`: the complete slots' exact sums, in no order.
    states: Vec<Open>,
    /// A kept input element was outside `[0, 1]` (BCE only).
    pub bad_input: bool,
    /// A kept target element was outside `[0, 1]` (BCE only).
    pub bad_target: bool,
    /// The chunk did not fit the plan (a bug: the executor reports it as such).
    pub broken: bool,
}

impl Partial {
    /// The report of a chunk whose first element belongs to slot `first`, in a walk of
    /// `per_slot` elements per slot.
    pub(crate) fn starting_at(first: usize, per_slot: usize) -> Partial {
        Partial {
            per_slot,
            first,
            ..Partial::default()
        }
    }

    /// The running total of a call with `slots` slots of `per_slot` elements each.
    pub(crate) fn total(slots: usize, per_slot: usize) -> Partial {
        Partial {
            per_slot,
            first: 0,
            closed: vec![Closed::default(); slots],
            ..Partial::default()
        }
    }

    /// This report, keeping the exact sums of the slots it completes (see
    /// [`Partial::states`]) when `keep` is set.
    pub(crate) fn keeping_states(mut self, keep: bool) -> Partial {
        self.keep_states = keep;
        self
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

    /// Ends a chunk's sum of `sum`'s slot (the chunk adds nothing more to it): finished if the
    /// chunk added every element of the slot, kept open otherwise. `sum` is emptied.
    pub(crate) fn close(&mut self, sum: &mut Open) {
        if sum.seen == 0 {
            return; // nothing added (and nothing to reset: an Open is a few hundred bytes)
        }
        let sum = core::mem::replace(sum, Open::for_slot(sum.slot));
        if sum.complete(self.per_slot) {
            if self.push_closed(sum.slot, sum.finish()) && self.keep_states {
                self.states.push(sum);
            }
        } else {
            self.open.push(sum);
        }
    }

    /// Whether this report keeps the exact sums of the slots it completes.
    pub(crate) fn keeps_states(&self) -> bool {
        self.keep_states
    }

    /// Records the finished sums of slot `slot`, complete in this chunk; whether they fitted
    /// (a chunk's complete slots are one run: each follows the last).
    pub(crate) fn push_closed(&mut self, slot: usize, closed: Closed) -> bool {
        if self.closed.is_empty() {
            self.first = slot;
        }
        if slot == self.first + self.closed.len() {
            self.closed.push(closed);
            true
        } else {
            debug_assert!(false, "complete slots of a chunk that are not one run");
            self.broken = true;
            false
        }
    }

    /// Adds another report (of any chunk: the sums are exact, the order does not matter) to
    /// this running total; a slot that is then complete is finished.
    pub(crate) fn merge(&mut self, next: Partial) {
        self.bad_input |= next.bad_input;
        self.bad_target |= next.bad_target;
        self.broken |= next.broken;
        debug_assert!(
            next.broken || next.per_slot == self.per_slot,
            "reports of two walks"
        );
        self.states.extend(next.states);
        for (i, c) in next.closed.into_iter().enumerate() {
            match (next.first + i)
                .checked_sub(self.first)
                .and_then(|j| self.closed.get_mut(j))
            {
                Some(m) => {
                    debug_assert!(*m == Closed::default(), "a slot completed twice");
                    *m = c;
                }
                None => self.broken = true,
            }
        }
        for o in next.open {
            let at = self.open.iter().position(|m| m.slot == o.slot);
            let complete = match at {
                Some(at) => {
                    self.open[at].merge(&o);
                    self.open[at].complete(self.per_slot).then_some(at)
                }
                None => {
                    self.open.push(o);
                    None
                }
            };
            if let Some(at) = complete {
                let done = self.open.swap_remove(at);
                match done
                    .slot
                    .checked_sub(self.first)
                    .and_then(|j| self.closed.get_mut(j))
                {
                    Some(m) => *m = done.finish(),
                    None => self.broken = true,
                }
                if self.keep_states {
                    self.states.push(done);
                }
            }
        }
    }

    /// The exact sums of each of the total's `slots` slots, in slot order (kept with
    /// [`Partial::keeping_states`]; every slot must be complete: `None` otherwise, a bug).
    pub(crate) fn states(&mut self, slots: usize) -> Option<Vec<LossSums>> {
        if !self.open.is_empty() || self.states.len() != slots {
            return None;
        }
        let mut states = core::mem::take(&mut self.states);
        states.sort_unstable_by_key(|s| s.slot);
        states
            .iter()
            .enumerate()
            .all(|(i, s)| s.slot == i)
            .then(|| states.into_iter().map(Open::into_sums).collect())
    }

    /// The total's sums per slot: of the values, of the weights and the counts. Every slot
    /// must be complete (a slot that is not is a bug: `None`).
    pub(crate) fn sums(self) -> Option<Vec<Closed>> {
        debug_assert!(
            self.open.is_empty(),
            "slots left incomplete: {:?}",
            self.open
        );
        if !self.open.is_empty() || self.first != 0 {
            return None;
        }
        Some(self.closed)
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

/// The number of `true`s in `keep`: vectorised (a byte each, summed in 32-bit lanes), where a
/// plain `filter().count()` or an early-exit `all()` in the executor's baseline code takes
/// a few instructions per element.
pub(crate) fn count_kept(level: SimdLevel, keep: &[bool]) -> usize {
    dispatch(level, CountKept { keep })
}

struct CountKept<'a> {
    keep: &'a [bool],
}

impl Kernel for CountKept<'_> {
    type Output = usize;

    #[inline(always)]
    fn run<I: Isa>(self) -> usize {
        // Rows of at most 2^16 elements, so that the 32-bit lane sums cannot overflow.
        self.keep
            .chunks(1 << 16)
            .map(|row| {
                let mut n = 0u32;
                for i in 0..row.len() {
                    n += u32::from(row[I::index(i)]);
                }
                n as usize
            })
            .sum()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{available_simd_levels, simd_level};

    /// The vectorised count of kept elements is the count, at every level, for lengths
    /// across the vector widths and the 2^16 rows of its lane sums.
    #[test]
    fn count_kept_counts_at_every_level() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for n in [
            0, 1, 7, 8, 31, 33, 1000, 1024, 65_535, 65_536, 65_537, 200_003,
        ] {
            for density in [0u64, 1, 9, 10] {
                let keep: Vec<bool> = (0..n)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state % 10 < density
                    })
                    .collect();
                let want = keep.iter().filter(|&&k| k).count();
                for level in available_simd_levels() {
                    assert_eq!(count_kept(level, &keep), want, "{level}, {n} elements");
                }
            }
        }
    }

    /// The report of the chunk of `values` starting at walk index `start`, one element at a
    /// time (each a run of its own, of weight `2 v`).
    fn report(values: &[f64], start: usize, per_slot: usize) -> Partial {
        let mut partial = Partial::starting_at(start / per_slot, per_slot);
        let mut open = Open::for_slot(start / per_slot);
        for (i, v) in values.iter().enumerate() {
            let slot = (start + i) / per_slot;
            if slot != open.slot {
                partial.close(&mut open);
                open.slot = slot;
            }
            let w = [2.0 * v];
            open.add(simd_level(), 1, Some(&[*v][..]), Some(Some(&w[..])), 1);
        }
        partial.close(&mut open);
        partial
    }

    #[test]
    fn chunking_and_merge_order_do_not_matter() {
        // Sums that a float64 loop gets wrong in most orders.
        let (slots, per_slot) = (5, 7);
        let values: Vec<f64> = (0..slots * per_slot)
            .map(|i| match i % 4 {
                0 => 1e16,
                1 => 1.0 + i as f64 * 0.25,
                2 => -1e16,
                _ => 1e-3 * i as f64,
            })
            .collect();
        let exact: Vec<f64> = values
            .chunks(per_slot)
            .map(|c| {
                let mut s = ExactSum::new();
                c.iter().for_each(|&v| s.add(v));
                s.finish()
            })
            .collect();
        for chunk in [1, 3, 6, 7, 10, 35] {
            let reports: Vec<Partial> = values
                .chunks(chunk)
                .enumerate()
                .map(|(c, v)| report(v, c * chunk, per_slot))
                .collect();
            for reversed in [false, true] {
                let mut total = Partial::total(slots, per_slot);
                let mut order: Vec<&Partial> = reports.iter().collect();
                if reversed {
                    order.reverse();
                }
                for r in order {
                    total.merge(r.clone());
                }
                assert!(!total.broken);
                let closed = total.sums().unwrap();
                let sums: Vec<f64> = closed.iter().map(|c| c.sum).collect();
                assert_eq!(sums, exact, "chunks of {chunk}, reversed: {reversed}");
                let doubled: Vec<f64> = exact.iter().map(|s| 2.0 * s).collect();
                let weights: Vec<f64> = closed.iter().map(|c| c.weight).collect();
                assert_eq!(weights, doubled);
                let counts: Vec<u64> = closed.iter().map(|c| c.count).collect();
                assert_eq!(counts, vec![per_slot as u64; slots]);
            }
        }
    }
}
