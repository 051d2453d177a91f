//! The GPU path (feature `gpu`): the same losses as the crate's CPU functions, computed by
//! WGSL compute shaders through [wgpu](https://wgpu.rs) on device-resident arrays.
//!
//! ```no_run
//! use bcers::gpu::{binary_cross_entropy_with_logits, Gpu, GpuArray};
//! use bcers::Reduction;
//! use ndarray::array;
//!
//! let gpu = Gpu::get()?; // the process-wide device, opened on first use
//! let x = GpuArray::from_view(&gpu, array![[0.5f32, -2.0], [3.0, 0.0]].view())?;
//! let y = GpuArray::from_view(&gpu, array![[1.0f32, 0.0], [1.0, 1.0]].view())?;
//! let loss = binary_cross_entropy_with_logits(&x, &y, None, None, Reduction::Mean)?;
//! println!("{}", loss.reduced().unwrap());
//! # Ok::<(), bcers::Error>(())
//! ```
//!
//! What is the same as on the CPU: every loss of the family, each defined by its WGSL twin
//! beside its Rust definition in `src/loss/` (the `-100` floor of BCE's logarithms, torch's
//! float32 `1e-12` in its gradient, the limits at infinite logits, the cancellation-free
//! gradients, the focal loss's `1 - p_t` without cancellation); the call's description and its
//! checks ([`crate::Request`]'s, in the same order, with the same errors); the finishing of the
//! reduction (the derivatives' factor, divided by `n` afterwards where `grad_output / n` would
//! be subnormal); the broadcasting of `weight`, `pos_weight`, a per-element `grad_output` and
//! the mask (NumPy's rules, trailing axes aligned, never enlarging the input; done by index
//! arithmetic in the shader, nothing is materialised); BCE's range check with the same
//! [`Error::OutOfRange`] (not of the elements a mask leaves out); `mean` over an empty input
//! (or a slice with nothing kept) being NaN; every derivative ([`Request::derivatives`]: the
//! input and target gradients and the second derivative); label smoothing, every reduction,
//! masks ([`Request::mask`]) and reductions over some axes ([`Request::axis`],
//! [`Request::keepdims`]).
//!
//! What differs:
//! - **Read back to the host.** A mean with a mask counts the kept elements on the host (the
//!   mask is read back), a weighted mean adds its weights there; a reduction over some axes
//!   reads the per-element losses back and adds them per slice in float64, and reads its
//!   `grad_output` (of the reduced shape) back to fold it into one factor per slice, which
//!   the shader reads like a broadcast `grad_output` (the derivatives stay on the device).
//!   That factor is `grad_output / denominator` rounded to float32: where it would be
//!   subnormal, the CPU divides afterwards and keeps the precision, the GPU may flush it.
//! - **float32 only.** Arrays are float32 on the device; results agree with the CPU's float32
//!   results to a few ulp per element (the shaders carry their own `log`, `log1p` and `exp`,
//!   ports of musl's, rather than the drivers' built-ins).
//! - **Sums.** Each workgroup adds its tile of 2,048 losses in float32 (a fixed tree in
//!   workgroup memory); the host adds the partial sums in float64 in a fixed order. The result
//!   is the same bits on every run on one device, within about 1e-6 relative of the CPU's
//!   float64 sum (the tests hold it to 2e-5).
//! - **Subnormals.** GPUs may flush subnormal results (below 1.2e-38) to zero, where the CPU
//!   keeps them (the logits gradient at |x| > 87, for instance). Subnormal *inputs* are read
//!   exactly (the shaders decode them from their bits), and the range check sees them as the
//!   CPU does.
//!
//! Arrays larger than the device's largest storage binding (often 128 MiB: 33.5M float32)
//! are stored as several buffers and computed pass by pass; dispatches larger than 65,535
//! workgroups are laid out in two dimensions. The BCE range check is read back after the
//! dispatch (so BCE calls wait for the GPU); a logits call with `Reduction::None` returns
//! without waiting.

mod array;
mod device;
mod exec;
mod plan;
#[cfg(feature = "python")]
pub(crate) mod python;

pub use array::GpuArray;
pub use device::{is_available, AdapterDescription, Gpu, GpuOptions};

use crate::cpu::Interrupt;
use crate::error::Error;
use crate::loss::LossKind;
use crate::request::{check, derivative_scale, reduced_value, Outputs, Reduction, Shapes, Spec};
use exec::{execute, GpuPlan, Operands, ROLE_GRAD, ROLE_GRAD_TARGET, ROLE_HESS, ROLE_VALUE};
use ndarray::{ArrayD, Axis, IxDyn};

/// A loss computed on the GPU: one value per element, on the device, or the reduced value.
#[derive(Clone, Debug)]
pub enum GpuLoss {
    /// The per-element losses, in the input's shape.
    Elementwise(GpuArray),
    /// The mean, sum or weighted mean over every element.
    Reduced(f32),
    /// The mean, sum or weighted mean over some axes, or over every axis with `keepdims`
    /// (NumPy's shape for such a reduction), on the device.
    Axes(GpuArray),
}

impl GpuLoss {
    /// The reduced value, if this is one.
    pub fn reduced(&self) -> Option<f32> {
        match self {
            GpuLoss::Reduced(v) => Some(*v),
            GpuLoss::Elementwise(_) | GpuLoss::Axes(_) => None,
        }
    }

    /// The per-element losses, if this is them.
    pub fn elementwise(self) -> Option<GpuArray> {
        match self {
            GpuLoss::Elementwise(a) => Some(a),
            GpuLoss::Reduced(_) | GpuLoss::Axes(_) => None,
        }
    }

    /// The values reduced over some axes, if this is them.
    pub fn axes(self) -> Option<GpuArray> {
        match self {
            GpuLoss::Axes(a) => Some(a),
            GpuLoss::Reduced(_) | GpuLoss::Elementwise(_) => None,
        }
    }
}

/// What [`Request::derivatives`] returns: the outputs asked for, on the device (`None` for
/// the others), as [`crate::Derivatives`] on the CPU.
#[derive(Clone, Debug)]
pub struct GpuDerivatives {
    /// The loss, if asked for.
    pub value: Option<GpuLoss>,
    /// The input gradient, if asked for.
    pub grad: Option<GpuArray>,
    /// The target gradient, if asked for.
    pub grad_target: Option<GpuArray>,
    /// The second derivative, if asked for.
    pub hess: Option<GpuArray>,
}

/// Runs `spec` on the GPU; `g` is the grad_output (for a reduction over every axis, a 0-d
/// array whose value is read back to fold it into the derivatives' factor; over some axes, of
/// the reduced result's shape, read back too); `m` the mask (0 leaves an element out).
///
/// A call with more array outputs than the device's kernel has output slots runs as several
/// dispatches (the values summed in the first). What the host needs is read back: the mask
/// (when a mean counts the kept elements) and the weight (for a weighted mean's
/// denominator); for a reduction over some axes, the per-element losses, which the host adds
/// per slice in float64 (the derivatives stay on the device, scaled per slice).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    spec: &Spec,
    x: &GpuArray,
    y: &GpuArray,
    w: Option<&GpuArray>,
    pw: Option<&GpuArray>,
    g: Option<&GpuArray>,
    m: Option<&GpuArray>,
    interrupt: Interrupt<'_>,
) -> Result<GpuDerivatives, Error> {
    let shapes = Shapes {
        input: x.shape(),
        target: y.shape(),
        weight: w.map(GpuArray::shape),
        pos_weight: pw.map(GpuArray::shape),
        grad_output: g.map(GpuArray::shape),
        mask: m.map(GpuArray::shape),
    };
    let checked = check(spec, &shapes)?;
    let outputs = spec.outputs;
    if !outputs.any() {
        return Err(Error::Internal(
            "a GPU call that asks for nothing it can do",
        ));
    }
    let derivatives = outputs.derivatives();
    let input = x.shape();
    let ndim = input.len();
    let reduction = spec.reduction;
    // The axes the reduction runs over (every one for a full reduction) and the shape of its
    // slots with those axes kept, of length 1.
    let reduced: Vec<usize> = match &checked.kept {
        Some(kept) => (0..ndim).filter(|ax| !kept.contains(ax)).collect(),
        None => (0..ndim).collect(),
    };
    let per_axis = reduction != Reduction::None && checked.kept.is_some();
    let slots_shape: Vec<usize> = (0..ndim)
        .map(|ax| if reduced.contains(&ax) { 1 } else { input[ax] })
        .collect();
    // The denominator of each slot: the number of kept elements, or the sum of their weights
    // broadcast to the input's shape.
    let denominators = match reduction {
        Reduction::Mean | Reduction::WeightedMean => {
            let kept = m.map(|m| m.to_array()).transpose()?;
            let weights = match (reduction, w) {
                (Reduction::WeightedMean, Some(w)) => Some(w.to_array()?),
                _ => None,
            };
            slot_denominators(input, &reduced, kept, weights)?
        }
        Reduction::Sum | Reduction::None => ArrayD::from_elem(IxDyn(&slots_shape), 1.0),
    };
    // A full reduction's one denominator.
    let full_denominator = denominators.iter().next().copied().unwrap_or(1.0);
    let ls = spec.label_smoothing;
    // The derivatives' scale: one factor (and maybe a divisor after) for a full reduction; a
    // factor per slice, uploaded and read as a broadcast grad_output, for a per-axis one.
    let mut slice_factors = None;
    let (g, scale) = match (reduction, g) {
        (Reduction::None, g) => (
            g.filter(|_| derivatives),
            derivative_scale(reduction, 1.0, 1.0),
        ),
        _ if per_axis && derivatives => {
            let go = match g {
                Some(g) => g
                    .to_array()?
                    .into_shape_with_order(IxDyn(&slots_shape))
                    .map_err(|_| {
                        Error::Internal("a grad_output of the reduced shape that does not reshape")
                    })?,
                None => ArrayD::from_elem(IxDyn(&slots_shape), 1.0f32),
            };
            let factors = ndarray::Zip::from(&go)
                .and(&denominators)
                .map_collect(|&go, &d| derivative_scale(reduction, d, go).folded());
            slice_factors = Some(GpuArray::from_view(&x.gpu, factors.view())?);
            (None, derivative_scale(Reduction::Sum, 1.0, 1.0f32))
        }
        (_, g) => {
            let go = match g {
                Some(g) if derivatives => g.element(0)?,
                _ => 1.0,
            };
            (None, derivative_scale(reduction, full_denominator, go))
        }
    };
    let g = slice_factors.as_ref().or(g);
    // The target gradient has label smoothing's chain-rule factor too (as on the CPU).
    let target_factor = scale.factor * (1.0 - ls) as f32;
    let elementwise = outputs.value && (reduction == Reduction::None || per_axis);
    let roles: Vec<u32> = [
        (elementwise, ROLE_VALUE),
        (outputs.grad, ROLE_GRAD),
        (outputs.grad_target, ROLE_GRAD_TARGET),
        (outputs.hess, ROLE_HESS),
    ]
    .into_iter()
    .filter_map(|(wanted, role)| wanted.then_some(role))
    .collect();
    let (alpha, gamma) = match spec.loss {
        LossKind::SigmoidFocal { alpha, gamma } => (alpha as f32, gamma as f32),
        _ => (0.0, 0.0),
    };
    let sum = outputs.value && !elementwise;
    let divisor = scale.divide_after.unwrap_or(1.0);
    let plan = |outputs: Vec<u32>, sum: bool| GpuPlan {
        loss: spec.loss.gpu_id(),
        alpha,
        gamma,
        smoothing: ((1.0 - ls) as f32, (ls / 2.0) as f32),
        checks_range: spec.loss.checks_range(),
        sum,
        outputs,
        factor: scale.factor,
        target_factor,
        divisor,
    };
    let ops = Operands { x, y, w, pw, g, m };
    // The outputs in groups of as many as the kernel has slots; the sum with the first group
    // (or alone, for a reduced value with no derivatives).
    let slots = x.gpu.inner.slots.max(1);
    let mut groups: Vec<Vec<u32>> = roles.chunks(slots).map(<[u32]>::to_vec).collect();
    if groups.is_empty() {
        groups.push(Vec::new());
    }
    let mut total = 0.0;
    let mut arrays = Vec::new();
    for (k, group) in groups.into_iter().enumerate() {
        let out = execute(&plan(group, sum && k == 0), &ops, interrupt)?;
        if k == 0 {
            total = out.sum;
        }
        arrays.extend(out.arrays);
    }
    let mut arrays = roles.iter().copied().zip(arrays);
    let mut take = |wanted: bool| -> Result<Option<GpuArray>, Error> {
        if !wanted {
            return Ok(None);
        }
        arrays
            .next()
            .map(|(_, a)| Some(a))
            .ok_or(Error::Internal("the kernel lost an output"))
    };
    let value = if per_axis && outputs.value {
        // The per-element losses, added per slice on the host.
        let losses = take(true)?
            .ok_or(Error::Internal("the kernel lost an output"))?
            .to_array()?
            .mapv(f64::from);
        let sums = slot_sums(losses, input, &reduced)?;
        let values = ndarray::Zip::from(&sums)
            .and(&denominators)
            .map_collect(|&s, &d| reduced_value(reduction, s, d) as f32)
            .into_shape_with_order(IxDyn(&checked.shape))
            .map_err(|_| Error::Internal("the reduced losses do not take their shape"))?;
        Some(GpuLoss::Axes(GpuArray::from_view(&x.gpu, values.view())?))
    } else if elementwise {
        take(true)?.map(GpuLoss::Elementwise)
    } else if outputs.value {
        let v = reduced_value(reduction, total, full_denominator) as f32;
        Some(if spec.keepdims {
            let a = ArrayD::from_elem(IxDyn(&checked.shape), v);
            GpuLoss::Axes(GpuArray::from_view(&x.gpu, a.view())?)
        } else {
            GpuLoss::Reduced(v)
        })
    } else {
        None
    };
    let grad = take(outputs.grad)?;
    let grad_target = take(outputs.grad_target)?;
    let hess = take(outputs.hess)?;
    Ok(GpuDerivatives {
        value,
        grad,
        grad_target,
        hess,
    })
}

/// `a` (whose shape broadcasts to `input`) broadcast to `input` and summed over the axes
/// `reduced`: an array with those axes of length 1 and the others of the input's length.
fn slot_sums(a: ArrayD<f64>, input: &[usize], reduced: &[usize]) -> Result<ArrayD<f64>, Error> {
    let ndim = input.len();
    let mut a = with_rank(a, ndim)?;
    let mut factor = 1.0;
    for &ax in reduced {
        if a.shape()[ax] == 1 {
            // Broadcast along the axis: each element stands for the axis's length.
            factor *= input[ax] as f64;
        } else {
            a = a.sum_axis(Axis(ax)).insert_axis(Axis(ax));
        }
    }
    if factor != 1.0 {
        a.mapv_inplace(|v| v * factor);
    }
    let slots: Vec<usize> = (0..ndim)
        .map(|ax| if reduced.contains(&ax) { 1 } else { input[ax] })
        .collect();
    a.broadcast(IxDyn(&slots))
        .map(|b| b.to_owned())
        .ok_or(Error::Internal(
            "slot sums that do not broadcast to the slots",
        ))
}

/// `a` with axes of length 1 put before its own up to `ndim` axes (NumPy's broadcasting
/// alignment: trailing axes).
fn with_rank<T>(a: ArrayD<T>, ndim: usize) -> Result<ArrayD<T>, Error> {
    let mut shape = vec![1; ndim.saturating_sub(a.ndim())];
    shape.extend_from_slice(a.shape());
    a.into_shape_with_order(IxDyn(&shape))
        .map_err(|_| Error::Internal("an operand that does not take the input's rank"))
}

/// Each slot's denominator of a mean: the number of its elements the mask keeps (nonzero),
/// or, given weights, the sum of their weights over the kept elements (broadcast to the
/// input's shape).
fn slot_denominators(
    input: &[usize],
    reduced: &[usize],
    mask: Option<ArrayD<f32>>,
    weights: Option<ArrayD<f32>>,
) -> Result<ArrayD<f64>, Error> {
    let ndim = input.len();
    let kept = |v: f32| v != 0.0;
    let a = match (mask, weights) {
        (None, None) => ArrayD::from_elem(IxDyn(&vec![1; ndim]), 1.0),
        (Some(m), None) => m.mapv(|v| if kept(v) { 1.0 } else { 0.0 }),
        (None, Some(w)) => w.mapv(f64::from),
        (Some(m), Some(w)) => {
            let (m, w) = (with_rank(m, ndim)?, with_rank(w, ndim)?);
            let common: Vec<usize> = m
                .shape()
                .iter()
                .zip(w.shape())
                .map(|(&a, &b)| a.max(b))
                .collect();
            let (Some(m), Some(w)) = (m.broadcast(IxDyn(&common)), w.broadcast(IxDyn(&common)))
            else {
                return Err(Error::Internal("a weight and a mask that do not broadcast"));
            };
            // A left-out element's weight is not added, whatever it is (inf, NaN).
            ndarray::Zip::from(&m)
                .and(&w)
                .map_collect(|&m, &w| if kept(m) { f64::from(w) } else { 0.0 })
        }
    };
    slot_sums(a, input, reduced)
}

/// One call on the GPU, as [`crate::Request`] on the CPU: a loss with its parameters, its
/// operands (device arrays) and its reduction, then [`forward`](Request::forward),
/// [`backward`](Request::backward) or [`value_and_grad`](Request::value_and_grad).
#[derive(Clone, Debug)]
pub struct Request<'a> {
    loss: LossKind,
    input: &'a GpuArray,
    target: &'a GpuArray,
    weight: Option<&'a GpuArray>,
    pos_weight: Option<&'a GpuArray>,
    mask: Option<&'a GpuArray>,
    reduction: Reduction,
    label_smoothing: f64,
    axis: Option<Vec<isize>>,
    keepdims: bool,
}

impl<'a> Request<'a> {
    /// A call of `loss` on `input` against `target`, reduced by its mean, with no weights.
    pub fn new(loss: LossKind, input: &'a GpuArray, target: &'a GpuArray) -> Self {
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

    /// Label smoothing in `[0, 1]`, as [`crate::Request::label_smoothing`].
    pub fn label_smoothing(mut self, s: f64) -> Self {
        self.label_smoothing = s;
        self
    }

    /// Each element's loss multiplied by `weight`, which broadcasts to the input's shape.
    pub fn weight(mut self, weight: &'a GpuArray) -> Self {
        self.weight = Some(weight);
        self
    }

    /// The weight of the positive class (BCE with logits), which broadcasts to the input's
    /// shape.
    pub fn pos_weight(mut self, pos_weight: &'a GpuArray) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }

    /// How the per-element losses are reduced (default: [`Reduction::Mean`]).
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Leaves out the elements where `mask` (which broadcasts to the input's shape) is 0, as
    /// [`crate::Request::mask`]: their loss and derivatives are 0, their range is not checked,
    /// and a mean divides by the number of kept elements (the mask is read back to count them).
    pub fn mask(mut self, mask: &'a GpuArray) -> Self {
        self.mask = Some(mask);
        self
    }

    /// Reduces over these axes only, as [`crate::Request::axis`]: the value is an array
    /// ([`GpuLoss::Axes`]), the derivatives are scaled per slice.
    pub fn axis(mut self, axis: &[isize]) -> Self {
        self.axis = Some(axis.to_vec());
        self
    }

    /// Keeps the reduced axes, of length 1, as [`crate::Request::keepdims`].
    pub fn keepdims(mut self, keepdims: bool) -> Self {
        self.keepdims = keepdims;
        self
    }

    fn with(mut self, weight: Option<&'a GpuArray>, pos_weight: Option<&'a GpuArray>) -> Self {
        self.weight = weight;
        self.pos_weight = pos_weight;
        self
    }

    fn run(&self, value: bool, grad: bool, g: Option<&GpuArray>) -> Result<GpuDerivatives, Error> {
        self.run_outputs(
            Outputs {
                value,
                grad,
                ..Outputs::default()
            },
            g,
        )
    }

    fn run_outputs(&self, outputs: Outputs, g: Option<&GpuArray>) -> Result<GpuDerivatives, Error> {
        let mut spec = Spec::new(self.loss, self.reduction, outputs);
        spec.label_smoothing = self.label_smoothing;
        spec.axis.clone_from(&self.axis);
        spec.keepdims = self.keepdims;
        run(
            &spec,
            self.input,
            self.target,
            self.weight,
            self.pos_weight,
            g,
            self.mask,
            None,
        )
    }

    /// The loss: the per-element losses on the device (`Reduction::None`) or the reduced value.
    ///
    /// # Errors
    /// Those of [`crate::Request::forward`] ([`Error::OutOfRange`] is found by the shader and
    /// read back after the dispatch), and [`Error::Gpu`], [`Error::GpuLayout`],
    /// [`Error::GpuDeviceMismatch`], [`Error::GpuAfterFork`].
    pub fn forward(&self) -> Result<GpuLoss, Error> {
        self.run(true, false, None)?
            .value
            .ok_or(Error::Internal("a forward with no value"))
    }

    /// The gradient with respect to the input, on the device. `grad_output` `None` means 1;
    /// for a reduction over every axis it must be 0-d (its value is read back), over some axes
    /// it has the reduced result's shape (read back, and folded into a factor per slice), for
    /// `None` it broadcasts to the input's shape.
    ///
    /// # Errors
    /// Those of [`Request::forward`], and [`Error::GradOutputNotScalar`],
    /// [`Error::GradOutputShape`] or [`Error::Broadcast`] for a `grad_output` of the wrong
    /// shape.
    pub fn backward(&self, grad_output: Option<&GpuArray>) -> Result<GpuArray, Error> {
        self.run(false, true, grad_output)?
            .grad
            .ok_or(Error::Internal("a backward with no gradient"))
    }

    /// The loss and its gradient, in one pass over the data.
    ///
    /// # Errors
    /// Those of [`Request::forward`].
    pub fn value_and_grad(&self) -> Result<(GpuLoss, GpuArray), Error> {
        let r = self.run(true, true, None)?;
        match (r.value, r.grad) {
            (Some(v), Some(g)) => Ok((v, g)),
            _ => Err(Error::Internal("a value_and_grad without its outputs")),
        }
    }

    /// The outputs asked for (the loss, its derivatives with respect to the input and the
    /// target, its second derivative with respect to the input), as
    /// [`crate::Request::derivatives`]: each derivative of the loss as this request reduces
    /// it, times `grad_output` (as in [`Request::backward`]). A call with more array outputs
    /// than the device's kernel writes at once runs as several dispatches.
    ///
    /// # Errors
    /// Those of [`Request::backward`].
    pub fn derivatives(
        &self,
        outputs: Outputs,
        grad_output: Option<&GpuArray>,
    ) -> Result<GpuDerivatives, Error> {
        if !outputs.any() {
            return Ok(GpuDerivatives {
                value: None,
                grad: None,
                grad_target: None,
                hess: None,
            });
        }
        self.run_outputs(outputs, grad_output)
    }
}

/// [`crate::binary_cross_entropy`] on the GPU.
///
/// # Errors
/// Those of [`Request::forward`].
pub fn binary_cross_entropy(
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuLoss, Error> {
    Request::new(LossKind::Bce, input, target)
        .with(weight, None)
        .reduction(reduction)
        .forward()
}

/// [`crate::binary_cross_entropy_with_logits`] on the GPU.
///
/// # Errors
/// Those of [`Request::forward`].
pub fn binary_cross_entropy_with_logits(
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    pos_weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuLoss, Error> {
    Request::new(LossKind::BceWithLogits, input, target)
        .with(weight, pos_weight)
        .reduction(reduction)
        .forward()
}

/// [`crate::binary_cross_entropy_backward`] on the GPU; `grad_output` as in
/// [`Request::backward`].
///
/// # Errors
/// Those of [`Request::backward`].
pub fn binary_cross_entropy_backward(
    grad_output: Option<&GpuArray>,
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuArray, Error> {
    Request::new(LossKind::Bce, input, target)
        .with(weight, None)
        .reduction(reduction)
        .backward(grad_output)
}

/// [`crate::binary_cross_entropy_with_logits_backward`] on the GPU; `grad_output` as in
/// [`Request::backward`].
///
/// # Errors
/// Those of [`Request::backward`].
pub fn binary_cross_entropy_with_logits_backward(
    grad_output: Option<&GpuArray>,
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    pos_weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuArray, Error> {
    Request::new(LossKind::BceWithLogits, input, target)
        .with(weight, pos_weight)
        .reduction(reduction)
        .backward(grad_output)
}

/// [`crate::binary_cross_entropy_value_and_grad`] on the GPU: the loss and its gradient in one
/// pass over the data.
///
/// # Errors
/// Those of [`Request::forward`].
pub fn binary_cross_entropy_value_and_grad(
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<(GpuLoss, GpuArray), Error> {
    Request::new(LossKind::Bce, input, target)
        .with(weight, None)
        .reduction(reduction)
        .value_and_grad()
}

/// [`crate::binary_cross_entropy_with_logits_value_and_grad`] on the GPU.
///
/// # Errors
/// Those of [`Request::forward`].
pub fn binary_cross_entropy_with_logits_value_and_grad(
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    pos_weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<(GpuLoss, GpuArray), Error> {
    Request::new(LossKind::BceWithLogits, input, target)
        .with(weight, pos_weight)
        .reduction(reduction)
        .value_and_grad()
}

/// [`crate::sigmoid_focal_loss`] on the GPU.
///
/// # Errors
/// Those of [`Request::forward`].
pub fn sigmoid_focal_loss(
    input: &GpuArray,
    target: &GpuArray,
    alpha: f64,
    gamma: f64,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuLoss, Error> {
    Request::new(LossKind::SigmoidFocal { alpha, gamma }, input, target)
        .with(weight, None)
        .reduction(reduction)
        .forward()
}

/// [`crate::sigmoid_focal_loss_backward`] on the GPU; `grad_output` as in
/// [`Request::backward`].
///
/// # Errors
/// Those of [`Request::backward`].
pub fn sigmoid_focal_loss_backward(
    grad_output: Option<&GpuArray>,
    input: &GpuArray,
    target: &GpuArray,
    alpha: f64,
    gamma: f64,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuArray, Error> {
    Request::new(LossKind::SigmoidFocal { alpha, gamma }, input, target)
        .with(weight, None)
        .reduction(reduction)
        .backward(grad_output)
}

/// [`crate::sigmoid_focal_loss_value_and_grad`] on the GPU.
///
/// # Errors
/// Those of [`Request::forward`].
pub fn sigmoid_focal_loss_value_and_grad(
    input: &GpuArray,
    target: &GpuArray,
    alpha: f64,
    gamma: f64,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<(GpuLoss, GpuArray), Error> {
    Request::new(LossKind::SigmoidFocal { alpha, gamma }, input, target)
        .with(weight, None)
        .reduction(reduction)
        .value_and_grad()
}
