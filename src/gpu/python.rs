//! The GPU part of `bcers._bcers` (features `python` and `gpu`): the class `bcers.gpu.Array`
//! and the `_gpu_*` functions `python/bcers/gpu.py` calls. Argument conversion only.

use numpy::{PyArray, PyArrayDescr, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::{Gpu, GpuArray, GpuLoss};
use crate::error::{LossKind, Shape};
use crate::python::{run, too_many_axes, MAX_NDIM};
use crate::Reduction;

/// A float32 array on the GPU (`bcers.gpu.Array`): made by `bcers.gpu.asarray`, returned by
/// the losses and gradients computed there.
#[pyclass(frozen, name = "Array", module = "bcers.gpu")]
pub(crate) struct PyGpuArray {
    inner: GpuArray,
}

impl PyGpuArray {
    fn download<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let array = py.detach(|| self.inner.to_array())?;
        Ok(PyArray::from_owned_array(py, array))
    }
}

#[pymethods]
impl PyGpuArray {
    /// The shape, as a tuple.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.shape())
    }

    /// Always float32.
    #[getter]
    fn dtype<'py>(&self, py: Python<'py>) -> Bound<'py, PyArrayDescr> {
        numpy::dtype::<f32>(py)
    }

    /// The number of elements.
    #[getter]
    fn size(&self) -> usize {
        self.inner.len()
    }

    /// The number of axes.
    #[getter]
    fn ndim(&self) -> usize {
        self.inner.ndim()
    }

    /// A NumPy copy of the array (waits for the GPU).
    fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        self.download(py)
    }

    /// NumPy's conversion protocol: `np.asarray(a)` downloads the array.
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if copy == Some(false) {
            return Err(PyValueError::new_err(
                "a bcers.gpu.Array lives on the GPU: it cannot be viewed as a NumPy array \
                 without a copy",
            ));
        }
        let array = self.download(py)?.into_any();
        match dtype {
            Some(dtype) if !dtype.is_none() => array.call_method1("astype", (dtype,)),
            _ => Ok(array),
        }
    }

    fn __len__(&self) -> PyResult<usize> {
        self.inner
            .shape()
            .first()
            .copied()
            .ok_or_else(|| PyTypeError::new_err("len() of unsized object"))
    }

    fn __repr__(&self) -> String {
        format!(
            "bcers.gpu.Array(shape={}, dtype=float32, device='{}')",
            Shape(self.inner.shape()),
            self.inner.gpu().adapter().name
        )
    }
}

/// Whether a GPU adapter can be used (opens the device on first use).
#[pyfunction]
fn _gpu_is_available(py: Python<'_>) -> bool {
    py.detach(super::is_available)
}

/// The adapter: name, backend, device type, driver.
#[pyfunction]
fn _gpu_adapter_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let gpu = py.detach(Gpu::get)?;
    let info = gpu.adapter();
    let d = PyDict::new(py);
    d.set_item("name", info.name)?;
    d.set_item("backend", info.backend)?;
    d.set_item("device_type", info.device_type)?;
    d.set_item("driver", info.driver)?;
    d.set_item("driver_info", info.driver_info)?;
    d.set_item("buffer_elements", info.chunk_elements)?;
    Ok(d)
}

/// Uploads a float32 ndarray; `shape`, when given, is the shape the array gets on the device
/// (the same elements: the Python package drops an array's axes of length 1 when it has more
/// than 32, and gives them back here).
#[pyfunction]
#[pyo3(signature = (array, shape=None))]
fn _gpu_asarray(
    py: Python<'_>,
    array: &Bound<'_, PyAny>,
    shape: Option<Vec<usize>>,
) -> PyResult<PyGpuArray> {
    let array = array
        .cast::<PyArrayDyn<f32>>()
        .map_err(|_| PyTypeError::new_err("expected a float32 ndarray"))?;
    if array.ndim() > MAX_NDIM {
        return Err(too_many_axes("array", array.ndim()));
    }
    let readonly = array
        .try_readonly()
        .map_err(|e| PyValueError::new_err(format!("the array cannot be read: {e}")))?;
    let view = readonly.as_array();
    let inner = py.detach(|| {
        let uploaded = Gpu::get().and_then(|gpu| GpuArray::from_view(&gpu, view))?;
        match shape {
            Some(shape) => uploaded.reshaped(shape),
            None => Ok(uploaded),
        }
    })?;
    Ok(PyGpuArray { inner })
}

type Arg<'a, 'py> = Option<&'a Bound<'py, PyGpuArray>>;

/// The loss a `logits` flag names, and the pos_weight it takes (BCE takes none).
fn kind_of(logits: bool, pw: Option<&GpuArray>) -> (LossKind, Option<&GpuArray>) {
    if logits {
        (LossKind::BceWithLogits, pw)
    } else {
        (LossKind::Bce, None)
    }
}

fn get<'a>(a: Arg<'a, '_>) -> Option<&'a GpuArray> {
    a.map(|a| &a.get().inner)
}

fn loss_to_py(py: Python<'_>, loss: GpuLoss) -> PyResult<Py<PyAny>> {
    Ok(match loss {
        GpuLoss::Reduced(v) => f64::from(v).into_pyobject(py)?.into_any().unbind(),
        GpuLoss::Elementwise(a) => Py::new(py, PyGpuArray { inner: a })?.into_any(),
    })
}

/// The loss on the GPU: a float for `mean`/`sum`, an Array for `none`.
#[pyfunction]
#[pyo3(signature = (input, target, weight, pos_weight, reduction, logits))]
fn _gpu_forward(
    py: Python<'_>,
    input: &Bound<'_, PyGpuArray>,
    target: &Bound<'_, PyGpuArray>,
    weight: Arg<'_, '_>,
    pos_weight: Arg<'_, '_>,
    reduction: &str,
    logits: bool,
) -> PyResult<Py<PyAny>> {
    let reduction: Reduction = reduction.parse()?;
    let (x, y, w, pw) = (
        &input.get().inner,
        &target.get().inner,
        get(weight),
        get(pos_weight),
    );
    let (kind, pw) = kind_of(logits, pw);
    let loss = run(py, usize::MAX, |interrupt| {
        super::forward(kind, x, y, w, pw, reduction, interrupt)
    })?;
    loss_to_py(py, loss)
}

/// The gradient on the GPU, as an Array.
#[pyfunction]
#[pyo3(signature = (grad_output, input, target, weight, pos_weight, reduction, logits))]
#[allow(clippy::too_many_arguments)]
fn _gpu_backward(
    py: Python<'_>,
    grad_output: Arg<'_, '_>,
    input: &Bound<'_, PyGpuArray>,
    target: &Bound<'_, PyGpuArray>,
    weight: Arg<'_, '_>,
    pos_weight: Arg<'_, '_>,
    reduction: &str,
    logits: bool,
) -> PyResult<PyGpuArray> {
    let reduction: Reduction = reduction.parse()?;
    let (g, x, y, w, pw) = (
        get(grad_output),
        &input.get().inner,
        &target.get().inner,
        get(weight),
        get(pos_weight),
    );
    let (kind, pw) = kind_of(logits, pw);
    let inner = run(py, usize::MAX, |interrupt| {
        super::backward(kind, g, x, y, w, pw, reduction, interrupt)
    })?;
    Ok(PyGpuArray { inner })
}

/// `(loss, gradient)` on the GPU, in one pass.
#[pyfunction]
#[pyo3(signature = (input, target, weight, pos_weight, reduction, logits))]
fn _gpu_value_and_grad<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyGpuArray>,
    target: &Bound<'py, PyGpuArray>,
    weight: Arg<'_, 'py>,
    pos_weight: Arg<'_, 'py>,
    reduction: &str,
    logits: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let reduction: Reduction = reduction.parse()?;
    let (x, y, w, pw) = (
        &input.get().inner,
        &target.get().inner,
        get(weight),
        get(pos_weight),
    );
    let (kind, pw) = kind_of(logits, pw);
    let (loss, grad) = run(py, usize::MAX, |interrupt| {
        super::value_and_grad(kind, x, y, w, pw, reduction, interrupt)
    })?;
    let loss = loss_to_py(py, loss)?;
    let grad = Py::new(py, PyGpuArray { inner: grad })?.into_any();
    PyTuple::new(py, [loss, grad])
}

/// Adds the class and functions to `bcers._bcers`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGpuArray>()?;
    m.add_function(wrap_pyfunction!(_gpu_is_available, m)?)?;
    m.add_function(wrap_pyfunction!(_gpu_adapter_info, m)?)?;
    m.add_function(wrap_pyfunction!(_gpu_asarray, m)?)?;
    m.add_function(wrap_pyfunction!(_gpu_forward, m)?)?;
    m.add_function(wrap_pyfunction!(_gpu_backward, m)?)?;
    m.add_function(wrap_pyfunction!(_gpu_value_and_grad, m)?)?;
    Ok(())
}
