//! From a call's description to the CPU executor: the checks, the plan, the finishing of the
//! reduction. Generic over the float type, and instantiated for `f32` and `f64` here, inside
//! the crate: the public generic API reaches it through [`run_dyn`] (its views as a
//! [`DynView`] of one type), the Python bindings through [`run`] for the array's dtype.

use ndarray::{ArrayD, ArrayViewD};

use crate::cpu::{execute, Dest, Operands, Plan, ValueOut};
use crate::error::Error;
use crate::float::{DynArray, DynView};
use crate::loss::{kernel, Params};
use crate::math::Real;
use crate::request::{check, derivative_scale, reduced_value, Reduction, Shapes, Spec};

pub(crate) use crate::cpu::Interrupt;

/// What a call returns (what it asked for).
#[derive(Debug)]
pub(crate) struct Results<F> {
    /// The reduced value (`mean`, `sum`), if the value was asked for.
    pub reduced: Option<f64>,
    /// The elementwise values (`none`), if asked for and not written to the caller's buffer.
    pub value: Option<ArrayD<F>>,
    /// The input gradient, if asked for and not written to the caller's buffer.
    pub grad: Option<ArrayD<F>>,
}

/// Runs `spec` over `ops` (`ops.g` is the grad_output: a scalar for `mean` and `sum`, `None`
/// for 1), outputs into `dest` where they can go.
pub(crate) fn run<F: Real>(
    spec: &Spec,
    mut ops: Operands<'_, F>,
    mut dest: Dest<'_, F>,
    interrupt: Interrupt<'_>,
) -> Result<Results<F>, Error> {
    let shapes = Shapes {
        input: ops.x.shape(),
        target: ops.y.shape(),
        weight: ops.w.as_ref().map(|v| v.shape()),
        pos_weight: ops.pw.as_ref().map(|v| v.shape()),
        grad_output: ops.g.as_ref().map(|v| v.shape()),
    };
    check(spec, &shapes)?;
    if !(spec.value || spec.grad) {
        return Err(Error::Internal("a call that asks for nothing"));
    }
    let n = ops.x.len();
    // A reduced call's grad_output is a scalar factor; `none`'s is a per-element operand.
    let grad_output = if spec.reduction == Reduction::None {
        F::ONE
    } else {
        ops.g
            .take()
            .and_then(|g| g.iter().next().copied())
            .unwrap_or(F::ONE)
    };
    if !spec.grad {
        ops.g = None;
    }
    let scale = derivative_scale(spec.reduction, n, grad_output);
    let plan = Plan {
        kernel: kernel::<F>(&spec.loss, spec.want()),
        params: Params::of(&spec.loss),
        checks_range: spec.loss.checks_range(),
        value: match (spec.value, spec.reduction) {
            (false, _) => ValueOut::None,
            (true, Reduction::None) => ValueOut::Elementwise,
            (true, _) => ValueOut::Sum,
        },
        grad: spec.grad,
        grad_scale: scale.factor,
    };
    if plan.value != ValueOut::Elementwise {
        dest.value = None;
    }
    let out = execute(
        &plan,
        &ops,
        Dest {
            value: dest.value,
            grad: dest.grad.as_deref_mut(),
        },
        interrupt,
    )?;
    let mut grad = out.grad;
    if let Some(n) = scale.divide_after {
        match (grad.as_mut(), dest.grad) {
            (Some(array), _) => array.mapv_inplace(|v| v / n),
            (None, Some(buffer)) => buffer.iter_mut().for_each(|v| *v = *v / n),
            (None, None) => {}
        }
    }
    Ok(Results {
        reduced: (plan.value == ValueOut::Sum).then(|| reduced_value(spec.reduction, out.sum, n)),
        value: out.value,
        grad,
    })
}

/// The operands of a call, of either float type (all of one).
pub(crate) struct DynOperands<'a> {
    pub x: DynView<'a>,
    pub y: DynView<'a>,
    pub w: Option<DynView<'a>>,
    pub pw: Option<DynView<'a>>,
    pub g: Option<DynView<'a>>,
}

/// [`Results`] of either float type.
pub(crate) struct DynResults {
    pub reduced: Option<f64>,
    pub value: Option<DynArray>,
    pub grad: Option<DynArray>,
}

/// [`run`] in the operands' float type, no caller's buffers, no interrupt check.
pub(crate) fn run_dyn(spec: &Spec, ops: DynOperands<'_>) -> Result<DynResults, Error> {
    macro_rules! typed {
        ($variant:ident, $t:ty, $x:expr) => {{
            #[allow(clippy::type_complexity)]
            fn take(v: Option<DynView<'_>>) -> Result<Option<ArrayViewD<'_, $t>>, Error> {
                match v {
                    None => Ok(None),
                    Some(DynView::$variant(v)) => Ok(Some(v)),
                    Some(_) => Err(Error::Internal("operands of different float types")),
                }
            }
            let ops = Operands {
                x: $x,
                y: take(Some(ops.y))?.ok_or(Error::Internal("no target"))?,
                w: take(ops.w)?,
                pw: take(ops.pw)?,
                g: take(ops.g)?,
            };
            let r = run(spec, ops, Dest::default(), None)?;
            DynResults {
                reduced: r.reduced,
                value: r.value.map(DynArray::$variant),
                grad: r.grad.map(DynArray::$variant),
            }
        }};
    }
    Ok(match ops.x {
        DynView::F32(x) => typed!(F32, f32, x),
        DynView::F64(x) => typed!(F64, f64, x),
    })
}

/// A view of `view`'s elements as the executor takes them.
pub(crate) fn dyn_view<T: crate::Float>(view: ArrayViewD<'_, T>) -> DynView<'_> {
    T::dyn_view(view)
}
