//! From a call's description to the CPU executor: the checks, the plan, the finishing of the
//! reduction. Generic over the float type, and instantiated for `f32` and `f64` here, inside
//! the crate: the public generic API reaches it through [`run_dyn`] (its views as a
//! [`DynView`] of one type), the Python bindings through [`run`] for the array's dtype.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::accumulate::LossSums;
use crate::cpu::{
    execute, execute_small, Closed, Dest, Operands, Outcome, OwnedOutputs, Plan, SmallOutcome,
    ValueOut, SMALL_MAX,
};
use crate::error::Error;
use crate::float::{DynArray, DynBuffer, DynView};
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
    ops: Operands<'_, F>,
    dest: Dest<'_, F>,
    interrupt: Interrupt<'_>,
) -> Result<Results<F>, Error> {
    let checked = check(spec, &shapes_of(&ops))?;
    if !spec.outputs.any() {
        return Err(Error::Internal("a call that asks for nothing"));
    }
    if is_small(spec, &ops, checked.kept.as_deref(), &checked.shape) {
        return run_small(spec, &ops, dest);
    }
    run_general(spec, ops, dest, interrupt, checked)
}

/// [`run`] through the executor's walk, for any call.
fn run_general<F: Real>(
    spec: &Spec,
    mut ops: Operands<'_, F>,
    mut dest: Dest<'_, F>,
    interrupt: Interrupt<'_>,
    Checked { kept, shape }: Checked,
) -> Result<Results<F>, Error> {
    let outputs = spec.outputs;
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
        divide_derivatives(&plan, &mut arrays, &mut dest, d);
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

/// Divides the derivatives `plan` computes by `d` (torch's divide-after, for a factor that
/// would be subnormal or overflow), in `arrays` or the caller's buffers in `dest`.
fn divide_derivatives<F: Real>(
    plan: &Plan<F>,
    arrays: &mut OwnedOutputs<F>,
    dest: &mut Dest<'_, F>,
    d: F,
) {
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

/// Whether a checked call is one [`run_small`] takes: at most [`SMALL_MAX`] elements (at
/// least one), over every axis or none (a scalar result, or the input's shape), without a
/// weight, a mask or a per-element grad_output, its input, target and positive-class weight
/// of one shape and contiguous in C order.
fn is_small<F>(
    spec: &Spec,
    ops: &Operands<'_, F>,
    kept: Option<&[usize]>,
    shape: &[usize],
) -> bool {
    let n = ops.x.len();
    let reduces = spec.reduction != Reduction::None;
    let contiguous = |v: &ArrayViewD<'_, F>| v.shape() == ops.x.shape() && v.is_standard_layout();
    (1..=SMALL_MAX).contains(&n)
        && kept.is_none()
        && (!reduces || shape.is_empty())
        && ops.w.is_none()
        && ops.mask.is_none()
        && (reduces || ops.g.is_none() || !spec.outputs.derivatives())
        && spec.outputs.any()
        && contiguous(&ops.x)
        && contiguous(&ops.y)
        && ops.pw.as_ref().is_none_or(contiguous)
}

/// [`run`] for a small call (see [`is_small`]): the same plan, kernel, scales and finishing,
/// computed by [`execute_small`] without the executor's walk (the same bits).
fn run_small<F: Real>(
    spec: &Spec,
    ops: &Operands<'_, F>,
    mut dest: Dest<'_, F>,
) -> Result<Results<F>, Error> {
    let outputs = spec.outputs;
    let reduction = spec.reduction;
    let reduces = reduction != Reduction::None;
    // One slot of every element, each of weight 1: the denominators before the pass.
    let n = ops.x.len() as f64;
    let value = match (outputs.value, reduces) {
        (false, _) => ValueOut::None,
        (true, false) => ValueOut::Elementwise,
        (true, true) => ValueOut::Sum,
    };
    let mut plan = Plan {
        grad: outputs.grad,
        grad_target: outputs.grad_target,
        hess: outputs.hess,
        ..plan_for(spec, None, value)
    };
    plan.kernel = Some(kernel::<F>(&spec.loss, spec.want()));
    let mut divide_after = None;
    if reduces && outputs.derivatives() {
        let g = ops.g.as_ref().and_then(|g| g.iter().next().copied());
        let scale = derivative_scale(reduction, denominator(reduction, n, n), g.unwrap_or(F::ONE));
        plan.grad_scale = scale.factor;
        plan.grad_target_scale = scale.factor * F::from_f64(1.0 - spec.label_smoothing);
        divide_after = scale.divide_after;
    }
    let pw = match &ops.pw {
        Some(pw) => Some(pw.as_slice().ok_or(Error::Internal(
            "a small call's pos_weight is not contiguous",
        ))?),
        None => None,
    };
    if value != ValueOut::Elementwise {
        dest.value = None;
    }
    let SmallOutcome { sum, mut arrays } =
        execute_small(&plan, &ops.x, &ops.y, pw, dest.reborrow())?;
    if let Some(d) = divide_after {
        divide_derivatives(&plan, &mut arrays, &mut dest, d);
    }
    let reduced = (value == ValueOut::Sum)
        .then(|| Reduced::Scalar(reduced_value(reduction, sum, denominator(reduction, n, n))));
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

/// [`run`] in the operands' float type, with the caller's `buffers` (value, gradient, target
/// gradient, second derivative; see [`Dest`]), no interrupt check.
pub(crate) fn run_dyn(
    spec: &Spec,
    ops: DynOperands<'_>,
    buffers: [Option<DynBuffer<'_>>; 4],
) -> Result<DynResults, Error> {
    macro_rules! typed {
        ($variant:ident, $t:ty, $x:expr) => {{
            let [value, grad, grad_target, hess] = buffers.map(|b| match b {
                None => Ok(None),
                Some(DynBuffer::$variant(b)) => Ok(Some(b)),
                Some(_) => Err(Error::Internal("a buffer of another float type")),
            });
            let dest = Dest {
                value: value?,
                grad: grad?,
                grad_target: grad_target?,
                hess: hess?,
            };
            let r = run(spec, typed_operands!($variant, $t, $x, ops), dest, None)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::LossKind;
    use crate::request::Outputs;
    use ndarray::Array1;

    /// A deterministic stream of values in `[0, 1)`.
    fn uniform(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    /// Inputs with the edges each loss meets: 0, 1 and their neighbours for BCE; 0, large,
    /// infinite and NaN logits otherwise; soft and hard targets.
    fn case<F: Real>(loss: &LossKind, n: usize, seed: u64) -> [Array1<F>; 3] {
        let (u, v, p) = (uniform(n, seed), uniform(n, seed + 1), uniform(n, seed + 2));
        let edges: &[f64] = if loss.checks_range() {
            &[0.0, 1.0, 1e-30, 1.0 - 1e-7, 0.5]
        } else {
            &[0.0, 40.0, -40.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN]
        };
        let x = (0..n).map(|i| {
            if i % 11 == 3 {
                edges[i % edges.len()]
            } else if loss.checks_range() {
                u[i]
            } else {
                12.0 * u[i] - 6.0
            }
        });
        let y = (0..n).map(|i| {
            if i % 2 == 0 {
                v[i]
            } else {
                (v[i] > 0.5) as u8 as f64
            }
        });
        let pw = p.iter().map(|a| 0.25 + 3.0 * a);
        [
            x.map(F::from_f64).collect(),
            y.map(F::from_f64).collect(),
            pw.map(F::from_f64).collect(),
        ]
    }

    /// A small call's results through [`run`] (which takes the small path) and through the
    /// general path, as bits.
    fn both_paths<'a, F: Real>(spec: &Spec, ops: impl Fn() -> Operands<'a, F>) -> (Bits, Bits) {
        let checked = check(spec, &shapes_of(&ops())).unwrap();
        assert!(is_small(
            spec,
            &ops(),
            checked.kept.as_deref(),
            &checked.shape
        ));
        let small = bits(run(spec, ops(), Dest::default(), None));
        let general = bits(run_general(spec, ops(), Dest::default(), None, checked));
        (small, general)
    }

    /// A reduced value's bits and each elementwise output's, or the error's message.
    type Bits = Result<(Option<u64>, Vec<Vec<u64>>), String>;

    /// The bits of a call's results (or its error's message).
    fn bits<F: Real>(r: Result<Results<F>, Error>) -> Bits {
        let r = r.map_err(|e| e.to_string())?;
        let reduced = r.reduced.map(|v| match v {
            Reduced::Scalar(v) => v.to_bits(),
            Reduced::Array(_) => u64::MAX,
        });
        let arrays = r
            .arrays
            .iter()
            .map(|a| {
                a.as_ref().map_or_else(Vec::new, |a| {
                    a.iter().map(|v| v.to_f64().to_bits()).collect()
                })
            })
            .collect();
        Ok((reduced, arrays))
    }

    /// The small path gives the general path's bits (and errors) for every loss, reduction,
    /// output set, size up to `SMALL_MAX` (one block and several, short slots and long), with
    /// and without pos_weight, label smoothing and a scalar grad_output (a subnormal one takes
    /// torch's divide-after).
    fn small_path_is_the_general_path<F: Real>() {
        let sizes = [1, 7, 1000, 1025, 4097, SMALL_MAX];
        let reductions = [
            Reduction::None,
            Reduction::Mean,
            Reduction::Sum,
            Reduction::WeightedMean,
        ];
        let output_sets = [
            (true, false, false, false),
            (false, true, false, false),
            (true, true, false, false),
            (false, true, false, true),
            (true, true, true, true),
        ];
        let grad_outputs = [None, Some(0.5), Some(1e-40), Some(f64::INFINITY)];
        let mut runs = 0;
        for loss in LossKind::registry() {
            for (k, &n) in sizes.iter().enumerate() {
                let [x, y, pw] = case::<F>(&loss, n, 7 + k as u64);
                for (r, &reduction) in reductions.iter().enumerate() {
                    for (o, &(value, grad, grad_target, hess)) in output_sets.iter().enumerate() {
                        let mix = k + r + o;
                        let spec = Spec {
                            label_smoothing: if mix % 3 == 1 { 0.1 } else { 0.0 },
                            ..Spec::new(
                                loss,
                                reduction,
                                Outputs {
                                    value,
                                    grad,
                                    grad_target,
                                    hess,
                                },
                            )
                        };
                        let g =
                            Array1::from_elem(1, F::from_f64(grad_outputs[mix % 4].unwrap_or(1.0)));
                        let g = g.into_shape_with_order(()).unwrap().into_dyn();
                        let ops = || Operands {
                            x: x.view().into_dyn(),
                            y: y.view().into_dyn(),
                            w: None,
                            pw: (loss.takes_pos_weight() && mix % 2 == 0)
                                .then(|| pw.view().into_dyn()),
                            g: (reduction != Reduction::None && grad_outputs[mix % 4].is_some())
                                .then(|| g.view()),
                            mask: None,
                        };
                        let (small, general) = both_paths(&spec, ops);
                        assert_eq!(
                            small, general,
                            "{loss} n={n} {reduction:?} {:?} ls={}",
                            spec.outputs, spec.label_smoothing
                        );
                        runs += 1;
                    }
                }
            }
        }
        assert_eq!(runs, 6 * 6 * 4 * 5);
    }

    #[test]
    fn the_small_path_gives_the_general_paths_bits_f32() {
        small_path_is_the_general_path::<f32>();
    }

    #[test]
    fn the_small_path_gives_the_general_paths_bits_f64() {
        small_path_is_the_general_path::<f64>();
    }

    #[test]
    fn a_small_bce_call_out_of_range_is_the_same_error() {
        let x = Array1::from(vec![0.5f32, 1.5, 0.25]).into_dyn();
        let y = Array1::from(vec![0.5f32, 0.5, 2.0]).into_dyn();
        let spec = Spec::new(
            LossKind::Bce,
            Reduction::Mean,
            Outputs {
                value: true,
                ..Outputs::default()
            },
        );
        let ops = || Operands {
            x: x.view(),
            y: y.view(),
            w: None,
            pw: None,
            g: None,
            mask: None,
        };
        let (small, general) = both_paths(&spec, ops);
        assert!(
            small
                .as_ref()
                .is_err_and(|e| e.contains("input") && e.contains("1.5")),
            "{small:?}"
        );
        assert_eq!(small, general);
    }
}
