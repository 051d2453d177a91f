//! # bcers
//!
//! Binary cross entropy, forward and backward, with torch's semantics and much faster: SIMD
//! kernels chosen at run time, rayon threads in a pool of the crate's own, float64 sums that
//! are bitwise identical for every thread count. Inputs are [`ndarray`] views of any layout
//! (strided, reversed, broadcast), read in place.
//!
//! ```
//! use bcers::{binary_cross_entropy, Reduction};
//! use ndarray::array;
//!
//! let input = array![0.4498f32, 0.9845, 0.4576, 0.3494, 0.2434];
//! let target = array![0.2345f32, 0.5565, 0.3468, 0.1444, 0.3546];
//! let loss = binary_cross_entropy(input.view(), target.view(), None, Reduction::Mean)?;
//! assert!((loss.reduced().unwrap() - 0.8746).abs() < 1e-4);
//! # Ok::<(), bcers::Error>(())
//! ```
//!
//! The functions mirror torch's:
//!
//! | torch | bcers |
//! | --- | --- |
//! | `F.binary_cross_entropy` | [`binary_cross_entropy`] |
//! | `F.binary_cross_entropy_with_logits` | [`binary_cross_entropy_with_logits`] |
//! | `.backward()` of each | [`binary_cross_entropy_backward`], [`binary_cross_entropy_with_logits_backward`] |
//! | forward and backward together | [`binary_cross_entropy_value_and_grad`], [`binary_cross_entropy_with_logits_value_and_grad`] |
//!
//! `weight` and `pos_weight` broadcast to the input's shape (trailing axes aligned) but may not
//! enlarge it. `mean` divides by the number of elements. Where bcers differs from torch on
//! purpose (infinite logits, tiny logit gradients) the README says so.
//!
//! With the `gpu` feature, `bcers::gpu` has the same functions over device-resident float32 arrays
//! (wgpu compute shaders: Vulkan, Metal, DX12 or GL).

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod float;
#[cfg(feature = "gpu")]
pub mod gpu;
mod kernels;
mod layout;
mod parallel;
#[cfg(feature = "python")]
mod python;

/// The README's Rust examples, compiled and run as doc tests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use core::fmt;
use core::str::FromStr;

use ndarray::{Array, ArrayD, ArrayView, ArrayViewD, Dimension};

pub use error::{Error, LossKind};
pub use float::Float;
pub use kernels::simd::{available_simd_levels, set_simd_level, simd_level, SimdLevel};
pub use parallel::{
    get_num_threads, num_threads_from_env, set_num_threads, stream_read, MAX_THREADS,
};

use kernels::elementwise::{Bce, Logits, LossFn};
pub(crate) use parallel::Dest;
use parallel::{execute, Interrupt, Job, Operands};

/// How the per-element losses are reduced, as torch's `reduction` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// No reduction: one loss per element, in the input's shape.
    None,
    /// The sum of the losses divided by the number of elements (not by the sum of weights).
    #[default]
    Mean,
    /// The sum of the losses.
    Sum,
}

impl Reduction {
    /// The name torch uses: `"none"`, `"mean"` or `"sum"`.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reduction {
    type Err = Error;

    /// Parses `"none"`, `"mean"` or `"sum"`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            other => Err(Error::InvalidReduction(other.to_owned())),
        }
    }
}

/// A loss: one value per element (`Reduction::None`) or one reduced value.
#[derive(Clone, Debug, PartialEq)]
pub enum Loss<T, D: Dimension> {
    /// The per-element losses, in the input's shape.
    Elementwise(Array<T, D>),
    /// The mean or sum.
    Reduced(T),
}

impl<T: Copy, D: Dimension> Loss<T, D> {
    /// The reduced value, if this is one.
    pub fn reduced(&self) -> Option<T> {
        match self {
            Loss::Reduced(v) => Some(*v),
            Loss::Elementwise(_) => None,
        }
    }

    /// The per-element losses, if this is them.
    pub fn elementwise(self) -> Option<Array<T, D>> {
        match self {
            Loss::Elementwise(a) => Some(a),
            Loss::Reduced(_) => None,
        }
    }
}

/// What the `*_value_and_grad` functions return: the loss and its gradient with respect to the
/// input (for `grad_output = 1`), shaped like the input.
pub type ValueAndGrad<T, D> = (Loss<T, D>, Array<T, D>);

/// Turns an output of the executor back into the caller's dimension type.
fn into_dim<T, D: Dimension>(a: ArrayD<T>) -> Array<T, D> {
    // The executor builds its outputs in the input's shape, which has `D`'s dimensionality.
    a.into_dimensionality::<D>()
        .expect("outputs have the input's dimensionality")
}

/// An output the executor allocated (it always does when given no buffer).
fn owned<T, D: Dimension>(a: Option<Array<T, D>>) -> Array<T, D> {
    a.expect("with no buffer of the caller's, the executor allocates the outputs")
}

/// The arguments every function shares, checked.
pub(crate) struct Call<'a, T> {
    ops: Operands<'a, T>,
    n: usize,
}

pub(crate) fn prepare<'a, T: Float, D: Dimension>(
    input: ArrayView<'a, T, D>,
    target: ArrayView<'a, T, D>,
    weight: Option<ArrayViewD<'a, T>>,
    pos_weight: Option<ArrayViewD<'a, T>>,
) -> Result<Call<'a, T>, Error> {
    if input.shape() != target.shape() {
        return Err(Error::TargetShape {
            input: input.shape().to_vec(),
            target: target.shape().to_vec(),
        });
    }
    Ok(Call {
        n: input.len(),
        ops: Operands {
            x: input.into_dyn(),
            y: target.into_dyn(),
            w: weight,
            pw: pos_weight,
            g: None,
        },
    })
}

/// The reduced value, or the elementwise array (`None` when it went into the caller's buffer).
pub(crate) type Forward<T, D> = (Option<T>, Option<Array<T, D>>);

/// The forward pass into `dest` (used for `Reduction::None`).
pub(crate) fn forward_to<T: Float, D: Dimension, L: LossFn>(
    loss: L,
    call: Call<'_, T>,
    reduction: Reduction,
    dest: Dest<'_, T>,
    interrupt: Interrupt<'_>,
) -> Result<Forward<T, D>, Error> {
    let n = call.n;
    match reduction {
        Reduction::None => {
            let out = execute(loss, &call.ops, Job::Loss, dest, interrupt)?;
            Ok((None, out.first.map(into_dim)))
        }
        Reduction::Mean => {
            let out = execute(loss, &call.ops, Job::Sum, dest, interrupt)?;
            Ok((Some(T::from_f64(out.sum / n as f64)), None))
        }
        Reduction::Sum => {
            let out = execute(loss, &call.ops, Job::Sum, dest, interrupt)?;
            Ok((Some(T::from_f64(out.sum)), None))
        }
    }
}

fn forward<T: Float, D: Dimension, L: LossFn>(
    loss: L,
    call: Call<'_, T>,
    reduction: Reduction,
) -> Result<Loss<T, D>, Error> {
    let (value, array) = forward_to(loss, call, reduction, Dest::default(), None)?;
    Ok(match value {
        Some(v) => Loss::Reduced(v),
        None => Loss::Elementwise(owned(array)),
    })
}

/// The gradient into `dest` (`None` when it went there).
pub(crate) fn backward_to<'a, T: Float, D: Dimension, L: LossFn>(
    loss: L,
    mut call: Call<'a, T>,
    grad_output: Option<ArrayViewD<'a, T>>,
    reduction: Reduction,
    dest: Dest<'_, T>,
    interrupt: Interrupt<'_>,
) -> Result<Option<Array<T, D>>, Error> {
    // `mean` folds 1/n into the factor. When grad_output/n would be subnormal, that factor
    // loses precision (or is 0); divide afterwards instead, in torch's order.
    let mut divide_after = None;
    let scale = match reduction {
        Reduction::None => {
            call.ops.g = grad_output;
            T::ONE
        }
        Reduction::Mean | Reduction::Sum => {
            let g = match grad_output {
                None => T::ONE,
                Some(g) if g.ndim() == 0 => g.iter().next().copied().unwrap_or(T::ONE),
                Some(g) => {
                    return Err(Error::GradOutputNotScalar {
                        reduction: reduction.name(),
                        shape: g.shape().to_vec(),
                    })
                }
            };
            if reduction == Reduction::Sum {
                g
            } else {
                let folded = g.to_f64() / call.n as f64;
                if g != T::ZERO && folded.abs() < T::MIN_POSITIVE.to_f64() {
                    divide_after = Some(T::from_usize(call.n));
                    g
                } else {
                    T::from_f64(folded)
                }
            }
        }
    };
    let mut dest = dest;
    let reborrowed = Dest {
        first: dest.first.as_deref_mut(),
        second: None,
    };
    let mut out = execute(loss, &call.ops, Job::Grad { scale }, reborrowed, interrupt)?;
    if let Some(n) = divide_after {
        match (out.first.as_mut(), dest.first) {
            (Some(array), _) => array.mapv_inplace(|v| v / n),
            (None, Some(buffer)) => buffer.iter_mut().for_each(|v| *v = *v / n),
            (None, None) => {}
        }
    }
    Ok(out.first.map(into_dim))
}

fn backward<'a, T: Float, D: Dimension, L: LossFn>(
    loss: L,
    call: Call<'a, T>,
    grad_output: Option<ArrayViewD<'a, T>>,
    reduction: Reduction,
) -> Result<Array<T, D>, Error> {
    backward_to(loss, call, grad_output, reduction, Dest::default(), None).map(owned)
}

/// The reduced value or the elementwise losses, and the gradient; arrays are `None` when
/// they went into the caller's buffers (`dest.first`: losses, `dest.second`: gradient).
pub(crate) type Both<T, D> = (Option<T>, Option<Array<T, D>>, Option<Array<T, D>>);

/// The one-pass loss and gradient into `dest`.
pub(crate) fn value_and_grad_to<T: Float, D: Dimension, L: LossFn>(
    loss: L,
    call: Call<'_, T>,
    reduction: Reduction,
    dest: Dest<'_, T>,
    interrupt: Interrupt<'_>,
) -> Result<Both<T, D>, Error> {
    let n = call.n;
    match reduction {
        Reduction::None => {
            let job = Job::LossGrad { scale: T::ONE };
            let out = execute(loss, &call.ops, job, dest, interrupt)?;
            Ok((None, out.first.map(into_dim), out.second.map(into_dim)))
        }
        Reduction::Mean | Reduction::Sum => {
            let (scale, divisor) = if reduction == Reduction::Mean {
                (T::from_f64(1.0 / n as f64), n as f64)
            } else {
                (T::ONE, 1.0)
            };
            // The gradient is the only array: it goes where the second output would.
            let dest = Dest {
                first: dest.second,
                second: None,
            };
            let out = execute(loss, &call.ops, Job::SumGrad { scale }, dest, interrupt)?;
            let value = T::from_f64(out.sum / divisor);
            Ok((Some(value), None, out.first.map(into_dim)))
        }
    }
}

fn value_and_grad<T: Float, D: Dimension, L: LossFn>(
    loss: L,
    call: Call<'_, T>,
    reduction: Reduction,
) -> Result<ValueAndGrad<T, D>, Error> {
    let (value, losses, grad) = value_and_grad_to(loss, call, reduction, Dest::default(), None)?;
    let loss = match value {
        Some(v) => Loss::Reduced(v),
        None => Loss::Elementwise(owned(losses)),
    };
    Ok((loss, owned(grad)))
}

/// Binary cross entropy between probabilities `input` and `target`, as
/// `torch.nn.functional.binary_cross_entropy`.
///
/// Per element: `-weight * (target * max(log(input), -100) + (1 - target) * max(log1p(-input), -100))`.
///
/// # Errors
/// - [`Error::TargetShape`] when `target`'s shape differs from `input`'s;
/// - [`Error::Broadcast`] when `weight` does not broadcast to the input's shape;
/// - [`Error::OutOfRange`] when an element of `input` or `target` is outside `[0, 1]` or NaN.
pub fn binary_cross_entropy<T: Float, D: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<Loss<T, D>, Error> {
    let call = prepare(input, target, weight, None)?;
    forward(Bce, call, reduction)
}

/// Binary cross entropy on logits, as `torch.nn.functional.binary_cross_entropy_with_logits`.
///
/// Per element: `weight * ((1 - target) * input - (1 + (pos_weight - 1) * target) * logsigmoid(input))`,
/// computed stably for any finite logit; infinite logits give the mathematical limit.
/// `target` is not range-checked (soft and out-of-range targets are accepted, as in torch).
///
/// # Errors
/// - [`Error::TargetShape`] when `target`'s shape differs from `input`'s;
/// - [`Error::Broadcast`] when `weight` or `pos_weight` does not broadcast to the input's shape.
pub fn binary_cross_entropy_with_logits<T: Float, D: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    weight: Option<ArrayViewD<'_, T>>,
    pos_weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<Loss<T, D>, Error> {
    let call = prepare(input, target, weight, pos_weight)?;
    forward(Logits, call, reduction)
}

/// The gradient of [`binary_cross_entropy`] with respect to `input`, shaped like `input`.
///
/// `grad_output` is the gradient of the loss (`None` means 1): a 0-d array for `Mean` and
/// `Sum`; for `None`, an array that broadcasts to the input's shape. Per element:
/// `grad_output * (input - target) / max((1 - input) * input, 1e-12) * weight`, divided by the
/// number of elements for `Mean`.
///
/// # Errors
/// Those of [`binary_cross_entropy`], and [`Error::GradOutputNotScalar`] or
/// [`Error::Broadcast`] for a `grad_output` of the wrong shape.
pub fn binary_cross_entropy_backward<T: Float, D: Dimension>(
    grad_output: Option<ArrayViewD<'_, T>>,
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<Array<T, D>, Error> {
    let call = prepare(input, target, weight, None)?;
    backward(Bce, call, grad_output, reduction)
}

/// The gradient of [`binary_cross_entropy_with_logits`] with respect to `input`.
///
/// Per element: `grad_output * weight * ((1 - target) * sigmoid(input) - pos_weight * target * sigmoid(-input))`
/// (torch's `(pos_weight * target + 1 - target) * sigmoid(input) - pos_weight * target`,
/// without its cancellation), divided by the number of elements for `Mean`. `grad_output` as
/// in [`binary_cross_entropy_backward`].
///
/// # Errors
/// Those of [`binary_cross_entropy_with_logits`], and [`Error::GradOutputNotScalar`] or
/// [`Error::Broadcast`] for a `grad_output` of the wrong shape.
pub fn binary_cross_entropy_with_logits_backward<T: Float, D: Dimension>(
    grad_output: Option<ArrayViewD<'_, T>>,
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    weight: Option<ArrayViewD<'_, T>>,
    pos_weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<Array<T, D>, Error> {
    let call = prepare(input, target, weight, pos_weight)?;
    backward(Logits, call, grad_output, reduction)
}

/// [`binary_cross_entropy`] and its gradient for `grad_output = 1`, in one pass over the data.
///
/// # Errors
/// Those of [`binary_cross_entropy`].
pub fn binary_cross_entropy_value_and_grad<T: Float, D: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<ValueAndGrad<T, D>, Error> {
    let call = prepare(input, target, weight, None)?;
    value_and_grad(Bce, call, reduction)
}

/// [`binary_cross_entropy_with_logits`] and its gradient for `grad_output = 1`, in one pass.
///
/// # Errors
/// Those of [`binary_cross_entropy_with_logits`].
pub fn binary_cross_entropy_with_logits_value_and_grad<T: Float, D: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    weight: Option<ArrayViewD<'_, T>>,
    pos_weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<ValueAndGrad<T, D>, Error> {
    let call = prepare(input, target, weight, pos_weight)?;
    value_and_grad(Logits, call, reduction)
}

/// Entry points for the bindings: either loss by a flag, outputs into the caller's buffers
/// where it can (see [`parallel::Dest`]), an interrupt check between batches of a long call.
/// The public functions above are these with no buffers and no check.
#[cfg(feature = "python")]
pub(crate) mod entry {
    use super::*;
    use ndarray::IxDyn;

    /// The operands of one binding call.
    pub(crate) struct Args<'a, T> {
        pub x: ArrayViewD<'a, T>,
        pub y: ArrayViewD<'a, T>,
        pub w: Option<ArrayViewD<'a, T>>,
        pub pw: Option<ArrayViewD<'a, T>>,
    }

    fn call<T: Float>(logits: bool, args: Args<'_, T>) -> Result<Call<'_, T>, Error> {
        let pw = if logits { args.pw } else { None };
        prepare(args.x, args.y, args.w, pw)
    }

    /// The loss: the reduced value, or the elementwise array if it was not written to `dest`.
    pub(crate) fn forward<'a, T: Float>(
        logits: bool,
        args: Args<'a, T>,
        reduction: Reduction,
        dest: Dest<'_, T>,
        interrupt: Interrupt<'_>,
    ) -> Result<Forward<T, IxDyn>, Error> {
        let call = call(logits, args)?;
        if logits {
            forward_to(Logits, call, reduction, dest, interrupt)
        } else {
            forward_to(Bce, call, reduction, dest, interrupt)
        }
    }

    /// The gradient, if it was not written to `dest`.
    pub(crate) fn backward<'a, T: Float>(
        logits: bool,
        grad_output: Option<ArrayViewD<'a, T>>,
        args: Args<'a, T>,
        reduction: Reduction,
        dest: Dest<'_, T>,
        interrupt: Interrupt<'_>,
    ) -> Result<Option<ArrayD<T>>, Error> {
        let call = call(logits, args)?;
        if logits {
            backward_to(Logits, call, grad_output, reduction, dest, interrupt)
        } else {
            backward_to(Bce, call, grad_output, reduction, dest, interrupt)
        }
    }

    /// The one-pass loss and gradient.
    pub(crate) fn value_and_grad<'a, T: Float>(
        logits: bool,
        args: Args<'a, T>,
        reduction: Reduction,
        dest: Dest<'_, T>,
        interrupt: Interrupt<'_>,
    ) -> Result<Both<T, IxDyn>, Error> {
        let call = call(logits, args)?;
        if logits {
            value_and_grad_to(Logits, call, reduction, dest, interrupt)
        } else {
            value_and_grad_to(Bce, call, reduction, dest, interrupt)
        }
    }
}
