//! The Python extension module `bcers._bcers`: argument conversion only, no math.
//!
//! The thin torch-named API in `python/bcers` resolves `reduction` and the dtype policy and
//! hands this module native-endian arrays of one float dtype (float32 or float64). The one
//! entry, [`compute`], borrows them as views, releases the GIL for large inputs, runs the call
//! (the loss named by a string, what is asked by two flags) and wraps the results: a Python
//! float for a reduction, ndarrays otherwise.

use std::sync::Mutex;

use ndarray::{ArrayD, ArrayViewD};
use numpy::npyffi::NPY_TYPES;
use numpy::{
    Element, PyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyReadwriteArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyKeyboardInterrupt, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyString, PyTuple};
use std::ffi::c_int;

use crate::accumulate::LossSums;
use crate::cpu::{Dest, Interrupt, Operands};
use crate::engine;
use crate::error::Error;
use crate::float::Float;
use crate::loss::LossKind;
use crate::math::Real;
use crate::request::{Outputs, Reduction, Spec};
use crate::SimdLevel;

/// The most axes an array handed to this module may have (rust-numpy's views take 32; the
/// Python package drops the axes of length 1 of larger ones first).
pub(crate) const MAX_NDIM: usize = 32;

/// Inputs with at least this many elements are computed with the GIL released; below, the
/// release costs more than it gives.
const DETACH_MIN: usize = 1 << 13;

/// Outputs with at least this many elements are NumPy arrays written in place (see
/// [`numpy_output`]); smaller ones are the crate's, which costs less to make.
const NUMPY_OUTPUT_MIN: usize = 1 << 16;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::ThreadPool(_)
            | Error::GpuUnavailable(_)
            | Error::Gpu(_)
            | Error::GpuAfterFork => PyRuntimeError::new_err(e.to_string()),
            Error::OutOfMemory { .. } => PyMemoryError::new_err(e.to_string()),
            Error::Interrupted => PyKeyboardInterrupt::new_err(e.to_string()),
            _ => PyValueError::new_err(e.to_string()),
        }
    }
}

/// The ValueError for an array of more than [`MAX_NDIM`] axes.
pub(crate) fn too_many_axes(name: &str, ndim: usize) -> PyErr {
    PyValueError::new_err(format!(
        "{name} has {ndim} dimensions; bcers takes at most {MAX_NDIM} that are longer than 1"
    ))
}

/// Borrows `obj` as an array of `T`, copying it first only if its data is misaligned (a view
/// of misaligned memory would be undefined behaviour).
fn borrow<'py, T: Element + Float>(
    obj: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let wrong_type = || {
        PyTypeError::new_err(format!(
            "{name} must be a native-endian {} ndarray",
            T::NAME
        ))
    };
    let mut array = obj
        .cast::<PyArrayDyn<T>>()
        .map_err(|_| wrong_type())?
        .clone();
    // A view of more axes would panic in rust-numpy.
    if array.ndim() > MAX_NDIM {
        return Err(too_many_axes(name, array.ndim()));
    }
    if !array.is_aligned() {
        array = obj
            .call_method0("copy")?
            .cast_into::<PyArrayDyn<T>>()
            .map_err(|_| wrong_type())?;
    }
    array
        .try_readonly()
        .map_err(|e| PyValueError::new_err(format!("{name} cannot be read: {e}")))
}

/// An optional operand that must broadcast to an input of shape `input` (at most
/// [`MAX_NDIM`] axes): one of more axes than the input is the broadcast error it would be.
fn borrow_broadcast<'py, T: Element + Float>(
    obj: Option<&Bound<'py, PyAny>>,
    name: &'static str,
    input: &[usize],
) -> PyResult<Option<PyReadonlyArrayDyn<'py, T>>> {
    let Some(obj) = obj else { return Ok(None) };
    if let Ok(array) = obj.cast::<numpy::PyUntypedArray>() {
        if array.ndim() > input.len() {
            return Err(Error::Broadcast {
                arg: name,
                shape: array.shape().to_vec(),
                input: input.to_vec(),
            }
            .into());
        }
    }
    borrow::<T>(obj, name).map(Some)
}

fn parse_reduction(reduction: &str) -> PyResult<Reduction> {
    Ok(reduction.parse::<Reduction>()?)
}

// The package passes the loss's and the reduction's names as its own string literals, which
// Python interns: those are recognised by identity, without copying their text (the stable ABI
// before Python 3.10 has no borrowed view of a string's UTF-8, and a small call's cost is a
// few microseconds). Any other string is read and parsed.

/// The reduction named by `name`.
fn reduction_named(name: &Bound<'_, PyString>) -> PyResult<Reduction> {
    let py = name.py();
    let known = [
        (intern!(py, "mean"), Reduction::Mean),
        (intern!(py, "sum"), Reduction::Sum),
        (intern!(py, "none"), Reduction::None),
    ];
    match known.iter().find(|(k, _)| name.is(*k)) {
        Some(&(_, reduction)) => Ok(reduction),
        None => parse_reduction(&name.to_cow()?),
    }
}

/// The loss named by `name`, with its parameters.
fn loss_named(name: &Bound<'_, PyString>, alpha: f64, gamma: f64) -> PyResult<LossKind> {
    let py = name.py();
    if name.is(intern!(py, "bce")) {
        Ok(LossKind::Bce)
    } else if name.is(intern!(py, "logits")) {
        Ok(LossKind::BceWithLogits)
    } else if name.is(intern!(py, "focal")) {
        Ok(LossKind::SigmoidFocal { alpha, gamma })
    } else {
        loss_of(&name.to_cow()?, alpha, gamma)
    }
}

/// Runs `f` with the GIL released when the input is large; a long call checks for signals
/// (Ctrl-C) between batches of its work, and an exception a signal handler raised is the call's.
pub(crate) fn run<R: Send>(
    py: Python<'_>,
    n: usize,
    f: impl for<'i> FnOnce(Interrupt<'i>) -> Result<R, Error> + Send,
) -> PyResult<R> {
    if n < DETACH_MIN {
        return Ok(f(None)?);
    }
    let raised: Mutex<Option<PyErr>> = Mutex::new(None);
    let check = || -> Result<(), Error> {
        Python::attach(|py| py.check_signals()).map_err(|e| {
            if let Ok(mut slot) = raised.lock() {
                *slot = Some(e);
            }
            Error::Interrupted
        })
    };
    match py.detach(|| f(Some(&check))) {
        Err(Error::Interrupted) => {
            let stashed = raised.into_inner().ok().flatten();
            Err(stashed.unwrap_or_else(|| Error::Interrupted.into()))
        }
        other => Ok(other?),
    }
}

/// The dtype of `input`: the one float type the call computes in.
enum DType {
    F32,
    F64,
}

/// The input's float type, from its descriptor's type number and byte order (what
/// `cast::<PyArrayDyn<T>>` checks, without NumPy's general type-equivalence call).
fn dtype_of(input: &Bound<'_, PyAny>) -> PyResult<DType> {
    if let Ok(array) = input.cast::<PyUntypedArray>() {
        let dtype = array.dtype();
        if dtype.is_native_byteorder() == Some(true) {
            let num = dtype.num();
            if num == NPY_TYPES::NPY_FLOAT as c_int {
                return Ok(DType::F32);
            }
            if num == NPY_TYPES::NPY_DOUBLE as c_int {
                return Ok(DType::F64);
            }
        }
    }
    Err(PyTypeError::new_err(
        "input must be a native-endian float32 or float64 ndarray",
    ))
}

/// Calls `$f::<T>(args)` with `T` the input's float type.
macro_rules! by_dtype {
    ($input:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match dtype_of($input)? {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
        }
    };
}

/// An output array: NumPy's, for large C-ordered inputs (NumPy asks the kernel for huge pages
/// on large allocations, which saves most of the page faults of a fresh array), else none
/// (the crate allocates one, handed over to NumPy without a copy). Made by `numpy.zeros`,
/// which raises MemoryError when the memory cannot be had.
fn numpy_output<'py, T: Element + Float>(
    py: Python<'py>,
    x: &ArrayViewD<'_, T>,
) -> PyResult<Option<Bound<'py, PyArrayDyn<T>>>> {
    if x.len() < NUMPY_OUTPUT_MIN || !x.is_standard_layout() {
        return Ok(None);
    }
    static ZEROS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let zeros = ZEROS.get_or_try_init(py, || {
        py.import("numpy")?.getattr("zeros").map(Bound::unbind)
    })?;
    let shape = PyTuple::new(py, x.shape())?;
    let array = zeros.bind(py).call1((shape, numpy::dtype::<T>(py)))?;
    array
        .cast_into::<PyArrayDyn<T>>()
        .map(Some)
        .map_err(|_| PyRuntimeError::new_err("numpy.zeros returned an unexpected array"))
}

/// The caller's array for an output (`out`, in the input's float type `T`), when the engine
/// can write into it as it would into one of ours: as many elements as `x` in standard
/// layout, C-contiguous. Otherwise `None`: the call allocates, and the Python package copies
/// the result into the caller's array.
fn caller_output<'py, T: Element + Float>(
    given: Option<Bound<'py, PyAny>>,
    x: &ArrayViewD<'_, T>,
) -> Option<Bound<'py, PyArrayDyn<T>>> {
    if x.len() < NUMPY_OUTPUT_MIN || !x.is_standard_layout() {
        return None;
    }
    let array = given?.cast_into::<PyArrayDyn<T>>().ok()?;
    (array.shape() == x.shape() && array.is_c_contiguous()).then_some(array)
}

/// Borrows an output array of ours for writing, as a slice.
fn writable<'py, T: Element + Float>(
    out: &Option<Bound<'py, PyArrayDyn<T>>>,
) -> PyResult<Option<PyReadwriteArrayDyn<'py, T>>> {
    out.as_ref()
        .map(|a| {
            a.try_readwrite().map_err(|e| {
                PyValueError::new_err(format!("an output array cannot be written: {e}"))
            })
        })
        .transpose()
}

fn slice_of<'b, T: Element>(
    guard: &'b mut Option<PyReadwriteArrayDyn<'_, T>>,
) -> Option<&'b mut [T]> {
    guard.as_mut().and_then(|g| g.as_slice_mut().ok())
}

/// The output: the array the crate allocated, or else ours it wrote into.
fn output_to_py<T: Element + Float>(
    py: Python<'_>,
    allocated: Option<ArrayD<T>>,
    ours: Option<Bound<'_, PyArrayDyn<T>>>,
) -> PyResult<Py<PyAny>> {
    match (allocated, ours) {
        (Some(a), _) => Ok(PyArray::from_owned_array(py, a).into_any().unbind()),
        (None, Some(o)) => Ok(o.into_any().unbind()),
        (None, None) => Err(PyRuntimeError::new_err("bcers: an output went missing")),
    }
}

/// The loss a binding call names: `"bce"`, `"logits"` or `"focal"` (with `alpha` and `gamma`).
pub(crate) fn loss_of(name: &str, alpha: f64, gamma: f64) -> PyResult<LossKind> {
    match name {
        "bce" => Ok(LossKind::Bce),
        "logits" => Ok(LossKind::BceWithLogits),
        "focal" => Ok(LossKind::SigmoidFocal { alpha, gamma }),
        other => Err(PyValueError::new_err(format!("unknown loss '{other}'"))),
    }
}

/// The grad_output of a call: for `none`, an array that broadcasts to the input's shape; for a
/// reduction, a scalar or an array of the reduced loss's shape (the request's checks say which).
fn borrow_grad_output<'py, T: Element + Real>(
    grad_output: Option<&Bound<'py, PyAny>>,
    reduction: Reduction,
    input: &[usize],
) -> PyResult<Option<PyReadonlyArrayDyn<'py, T>>> {
    match grad_output {
        Some(g) if reduction != Reduction::None => {
            if let Ok(a) = g.cast::<numpy::PyUntypedArray>() {
                if a.ndim() > MAX_NDIM {
                    return Err(Error::GradOutputNotScalar {
                        reduction: reduction.name(),
                        shape: a.shape().to_vec(),
                    }
                    .into());
                }
            }
            Ok(Some(borrow::<T>(g, "grad_output")?))
        }
        g => borrow_broadcast::<T>(g, "grad_output", input),
    }
}

/// The mask: a bool ndarray that broadcasts to the input's shape.
fn borrow_mask<'py>(
    mask: Option<&Bound<'py, PyAny>>,
    input: &[usize],
) -> PyResult<Option<PyReadonlyArrayDyn<'py, bool>>> {
    let Some(obj) = mask else { return Ok(None) };
    let array = obj
        .cast::<PyArrayDyn<bool>>()
        .map_err(|_| PyTypeError::new_err("mask must be a bool ndarray"))?;
    if array.ndim() > input.len() {
        return Err(Error::Broadcast {
            arg: "mask",
            shape: array.shape().to_vec(),
            input: input.to_vec(),
        }
        .into());
    }
    array
        .try_readonly()
        .map_err(|e| PyValueError::new_err(format!("mask cannot be read: {e}")))
        .map(Some)
}

/// The operands of one call, as Python objects.
struct Args<'a, 'py> {
    input: &'a Bound<'py, PyAny>,
    target: &'a Bound<'py, PyAny>,
    weight: Option<&'a Bound<'py, PyAny>>,
    pos_weight: Option<&'a Bound<'py, PyAny>>,
    grad_output: Option<&'a Bound<'py, PyAny>>,
    mask: Option<&'a Bound<'py, PyAny>>,
    /// The caller's arrays for the elementwise outputs (value, gradient, target gradient,
    /// second derivative), each `None` or an array.
    out: Option<&'a Bound<'py, PyTuple>>,
}

/// One call in the input's float type `T`: the outputs asked for, in order (values, gradient,
/// target gradient, second derivative), `None` for the others.
fn compute_t<'py, T: Element + Real>(
    py: Python<'py>,
    spec: &Spec,
    args: &Args<'_, 'py>,
) -> PyResult<[Option<Py<PyAny>>; 4]> {
    let x = borrow::<T>(args.input, "input")?;
    let shape = x.shape();
    let y = borrow::<T>(args.target, "target")?;
    let w = borrow_broadcast::<T>(args.weight, "weight", shape)?;
    let pw = borrow_broadcast::<T>(args.pos_weight, "pos_weight", shape)?;
    let g = borrow_grad_output::<T>(args.grad_output, spec.reduction, shape)?;
    let mask = borrow_mask(args.mask, shape)?;
    let ops = Operands {
        x: x.as_array(),
        y: y.as_array(),
        w: w.as_ref().map(|a| a.as_array()),
        pw: pw.as_ref().map(|a| a.as_array()),
        g: g.as_ref().map(|a| a.as_array()),
        mask: mask.as_ref().map(|a| a.as_array()),
    };
    let n = ops.x.len();
    let o = spec.outputs;
    let elementwise = o.value && spec.reduction == Reduction::None;
    let wanted = [elementwise, o.grad, o.grad_target, o.hess];
    let mut ours: [Option<Bound<'py, PyArrayDyn<T>>>; 4] = Default::default();
    for (k, (our, want)) in ours.iter_mut().zip(wanted).enumerate() {
        if want {
            let given = match args.out {
                Some(out) => Some(out.get_item(k)?).filter(|a| !a.is_none()),
                None => None,
            };
            *our = match caller_output(given, &ops.x) {
                Some(array) => Some(array),
                None => numpy_output(py, &ops.x)?,
            };
        }
    }
    let [g0, g1, g2, g3] = &ours;
    let mut guards = [writable(g0)?, writable(g1)?, writable(g2)?, writable(g3)?];
    let [g0, g1, g2, g3] = &mut guards;
    let dest = Dest {
        value: slice_of(g0),
        grad: slice_of(g1),
        grad_target: slice_of(g2),
        hess: slice_of(g3),
    };
    let results = run(py, n, move |interrupt| {
        engine::run(spec, ops, dest, interrupt)
    })?;
    drop(guards);
    let engine::Results { reduced, arrays } = results;
    let mut out: [Option<Py<PyAny>>; 4] = Default::default();
    for (k, ((array, our), want)) in arrays.into_iter().zip(ours).zip(wanted).enumerate() {
        if want {
            out[k] = Some(output_to_py(py, array.map(|a| *a), our)?);
        }
    }
    out[0] = match reduced {
        Some(engine::Reduced::Scalar(v)) => Some(v.into_pyobject(py)?.into_any().unbind()),
        Some(engine::Reduced::Array(a)) => {
            Some(PyArray::from_owned_array(py, *a).into_any().unbind())
        }
        None => out[0].take(),
    };
    Ok(out)
}

/// One call of a loss: `loss` (`"bce"`, `"logits"`, `"focal"` with `alpha` and `gamma`) of
/// `input` against `target`. Without `grad_target` and `hess`, returns the loss (`value`; a
/// float for a full reduction, an ndarray otherwise), its input gradient (`grad`), or both as
/// a tuple; with either, the 4-tuple `(value, grad, grad_target, hess)` with `None` for what
/// was not asked. The arrays are native-endian float32 or float64 ndarrays of one dtype, the
/// mask a bool ndarray (the Python package sees to it). `out`, if given, holds four items
/// (value, grad, grad_target, hess), each `None` or an array of the caller's: a wanted
/// elementwise output is written into its array, and that array returned, where it is of the
/// input's dtype and shape, C-contiguous, writeable and not overlapping an operand (else an
/// error), and the call large enough to use NumPy arrays for its outputs; otherwise the output
/// is allocated as usual (the Python package then copies it).
#[pyfunction]
#[pyo3(signature = (
    loss, alpha, gamma, input, target, weight, pos_weight, grad_output, reduction, value, grad,
    label_smoothing=0.0, mask=None, axis=None, keepdims=false, grad_target=false, hess=false,
    out=None
))]
#[allow(clippy::too_many_arguments)]
fn compute<'py>(
    py: Python<'py>,
    loss: &Bound<'py, PyString>,
    alpha: f64,
    gamma: f64,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    grad_output: Option<&Bound<'py, PyAny>>,
    reduction: &Bound<'py, PyString>,
    value: bool,
    grad: bool,
    label_smoothing: f64,
    mask: Option<&Bound<'py, PyAny>>,
    axis: Option<Vec<isize>>,
    keepdims: bool,
    grad_target: bool,
    hess: bool,
    out: Option<&Bound<'py, PyTuple>>,
) -> PyResult<Py<PyAny>> {
    if out.is_some_and(|o| o.len() != 4) {
        return Err(PyValueError::new_err(
            "out must hold four items: value, grad, grad_target, hess",
        ));
    }
    let outputs = Outputs {
        value,
        grad,
        grad_target,
        hess,
    };
    if !outputs.any() {
        return Err(PyValueError::new_err(
            "a call must ask for at least one output",
        ));
    }
    let spec = Spec {
        loss: loss_named(loss, alpha, gamma)?,
        reduction: reduction_named(reduction)?,
        label_smoothing,
        axis,
        keepdims,
        outputs,
    };
    let args = Args {
        input,
        target,
        weight,
        pos_weight,
        grad_output,
        mask,
        out,
    };
    let out = by_dtype!(input, compute_t(py, &spec, &args))?;
    let [v, g, gt, h] = out;
    if grad_target || hess {
        let none = || py.None();
        let items = [v, g, gt, h].map(|o| o.unwrap_or_else(none));
        return Ok(PyTuple::new(py, items)?.into_any().unbind());
    }
    match (v, g) {
        (Some(v), Some(g)) => Ok(PyTuple::new(py, [v, g])?.into_any().unbind()),
        (Some(v), None) => Ok(v),
        (None, Some(g)) => Ok(g),
        (None, None) => Err(PyRuntimeError::new_err(
            "bcers: a call that asks for nothing",
        )),
    }
}

/// The exact sums of one call in the input's float type `T` (see [`sums`]).
fn sums_t<'py, T: Element + Real>(
    py: Python<'py>,
    spec: &Spec,
    args: &Args<'_, 'py>,
) -> PyResult<Vec<LossSums>> {
    let x = borrow::<T>(args.input, "input")?;
    let shape = x.shape().to_vec();
    let y = borrow::<T>(args.target, "target")?;
    let w = borrow_broadcast::<T>(args.weight, "weight", &shape)?;
    let pw = borrow_broadcast::<T>(args.pos_weight, "pos_weight", &shape)?;
    let mask = borrow_mask(args.mask, &shape)?;
    let ops = Operands {
        x: x.as_array(),
        y: y.as_array(),
        w: w.as_ref().map(|a| a.as_array()),
        pw: pw.as_ref().map(|a| a.as_array()),
        g: None,
        mask: mask.as_ref().map(|a| a.as_array()),
    };
    let n = ops.x.len();
    run(py, n, move |interrupt| {
        engine::run_sums(spec, ops, interrupt)
    })
}

/// The exact sums of a loss (as `compute`'s first arguments) over the kept elements, one per
/// slot of the reduction over `axis` (all axes: one), in C order of the reduced shape.
#[allow(clippy::too_many_arguments)]
fn sums_of<'py>(
    py: Python<'py>,
    loss: &Bound<'py, PyString>,
    alpha: f64,
    gamma: f64,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    label_smoothing: f64,
    mask: Option<&Bound<'py, PyAny>>,
    axis: Option<Vec<isize>>,
) -> PyResult<Vec<LossSums>> {
    let spec = Spec {
        loss: loss_named(loss, alpha, gamma)?,
        reduction: Reduction::Sum,
        label_smoothing,
        axis,
        keepdims: false,
        outputs: Outputs {
            value: true,
            ..Outputs::default()
        },
    };
    let args = Args {
        input,
        target,
        weight,
        pos_weight,
        grad_output: None,
        mask,
        out: None,
    };
    by_dtype!(input, sums_t(py, &spec, &args))
}

/// [`sums_of`] as the bytes of `LossSums` (`bcers::accumulate::LossSums::to_bytes`).
#[pyfunction]
#[pyo3(signature = (
    loss, alpha, gamma, input, target, weight, pos_weight, label_smoothing=0.0, mask=None,
    axis=None
))]
#[allow(clippy::too_many_arguments)]
fn sums<'py>(
    py: Python<'py>,
    loss: &Bound<'py, PyString>,
    alpha: f64,
    gamma: f64,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    label_smoothing: f64,
    mask: Option<&Bound<'py, PyAny>>,
    axis: Option<Vec<isize>>,
) -> PyResult<Vec<Py<PyBytes>>> {
    let states = sums_of(
        py,
        loss,
        alpha,
        gamma,
        input,
        target,
        weight,
        pos_weight,
        label_smoothing,
        mask,
        axis,
    )?;
    Ok(states
        .iter()
        .map(|s| PyBytes::new(py, &s.to_bytes()).unbind())
        .collect())
}

/// [`sums_of`] over all axes, added to `into`: a stream of batches neither writes nor reads
/// bytes per batch. Nothing is added when the call fails.
#[pyfunction]
#[pyo3(signature = (
    into, loss, alpha, gamma, input, target, weight, pos_weight, label_smoothing=0.0, mask=None
))]
#[allow(clippy::too_many_arguments)]
fn sums_into<'py>(
    py: Python<'py>,
    into: &Bound<'py, PySums>,
    loss: &Bound<'py, PyString>,
    alpha: f64,
    gamma: f64,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    label_smoothing: f64,
    mask: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    let states = sums_of(
        py,
        loss,
        alpha,
        gamma,
        input,
        target,
        weight,
        pos_weight,
        label_smoothing,
        mask,
        None,
    )?;
    let mut into = into.try_borrow_mut()?;
    for state in &states {
        into.inner.merge(state);
    }
    Ok(())
}

/// The sum of a float64 array's elements, exact and then rounded once to float64 (the same
/// bits in any order: the weights' sum of `log_loss`, as `bcers.dask` sums them by parts).
#[pyfunction]
fn exact_sum(py: Python<'_>, values: PyReadonlyArrayDyn<'_, f64>) -> f64 {
    let view = values.as_array();
    py.detach(|| {
        let mut sum = crate::accumulate::ExactSum::new();
        match view.as_slice_memory_order() {
            Some(slice) => sum.add_f64_block(slice),
            None => view.iter().for_each(|&v| sum.add(v)),
        }
        sum.finish()
    })
}

/// The exact sums of a stream of batches (`bcers.metrics.LossMetric`'s state), merged in
/// place: `LossSums`, with its bytes for pickling and for other processes.
#[pyclass(module = "bcers._bcers", name = "Sums")]
#[derive(Default)]
pub(crate) struct PySums {
    inner: LossSums,
}

#[pymethods]
impl PySums {
    /// Empty sums.
    #[new]
    fn new() -> Self {
        PySums::default()
    }

    /// The sums `to_bytes` wrote (ValueError for bytes that are not sums).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(PySums {
            inner: decode_sums(data)?,
        })
    }

    /// The sums as bytes (`LossSums::to_bytes`).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// Adds `other`'s sums (it may be these sums themselves).
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, Self>) -> PyResult<()> {
        let add = other.try_borrow()?.inner.clone();
        slf.try_borrow_mut()?.inner.merge(&add);
        Ok(())
    }

    /// `(values, weights, count)`: the two sums correctly rounded to float64, the count.
    fn finish(&self) -> (f64, f64, u64) {
        finished(&self.inner)
    }
}

/// `(values, weights, count)` of `sums`: the two sums correctly rounded to float64, the count.
fn finished(sums: &LossSums) -> (f64, f64, u64) {
    (sums.values.finish(), sums.weights.finish(), sums.count)
}

fn decode_sums(bytes: &[u8]) -> PyResult<LossSums> {
    LossSums::from_bytes(bytes).map_err(|e| PyValueError::new_err(format!("bcers: {e}")))
}

/// The bytes of the merge of the `LossSums` given as bytes (none: empty sums).
#[pyfunction]
fn sums_merge<'py>(py: Python<'py>, states: Vec<Vec<u8>>) -> PyResult<Bound<'py, PyBytes>> {
    let mut total = LossSums::new();
    for s in &states {
        total.merge(&decode_sums(s)?);
    }
    Ok(PyBytes::new(py, &total.to_bytes()))
}

/// `(values, weights, count)` of `LossSums` given as bytes: the two sums correctly rounded to
/// float64, the count an int.
#[pyfunction]
fn sums_finish(state: &[u8]) -> PyResult<(f64, f64, u64)> {
    Ok(finished(&decode_sums(state)?))
}

/// Checks a loss's parameters and a label smoothing (ValueError naming the bad one).
#[pyfunction]
#[pyo3(signature = (loss, alpha, gamma, label_smoothing=0.0))]
fn check_loss(loss: &str, alpha: f64, gamma: f64, label_smoothing: f64) -> PyResult<()> {
    loss_of(loss, alpha, gamma)?.validate()?;
    Ok(crate::request::check_label_smoothing(label_smoothing)?)
}

/// Sets the number of threads large calls use (the Python package checks the argument).
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    Ok(crate::set_num_threads(n)?)
}

/// The value of `BCERS_NUM_THREADS` when it is set to something unusable (it is then ignored).
#[pyfunction]
fn _num_threads_env_problem() -> Option<String> {
    crate::num_threads_from_env().err()
}

/// The number of threads large calls use.
#[pyfunction]
fn get_num_threads() -> usize {
    crate::get_num_threads()
}

/// The SIMD level the kernels run at.
#[pyfunction]
fn simd_level() -> &'static str {
    crate::simd_level().name()
}

/// Every SIMD level this processor can run, slowest first.
#[pyfunction]
fn available_simd_levels() -> Vec<&'static str> {
    crate::available_simd_levels()
        .into_iter()
        .map(SimdLevel::name)
        .collect()
}

/// Runs the kernels at the named level (`None`: the best this processor has).
#[pyfunction]
#[pyo3(signature = (level=None))]
fn set_simd_level(level: Option<&str>) -> PyResult<()> {
    let level = match level {
        None => None,
        Some(name) => Some(SimdLevel::from_name(name).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown SIMD level '{name}'; expected one of scalar, baseline, avx2, avx512"
            ))
        })?),
    };
    Ok(crate::set_simd_level(level)?)
}

/// The native part of bcers.
#[pymodule]
fn _bcers(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PARALLEL_MIN", crate::cpu::PARALLEL_MIN)?;
    m.add("MAX_THREADS", crate::MAX_THREADS)?;
    m.add("MAX_NDIM", MAX_NDIM)?;
    m.add_function(wrap_pyfunction!(compute, m)?)?;
    m.add_function(wrap_pyfunction!(check_loss, m)?)?;
    m.add_function(wrap_pyfunction!(sums, m)?)?;
    m.add_function(wrap_pyfunction!(sums_into, m)?)?;
    m.add_function(wrap_pyfunction!(exact_sum, m)?)?;
    m.add_class::<PySums>()?;
    m.add_function(wrap_pyfunction!(sums_merge, m)?)?;
    m.add_function(wrap_pyfunction!(sums_finish, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_num_threads_env_problem, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(available_simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    #[cfg(feature = "gpu")]
    crate::gpu::python::register(m)?;
    Ok(())
}
