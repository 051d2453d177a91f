//! From a call's description to the CPU executor: the checks, the plan, the finishing of the
//! reduction. Generic over the float type, and instantiated for `f32` and `f64` here, inside
//! the crate: the public generic API reaches it through [`run_dyn`] (its views as a
//! [`DynView`] of one type), the Python bindings through [`run`] for the array's dtype.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::accumulate::LossSums;
use crate::cpu::{execute, Closed, Dest, Operands, Outcome, OwnedOutputs, Plan, ValueOut};
use crate::error::Error;
use crate::float::{DynArray, DynView};
use crate::loss::{kernel, Params};
use crate::math::Real;
use crate::request::{
    check, denominator, derivative_scale, reduced_value, Checked, Outputs, Reduction, Shapes, Spec,
};

pub(crate) use crate::cpu::Interrupt;

/// A reduced loss.
#[derive(Debug)]
pub(crate) enum Reduced<F> {
    /// Over every axis, without `keepdims`: the value in float64.
    Scalar(f64),
    /// Over some axes, or with `keepdims`: an array of the reduced shape (boxed, as the
    /// elementwise outputs).
    Array(Box<ArrayD<F>>),
}

/// What a call returns (what it asked for).
#[derive(Debug)]
pub(crate) struct Results<F> {
    /// The reduced value, if the value was asked for with a reduction.
    pub reduced: Option<Reduced<F>>,
    /// The elementwise outputs not written to the caller's buffers: values (`none`), input
    /// gradient, target gradient, second derivative.
    pub arrays: OwnedOutputs<F>,
}

/// Each slot's denominators (the sum of its kept elements' weights, and their number), where
/// known.
enum Denominators {
    /// Not known before the pass (a mask, or weighted_mean with a weight).
    Unknown,
    /// Every slot's elements, each of weight 1.
    Uniform(f64),
    /// Per slot: the kept elements' weights' sums and counts.
    PerSlot(Vec<Closed>),
}

impl Denominators {
    /// Slot `s`'s (weights, count).
    fn of(&self, s: usize) -> Option<(f64, f64)> {
        match self {
            Denominators::Unknown => None,
            Denominators::Uniform(c) => Some((*c, *c)),
            // A count is exact up to 2^53 elements, rounded to nearest beyond.
            Denominators::PerSlot(slots) => slots.get(s).map(|c| (c.weight, c.count as f64)),
        }
    }
}

/// The plan of `spec`'s loss over the slots of the axes `kept`, with the values `value`: its
/// parameters and label smoothing; no kernel yet, no derivatives, no denominators, no states;
/// the derivatives' scales 1 (the target gradient's: label smoothing's chain-rule factor).
fn plan_for<F: Real>(spec: &Spec, kept: Option<Vec<usize>>, value: ValueOut) -> Plan<F> {
    let ls = spec.label_smoothing;
    Plan {
        kernel: None,
        params: Params::of(&spec.loss),
        value,
        grad: false,
        grad_target: false,
        hess: false,
        grad_scale: F::ONE,
        grad_target_scale: F::from_f64(1.0 - ls),
        smoothing: (ls != 0.0).then(|| (F::from_f64(1.0 - ls), F::from_f64(ls / 2.0))),
        denominators: false,
        kept,
        states: false,
    }
}

/// The shapes of `ops`, for [`check`].
fn shapes_of<'s, F>(ops: &'s Operands<'_, F>) -> Shapes<'s> {
    Shapes {
        input: ops.x.shape(),
        target: ops.y.shape(),
        weight: ops.w.as_ref().map(|v| v.shape()),
        pos_weight: ops.pw.as_ref().map(|v| v.shape()),
        grad_output: ops.g.as_ref().map(|v| v.shape()),
        mask: ops.mask.as_ref().map(|v| v.shape()),
    }
}

/// Runs `spec` over `ops` (`ops.g` is the grad_output: a scalar for a full reduction, of the
/// reduced shape for a reduction over axes, per element for `none`), outputs into `dest` where
/// they can go.
pub(crate) fn run<F: Real>(
    spec: &Spec,
    mut ops: Operands<'_, F>,
    mut dest: Dest<'_, F>,
    interrupt: Interrupt<'_>,
) -> Result<Results<F>, Error> {
    let Checked { kept, shape } = check(spec, &shapes_of(&ops))?;
    let outputs = spec.outputs;
    if !outputs.any() {
        return Err(Error::Internal("a call that asks for nothing"));
    }
    let n = ops.x.len();
    let reduction = spec.reduction;
    let reduces = reduction != Reduction::None;
    let slots: usize = kept
        .as_ref()
        .map_or(1, |kept| kept.iter().map(|&ax| ops.x.shape()[ax]).product());
    let per_slot = n.checked_div(slots).unwrap_or(0);
    let target_factor = F::from_f64(1.0 - spec.label_smoothing);

    // The grad_output of a reduction's derivatives, per slot (C order of the reduced shape).
    let grad_output: Vec<F> = match (reduces, ops.g.take()) {
        (false, g) => {
            ops.g = g.filter(|_| outputs.derivatives());
            Vec::new()
        }
        (true, _) if !outputs.derivatives() => Vec::new(),
        (true, None) => vec![F::ONE; slots],
        (true, Some(g)) if kept.is_none() => vec![g.iter().next().copied().unwrap_or(F::ONE)],
        (true, Some(g)) => g.iter().copied().collect(),
    };

    // The denominators: data-dependent with a mask, or for weighted_mean with a weight.
    let data_dependent = match reduction {
        Reduction::Mean => ops.mask.is_some(),
        Reduction::WeightedMean => ops.mask.is_some() || ops.w.is_some(),
        Reduction::Sum | Reduction::None => false,
    };
    let base = |value: ValueOut, derivatives: bool, denominators: bool| Plan {
        grad: derivatives && outputs.grad,
        grad_target: derivatives && outputs.grad_target,
        hess: derivatives && outputs.hess,
        denominators,
        ..plan_for(spec, kept.clone(), value)
    };
    // Each slot's (weights, count) when known before the pass: every slot's elements when
    // they do not depend on the data; with derivatives, from a first pass that counts them.
    let mut known = if data_dependent {
        Denominators::Unknown
    } else {
        Denominators::Uniform(per_slot as f64)
    };
    if data_dependent && outputs.derivatives() {
        let plan = base(ValueOut::None, false, true);
        let out = execute(&plan, &ops, Dest::default(), interrupt)?;
        known = Denominators::PerSlot(out.sums);
    }

    let mut plan = base(
        match (outputs.value, reduces) {
            (false, _) => ValueOut::None,
            (true, false) => ValueOut::Elementwise,
            (true, true) => ValueOut::Sum,
        },
        true,
        matches!(known, Denominators::Unknown),
    );
    plan.kernel = Some(kernel::<F>(&spec.loss, spec.want()));

    // The derivatives' factors: one for a full reduction (with torch's divide-after for a
    // quotient that would be subnormal or overflow), one per slot (an operand broadcast over
    // the reduced axes) else, with the slots' divisors (1 where none is needed) likewise.
    let mut divide_after = None;
    let mut slot_divisors: Option<ArrayD<F>> = None;
    let factors: Option<ArrayD<F>>;
    if reduces && outputs.derivatives() {
        let denominator_of = |s: usize| {
            known
                .of(s)
                .map(|(weights, count)| denominator(reduction, count, weights))
                .ok_or(Error::Internal("derivatives without their denominators"))
        };
        if kept.is_none() {
            let scale = derivative_scale(reduction, denominator_of(0)?, grad_output[0]);
            plan.grad_scale = scale.factor;
            plan.grad_target_scale = scale.factor * target_factor;
            divide_after = scale.divide_after;
            factors = None;
        } else {
            let mut keep_shape = ops.x.shape().to_vec();
            for (ax, len) in keep_shape.iter_mut().enumerate() {
                if !kept.as_ref().is_some_and(|k| k.contains(&ax)) {
                    *len = 1;
                }
            }
            let scales = (0..slots)
                .map(|s| {
                    Ok(derivative_scale(
                        reduction,
                        denominator_of(s)?,
                        grad_output[s],
                    ))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            if scales.iter().any(|scale| scale.divide_after.is_some()) {
                let divisors = scales
                    .iter()
                    .map(|scale| scale.divide_after.unwrap_or(F::ONE))
                    .collect();
                slot_divisors = Some(
                    ArrayD::from_shape_vec(IxDyn(&keep_shape), divisors)
                        .map_err(|_| Error::Internal("per-slot divisors of the wrong length"))?,
                );
            }
            let per: Vec<F> = scales.iter().map(|scale| scale.factor).collect();
            factors = Some(
                ArrayD::from_shape_vec(IxDyn(&keep_shape), per)
                    .map_err(|_| Error::Internal("per-slot factors of the wrong length"))?,
            );
        }
    } else {
        factors = None;
    }
    let ops = Operands {
        g: match &factors {
            Some(f) => Some(f.view()),
            None => ops.g,
        },
        x: ops.x,
        y: ops.y,
        w: ops.w,
        pw: ops.pw,
        mask: ops.mask,
    };

    if plan.value != ValueOut::Elementwise {
        dest.value = None;
    }
    let Outcome {
        sums, mut arrays, ..
    } = execute(&plan, &ops, dest.reborrow(), interrupt)?;
    if let Some(d) = divide_after {
        let divide = |v: &mut F| *v = *v / d;
        let wanted = [false, plan.grad, plan.grad_target, plan.hess];
        for (k, array) in arrays.iter_mut().enumerate() {
            if !wanted[k] {
                continue;
            }
            match array {
                Some(a) => a.map_inplace(divide),
                None => {
                    if let Some(buffer) = dest.slot(k) {
                        buffer.iter_mut().for_each(divide);
                    }
                }
            }
        }
    }
    if let Some(divisors) = &slot_divisors {
        // Dividing by 1 (the slots that need no divisor) leaves the bits as they are.
        let per_element = divisors
            .broadcast(ops.x.raw_dim())
            .ok_or(Error::Internal("per-slot divisors that do not broadcast"))?;
        let wanted = [false, plan.grad, plan.grad_target, plan.hess];
        for (k, array) in arrays.iter_mut().enumerate() {
            if !wanted[k] {
                continue;
            }
            match array {
                Some(a) => a.zip_mut_with(&per_element, |v, d| *v = *v / *d),
                None => {
                    if let Some(buffer) = dest.slot(k) {
                        // The caller's buffers are in C order of the input's shape.
                        for (v, d) in buffer.iter_mut().zip(per_element.iter()) {
                            *v = *v / *d;
                        }
                    }
                }
            }
        }
    }
    let reduced = if plan.value == ValueOut::Sum {
        let value = |s: usize| -> Result<f64, Error> {
            // Denominators not known before the pass are its own.
            let (w, c) = match known {
                Denominators::Unknown => sums.get(s).map(|c| (c.weight, c.count as f64)),
                _ => known.of(s),
            }
            .ok_or(Error::Internal("a reduced value without its denominator"))?;
            Ok(reduced_value(
                reduction,
                sums.get(s).map_or(0.0, |c| c.sum),
                denominator(reduction, c, w),
            ))
        };
        Some(if kept.is_none() && shape.is_empty() {
            Reduced::Scalar(value(0)?)
        } else {
            let typed = (0..slots)
                .map(|s| value(s).map(F::from_f64))
                .collect::<Result<Vec<F>, Error>>()?;
            Reduced::Array(Box::new(
                ArrayD::from_shape_vec(IxDyn(&shape), typed)
                    .map_err(|_| Error::Internal("a reduced value of the wrong length"))?,
            ))
        })
    } else {
        None
    };
    Ok(Results { reduced, arrays })
}

/// The exact sums of `spec`'s loss over `ops` (no grad_output): one per slot of the reduction
/// over `spec.axis` (all axes: one), in C order of the reduced shape, whatever `spec`'s
/// reduction and outputs.
pub(crate) fn run_sums<F: Real>(
    spec: &Spec,
    ops: Operands<'_, F>,
    interrupt: Interrupt<'_>,
) -> Result<Vec<LossSums>, Error> {
    let ops = Operands { g: None, ..ops };
    // Checked as a sum: `none` would refuse an axis, and the sums do not depend on it.
    let summed = Spec {
        reduction: Reduction::Sum,
        outputs: Outputs {
            value: true,
            ..Outputs::default()
        },
        ..spec.clone()
    };
    let Checked { kept, .. } = check(&summed, &shapes_of(&ops))?;
    let plan = Plan {
        kernel: Some(kernel::<F>(&spec.loss, summed.want())),
        denominators: true,
        states: true,
        ..plan_for(spec, kept, ValueOut::Sum)
    };
    Ok(execute(&plan, &ops, Dest::default(), interrupt)?.states)
}

/// The operands of a call, of either float type (all of one).
pub(crate) struct DynOperands<'a> {
    pub x: DynView<'a>,
    pub y: DynView<'a>,
    pub w: Option<DynView<'a>>,
    pub pw: Option<DynView<'a>>,
    pub g: Option<DynView<'a>>,
    pub mask: Option<ArrayViewD<'a, bool>>,
}

/// [`Reduced`] of either float type.
pub(crate) enum DynReduced {
    Scalar(f64),
    Array(DynArray),
}

/// [`Results`] of either float type.
pub(crate) struct DynResults {
    pub reduced: Option<DynReduced>,
    pub arrays: [Option<DynArray>; 4],
}

/// `ops` (a [`DynOperands`] whose input is `$x`, the view of variant `$variant`) as the
/// [`Operands`] of `$t`: an operand of another float type is an internal error.
macro_rules! typed_operands {
    ($variant:ident, $t:ty, $x:expr, $ops:expr) => {{
        #[allow(clippy::type_complexity)]
        fn take(v: Option<DynView<'_>>) -> Result<Option<ArrayViewD<'_, $t>>, Error> {
            match v {
                None => Ok(None),
                Some(DynView::$variant(v)) => Ok(Some(v)),
                Some(_) => Err(Error::Internal("operands of different float types")),
            }
        }
        Operands {
            x: $x,
            y: take(Some($ops.y))?.ok_or(Error::Internal("no target"))?,
            w: take($ops.w)?,
            pw: take($ops.pw)?,
            g: take($ops.g)?,
            mask: $ops.mask,
        }
    }};
}

/// [`run`] in the operands' float type, no caller's buffers, no interrupt check.
pub(crate) fn run_dyn(spec: &Spec, ops: DynOperands<'_>) -> Result<DynResults, Error> {
    macro_rules! typed {
        ($variant:ident, $t:ty, $x:expr) => {{
            let r = run(
                spec,
                typed_operands!($variant, $t, $x, ops),
                Dest::default(),
                None,
            )?;
            DynResults {
                reduced: r.reduced.map(|v| match v {
                    Reduced::Scalar(v) => DynReduced::Scalar(v),
                    Reduced::Array(a) => DynReduced::Array(DynArray::$variant(*a)),
                }),
                arrays: r.arrays.map(|a| a.map(|a| DynArray::$variant(*a))),
            }
        }};
    }
    Ok(match ops.x {
        DynView::F32(x) => typed!(F32, f32, x),
        DynView::F64(x) => typed!(F64, f64, x),
    })
}

/// [`run_sums`] in the operands' float type, no interrupt check (`ops.g` is not used).
pub(crate) fn sums_dyn(spec: &Spec, ops: DynOperands<'_>) -> Result<Vec<LossSums>, Error> {
    match ops.x {
        DynView::F32(x) => run_sums(spec, typed_operands!(F32, f32, x, ops), None),
        DynView::F64(x) => run_sums(spec, typed_operands!(F64, f64, x, ops), None),
    }
}

/// A view of `view`'s elements as the executor takes them.
pub(crate) fn dyn_view<T: crate::Float>(view: ArrayViewD<'_, T>) -> DynView<'_> {
    T::dyn_view(view)
}
