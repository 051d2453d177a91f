"""The torch-named functions: argument handling, then one call into the native module."""

from __future__ import annotations

import os
import re
import sys
import warnings
from typing import Any, Literal, Union, cast

import numpy as np
import numpy.typing as npt

from . import _bcers
from . import gpu as _gpu
from ._arrays import check_real as _check_real
from ._arrays import convert as _convert

ReductionName = Literal["none", "mean", "sum"]
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
_REDUCTIONS = frozenset(("none", "mean", "sum"))
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
    value: bool,
    grad: bool,
) -> Any:
    """The native call. An input of more than ``_MAX_NDIM`` axes has every array operand taken
    on its axes longer than 1 (views), and the results given back their shape; a reduction's
    grad_output (a scalar) is passed as it is."""
    if x.ndim <= _MAX_NDIM:
        return _bcers.compute(loss, alpha, gamma, x, y, w, pw, g, mode, value, grad)
    squeeze = _Squeeze(x, y)
    fit = squeeze.operand
    g = fit(g, "grad_output") if mode == "none" else g
    args = (fit(x, "input"), fit(y, "target"), fit(w, "weight"), fit(pw, "pos_weight"), g)
    try:
        out = _bcers.compute(loss, alpha, gamma, *args, mode, value, grad)
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
    value: bool,
    grad: bool,
) -> Any:
    """The general path of every call: the operands prepared (converted, cast, float16 computed
    in float32), the native call, the results in the input's dtype; or, when an argument is a
    ``bcers.gpu.Array``, the GPU. ``mode`` is a checked reduction name."""
    try:
        x, y, w, pw, dtype = _prepare(input, target, weight, pos_weight)
        g = _grad_output(grad_output, dtype) if grad else None
    except _OnGpu:
        return _gpu._compute(
            loss, alpha, gamma, input, target, weight, pos_weight, grad_output, mode, value, grad
        )
    out = _native(loss, alpha, gamma, x, y, w, pw, g, mode, value, grad)
    if value and grad:
        return _result(out[0], dtype), _array(out[1], dtype)
    return _result(out, dtype) if value else _array(out, dtype)


def _scalar(value: Any, input: Any, reduction: str) -> Any:
    """A fast-path native result: a reduction's float as the input's dtype."""
    return value if reduction is _NONE else input.dtype.type(value)


def _forward(
    loss: str,
    alpha: float,
    gamma: float,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    reduction: str,
) -> Loss:
    """The loss: the fast path for plain arrays, else the general one."""
    if _plain(input, target, weight, pos_weight, reduction):
        value = _bcers.compute(
            loss, alpha, gamma, input, target, weight, pos_weight, None, reduction, True, False
        )
        return _scalar(value, input, reduction)  # type: ignore[no-any-return]
    mode = _check_reduction(reduction)
    return cast(
        Loss, _run(loss, alpha, gamma, input, target, weight, pos_weight, None, mode, True, False)
    )


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
) -> npt.NDArray[np.floating[Any]]:
    """The input gradient."""
    mode = _check_reduction(reduction)
    grad = _run(
        loss, alpha, gamma, input, target, weight, pos_weight, grad_output, mode, False, True
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
) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
    """The loss and its input gradient in one pass: the fast path for plain arrays, else the
    general one."""
    if _plain(input, target, weight, pos_weight, reduction):
        value, grad = _bcers.compute(
            loss, alpha, gamma, input, target, weight, pos_weight, None, reduction, True, True
        )
        return _scalar(value, input, reduction), grad
    mode = _check_reduction(reduction)
    out = _run(loss, alpha, gamma, input, target, weight, pos_weight, None, mode, True, True)
    return cast(_LossGrad, out)


def _legacy(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """torch's legacy pair, if given, in place of ``reduction`` (which is returned as it is
    otherwise: the calls check it)."""
    if size_average is not None or reduce is not None:
        return _legacy_reduction(size_average, reduce)
    return reduction


def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: ReductionName = "mean",
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
        reduction: ``"none"``, ``"mean"`` (divides by the number of elements) or ``"sum"``.

    Returns:
        A NumPy scalar for ``"mean"`` and ``"sum"``, an array of the input's shape for ``"none"``.

    Raises:
        ValueError: shapes that do not match, values outside [0, 1], an unknown reduction.
        TypeError: a non-float input or a non-real argument.
    """
    mode = _legacy(size_average, reduce, reduction)
    return _forward("bce", 0.0, 0.0, input, target, weight, None, mode)


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: ReductionName = "mean",
    pos_weight: ArrayLike | None = None,
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
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        pos_weight: weight of the positive class; broadcasts like ``weight`` (a ``(C,)``
            array applies along the last axis).

    Returns:
        A NumPy scalar for ``"mean"`` and ``"sum"``, an array of the input's shape for ``"none"``.
    """
    mode = _legacy(size_average, reduce, reduction)
    return _forward("logits", 0.0, 0.0, input, target, weight, pos_weight, mode)


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
) -> npt.NDArray[np.floating[Any]]:
    """The gradient of :func:`binary_cross_entropy` with respect to ``input``.

    ``grad_output`` is the gradient flowing into the loss: a scalar for ``"mean"`` and
    ``"sum"``; for ``"none"``, an array that broadcasts to the input's shape. ``None`` means 1.
    Per element: ``grad_output * (input - target) / max((1 - input) * input, 1e-12) *
    weight``, divided by the number of elements for ``"mean"``.

    Returns:
        An array of the input's shape and dtype.
    """
    return _backward("bce", 0.0, 0.0, grad_output, input, target, weight, None, reduction)


def binary_cross_entropy_with_logits_backward(
    grad_output: ArrayLike | None,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
) -> npt.NDArray[np.floating[Any]]:
    """The gradient of :func:`binary_cross_entropy_with_logits` with respect to ``input``.

    Per element: ``grad_output * weight * ((1 - target) * sigmoid(input) - pos_weight *
    target * sigmoid(-input))``, divided by the number of elements for ``"mean"``.
    ``grad_output`` as in :func:`binary_cross_entropy_backward`.

    Returns:
        An array of the input's shape and dtype.
    """
    return _backward("logits", 0.0, 0.0, grad_output, input, target, weight, pos_weight, reduction)


def binary_cross_entropy_value_and_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
    """:func:`binary_cross_entropy` and its input gradient (for grad_output 1), in one pass.

    Returns:
        ``(loss, grad_input)``: the loss as :func:`binary_cross_entropy` returns it, and an
        array of the input's shape and dtype.
    """
    return _value_and_grad("bce", 0.0, 0.0, input, target, weight, None, reduction)


def binary_cross_entropy_with_logits_value_and_grad(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: ReductionName = "mean",
) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
    """:func:`binary_cross_entropy_with_logits` and its input gradient, in one pass.

    Returns:
        ``(loss, grad_input)``, as :func:`binary_cross_entropy_value_and_grad`.
    """
    return _value_and_grad("logits", 0.0, 0.0, input, target, weight, pos_weight, reduction)


def sigmoid_focal_loss(
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: ReductionName = "none",
    weight: ArrayLike | None = None,
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
        targets: same shape as ``inputs``, in [0, 1] (not checked, as in torchvision); any real
            or bool dtype.
        alpha: at most 1, not NaN; negative turns the class weighting off.
        gamma: a finite number >= 0.
        reduction: ``"none"`` (torchvision's default), ``"mean"`` or ``"sum"``.
        weight: broadcasts to the input's shape (it may not enlarge it).

    Returns:
        A NumPy scalar for ``"mean"`` and ``"sum"``, an array of the input's shape for ``"none"``.

    Raises:
        ValueError: bad ``alpha`` or ``gamma``, shapes that do not match, an unknown reduction.
        TypeError: a non-float input or a non-real argument.
    """
    return _forward("focal", alpha, gamma, inputs, targets, weight, None, reduction)


def sigmoid_focal_loss_backward(
    grad_output: ArrayLike | None,
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: ReductionName = "none",
    weight: ArrayLike | None = None,
) -> npt.NDArray[np.floating[Any]]:
    """The gradient of :func:`sigmoid_focal_loss` with respect to ``inputs``; ``grad_output``
    as in :func:`binary_cross_entropy_backward` (``None`` means 1).

    Returns:
        An array of the input's shape and dtype.
    """
    return _backward("focal", alpha, gamma, grad_output, inputs, targets, weight, None, reduction)


def sigmoid_focal_loss_value_and_grad(
    inputs: ArrayLike,
    targets: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: ReductionName = "none",
    weight: ArrayLike | None = None,
) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
    """:func:`sigmoid_focal_loss` and its input gradient (for grad_output 1), in one pass.

    Returns:
        ``(loss, grad_input)``, as :func:`binary_cross_entropy_value_and_grad`.
    """
    return _value_and_grad("focal", alpha, gamma, inputs, targets, weight, None, reduction)
