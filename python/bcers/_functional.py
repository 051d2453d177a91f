"""The torch-named functions: argument handling, then one call into the native module."""

from __future__ import annotations

import operator
import os
import re
import sys
import warnings
from typing import Any, Literal, NamedTuple, Union, cast

import numpy as np
import numpy.typing as npt

from . import _bcers
from . import gpu as _gpu
from ._arrays import check_real as _check_real
from ._arrays import convert as _convert

ReductionName = Literal["none", "mean", "sum", "weighted_mean", "mean_with_sample_weight"]
Axis = Union[int, tuple[int, ...], None]
ArrayLike = npt.ArrayLike
Loss = Union[np.floating[Any], npt.NDArray[np.floating[Any]]]
# The annotations describe the NumPy path; on the GPU path (bcers.gpu) the arrays returned are
# bcers.gpu.Array, which the casts below pass off as these.
_Grad = npt.NDArray[np.floating[Any]]
_LossGrad = tuple[Loss, _Grad]

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
# The dtype a float input is computed in; float16 is computed in float32.
_COMPUTE: dict[np.dtype[Any], np.dtype[Any]] = {_F16: _F32, _F32: _F32, _F64: _F64}
_REDUCTIONS = frozenset(("none", "mean", "sum", "weighted_mean", "mean_with_sample_weight"))
# The reduction names as interned constants: the fast path below recognises the usual spellings
# (string literals, which Python interns) by identity, the cheapest test there is; any other
# value takes the general path, which checks it fully.
_NONE, _MEAN, _SUM = "none", "mean", "sum"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_GpuArray = _gpu.Array
# The most axes the native module takes: larger inputs have their axes of length 1 dropped.
_MAX_NDIM: int = _bcers.MAX_NDIM


class _OnGpu(Exception):
    """Raised while preparing the arguments when one of them is a ``bcers.gpu.Array``: the
    call then goes to the GPU. Only the non-ndarray path of :func:`_asarray` checks for it, so
    NumPy calls pay nothing."""


class _OnDask(TypeError):
    """Raised while preparing the arguments when one of them is a Dask collection: the call
    then goes to :mod:`bcers.dask`, lazily (never materialised here). Only the non-ndarray
    path of :func:`_asarray` checks for it, so NumPy calls pay nothing. Callers that take only
    NumPy arrays let it through: a TypeError that names bcers.dask."""

    def __init__(self) -> None:
        super().__init__(
            "a Dask array: this function takes NumPy arrays; use bcers.dask for Dask arrays"
        )


def _is_dask(value: Any) -> bool:
    """Whether ``value`` is a Dask collection (without importing dask)."""
    return hasattr(value, "__dask_graph__")


def _warn(message: str) -> None:
    """A UserWarning attributed to the first caller outside this package."""
    frame = sys._getframe(0)
    level = 1
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == _PACKAGE_DIR:
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    """torch's mapping of the deprecated ``size_average``/``reduce`` pair, with its warning."""
    if size_average is None:
        size_average = True
    if reduce is None:
        reduce = True
    if size_average and reduce:
        name = "mean"
    elif reduce:
        name = "sum"
    else:
        name = "none"
    _warn(
        f"size_average and reduce args will be deprecated, please use reduction='{name}' instead."
    )
    return name


def _validate_reduction(reduction: str) -> None:
    """ValueError for a reduction no call would take (no deprecation warning)."""
    if not (isinstance(reduction, str) and str(reduction) in _REDUCTIONS | {"elementwise_mean"}):
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _check_reduction(reduction: str) -> str:
    if isinstance(reduction, str):
        reduction = str(reduction)  # a str subclass (np.str_, say) means its value, as in torch
        if reduction in _REDUCTIONS:
            return reduction
        if reduction == "elementwise_mean":
            _warn(
                "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead."
            )
            return "mean"
    # As torch: any other value, of any type, is a ValueError naming it.
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _asarray(value: ArrayLike, name: str) -> npt.NDArray[Any]:
    if type(value) is np.ndarray:
        return value
    if type(value) is _GpuArray:
        raise _OnGpu
    if _is_dask(value):
        raise _OnDask
    return _convert(value, name)


def _input(input: ArrayLike) -> tuple[npt.NDArray[Any], np.dtype[Any]]:
    """The input as an array of its compute dtype, and the dtype of the result."""
    x = _asarray(input, "input")
    dtype = x.dtype
    compute = _COMPUTE.get(dtype)
    if compute is None:
        if dtype.kind == "f" and dtype.newbyteorder("=") in _COMPUTE:
            # A non-native byte order: the same values, swapped into native order.
            dtype = dtype.newbyteorder("=")
            compute = _COMPUTE[dtype]
        else:
            raise TypeError(
                f"input must be an array of float16, float32 or float64, got dtype {x.dtype}"
            )
    if x.dtype is not compute:
        with np.errstate(over="ignore"):  # beyond the dtype's range is inf, silently
            x = x.astype(compute, copy=False)
    return x, dtype


def _operand(value: ArrayLike, name: str, compute: np.dtype[Any]) -> npt.NDArray[Any]:
    """A target, weight, pos_weight or grad_output, cast to the compute dtype."""
    a = _asarray(value, name)
    if a.dtype is not compute:
        _check_real(a, name)
        with np.errstate(over="ignore"):  # beyond the dtype's range is inf, silently
            a = a.astype(compute, copy=False)
    return a


def _plain(input: Any, target: Any, weight: Any, pos_weight: Any, reduction: Any) -> bool:
    """Whether a call is the common one, which needs none of the general path's work: float32
    or float64 ndarrays of one dtype, a reduction spelled as a literal. The caller then hands
    its arguments to the native module as they are (the per-call cost matters for small
    inputs); the result is what the general path gives."""
    if type(input) is not np.ndarray or type(target) is not np.ndarray:
        return False
    dtype = input.dtype
    return (
        (dtype is _F32 or dtype is _F64)
        and input.ndim <= _MAX_NDIM
        and target.dtype is dtype
        and (reduction is _MEAN or reduction is _SUM or reduction is _NONE)
        and (weight is None or (type(weight) is np.ndarray and weight.dtype is dtype))
        and (pos_weight is None or (type(pos_weight) is np.ndarray and pos_weight.dtype is dtype))
    )


def _prepare_half(
    x: npt.NDArray[Any],
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
) -> tuple[Any, Any, Any, Any, np.dtype[Any]]:
    """float16: every operand is cast to float16 (the input's dtype), then computed in float32."""

    def half(value: ArrayLike, name: str) -> npt.NDArray[Any]:
        with np.errstate(over="ignore"):
            return _operand(value, name, _F16).astype(_F32)

    w = None if weight is None else half(weight, "weight")
    pw = None if pos_weight is None else half(pos_weight, "pos_weight")
    return x, half(target, "target"), w, pw, _F16


def _prepare(
    input: ArrayLike, target: ArrayLike, weight: ArrayLike | None, pos_weight: ArrayLike | None
) -> tuple[Any, Any, Any, Any, np.dtype[Any]]:
    """The operands in the compute dtype, and the result dtype.

    The common case (float32 or float64 ndarrays throughout) takes no copy and few steps: the
    per-call cost matters for small inputs.
    """
    if type(input) is np.ndarray and (input.dtype is _F32 or input.dtype is _F64):
        x = input
        dtype = compute = input.dtype
    else:
        x, dtype = _input(input)
        if dtype == _F16:
            return _prepare_half(x, target, weight, pos_weight)
        compute = x.dtype
    y = (
        target
        if type(target) is np.ndarray and target.dtype is compute
        else _operand(target, "target", compute)
    )
    w = None if weight is None else _operand(weight, "weight", compute)
    pw = None if pos_weight is None else _operand(pos_weight, "pos_weight", compute)
    return x, y, w, pw, dtype


def _broadcast_error(name: str, shape: tuple[int, ...], input_shape: tuple[int, ...]) -> ValueError:
    return ValueError(
        f"{name} of shape {shape} cannot be broadcast to the input's shape {input_shape} (it may "
        "have no more dimensions than the input, each of length 1 or equal to the input's)"
    )


class _Squeeze:
    """An input of more axes than the native module takes: every operand with the input's axes
    of length 1 dropped (views: nothing is copied), and the way back for results and messages."""

    def __init__(self, x: npt.NDArray[Any], y: npt.NDArray[Any]) -> None:
        if y.shape != x.shape:
            raise ValueError(f"Target size {y.shape} must be the same as input size {x.shape}")
        self.shape = x.shape
        self.keep = [i for i, n in enumerate(x.shape) if n != 1]
        if len(self.keep) > _MAX_NDIM:
            raise ValueError(
                f"input has {len(self.keep)} dimensions longer than 1; bcers takes at most "
                f"{_MAX_NDIM}"
            )
        self.inner = tuple(x.shape[i] for i in self.keep)

    def operand(self, a: npt.NDArray[Any] | None, name: str) -> npt.NDArray[Any] | None:
        """``a``, which broadcasts to the input's shape (the input and target have it), on the
        kept axes."""
        if a is None:
            return None
        if a.ndim > len(self.shape):
            raise _broadcast_error(name, a.shape, self.shape)
        padded = (1,) * (len(self.shape) - a.ndim) + a.shape
        if any(m not in (1, n) for m, n in zip(padded, self.shape)):
            raise _broadcast_error(name, a.shape, self.shape)
        return a.reshape(tuple(padded[i] for i in self.keep))

    def result(self, value: Any) -> Any:
        return value.reshape(self.shape) if isinstance(value, np.ndarray) else value

    def error(self, e: ValueError) -> ValueError:
        """A range error's index on the kept axes, rewritten as an index of the input."""
        m = re.fullmatch(r"(.* between 0 and 1; (?:input|target))\[([^\]]*)\]( is .*)", str(e))
        if m is None:
            return e
        inner = [int(i) for i in m.group(2).split(", ")] if m.group(2) != "()" else []
        index = [0] * len(self.shape)
        for axis, i in zip(self.keep, inner):
            index[axis] = i
        return ValueError(f"{m.group(1)}[{', '.join(map(str, index))}]{m.group(3)}")


class Derivatives(NamedTuple):
    """What the ``derivatives`` methods and functions return: the outputs asked for, ``None``
    for the others. Every derivative is of the loss as the call reduces it (weight, mask and
    the reduction's scaling applied), times ``grad_output``, and has the input's shape."""

    value: Any
    """The loss, as the loss function returns it."""
    grad: Any
    """Its derivative with respect to the input."""
    grad_target: Any
    """Its derivative with respect to the target."""
    hess: Any
    """Its second derivative with respect to the input, elementwise (the Hessian's diagonal)."""


class _Options(NamedTuple):
    """The keywords beyond torch's, checked: label smoothing, the mask (a bool ndarray, a
    ``bcers.gpu.Array``, or None), the axes of the reduction (a tuple of ints, or None) and
    keepdims."""

    label_smoothing: float
    mask: npt.NDArray[np.bool_] | _GpuArray | None
    axis: tuple[int, ...] | None
    keepdims: bool


_PLAIN_OPTIONS = _Options(0.0, None, None, False)


def _label_smoothing(value: Any) -> float:
    """``label_smoothing`` as a float (its range is checked by the native module)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"label_smoothing must be a real number, got {type(value).__name__}")
    if isinstance(value, complex) or (isinstance(value, np.number) and np.iscomplexobj(value)):
        raise TypeError("label_smoothing must be a real number, got a complex one")
    return float(value)


def _axis(axis: Any) -> tuple[int, ...] | None:
    """``axis`` as a tuple of ints: an int or a sequence of them, as NumPy takes."""
    if axis is None:
        return None
    try:
        return (operator.index(axis),)
    except TypeError:
        pass
    try:
        return tuple(operator.index(a) for a in axis)
    except TypeError:
        raise TypeError(
            f"axis must be an int or a tuple of ints, got {type(axis).__name__}"
        ) from None


def _mask(mask: Any) -> npt.NDArray[np.bool_] | _GpuArray | None:
    """``mask`` as a bool ndarray (TypeError for any other dtype); a ``bcers.gpu.Array`` as
    it is."""
    if mask is None:
        return None
    if _is_dask(mask) or type(mask) is _GpuArray:
        return mask  # type: ignore[no-any-return]  # bcers.dask or bcers.gpu checks it
    m = _convert(mask, "mask")  # a MaskedArray is refused: a mask of a mask means nothing
    if m.dtype != np.bool_:
        raise TypeError(f"mask must be an array of booleans, got dtype {m.dtype}")
    return m


def _options(label_smoothing: Any, mask: Any, axis: Any, keepdims: Any) -> _Options:
    """The keywords beyond torch's, checked (the common case, all defaults, costs little)."""
    if mask is None and axis is None and keepdims is False and label_smoothing == 0.0:
        return _PLAIN_OPTIONS
    return _Options(_label_smoothing(label_smoothing), _mask(mask), _axis(axis), bool(keepdims))


def _unmask(input: Any, target: Any, options: _Options) -> tuple[Any, Any, _Options]:
    """A ``numpy.ma.MaskedArray`` input or target: its data, with its masked elements dropped
    through the mask."""
    keep = options.mask
    for a in (input, target):
        if isinstance(a, np.ma.MaskedArray):
            masked = np.ma.getmask(a)
            if masked is not np.ma.nomask:
                kept = np.logical_not(masked)
                keep = kept if keep is None else np.logical_and(keep, kept)
    data = [np.ma.getdata(a) if isinstance(a, np.ma.MaskedArray) else a for a in (input, target)]
    return data[0], data[1], options._replace(mask=keep)


def _native(
    loss: str,
    alpha: float,
    gamma: float,
    x: Any,
    y: Any,
    w: Any,
    pw: Any,
    g: Any,
    mode: str,
    outputs: tuple[bool, bool, bool, bool],
    options: _Options,
    out: tuple[Any, Any, Any, Any] | None = None,
) -> Any:
    """The native call. An input of more than ``_MAX_NDIM`` axes has every array operand taken
    on its axes longer than 1 (views), and the results given back their shape; a reduction's
    grad_output (a scalar) is passed as it is. ``out``: the caller's output arrays, which the
    native call writes into where it can (the caller copies the others)."""
    value, grad, grad_target, hess = outputs
    extra: dict[str, Any] = {}
    if options is not _PLAIN_OPTIONS:
        extra = {
            "label_smoothing": options.label_smoothing,
            "mask": options.mask,
            "axis": options.axis,
            "keepdims": options.keepdims,
        }
    if out is not None:
        extra["out"] = out
    if grad_target or hess:
        extra["grad_target"] = grad_target
        extra["hess"] = hess
    if x.ndim <= _MAX_NDIM:
        return _bcers.compute(loss, alpha, gamma, x, y, w, pw, g, mode, value, grad, **extra)
    if options.axis is not None or options.keepdims:
        raise ValueError(
            f"axis and keepdims take inputs of at most {_MAX_NDIM} dimensions; this one has "
            f"{x.ndim}"
        )
    extra.pop("out", None)  # the outputs of the squeezed call are copied into out
    squeeze = _Squeeze(x, y)
    fit = squeeze.operand
    g = fit(g, "grad_output") if mode == "none" else g
    if options.mask is not None:
        # A bool ndarray: a bcers.gpu.Array mask took the call to the GPU.
        extra["mask"] = fit(cast("npt.NDArray[np.bool_]", options.mask), "mask")
    args = (fit(x, "input"), fit(y, "target"), fit(w, "weight"), fit(pw, "pos_weight"), g)
    try:
        out = _bcers.compute(loss, alpha, gamma, *args, mode, value, grad, **extra)
    except ValueError as e:
        raise squeeze.error(e) from None
    if isinstance(out, tuple):
        return tuple(squeeze.result(v) for v in out)
    return squeeze.result(out)


def _result(value: Any, dtype: np.dtype[Any]) -> Loss:
    """A native result in the result dtype: a NumPy scalar for a float, else an array."""
    if type(value) is float:
        if dtype is _F16:
            with np.errstate(over="ignore"):  # beyond float16's range is inf, silently
                half: np.floating[Any] = np.float16(value)
            return half
        scalar: np.floating[Any] = dtype.type(value)
        return scalar
    return _array(value, dtype)


def _array(value: npt.NDArray[Any], dtype: np.dtype[Any]) -> npt.NDArray[np.floating[Any]]:
    """A native array result in the result dtype (float16 results are computed in float32)."""
    if value.dtype is not dtype:
        with np.errstate(over="ignore"):  # beyond float16's range is inf, silently
            return value.astype(dtype, copy=False)
    return value


_VALUE = (True, False, False, False)
_GRAD = (False, True, False, False)
_VALUE_AND_GRAD = (True, True, False, False)


def _run(
    loss: str,
    alpha: float,
    gamma: float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    grad_output: ArrayLike | None,
    mode: str,
    outputs: tuple[bool, bool, bool, bool],
    options: _Options = _PLAIN_OPTIONS,
    as_derivatives: bool = False,
    into: tuple[Any, Any, Any, Any] | None = None,
) -> Any:
    """The general path of every call: the operands prepared (converted, cast, float16 computed
    in float32, masked arrays' masks taken), the native call, the results in the input's dtype;
    or, when an argument is a ``bcers.gpu.Array``, the GPU. ``mode`` is a checked reduction
    name. Returns what the native module returns for ``outputs``: one result, a pair (value
    and gradient), or (with the target gradient or second derivative, or ``as_derivatives``)
    a :class:`Derivatives`. ``into``: the caller's arrays for the elementwise outputs (see
    :func:`_derivatives`), written where the native call can (NumPy operands only)."""
    value, grad, grad_target, hess = outputs
    derivatives = grad or grad_target or hess
    if isinstance(input, np.ma.MaskedArray) or isinstance(target, np.ma.MaskedArray):
        input, target, options = _unmask(input, target, options)
    try:
        if options.mask is not None and _is_dask(options.mask):
            raise _OnDask
        if type(options.mask) is _GpuArray:
            raise _OnGpu
        x, y, w, pw, dtype = _prepare(input, target, weight, pos_weight)
        g = _grad_output(grad_output, dtype) if derivatives else None
    except (_OnDask, _OnGpu) as other:
        if into is not None:
            where = "the GPU" if isinstance(other, _OnGpu) else "Dask"
            raise TypeError(f"out takes NumPy arrays; this call runs on {where}") from None
        # Another backend: the GPU's, or bcers.dask (imported only here: importing bcers does
        # not import dask).
        backend: Any = _gpu
        if isinstance(other, _OnDask):
            from . import dask as backend
        return backend._compute(
            loss,
            alpha,
            gamma,
            input,
            target,
            weight,
            pos_weight,
            grad_output,
            mode,
            outputs,
            options,
            as_derivatives,
        )
    # float16 is computed in float32: its outputs are copied into the caller's arrays later.
    out = _native(
        loss,
        alpha,
        gamma,
        x,
        y,
        w,
        pw,
        g,
        mode,
        outputs,
        options,
        into if dtype is x.dtype else None,
    )
    if grad_target or hess:
        v, gr, gt, h = out
        return Derivatives(
            None if v is None else _result(v, dtype),
            None if gr is None else _array(gr, dtype),
            None if gt is None else _array(gt, dtype),
            None if h is None else _array(h, dtype),
        )
    if value and grad:
        pair = _result(out[0], dtype), _array(out[1], dtype)
        return Derivatives(pair[0], pair[1], None, None) if as_derivatives else pair
    if value:
        v = _result(out, dtype)
        return Derivatives(v, None, None, None) if as_derivatives else v
    gr = _array(out, dtype)
    return Derivatives(None, gr, None, None) if as_derivatives else gr


def _forward(
    loss: str,
    alpha: float,
    gamma: float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    reduction: str,
    label_smoothing: Any,
    mask: Any,
    axis: Any,
    keepdims: Any,
) -> Loss:
    """The loss: the fast path for plain arrays and default keywords (checked inline: the
    per-call cost matters for small inputs), else the general one."""
    if (
        mask is None
        and axis is None
        and keepdims is False
        and label_smoothing == 0.0
        and _plain(input, target, weight, pos_weight, reduction)
    ):
        value = _bcers.compute(
            loss, alpha, gamma, input, target, weight, pos_weight, None, reduction, True, False
        )
        return value if reduction is _NONE else input.dtype.type(value)  # type: ignore[union-attr,no-any-return]
    mode = _check_reduction(reduction)
    options = _options(label_smoothing, mask, axis, keepdims)
    out = _run(loss, alpha, gamma, input, target, weight, pos_weight, None, mode, _VALUE, options)
    return cast(Loss, out)


def _backward(
    loss: str,
    alpha: float,
    gamma: float,
    grad_output: ArrayLike | None,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    reduction: str,
    options: _Options,
) -> npt.NDArray[np.floating[Any]]:
    """The input gradient."""
    mode = _check_reduction(reduction)
    grad = _run(
        loss, alpha, gamma, input, target, weight, pos_weight, grad_output, mode, _GRAD, options
    )
    return cast(_Grad, grad)


def _value_and_grad(
    loss: str,
    alpha: float,
    gamma: float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    reduction: str,
    label_smoothing: Any,
    mask: Any,
    axis: Any,
    keepdims: Any,
) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
    """The loss and its input gradient in one pass: the fast path for plain arrays and
    default keywords, else the general one."""
    if (
        mask is None
        and axis is None
        and keepdims is False
        and label_smoothing == 0.0
        and _plain(input, target, weight, pos_weight, reduction)
    ):
        value, grad = _bcers.compute(
            loss, alpha, gamma, input, target, weight, pos_weight, None, reduction, True, True
        )
        if reduction is not _NONE:
            value = input.dtype.type(value)  # type: ignore[union-attr]
        return value, grad
    mode = _check_reduction(reduction)
    options = _options(label_smoothing, mask, axis, keepdims)
    out = _run(
        loss, alpha, gamma, input, target, weight, pos_weight, None, mode, _VALUE_AND_GRAD, options
    )
    return cast(_LossGrad, out)


def _flag(value: Any, name: str) -> bool:
    """A bool keyword (``value``, ``grad``, ...): True or False, or NumPy's bool."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__}")


def _derivatives(
    loss: str,
    alpha: float,
    gamma: float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    reduction: str,
    flags: tuple[Any, Any, Any, Any],
    grad_output: ArrayLike | None,
    options: _Options,
    out: Any = None,
) -> Derivatives:
    """The outputs ``flags`` asks for (value, grad, grad_target, hess), in one pass; the
    elementwise ones written into ``out``'s arrays where it gives them."""
    names = ("value", "grad", "grad_target", "hess")
    outputs = cast(
        "tuple[bool, bool, bool, bool]", tuple(_flag(f, n) for f, n in zip(flags, names))
    )
    mode = _check_reduction(reduction)
    operands = (input, target, weight, pos_weight, grad_output, options.mask)
    into = _into(out, outputs, mode, options, operands)
    if not any(outputs):
        return Derivatives(None, None, None, None)
    if grad_output is not None and not (outputs[1] or outputs[2] or outputs[3]):
        grad_output = None  # only the value: grad_output has no part in it
    result = _run(
        loss,
        alpha,
        gamma,
        input,
        target,
        weight,
        pos_weight,
        grad_output,
        mode,
        outputs,
        options,
        as_derivatives=True,
        into=into,
    )
    return _written(cast(Derivatives, result), into)


def _into(
    out: Any,
    outputs: tuple[bool, bool, bool, bool],
    mode: str,
    options: _Options,
    operands: tuple[Any, ...],
) -> tuple[Any, Any, Any, Any] | None:
    """``out`` of a ``derivatives`` call, checked: None, or a :class:`Derivatives` (any
    4-tuple) whose fields are None or a writeable ndarray for an elementwise output the call
    asks for (the value only without a reduction), overlapping no operand and no other field.
    Shape and dtype are checked against the results."""
    if out is None:
        return None
    if not isinstance(out, tuple) or len(out) != 4:
        raise TypeError(
            "out must be a bcers.Derivatives (value, grad, grad_target, hess) of arrays or "
            f"None, got {type(out).__name__}"
        )
    names = Derivatives._fields
    elementwise = mode == "none" and options.axis is None and not options.keepdims
    given: list[npt.NDArray[Any]] = []
    for k, (array, name) in enumerate(zip(out, names)):
        if array is None:
            continue
        if not outputs[k]:
            raise ValueError(f"out.{name} is given, but the call does not ask for {name}")
        if k == 0 and not elementwise:
            raise ValueError(
                "out.value is given, but the value is reduced: out takes elementwise outputs"
            )
        if type(array) is not np.ndarray:
            raise TypeError(f"out.{name} must be a numpy.ndarray, got {type(array).__name__}")
        if not array.flags.writeable:
            raise ValueError(f"out.{name} is read-only")
        for other in (*operands, *given):
            if isinstance(other, np.ndarray) and np.may_share_memory(array, other):
                raise ValueError(f"out.{name} overlaps an operand or another output")
        given.append(array)
    return out if given else None


def _written(result: Derivatives, into: tuple[Any, Any, Any, Any] | None) -> Derivatives:
    """``result`` with each output that ``into`` gives an array for in that array: the native
    call wrote it there, or it is copied now (float16, a small call, another layout)."""
    if into is None:
        return result
    fields = list(result)
    for k, (array, name) in enumerate(zip(into, Derivatives._fields)):
        computed = fields[k]
        if array is None or computed is array:
            continue
        if array.dtype != computed.dtype:
            raise TypeError(f"out.{name} has dtype {array.dtype}; the result's is {computed.dtype}")
        if array.shape != computed.shape:
            raise ValueError(
                f"out.{name} has shape {array.shape}; the result's is {computed.shape}"
            )
        np.copyto(array, computed)
        fields[k] = array
    return Derivatives(*fields)


def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: ReductionName = "mean",
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> Loss:
    """Binary cross entropy between probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    Per element: ``-weight * (target * max(log(input), -100) + (1 - target) *
    max(log1p(-input), -100))``, then reduced. ``input`` and ``target`` must lie in [0, 1].

    Args:
        input: probabilities, float16, float32 or float64 (the result has this dtype).
        target: same shape as ``input``; any real or bool dtype (cast to the input's).
        weight: broadcasts to the input's shape (it may not enlarge it).
        size_average: deprecated (torch's legacy argument); overrides ``reduction``.
        reduce: deprecated (torch's legacy argument); overrides ``reduction``.
        reduction: ``"none"``, ``"mean"`` (divides by the number of elements), ``"sum"``, or
            ``"weighted_mean"`` (alias ``"mean_with_sample_weight"``: divides by the sum of the
            weights).

    Keywords beyond torch's (every function takes them):

    - ``label_smoothing``: in [0, 1]; the target used is ``target * (1 - label_smoothing) +
      label_smoothing / 2`` (BCE's range check applies to the target as given).
    - ``mask``: bool, broadcasts to the input's shape; where False the loss and every
      derivative are 0, the elements are not range-checked, and ``mean`` does not count them
      (NaN when none is kept). A ``numpy.ma.MaskedArray`` input or target has its masked
      elements dropped the same way.
    - ``axis``, ``keepdims``: reduce over these axes only (NumPy's rules), giving an array; the
      gradient keeps the input's shape, and a backward's ``grad_output`` has the reduced shape.

    Returns:
        A NumPy scalar for a full reduction, an array of the input's shape for ``"none"``, an
        array of the reduced shape with ``axis`` or ``keepdims``.

    Raises:
        ValueError: shapes that do not match, values outside [0, 1], an unknown reduction, bad
            axes or label smoothing.
        TypeError: a non-float input, a non-real argument, a non-bool mask.
    """
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce)  # type: ignore[assignment]
    return _forward(
        "bce",
        0.0,
        0.0,
        input,
        target,
        weight,
        None,
        reduction,
        label_smoothing,
        mask,
        axis,
        keepdims,
    )


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: ReductionName = "mean",
    pos_weight: ArrayLike | None = None,
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> Loss:
    """Binary cross entropy on logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Per element: ``weight * ((1 - target) * input - (1 + (pos_weight - 1) * target) *
    logsigmoid(input))``, computed stably; infinite logits give the mathematical limit. The
    target is not range-checked (as in torch).

    Args:
        input: logits, float16, float32 or float64 (the result has this dtype).
        target: same shape as ``input``; any real or bool dtype (cast to the input's).
        weight: broadcasts to the input's shape (it may not enlarge it).
        size_average: deprecated (torch's legacy argument); overrides ``reduction``.
        reduce: deprecated (torch's legacy argument); overrides ``reduction``.
        reduction: as in :func:`binary_cross_entropy`.
        pos_weight: weight of the positive class; broadcasts like ``weight`` (a ``(C,)``
            array applies along the last axis). Not in ``weighted_mean``'s denominator.

    Keywords beyond torch's (every function takes them):

    - ``label_smoothing``: in [0, 1]; the target used is ``target * (1 - label_smoothing) +
      label_smoothing / 2`` (BCE's range check applies to the target as given).
    - ``mask``: bool, broadcasts to the input's shape; where False the loss and every
      derivative are 0, the elements are not range-checked, and ``mean`` does not count them
      (NaN when none is kept). A ``numpy.ma.MaskedArray`` input or target has its masked
      elements dropped the same way.
    - ``axis``, ``keepdims``: reduce over these axes only (NumPy's rules), giving an array; the
      gradient keeps the input's shape, and a backward's ``grad_output`` has the reduced shape.

    Returns:
        As :func:`binary_cross_entropy`.
    """
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce)  # type: ignore[assignment]
    return _forward(
        "logits",
        0.0,
        0.0,
        input,
        target,
        weight,
        pos_weight,
        reduction,
        label_smoothing,
        mask,
        axis,
        keepdims,
    )


def _grad_output(grad_output: ArrayLike | None, dtype: np.dtype[Any]) -> npt.NDArray[Any] | None:
    """grad_output cast to the input's dtype ``dtype``, in the dtype the call computes in (None,
    which means 1, as it is)."""
    compute = _COMPUTE[dtype]
    if grad_output is None:
        return None
    if dtype is _F16:
        with np.errstate(over="ignore"):
            return _operand(grad_output, "grad_output", _F16).astype(_F32)
    return _operand(grad_output, "grad_output", compute)


def binary_cross_entropy_backward(
    grad_output: ArrayLike | None,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> npt.NDArray[np.floating[Any]]:
    """The gradient of :func:`binary_cross_entropy` with respect to ``input``.

    ``grad_output`` is the gradient flowing into the loss: a scalar for a full reduction, an
    array of the reduced shape with ``axis`` or ``keepdims``; for ``"none"``, an array that
    broadcasts to the input's shape. ``None`` means 1. Per element: ``grad_output * (input -
    target) / max((1 - input) * input, 1e-12) * weight``, divided by the number of (kept)
    elements for ``"mean"``, by the sum of the weights for ``"weighted_mean"``. The keywords
    are :func:`binary_cross_entropy`'s.

    Returns:
        An array of the input's shape and dtype.
    """
    options = _options(label_smoothing, mask, axis, keepdims)
    return _backward("bce", 0.0, 0.0, grad_output, input, target, weight, None, reduction, options)


def binary_cross_entropy_with_logits_backward(
    grad_output: ArrayLike | None,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> npt.NDArray[np.floating[Any]]:
    """The gradient of :func:`binary_cross_entropy_with_logits` with respect to ``input``.

    Per element: ``grad_output * weight * ((1 - target) * sigmoid(input) - pos_weight *
    target * sigmoid(-input))``, scaled by the reduction. ``grad_output`` and the keywords as
    in :func:`binary_cross_entropy_backward`.

    Returns:
        An array of the input's shape and dtype.
    """
    options = _options(label_smoothing, mask, axis, keepdims)
    return _backward(
        "logits", 0.0, 0.0, grad_output, input, target, weight, pos_weight, reduction, options
    )


def binary_cross_entropy_value_and_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
    """:func:`binary_cross_entropy` and its input gradient (for grad_output 1), in one pass.

    Returns:
        ``(loss, grad_input)``: the loss as :func:`binary_cross_entropy` returns it, and an
        array of the input's shape and dtype.
    """
    return _value_and_grad(
        "bce",
        0.0,
        0.0,
        input,
        target,
        weight,
        None,
        reduction,
        label_smoothing,
        mask,
        axis,
        keepdims,
    )


def binary_cross_entropy_with_logits_value_and_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
    """:func:`binary_cross_entropy_with_logits` and its input gradient, in one pass.

    Returns:
        ``(loss, grad_input)``, as :func:`binary_cross_entropy_value_and_grad`.
    """
    return _value_and_grad(
        "logits",
        0.0,
        0.0,
        input,
        target,
        weight,
        pos_weight,
        reduction,
        label_smoothing,
        mask,
        axis,
        keepdims,
    )


def sigmoid_focal_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: ReductionName = "none",
    weight: ArrayLike | None = None,
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> Loss:
    """Sigmoid focal loss (Lin et al. 2017), as ``torchvision.ops.sigmoid_focal_loss``.

    Per element, with ``p = sigmoid(inputs)``, ``ce`` = BCE with logits, ``p_t = p * targets +
    (1 - p) * (1 - targets)``: ``weight * alpha_t * ce * (1 - p_t) ** gamma``, where
    ``alpha_t = alpha * targets + (1 - alpha) * (1 - targets)`` when ``alpha >= 0`` (a negative
    alpha turns it off). Computed without torchvision's cancellations: finite results and
    gradients for every finite logit, the mathematical limits at infinite ones, and exactly
    ``alpha_t`` times BCE with logits at ``gamma = 0``. ``mean`` divides by the number of
    elements.

    Args:
        inputs: logits, float16, float32 or float64 (the result has this dtype).
        targets: same shape as ``inputs``, in [0, 1] (not checked, as in torchvision; outside
            it, ``(1 - p_t) ** gamma`` of a negative base is NaN); any real or bool dtype.
        alpha: at most 1, not NaN; negative turns the class weighting off. Not in
            ``weighted_mean``'s denominator.
        gamma: a finite number >= 0.
        reduction: ``"none"`` (torchvision's default), or as in :func:`binary_cross_entropy`.
        weight: broadcasts to the input's shape (it may not enlarge it).

    Keywords beyond torch's (every function takes them):

    - ``label_smoothing``: in [0, 1]; the target used is ``target * (1 - label_smoothing) +
      label_smoothing / 2`` (BCE's range check applies to the target as given).
    - ``mask``: bool, broadcasts to the input's shape; where False the loss and every
      derivative are 0, the elements are not range-checked, and ``mean`` does not count them
      (NaN when none is kept). A ``numpy.ma.MaskedArray`` input or target has its masked
      elements dropped the same way.
    - ``axis``, ``keepdims``: reduce over these axes only (NumPy's rules), giving an array; the
      gradient keeps the input's shape, and a backward's ``grad_output`` has the reduced shape.

    Returns:
        As :func:`binary_cross_entropy`.

    Raises:
        ValueError: bad ``alpha``, ``gamma``, label smoothing or axes, shapes that do not
            match, an unknown reduction.
        TypeError: a non-float input, a non-real argument, a non-bool mask.
    """
    return _forward(
        "focal",
        alpha,
        gamma,
        inputs,
        targets,
        weight,
        None,
        reduction,
        label_smoothing,
        mask,
        axis,
        keepdims,
    )


def sigmoid_focal_loss_backward(
    grad_output: ArrayLike | None,
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: ReductionName = "none",
    weight: ArrayLike | None = None,
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> npt.NDArray[np.floating[Any]]:
    """The gradient of :func:`sigmoid_focal_loss` with respect to ``inputs``; ``grad_output``
    and the keywords as in :func:`binary_cross_entropy_backward` (``None`` means 1).

    Returns:
        An array of the input's shape and dtype.
    """
    options = _options(label_smoothing, mask, axis, keepdims)
    return _backward(
        "focal", alpha, gamma, grad_output, inputs, targets, weight, None, reduction, options
    )


def sigmoid_focal_loss_value_and_grad(
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: ReductionName = "none",
    weight: ArrayLike | None = None,
    *,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
    """:func:`sigmoid_focal_loss` and its input gradient (for grad_output 1), in one pass.

    Returns:
        ``(loss, grad_input)``, as :func:`binary_cross_entropy_value_and_grad`.
    """
    return _value_and_grad(
        "focal",
        alpha,
        gamma,
        inputs,
        targets,
        weight,
        None,
        reduction,
        label_smoothing,
        mask,
        axis,
        keepdims,
    )


_DERIVATIVES_DOC = """

    Every output asked for comes from one pass over the data (two when a derivative of a
    masked or weighted mean needs its denominator first); what is not asked for is not
    computed. Every derivative is of the loss as reduced (weight, mask and the reduction's
    scaling applied), times ``grad_output`` (as in the ``_backward`` function; None means 1).

    Keywords:
        value: the loss, as the loss function returns it.
        grad: the derivative with respect to the input.
        grad_target: the derivative with respect to the target (of the loss as computed, with
            BCE's log clamp; with label smoothing, times ``1 - label_smoothing``).
        hess: the second derivative with respect to the input, elementwise (the diagonal of the
            Hessian; the focal loss's can be negative).
        grad_output, label_smoothing, mask, axis, keepdims: as in the loss functions.
        out: a :class:`bcers.Derivatives` of arrays or None: arrays to write the elementwise
            outputs into (the derivatives; the value without a reduction), each of the
            result's dtype and shape, writeable, overlapping no operand. They are returned.
            In a loop over batches of one shape this saves fresh memory each call, whose pages
            the kernel zeroes on first touch (for large outputs about as costly as computing
            them). NumPy operands only (not ``bcers.gpu`` or Dask arrays). A call that fails
            for another reason (a BCE input out of range) may have written part of them.

    Returns:
        :class:`bcers.Derivatives` ``(value, grad, grad_target, hess)``, None where not asked.

    Raises:
        TypeError: ``out`` not a 4-tuple of arrays or None, or an array of another dtype.
        ValueError: an ``out`` array for an output not asked for or reduced, of another
            shape, read-only, or overlapping an operand or another ``out`` array.
    """


def binary_cross_entropy_derivatives(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
    *,
    value: bool = True,
    grad: bool = True,
    grad_target: bool = False,
    hess: bool = False,
    grad_output: ArrayLike | None = None,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
    out: Derivatives | None = None,
) -> Derivatives:
    flags = (value, grad, grad_target, hess)
    options = _options(label_smoothing, mask, axis, keepdims)
    return _derivatives(
        "bce", 0.0, 0.0, input, target, weight, None, reduction, flags, grad_output, options, out
    )


def binary_cross_entropy_with_logits_derivatives(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
    *,
    value: bool = True,
    grad: bool = True,
    grad_target: bool = False,
    hess: bool = False,
    grad_output: ArrayLike | None = None,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
    out: Derivatives | None = None,
) -> Derivatives:
    flags = (value, grad, grad_target, hess)
    options = _options(label_smoothing, mask, axis, keepdims)
    return _derivatives(
        "logits",
        0.0,
        0.0,
        input,
        target,
        weight,
        pos_weight,
        reduction,
        flags,
        grad_output,
        options,
        out,
    )


def sigmoid_focal_loss_derivatives(
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: ReductionName = "none",
    weight: ArrayLike | None = None,
    *,
    value: bool = True,
    grad: bool = True,
    grad_target: bool = False,
    hess: bool = False,
    grad_output: ArrayLike | None = None,
    label_smoothing: float = 0.0,
    mask: ArrayLike | None = None,
    axis: Axis = None,
    keepdims: bool = False,
    out: Derivatives | None = None,
) -> Derivatives:
    flags = (value, grad, grad_target, hess)
    options = _options(label_smoothing, mask, axis, keepdims)
    return _derivatives(
        "focal",
        alpha,
        gamma,
        inputs,
        targets,
        weight,
        None,
        reduction,
        flags,
        grad_output,
        options,
        out,
    )


binary_cross_entropy_derivatives.__doc__ = (
    "The outputs of :func:`binary_cross_entropy` asked for." + _DERIVATIVES_DOC
)
binary_cross_entropy_with_logits_derivatives.__doc__ = (
    "The outputs of :func:`binary_cross_entropy_with_logits` asked for." + _DERIVATIVES_DOC
)
sigmoid_focal_loss_derivatives.__doc__ = (
    "The outputs of :func:`sigmoid_focal_loss` asked for." + _DERIVATIVES_DOC
)
