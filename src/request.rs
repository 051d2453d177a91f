//! What a call computes, described once for every backend: the loss and its parameters, the
//! reduction, the outputs asked for; the checks of the operands' shapes; and how a reduction
//! finishes (the divisor of the value, the factor of the derivatives). The CPU executor and
//! the GPU path both take their plan from here.

use core::fmt;
use core::str::FromStr;

use crate::error::Error;
use crate::float::Float;
use crate::loss::{LossKind, GRAD, GRAD_TARGET, HESS, VALUE};

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
    /// The sum of the weighted losses divided by the sum of the weights (over the kept
    /// elements; `pos_weight` and `alpha` are not in the denominator). Without a weight it is
    /// [`Reduction::Mean`]. Keras calls it `mean_with_sample_weight`.
    WeightedMean,
}

impl Reduction {
    /// The name: torch's `"none"`, `"mean"` or `"sum"`, or `"weighted_mean"`.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::WeightedMean => "weighted_mean",
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

    /// Parses `"none"`, `"mean"`, `"sum"`, `"weighted_mean"` or `"mean_with_sample_weight"`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "weighted_mean" | "mean_with_sample_weight" => Ok(Reduction::WeightedMean),
            other => Err(Error::InvalidReduction(other.to_owned())),
        }
    }
}

/// The outputs a call asks for (see [`crate::Request::derivatives`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Outputs {
    /// The loss.
    pub value: bool,
    /// Its derivative with respect to the input.
    pub grad: bool,
    /// Its derivative with respect to the target.
    pub grad_target: bool,
    /// Its second derivative with respect to the input (the diagonal).
    pub hess: bool,
}

impl Outputs {
    /// Whether any derivative is asked for.
    pub(crate) fn derivatives(&self) -> bool {
        self.grad || self.grad_target || self.hess
    }

    /// Whether anything is asked for.
    pub(crate) fn any(&self) -> bool {
        self.value || self.derivatives()
    }

    /// The want mask of [`crate::loss::kernel`].
    pub(crate) fn want(&self) -> u8 {
        (if self.value { VALUE } else { 0 })
            | (if self.grad { GRAD } else { 0 })
            | (if self.grad_target { GRAD_TARGET } else { 0 })
            | (if self.hess { HESS } else { 0 })
    }
}

/// What a call computes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Spec {
    /// The loss and its parameters.
    pub loss: LossKind,
    /// How the losses are reduced (and so how the derivatives are scaled).
    pub reduction: Reduction,
    /// Label smoothing: the target used is `y (1 - s) + s / 2`.
    pub label_smoothing: f64,
    /// The axes a reduction runs over (`None`: all), as given (negative from the end).
    pub axis: Option<Vec<isize>>,
    /// A reduction over axes keeps them, of length 1.
    pub keepdims: bool,
    /// The outputs asked for.
    pub outputs: Outputs,
}

impl Spec {
    /// A call of `loss` reduced by `reduction`, asking for `outputs`, with no other option.
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn new(loss: LossKind, reduction: Reduction, outputs: Outputs) -> Spec {
        Spec {
            loss,
            reduction,
            label_smoothing: 0.0,
            axis: None,
            keepdims: false,
            outputs,
        }
    }

    /// The want mask of [`crate::loss::kernel`].
    pub(crate) fn want(&self) -> u8 {
        self.outputs.want()
    }
}

/// The shapes of one call's operands.
pub(crate) struct Shapes<'a> {
    pub input: &'a [usize],
    pub target: &'a [usize],
    pub weight: Option<&'a [usize]>,
    pub pos_weight: Option<&'a [usize]>,
    pub grad_output: Option<&'a [usize]>,
    pub mask: Option<&'a [usize]>,
}

/// What the checks of a call found out about its reduction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    /// A reduction over some axes (not all): the axes kept, increasing. `None` for `none`
    /// and for a reduction over every axis.
    pub kept: Option<Vec<usize>>,
    /// The shape of the reduced loss: `[]` for a full reduction without `keepdims`, the input's
    /// for `none`.
    pub shape: Vec<usize>,
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

/// Checks that a label smoothing lies in `[0, 1]`.
pub(crate) fn check_label_smoothing(s: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&s) {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "label_smoothing",
            value: crate::error::format_value(s),
            expected: "in [0, 1]",
        })
    }
}

/// The axes `axis` names in an array of `ndim` axes, increasing: NumPy's rules (negative
/// from the end; each at most once).
pub(crate) fn normalize_axes(axis: &[isize], ndim: usize) -> Result<Vec<usize>, Error> {
    let mut axes = Vec::with_capacity(axis.len());
    for &a in axis {
        let n = ndim as isize;
        let ax = if a < 0 { a + n } else { a };
        if !(0..n).contains(&ax) {
            return Err(Error::AxisOutOfBounds { axis: a, ndim });
        }
        if axes.contains(&(ax as usize)) {
            return Err(Error::DuplicateAxis);
        }
        axes.push(ax as usize);
    }
    axes.sort_unstable();
    Ok(axes)
}

/// Checks what can be checked of a call before any element is read: the parameters, the
/// target's shape, the broadcasting of `weight`, `pos_weight`, `mask` and a per-element
/// `grad_output`, the axes, and the shape of a reduction's `grad_output`; and that
/// `pos_weight` is given only to a loss that takes it. The same checks, in the same order, on
/// every backend.
pub(crate) fn check(spec: &Spec, shapes: &Shapes<'_>) -> Result<Checked, Error> {
    spec.loss.validate()?;
    check_label_smoothing(spec.label_smoothing)?;
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
    broadcast("mask", shapes.mask)?;
    let ndim = shapes.input.len();
    let checked = match (spec.reduction, &spec.axis) {
        (Reduction::None, Some(_)) => return Err(Error::AxisWithoutReduction),
        (Reduction::None, None) => Checked {
            kept: None,
            shape: shapes.input.to_vec(),
        },
        (_, None) => Checked {
            kept: None,
            shape: if spec.keepdims {
                vec![1; ndim]
            } else {
                Vec::new()
            },
        },
        (_, Some(axis)) => {
            let reduced = normalize_axes(axis, ndim)?;
            let kept: Vec<usize> = (0..ndim).filter(|ax| !reduced.contains(ax)).collect();
            let shape = if spec.keepdims {
                (0..ndim)
                    .map(|ax| {
                        if reduced.contains(&ax) {
                            1
                        } else {
                            shapes.input[ax]
                        }
                    })
                    .collect()
            } else {
                kept.iter().map(|&ax| shapes.input[ax]).collect()
            };
            Checked {
                kept: (!kept.is_empty()).then_some(kept),
                shape,
            }
        }
    };
    match (spec.reduction, shapes.grad_output) {
        (_, None) => {}
        (Reduction::None, g) => broadcast("grad_output", g)?,
        (_, Some(g)) if checked.kept.is_none() => {
            // A full reduction: a scalar (or, with keepdims, of the result's shape).
            if !(g.is_empty() || g == checked.shape.as_slice()) {
                return Err(Error::GradOutputNotScalar {
                    reduction: spec.reduction.name(),
                    shape: g.to_vec(),
                });
            }
        }
        (_, Some(g)) => {
            if g != checked.shape.as_slice() {
                return Err(Error::GradOutputShape {
                    expected: checked.shape.clone(),
                    shape: g.to_vec(),
                });
            }
        }
    }
    Ok(checked)
}

/// The factor the derivatives of a reduced call are multiplied by: `grad_output`, divided by
/// the reduction's denominator (the number of elements for `mean`, the sum of the weights for
/// `weighted_mean`). When that quotient would be subnormal (or 0) in the element type, the
/// factor is `grad_output` and the derivatives are divided by the denominator afterwards
/// (`divide_after`), in torch's order, so that no precision is lost; likewise when it would
/// overflow the element type (a denominator below `1 / MAX`: weights of subnormal size), so
/// that a finite derivative does not become infinite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scale<F> {
    /// What every derivative is multiplied by.
    pub factor: F,
    /// What every derivative is then divided by, if anything.
    pub divide_after: Option<F>,
}

#[cfg(feature = "gpu")]
impl<F: Float> Scale<F> {
    /// The factor with the divisor applied: one number where one must do (the GPU's factor per
    /// slice of a per-axis reduction), subnormal or infinite where `divide_after` is set.
    pub(crate) fn folded(self) -> F {
        match self.divide_after {
            Some(d) => self.factor / d,
            None => self.factor,
        }
    }
}

/// The [`Scale`] of the derivatives of a call whose reduction divides by `denominator` (1 for
/// `sum` and `none`), for the scalar `grad_output` (1 where none was given; `none` has
/// per-element `grad_output`s and the factor 1).
pub(crate) fn derivative_scale<F: Float>(
    reduction: Reduction,
    denominator: f64,
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
        Reduction::Mean | Reduction::WeightedMean => {
            let folded = grad_output.to_f64() / denominator;
            let tiny = grad_output != F::ZERO && folded.abs() < F::MIN_POSITIVE.to_f64();
            let overflows = folded.is_finite() && F::from_f64(folded).to_f64().is_infinite();
            if tiny || overflows {
                Scale {
                    factor: grad_output,
                    divide_after: Some(F::from_f64(denominator)),
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

/// A reduction's denominator for a slot of `count` kept elements whose weights sum to
/// `weights` (with no weight, `weights` is `count`).
pub(crate) fn denominator(reduction: Reduction, count: f64, weights: f64) -> f64 {
    match reduction {
        Reduction::Mean => count,
        Reduction::WeightedMean => weights,
        Reduction::Sum | Reduction::None => 1.0,
    }
}

/// The reduced value of a slot from the sum of its losses and its denominator.
pub(crate) fn reduced_value(reduction: Reduction, sum: f64, denominator: f64) -> f64 {
    match reduction {
        Reduction::Mean | Reduction::WeightedMean => sum / denominator,
        Reduction::Sum | Reduction::None => sum,
    }
}
