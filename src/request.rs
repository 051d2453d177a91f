//! What a call computes, described once for every backend: the loss and its parameters, the
//! reduction, the outputs asked for; the checks of the operands' shapes; and how a reduction
//! finishes (the divisor of the value, the factor of the derivatives). The CPU executor and
//! the GPU path both take their plan from here.

use core::fmt;
use core::str::FromStr;

use crate::error::Error;
use crate::float::Float;
use crate::loss::{LossKind, GRAD, VALUE};

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

/// What a call computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Spec {
    /// The loss and its parameters.
    pub loss: LossKind,
    /// How the losses are reduced (and so how the derivatives are scaled).
    pub reduction: Reduction,
    /// The loss is asked for.
    pub value: bool,
    /// The gradient with respect to the input is asked for.
    pub grad: bool,
}

impl Spec {
    /// The want mask of [`crate::loss::kernel`].
    pub(crate) fn want(&self) -> u8 {
        (if self.value { VALUE } else { 0 }) | (if self.grad { GRAD } else { 0 })
    }
}

/// The shapes of one call's operands.
pub(crate) struct Shapes<'a> {
    pub input: &'a [usize],
    pub target: &'a [usize],
    pub weight: Option<&'a [usize]>,
    pub pos_weight: Option<&'a [usize]>,
    pub grad_output: Option<&'a [usize]>,
}

/// Whether `shape` broadcasts to `input` without enlarging it: NumPy's rule, trailing axes
/// aligned, each of `shape`'s axes of length 1 or the input's.
pub(crate) fn broadcasts(shape: &[usize], input: &[usize]) -> bool {
    shape.len() <= input.len()
        && shape
            .iter()
            .rev()
            .zip(input.iter().rev())
            .all(|(&s, &n)| s == 1 || s == n)
}

/// Checks what can be checked of a call before any element is read: the parameters, the
/// target's shape, the broadcasting of `weight`, `pos_weight` and a per-element
/// `grad_output`, a scalar `grad_output` for `mean` and `sum`, and that `pos_weight` is given
/// only to a loss that takes it. The same checks, in the same order, on every backend.
pub(crate) fn check(spec: &Spec, shapes: &Shapes<'_>) -> Result<(), Error> {
    spec.loss.validate()?;
    if shapes.pos_weight.is_some() && !spec.loss.takes_pos_weight() {
        return Err(Error::Unsupported {
            loss: spec.loss.name(),
            arg: "pos_weight",
        });
    }
    if shapes.input != shapes.target {
        return Err(Error::TargetShape {
            input: shapes.input.to_vec(),
            target: shapes.target.to_vec(),
        });
    }
    let broadcast = |arg: &'static str, shape: Option<&[usize]>| match shape {
        Some(shape) if !broadcasts(shape, shapes.input) => Err(Error::Broadcast {
            arg,
            shape: shape.to_vec(),
            input: shapes.input.to_vec(),
        }),
        _ => Ok(()),
    };
    broadcast("weight", shapes.weight)?;
    broadcast("pos_weight", shapes.pos_weight)?;
    match (spec.reduction, shapes.grad_output) {
        (Reduction::None, g) => broadcast("grad_output", g),
        (_, Some(g)) if !g.is_empty() => Err(Error::GradOutputNotScalar {
            reduction: spec.reduction.name(),
            shape: g.to_vec(),
        }),
        _ => Ok(()),
    }
}

/// The factor the derivatives of a reduced call are multiplied by: `grad_output`, divided by
/// the number of elements for `mean`. When that quotient would be subnormal (or 0) in the
/// element type, the factor is `grad_output` and the derivatives are divided by `n` afterwards
/// (`divide_after`), in torch's order, so that no precision is lost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scale<F> {
    /// What every derivative is multiplied by.
    pub factor: F,
    /// What every derivative is then divided by, if anything.
    pub divide_after: Option<F>,
}

/// The [`Scale`] of the derivatives of a call with `n` elements and the scalar `grad_output`
/// (1 where none was given; `none` has per-element `grad_output`s and the factor 1).
pub(crate) fn derivative_scale<F: Float>(
    reduction: Reduction,
    n: usize,
    grad_output: F,
) -> Scale<F> {
    match reduction {
        Reduction::None => Scale {
            factor: F::ONE,
            divide_after: None,
        },
        Reduction::Sum => Scale {
            factor: grad_output,
            divide_after: None,
        },
        Reduction::Mean => {
            let folded = grad_output.to_f64() / n as f64;
            if grad_output != F::ZERO && folded.abs() < F::MIN_POSITIVE.to_f64() {
                Scale {
                    factor: grad_output,
                    divide_after: Some(F::from_usize(n)),
                }
            } else {
                Scale {
                    factor: F::from_f64(folded),
                    divide_after: None,
                }
            }
        }
    }
}

/// The reduced value of a call from the sum of its `n` losses.
pub(crate) fn reduced_value(reduction: Reduction, sum: f64, n: usize) -> f64 {
    match reduction {
        Reduction::Mean => sum / n as f64,
        Reduction::Sum | Reduction::None => sum,
    }
}
