//! # bcers
//!
//! Binary cross entropy, forward and backward, with torch's semantics and much faster, and the
//! losses of its family (sigmoid focal loss): SIMD kernels chosen at run time, rayon threads in
//! a pool of the crate's own, exact sums rounded once, bitwise identical for every thread
//! count, layout and order of the elements.
//! Inputs are [`ndarray`] views of any layout (strided, reversed, broadcast), read in place.
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
//! | `torchvision.ops.sigmoid_focal_loss` | [`sigmoid_focal_loss`], [`sigmoid_focal_loss_backward`], [`sigmoid_focal_loss_value_and_grad`] |
//!
//! Each of them is a [`Request`]: a loss ([`LossKind`]), its operands and reduction, and what
//! to compute. Build one directly for the rest:
//!
//! ```
//! use bcers::{LossKind, Reduction, Request};
//! use ndarray::array;
//!
//! let logits = array![[0.5f64, -2.0], [3.0, 0.0]];
//! let labels = array![[1.0f64, 0.0], [1.0, 1.0]];
//! let focal = LossKind::sigmoid_focal(0.25, 2.0)?;
//! let (loss, grad) = Request::new(focal, logits.view(), labels.view())
//!     .weight(array![1.0, 2.0].view()) // broadcasts along the last axis
//!     .reduction(Reduction::Sum)
//!     .value_and_grad()?;
//! assert!(loss.reduced().unwrap() > 0.0 && grad.shape() == [2, 2]);
//! # Ok::<(), bcers::Error>(())
//! ```
//!
//! Beyond torch, a request takes a `mask` (elements where it is false count for nothing and are
//! not range-checked), `label_smoothing`, [`Reduction::WeightedMean`], an `axis` list (with
//! `keepdims`) to reduce over some axes only, and computes the derivative with respect to the
//! target and the second derivative beside the loss, in one pass:
//!
//! ```
//! use bcers::{LossKind, Outputs, Reduction, Request};
//! use ndarray::array;
//!
//! let x = array![[0.9f32, 0.2, 0.6], [0.3, 0.8, 0.5]];
//! let y = array![[1.0f32, 0.0, 255.0], [0.0, 1.0, 1.0]]; // 255: no label
//! let keep = y.mapv(|v| v != 255.0);
//! let request = Request::new(LossKind::Bce, x.view(), y.view())
//!     .mask(keep.view())
//!     .reduction(Reduction::Mean)
//!     .axis(&[1]); // one mean per row, over its kept elements
//! let per_row = request.forward()?.axes().unwrap();
//! assert_eq!(per_row.shape(), [2]);
//! let wanted = Outputs { value: false, grad: true, grad_target: false, hess: true };
//! let d = request.derivatives(wanted, None)?;
//! assert_eq!(d.hess.unwrap()[[0, 2]], 0.0); // the masked element
//! assert!(d.value.is_none());
//! # Ok::<(), bcers::Error>(())
//! ```
//!
//! `weight` and `pos_weight` broadcast to the input's shape (trailing axes aligned) but may not
//! enlarge it. `mean` divides by the number of elements. Where bcers differs from torch on
//! purpose (infinite logits, tiny logit gradients) the README says so.
//!
//! Inside: a loss is defined once, per element, in `src/loss/` (with its WGSL twin beside it);
//! [`Request`] describes a call once for every backend; the CPU executor (`src/cpu/`) and the
//! GPU path (`src/gpu/`) run that description.
//!
//! With the `gpu` feature, `bcers::gpu` has the same functions over device-resident float32 arrays
//! (wgpu compute shaders: Vulkan, Metal, DX12 or GL).

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

/// Exact, order-independent summation: [`ExactSum`](accumulate::ExactSum).
pub mod accumulate;
mod cpu;
mod engine;
mod error;
mod float;
#[cfg(feature = "gpu")]
pub mod gpu;
mod loss;
mod math;
#[cfg(feature = "python")]
mod python;
mod request;
mod simd;

/// The README's Rust examples, compiled and run as doc tests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use ndarray::{Array, ArrayD, ArrayView, ArrayViewD, Dimension};

pub use cpu::pool::{get_num_threads, num_threads_from_env, set_num_threads, MAX_THREADS};
pub use error::Error;
pub use float::Float;
pub use loss::LossKind;
pub use request::Reduction;
pub use simd::{available_simd_levels, set_simd_level, simd_level, SimdLevel};

use engine::{dyn_view, run_dyn, sums_dyn, DynOperands, DynReduced, DynResults};
use request::Spec;

/// A loss: one value per element (`Reduction::None`), the reduced value, or the values
/// reduced over some axes.
#[derive(Clone, Debug, PartialEq)]
pub enum Loss<T, D: Dimension> {
    /// The per-element losses, in the input's shape.
    Elementwise(Array<T, D>),
    /// The mean, sum or weighted mean over every element.
    Reduced(T),
    /// The mean, sum or weighted mean over some axes ([`Request::axis`]), or over every axis
    /// with [`Request::keepdims`]: NumPy's shape for such a reduction.
    Axes(ArrayD<T>),
}

impl<T: Copy, D: Dimension> Loss<T, D> {
    /// The reduced value, if this is one.
    pub fn reduced(&self) -> Option<T> {
        match self {
            Loss::Reduced(v) => Some(*v),
            Loss::Elementwise(_) | Loss::Axes(_) => None,
        }
    }

    /// The per-element losses, if this is them.
    pub fn elementwise(self) -> Option<Array<T, D>> {
        match self {
            Loss::Elementwise(a) => Some(a),
            Loss::Reduced(_) | Loss::Axes(_) => None,
        }
    }

    /// The values reduced over some axes, if this is them.
    pub fn axes(self) -> Option<ArrayD<T>> {
        match self {
            Loss::Axes(a) => Some(a),
            Loss::Reduced(_) | Loss::Elementwise(_) => None,
        }
    }
}

/// What the `*_value_and_grad` functions return: the loss and its gradient with respect to the
/// input (for `grad_output = 1`), shaped like the input.
pub type ValueAndGrad<T, D> = (Loss<T, D>, Array<T, D>);

pub use request::Outputs;

/// What [`Request::derivatives`] returns: the outputs asked for, `None` for the others. Every
/// derivative is of the loss as the request reduces it (weight, mask and the reduction's
/// scaling applied), times `grad_output`, and shaped like the input.
#[derive(Clone, Debug, PartialEq)]
pub struct Derivatives<T, D: Dimension> {
    /// The loss.
    pub value: Option<Loss<T, D>>,
    /// Its derivative with respect to the input.
    pub grad: Option<Array<T, D>>,
    /// Its derivative with respect to the target.
    pub grad_target: Option<Array<T, D>>,
    /// Its second derivative with respect to the input, elementwise (the diagonal of the
    /// Hessian; the focal loss's can be negative).
    pub hess: Option<Array<T, D>>,
}

/// Buffers of the caller's for the elementwise outputs of [`Request::derivatives_into`]: each
/// `None` (the call allocates, as [`Request::derivatives`] does) or a slice of the input's
/// element count, which the call writes in C order of the input's shape. A loop over batches of
/// one shape that gives the same buffers each time saves the fresh memory of every call (its
/// pages are faulted in and zeroed by the kernel on first touch: for large outputs more time
/// than computing them).
#[derive(Debug, Default)]
pub struct OutputBuffers<'o, T> {
    /// The per-element losses (only with [`Reduction::None`]).
    pub value: Option<&'o mut [T]>,
    /// The derivative with respect to the input.
    pub grad: Option<&'o mut [T]>,
    /// The derivative with respect to the target.
    pub grad_target: Option<&'o mut [T]>,
    /// The second derivative with respect to the input.
    pub hess: Option<&'o mut [T]>,
}

impl<'o, T: Float> OutputBuffers<'o, T> {
    /// The names of the outputs, in the order of [`OutputBuffers::slots`].
    const NAMES: [&'static str; 4] = ["value", "grad", "grad_target", "hess"];

    /// The buffers in order: value, gradient, target gradient, second derivative.
    fn slots(self) -> [Option<&'o mut [T]>; 4] {
        [self.value, self.grad, self.grad_target, self.hess]
    }

    /// The buffers as the executor's element types, borrowed.
    fn dyn_buffers(&mut self) -> [Option<float::DynBuffer<'_>>; 4] {
        [
            self.value.as_deref_mut().map(T::dyn_buffer),
            self.grad.as_deref_mut().map(T::dyn_buffer),
            self.grad_target.as_deref_mut().map(T::dyn_buffer),
            self.hess.as_deref_mut().map(T::dyn_buffer),
        ]
    }

    /// [`Error::OutputBuffer`] for a buffer the call cannot take: for an output it does not
    /// ask for, for the value when it is reduced, or of another length than `len`.
    fn check(&self, outputs: Outputs, elementwise: bool, len: usize) -> Result<(), Error> {
        let wanted = [
            outputs.value,
            outputs.grad,
            outputs.grad_target,
            outputs.hess,
        ];
        let lens = [&self.value, &self.grad, &self.grad_target, &self.hess]
            .map(|b| b.as_ref().map(|b| b.len()));
        for (k, (given, want)) in lens.into_iter().zip(wanted).enumerate() {
            let Some(given) = given else { continue };
            let output = Self::NAMES[k];
            let reason = if !want {
                format!("is given, but the call does not ask for {output}")
            } else if k == 0 && !elementwise {
                "is given, but the value is reduced: buffers take elementwise outputs".to_string()
            } else if given != len {
                format!("has {given} elements; the input has {len}")
            } else {
                continue;
            };
            return Err(Error::OutputBuffer { output, reason });
        }
        Ok(())
    }
}

/// One call: a loss with its parameters, its operands and its reduction; then
/// [`forward`](Request::forward), [`backward`](Request::backward),
/// [`value_and_grad`](Request::value_and_grad) or [`derivatives`](Request::derivatives)
/// compute it (each call of them is one pass over the data; two when a derivative of a masked
/// or weighted mean needs its denominator first).
///
/// `weight`, `pos_weight` and `mask` take views of any dimension that broadcast to the input's
/// shape (trailing axes aligned) without enlarging it; `pos_weight` only for
/// [`LossKind::BceWithLogits`]. Nothing is computed or checked until a computing method is
/// called, and those return every bad argument as an [`Error`]: no input makes them panic.
#[derive(Clone, Debug)]
pub struct Request<'a, T, D: Dimension> {
    loss: LossKind,
    input: ArrayView<'a, T, D>,
    target: ArrayView<'a, T, D>,
    weight: Option<ArrayViewD<'a, T>>,
    pos_weight: Option<ArrayViewD<'a, T>>,
    mask: Option<ArrayViewD<'a, bool>>,
    reduction: Reduction,
    label_smoothing: f64,
    axis: Option<Vec<isize>>,
    keepdims: bool,
}

impl<'a, T: Float, D: Dimension> Request<'a, T, D> {
    /// A call of `loss` on `input` against `target` (of the input's shape), reduced by its
    /// mean, with no weights.
    pub fn new(loss: LossKind, input: ArrayView<'a, T, D>, target: ArrayView<'a, T, D>) -> Self {
        Request {
            loss,
            input,
            target,
            weight: None,
            pos_weight: None,
            mask: None,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
            axis: None,
            keepdims: false,
        }
    }

    /// Each element's loss multiplied by `weight`, which broadcasts to the input's shape.
    pub fn weight<E: Dimension>(mut self, weight: ArrayView<'a, T, E>) -> Self {
        self.weight = Some(weight.into_dyn());
        self
    }

    /// The weight of the positive class (BCE with logits), which broadcasts to the input's
    /// shape: a `(C,)` array applies along the last axis.
    pub fn pos_weight<E: Dimension>(mut self, pos_weight: ArrayView<'a, T, E>) -> Self {
        self.pos_weight = Some(pos_weight.into_dyn());
        self
    }

    /// Which elements count: where `mask` (which broadcasts to the input's shape) is `false`,
    /// the loss and every derivative are 0, the input and target are not range-checked, and
    /// `Mean` does not count the element.
    pub fn mask<E: Dimension>(mut self, mask: ArrayView<'a, bool, E>) -> Self {
        self.mask = Some(mask.into_dyn());
        self
    }

    /// How the per-element losses are reduced (default: [`Reduction::Mean`]).
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Label smoothing in `[0, 1]`: the target used is `target (1 - s) + s / 2` (Keras's and
    /// torch's two-class definition). BCE's range check applies to the target as given.
    pub fn label_smoothing(mut self, s: f64) -> Self {
        self.label_smoothing = s;
        self
    }

    /// Reduces over these axes only (NumPy's rules: negative from the end, each at most once);
    /// the loss is then [`Loss::Axes`]. Not with [`Reduction::None`].
    pub fn axis(mut self, axis: &[isize]) -> Self {
        self.axis = Some(axis.to_vec());
        self
    }

    /// A reduction keeps its axes, of length 1 (NumPy's `keepdims`).
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.keepdims = keepdims;
        self
    }

    fn weight_dyn(mut self, weight: Option<ArrayViewD<'a, T>>) -> Self {
        self.weight = weight;
        self
    }

    fn pos_weight_dyn(mut self, pos_weight: Option<ArrayViewD<'a, T>>) -> Self {
        self.pos_weight = pos_weight;
        self
    }

    fn run(
        &self,
        outputs: Outputs,
        grad_output: Option<ArrayViewD<'_, T>>,
    ) -> Result<Derivatives<T, D>, Error> {
        self.run_into(outputs, grad_output, OutputBuffers::default())
    }

    /// [`Request::run`], with the caller's buffers: an output with a buffer is written there
    /// (in C order of the input's shape) and is `None` in the result.
    fn run_into(
        &self,
        outputs: Outputs,
        grad_output: Option<ArrayViewD<'_, T>>,
        buffers: OutputBuffers<'_, T>,
    ) -> Result<Derivatives<T, D>, Error> {
        let mut buffers = buffers;
        let spec = Spec {
            loss: self.loss,
            reduction: self.reduction,
            label_smoothing: self.label_smoothing,
            axis: self.axis.clone(),
            keepdims: self.keepdims,
            outputs,
        };
        fn view<'b, T: Float>(v: &'b Option<ArrayViewD<'_, T>>) -> Option<float::DynView<'b>> {
            v.as_ref().map(|v| dyn_view(v.view()))
        }
        let DynResults { reduced, arrays } = run_dyn(
            &spec,
            DynOperands {
                x: dyn_view(self.input.view().into_dyn()),
                y: dyn_view(self.target.view().into_dyn()),
                w: view(&self.weight),
                pw: view(&self.pos_weight),
                g: grad_output.map(dyn_view),
                mask: self.mask.as_ref().map(|m| m.view()),
            },
            buffers.dyn_buffers(),
        )?;
        // An output the executor did not write into the caller's buffer (its walk was not in
        // C order) comes back as an array: copied there, in C order.
        let mut arrays = arrays;
        for (k, buffer) in buffers.slots().into_iter().enumerate() {
            let (Some(buffer), Some(slot)) = (buffer, arrays.get_mut(k)) else {
                continue;
            };
            if let Some(array) = slot.take() {
                let array =
                    T::from_dyn(array).ok_or(Error::Internal("an output of another type"))?;
                if array.len() != buffer.len() {
                    return Err(Error::Internal(
                        "an output of another length than its buffer",
                    ));
                }
                for (b, v) in buffer.iter_mut().zip(array.iter()) {
                    *b = *v;
                }
            }
        }
        let [value, grad, grad_target, hess] = arrays.map(|a| a.map(typed::<T, D>));
        let value = match (reduced, value) {
            (Some(DynReduced::Scalar(v)), _) => Some(Loss::Reduced(T::from_f64(v))),
            (Some(DynReduced::Array(a)), _) => Some(Loss::Axes(
                T::from_dyn(a).ok_or(Error::Internal("an output of another float type"))?,
            )),
            (None, Some(a)) => Some(Loss::Elementwise(a?)),
            (None, None) => None,
        };
        Ok(Derivatives {
            value,
            grad: grad.transpose()?,
            grad_target: grad_target.transpose()?,
            hess: hess.transpose()?,
        })
    }

    /// The loss: one value per element (`Reduction::None`), the reduced value, or the values
    /// reduced over [`axis`](Request::axis).
    ///
    /// # Errors
    /// - [`Error::TargetShape`] when `target`'s shape differs from `input`'s;
    /// - [`Error::Broadcast`] when `weight`, `pos_weight` or `mask` does not broadcast to the
    ///   input's shape;
    /// - [`Error::OutOfRange`] (BCE on probabilities) when a kept element of `input` or
    ///   `target` is outside `[0, 1]` or NaN;
    /// - [`Error::InvalidParameter`] for a focal loss's `alpha` or `gamma`, or a label
    ///   smoothing, out of their domain;
    /// - [`Error::AxisOutOfBounds`], [`Error::DuplicateAxis`] or
    ///   [`Error::AxisWithoutReduction`] for bad axes;
    /// - [`Error::Unsupported`] for a `pos_weight` of a loss that takes none;
    /// - [`Error::OutOfMemory`] when the output cannot be allocated.
    pub fn forward(&self) -> Result<Loss<T, D>, Error> {
        self.run(
            Outputs {
                value: true,
                ..Outputs::default()
            },
            None,
        )?
        .value
        .ok_or(Error::Internal("a forward with no value"))
    }

    /// The gradient of the loss with respect to `input`, shaped like it. `grad_output` is the
    /// gradient flowing into the loss (`None` means 1): a 0-d array for a full reduction, an
    /// array of the reduced loss's shape for a reduction over axes; for `None`, an array that
    /// broadcasts to the input's shape.
    ///
    /// # Errors
    /// Those of [`Request::forward`], and [`Error::GradOutputNotScalar`],
    /// [`Error::GradOutputShape`] or [`Error::Broadcast`] for a `grad_output` of the wrong
    /// shape.
    pub fn backward(&self, grad_output: Option<ArrayViewD<'_, T>>) -> Result<Array<T, D>, Error> {
        let outputs = Outputs {
            grad: true,
            ..Outputs::default()
        };
        self.run(outputs, grad_output)?
            .grad
            .ok_or(Error::Internal("a backward with no gradient"))
    }

    /// The loss and its gradient for `grad_output = 1`, in one pass over the data.
    ///
    /// # Errors
    /// Those of [`Request::forward`].
    pub fn value_and_grad(&self) -> Result<ValueAndGrad<T, D>, Error> {
        let outputs = Outputs {
            value: true,
            grad: true,
            ..Outputs::default()
        };
        let d = self.run(outputs, None)?;
        match (d.value, d.grad) {
            (Some(v), Some(g)) => Ok((v, g)),
            _ => Err(Error::Internal("a value_and_grad without its outputs")),
        }
    }

    /// The outputs asked for in `outputs` (the loss; its derivatives with respect to the
    /// input, to the target, and its second derivative with respect to the input), all from
    /// one pass over the data; `grad_output` as in [`Request::backward`].
    ///
    /// # Errors
    /// Those of [`Request::backward`].
    pub fn derivatives(
        &self,
        outputs: Outputs,
        grad_output: Option<ArrayViewD<'_, T>>,
    ) -> Result<Derivatives<T, D>, Error> {
        self.derivatives_into(outputs, grad_output, OutputBuffers::default())
    }

    /// [`Request::derivatives`], writing the elementwise outputs that `buffers` has a buffer
    /// for into it (in C order of the input's shape) instead of allocating them; those are
    /// `None` in the result. The same values, bit for bit.
    ///
    /// # Errors
    /// Those of [`Request::backward`], and [`Error::OutputBuffer`] for a buffer of an output
    /// not asked for, for a reduced value, or of another length than the input's (returned
    /// before anything is written). After another error the buffers' contents are unspecified
    /// (a range error is found as the pass goes).
    pub fn derivatives_into(
        &self,
        outputs: Outputs,
        grad_output: Option<ArrayViewD<'_, T>>,
        buffers: OutputBuffers<'_, T>,
    ) -> Result<Derivatives<T, D>, Error> {
        let elementwise =
            self.reduction == Reduction::None && self.axis.is_none() && !self.keepdims;
        buffers.check(outputs, elementwise, self.input.len())?;
        if !outputs.any() {
            return Ok(Derivatives {
                value: None,
                grad: None,
                grad_target: None,
                hess: None,
            });
        }
        self.run_into(outputs, grad_output, buffers)
    }

    /// The exact sums the reduced loss is made of ([`LossSums`](crate::accumulate::LossSums):
    /// the (weighted) losses, the kept elements' weights and their number), one per slot of
    /// the reduction over [`axis`](Request::axis) (all axes: one), in C order of the reduced
    /// shape; the reduction itself is not used. Sums of parts of the data, merged in any
    /// order, are those of the whole: `mean` is `values / count`, `weighted_mean` `values /
    /// weights`, each finished once, as [`Request::forward`] computes them.
    ///
    /// # Errors
    /// Those of [`Request::forward`].
    pub fn sums(&self) -> Result<Vec<crate::accumulate::LossSums>, Error> {
        let spec = Spec {
            loss: self.loss,
            reduction: Reduction::Sum,
            label_smoothing: self.label_smoothing,
            axis: self.axis.clone(),
            keepdims: false,
            outputs: Outputs {
                value: true,
                ..Outputs::default()
            },
        };
        fn view<'b, T: Float>(v: &'b Option<ArrayViewD<'_, T>>) -> Option<float::DynView<'b>> {
            v.as_ref().map(|v| dyn_view(v.view()))
        }
        sums_dyn(
            &spec,
            DynOperands {
                x: dyn_view(self.input.view().into_dyn()),
                y: dyn_view(self.target.view().into_dyn()),
                w: view(&self.weight),
                pw: view(&self.pos_weight),
                g: None,
                mask: self.mask.as_ref().map(|m| m.view()),
            },
        )
    }
}

/// An executor's array as the caller's type and dimension.
fn typed<T: Float, D: Dimension>(a: float::DynArray) -> Result<Array<T, D>, Error> {
    let a: ArrayD<T> = T::from_dyn(a).ok_or(Error::Internal("an output of another float type"))?;
    a.into_dimensionality::<D>()
        .map_err(|_| Error::Internal("an output of another dimensionality"))
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
    Request::new(LossKind::Bce, input, target)
        .weight_dyn(weight)
        .reduction(reduction)
        .forward()
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
    Request::new(LossKind::BceWithLogits, input, target)
        .weight_dyn(weight)
        .pos_weight_dyn(pos_weight)
        .reduction(reduction)
        .forward()
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
    Request::new(LossKind::Bce, input, target)
        .weight_dyn(weight)
        .reduction(reduction)
        .backward(grad_output)
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
    Request::new(LossKind::BceWithLogits, input, target)
        .weight_dyn(weight)
        .pos_weight_dyn(pos_weight)
        .reduction(reduction)
        .backward(grad_output)
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
    Request::new(LossKind::Bce, input, target)
        .weight_dyn(weight)
        .reduction(reduction)
        .value_and_grad()
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
    Request::new(LossKind::BceWithLogits, input, target)
        .weight_dyn(weight)
        .pos_weight_dyn(pos_weight)
        .reduction(reduction)
        .value_and_grad()
}

/// Sigmoid focal loss on logits, as `torchvision.ops.sigmoid_focal_loss` (whose default
/// reduction is `none`), with an elementwise `weight` that broadcasts like BCE's.
///
/// Per element, with `p = sigmoid(input)`, `ce` = [`binary_cross_entropy_with_logits`],
/// `p_t = p target + (1 - p)(1 - target)`: `weight * alpha_t * ce * (1 - p_t)^gamma`,
/// `alpha_t = alpha target + (1 - alpha)(1 - target)` when `alpha >= 0` (else 1). Computed
/// without cancellation or overflow: finite results for every finite input, the mathematical
/// limits at infinite logits, exactly `alpha_t` times BCE with logits at `gamma = 0`.
///
/// # Errors
/// Those of [`binary_cross_entropy_with_logits`], and [`Error::InvalidParameter`] when `gamma`
/// is not a finite number `>= 0` or `alpha` is NaN or above 1.
pub fn sigmoid_focal_loss<T: Float, D: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    alpha: f64,
    gamma: f64,
    weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<Loss<T, D>, Error> {
    Request::new(LossKind::SigmoidFocal { alpha, gamma }, input, target)
        .weight_dyn(weight)
        .reduction(reduction)
        .forward()
}

/// The gradient of [`sigmoid_focal_loss`] with respect to `input`; `grad_output` as in
/// [`binary_cross_entropy_backward`].
///
/// # Errors
/// Those of [`sigmoid_focal_loss`], and [`Error::GradOutputNotScalar`] or [`Error::Broadcast`]
/// for a `grad_output` of the wrong shape.
pub fn sigmoid_focal_loss_backward<T: Float, D: Dimension>(
    grad_output: Option<ArrayViewD<'_, T>>,
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    alpha: f64,
    gamma: f64,
    weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<Array<T, D>, Error> {
    Request::new(LossKind::SigmoidFocal { alpha, gamma }, input, target)
        .weight_dyn(weight)
        .reduction(reduction)
        .backward(grad_output)
}

/// [`sigmoid_focal_loss`] and its gradient for `grad_output = 1`, in one pass.
///
/// # Errors
/// Those of [`sigmoid_focal_loss`].
pub fn sigmoid_focal_loss_value_and_grad<T: Float, D: Dimension>(
    input: ArrayView<'_, T, D>,
    target: ArrayView<'_, T, D>,
    alpha: f64,
    gamma: f64,
    weight: Option<ArrayViewD<'_, T>>,
    reduction: Reduction,
) -> Result<ValueAndGrad<T, D>, Error> {
    Request::new(LossKind::SigmoidFocal { alpha, gamma }, input, target)
        .weight_dyn(weight)
        .reduction(reduction)
        .value_and_grad()
}
