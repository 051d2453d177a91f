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
//! What is the same as on the CPU: the per-element formulas (the `-100` floor of the
//! logarithms, torch's float32 `1e-12` in the BCE gradient, the limits at infinite logits,
//! the cancellation-free logits gradient), the broadcasting of `weight`, `pos_weight` and a
//! per-element `grad_output` (NumPy's rules, trailing axes aligned, never enlarging the input;
//! done by index arithmetic in the shader, nothing is materialised), BCE's range check with the
//! same [`Error::OutOfRange`], `mean` over an empty input being NaN, and every error.
//!
//! What differs:
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

use crate::error::{Error, LossKind};
use crate::parallel::Interrupt;
use crate::Reduction;
use device::Job;
use exec::{execute, Operands};

/// A loss computed on the GPU: one value per element, on the device, or the reduced value.
#[derive(Clone, Debug)]
pub enum GpuLoss {
    /// The per-element losses, in the input's shape.
    Elementwise(GpuArray),
    /// The mean or sum.
    Reduced(f32),
}

impl GpuLoss {
    /// The reduced value, if this is one.
    pub fn reduced(&self) -> Option<f32> {
        match self {
            GpuLoss::Reduced(v) => Some(*v),
            GpuLoss::Elementwise(_) => None,
        }
    }

    /// The per-element losses, if this is them.
    pub fn elementwise(self) -> Option<GpuArray> {
        match self {
            GpuLoss::Elementwise(a) => Some(a),
            GpuLoss::Reduced(_) => None,
        }
    }
}

fn logits(kind: LossKind) -> bool {
    kind == LossKind::BceWithLogits
}

fn check_target(x: &GpuArray, y: &GpuArray) -> Result<(), Error> {
    if x.shape() != y.shape() {
        return Err(Error::TargetShape {
            input: x.shape().to_vec(),
            target: y.shape().to_vec(),
        });
    }
    Ok(())
}

fn missing_output() -> Error {
    Error::Gpu("the kernel produced no output".to_owned())
}

pub(crate) fn forward(
    kind: LossKind,
    x: &GpuArray,
    y: &GpuArray,
    w: Option<&GpuArray>,
    pw: Option<&GpuArray>,
    reduction: Reduction,
    interrupt: Interrupt<'_>,
) -> Result<GpuLoss, Error> {
    check_target(x, y)?;
    let ops = Operands {
        x,
        y,
        w,
        pw,
        g: None,
    };
    let n = x.len();
    Ok(match reduction {
        Reduction::None => {
            let out = execute(logits(kind), Job::Loss, &ops, 1.0, interrupt)?;
            GpuLoss::Elementwise(out.first.ok_or_else(missing_output)?)
        }
        Reduction::Mean => {
            let out = execute(logits(kind), Job::Sum, &ops, 1.0, interrupt)?;
            GpuLoss::Reduced((out.sum / n as f64) as f32)
        }
        Reduction::Sum => {
            let out = execute(logits(kind), Job::Sum, &ops, 1.0, interrupt)?;
            GpuLoss::Reduced(out.sum as f32)
        }
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    kind: LossKind,
    g: Option<&GpuArray>,
    x: &GpuArray,
    y: &GpuArray,
    w: Option<&GpuArray>,
    pw: Option<&GpuArray>,
    reduction: Reduction,
    interrupt: Interrupt<'_>,
) -> Result<GpuArray, Error> {
    check_target(x, y)?;
    let scale = match reduction {
        Reduction::None => 1.0,
        Reduction::Mean | Reduction::Sum => {
            if let Some(g) = g {
                if g.ndim() != 0 {
                    return Err(Error::GradOutputNotScalar {
                        reduction: reduction.name(),
                        shape: g.shape().to_vec(),
                    });
                }
            }
            if reduction == Reduction::Mean {
                (1.0 / x.len() as f64) as f32
            } else {
                1.0
            }
        }
    };
    let ops = Operands { x, y, w, pw, g };
    execute(logits(kind), Job::Grad, &ops, scale, interrupt)?
        .first
        .ok_or_else(missing_output)
}

pub(crate) fn value_and_grad(
    kind: LossKind,
    x: &GpuArray,
    y: &GpuArray,
    w: Option<&GpuArray>,
    pw: Option<&GpuArray>,
    reduction: Reduction,
    interrupt: Interrupt<'_>,
) -> Result<(GpuLoss, GpuArray), Error> {
    check_target(x, y)?;
    let ops = Operands {
        x,
        y,
        w,
        pw,
        g: None,
    };
    let n = x.len();
    match reduction {
        Reduction::None => {
            let out = execute(logits(kind), Job::LossGrad, &ops, 1.0, interrupt)?;
            Ok((
                GpuLoss::Elementwise(out.first.ok_or_else(missing_output)?),
                out.second.ok_or_else(missing_output)?,
            ))
        }
        Reduction::Mean | Reduction::Sum => {
            let mean = reduction == Reduction::Mean;
            let scale = if mean { (1.0 / n as f64) as f32 } else { 1.0 };
            let out = execute(logits(kind), Job::SumGrad, &ops, scale, interrupt)?;
            let value = if mean { out.sum / n as f64 } else { out.sum };
            Ok((
                GpuLoss::Reduced(value as f32),
                out.first.ok_or_else(missing_output)?,
            ))
        }
    }
}

/// [`crate::binary_cross_entropy`] on the GPU.
///
/// # Errors
/// Those of [`crate::binary_cross_entropy`] ([`Error::OutOfRange`] is found by the shader and
/// read back after the dispatch), and [`Error::Gpu`], [`Error::GpuLayout`],
/// [`Error::GpuDeviceMismatch`].
pub fn binary_cross_entropy(
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuLoss, Error> {
    forward(LossKind::Bce, input, target, weight, None, reduction, None)
}

/// [`crate::binary_cross_entropy_with_logits`] on the GPU.
///
/// # Errors
/// Those of [`crate::binary_cross_entropy_with_logits`], and [`Error::Gpu`],
/// [`Error::GpuLayout`], [`Error::GpuDeviceMismatch`].
pub fn binary_cross_entropy_with_logits(
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    pos_weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuLoss, Error> {
    forward(
        LossKind::BceWithLogits,
        input,
        target,
        weight,
        pos_weight,
        reduction,
        None,
    )
}

/// [`crate::binary_cross_entropy_backward`] on the GPU. `grad_output` `None` means 1; for
/// `Mean` and `Sum` it must be 0-d, for `None` it broadcasts to the input's shape.
///
/// # Errors
/// Those of [`crate::binary_cross_entropy_backward`], and [`Error::Gpu`],
/// [`Error::GpuLayout`], [`Error::GpuDeviceMismatch`].
pub fn binary_cross_entropy_backward(
    grad_output: Option<&GpuArray>,
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuArray, Error> {
    backward(
        LossKind::Bce,
        grad_output,
        input,
        target,
        weight,
        None,
        reduction,
        None,
    )
}

/// [`crate::binary_cross_entropy_with_logits_backward`] on the GPU; `grad_output` as in
/// [`binary_cross_entropy_backward`].
///
/// # Errors
/// Those of [`crate::binary_cross_entropy_with_logits_backward`], and [`Error::Gpu`],
/// [`Error::GpuLayout`], [`Error::GpuDeviceMismatch`].
pub fn binary_cross_entropy_with_logits_backward(
    grad_output: Option<&GpuArray>,
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    pos_weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<GpuArray, Error> {
    backward(
        LossKind::BceWithLogits,
        grad_output,
        input,
        target,
        weight,
        pos_weight,
        reduction,
        None,
    )
}

/// [`crate::binary_cross_entropy_value_and_grad`] on the GPU: the loss and its gradient in one
/// pass over the data.
///
/// # Errors
/// Those of [`binary_cross_entropy`].
pub fn binary_cross_entropy_value_and_grad(
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<(GpuLoss, GpuArray), Error> {
    value_and_grad(LossKind::Bce, input, target, weight, None, reduction, None)
}

/// [`crate::binary_cross_entropy_with_logits_value_and_grad`] on the GPU.
///
/// # Errors
/// Those of [`binary_cross_entropy_with_logits`].
pub fn binary_cross_entropy_with_logits_value_and_grad(
    input: &GpuArray,
    target: &GpuArray,
    weight: Option<&GpuArray>,
    pos_weight: Option<&GpuArray>,
    reduction: Reduction,
) -> Result<(GpuLoss, GpuArray), Error> {
    value_and_grad(
        LossKind::BceWithLogits,
        input,
        target,
        weight,
        pos_weight,
        reduction,
        None,
    )
}
