//! An order-independent, exact summation accumulator: [`ExactSum`](crate::accumulate::ExactSum),
//! and the sums a reduced loss is made of: [`LossSums`](crate::accumulate::LossSums).
//!
//! # What it computes
//!
//! [`ExactSum::finish`](crate::accumulate::ExactSum::finish) returns the exact sum of every value added, rounded once to the nearest
//! `f64` (ties to even). The state holds that exact sum, so it depends only on the multiset of
//! values added: the result is bitwise identical under any permutation, chunking, thread count,
//! batch split or merge order, and at every SIMD level. It is also the best `f64` answer there is:
//! error at most half an ulp of the result, against `log2(n) u sum|x|` (`u = 2^-53`) for pairwise
//! summation and `n u sum|x|` for a loop.
//!
//! Non-finite values follow IEEE summation in a form that does not depend on the order: any
//! NaN, or both `+inf` and `-inf`, give NaN; otherwise any `+inf` gives `+inf` and any `-inf`
//! gives `-inf`. Finite values never overflow on the way (the state has room for `2^64` values of
//! `f64::MAX`): only the final rounding can give `±inf`, when the exact sum is at least
//! `2^1024 (1 - 2^-54)` in magnitude, so `MAX + MAX - MAX` is `MAX` where a loop gives `inf`. An
//! exact sum of zero is `+0.0` (also for values that are all `-0.0`). NaN payloads are not kept.
//!
//! # The algorithm
//!
//! The exact sum lives in a fixed-point integer of 39 limbs of 56 bits (two's complement, kept
//! loose between normalisations), whose lowest bit weighs `2^-1074`, the smallest subnormal's:
//! every finite `f32` and `f64` is an integer multiple of it, so every sum is exact. 39 limbs
//! reach `2^1109`, with 64 bits of headroom above `f64::MAX`.
//!
//! A block of values is added in chunks of up to 1024, each in two vectorised passes:
//!
//! 1. **Scan**: the largest and the smallest non-zero magnitude, as integer maxima and minima of
//!    the values' bits (one `and`, `max`, `sub`, `min` per element). They give `e`, with
//!    `|x| < 2^e` for all the chunk's `x`, and `b`, the lowest bit any of them has (its ulp).
//! 2. **Folds**: `K = ceil((e - b) / 50)` fixed-point windows of 50 bits, from `2^e` down,
//!    window `j` with lowest bit `2^L_j`, `L_j = max(e - 50 (j + 1), -1074)`. Per element `x`
//!    (widened to `f64`, exactly) and window `j`, with `M_j = 1.5 2^(L_j + 52)`:
//!
//!    ```text
//!    t = r + M_j              // rounds r to a multiple of 2^L_j: t = M_j + k 2^L_j, |k| < 2^50
//!    acc_j += bits(t)         // as i64 (wrapping): bits(t) = bits(M_j) + k
//!    r -= t - M_j             // both subtractions exact: the part below 2^L_j
//!    ```
//!
//!    starting from `r = x`. Each element's `k`s and its final `r = 0` are an exact split of `x`
//!    (a float addition rounds one element, so nothing depends on the other elements). The
//!    accumulators are `i64` lanes with no dependency between elements; after the chunk,
//!    `sum_j = sum(acc_j) - count bits(M_j)` (wrapping, exact since `|sum_j| < 1024 2^50`) is
//!    added into the limbs at bit `L_j`: a handful of scalar operations per window per chunk.
//!
//!    Up to 4 windows run in one pass; a chunk that needs more (a range of magnitudes wider
//!    than about `200 - 24` binades for `f32`, `200 - 53` for `f64`) writes what is left of each
//!    element to a scratch buffer and scans and folds that again, so that only windows where
//!    some value has bits are ever visited.
//!
//! A chunk after a chunk that needed one window is first tried in a single pass that scans
//! and folds at once, with one window from the last chunk's top (a bit above it when there is
//! room): when the scan shows that the window holds every bit of the chunk, its sum is taken;
//! otherwise the chunk takes the two passes above. For a stream of like values (loss values of
//! one batch), nearly every chunk takes the one pass.
//!
//! Chunks with a NaN or an infinity, or with `f64` values of `2^1020` or more (where `M_j`
//! would overflow), and values added one at a time with [`ExactSum::add`](crate::accumulate::ExactSum::add), take the scalar
//! path: each value's integer significand is added into the limbs at its exponent.
//!
//! [`ExactSum::finish`](crate::accumulate::ExactSum::finish) normalises a copy of the limbs, takes the sign and magnitude, and
//! rounds the top 53 bits to nearest even with a round bit and a sticky bit.
//!
//! # Cost
//!
//! Per element, with `K` windows: the scan (4 integer operations), one conversion for `f32`,
//! and per window one float addition and one integer addition, plus two float subtractions for
//! every window but the last. For `f32`, a single window covers a chunk whose magnitudes span up
//! to 26 binades (every bit below the largest magnitude's top bit down to 50 bits), which is the
//! usual case for loss values (a chunk of BCE losses of random predictions spans about 15);
//! two windows cover 76 binades, three 126. The 16-lane `f64` sum that this replaces costs one
//! conversion and one float addition per element. At the AVX2 and AVX-512 levels the one-pass
//! path over `f32` values is written with AVX2 intrinsics (8 keys per register beside two
//! registers of 4 `f64`; the vectoriser pairs 4 keys with 4 `f64`): about 1.7 instructions per
//! element against 2.6. See `cargo bench --bench kernels -- accumulate` for the measured ratio
//! on this machine.
//!
//! The state is 312 bytes of limbs plus a few flags; [`ExactSum::to_bytes`](crate::accumulate::ExactSum::to_bytes) writes only the
//! non-zero limbs of the magnitude (typically 8 to 40 bytes for sums of `f32` values).
//!
//! The rounding of the folds assumes the default floating-point environment (round to
//! nearest, subnormals not flushed), as the rest of the crate does.

use crate::float::{DynView, Float};
use crate::simd::{dispatch, simd_level, Isa, Kernel, SimdLevel};

/// Number of limbs of the fixed-point sum.
const LIMBS: usize = 39;
/// Bits per limb (the rest of the `i64` is headroom for loose additions).
const LIMB_BITS: u32 = 56;
/// `2^LIMB_BITS - 1`.
const LIMB_MASK: i64 = (1 << LIMB_BITS) - 1;
/// The weight of bit 0 of limb 0 is `2^BASE`: the smallest subnormal `f64`.
const BASE: i32 = -1074;
/// Additions into the limbs after which they are normalised: each adds less than `2^56` to a
/// limb, which holds up to `2^63`.
const MAX_PENDING: u32 = 64;

/// The width of a fold window, in bits.
const WINDOW: i32 = 50;
/// The most windows one pass over a chunk computes.
const MAX_FOLDS: usize = 4;
/// The most values of a chunk: `CHUNK 2^50` must stay below `2^63`.
const CHUNK: usize = 1024;
/// The largest `e` (`|x| < 2^e`) the folds take: `M_j = 1.5 2^(e - 50 + 52)` must be finite.
const MAX_FOLD_TOP: i32 = 1020;

/// The bytes that start a serialised [`ExactSum`].
const MAGIC: [u8; 4] = *b"bcxs";
/// The version of the serialised form [`ExactSum::to_bytes`] writes.
const VERSION: u8 = 1;
const FLAG_NAN: u8 = 1;
const FLAG_POS_INF: u8 = 2;
const FLAG_NEG_INF: u8 = 4;
const FLAG_NEGATIVE: u8 = 8;

/// The exact sum of `f32` and `f64` values, rounded once when read.
///
/// The state is the exact sum itself (a fixed-point integer covering every `f64`), so it is
/// the same, and [`finish`](ExactSum::finish) returns the same bits, whatever the order in
/// which values were added and states merged. See the [module documentation](self) for the
/// algorithm, its cost and the treatment of infinities and NaN.
///
/// ```
/// use bcers::accumulate::ExactSum;
///
/// let values = [1e16f64, 1.0, -1e16, 1.0];
/// let mut a = ExactSum::new();
/// a.add_f64_block(&values[..2]);
/// let mut b = ExactSum::new();
/// b.add_f64_block(&values[2..]);
/// a.merge(&b);
/// assert_eq!(a.finish(), 2.0); // a loop gives 0 or 2 depending on the order
/// let c = ExactSum::from_bytes(&a.to_bytes())?;
/// assert_eq!(c.finish(), 2.0);
/// # Ok::<(), bcers::accumulate::DecodeError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ExactSum {
    /// The finite values' sum: `sum(limbs[i] 2^(56 i + BASE))`, limbs loose (not normalised).
    limbs: [i64; LIMBS],
    /// Additions into the limbs since they were last normalised.
    pending: u32,
    /// A NaN was added.
    nan: bool,
    /// `+inf` was added.
    pos_inf: bool,
    /// `-inf` was added.
    neg_inf: bool,
    /// The windows the next chunk is first tried with (the top `2^t` of the first, and one
    /// or two of them), from the last chunk's: not part of the sum (neither compared nor
    /// serialised).
    hint: Option<(i32, usize)>,
}

impl Default for ExactSum {
    fn default() -> Self {
        ExactSum::new()
    }
}

impl PartialEq for ExactSum {
    /// The same sum and the same non-finite values seen: states that [`ExactSum::to_bytes`]
    /// writes the same.
    fn eq(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self.limbs, other.limbs);
        normalise(&mut a);
        normalise(&mut b);
        a == b
            && self.nan == other.nan
            && self.pos_inf == other.pos_inf
            && self.neg_inf == other.neg_inf
    }
}

impl Eq for ExactSum {}

/// Why [`ExactSum::from_bytes`] refused its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before the state does (or there are none).
    Truncated,
    /// The bytes do not start with the serialised state's magic bytes.
    BadMagic,
    /// A version of the format this build does not read.
    UnsupportedVersion(u8),
    /// The bytes are not the one form [`ExactSum::to_bytes`] writes for a state (unknown
    /// flags, limbs out of range or out of place, or bytes after the state).
    Malformed(&'static str),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("the exact sum's bytes are truncated"),
            DecodeError::BadMagic => f.write_str("these bytes are not an exact sum's state"),
            DecodeError::UnsupportedVersion(v) => write!(
                f,
                "an exact sum's state of version {v}, expected version {VERSION}"
            ),
            DecodeError::Malformed(why) => write!(f, "a malformed exact sum's state: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl ExactSum {
    /// An empty sum (whose [`finish`](ExactSum::finish) is `+0.0`).
    pub fn new() -> ExactSum {
        ExactSum {
            limbs: [0; LIMBS],
            pending: 0,
            nan: false,
            pos_inf: false,
            neg_inf: false,
            hint: None,
        }
    }

    /// Adds one value (the scalar path: for blocks, [`add_f32_block`](ExactSum::add_f32_block)
    /// and [`add_f64_block`](ExactSum::add_f64_block) are much faster).
    pub fn add(&mut self, x: f64) {
        self.add_scalar(x);
    }

    /// Adds every value of `values`, at the SIMD level the crate runs at
    /// ([`crate::simd_level`]).
    pub fn add_f32_block(&mut self, values: &[f32]) {
        self.add_block_at(simd_level(), values);
    }

    /// Adds every value of `values`, at the SIMD level the crate runs at
    /// ([`crate::simd_level`]).
    pub fn add_f64_block(&mut self, values: &[f64]) {
        self.add_block_at(simd_level(), values);
    }

    /// Adds every value of `values`, of either of the crate's float types.
    pub fn add_block<F: Float>(&mut self, values: &[F]) {
        let view = ndarray::ArrayView1::from(values).into_dyn();
        match F::dyn_view(view) {
            DynView::F32(v) => {
                if let Some(s) = v.as_slice_memory_order() {
                    self.add_f32_block(s);
                }
            }
            DynView::F64(v) => {
                if let Some(s) = v.as_slice_memory_order() {
                    self.add_f64_block(s);
                }
            }
        }
    }

    /// Adds the values `other` holds (exactly: the result is that of adding them all here).
    pub fn merge(&mut self, other: &ExactSum) {
        // Loose limbs added as they are: a limb after `p` additions since its normalisation
        // is below `(p + 1) 2^56` in magnitude, so the sum of two is below `(p + q + 2) 2^56
        // <= 2^63` (each has `p, q < MAX_PENDING`), and counts as `p + q + 1` additions.
        for (m, t) in self.limbs.iter_mut().zip(other.limbs) {
            *m = m.wrapping_add(t);
        }
        self.pending += other.pending + 1;
        if self.pending >= MAX_PENDING {
            self.normalise();
        }
        self.nan |= other.nan;
        self.pos_inf |= other.pos_inf;
        self.neg_inf |= other.neg_inf;
    }

    /// The sum, correctly rounded to `f64` (to nearest, ties to even); NaN, `+inf` or `-inf`
    /// for the non-finite values as the [module documentation](self) says.
    pub fn finish(&self) -> f64 {
        if self.nan || (self.pos_inf && self.neg_inf) {
            return f64::NAN;
        }
        if self.pos_inf {
            return f64::INFINITY;
        }
        if self.neg_inf {
            return f64::NEG_INFINITY;
        }
        let (negative, magnitude) = sign_magnitude(self.limbs);
        let v = round_to_f64(&magnitude);
        if negative {
            -v
        } else {
            v
        }
    }

    /// Whether nothing but zeros (or nothing) was added.
    pub fn is_zero(&self) -> bool {
        let mut limbs = self.limbs;
        normalise(&mut limbs);
        !self.nan && !self.pos_inf && !self.neg_inf && limbs.iter().all(|&l| l == 0)
    }

    /// The state as bytes, for [`from_bytes`](ExactSum::from_bytes) in another process: the
    /// magic bytes `bcxs`, a version byte (1), a flags byte (NaN, `+inf`, `-inf`, negative
    /// sum), the index of the first non-zero limb of the sum's magnitude and their number, then
    /// those limbs (56-bit, as little-endian `u64`). Equal states give equal bytes; at most 320
    /// bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (negative, magnitude) = sign_magnitude(self.limbs);
        let first = magnitude.iter().position(|&l| l != 0).unwrap_or(0);
        let end = magnitude
            .iter()
            .rposition(|&l| l != 0)
            .map_or(first, |i| i + 1);
        let mut flags = 0;
        for (on, flag) in [
            (self.nan, FLAG_NAN),
            (self.pos_inf, FLAG_POS_INF),
            (self.neg_inf, FLAG_NEG_INF),
            (negative, FLAG_NEGATIVE),
        ] {
            if on {
                flags |= flag;
            }
        }
        let mut out = Vec::with_capacity(8 + 8 * (end - first));
        out.extend_from_slice(&MAGIC);
        // `first` and `end - first` are below LIMBS (39): they fit a byte.
        out.extend_from_slice(&[VERSION, flags, first as u8, (end - first) as u8]);
        for &l in &magnitude[first..end] {
            out.extend_from_slice(&l.to_le_bytes());
        }
        out
    }

    /// The state [`to_bytes`](ExactSum::to_bytes) wrote.
    ///
    /// # Errors
    /// A [`DecodeError`] when `bytes` are not exactly a state `to_bytes` writes: truncated,
    /// another format, another version, or not in its one canonical form.
    pub fn from_bytes(bytes: &[u8]) -> Result<ExactSum, DecodeError> {
        let Some((header, rest)) = bytes.split_first_chunk::<8>() else {
            return Err(if bytes.len() >= 4 && bytes[..4] != MAGIC {
                DecodeError::BadMagic
            } else {
                DecodeError::Truncated
            });
        };
        let [m0, m1, m2, m3, version, flags, first, count] = *header;
        if [m0, m1, m2, m3] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if flags & !(FLAG_NAN | FLAG_POS_INF | FLAG_NEG_INF | FLAG_NEGATIVE) != 0 {
            return Err(DecodeError::Malformed("unknown flags"));
        }
        let (first, count) = (usize::from(first), usize::from(count));
        if first + count > LIMBS {
            return Err(DecodeError::Malformed("limbs beyond the last"));
        }
        if count == 0 && (first != 0 || flags & FLAG_NEGATIVE != 0) {
            return Err(DecodeError::Malformed("a zero sum not in its one form"));
        }
        if rest.len() < 8 * count {
            return Err(DecodeError::Truncated);
        }
        if rest.len() > 8 * count {
            return Err(DecodeError::Malformed("bytes after the state"));
        }
        let mut magnitude = [0i64; LIMBS];
        for (m, b) in magnitude[first..first + count]
            .iter_mut()
            .zip(rest.chunks_exact(8))
        {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            let v = u64::from_le_bytes(le);
            if v > LIMB_MASK as u64 {
                return Err(DecodeError::Malformed("a limb of more than 56 bits"));
            }
            *m = v as i64;
        }
        if count > 0 && (magnitude[first] == 0 || magnitude[first + count - 1] == 0) {
            return Err(DecodeError::Malformed("zero limbs at an end"));
        }
        if magnitude[LIMBS - 1] >= 1 << (LIMB_BITS - 2) {
            return Err(DecodeError::Malformed("a sum too large"));
        }
        let mut limbs = magnitude;
        if flags & FLAG_NEGATIVE != 0 {
            negate(&mut limbs);
        }
        Ok(ExactSum {
            limbs,
            pending: 0,
            nan: flags & FLAG_NAN != 0,
            pos_inf: flags & FLAG_POS_INF != 0,
            neg_inf: flags & FLAG_NEG_INF != 0,
            hint: None,
        })
    }

    /// Adds `values` with the kernels compiled for `level` (which must be supported; the
    /// dispatch falls back to the baseline otherwise).
    pub(crate) fn add_block_at<F: Summand>(&mut self, level: SimdLevel, values: &[F]) {
        for chunk in values.chunks(CHUNK) {
            self.add_chunk(level, chunk);
        }
    }

    /// Adds a chunk of at most [`CHUNK`] values.
    fn add_chunk<F: Summand>(&mut self, level: SimdLevel, x: &[F]) {
        // The scan and the windows of the last chunk, in one pass: taken when those windows
        // hold every bit of the chunk (the usual case for a stream of like values), and the
        // two passes below otherwise.
        let taken = match self.hint {
            Some((guess, 1)) => self.add_hinted::<F, 1>(level, x, guess),
            Some((guess, _)) => self.add_hinted::<F, 2>(level, x, guess),
            None => false,
        };
        if taken {
            return;
        }
        let (max_key, min_key_m1) = dispatch(level, Scan { x });
        if max_key == 0 {
            return; // only zeros
        }
        if max_key >= F::INF_KEY {
            // A NaN or an infinity: the scalar path for the whole chunk.
            for &v in x {
                self.add_scalar(v.to_f64());
            }
            return;
        }
        let top = F::top(max_key);
        if top > MAX_FOLD_TOP {
            for &v in x {
                self.add_scalar(v.to_f64());
            }
            return;
        }
        let bottom = F::ulp_exponent(min_key_m1.wrapping_add(1));
        let folds = folds_needed(top, bottom);
        self.hint = hint(top, bottom, folds);
        if folds <= MAX_FOLDS {
            self.fold(level, x, top, folds, None);
        } else {
            self.add_chunk_wide(level, x, top);
        }
    }

    /// Adds `x` in one pass of [`ScanFold`] with `K` windows from `2^guess`, if they hold
    /// every bit of its values (whether it did; nothing is added otherwise), and updates the
    /// hint for the next chunk.
    fn add_hinted<F: Summand, const K: usize>(
        &mut self,
        level: SimdLevel,
        x: &[F],
        guess: i32,
    ) -> bool {
        let magic: [f64; K] = core::array::from_fn(|j| magic(guess, j));
        let (max_key, min_key_m1, sums) = dispatch(level, ScanFold::<F, K> { x, magic });
        if max_key == 0 {
            return true; // only zeros
        }
        if max_key >= F::INF_KEY {
            return false;
        }
        let top = F::top(max_key);
        let bottom = F::ulp_exponent(min_key_m1.wrapping_add(1));
        if top > guess || folds_needed(guess, bottom) > K {
            return false;
        }
        let count = x.len() as i64;
        for (j, (&s, m)) in sums.iter().zip(magic).enumerate() {
            let k = s.wrapping_sub(count.wrapping_mul(m.to_bits() as i64));
            self.deposit(k, lsb(guess, j));
        }
        if K > 1 && folds_needed(top, bottom) < K {
            self.hint = hint(top, bottom, folds_needed(top, bottom));
        }
        true
    }

    /// Adds a chunk whose magnitudes need more than [`MAX_FOLDS`] windows: [`MAX_FOLDS`] at a
    /// time, what is left of each value going through a scratch buffer.
    #[inline(never)]
    fn add_chunk_wide<F: Summand>(&mut self, level: SimdLevel, x: &[F], top: i32) {
        let mut scratch = [[0.0f64; CHUNK]; 2];
        let [a, b] = &mut scratch;
        let n = x.len().min(CHUNK);
        self.fold(level, &x[..n], top, MAX_FOLDS, Some(&mut a[..n]));
        let (mut src, mut dst) = (a, b);
        loop {
            let (max_key, min_key_m1) = dispatch(level, Scan { x: &src[..n] });
            if max_key == 0 {
                return;
            }
            let top = f64::top(max_key);
            let bottom = f64::ulp_exponent(min_key_m1.wrapping_add(1));
            let folds = folds_needed(top, bottom);
            if folds <= MAX_FOLDS {
                self.fold(level, &src[..n], top, folds, None);
                return;
            }
            self.fold(level, &src[..n], top, MAX_FOLDS, Some(&mut dst[..n]));
            core::mem::swap(&mut src, &mut dst);
        }
    }

    /// Runs `folds` windows from `2^top` down over `x`, adds their sums into the limbs, and
    /// writes what is left of each value to `rem` if given.
    fn fold<F: Summand>(
        &mut self,
        level: SimdLevel,
        x: &[F],
        top: i32,
        folds: usize,
        rem: Option<&mut [f64]>,
    ) {
        let lsb = |j: usize| lsb(top, j);
        let magic = |j: usize| magic(top, j);
        let count = x.len() as i64;
        let mut deposit = |sums: &[i64]| {
            for (j, &s) in sums.iter().enumerate() {
                let k = s.wrapping_sub(count.wrapping_mul(magic(j).to_bits() as i64));
                self.deposit(k, lsb(j));
            }
        };
        match folds {
            1 => deposit(&dispatch(level, Fold::<F, 1>::new(x, [magic(0)], rem))),
            2 => deposit(&dispatch(
                level,
                Fold::<F, 2>::new(x, [magic(0), magic(1)], rem),
            )),
            3 => deposit(&dispatch(
                level,
                Fold::<F, 3>::new(x, [magic(0), magic(1), magic(2)], rem),
            )),
            _ => deposit(&dispatch(
                level,
                Fold::<F, 4>::new(x, [magic(0), magic(1), magic(2), magic(3)], rem),
            )),
        }
    }

    /// Adds one value exactly: its integer significand at its exponent.
    fn add_scalar(&mut self, x: f64) {
        if x.is_nan() {
            self.nan = true;
        } else if x == f64::INFINITY {
            self.pos_inf = true;
        } else if x == f64::NEG_INFINITY {
            self.neg_inf = true;
        } else if x != 0.0 {
            let bits = x.to_bits();
            let field = ((bits >> 52) & 0x7ff) as i32;
            let fraction = (bits & ((1 << 52) - 1)) as i64;
            let (significand, exponent) = if field == 0 {
                (fraction, BASE)
            } else {
                (fraction | 1 << 52, field - 1075)
            };
            let signed = if x < 0.0 { -significand } else { significand };
            self.deposit(signed, exponent);
        }
    }

    /// Adds `v 2^pos` into the limbs (`pos >= BASE`; `pos <= 971`, the exponent of the lowest
    /// bit of `f64::MAX`).
    fn deposit(&mut self, v: i64, pos: i32) {
        debug_assert!((BASE..=971).contains(&pos), "a deposit at 2^{pos}");
        let offset = (pos - BASE).max(0) as u32;
        let i = (offset / LIMB_BITS) as usize;
        let w = i128::from(v) << (offset % LIMB_BITS);
        let parts = [
            (w & i128::from(LIMB_MASK)) as i64,
            ((w >> LIMB_BITS) & i128::from(LIMB_MASK)) as i64,
            (w >> (2 * LIMB_BITS)) as i64,
        ];
        if let Some(limbs) = self.limbs.get_mut(i..i + 3) {
            for (l, p) in limbs.iter_mut().zip(parts) {
                *l = l.wrapping_add(p);
            }
        }
        self.pending += 1;
        if self.pending >= MAX_PENDING {
            self.normalise();
        }
    }

    fn normalise(&mut self) {
        normalise(&mut self.limbs);
        self.pending = 0;
    }
}

/// `2^e` for `-1074 <= e <= 1023`, exactly.
fn pow2(e: i32) -> f64 {
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074).clamp(0, 51))
    }
}

/// The exact sum of `x`, when a plain `f64` sum of it is exact (`None` otherwise, or for a NaN
/// or an infinity): one pass, for short runs (a slot of a reduction over a few elements),
/// where an [`ExactSum`]'s fixed costs would dominate. An exact sum of zero is `+0.0`, as
/// [`ExactSum::finish`] gives.
pub(crate) fn plain_exact_sum<F: Summand>(level: SimdLevel, x: &[F]) -> Option<f64> {
    let (max_key, min_key_m1, sum) = dispatch(level, ScanSum { x });
    if max_key == 0 {
        return Some(0.0);
    }
    if max_key >= F::INF_KEY {
        return None;
    }
    let top = F::top(max_key);
    let bottom = F::ulp_exponent(min_key_m1.wrapping_add(1));
    // `+ 0.0` turns a -0.0 into +0.0 and leaves every other value as it is.
    plain_sum_is_exact(top, bottom, x.len()).then_some(sum + 0.0)
}

/// Whether any sum, in any order, of `n` values that are multiples of `2^bottom` below `2^top`
/// in magnitude is exact in `f64`: every partial sum is then a multiple of `2^bottom` below
/// `n 2^top <= 2^(bottom + 53)` (a 53-bit integer times `2^bottom`, with `bottom >= -1074`:
/// representable, subnormal or not), and below `2^1024` (no overflow).
fn plain_sum_is_exact(top: i32, bottom: i32, n: usize) -> bool {
    let log2_n = n.max(1).next_power_of_two().trailing_zeros() as i32;
    top + log2_n <= 1023 && top - bottom.max(BASE) + log2_n <= 53
}

/// The windows the next chunk is first tried with, after a chunk of top `top` and bottom
/// `bottom` that needed `folds` windows: as many (one or two; none beyond), from a little
/// above its top when there is room below, so that a slightly larger value fits.
fn hint(top: i32, bottom: i32, folds: usize) -> Option<(i32, usize)> {
    let room = bottom.max(BASE) + WINDOW * folds as i32;
    (folds <= 2 && top < MAX_FOLD_TOP).then(|| ((top + 1).min(room), folds))
}

/// The exponent of the lowest bit of window `j` from `2^top` down.
fn lsb(top: i32, j: usize) -> i32 {
    (top - WINDOW * (j as i32 + 1)).max(BASE)
}

/// `M_j = 1.5 2^(L_j + 52)` of window `j` from `2^top` down (see the module documentation):
/// adding it to a value rounds the value to a multiple of the window's lowest bit.
fn magic(top: i32, j: usize) -> f64 {
    pow2(lsb(top, j) + 52) * 1.5
}

/// The windows of [`WINDOW`] bits from `2^top` down that reach bit `2^bottom` (at least 1; the
/// last window stops at `2^BASE`).
fn folds_needed(top: i32, bottom: i32) -> usize {
    let span = (top - bottom.max(BASE)).max(1);
    (span as usize).div_ceil(WINDOW as usize)
}

/// Carries every limb but the last into the next: limbs `0..LIMBS - 1` in `[0, 2^56)`, the
/// last signed.
fn normalise(limbs: &mut [i64; LIMBS]) {
    let mut carry = 0i64;
    for l in limbs.iter_mut().take(LIMBS - 1) {
        let v = l.wrapping_add(carry);
        carry = v >> LIMB_BITS;
        *l = v & LIMB_MASK;
    }
    limbs[LIMBS - 1] = limbs[LIMBS - 1].wrapping_add(carry);
}

/// Negates the number the limbs hold (normalised or loose).
fn negate(limbs: &mut [i64; LIMBS]) {
    for l in limbs.iter_mut() {
        *l = l.wrapping_neg();
    }
    normalise(limbs);
}

/// Whether the sum is negative, and its magnitude in normalised limbs (each in `[0, 2^56)`).
fn sign_magnitude(mut limbs: [i64; LIMBS]) -> (bool, [i64; LIMBS]) {
    normalise(&mut limbs);
    let negative = limbs[LIMBS - 1] < 0;
    if negative {
        negate(&mut limbs);
    }
    (negative, limbs)
}

/// Bits `[lo, lo + 64)` of the magnitude (bits past the top are 0).
fn bits_at(m: &[i64; LIMBS], lo: u32) -> u64 {
    let mut out = 0u64;
    let first = (lo / LIMB_BITS) as usize;
    for (i, &l) in m.iter().enumerate().skip(first).take(3) {
        let at = i as i64 * i64::from(LIMB_BITS) - i64::from(lo);
        let l = l as u64;
        if at >= 0 {
            if at < 64 {
                out |= l << at;
            }
        } else {
            out |= l >> (-at);
        }
    }
    out
}

/// Whether any bit below bit `lo` of the magnitude is set.
fn any_below(m: &[i64; LIMBS], lo: u32) -> bool {
    let full = (lo / LIMB_BITS) as usize;
    let part = lo % LIMB_BITS;
    m.iter().take(full).any(|&l| l != 0)
        || m.get(full)
            .is_some_and(|&l| part > 0 && (l as u64) & ((1u64 << part) - 1) != 0)
}

/// The magnitude (normalised, non-negative) times `2^BASE`, rounded to nearest even.
fn round_to_f64(m: &[i64; LIMBS]) -> f64 {
    let Some(hi) = m.iter().rposition(|&l| l != 0) else {
        return 0.0;
    };
    // The position of the top set bit, from bit 0 of limb 0.
    let msb = hi as u32 * LIMB_BITS + (63 - (m[hi] as u64).leading_zeros());
    if msb < 53 {
        // Below 2^53 units of 2^-1074: exactly an f64 (subnormal or the lowest binade).
        return bits_at(m, 0) as f64 * pow2(BASE);
    }
    // Top 53 bits, then the round bit and the sticky bits below it.
    let lo = msb - 52;
    let mut significand = bits_at(m, lo) & ((1u64 << 53) - 1);
    let round = bits_at(m, lo - 1) & 1 == 1;
    let sticky = any_below(m, lo - 1);
    let mut exponent = msb as i64 + i64::from(BASE); // of the top bit
    if round && (sticky || significand & 1 == 1) {
        significand += 1;
        if significand == 1 << 53 {
            significand = 1 << 52;
            exponent += 1;
        }
    }
    if exponent > 1023 {
        return f64::INFINITY;
    }
    // msb >= 53 puts the exponent at -1021 or above: a normal number.
    let biased = (exponent + 1023) as u64;
    f64::from_bits(biased << 52 | (significand & ((1 << 52) - 1)))
}

/// A float type [`ExactSum`] takes blocks of: `f32` or `f64`, with its magnitude as an
/// unsigned integer key (magnitudes and keys order alike).
pub(crate) trait Summand: Float {
    /// The unsigned integer of the type's width.
    type Key: Copy + Ord + Into<u64>;
    /// The key of an infinity: every NaN's and infinity's key is at least this, every finite
    /// value's below it.
    const INF_KEY: u64;
    /// The largest key.
    const MAX_KEY: Self::Key;
    /// The zero key.
    const ZERO_KEY: Self::Key;
    /// The magnitude's bits.
    fn key(self) -> Self::Key;
    /// `x` itself when the type is `f32`.
    fn as_f32(x: &[Self]) -> Option<&[f32]>;
    /// The magnitude's bits minus 1, wrapping (zero becomes the largest key).
    fn key_minus_one(self) -> Self::Key;
    /// The width in bits of the significand's fraction (below the exponent field).
    const FRACTION_BITS: u32;
    /// The exponent bias.
    const BIAS: i32;

    /// `e` with `|x| < 2^e` for the value of key `key` (finite, non-zero).
    fn top(key: u64) -> i32 {
        let field = (key >> Self::FRACTION_BITS) as i32;
        field.max(1) - Self::BIAS + 1
    }

    /// The exponent of the lowest bit a value of key `key` can have (its ulp).
    fn ulp_exponent(key: u64) -> i32 {
        let field = (key >> Self::FRACTION_BITS) as i32;
        field.max(1) - Self::BIAS - Self::FRACTION_BITS as i32
    }
}

impl Summand for f32 {
    type Key = u32;
    const INF_KEY: u64 = 0x7f80_0000;
    const MAX_KEY: u32 = u32::MAX;
    const ZERO_KEY: u32 = 0;
    const FRACTION_BITS: u32 = 23;
    const BIAS: i32 = 127;
    #[inline(always)]
    fn key(self) -> u32 {
        self.to_bits() & 0x7fff_ffff
    }
    #[inline(always)]
    fn as_f32(x: &[f32]) -> Option<&[f32]> {
        Some(x)
    }
    #[inline(always)]
    fn key_minus_one(self) -> u32 {
        self.key().wrapping_sub(1)
    }
}

impl Summand for f64 {
    type Key = u64;
    const INF_KEY: u64 = 0x7ff0_0000_0000_0000;
    const MAX_KEY: u64 = u64::MAX;
    const ZERO_KEY: u64 = 0;
    const FRACTION_BITS: u32 = 52;
    const BIAS: i32 = 1023;
    #[inline(always)]
    fn key(self) -> u64 {
        self.to_bits() & 0x7fff_ffff_ffff_ffff
    }
    #[inline(always)]
    fn as_f32(_: &[f64]) -> Option<&[f32]> {
        None
    }
    #[inline(always)]
    fn key_minus_one(self) -> u64 {
        self.key().wrapping_sub(1)
    }
}

/// The largest key of `x`, and the smallest key minus 1 (wrapping: zeros count as the largest).
struct Scan<'a, F> {
    x: &'a [F],
}

impl<F: Summand> Kernel for Scan<'_, F> {
    type Output = (u64, u64);

    #[inline(always)]
    fn run<I: Isa>(self) -> (u64, u64) {
        // Integer maximum and minimum reductions: the loop vectoriser spreads them over lanes.
        let x = self.x;
        let (mut hi, mut lo) = (F::ZERO_KEY, F::MAX_KEY);
        for i in 0..x.len() {
            let v = x[I::index(i)];
            hi = hi.max(v.key());
            lo = lo.min(v.key_minus_one());
        }
        (hi.into(), lo.into())
    }
}

/// Lanes of [`ScanSum`]'s sum and of its maxima and minima.
const SCAN_LANES: usize = 16;

/// [`Scan`]'s keys and the plain sum of `x` in `f64` (over [`SCAN_LANES`] accumulators), in
/// one pass: the sum is exact, whatever its order, when [`plain_sum_is_exact`] says so for the
/// keys found.
struct ScanSum<'a, F> {
    x: &'a [F],
}

impl<F: Summand> Kernel for ScanSum<'_, F> {
    type Output = (u64, u64, f64);

    #[inline(always)]
    fn run<I: Isa>(self) -> (u64, u64, f64) {
        // Every reduction kept in lanes (element `i` of a row of SCAN_LANES into lane `i`), so
        // that the loop vectoriser needs no reassociation of the float sum.
        let x = self.x;
        let mut hi = [F::ZERO_KEY; SCAN_LANES];
        let mut lo = [F::MAX_KEY; SCAN_LANES];
        let mut acc = [0.0f64; SCAN_LANES];
        let mut rows = x.chunks_exact(SCAN_LANES);
        for row in &mut rows {
            for j in 0..SCAN_LANES {
                let v = row[I::index(j)];
                hi[j] = hi[j].max(v.key());
                lo[j] = lo[j].min(v.key_minus_one());
                acc[j] += v.to_f64();
            }
        }
        for (j, &v) in rows.remainder().iter().enumerate() {
            hi[j] = hi[j].max(v.key());
            lo[j] = lo[j].min(v.key_minus_one());
            acc[j] += v.to_f64();
        }
        let hi = hi.into_iter().fold(F::ZERO_KEY, Ord::max);
        let lo = lo.into_iter().fold(F::MAX_KEY, Ord::min);
        (hi.into(), lo.into(), acc.into_iter().sum())
    }
}

/// [`Scan`] and [`Fold`] without a remainder, in one pass: the fold's sums are those of the
/// values' bits in the windows, valid when the keys show that the windows hold every bit.
struct ScanFold<'a, F, const K: usize> {
    x: &'a [F],
    magic: [f64; K],
}

impl<F: Summand, const K: usize> Kernel for ScanFold<'_, F, K> {
    type Output = (u64, u64, [i64; K]);

    #[inline(always)]
    fn run<I: Isa>(self) -> (u64, u64, [i64; K]) {
        let ScanFold { x, magic } = self;
        let (mut hi, mut lo) = (F::ZERO_KEY, F::MAX_KEY);
        let mut acc = [0i64; K];
        let last = if K >= 2 {
            magic[K - 2] + magic[K - 1]
        } else {
            0.0
        };
        #[cfg(target_arch = "x86_64")]
        if I::AVX2 && K <= 2 {
            if let Some(x) = F::as_f32(x) {
                // SAFETY: `I::AVX2` holds only at the AVX2 and AVX-512 levels, whose kernels
                // `dispatch` runs only after detecting AVX2 on this processor.
                let (hi, lo, acc) = unsafe { x86::scan_fold_f32(x, magic, last) };
                return (hi.into(), lo.into(), acc);
            }
        }
        for i in 0..x.len() {
            let v = x[I::index(i)];
            hi = hi.max(v.key());
            lo = lo.min(v.key_minus_one());
            split_all(v.to_f64(), &magic, last, &mut acc);
        }
        (hi.into(), lo.into(), acc)
    }
}

/// [`ScanFold`] over `f32` values with AVX2 intrinsics: the autovectoriser pairs 4 lanes of
/// magnitude keys with the 4 lanes of `f64` (the keys' registers half used); here 8 keys share
/// one register beside two of `f64`.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// [`ScanFold`](super::ScanFold) of `f32` values with `K` (1 or 2) windows: the largest
    /// key, the smallest key minus 1 (wrapping) and the windows' sums, as its generic body
    /// computes them (`last` is its [`split_all`](super::split_all)'s constant).
    #[target_feature(enable = "avx2")]
    pub(super) fn scan_fold_f32<const K: usize>(
        x: &[f32],
        magic: [f64; K],
        last: f64,
    ) -> (u32, u32, [i64; K]) {
        let mask = _mm256_set1_epi32(0x7fff_ffff);
        let one = _mm256_set1_epi32(1);
        let m0 = _mm256_set1_pd(magic[0]);
        let c = _mm256_set1_pd(last);
        let (mut hi, mut lo) = (_mm256_setzero_si256(), _mm256_set1_epi32(-1));
        let mut a0 = [_mm256_setzero_si256(); 2];
        let mut a1 = [_mm256_setzero_si256(); 2];
        let mut rows = x.chunks_exact(16);
        for r in &mut rows {
            for q in 0..2 {
                let r = &r[8 * q..8 * q + 8];
                let v = _mm256_setr_ps(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
                let key = _mm256_and_si256(_mm256_castps_si256(v), mask);
                hi = _mm256_max_epu32(hi, key);
                lo = _mm256_min_epu32(lo, _mm256_sub_epi32(key, one));
                let halves = [
                    _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                    _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
                ];
                for (h, &d) in halves.iter().enumerate() {
                    let t = _mm256_add_pd(d, m0);
                    a0[h] = _mm256_add_epi64(a0[h], _mm256_castpd_si256(t));
                    if K == 2 {
                        // split_all's last window: v + (C - t_0).
                        let t1 = _mm256_add_pd(d, _mm256_sub_pd(c, t));
                        a1[h] = _mm256_add_epi64(a1[h], _mm256_castpd_si256(t1));
                    }
                }
            }
        }
        let lanes32 = |v: __m256i| {
            [
                _mm256_extract_epi32::<0>(v),
                _mm256_extract_epi32::<1>(v),
                _mm256_extract_epi32::<2>(v),
                _mm256_extract_epi32::<3>(v),
                _mm256_extract_epi32::<4>(v),
                _mm256_extract_epi32::<5>(v),
                _mm256_extract_epi32::<6>(v),
                _mm256_extract_epi32::<7>(v),
            ]
            .map(|l| l as u32)
        };
        let sum64 = |v: [__m256i; 2]| {
            let s = _mm256_add_epi64(v[0], v[1]);
            [
                _mm256_extract_epi64::<0>(s),
                _mm256_extract_epi64::<1>(s),
                _mm256_extract_epi64::<2>(s),
                _mm256_extract_epi64::<3>(s),
            ]
            .into_iter()
            .fold(0i64, i64::wrapping_add)
        };
        let mut top = lanes32(hi).into_iter().fold(0, u32::max);
        let mut bottom = lanes32(lo).into_iter().fold(u32::MAX, u32::min);
        let mut acc = [0i64; K];
        acc[0] = sum64(a0);
        if K == 2 {
            acc[K - 1] = sum64(a1);
        }
        for &v in rows.remainder() {
            let key = v.to_bits() & 0x7fff_ffff;
            top = top.max(key);
            bottom = bottom.min(key.wrapping_sub(1));
            super::split_all(f64::from(v), &magic, last, &mut acc);
        }
        (top, bottom, acc)
    }
}

/// `K` fold windows over `x` (magic constants `magic`): per window, the sum of `bits(t)` over
/// the elements; what is left of each element written to `rem` if given (of `x`'s length).
struct Fold<'a, F, const K: usize> {
    x: &'a [F],
    magic: [f64; K],
    rem: Option<&'a mut [f64]>,
}

impl<'a, F: Summand, const K: usize> Fold<'a, F, K> {
    fn new(x: &'a [F], magic: [f64; K], rem: Option<&'a mut [f64]>) -> Self {
        Fold { x, magic, rem }
    }
}

/// Splits `v` over the `K` windows, adding into each window's sum; returns what is left.
#[inline(always)]
fn split<const K: usize>(v: f64, magic: &[f64; K], acc: &mut [i64; K]) -> f64 {
    let mut r = v;
    for (a, &m) in acc.iter_mut().zip(magic) {
        let t = r + m;
        *a = a.wrapping_add(t.to_bits() as i64);
        r -= t - m;
    }
    r
}

/// [`split`] without what is left, one operation fewer: with `r` the remainder before the
/// last two windows `i` and `K - 1` (with `L_i - L_(K-1) <= 50`), `t_i = r + M_i` and `q_i =
/// t_i - M_i`, the last window takes `r - q_i + M_(K-1) = r + (C - t_i)` where `C = M_i +
/// M_(K-1)` (`last`): `C` and `C - t_i = M_(K-1) - q_i` are exact (multiples of `2^L_i` below
/// `2^(L_i + 53)`), so that `t_(K-1)` is the one rounding of the exact remainder plus
/// `M_(K-1)`, as in [`split`].
#[inline(always)]
fn split_all<const K: usize>(v: f64, magic: &[f64; K], last: f64, acc: &mut [i64; K]) {
    let mut r = v;
    let mut prev = 0.0;
    for (j, (a, &m)) in acc.iter_mut().zip(magic).enumerate() {
        let t = if K >= 2 && j + 1 == K {
            prev + (last - r)
        } else {
            r + m
        };
        *a = a.wrapping_add(t.to_bits() as i64);
        if j + 2 == K {
            // Keep the remainder before window K - 2 and t_(K-2) for the last window.
            prev = r;
            r = t;
        } else if j + 1 < K {
            r -= t - m;
        }
    }
}

impl<F: Summand, const K: usize> Kernel for Fold<'_, F, K> {
    type Output = [i64; K];

    #[inline(always)]
    fn run<I: Isa>(self) -> [i64; K] {
        // Wrapping integer sum reductions, with element-wise float work: the loop vectoriser
        // spreads each window's sum over independent lanes.
        let Fold { x, magic, rem } = self;
        let mut acc = [0i64; K];
        match rem {
            None => {
                let last = if K >= 2 {
                    magic[K - 2] + magic[K - 1]
                } else {
                    0.0
                };
                for i in 0..x.len() {
                    split_all(x[I::index(i)].to_f64(), &magic, last, &mut acc);
                }
            }
            Some(rem) => {
                let n = x.len().min(rem.len());
                let (x, rem) = (&x[..n], &mut rem[..n]);
                for i in 0..n {
                    let i = I::index(i);
                    rem[i] = split(x[i].to_f64(), &magic, &mut acc);
                }
            }
        }
        acc
    }
}

/// The bytes that start a serialised [`LossSums`].
const SUMS_MAGIC: [u8; 4] = *b"bcls";

/// The exact sums a reduced loss is made of, for one slot of the reduction: the sum of the
/// (weighted) per-element losses, the sum of the kept elements' weights (1 each without a
/// weight) and the number of kept elements.
///
/// `mean` is `values / count`, `sum` is `values` and `weighted_mean` is `values / weights`,
/// each finished once: states of parts of the data, merged in any order, give the same bits as
/// one call over all of it.
///
/// ```
/// use bcers::accumulate::LossSums;
///
/// let mut a = LossSums::new();
/// a.values.add_f64_block(&[0.5, 0.25]);
/// a.weights.add(2.0);
/// a.count = 2;
/// let b = LossSums::from_bytes(&a.to_bytes())?;
/// a.merge(&b);
/// assert_eq!((a.values.finish(), a.weights.finish(), a.count), (1.5, 4.0, 4));
/// # Ok::<(), bcers::accumulate::DecodeError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossSums {
    /// The sum of the (weighted) losses of the kept elements.
    pub values: ExactSum,
    /// The sum of the kept elements' weights (1 each without a weight).
    pub weights: ExactSum,
    /// The number of kept elements.
    pub count: u64,
}

impl LossSums {
    /// Empty sums.
    pub fn new() -> LossSums {
        LossSums::default()
    }

    /// Adds the sums of `other`.
    pub fn merge(&mut self, other: &LossSums) {
        self.values.merge(&other.values);
        self.weights.merge(&other.weights);
        self.count = self.count.saturating_add(other.count);
    }

    /// The sums as bytes, for [`from_bytes`](LossSums::from_bytes) in another process: the
    /// magic bytes `bcls`, a version byte (1), the count (little-endian `u64`), then each
    /// [`ExactSum::to_bytes`] after its length (little-endian `u16`). Equal sums give equal bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (v, w) = (self.values.to_bytes(), self.weights.to_bytes());
        let mut out = Vec::with_capacity(15 + v.len() + w.len());
        out.extend_from_slice(&SUMS_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.count.to_le_bytes());
        for part in [v, w] {
            out.extend_from_slice(&(part.len() as u16).to_le_bytes());
            out.extend_from_slice(&part);
        }
        out
    }

    /// The sums [`to_bytes`](LossSums::to_bytes) wrote.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] for bytes that are not such sums.
    pub fn from_bytes(bytes: &[u8]) -> Result<LossSums, DecodeError> {
        let magic = bytes.get(..4).ok_or(DecodeError::Truncated)?;
        if magic != SUMS_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = *bytes.get(4).ok_or(DecodeError::Truncated)?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let count = bytes.get(5..13).ok_or(DecodeError::Truncated)?;
        let count = u64::from_le_bytes(count.try_into().map_err(|_| DecodeError::Truncated)?);
        let mut rest = &bytes[13..];
        let mut part = || -> Result<ExactSum, DecodeError> {
            let len = rest.get(..2).ok_or(DecodeError::Truncated)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            let body = rest.get(2..2 + len).ok_or(DecodeError::Truncated)?;
            rest = &rest[2 + len..];
            ExactSum::from_bytes(body)
        };
        let values = part()?;
        let weights = part()?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed("bytes after the sums"));
        }
        Ok(LossSums {
            values,
            weights,
            count,
        })
    }
}

#[cfg(test)]
#[path = "../tests/support/fsum.rs"]
mod fsum_reference;

#[cfg(test)]
mod tests {
    use super::fsum_reference::fsum;
    use super::*;
    use crate::simd::available_simd_levels;
    use proptest::prelude::*;

    /// splitmix64: a fixed stream without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        /// A random finite f32 with its exponent field uniform in `[lo, hi]` (0: subnormal).
        fn f32_exp(&mut self, lo: u32, hi: u32) -> f32 {
            let field = lo + (self.next() % u64::from(hi - lo + 1)) as u32;
            let bits = (self.next() as u32 & 0x807f_ffff) | field << 23;
            f32::from_bits(bits)
        }
        /// A random finite f64 with its exponent field uniform in `[lo, hi]` (0: subnormal).
        fn f64_exp(&mut self, lo: u64, hi: u64) -> f64 {
            let field = lo + self.next() % (hi - lo + 1);
            let bits = (self.next() & 0x800f_ffff_ffff_ffff) | field << 52;
            f64::from_bits(bits)
        }
        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i + 1));
            }
        }
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn sum_f32(v: &[f32]) -> ExactSum {
        let mut s = ExactSum::new();
        s.add_f32_block(v);
        s
    }

    fn sum_f64(v: &[f64]) -> ExactSum {
        let mut s = ExactSum::new();
        s.add_f64_block(v);
        s
    }

    /// The one-pass scan and fold (hand-written for `f32` at the AVX2 levels) gives the
    /// scalar level's keys and window sums at every level, for every length and tail, both
    /// window counts, signs, zeros, subnormals and values outside the windows.
    #[test]
    fn scan_fold_is_the_same_at_every_level() {
        let mut rng = Rng(11);
        for case in 0..600 {
            let n = if case < 80 { case } else { rng.below(1100) };
            let (lo, hi) = [(120, 132), (1, 254), (0, 3), (100, 140)][case % 4];
            let mut v: Vec<f32> = (0..n).map(|_| rng.f32_exp(lo, hi)).collect();
            for x in v.iter_mut() {
                match rng.below(10) {
                    0 => *x = -*x,
                    1 => *x = 0.0,
                    2 => *x = -0.0,
                    _ => {}
                }
            }
            let guess = [0, 5, 20, -30][rng.below(4)] + 1;
            let (m0, m1) = (magic(guess, 0), magic(guess, 1));
            let run = |level| {
                let one = ScanFold::<f32, 1> { x: &v, magic: [m0] };
                let two = ScanFold::<f32, 2> {
                    x: &v,
                    magic: [m0, m1],
                };
                (dispatch(level, one), dispatch(level, two))
            };
            let want = run(SimdLevel::Scalar);
            for level in available_simd_levels() {
                assert_eq!(run(level), want, "{level}, {n} values, case {case}");
            }
        }
    }

    /// Checks the sum of `v` against the reference at every SIMD level, one element at a time,
    /// and in one block.
    fn check<F: Summand>(v: &[F]) {
        let want = fsum(v.iter().map(|x| x.to_f64()));
        let mut one = ExactSum::new();
        for x in v {
            one.add(x.to_f64());
        }
        assert!(
            same(one.finish(), want),
            "scalar {} != {want}",
            one.finish()
        );
        for level in available_simd_levels() {
            let mut s = ExactSum::new();
            s.add_block_at(level, v);
            assert!(
                same(s.finish(), want),
                "{level}: {:e} != {want:e} ({} values)",
                s.finish(),
                v.len()
            );
            assert_eq!(s, one, "{level}: a state unlike the scalar path's");
            assert_eq!(s.to_bytes(), one.to_bytes());
        }
    }

    /// Chunks shaped like the executor's blocks, and longer, and shorter.
    const LENGTHS: [usize; 8] = [1, 7, 8, 9, 100, 1024, 1500, 5000];

    #[test]
    fn f32_over_every_magnitude() {
        let mut rng = Rng(1);
        for &n in &LENGTHS {
            for (lo, hi) in [
                (0, 254),
                (0, 10),
                (100, 140),
                (120, 130),
                (1, 254),
                (200, 254),
            ] {
                let v: Vec<f32> = (0..n).map(|_| rng.f32_exp(lo, hi)).collect();
                check(&v);
            }
        }
    }

    #[test]
    fn f64_over_every_magnitude() {
        let mut rng = Rng(2);
        for &n in &LENGTHS {
            for (lo, hi) in [
                (0, 2000),
                (0, 60),
                (900, 1100),
                (1000, 1050),
                (1, 2020),
                (1900, 2030),
                (2040, 2046),
            ] {
                let v: Vec<f64> = (0..n).map(|_| rng.f64_exp(lo, hi)).collect();
                // The reference's partials overflow past 2^1024: keep its sums finite.
                if lo >= 2040 {
                    let v: Vec<f64> = v.iter().take(4).copied().collect();
                    let mut s = sum_f64(&v);
                    let want = fsum(v.iter().copied());
                    if want.is_finite() {
                        assert!(same(s.finish(), want));
                    }
                    s.add_f64_block(&v.iter().map(|x| -x).collect::<Vec<_>>());
                    assert!(same(s.finish(), 0.0));
                } else {
                    check(&v);
                }
            }
        }
    }

    #[test]
    fn plain_sums_are_taken_only_when_exact() {
        // Runs of a few values over every width of magnitudes: a plain sum, when it is taken,
        // is the correctly rounded sum; it is taken for narrow ranges, refused for wide ones.
        let mut rng = Rng(17);
        let (mut taken, mut refused) = (0, 0);
        for &n in &[1usize, 2, 3, 10, 17, 100, 256, 1000] {
            for width in [0.0, 5.0, 10.0, 20.0, 30.0, 60.0, 200.0] {
                for _ in 0..20 {
                    let v: Vec<f64> = (0..n)
                        .map(|_| {
                            let m = (rng.unit() * width - width / 2.0).exp2();
                            if rng.unit() < 0.4 {
                                -m
                            } else {
                                m
                            }
                        })
                        .collect();
                    let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                    let want32 = fsum(v32.iter().map(|&x| f64::from(x)));
                    for level in available_simd_levels() {
                        match plain_exact_sum(level, &v32) {
                            Some(s) => {
                                assert!(same(s, want32), "{level}: {s:e} != {want32:e}");
                                taken += 1;
                            }
                            None => refused += 1,
                        }
                        if let Some(s) = plain_exact_sum(level, &v) {
                            assert!(same(s, fsum(v.iter().copied())), "{level}: f64 {s:e}");
                        }
                    }
                }
            }
        }
        assert!(taken > 0 && refused > 0, "taken {taken}, refused {refused}");
        // Zeros (negative ones too) sum to +0.0; non-finite values are refused.
        assert!(same(
            plain_exact_sum(simd_level(), &[-0.0f32, -0.0]).unwrap(),
            0.0
        ));
        assert_eq!(plain_exact_sum(simd_level(), &[1.0f32, f32::NAN]), None);
        assert_eq!(plain_exact_sum(simd_level(), &[f64::INFINITY]), None);
        // 2^52 + 1 + 0.5: exact in no f64; refused.
        assert_eq!(
            plain_exact_sum(simd_level(), &[4503599627370496.0f64, 1.0, 0.5]),
            None
        );
    }

    #[test]
    fn chunks_unlike_the_one_before_are_still_exact() {
        // After each chunk, the next is first tried in one pass with one window from the last
        // chunk's top: chunks whose values reach above it, or below its window, or that hold
        // no value, a NaN or an infinity after a hinted one, must each be taken exactly.
        let mut rng = Rng(11);
        let like = |rng: &mut Rng, lo: f64, hi: f64| -> Vec<f64> {
            (0..CHUNK)
                .map(|_| {
                    (lo + (hi - lo) * rng.unit()).exp2() * if rng.unit() < 0.3 { -1.0 } else { 1.0 }
                })
                .collect()
        };
        let shapes: [(f64, f64); 9] = [
            (0.0, 1.0),     // narrow
            (9.0, 10.0),    // above the last window
            (-40.0, 0.0),   // below it: two windows
            (-45.0, -2.0),  // two windows again, from lower down
            (-44.0, 1.0),   // two, reaching above
            (0.0, 1.0),     // narrow again
            (-30.0, -29.0), // far below the last top
            (-140.0, 5.0),  // many windows
            (3.0, 4.0),
        ];
        for start in 0..shapes.len() {
            let mut v32: Vec<f32> = Vec::new();
            let mut v64: Vec<f64> = Vec::new();
            for k in 0..shapes.len() {
                let (lo, hi) = shapes[(start + k) % shapes.len()];
                let chunk = like(&mut rng, lo, hi);
                v32.extend(chunk.iter().map(|&x| x as f32));
                v64.extend(chunk);
                if k == 2 {
                    v32.extend(core::iter::repeat_n(0.0, CHUNK));
                    v64.extend(core::iter::repeat_n(0.0, CHUNK));
                }
            }
            check(&v32);
            check(&v64);
        }
        // A non-finite chunk after a hinted one, and a finite one after it.
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut v = like(&mut rng, 0.0, 1.0);
            let mut b = like(&mut rng, 0.0, 1.0);
            b[7] = bad;
            v.extend(b);
            v.extend(like(&mut rng, 0.0, 1.0));
            for level in available_simd_levels() {
                let mut s = ExactSum::new();
                s.add_block_at(level, &v);
                let mut one = ExactSum::new();
                v.iter().for_each(|&x| one.add(x));
                assert_eq!(s, one, "{level}: {bad}");
                assert!(same(s.finish(), bad), "{level}: {} after {bad}", s.finish());
            }
        }
    }

    #[test]
    fn loss_like_values() {
        let mut rng = Rng(3);
        for &n in &LENGTHS {
            let v: Vec<f32> = (0..n).map(|_| -(1.0 - rng.unit()).ln() as f32).collect();
            check(&v);
            let v: Vec<f64> = (0..n).map(|_| -(1.0 - rng.unit()).ln()).collect();
            check(&v);
            // Gradients: signed, over many magnitudes.
            let v: Vec<f32> = (0..n)
                .map(|_| ((rng.unit() - 0.5) * 10f64.powf(rng.unit() * 30.0 - 25.0)) as f32)
                .collect();
            check(&v);
        }
    }

    #[test]
    fn cancellation() {
        let mut rng = Rng(4);
        for &n in &LENGTHS {
            let half: Vec<f64> = (0..n).map(|_| rng.f64_exp(700, 1300)).collect();
            let mut v: Vec<f64> = half.iter().flat_map(|&x| [x, -x]).collect();
            rng.shuffle(&mut v);
            let s = sum_f64(&v);
            assert!(same(s.finish(), 0.0));
            assert!(s.is_zero());
            // And a little left over, far below the rest.
            v.push(3e-300);
            v.push(-1e-310);
            rng.shuffle(&mut v);
            check(&v);
            let half: Vec<f32> = (0..n).map(|_| rng.f32_exp(0, 254)).collect();
            let mut v: Vec<f32> = half.iter().flat_map(|&x| [x, -x]).collect();
            v.push(f32::from_bits(1));
            rng.shuffle(&mut v);
            assert_eq!(sum_f32(&v).finish(), f64::from(f32::from_bits(1)));
            check(&v);
        }
        // The classic: 1e16 + 1 - 1e16 + 1.
        check(&[1e16, 1.0, -1e16, 1.0]);
        check(&[1.0f32, 1e8, -1e8, 1e-8]);
    }

    #[test]
    fn subnormals() {
        let mut rng = Rng(5);
        for &n in &LENGTHS {
            let v: Vec<f32> = (0..n).map(|_| rng.f32_exp(0, 1)).collect();
            check(&v);
            let v: Vec<f64> = (0..n).map(|_| rng.f64_exp(0, 1)).collect();
            check(&v);
        }
        let tiny = f64::from_bits(1);
        assert_eq!(sum_f64(&[tiny, tiny, tiny]).finish(), 3.0 * tiny);
        assert_eq!(sum_f64(&[tiny, -tiny]).finish().to_bits(), 0);
    }

    #[test]
    fn rounding_ties_and_overflow() {
        let ulp_half = f64::EPSILON / 2.0; // 2^-53
        let tiny = f64::from_bits(1);
        assert_eq!(sum_f64(&[1.0, ulp_half]).finish(), 1.0); // tie to even
        assert_eq!(sum_f64(&[1.0, ulp_half, tiny]).finish(), 1.0 + f64::EPSILON);
        assert_eq!(
            sum_f64(&[1.0 + f64::EPSILON, ulp_half]).finish(),
            1.0 + 2.0 * f64::EPSILON
        );
        assert_eq!(sum_f64(&[1.0, ulp_half, -tiny]).finish(), 1.0);
        let max = f64::MAX;
        assert_eq!(sum_f64(&[max, max]).finish(), f64::INFINITY);
        assert_eq!(sum_f64(&[-max, -max]).finish(), f64::NEG_INFINITY);
        assert_eq!(sum_f64(&[max, max, -max]).finish(), max);
        // Half an ulp of MAX rounds to even, up: 2^1024 overflows; less stays.
        let half_ulp = 2f64.powi(970);
        assert_eq!(sum_f64(&[max, half_ulp]).finish(), f64::INFINITY);
        assert_eq!(sum_f64(&[max, half_ulp / 2.0]).finish(), max);
        assert_eq!(sum_f64(&[max, half_ulp, -tiny]).finish(), max);
        // Many huge values, then their negation.
        let mut s = ExactSum::new();
        for _ in 0..5000 {
            s.add_f64_block(&[max; 1000]);
        }
        assert_eq!(s.finish(), f64::INFINITY);
        for _ in 0..5000 {
            s.add_f64_block(&[-max; 1000]);
        }
        s.add(1.5);
        assert_eq!(s.finish(), 1.5);
        let mut s = sum_f32(&[f32::MAX; 3000]);
        assert_eq!(s.finish(), 3000.0 * f64::from(f32::MAX));
        s.add_f32_block(&[-f32::MAX; 3000]);
        assert!(s.is_zero());
    }

    #[test]
    fn zeros_and_signs() {
        assert_eq!(ExactSum::new().finish().to_bits(), 0);
        assert_eq!(sum_f64(&[-0.0, -0.0]).finish().to_bits(), 0);
        assert_eq!(sum_f32(&[0.0; 2000]).finish().to_bits(), 0);
        assert!(sum_f32(&[-0.0; 10]).is_zero());
        assert_eq!(sum_f64(&[-3.0, 1.0]).finish(), -2.0);
        assert_eq!(sum_f32(&[-3.0, 1.0, -0.5]).finish(), -2.5);
    }

    #[test]
    fn infinities_and_nan() {
        let (inf, nan) = (f64::INFINITY, f64::NAN);
        let cases: [(&[f64], f64); 9] = [
            (&[inf, 1.0], inf),
            (&[1.0, -inf], -inf),
            (&[inf, inf, -1e30], inf),
            (&[-inf, -inf, 5.0], -inf),
            (&[inf, -inf], nan),
            (&[nan], nan),
            (&[1.0, nan, 2.0], nan),
            (&[inf, nan], nan),
            (&[f64::MAX, f64::MAX, inf], inf),
        ];
        for (v, want) in cases {
            for level in available_simd_levels() {
                let mut s = ExactSum::new();
                s.add_block_at(level, v);
                assert!(same(s.finish(), want), "{v:?}: {} != {want}", s.finish());
                let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                let mut s = ExactSum::new();
                s.add_block_at(level, &v32);
                assert!(same(s.finish(), want), "{v32:?}: {} != {want}", s.finish());
            }
            // One at a time and merged, in reverse.
            let mut s = ExactSum::new();
            for &x in v.iter().rev() {
                let mut one = ExactSum::new();
                one.add(x);
                s.merge(&ExactSum::from_bytes(&one.to_bytes()).unwrap());
            }
            assert!(same(s.finish(), want));
        }
        // A non-finite value in a long block of finite ones still counts the finite ones.
        let mut v = vec![1.0f32; 3000];
        v[1500] = f32::INFINITY;
        let mut s = sum_f32(&v);
        assert_eq!(s.finish(), inf);
        let mut t = sum_f32(&vec![1.0f32; 2999]);
        t.pos_inf = true;
        assert_eq!(s, t);
        s.add(-inf);
        assert!(s.finish().is_nan());
    }

    /// The state of `v` added in a random order, in random chunks, to random accumulators
    /// merged in a random tree (some through bytes), some values one at a time.
    fn scrambled<F: Summand>(v: &[F], rng: &mut Rng) -> ExactSum {
        let mut v = v.to_vec();
        rng.shuffle(&mut v);
        let mut states = Vec::new();
        let mut rest = &v[..];
        while !rest.is_empty() {
            let take = (1 + rng.below(3000)).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            let mut s = ExactSum::new();
            let level = available_simd_levels()[rng.below(available_simd_levels().len())];
            if rng.below(8) == 0 {
                for x in chunk {
                    s.add(x.to_f64());
                }
            } else {
                for piece in chunk.chunks(1 + rng.below(1100)) {
                    s.add_block_at(level, piece);
                }
            }
            states.push(s);
        }
        while states.len() > 1 {
            let i = rng.below(states.len());
            let a = states.swap_remove(i);
            let j = rng.below(states.len());
            let b = if rng.below(4) == 0 {
                ExactSum::from_bytes(&a.to_bytes()).unwrap()
            } else {
                a
            };
            states[j].merge(&b);
        }
        states.pop().unwrap_or_default()
    }

    #[test]
    fn order_chunking_and_merging_do_not_matter() {
        let mut rng = Rng(6);
        for trial in 0..40 {
            let n = 1 + rng.below(8000);
            let v32: Vec<f32> = (0..n)
                .map(|_| match trial % 4 {
                    0 => rng.f32_exp(0, 254),
                    1 => rng.f32_exp(110, 135),
                    2 => -(1.0 - rng.unit()).ln() as f32,
                    _ => rng.f32_exp(0, 30),
                })
                .collect();
            let want = sum_f32(&v32);
            for _ in 0..4 {
                let got = scrambled(&v32, &mut rng);
                assert_eq!(got.to_bytes(), want.to_bytes());
                assert!(same(got.finish(), want.finish()));
            }
            let v64: Vec<f64> = (0..n)
                .map(|_| match trial % 3 {
                    0 => rng.f64_exp(0, 2046),
                    1 => rng.f64_exp(900, 1200),
                    _ => rng.f64_exp(1990, 2046),
                })
                .collect();
            let want = sum_f64(&v64);
            for _ in 0..4 {
                let got = scrambled(&v64, &mut rng);
                assert_eq!(got.to_bytes(), want.to_bytes());
                assert!(same(got.finish(), want.finish()));
            }
        }
    }

    #[test]
    fn wide_chunks_take_several_passes() {
        // f32: from 2^127 to the smallest subnormal in one chunk (6 windows).
        let mut v: Vec<f32> = vec![f32::MAX, -f32::MAX, f32::from_bits(1), 1.0, -3e-30];
        v.extend((0..1000).map(|i| f32::from_bits(0x0080_0001 + i * 0x0020_0003)));
        check(&v);
        // f64: 1e300 beside 1e-300, with empty windows between.
        let mut rng = Rng(7);
        let v: Vec<f64> = (0..1024)
            .map(|i| match i % 4 {
                0 => rng.f64_exp(2020, 2020),
                1 => rng.f64_exp(1000, 1040),
                2 => rng.f64_exp(30, 31),
                _ => rng.f64_exp(0, 2000),
            })
            .collect();
        check(&v);
    }

    #[test]
    fn every_number_of_windows() {
        // Chunks spanning 0 to 300 binades: 1 to 4 windows in one pass, then the wide path.
        let mut rng = Rng(9);
        for span in (0..=300u32).step_by(7) {
            for n in [3, 1024] {
                let base = 1 + rng.below((254 - span.min(253)) as usize) as u32;
                let hi32 = (base + span).min(254);
                let v: Vec<f32> = (0..n).map(|_| rng.f32_exp(base, hi32)).collect();
                check(&v);
                let base = 1 + rng.below(1700) as u64;
                let v: Vec<f64> = (0..n)
                    .map(|_| rng.f64_exp(base, base + u64::from(span)))
                    .collect();
                check(&v);
            }
        }
        assert_eq!(folds_needed(10, 10), 1);
        assert_eq!(folds_needed(10, -40), 1);
        assert_eq!(folds_needed(10, -41), 2);
        assert_eq!(folds_needed(-1000, -1074), 2);
        assert_eq!(folds_needed(-1074, -1074), 1);
    }

    #[test]
    fn generic_block_and_merge_of_empty() {
        let v = [0.25f32, 1.5, -3.0];
        let mut a = ExactSum::new();
        a.add_block(&v);
        assert_eq!(a.finish(), -1.25);
        let mut b = ExactSum::new();
        b.add_block(&[0.25f64, 1.5, -3.0]);
        assert_eq!(a, b);
        a.merge(&ExactSum::new());
        assert_eq!(a, b);
        let mut e = ExactSum::default();
        e.merge(&a);
        assert_eq!(e, a);
    }

    /// Merges add loose limbs to loose limbs: states each one addition short of normalising,
    /// whose additions fill their limbs to the top, merged in a chain (the merged state's
    /// additions pile up) and in a tree, keep the exact sum.
    #[test]
    fn merges_of_loose_states_stay_exact() {
        let mut rng = Rng(12);
        // (2^53 - 1) 2^e with e - BASE = 3 (mod 56): a significand shifted to fill a limb.
        let full = |k: i32| ((1u64 << 53) - 1) as f64 * pow2(49 + 56 * k);
        let mut values = Vec::new();
        let states: Vec<ExactSum> = (0..300)
            .map(|i| {
                let mut s = ExactSum::new();
                for j in 0..MAX_PENDING - 1 {
                    let v = match (i + j) % 5 {
                        4 => -full(rng.below(3) as i32 - 1),
                        3 => rng.f64_exp(900, 1100),
                        _ => full(rng.below(3) as i32 - 1),
                    };
                    s.add(v);
                    values.push(v);
                }
                assert_eq!(s.pending, MAX_PENDING - 1);
                s
            })
            .collect();
        let want = fsum(values.iter().copied());
        let mut chain = ExactSum::new();
        for s in &states {
            chain.merge(s);
        }
        assert!(same(chain.finish(), want), "{} {want}", chain.finish());
        let mut level = states.clone();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| {
                    let mut a = pair[0].clone();
                    if let Some(b) = pair.get(1) {
                        a.merge(b);
                    }
                    a
                })
                .collect();
        }
        assert_eq!(level[0].to_bytes(), chain.to_bytes());
        let mut one = ExactSum::new();
        values.iter().for_each(|&v| one.add(v));
        assert_eq!(one, chain);
    }

    #[test]
    fn bytes_round_trip_and_size() {
        let mut rng = Rng(8);
        for n in [0, 1, 10, 5000] {
            let v: Vec<f64> = (0..n).map(|_| rng.f64_exp(0, 2046)).collect();
            let s = sum_f64(&v);
            let bytes = s.to_bytes();
            assert!(bytes.len() <= 8 + 8 * LIMBS);
            let t = ExactSum::from_bytes(&bytes).unwrap();
            assert_eq!(t, s);
            assert_eq!(t.to_bytes(), bytes);
            assert!(same(t.finish(), s.finish()));
        }
        assert_eq!(ExactSum::new().to_bytes(), b"bcxs\x01\x00\x00\x00");
        let losses: Vec<f32> = (0..100_000)
            .map(|_| -(1.0 - rng.unit()).ln() as f32)
            .collect();
        assert!(sum_f32(&losses).to_bytes().len() <= 8 + 8 * 3);
        let neg = sum_f64(&[-1.0]);
        let back = ExactSum::from_bytes(&neg.to_bytes()).unwrap();
        assert_eq!(back.finish(), -1.0);
        let mut flags = sum_f64(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 2.0]);
        flags = ExactSum::from_bytes(&flags.to_bytes()).unwrap();
        assert!(flags.nan && flags.pos_inf && flags.neg_inf);
    }

    #[test]
    fn bad_bytes_are_errors() {
        let good = sum_f64(&[1.0, 1e300, -3e-300]).to_bytes();
        assert_eq!(ExactSum::from_bytes(&[]), Err(DecodeError::Truncated));
        assert_eq!(ExactSum::from_bytes(b"bcx"), Err(DecodeError::Truncated));
        assert_eq!(ExactSum::from_bytes(b"nope"), Err(DecodeError::BadMagic));
        assert_eq!(
            ExactSum::from_bytes(&good[..good.len() - 1]),
            Err(DecodeError::Truncated)
        );
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(ExactSum::from_bytes(&b), Err(DecodeError::BadMagic));
        let mut b = good.clone();
        b[4] = 2;
        assert_eq!(
            ExactSum::from_bytes(&b),
            Err(DecodeError::UnsupportedVersion(2))
        );
        let malformed =
            |b: &[u8]| matches!(ExactSum::from_bytes(b), Err(DecodeError::Malformed(_)));
        let mut b = good.clone();
        b[5] |= 0x10; // unknown flag
        assert!(malformed(&b));
        let mut b = good.clone();
        b.push(0); // trailing byte
        assert!(malformed(&b));
        let mut b = good.clone();
        b[6] = 38; // past the last limb
        assert!(malformed(&b));
        let mut b = good.clone();
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // a limb of 64 bits
        assert!(malformed(&b));
        let mut b = good.clone();
        b[8..16].copy_from_slice(&0u64.to_le_bytes()); // a zero limb at the start
        assert!(malformed(&b));
        assert!(malformed(b"bcxs\x01\x08\x00\x00")); // -0
        assert!(malformed(b"bcxs\x01\x00\x03\x00")); // 0 not at limb 0
        for e in [
            DecodeError::Truncated,
            DecodeError::BadMagic,
            DecodeError::UnsupportedVersion(9),
            DecodeError::Malformed("x"),
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    proptest! {
        #[test]
        fn any_finite_f64_values(bits in proptest::collection::vec(any::<u64>(), 0..2100)) {
            // Exponent fields up to 2040 keep the reference's partials finite.
            let v: Vec<f64> = bits
                .iter()
                .map(|&b| {
                    let field = ((b >> 52) & 0x7ff) % 2041;
                    f64::from_bits((b & 0x800f_ffff_ffff_ffff) | field << 52)
                })
                .collect();
            check(&v);
        }

        #[test]
        fn any_f32_values(bits in proptest::collection::vec(any::<u32>(), 0..2100)) {
            let v: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            let want = if v.iter().any(|x| x.is_nan()) {
                f64::NAN
            } else {
                let pos = v.contains(&f32::INFINITY);
                let neg = v.contains(&f32::NEG_INFINITY);
                match (pos, neg) {
                    (true, true) => f64::NAN,
                    (true, false) => f64::INFINITY,
                    (false, true) => f64::NEG_INFINITY,
                    _ => fsum(v.iter().map(|&x| f64::from(x))),
                }
            };
            for level in available_simd_levels() {
                let mut s = ExactSum::new();
                s.add_block_at(level, &v);
                prop_assert!(same(s.finish(), want), "{} != {}", s.finish(), want);
            }
        }

        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(s) = ExactSum::from_bytes(&bytes) {
                prop_assert_eq!(s.to_bytes(), bytes);
                let _ = s.finish();
            }
        }

        #[test]
        fn mutated_states_decode_without_panicking(
            n in 0usize..300,
            at in any::<usize>(),
            byte in any::<u8>(),
            cut in any::<usize>(),
        ) {
            let v: Vec<f64> = (0..n).map(|i| (i as f64 - 100.5) * 1e10f64.powi(i as i32 % 60 - 30)).collect();
            let mut bytes = sum_f64(&v).to_bytes();
            let i = at % bytes.len();
            bytes[i] = byte;
            bytes.truncate(bytes.len() - cut % 3);
            if let Ok(s) = ExactSum::from_bytes(&bytes) {
                let mut t = s.clone();
                t.merge(&s);
                let _ = t.finish();
                prop_assert_eq!(s.to_bytes(), bytes);
            }
        }
    }
}
