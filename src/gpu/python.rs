//! The GPU part of `bcers._bcers` (features `python` and `gpu`): the class `bcers.gpu.Array`
//! and the `_gpu_*` functions `python/bcers/gpu.py` calls. Argument conversion only.

use numpy::{PyArray, PyArrayDescr, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::{Gpu, GpuArray, GpuLoss};
use crate::error::Shape;
use crate::python::{loss_of, run, too_many_axes, MAX_NDIM};
use crate::request::{Outputs, Spec};

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

fn get<'a>(a: Arg<'a, '_>) -> Option<&'a GpuArray> {
    a.map(|a| &a.get().inner)
}

fn loss_to_py(py: Python<'_>, loss: GpuLoss) -> PyResult<Py<PyAny>> {
    Ok(match loss {
        GpuLoss::Reduced(v) => f64::from(v).into_pyobject(py)?.into_any().unbind(),
        GpuLoss::Elementwise(a) | GpuLoss::Axes(a) => {
            Py::new(py, PyGpuArray { inner: a })?.into_any()
        }
    })
}

/// One call on the GPU, as `bcers._bcers.compute`: without `grad_target` and `hess`, the
/// loss (a float for `mean`/`sum` over every axis, an Array for `none`, per axis or with
/// `keepdims`), the gradient (an Array), or both as
/// a tuple; with either, the 4-tuple `(value, grad, grad_target, hess)` with `None` for what
/// was not asked.
#[pyfunction]
#[pyo3(signature = (
    loss, alpha, gamma, input, target, weight, pos_weight, grad_output, reduction, value, grad,
    label_smoothing=0.0, grad_target=false, hess=false, mask=None, axis=None, keepdims=false
))]
#[allow(clippy::too_many_arguments)]
fn _gpu_compute<'py>(
    py: Python<'py>,
    loss: &str,
    alpha: f64,
    gamma: f64,
    input: &Bound<'py, PyGpuArray>,
    target: &Bound<'py, PyGpuArray>,
    weight: Arg<'_, 'py>,
    pos_weight: Arg<'_, 'py>,
    grad_output: Arg<'_, 'py>,
    reduction: &str,
    value: bool,
    grad: bool,
    label_smoothing: f64,
    grad_target: bool,
    hess: bool,
    mask: Arg<'_, 'py>,
    axis: Option<Vec<isize>>,
    keepdims: bool,
) -> PyResult<Py<PyAny>> {
    let mut spec = Spec::new(
        loss_of(loss, alpha, gamma)?,
        reduction.parse()?,
        Outputs {
            value,
            grad,
            grad_target,
            hess,
        },
    );
    spec.label_smoothing = label_smoothing;
    spec.axis = axis;
    spec.keepdims = keepdims;
    let (x, y, w, pw, g, m) = (
        &input.get().inner,
        &target.get().inner,
        get(weight),
        get(pos_weight),
        get(grad_output),
        get(mask),
    );
    let results = run(py, usize::MAX, |interrupt| {
        super::run(&spec, x, y, w, pw, g, m, interrupt)
    })?;
    let array = |a: Option<GpuArray>| {
        a.map(|a| Py::new(py, PyGpuArray { inner: a }).map(Py::into_any))
            .transpose()
    };
    let value = results.value.map(|v| loss_to_py(py, v)).transpose()?;
    let grad = array(results.grad)?;
    if grad_target || hess {
        let items = [
            value,
            grad,
            array(results.grad_target)?,
            array(results.hess)?,
        ]
        .map(|o| o.unwrap_or_else(|| py.None()));
        return Ok(PyTuple::new(py, items)?.into_any().unbind());
    }
    match (value, grad) {
        (Some(v), Some(g)) => Ok(PyTuple::new(py, [v, g])?.into_any().unbind()),
        (Some(v), None) => Ok(v),
        (None, Some(g)) => Ok(g),
        (None, None) => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "bcers: a call that asks for nothing",
        )),
    }
}

/// Adds the class and functions to `bcers._bcers`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGpuArray>()?;
    m.add_function(wrap_pyfunction!(_gpu_is_available, m)?)?;
    m.add_function(wrap_pyfunction!(_gpu_adapter_info, m)?)?;
    m.add_function(wrap_pyfunction!(_gpu_asarray, m)?)?;
    m.add_function(wrap_pyfunction!(_gpu_compute, m)?)?;
    Ok(())
}
