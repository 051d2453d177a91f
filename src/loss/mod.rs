//! The loss family: each loss defined once, per element, for every backend.
//!
//! A loss is one file here ([`bce`], [`logits`], [`focal`]) with its WGSL twin beside it
//! (`bce.wgsl`, ...): its parameters, and one per-element function generic over the float
//! type and the SIMD level ([`Elementwise::eval`]) that yields what a call asks for (the value,
//! the derivative with respect to the input, ...), written so that what a call does not ask
//! for is compiled away ([`Want`]). [`LossKind`] is the runtime selector, from Python and Rust
//! into the generic code; [`kernel`] turns it, with what a call wants, into the block function
//! the CPU executor runs, compiled once per float type inside the crate.
//!
//! Adding a loss: its file and WGSL twin, one [`LossKind`] variant (with its arms in
//! [`LossKind`]'s methods and in [`kernel`]), the Python wrapper and stub, tests, docs.

pub(crate) mod bce;
pub(crate) mod focal;
pub(crate) mod logits;

use core::fmt;

use crate::error::Error;
use crate::float::Float;
use crate::math::Real;
use crate::simd::{dispatch, Isa, Kernel, SimdLevel};

/// A loss of the family, with its parameters: what a call computes per element.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum LossKind {
    /// Binary cross entropy on probabilities, as `torch.nn.functional.binary_cross_entropy`.
    Bce,
    /// Binary cross entropy on logits, as `torch.nn.functional.binary_cross_entropy_with_logits`
    /// (with `pos_weight`).
    BceWithLogits,
    /// Sigmoid focal loss on logits (Lin et al. 2017), as `torchvision.ops.sigmoid_focal_loss`:
    /// BCE with logits times `(1 - p_t)^gamma`, times `alpha_t` when `alpha >= 0`. Build it with
    /// [`LossKind::sigmoid_focal`], which checks the parameters.
    SigmoidFocal {
        /// The weight of the positive class, `alpha_t = alpha y + (1 - alpha)(1 - y)`; at most
        /// 1; negative turns the weighting off.
        alpha: f64,
        /// The focusing exponent: a finite number `>= 0`.
        gamma: f64,
    },
}

impl LossKind {
    /// The sigmoid focal loss with `alpha` and `gamma`, checked.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `gamma` is not a finite number `>= 0`, or `alpha` is NaN
    /// or above 1.
    pub fn sigmoid_focal(alpha: f64, gamma: f64) -> Result<LossKind, Error> {
        let loss = LossKind::SigmoidFocal { alpha, gamma };
        loss.validate()?;
        Ok(loss)
    }

    /// The name of the function that computes it, as in torch and torchvision:
    /// `binary_cross_entropy`, `binary_cross_entropy_with_logits`, `sigmoid_focal_loss`.
    pub fn name(&self) -> &'static str {
        match self {
            LossKind::Bce => "binary_cross_entropy",
            LossKind::BceWithLogits => "binary_cross_entropy_with_logits",
            LossKind::SigmoidFocal { .. } => "sigmoid_focal_loss",
        }
    }

    /// Whether `input` and `target` must lie in `[0, 1]` (BCE on probabilities).
    pub fn checks_range(&self) -> bool {
        matches!(self, LossKind::Bce)
    }

    /// Whether the loss takes a `pos_weight` (BCE with logits).
    pub fn takes_pos_weight(&self) -> bool {
        matches!(self, LossKind::BceWithLogits)
    }

    /// Checks the parameters (a [`LossKind::SigmoidFocal`] built by hand may hold any).
    ///
    /// # Errors
    /// As [`LossKind::sigmoid_focal`].
    pub fn validate(&self) -> Result<(), Error> {
        if let LossKind::SigmoidFocal { alpha, gamma } = *self {
            if !(gamma.is_finite() && gamma >= 0.0) {
                return Err(Error::InvalidParameter {
                    name: "gamma",
                    value: crate::error::format_value(gamma),
                    expected: "a finite number >= 0",
                });
            }
            if alpha.is_nan() || alpha > 1.0 {
                return Err(Error::InvalidParameter {
                    name: "alpha",
                    value: crate::error::format_value(alpha),
                    expected: "at most 1 (negative turns the weighting off)",
                });
            }
        }
        Ok(())
    }
}

/// The helpers the losses' WGSL twins share (the twin of this module's helpers).
#[cfg(feature = "gpu")]
pub(crate) const WGSL_COMMON: &str = include_str!("common.wgsl");

/// The losses' WGSL twins, in the order of [`LossKind::ordinal`].
#[cfg(feature = "gpu")]
pub(crate) const WGSL: [&str; COUNT] = [
    include_str!("bce.wgsl"),
    include_str!("logits.wgsl"),
    include_str!("focal.wgsl"),
];

/// The number of losses in the family ([`LossKind::ordinal`] is below it).
#[cfg_attr(not(any(test, feature = "gpu")), allow(dead_code))]
pub(crate) const COUNT: usize = 3;

impl LossKind {
    /// The loss's number in the family: its position in `WGSL`, and `LOSS` in the GPU
    /// kernel.
    #[cfg_attr(not(any(test, feature = "gpu")), allow(dead_code))]
    pub(crate) fn ordinal(&self) -> usize {
        match self {
            LossKind::Bce => 0,
            LossKind::BceWithLogits => 1,
            LossKind::SigmoidFocal { .. } => 2,
        }
    }

    /// The loss's number in the GPU kernel (`LOSS` in `src/gpu/kernel.wgsl`).
    #[cfg(feature = "gpu")]
    pub(crate) fn gpu_id(&self) -> u32 {
        self.ordinal() as u32
    }

    /// Every loss of the family, with parameters that exercise it (the focal loss with several
    /// `alpha` and `gamma`, `gamma = 0` and a negative `alpha` among them): what the tests run
    /// through every backend. Every loss appears (a unit test holds the list to the family).
    #[doc(hidden)]
    pub fn registry() -> Vec<LossKind> {
        vec![
            LossKind::Bce,
            LossKind::BceWithLogits,
            LossKind::SigmoidFocal {
                alpha: 0.25,
                gamma: 2.0,
            },
            LossKind::SigmoidFocal {
                alpha: -1.0,
                gamma: 0.5,
            },
            LossKind::SigmoidFocal {
                alpha: 1.0,
                gamma: 0.0,
            },
            LossKind::SigmoidFocal {
                alpha: 0.0,
                gamma: 5.0,
            },
        ]
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// What a call asks of the per-element function.

/// What the per-element function computes: flags known at compile time, so that what a call
/// does not ask for is not computed.
pub(crate) trait Want: Copy + Send + Sync + 'static {
    /// The loss.
    const VALUE: bool;
    /// Its derivative with respect to the input.
    const GRAD: bool;
    /// Its derivative with respect to the target.
    const GRAD_TARGET: bool;
    /// Its second derivative with respect to the input.
    const HESS: bool;
}

/// [`Want`] from a bit mask of [`VALUE`], [`GRAD`], [`GRAD_TARGET`], [`HESS`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wants<const MASK: u8>;

impl<const MASK: u8> Want for Wants<MASK> {
    const VALUE: bool = MASK & VALUE != 0;
    const GRAD: bool = MASK & GRAD != 0;
    const GRAD_TARGET: bool = MASK & GRAD_TARGET != 0;
    const HESS: bool = MASK & HESS != 0;
}

/// The bit of the value in a want mask.
pub(crate) const VALUE: u8 = 1;
/// The bit of the input gradient in a want mask.
pub(crate) const GRAD: u8 = 2;
/// The bit of the target gradient in a want mask.
pub(crate) const GRAD_TARGET: u8 = 4;
/// The bit of the second derivative in a want mask.
pub(crate) const HESS: u8 = 8;

/// One element's results; the fields a call did not ask for hold anything.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Derivs<F> {
    /// The loss.
    pub value: F,
    /// Its derivative with respect to the input.
    pub grad: F,
    /// Its derivative with respect to the target.
    pub grad_target: F,
    /// Its second derivative with respect to the input.
    pub hess: F,
}

/// One loss, per element: the scalar reference every vector level computes, lane by lane.
pub(crate) trait Elementwise<F: Real>: Copy + Send + Sync {
    /// Whether the loss reads a positive-class weight (else it is never passed).
    const TAKES_POS_WEIGHT: bool = false;
    /// Whether input and target must lie in `[0, 1]`: the block function checks them in the
    /// loop that computes the loss (a separate pass would cost the loads again).
    const CHECKS_RANGE: bool = false;
    /// Whether [`Plain`] products give [`Limits`]' results wherever no wanted output is NaN:
    /// true when `eval` takes its products of [`Products`] only, and a NaN product reaches
    /// every output that depends on it (no comparison or select of a computed value can drop
    /// it). The block function then runs a block with plain products first, and again with
    /// the limits only when a kept output is NaN.
    const PLAIN_FIRST: bool = false;
    /// Whether every result is a number (never NaN) for every input and target that the
    /// range check accepts: the block function then does not look for NaN results to make
    /// them the one quiet NaN (there are none: an operand the check refuses fails the call,
    /// and a dropped element's results are 0).
    const NEVER_NAN: bool = false;

    /// The unweighted results for input `x`, target `y` and positive-class weight `pw` (1 for
    /// the losses that take none), with the products of `P`.
    fn eval<I: Isa, W: Want, P: Products>(&self, x: F, y: F, pw: F) -> Derivs<F>;
}

// ---------------------------------------------------------------------------------------------
// Helpers the losses share.

/// `max(a, b)` for the kernels: `b` when `a` is NaN or `a <= b`. Branch-free (a select).
#[inline(always)]
pub(crate) fn max<F: Float>(a: F, b: F) -> F {
    if a > b {
        a
    } else {
        b
    }
}

/// `coef * v`, but 0 where one factor is 0 and the other infinite: the limit of a loss term,
/// or of a weighted loss, as the infinite factor grows without bound (IEEE arithmetic says NaN).
/// A NaN factor still gives NaN. The zero has the sign a product of finite factors would have.
#[inline(always)]
pub(crate) fn weighted<F: Float>(coef: F, v: F) -> F {
    let product = coef * v;
    // NaN only from 0 * inf here, since neither factor is NaN.
    if product.is_nan() && !coef.is_nan() && !v.is_nan() {
        F::from_bits((coef.to_bits() ^ v.to_bits()) & F::SIGN_MASK)
    } else {
        product
    }
}

/// `a * b * v`, with [`weighted`]'s rule for `a * b` times `v`, where a nonzero `a * b` that
/// underflows to 0 counts as the smallest normal number when `v` is infinite: its product with
/// `v` is infinite, as the exact one is (a true 0 still gives 0).
#[inline(always)]
pub(crate) fn weighted3<F: Float>(a: F, b: F, v: F) -> F {
    let ab = a * b;
    let underflow = ab == F::ZERO && a != F::ZERO && b != F::ZERO;
    let inf = v == F::INFINITY || v == -F::INFINITY;
    let ab = if underflow && inf {
        F::from_bits(((a.to_bits() ^ b.to_bits()) & F::SIGN_MASK) | F::MIN_POSITIVE.to_bits())
    } else {
        ab
    };
    weighted(ab, v)
}

/// How the per-element function multiplies a coefficient by a term: [`Limits`], the products
/// that keep the limits ([`weighted`], [`weighted3`]), or [`Plain`] ones, which give the same
/// result wherever theirs is not NaN, in fewer operations.
pub(crate) trait Products: Copy + Send + Sync + 'static {
    /// Whether these are the plain products.
    const PLAIN: bool;
    /// `coef * v`.
    fn weighted<F: Float>(coef: F, v: F) -> F;
    /// `a * b * v`.
    fn weighted3<F: Float>(a: F, b: F, v: F) -> F;
}

/// The products that keep the limits: [`weighted`] and [`weighted3`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits;

impl Products for Limits {
    const PLAIN: bool = false;

    #[inline(always)]
    fn weighted<F: Float>(coef: F, v: F) -> F {
        weighted(coef, v)
    }

    #[inline(always)]
    fn weighted3<F: Float>(a: F, b: F, v: F) -> F {
        weighted3(a, b, v)
    }
}

/// Plain IEEE products, in [`Limits`]' order: the same result wherever it is not NaN (a
/// product of [`weighted`] or [`weighted3`] differs from the plain one only where that is
/// `0 * inf = NaN`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plain;

impl Products for Plain {
    const PLAIN: bool = true;

    #[inline(always)]
    fn weighted<F: Float>(coef: F, v: F) -> F {
        coef * v
    }

    #[inline(always)]
    fn weighted3<F: Float>(a: F, b: F, v: F) -> F {
        a * b * v
    }
}

/// `bits(v + 0)`, unsigned: at most `bits(1)` exactly when `v` lies in `[0, 1]`. `v + 0`
/// turns -0 into +0 and leaves every other value as it is; negative values have the sign bit
/// set, NaN and values above 1 a larger exponent. The largest key over many values tells
/// whether all of them are in range, in two operations a value.
#[inline(always)]
pub(crate) fn unit_key<F: Float>(v: F) -> F::Bits {
    (v + F::ZERO).to_bits()
}

/// Whether `v` lies in `[0, 1]` (false for NaN).
#[inline(always)]
pub(crate) fn in_unit_interval<F: Float>(v: F) -> bool {
    unit_key(v) <= F::ONE.to_bits()
}

/// `exp(-|x|)`, the one exponential of the losses on logits.
#[inline(always)]
pub(crate) fn exp_neg_abs<F: Real, I: Isa>(x: F) -> F {
    let abs = F::from_bits(x.to_bits() & !F::SIGN_MASK);
    crate::math::exp_nonpos::<F, I>(-abs)
}

/// `(sigmoid(x), sigmoid(-x))` from `e = exp(-|x|)`, both without cancellation.
#[inline(always)]
pub(crate) fn sigmoids<F: Float>(x: F, e: F) -> (F, F) {
    let d = F::ONE / (F::ONE + e);
    let de = e * d;
    if x >= F::ZERO {
        (d, de)
    } else {
        (de, d)
    }
}

// ---------------------------------------------------------------------------------------------
// The block kernels: one loss over one block of contiguous elements, at one SIMD level.

/// A block's inputs and the slices its results go to (each of the block's length, or absent
/// when the call does not ask for it).
pub(crate) struct BlockIo<'a, F> {
    /// The input.
    pub x: &'a [F],
    /// The target.
    pub y: &'a [F],
    /// The positive-class weight, for the losses that take one and calls that give one.
    pub pw: Option<&'a [F]>,
    /// Where the values go.
    pub value: Option<&'a mut [F]>,
    /// Where the input gradients go.
    pub grad: Option<&'a mut [F]>,
    /// Where the target gradients go.
    pub grad_target: Option<&'a mut [F]>,
    /// Where the second derivatives go.
    pub hess: Option<&'a mut [F]>,
    /// The mask, when it drops some element of the block: a dropped element is not
    /// range-checked, and its outputs are 0 (whatever its input and target hold).
    pub keep: Option<&'a [bool]>,
    /// Label smoothing `(a, b)`: the target used is `y a + b` (a product, then a sum, each
    /// rounded), the range check sees `y` as given.
    pub smoothing: Option<(F, F)>,
    /// What the derivatives are multiplied by as they are written: those with respect to the
    /// input (first and second) by `.0`, the target gradient by `.1` (`(1, 1)`: as computed).
    /// The one product the executor's own pass would take, in this loop.
    pub scales: (F, F),
}

/// What a block function reports: whether an input and whether a target element lay outside
/// `[0, 1]` (or was NaN), for the losses that check the range (else both false).
pub(crate) type RangeFlags = (bool, bool);

/// The function that runs one loss, for one want, over a block at a SIMD level: picked once
/// per call by [`kernel`], called once per block.
pub(crate) type BlockFn<F> = fn(&Params<F>, SimdLevel, BlockIo<'_, F>) -> RangeFlags;

/// A loss's parameters in the call's float type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params<F> {
    /// Focal loss: `alpha` (negative: no weighting).
    pub alpha: F,
    /// Focal loss: `gamma`.
    pub gamma: F,
}

impl<F: Float> Params<F> {
    pub(crate) fn of(loss: &LossKind) -> Self {
        match *loss {
            LossKind::SigmoidFocal { alpha, gamma } => Params {
                alpha: F::from_f64(alpha),
                gamma: F::from_f64(gamma),
            },
            LossKind::Bce | LossKind::BceWithLogits => Params {
                alpha: F::ZERO,
                gamma: F::ZERO,
            },
        }
    }
}

/// The positive-class weight of one element: a slice, or 1 when absent (monomorphised, so
/// that an absent one costs nothing).
pub(crate) trait PosWeight<F>: Copy {
    /// The positive-class weight of element `i` of the block.
    fn at(self, i: usize) -> F;
    /// The first `n` elements' part (cut once before a loop, so that the loop's reads need no
    /// bounds checks).
    fn first(self, n: usize) -> Self;
}

impl<F: Float> PosWeight<F> for &[F] {
    #[inline(always)]
    fn at(self, i: usize) -> F {
        self[i]
    }
    #[inline(always)]
    fn first(self, n: usize) -> Self {
        &self[..n]
    }
}

/// The absent positive-class weight: 1.
#[derive(Clone, Copy)]
pub(crate) struct NoPosWeight;

impl<F: Float> PosWeight<F> for NoPosWeight {
    #[inline(always)]
    fn at(self, _i: usize) -> F {
        F::ONE
    }
    #[inline(always)]
    fn first(self, _n: usize) -> Self {
        self
    }
}

/// Which elements of a block are kept: every one (monomorphised, so that it costs nothing),
/// or those a mask keeps.
pub(crate) trait Keep: Copy {
    /// Every element is kept.
    const ALL: bool;
    /// Whether element `i` of the block is kept.
    fn at(self, i: usize) -> bool;
    /// The first `n` elements' part (cut once before a loop, so that the loop's reads need no
    /// bounds checks).
    fn first(self, n: usize) -> Self;
}

impl Keep for &[bool] {
    const ALL: bool = false;
    #[inline(always)]
    fn at(self, i: usize) -> bool {
        self[i]
    }
    #[inline(always)]
    fn first(self, n: usize) -> Self {
        &self[..n]
    }
}

/// No mask: every element is kept.
#[derive(Clone, Copy)]
pub(crate) struct KeepAll;

impl Keep for KeepAll {
    const ALL: bool = true;
    #[inline(always)]
    fn at(self, _i: usize) -> bool {
        true
    }
    #[inline(always)]
    fn first(self, _n: usize) -> Self {
        self
    }
}

/// The target a loss sees: the target as given, or label-smoothed (monomorphised, so that a
/// call without smoothing carries none of it through its loop).
pub(crate) trait Smooth<F>: Copy {
    /// The target used for the target `y` as given.
    fn target(self, y: F) -> F;
}

/// No label smoothing: the target as given.
#[derive(Clone, Copy)]
pub(crate) struct AsGiven;

impl<F: Float> Smooth<F> for AsGiven {
    #[inline(always)]
    fn target(self, y: F) -> F {
        y
    }
}

/// Label smoothing `(a, b)`: the target used is `y a + b` (a product, then a sum, each rounded).
#[derive(Clone, Copy)]
pub(crate) struct Smoothed<F>(F, F);

impl<F: Float> Smooth<F> for Smoothed<F> {
    #[inline(always)]
    fn target(self, y: F) -> F {
        y * self.0 + self.1
    }
}

/// One block of one loss, as a [`Kernel`] the SIMD dispatch compiles per level: the label
/// smoothing, the range check, the loss and the zeroing of the elements a mask drops in one
/// pass (a pass of their own would read the operands from memory without the loss's
/// arithmetic to hide it behind).
struct Block<'a, F, L, W, P, K, S> {
    loss: L,
    want: core::marker::PhantomData<W>,
    x: &'a [F],
    y: &'a [F],
    pw: P,
    keep: K,
    smooth: S,
    scales: (F, F),
    out: [&'a mut [F]; 4],
}

impl<F: Real, L: Elementwise<F>, W: Want, P: PosWeight<F>, K: Keep, S: Smooth<F>> Kernel
    for Block<'_, F, L, W, P, K, S>
{
    type Output = RangeFlags;

    #[inline(always)]
    fn run<I: Isa>(mut self) -> RangeFlags {
        let n = self.x.len();
        let [value, grad, grad_target, hess] = core::mem::take(&mut self.out);
        let mut out = [
            cut(value, n, W::VALUE),
            cut(grad, n, W::GRAD),
            cut(grad_target, n, W::GRAD_TARGET),
            cut(hess, n, W::HESS),
        ];
        if L::PLAIN_FIRST {
            let (flags, nan) = self.pass::<I, Plain>(&mut out);
            if !nan {
                return flags;
            }
        }
        self.pass::<I, Limits>(&mut out).0
    }
}

impl<F: Real, L: Elementwise<F>, W: Want, P: PosWeight<F>, K: Keep, S: Smooth<F>>
    Block<'_, F, L, W, P, K, S>
{
    /// One pass over the block (`out`: each wanted output, cut to its length), with the
    /// products of `M`: the range flags, and whether a kept element's result was NaN (or, with
    /// [`Plain`] products, infinite: a rerun costs time, never a different result). With
    /// [`Limits`], a NaN result is written as the one quiet NaN; with [`Plain`] products it is
    /// written as it is, and the block must be run again with [`Limits`].
    #[inline(always)]
    fn pass<I: Isa, M: Products>(&self, out: &mut [&mut [F]; 4]) -> (RangeFlags, bool) {
        let n = self.x.len();
        let (x, y) = (&self.x[..n], &self.y[..n]);
        let (pw, keep) = (self.pw.first(n), self.keep.first(n));
        let [value, grad, grad_target, hess] = out;
        let (sx, sy) = self.scales;
        // The range check: the largest `unit_key` of each operand (of the kept elements, the
        // target as given), folded into this loop.
        let (mut kx, mut ky) = (F::ZERO.to_bits(), F::ZERO.to_bits());
        // With plain products: the bits of `v - v` of every kept result ORed, 0 while they are
        // all finite (`v - v` is +0 for a finite `v`, NaN for a NaN or an infinity). Cheaper
        // than a flag per lane, which the vectoriser narrows and packs each step.
        let mut probe = F::ZERO.to_bits();
        for i in 0..n {
            let i = I::index(i);
            let k = K::ALL || keep.at(i);
            let (xi, yi) = (x[i], y[i]);
            if L::CHECKS_RANGE {
                let (a, b) = (unit_key(xi), unit_key(yi));
                let zero = F::ZERO.to_bits();
                let (a, b) = if k { (a, b) } else { (zero, zero) };
                kx = if a > kx { a } else { kx };
                ky = if b > ky { b } else { ky };
            }
            let yi = self.smooth.target(yi);
            let d = self.loss.eval::<I, W, M>(xi, yi, pw.at(i));
            // A NaN result is the one quiet NaN: which NaN an operation gives (the input's,
            // or the processor's default of an invalid one) depends on its operands' order,
            // which the compiler picks per compiled variant; so a value computed alone and
            // with its gradient would differ in a NaN's sign. (A loss that never gives NaN
            // skips this; the plain-products pass only notes a NaN, for the rerun.) A dropped
            // element's results (of whatever it holds) are replaced by 0.
            let mut kept = |v: F| {
                let v = if L::NEVER_NAN {
                    v
                } else if M::PLAIN {
                    #[allow(clippy::eq_op)] // `v - v`: 0, or NaN for a NaN or an infinity
                    let d = if k { v - v } else { F::ZERO };
                    probe = probe | d.to_bits();
                    v
                } else if v.is_nan() {
                    F::NAN
                } else {
                    v
                };
                if k {
                    v
                } else {
                    F::ZERO
                }
            };
            if W::VALUE {
                value[i] = kept(d.value);
            }
            if W::GRAD {
                grad[i] = kept(d.grad) * sx;
            }
            if W::GRAD_TARGET {
                grad_target[i] = kept(d.grad_target) * sy;
            }
            if W::HESS {
                hess[i] = kept(d.hess) * sx;
            }
        }
        let nan = probe != F::ZERO.to_bits();
        ((kx > F::ONE.to_bits(), ky > F::ONE.to_bits()), nan)
    }
}

/// `s[..n]` where the output is wanted, else an empty slice.
#[inline(always)]
fn cut<F>(s: &mut [F], n: usize, wanted: bool) -> &mut [F] {
    if wanted {
        &mut s[..n]
    } else {
        &mut []
    }
}

/// Runs `loss` for want `W` over one block (`io`'s slices all have `io.x`'s length; the
/// executor plans them so).
fn run_block<F: Real, L: Elementwise<F>, W: Want>(
    loss: L,
    level: SimdLevel,
    io: BlockIo<'_, F>,
) -> RangeFlags {
    let n = io.x.len();
    debug_assert!(io.y.len() == n, "target block of another length");
    let fits =
        |v: &Option<&mut [F]>, wanted: bool| !wanted || v.as_ref().is_some_and(|v| v.len() == n);
    debug_assert!(fits(&io.value, W::VALUE), "a value block of another length");
    debug_assert!(
        fits(&io.grad, W::GRAD),
        "a gradient block of another length"
    );
    debug_assert!(
        fits(&io.grad_target, W::GRAD_TARGET),
        "a target gradient block"
    );
    debug_assert!(
        fits(&io.hess, W::HESS),
        "a second derivative block of another length"
    );
    let out = [
        io.value.unwrap_or_default(),
        io.grad.unwrap_or_default(),
        io.grad_target.unwrap_or_default(),
        io.hess.unwrap_or_default(),
    ];
    let want = core::marker::PhantomData::<W>;
    let (x, y, smoothing, scales) = (io.x, io.y, io.smoothing, io.scales);
    macro_rules! go {
        ($pw:expr, $keep:expr, $smooth:expr) => {
            dispatch(
                level,
                Block {
                    loss,
                    want,
                    x,
                    y,
                    pw: $pw,
                    keep: $keep,
                    smooth: $smooth,
                    scales,
                    out,
                },
            )
        };
        ($pw:expr, $keep:expr) => {
            match smoothing {
                Some((a, b)) => go!($pw, $keep, Smoothed(a, b)),
                None => go!($pw, $keep, AsGiven),
            }
        };
    }
    let pw = io.pw.filter(|_| L::TAKES_POS_WEIGHT);
    debug_assert!(
        pw.is_none_or(|pw| pw.len() == n),
        "pos_weight block of another length"
    );
    debug_assert!(
        io.keep.is_none_or(|k| k.len() == n),
        "mask block of another length"
    );
    match (pw, io.keep) {
        (Some(pw), Some(keep)) => go!(pw, keep),
        (Some(pw), None) => go!(pw, KeepAll),
        (None, Some(keep)) => go!(NoPosWeight, keep),
        (None, None) => go!(NoPosWeight, KeepAll),
    }
}

/// The block function of `loss` for the want mask `want` (of [`VALUE`], [`GRAD`],
/// [`GRAD_TARGET`], [`HESS`]; at least one): every combination is compiled, so that what a call
/// does not ask for is not computed.
pub(crate) fn kernel<F: Real>(loss: &LossKind, want: u8) -> BlockFn<F> {
    macro_rules! by_want {
        ($make:expr; $($mask:literal)*) => {
            match want & (VALUE | GRAD | GRAD_TARGET | HESS) {
                $($mask => |p: &Params<F>, level, io| {
                    run_block::<F, _, Wants<$mask>>($make(p), level, io)
                },)*
                _ => |p: &Params<F>, level, io| {
                    run_block::<F, _, Wants<{ VALUE | GRAD | GRAD_TARGET | HESS }>>($make(p), level, io)
                },
            }
        };
    }
    match loss {
        LossKind::Bce => by_want!(|_: &Params<F>| bce::Bce; 1 2 3 4 5 6 7 8 9 10 11 12 13 14),
        LossKind::BceWithLogits => {
            by_want!(|_: &Params<F>| logits::Logits; 1 2 3 4 5 6 7 8 9 10 11 12 13 14)
        }
        LossKind::SigmoidFocal { .. } => by_want!(|p: &Params<F>| focal::Focal {
            alpha: p.alpha,
            gamma: p.gamma
        }; 1 2 3 4 5 6 7 8 9 10 11 12 13 14),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_holds_every_loss_of_the_family() {
        let mut seen = [false; COUNT];
        for loss in LossKind::registry() {
            assert!(loss.ordinal() < COUNT, "{loss}: COUNT is out of date");
            loss.validate().unwrap();
            seen[loss.ordinal()] = true;
        }
        assert!(
            seen.iter().all(|&s| s),
            "a loss is missing from the registry"
        );
    }

    #[test]
    fn focal_parameters_are_checked() {
        let bad = |alpha: f64, gamma: f64| LossKind::sigmoid_focal(alpha, gamma).unwrap_err();
        assert_eq!(
            bad(0.25, f64::NAN).to_string(),
            "gamma must be a finite number >= 0, got NaN"
        );
        assert_eq!(
            bad(0.25, -1.0).to_string(),
            "gamma must be a finite number >= 0, got -1.0"
        );
        assert_eq!(
            bad(0.25, f64::INFINITY).to_string(),
            "gamma must be a finite number >= 0, got inf"
        );
        assert_eq!(
            bad(1.5, 2.0).to_string(),
            "alpha must be at most 1 (negative turns the weighting off), got 1.5"
        );
        assert_eq!(
            bad(f64::NAN, 2.0).to_string(),
            "alpha must be at most 1 (negative turns the weighting off), got NaN"
        );
        for (alpha, gamma) in [(1.0, 0.0), (-5.0, 0.5), (0.0, 100.0)] {
            assert!(LossKind::sigmoid_focal(alpha, gamma).is_ok());
        }
    }
}
