"""The optional GPU path: device-resident float32 arrays, and the losses computed on them.

Every function and class of bcers takes :class:`bcers.gpu.Array` arguments: when the input, or
any other array argument, is one, the call runs on the GPU (NumPy arguments mixed in are
uploaded first). ``mean`` and ``sum`` return a ``np.float32``; ``none`` losses and gradients
stay on the device as :class:`Array` (``.numpy()`` downloads them)::

    import numpy as np
    import bcers

    if bcers.gpu.is_available():
        x = bcers.gpu.asarray(np.random.default_rng(0).standard_normal(10**7, np.float32))
        y = bcers.gpu.asarray((np.asarray(x) > 0).astype(np.float32))
        loss, grad = bcers.BCEWithLogitsLoss().value_and_grad(x, y)  # np.float32, Array

The GPU computes in float32 only: a float64 ``input`` raises TypeError (float16 is upcast on
upload); ``target``, ``weight``, ``pos_weight`` and ``grad_output`` of any real or bool dtype
are cast to float32, as on the CPU. The per-element formulas, the broadcasting, the range check
of BCE (the same ValueError) and every error are the CPU's; sums are float32 per workgroup and
float64 across workgroups, deterministic, within 2e-5 relative of the CPU's.

The device is opened on first use (wgpu: Vulkan, Metal, DX12 or GL), never at import. Without
a GPU adapter :func:`is_available` is False and any GPU call raises RuntimeError saying what is
missing; Mesa's lavapipe (``apt-get install mesa-vulkan-drivers``) is a software Vulkan device
that runs everything on the CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _bcers
from ._arrays import check_real, convert

__all__ = ["Array", "adapter_info", "asarray", "is_available"]

_BUILT = hasattr(_bcers, "_gpu_compute")
_NOT_BUILT = (
    "this build of bcers lacks GPU support: it was built without the Cargo feature 'gpu' "
    "(the wheel that `pip install .` builds has it)"
)

if TYPE_CHECKING:
    from ._bcers import Array
elif _BUILT:
    Array = _bcers.Array
else:

    class Array:
        """A float32 array on the GPU: unavailable, this build of bcers lacks GPU support."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError(_NOT_BUILT)


def is_available() -> bool:
    """Whether the GPU path can run: a GPU adapter was found (the device is opened on the
    first call, which may take a moment)."""
    return _BUILT and _bcers._gpu_is_available()


def _require() -> None:
    if not _BUILT:
        raise RuntimeError(_NOT_BUILT)


def adapter_info() -> dict[str, Any]:
    """The GPU adapter: ``name``, ``backend``, ``device_type``, ``driver``, ``driver_info``
    and ``buffer_elements`` (the elements one storage buffer of an array holds).

    Raises:
        RuntimeError: no GPU adapter, or a build without GPU support.
    """
    _require()
    return _bcers._gpu_adapter_info()


def _upload(value: Any, name: str, strict: bool) -> Array:
    """``value`` on the GPU as float32. ``strict``: only float32, float16 (upcast), integers
    and bools are taken (the input; :func:`asarray`); otherwise any real or bool dtype."""
    if type(value) is Array:
        return value
    _require()
    a = convert(value, name)
    kind = a.dtype.kind
    if name == "input" and kind != "f":
        raise TypeError(
            f"input must be an array of float16, float32 or float64, got dtype {a.dtype}"
        )
    check_real(a, name)
    if strict and kind == "f" and a.dtype.itemsize > 4:
        raise TypeError(
            f"the GPU computes in float32 only: {name} has dtype {a.dtype}; convert it with "
            ".astype(np.float32) first (or pass NumPy arrays to compute in float64 on the CPU)"
        )
    with np.errstate(over="ignore"):  # beyond float32's range is inf, silently
        a = a.astype(np.float32, copy=False)
    if not a.flags.aligned:
        a = a.copy()
    if a.ndim > _bcers.MAX_NDIM:
        # Uploaded without its axes of length 1 (the native module takes 32), given back its
        # shape on the device.
        inner = a.reshape([n for n in a.shape if n != 1])
        if inner.ndim > _bcers.MAX_NDIM:
            raise ValueError(
                f"{name} has {inner.ndim} dimensions longer than 1; bcers takes at most "
                f"{_bcers.MAX_NDIM}"
            )
        return _bcers._gpu_asarray(inner, a.shape)
    return _bcers._gpu_asarray(a)


def asarray(array: npt.ArrayLike) -> Array:
    """``array`` on the GPU, as float32 (an :class:`Array` is returned as it is).

    float16, integer and bool arrays are converted; float64 raises TypeError (the GPU computes
    in float32: convert explicitly).

    Raises:
        TypeError: a float64 or non-real array.
        RuntimeError: no GPU adapter, or a build without GPU support.
    """
    return _upload(array, "array", True)


def _optional(value: Any, name: str) -> Array | None:
    return None if value is None else _upload(value, name, False)


def _compute(
    loss: str,
    alpha: float,
    gamma: float,
    input: Any,
    target: Any,
    weight: Any,
    pos_weight: Any,
    grad_output: Any,
    reduction: str,
    outputs: tuple[bool, bool, bool, bool],
    options: Any,
    as_derivatives: bool = False,
) -> Any:
    """One call on the GPU (bcers' functions make it when an argument is an :class:`Array`):
    the loss (a ``np.float32`` for ``mean``/``sum``, an :class:`Array` for ``none``), the
    gradient (an :class:`Array`), or both as a tuple; a ``Derivatives`` with
    ``as_derivatives`` or with the target gradient or second derivative. ``grad_output`` None
    means 1. A reduction over some axes (or with ``keepdims``) gives an :class:`Array`. The
    mask is a bool array (uploaded as float32) or an :class:`Array` (0 leaves an element
    out)."""
    value, grad, grad_target, hess = outputs
    x = _upload(input, "input", True)
    y = _upload(target, "target", False)
    w = _optional(weight, "weight")
    pw = _optional(pos_weight, "pos_weight")
    g = _optional(grad_output, "grad_output") if grad or grad_target or hess else None
    m = _optional(options.mask, "mask")
    extra: dict[str, Any] = (
        {"grad_target": grad_target, "hess": hess} if grad_target or hess else {}
    )
    if m is not None:
        extra["mask"] = m
    if options.axis is not None or options.keepdims:
        extra["axis"] = None if options.axis is None else list(options.axis)
        extra["keepdims"] = options.keepdims
    out = _bcers._gpu_compute(
        loss, alpha, gamma, x, y, w, pw, g, reduction, value, grad, options.label_smoothing, **extra
    )

    def scalar(v: Any) -> Any:
        return np.float32(v) if type(v) is float else v

    if grad_target or hess:
        from ._functional import Derivatives

        return Derivatives(scalar(out[0]), out[1], out[2], out[3])
    if value and grad:
        pair = scalar(out[0]), out[1]
    elif value:
        pair = scalar(out), None
    else:
        pair = None, out
    if as_derivatives:
        from ._functional import Derivatives

        return Derivatives(pair[0], pair[1], None, None)
    if value and grad:
        return pair
    return pair[0] if value else pair[1]
