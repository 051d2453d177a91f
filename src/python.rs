//! The Python extension module `bcers._bcers`: argument conversion only, no math.
//!
//! The thin torch-named API in `python/bcers` resolves `reduction` and the dtype policy and
//! hands this module native-endian arrays of one float dtype (float32 or float64). Each
//! function here borrows them as views, releases the GIL for large inputs, calls the crate,
//! and wraps the result: a Python float for a reduction, a new ndarray otherwise.

use std::sync::Mutex;

use ndarray::{ArrayD, ArrayViewD};
use numpy::{
    Element, PyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyReadwriteArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyKeyboardInterrupt, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

use crate::parallel::Interrupt;
use crate::{entry, Dest, Error, Float, Reduction, SimdLevel};

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

fn dtype_of(input: &Bound<'_, PyAny>) -> PyResult<DType> {
    if input.cast::<PyArrayDyn<f32>>().is_ok() {
        Ok(DType::F32)
    } else if input.cast::<PyArrayDyn<f64>>().is_ok() {
        Ok(DType::F64)
    } else {
        Err(PyTypeError::new_err(
            "input must be a native-endian float32 or float64 ndarray",
        ))
    }
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

/// The borrowed operands of one call.
struct Borrowed<'py, T: Element> {
    x: PyReadonlyArrayDyn<'py, T>,
    y: PyReadonlyArrayDyn<'py, T>,
    w: Option<PyReadonlyArrayDyn<'py, T>>,
    pw: Option<PyReadonlyArrayDyn<'py, T>>,
}

impl<'py, T: Element + Float> Borrowed<'py, T> {
    fn new(
        input: &Bound<'py, PyAny>,
        target: &Bound<'py, PyAny>,
        weight: Option<&Bound<'py, PyAny>>,
        pos_weight: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let x = borrow::<T>(input, "input")?;
        let shape = x.shape().to_vec();
        Ok(Borrowed {
            x,
            y: borrow::<T>(target, "target")?,
            w: borrow_broadcast::<T>(weight, "weight", &shape)?,
            pw: borrow_broadcast::<T>(pos_weight, "pos_weight", &shape)?,
        })
    }

    /// The views.
    fn views(&self) -> entry::Args<'_, T> {
        entry::Args {
            x: self.x.as_array(),
            y: self.y.as_array(),
            w: self.w.as_ref().map(|w| w.as_array()),
            pw: self.pw.as_ref().map(|w| w.as_array()),
        }
    }
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

/// Borrows an output array of ours for writing, as a slice.
fn writable<'py, T: Element + Float>(
    out: &Option<Bound<'py, PyArrayDyn<T>>>,
) -> PyResult<Option<PyReadwriteArrayDyn<'py, T>>> {
    out.as_ref()
        .map(|a| {
            a.try_readwrite()
                .map_err(|e| PyRuntimeError::new_err(format!("output buffer: {e}")))
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

fn forward_t<'py, T: Element + Float>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    reduction: Reduction,
    logits: bool,
) -> PyResult<Py<PyAny>> {
    let borrowed = Borrowed::<T>::new(input, target, weight, pos_weight)?;
    let args = borrowed.views();
    let n = args.x.len();
    let out = if reduction == Reduction::None {
        numpy_output(py, &args.x)?
    } else {
        None
    };
    let mut guard = writable(&out)?;
    let dest = Dest {
        first: slice_of(&mut guard),
        second: None,
    };
    let (value, array) = run(py, n, move |interrupt| {
        entry::forward(logits, args, reduction, dest, interrupt)
    })?;
    drop(guard);
    match value {
        Some(v) => Ok(v.to_f64().into_pyobject(py)?.into_any().unbind()),
        None => output_to_py(py, array, out),
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_t<'py, T: Element + Float>(
    py: Python<'py>,
    grad_output: Option<&Bound<'py, PyAny>>,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    reduction: Reduction,
    logits: bool,
) -> PyResult<Py<PyAny>> {
    let borrowed = Borrowed::<T>::new(input, target, weight, pos_weight)?;
    let g = match grad_output {
        // A reduced loss's grad_output is a scalar: any other shape is that error, whatever
        // its number of axes.
        Some(g) if reduction != Reduction::None => {
            let array = g.cast::<numpy::PyUntypedArray>().ok();
            match array.filter(|a| a.ndim() != 0) {
                Some(a) => {
                    return Err(Error::GradOutputNotScalar {
                        reduction: reduction.name(),
                        shape: a.shape().to_vec(),
                    }
                    .into())
                }
                None => Some(borrow::<T>(g, "grad_output")?),
            }
        }
        g => borrow_broadcast::<T>(g, "grad_output", borrowed.x.shape())?,
    };
    let args = borrowed.views();
    let g = g.as_ref().map(|g| g.as_array());
    let n = args.x.len();
    let out = numpy_output(py, &args.x)?;
    let mut guard = writable(&out)?;
    let dest = Dest {
        first: slice_of(&mut guard),
        second: None,
    };
    let grad = run(py, n, move |interrupt| {
        entry::backward(logits, g, args, reduction, dest, interrupt)
    })?;
    drop(guard);
    output_to_py(py, grad, out)
}

fn value_and_grad_t<'py, T: Element + Float>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    reduction: Reduction,
    logits: bool,
) -> PyResult<Py<PyAny>> {
    let borrowed = Borrowed::<T>::new(input, target, weight, pos_weight)?;
    let args = borrowed.views();
    let n = args.x.len();
    let loss_out = if reduction == Reduction::None {
        numpy_output(py, &args.x)?
    } else {
        None
    };
    let grad_out = numpy_output(py, &args.x)?;
    let (mut loss_guard, mut grad_guard) = (writable(&loss_out)?, writable(&grad_out)?);
    let dest = Dest {
        first: slice_of(&mut loss_guard),
        second: slice_of(&mut grad_guard),
    };
    let (value, losses, grad) = run(py, n, move |interrupt| {
        entry::value_and_grad(logits, args, reduction, dest, interrupt)
    })?;
    drop((loss_guard, grad_guard));
    let loss = match value {
        Some(v) => v.to_f64().into_pyobject(py)?.into_any().unbind(),
        None => output_to_py(py, losses, loss_out)?,
    };
    let grad = output_to_py(py, grad, grad_out)?;
    Ok(PyTuple::new(py, [loss, grad])?.into_any().unbind())
}

/// The loss of `input` against `target`: a float for `mean`/`sum`, an ndarray for `none`.
#[pyfunction]
#[pyo3(signature = (input, target, weight, pos_weight, reduction, logits))]
fn forward<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    reduction: &str,
    logits: bool,
) -> PyResult<Py<PyAny>> {
    let reduction = parse_reduction(reduction)?;
    by_dtype!(
        input,
        forward_t(py, input, target, weight, pos_weight, reduction, logits)
    )
}

/// The gradient of the loss with respect to `input`.
#[pyfunction]
#[pyo3(signature = (grad_output, input, target, weight, pos_weight, reduction, logits))]
#[allow(clippy::too_many_arguments)]
fn backward<'py>(
    py: Python<'py>,
    grad_output: Option<&Bound<'py, PyAny>>,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    reduction: &str,
    logits: bool,
) -> PyResult<Py<PyAny>> {
    let reduction = parse_reduction(reduction)?;
    by_dtype!(
        input,
        backward_t(
            py,
            grad_output,
            input,
            target,
            weight,
            pos_weight,
            reduction,
            logits
        )
    )
}

/// `(loss, gradient)` in one pass.
#[pyfunction]
#[pyo3(signature = (input, target, weight, pos_weight, reduction, logits))]
fn value_and_grad<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    pos_weight: Option<&Bound<'py, PyAny>>,
    reduction: &str,
    logits: bool,
) -> PyResult<Py<PyAny>> {
    let reduction = parse_reduction(reduction)?;
    by_dtype!(
        input,
        value_and_grad_t(py, input, target, weight, pos_weight, reduction, logits)
    )
}

fn stream_read_t<T: Element + Float>(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let (x, y) = (borrow::<T>(x, "x")?, borrow::<T>(y, "y")?);
    let not_contiguous = |_| PyValueError::new_err("x and y must be C-contiguous");
    let (xs, ys) = (
        x.as_slice().map_err(not_contiguous)?,
        y.as_slice().map_err(not_contiguous)?,
    );
    run(py, xs.len(), move |_| crate::stream_read(xs, ys))
}

/// The sum of two contiguous arrays' elements, read once in the crate's chunks and threads:
/// the streaming-read limit benchmarks compare the losses with.
#[pyfunction]
fn _stream_read(py: Python<'_>, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<f64> {
    by_dtype!(x, stream_read_t(py, x, y))
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
    m.add("PARALLEL_MIN", crate::parallel::PARALLEL_MIN)?;
    m.add("MAX_THREADS", crate::MAX_THREADS)?;
    m.add("MAX_NDIM", MAX_NDIM)?;
    m.add_function(wrap_pyfunction!(forward, m)?)?;
    m.add_function(wrap_pyfunction!(backward, m)?)?;
    m.add_function(wrap_pyfunction!(value_and_grad, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_num_threads_env_problem, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(available_simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(_stream_read, m)?)?;
    #[cfg(feature = "gpu")]
    crate::gpu::python::register(m)?;
    Ok(())
}
