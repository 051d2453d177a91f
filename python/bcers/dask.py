"""bcers on Dask arrays: the losses, their derivatives and ``log_loss``, lazily, over data
that does not fit one machine, with the same bits as the in-memory call.

Every function has the name and the arguments of its ``bcers`` (or ``bcers.metrics``)
counterpart, takes Dask arrays (NumPy arrays may be mixed in: they are cut into the input's
chunks) and returns Dask arrays; nothing is computed until ``.compute()``, and no data is
gathered on one machine. The results are bitwise those of the in-memory call, for every
chunking, every dtype and every option:

- a reduction (``mean``, ``sum``, ``weighted_mean``, over every axis or some) is built from
  the exact per-chunk sums of bcers (the sums of the losses, of the weights and the count,
  exact until they are rounded once), merged in a tree;
- ``reduction="none"`` and every derivative are computed chunk by chunk; the derivatives of a
  mean take their denominator from the merged sums when it depends on the data (a mask, or a
  weighted mean's weights), and are scaled exactly as the in-memory call scales them.

The main functions route Dask arrays here: ``bcers.binary_cross_entropy(dask_x, dask_y)``
and ``bcers.BCELoss()(dask_x, dask_y)`` return what this module's functions return.

Example::

    import dask.array as da
    import bcers.dask

    x = da.random.default_rng(0).random(10**8, chunks=10**7, dtype="float32")
    y = (da.random.default_rng(1).random(10**8, chunks=10**7) < 0.5).astype("float32")
    loss, grad = bcers.dask.binary_cross_entropy_value_and_grad(x, y)   # lazy
    loss.compute()                          # the same bits as bcers on the whole arrays

Install with ``pip install bcers[dask]``.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

try:
    import dask as _dask
    import dask.array as _dask_array
except ImportError:  # pragma: no cover - exercised without dask installed
    raise ImportError(
        "bcers.dask needs dask (dask.array): install it with `pip install bcers[dask]`"
    ) from None

from . import _bcers
from . import _functional as _f
from ._functional import (
    ArrayLike,
    Axis,
    Derivatives,
    ReductionName,
    _broadcast_error,
    _Options,
)
from ._log_loss import _BYTES, _check_parameters

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_derivatives",
    "binary_cross_entropy_value_and_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_derivatives",
    "binary_cross_entropy_with_logits_value_and_grad",
    "log_loss",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_backward",
    "sigmoid_focal_loss_derivatives",
    "sigmoid_focal_loss_value_and_grad",
]

# dask's annotations are partial: its modules are used through Any.
da: Any = _dask_array
dask: Any = _dask

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_COMPUTE: dict[np.dtype[Any], np.dtype[Any]] = {_F16: _F32, _F32: _F32, _F64: _F64}
_OBJECT = np.dtype(object)
_RANGE_ERROR = re.compile(r"(.* between 0 and 1; (?:input|target))\[([^\]]*)\]( is .*)")


# --------------------------------------------------------------------------------------------
# Operands


def _is_dask(value: Any) -> bool:
    return hasattr(value, "__dask_graph__")


def _known(x: Any, name: str) -> None:
    if any(math.isnan(c) for chunks in x.chunks for c in chunks):
        raise ValueError(
            f"{name} has chunks of unknown size: call .compute_chunk_sizes() on it first"
        )


def _input(input: Any, like: Any) -> Any:
    """The input as a Dask array; a NumPy input is cut like ``like`` (a Dask target) when it
    has its shape."""
    if _is_dask(input):
        x = da.asarray(input)
    else:
        a = np.asarray(input)
        if _is_dask(like) and tuple(like.shape) == a.shape:
            _known(like, "target")
            x = da.from_array(a, chunks=like.chunks)
        else:
            x = da.from_array(a)
    _known(x, "input")
    return x


def _dtypes(x: Any) -> tuple[np.dtype[Any], np.dtype[Any]]:
    """The result dtype and the compute dtype of an input."""
    dtype = np.dtype(x.dtype)
    if dtype.kind == "f" and dtype.newbyteorder("=") in _COMPUTE:
        dtype = dtype.newbyteorder("=")
        return dtype, _COMPUTE[dtype]
    raise TypeError(f"input must be an array of float16, float32 or float64, got dtype {x.dtype}")


def _fit(value: Any, x: Any, name: str) -> Any:
    """``value`` (a Dask or NumPy array that broadcasts to the input's shape without enlarging
    it) with the input's number of axes and its chunks; its axes of length 1 where the input's
    are longer stay single chunks of length 1 (Dask broadcasts them to every block)."""
    if not _is_dask(value):
        value = np.asarray(value)
    shape = tuple(value.shape)
    if any(isinstance(n, float) and math.isnan(n) for n in shape):
        raise ValueError(f"{name} has an unknown shape: call .compute_chunk_sizes() on it first")
    if len(shape) > x.ndim or any(
        s not in (1, n) for s, n in zip(reversed(shape), reversed(x.shape))
    ):
        raise _broadcast_error(name, shape, tuple(x.shape))
    padded = (1,) * (x.ndim - len(shape)) + shape
    chunks = tuple((1,) if s == 1 and n != 1 else c for s, n, c in zip(padded, x.shape, x.chunks))
    if _is_dask(value):
        return value.reshape(padded).rechunk(chunks)
    return da.from_array(value.reshape(padded), chunks=chunks)


def _check_real(value: Any, name: str) -> None:
    if np.dtype(value.dtype).kind not in "biuf":
        raise TypeError(
            f"{name} must be an array of real numbers or booleans, got dtype {value.dtype}"
        )


def _axes(axis: tuple[int, ...] | None, ndim: int, mode: str) -> tuple[int, ...] | None:
    """The axes of a reduction over some axes, normalized and increasing (None: all)."""
    if axis is None:
        return None
    if mode == "none":
        raise ValueError(
            "axis reduces over some axes; it needs reduction='mean', 'sum' or 'weighted_mean', "
            "not 'none'"
        )
    axes = []
    for a in axis:
        ax = a + ndim if a < 0 else a
        if not 0 <= ax < ndim:
            raise ValueError(f"axis {a} is out of bounds for array of dimension {ndim}")
        if ax in axes:
            raise ValueError("duplicate value in 'axis'")
        axes.append(ax)
    return tuple(sorted(axes))


def _offsets(block_info: Any) -> list[int] | None:
    if not block_info or 0 not in block_info:
        return None
    return [start for start, _ in block_info[0]["array-location"]]


def _located(e: ValueError, offsets: list[int] | None) -> ValueError:
    """A range error of a block, its index rewritten as an index of the whole input."""
    m = _RANGE_ERROR.fullmatch(str(e))
    if m is None or offsets is None:
        return e
    inner = [int(i) for i in m.group(2).split(", ")] if m.group(2) != "()" else []
    index = [i + o for i, o in zip(inner, offsets)]
    return ValueError(f"{m.group(1)}[{', '.join(map(str, index))}]{m.group(3)}")


class _Call:
    """One call's description, shipped to the workers with each block's task: the loss, the
    reduction and its axes, the outputs asked for, the dtypes."""

    def __init__(
        self,
        loss: str,
        alpha: float,
        gamma: float,
        mode: str,
        outputs: tuple[bool, bool, bool, bool],
        label_smoothing: float,
        axes: tuple[int, ...] | None,
        keepdims: bool,
        ndim: int,
        dtype: np.dtype[Any],
        operands: tuple[bool, bool, bool, bool],
    ) -> None:
        self.loss = loss
        self.alpha = alpha
        self.gamma = gamma
        self.mode = mode
        self.outputs = outputs
        self.label_smoothing = label_smoothing
        # None: every axis; a per-slot reduction keeps some axes.
        self.axes = None if axes is not None and len(axes) == ndim else axes
        self.keepdims = keepdims
        self.ndim = ndim
        self.dtype = dtype
        self.compute = _COMPUTE[dtype]
        # Which of weight, pos_weight, mask, grad_output are passed to the blocks.
        self.operands = operands

    @property
    def reduced(self) -> tuple[int, ...]:
        return tuple(range(self.ndim)) if self.axes is None else self.axes

    def unpack(
        self, blocks: tuple[Any, ...]
    ) -> tuple[Any, Any, Any, Any, Any, Any, tuple[Any, ...]]:
        """x, y, weight, pos_weight, mask, grad_output (None where absent), and the rest."""
        it = iter(blocks)
        x, y = next(it), next(it)
        w, pw, m, g = (next(it) if present else None for present in self.operands)
        return x, y, w, pw, m, g, tuple(it)

    def options(self, mask: Any, axes: tuple[int, ...] | None, keepdims: bool) -> _Options:
        return _Options(self.label_smoothing, mask, axes, keepdims)


def _prepare(call: _Call, x: Any, y: Any, w: Any, pw: Any) -> tuple[Any, Any, Any, Any]:
    """A block's operands in the compute dtype, as the in-memory call prepares them."""
    xc, yc, wc, pwc, _ = _f._prepare(x, y, w, pw)
    return xc, yc, wc, pwc


# --------------------------------------------------------------------------------------------
# Block functions (run on the workers)


def _local_block(*blocks: Any, call: _Call, block_info: Any = None) -> Any:
    """The whole in-memory call on one block (``none``, or a reduction whose reduced axes lie
    in one block): a tuple of the outputs asked for (value, grad, grad_target, hess)."""
    x, y, w, pw, m, g, _ = call.unpack(blocks)
    if call.mode == "none":
        options = call.options(m, None, False)
    elif call.keepdims or call.axes is not None:
        options = call.options(m, call.reduced, True)
    else:
        options = call.options(m, None, False)
        g = None if g is None else g.reshape(())
    flags = call.outputs
    derivatives = flags[1] or flags[2] or flags[3]
    try:
        out = _f._run(
            call.loss,
            call.alpha,
            call.gamma,
            x,
            y,
            w,
            pw,
            g if derivatives else None,
            call.mode,
            flags,
            options,
            as_derivatives=True,
        )
    except ValueError as e:
        raise _located(e, _offsets(block_info)) from None
    return tuple(out)


def _states_block(*blocks: Any, call: _Call, block_info: Any = None) -> npt.NDArray[Any]:
    """The exact sums of a block, one per slot of the reduction, as an object array of the
    block's shape with the reduced axes of length 1."""
    x, y, w, pw, m, _, _ = call.unpack(blocks)
    xc, yc, wc, pwc = _prepare(call, x, y, w, pw)
    try:
        states = _bcers.sums(
            call.loss, call.alpha, call.gamma, xc, yc, wc, pwc, call.label_smoothing, m, call.axes
        )
    except ValueError as e:
        raise _located(e, _offsets(block_info)) from None
    shape = tuple(1 if ax in call.reduced else n for ax, n in enumerate(x.shape))
    out = np.empty(shape, dtype=object)
    flat = out.reshape(-1)
    for i, state in enumerate(states):
        flat[i] = state
    return out


def _merge(a: npt.NDArray[Any], axis: Any = None, keepdims: bool = True) -> npt.NDArray[Any]:
    """The states of ``a`` merged over ``axis``, slot by slot (the axes kept, of length 1)."""
    if axis is None:
        axis = tuple(range(a.ndim))
    elif isinstance(axis, int):
        axis = (axis,)
    axis = tuple(sorted(ax % a.ndim for ax in axis)) if a.ndim else ()
    kept = [ax for ax in range(a.ndim) if ax not in axis]
    moved = np.moveaxis(a, kept, list(range(len(kept)))) if kept else a
    slots = int(np.prod([a.shape[ax] for ax in kept], dtype=np.int64))
    rows = moved.reshape(slots, -1)
    out = np.empty(slots, dtype=object)
    for i in range(slots):
        out[i] = _bcers.sums_merge(list(rows[i]))
    shape = tuple(1 if ax in axis else n for ax, n in enumerate(a.shape))
    return out.reshape(shape)


def _finish(states: npt.NDArray[Any], mode: str) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The sums of the losses and the denominators of merged states, in float64."""
    sums = np.empty(states.shape, dtype=np.float64)
    denominators = np.empty(states.shape, dtype=np.float64)
    for i, state in enumerate(states.reshape(-1)):
        values, weights, count = _bcers.sums_finish(state)
        sums.flat[i] = values
        if mode == "mean":
            denominators.flat[i] = float(count)
        elif mode == "weighted_mean":
            denominators.flat[i] = weights
        else:
            denominators.flat[i] = 1.0
    return sums, denominators


def _value_block(states: npt.NDArray[Any], call: _Call) -> Any:
    """The reduced values of merged states, rounded as the in-memory call rounds them (a
    scalar result from float64 to the dtype; an array through the compute dtype)."""
    sums, denominators = _finish(states, call.mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = sums / denominators if call.mode != "sum" else sums
    if call.axes is None and not call.keepdims:
        return _f._result(float(values.reshape(-1)[0]), call.dtype)
    with np.errstate(over="ignore"):
        return values.astype(call.compute).astype(call.dtype, copy=False)


def _denominator_block(states: npt.NDArray[Any], call: _Call) -> npt.NDArray[Any]:
    return _finish(states, call.mode)[1]


def _scale(
    mode: str, denominators: npt.NDArray[Any], g: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any] | None]:
    """The factor the derivatives are computed with, per slot, and the divisor they are then
    divided by (None when no slot needs one): the in-memory call's rule (derivative_scale),
    elementwise. ``g`` is in the compute dtype."""
    if mode == "sum":
        return g, None
    compute = g.dtype
    with np.errstate(all="ignore"):
        folded = g.astype(np.float64) / denominators
        narrowed = folded.astype(compute)
        tiny = (g != 0) & (np.abs(folded) < np.finfo(compute).tiny)
        overflows = np.isfinite(folded) & np.isinf(narrowed)
        after = tiny | overflows
        if not after.any():
            return narrowed, None
        factor = np.where(after, g, narrowed)
        divisor = np.where(after, denominators.astype(compute), compute.type(1))
    return factor, divisor


def _grad_block(*blocks: Any, call: _Call, count: float, block_info: Any = None) -> Any:
    """The derivatives of a reduction on one block, with the factor of its slots (from the
    slots' denominators and grad_output), then divided where the in-memory call divides:
    a tuple (None, grad, grad_target, hess)."""
    x, y, w, pw, m, g, rest = call.unpack(blocks)
    xc, yc, wc, pwc = _prepare(call, x, y, w, pw)
    slots = tuple(1 if ax in call.reduced else n for ax, n in enumerate(x.shape))
    denominators = rest[0] if rest else np.full(slots, count, dtype=np.float64)
    given = None if g is None else _f._grad_output(g, call.dtype)
    gc = np.ones(slots, call.compute) if given is None else np.broadcast_to(given, slots)
    factor, divisor = _scale(call.mode, np.broadcast_to(denominators, slots), gc)
    flags = (False, *call.outputs[1:])
    if call.axes is None:
        factor = np.asarray(factor.reshape(-1)[0])
        options = call.options(m, None, False)
    else:
        factor = np.ascontiguousarray(factor)
        options = call.options(m, call.axes, True)
    try:
        out = _f._native(
            call.loss,
            call.alpha,
            call.gamma,
            xc,
            yc,
            wc,
            pwc,
            factor,
            "sum",
            flags,
            options,
        )
    except ValueError as e:
        raise _located(e, _offsets(block_info)) from None
    arrays = list(out) if isinstance(out, tuple) else [None, out, None, None]
    results: list[Any] = [None]
    for a in arrays[1:]:
        if a is None:
            results.append(None)
            continue
        if divisor is not None:
            d = divisor.reshape(()) if call.axes is None else divisor
            if np.any(d != 1):
                a = a / d
        results.append(_f._array(a, call.dtype))
    return tuple(results)


# --------------------------------------------------------------------------------------------
# Graph building


def _only_value(nested: Any) -> Any:
    """The value of the one block of a full reduction's tuples (Dask hands it over in nested
    lists, one level per axis)."""
    while isinstance(nested, list):
        nested = nested[0]
    return nested[0]


def _meta(ndim: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    return np.empty((0,) * ndim, dtype=dtype)


def _split(
    tuples: Any, wanted: list[int], chunks: Any, ndim: int, dtype: np.dtype[Any]
) -> dict[int, Any]:
    """The outputs ``wanted`` of a Dask array whose blocks are tuples of outputs."""
    return {
        k: da.map_blocks(
            operator.getitem, tuples, k, chunks=chunks, dtype=dtype, meta=_meta(ndim, dtype)
        )
        for k in wanted
    }


def _compute(
    loss: str,
    alpha: float,
    gamma: float,
    input: Any,
    target: Any,
    weight: Any,
    pos_weight: Any,
    grad_output: Any,
    mode: str,
    outputs: tuple[bool, bool, bool, bool],
    options: _Options,
    as_derivatives: bool,
) -> Any:
    """The call of ``bcers._functional._run`` on Dask arrays (``mode`` a checked reduction
    name): what it returns, made of Dask arrays."""
    if mode == "mean_with_sample_weight":
        mode = "weighted_mean"
    value, grad, grad_target, hess = outputs
    derivatives = grad or grad_target or hess
    _bcers.check_loss(loss, alpha, gamma, options.label_smoothing)
    if pos_weight is not None and loss != "logits":
        raise ValueError(f"{'BCE' if loss == 'bce' else 'sigmoid focal loss'} takes no pos_weight")
    x = _input(input, target)
    dtype, _ = _dtypes(x)
    if not _is_dask(target):
        target = np.asarray(target)
    _check_real(target, "target")
    if tuple(target.shape) != tuple(x.shape):
        raise ValueError(
            f"Target size {tuple(target.shape)} must be the same as input size {tuple(x.shape)}"
        )
    y = _fit(target, x, "target")
    w = None if weight is None else _fit(weight, x, "weight")
    pw = None if pos_weight is None else _fit(pos_weight, x, "pos_weight")
    for a, name in ((w, "weight"), (pw, "pos_weight")):
        if a is not None:
            _check_real(a, name)
    m = None
    if options.mask is not None:
        m = _fit(options.mask, x, "mask")
        if m.dtype != np.bool_:
            raise TypeError(f"mask must be an array of booleans, got dtype {m.dtype}")
    axes = _axes(options.axis, x.ndim, mode)
    reduced = tuple(range(x.ndim)) if axes is None else axes
    full = len(reduced) == x.ndim
    g = None
    if derivatives and grad_output is not None:
        g = _grad_output_operand(grad_output, x, mode, reduced, options.keepdims, full)
    call = _Call(
        loss,
        alpha,
        gamma,
        mode,
        (value, grad, grad_target, hess),
        options.label_smoothing,
        axes,
        options.keepdims,
        x.ndim,
        dtype,
        (w is not None, pw is not None, m is not None, g is not None),
    )
    operands = [a for a in (x, y, w, pw, m, g) if a is not None]
    keep_chunks = tuple((1,) * len(c) if ax in reduced else c for ax, c in enumerate(x.chunks))
    results: dict[int, Any] = {}
    local = mode == "none" or all(len(x.chunks[ax]) == 1 for ax in reduced)
    if local:
        tuples = da.map_blocks(
            _local_block, *operands, call=call, dtype=dtype, meta=_meta(x.ndim, dtype)
        )
        wanted = [k for k in range(4) if outputs[k]]
        if mode != "none" and value:
            if not full or options.keepdims:
                values = _split(tuples, [0], keep_chunks, x.ndim, dtype)[0]
                if not options.keepdims:
                    values = values.squeeze(axis=reduced)
            else:
                values = da.blockwise(
                    _only_value,
                    (),
                    tuples,
                    tuple(range(x.ndim)),
                    dtype=dtype,
                    meta=_meta(0, dtype),
                )
            results[0] = values
            wanted.remove(0)
        results.update(_split(tuples, wanted, x.chunks, x.ndim, dtype))
    else:
        states = None
        if value or (derivatives and _data_dependent(mode, w, m)):
            states = _merged_states(operands, call, keep_chunks, reduced)
        if value:
            results[0] = _values(states, call, reduced, full, options.keepdims)
        if derivatives:
            extra = []
            count = 1.0
            if _data_dependent(mode, w, m):
                extra.append(
                    da.map_blocks(
                        _denominator_block,
                        states,
                        call=call,
                        dtype=np.float64,
                        meta=_meta(x.ndim, _F64),
                    )
                )
            else:
                count = float(np.prod([x.shape[ax] for ax in reduced], dtype=np.float64))
            tuples = da.map_blocks(
                _grad_block,
                *operands,
                *extra,
                call=call,
                count=count,
                dtype=dtype,
                meta=_meta(x.ndim, dtype),
            )
            results.update(
                _split(tuples, [k for k in (1, 2, 3) if outputs[k]], x.chunks, x.ndim, dtype)
            )
    out = [results.get(k) for k in range(4)]
    if grad_target or hess or as_derivatives:
        return Derivatives(*out)
    if value and grad:
        return out[0], out[1]
    return out[0] if value else out[1]


def _data_dependent(mode: str, w: Any, m: Any) -> bool:
    """Whether a reduction's denominators depend on the data (else they are counts)."""
    if mode == "mean":
        return m is not None
    if mode == "weighted_mean":
        return m is not None or w is not None
    return False


def _merged_states(
    operands: list[Any], call: _Call, keep_chunks: Any, reduced: tuple[int, ...]
) -> Any:
    """The exact sums per slot, merged over every block: an object Dask array of the reduced
    shape with keepdims, chunked like the input on the kept axes."""
    states = da.map_blocks(
        _states_block,
        *operands,
        call=call,
        chunks=keep_chunks,
        dtype=_OBJECT,
        meta=_meta(call.ndim, _OBJECT),
    )
    return da.reduction(
        states,
        chunk=_merge,
        combine=_merge,
        aggregate=_merge,
        axis=reduced,
        keepdims=True,
        dtype=_OBJECT,
        meta=_meta(call.ndim, _OBJECT),
        concatenate=True,
    )


def _values(states: Any, call: _Call, reduced: tuple[int, ...], full: bool, keepdims: bool) -> Any:
    if full and not keepdims:
        return da.map_blocks(
            _value_block,
            states,
            call=call,
            drop_axis=list(range(call.ndim)),
            dtype=call.dtype,
            meta=_meta(0, call.dtype),
        )
    values = da.map_blocks(
        _value_block, states, call=call, dtype=call.dtype, meta=_meta(call.ndim, call.dtype)
    )
    return values if keepdims else values.squeeze(axis=reduced)


def _grad_output_operand(
    grad_output: Any,
    x: Any,
    mode: str,
    reduced: tuple[int, ...],
    keepdims: bool,
    full: bool,
) -> Any:
    """grad_output as the blocks take it: for ``none``, broadcast like a weight; for a
    reduction, of the reduced shape with keepdims, chunked like the input on the kept axes."""
    if mode == "none":
        return _fit(grad_output, x, "grad_output")
    if not _is_dask(grad_output):
        grad_output = np.asarray(grad_output)
    _check_real(grad_output, "grad_output")
    shape = tuple(grad_output.shape)
    result = tuple(
        1 if ax in reduced else n for ax, n in enumerate(x.shape) if keepdims or ax not in reduced
    )
    keep = tuple(1 if ax in reduced else n for ax, n in enumerate(x.shape))
    if full:
        if not (shape == () or shape == result):
            raise ValueError(
                f"grad_output must be a scalar for reduction='{mode}', got shape {shape}"
            )
    elif shape != result:
        raise ValueError(
            f"grad_output must have the reduced loss's shape {result}, got shape {shape}"
        )
    chunks = tuple((1,) if ax in reduced else c for ax, c in enumerate(x.chunks))
    if _is_dask(grad_output):
        return grad_output.reshape(keep).rechunk(chunks)
    return da.from_array(grad_output.reshape(keep), chunks=chunks)


def _lazy(input: Any, target: Any) -> Any:
    """The input as a Dask array, so that the main functions route the call here (a NumPy
    input is cut like a Dask target)."""
    return input if _is_dask(input) else _input(input, target)


# --------------------------------------------------------------------------------------------
# The public functions: bcers's, on Dask arrays.

_RETURNS = """

    The arguments and the result are those of :func:`bcers.{name}`, with Dask arrays: NumPy
    arrays may be mixed in (they are cut into the input's chunks; weight, pos_weight, mask and
    grad_output broadcast as in bcers). Returns Dask arrays (a 0-d one for a full reduction,
    a :class:`bcers.Derivatives` of them for the ``_derivatives`` functions); nothing is
    computed until they are. The results are bitwise those of :func:`bcers.{name}` on the
    whole arrays, for every chunking. Errors that need the data (values out of range) are
    raised at compute time, as ValueError.
"""


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
) -> Any:
    return _f.binary_cross_entropy(
        _lazy(input, target),
        target,
        weight,
        size_average,
        reduce,
        reduction,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
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
) -> Any:
    return _f.binary_cross_entropy_with_logits(
        _lazy(input, target),
        target,
        weight,
        size_average,
        reduce,
        reduction,
        pos_weight,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
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
) -> Any:
    return _f.sigmoid_focal_loss(
        _lazy(inputs, targets),
        targets,
        alpha,
        gamma,
        reduction,
        weight,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
    )


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
) -> Any:
    return _f.binary_cross_entropy_backward(
        grad_output,
        _lazy(input, target),
        target,
        weight,
        reduction,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
    )


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
) -> Any:
    return _f.binary_cross_entropy_with_logits_backward(
        grad_output,
        _lazy(input, target),
        target,
        weight,
        pos_weight,
        reduction,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
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
) -> Any:
    return _f.sigmoid_focal_loss_backward(
        grad_output,
        _lazy(inputs, targets),
        targets,
        alpha,
        gamma,
        reduction,
        weight,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
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
) -> tuple[Any, Any]:
    return _f.binary_cross_entropy_value_and_grad(
        _lazy(input, target),
        target,
        weight,
        reduction,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
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
) -> tuple[Any, Any]:
    return _f.binary_cross_entropy_with_logits_value_and_grad(
        _lazy(input, target),
        target,
        weight,
        pos_weight,
        reduction,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
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
) -> tuple[Any, Any]:
    return _f.sigmoid_focal_loss_value_and_grad(
        _lazy(inputs, targets),
        targets,
        alpha,
        gamma,
        reduction,
        weight,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
    )


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
) -> Derivatives:
    return _f.binary_cross_entropy_derivatives(
        _lazy(input, target),
        target,
        weight,
        reduction,
        value=value,
        grad=grad,
        grad_target=grad_target,
        hess=hess,
        grad_output=grad_output,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
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
) -> Derivatives:
    return _f.binary_cross_entropy_with_logits_derivatives(
        _lazy(input, target),
        target,
        weight,
        pos_weight,
        reduction,
        value=value,
        grad=grad,
        grad_target=grad_target,
        hess=hess,
        grad_output=grad_output,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
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
) -> Derivatives:
    return _f.sigmoid_focal_loss_derivatives(
        _lazy(inputs, targets),
        targets,
        alpha,
        gamma,
        reduction,
        weight,
        value=value,
        grad=grad,
        grad_target=grad_target,
        hess=hess,
        grad_output=grad_output,
        label_smoothing=label_smoothing,
        mask=mask,
        axis=axis,
        keepdims=keepdims,
    )


def _document(function: Callable[..., Any], summary: str) -> None:
    function.__doc__ = summary + _RETURNS.format(name=function.__name__)


for _function, _summary in (
    (binary_cross_entropy, "Binary cross entropy between probabilities, on Dask arrays."),
    (binary_cross_entropy_with_logits, "Binary cross entropy on logits, on Dask arrays."),
    (sigmoid_focal_loss, "Sigmoid focal loss, on Dask arrays."),
    (binary_cross_entropy_backward, "The input gradient of binary cross entropy."),
    (
        binary_cross_entropy_with_logits_backward,
        "The input gradient of binary cross entropy on logits.",
    ),
    (sigmoid_focal_loss_backward, "The input gradient of the sigmoid focal loss."),
    (binary_cross_entropy_value_and_grad, "Binary cross entropy and its input gradient."),
    (
        binary_cross_entropy_with_logits_value_and_grad,
        "Binary cross entropy on logits and its input gradient.",
    ),
    (sigmoid_focal_loss_value_and_grad, "The sigmoid focal loss and its input gradient."),
    (binary_cross_entropy_derivatives, "The outputs of binary cross entropy asked for."),
    (
        binary_cross_entropy_with_logits_derivatives,
        "The outputs of binary cross entropy on logits asked for.",
    ),
    (sigmoid_focal_loss_derivatives, "The outputs of the sigmoid focal loss asked for."),
):
    _document(_function, _summary)


# --------------------------------------------------------------------------------------------
# log_loss

_KEPT = (_F64, _F32, _F16)
_GAP: dict[np.dtype[Any], float] = {_F64: 1e-14, _F32: 1e-6}
_ZERO_WEIGHTS = "Sample weights must contain at least one non-zero number."
# The labels' dtype kinds: bool, integers, floats, and str (bytes are refused as scikit-learn
# refuses them; an object array must be given a str dtype, which its blocks cannot be checked
# for before they are computed).
_LABEL_KINDS = "biufU"


def _label_kind(dtype: Any, name: str) -> None:
    """TypeError for labels of a dtype bcers.dask.log_loss does not take."""
    kind = np.dtype(dtype).kind
    if kind == "S":
        raise TypeError(_BYTES)
    if kind not in _LABEL_KINDS:
        raise TypeError(
            f"bcers.dask.log_loss takes numeric, boolean or str {name}, got dtype {dtype} "
            "(give strings as a str dtype: .astype(str))"
        )


def _exact_sum(a: npt.NDArray[Any]) -> bytes:
    """The exact sum of ``a`` (float64) as sums state bytes (its weights' sum)."""
    zeros = np.broadcast_to(np.float64(0.0), a.shape)
    return _bcers.sums("logits", 0.0, 0.0, zeros, zeros, a, None)[0]


def _check_pred(p: npt.NDArray[Any]) -> None:
    if p.size == 0:
        return
    low, high = p.min(), p.max()
    if np.isnan(low) or np.isnan(high):
        raise ValueError("Input contains NaN.")
    if np.isinf(low) or np.isinf(high):
        raise ValueError(f"Input contains infinity or a value too large for {p.dtype!r}.")
    if high > 1:
        raise ValueError(f"y_pred contains values greater than 1: {high}")
    if low < 0:
        raise ValueError(f"y_pred contains values lower than 0: {low}")


def _check_labels(y: npt.NDArray[Any], classes: npt.NDArray[Any], labels: Any) -> None:
    inside = (y == classes[0]) | (y == classes[1])
    if not inside.all():
        undeclared = set(y[~inside].tolist())
        if labels is None:
            raise ValueError(
                f"bcers's log_loss is for binary problems, but y_true has more than two "
                f"classes (as {sorted(undeclared)[:3]} beside {classes.tolist()}); use "
                "sklearn.metrics.log_loss for multiclass problems"
            )
        raise ValueError(
            f"y_true contains values {undeclared} not belonging to the passed labels {labels}."
        )


def _log_loss_block(
    p: npt.NDArray[Any],
    y: npt.NDArray[Any],
    *rest: Any,
    weighted: bool,
    labels: Any,
    classes: Any = None,
) -> npt.NDArray[Any]:
    """One block's exact sums for log_loss: the direct loss (BCE of the clipped probability),
    the loss of the true class's probability (what the in-memory call falls back to), the
    weights and their absolute values; an object array of one tuple."""
    if weighted:
        w, rest = rest[0], rest[1:]
    else:
        w = None
    if classes is None:
        classes = rest[0]
    _check_pred(p)
    dtype = p.dtype
    compute = _COMPUTE[dtype]
    eps = np.finfo(dtype).eps
    if p.ndim == 2:
        y = y[:, 0]
        w = None if w is None else w[:, 0]
    _check_labels(y, classes, labels)
    positive = y == classes[1]
    weight = None
    weight_sum = weight_abs = None
    if w is not None:
        if w.dtype.kind == "f" and w.size:
            low, high = w.min(), w.max()
            if np.isnan(low) or np.isnan(high):
                raise ValueError("Input sample_weight contains NaN.")
            if np.isinf(low) or np.isinf(high):
                raise ValueError(
                    f"Input sample_weight contains infinity or a value too large for {w.dtype!r}."
                )
        with np.errstate(over="ignore"):
            weight = w if w.dtype == compute else w.astype(compute)
        w64 = w.astype(np.float64)
        weight_sum = _exact_sum(w64)
        weight_abs = _exact_sum(np.abs(w64))
    direct = None
    if p.ndim == 1 and dtype != _F16:
        pc = np.clip(p, eps, 1 - eps)
        target = positive.astype(compute)
        direct = _bcers.sums("bce", 0.0, 0.0, pc, target, weight, None)[0]
        q = np.where(target != 0, pc, 1 - pc)
    elif p.ndim == 2:
        q = np.clip(np.where(positive, p[:, 1], p[:, 0]), eps, 1 - eps)
    else:
        pc = np.clip(p, eps, 1 - eps)
        q = np.where(positive, pc, 1 - pc)
    q = q if q.dtype == compute else q.astype(compute)
    ones = np.broadcast_to(compute.type(1), q.shape)
    fallback = _bcers.sums("bce", 0.0, 0.0, q, ones, weight, None)[0]
    out = np.empty(1, dtype=object)
    out[0] = (direct, fallback, weight_sum, weight_abs)
    return out


def _merge_log_loss(a: npt.NDArray[Any], axis: Any = None, keepdims: bool = True) -> Any:
    parts = list(a.reshape(-1))
    merged = tuple(
        None if parts[0][k] is None else _bcers.sums_merge([t[k] for t in parts]) for k in range(4)
    )
    out = np.empty(1, dtype=object)
    out[0] = merged
    return out


def _log_loss_value(
    a: npt.NDArray[Any],
    axis: Any = None,
    keepdims: bool = False,
    *,
    dtype: np.dtype[Any],
    n: int,
    normalize: bool,
) -> Any:
    direct, fallback, weight_sum_state, weight_abs_state = _merge_log_loss(a)[0]
    compute = _COMPUTE[dtype]
    eps = float(np.finfo(dtype).eps)
    if weight_sum_state is None:
        weight_sum = weight_abs = float(n)
    else:
        weight_sum = _bcers.sums_finish(weight_sum_state)[1]
        weight_abs = _bcers.sums_finish(weight_abs_state)[1]
        if weight_abs == 0:
            raise ValueError(_ZERO_WEIGHTS)
    if direct is not None:
        total = float(compute.type(_bcers.sums_finish(direct)[0]))
        if abs(total) * _GAP[dtype] < 0.505 * eps * weight_abs:
            total = float(compute.type(_bcers.sums_finish(fallback)[0]))
    else:
        total = float(compute.type(_bcers.sums_finish(fallback)[0]))
    if not normalize:
        return np.float64(total)
    if weight_sum == 0:
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    return np.float64(total / weight_sum)


def _classes(found: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The two classes of y_true, from its unique values (scikit-learn's checks)."""
    if found.dtype.kind == "f":
        if not np.isfinite(found).all():
            bad = "NaN" if np.isnan(found).any() else "infinity or a value too large"
            raise ValueError(
                f"Input y contains {bad}."
                if bad == "NaN"
                else f"Input y contains {bad} for {found.dtype!r}."
            )
        if np.any(found != np.floor(found)):
            raise ValueError(
                "Unknown label type: 'continuous' (y_true holds non-integer values, as "
                f"{found[found != np.floor(found)][0]}); log_loss takes class labels"
            )
    if found.size == 1:
        raise ValueError(
            f"y_true contains only one label ({found[0]}). Please provide the list of all "
            "expected class labels explicitly through the labels argument."
        )
    if found.size > 2:
        raise ValueError(
            f"bcers's log_loss is for binary problems, but y_true has {found.size} classes: "
            f"{found}; use sklearn.metrics.log_loss for multiclass problems"
        )
    return found


def _declared(labels: Any) -> npt.NDArray[Any]:
    given = np.asarray(labels)
    if given.ndim != 1:
        raise ValueError(f"labels must be a 1-D array-like of class labels, got {labels!r}")
    _label_kind(given.dtype, "labels")
    classes = np.unique(given)
    if classes.shape != given.shape:
        raise ValueError(f"labels must not repeat a label, got {labels}")
    if classes.size < 2:
        raise ValueError(f"The labels array needs to contain at least two labels, got {classes}.")
    if classes.size > 2:
        raise ValueError(
            f"bcers's log_loss is for binary problems, but labels has {classes.size} classes: "
            f"{classes}; use sklearn.metrics.log_loss for multiclass problems"
        )
    if not np.array_equal(classes, given):
        _f._warn(
            f"Labels passed were {labels}. But this function assumes labels are ordered "
            f"lexicographically. Pass the ordered labels={classes.tolist()} and ensure that "
            "the columns of y_pred correspond to this ordering."
        )
    return classes


def log_loss(
    y_true: Any,
    y_pred: Any,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
) -> Any:
    """Log loss of a binary classifier's probabilities, as ``sklearn.metrics.log_loss`` and
    :func:`bcers.metrics.log_loss` compute it, on Dask arrays.

    Parameters
    ----------
    y_true : Dask or NumPy array of shape (n_samples,) or (n_samples, 1)
        Labels of two classes: numbers, booleans or strings (a str dtype; bytes are refused
        as scikit-learn refuses them, and an object array must be given a str dtype first);
        the greater class is the positive one, as in scikit-learn.
    y_pred : Dask or NumPy array of shape (n_samples,), (n_samples, 1) or (n_samples, 2)
        Predicted probabilities: of the positive class, or of the two sorted classes.
    normalize : bool, default=True
        The weighted mean per sample, else the sum.
    sample_weight : Dask or NumPy array of shape (n_samples,), default=None
        Sample weights.
    labels : array-like of shape (2,), default=None
        The two classes. When None they are found lazily from y_true (``dask.array.unique``:
        each block's distinct labels, never the labels themselves, are gathered).

    Returns
    -------
    loss : 0-d Dask array of float64
        Bitwise :func:`bcers.metrics.log_loss` on the whole arrays (every sum exact, rounded
        once); equal to scikit-learn's within 1e-12 relative in float64.

    Raises
    ------
    ValueError
        At once: inconsistent lengths, shapes, labels; at compute time: probabilities outside
        [0, 1], NaN or infinity, fewer or more than two classes in y_true, a label outside
        ``labels``, non-integer float labels, weights that are all zero (and
        ZeroDivisionError for weights that sum to zero with ``normalize``).

    Notes
    -----
    scikit-learn's warning for two-column probabilities whose rows do not sum to one is not
    given (it would need the data).

    Examples
    --------
    >>> import numpy as np, dask.array as da, bcers.dask
    >>> y = da.from_array(np.array([0, 1, 1, 0]), chunks=2)
    >>> p = da.from_array(np.array([0.1, 0.9, 0.8, 0.35]), chunks=2)
    >>> round(float(bcers.dask.log_loss(y, p).compute(scheduler="sync")), 6)
    0.216162
    """
    _check_parameters(y_true, y_pred, normalize, sample_weight, labels)
    p = y_pred if _is_dask(y_pred) else da.from_array(np.asarray(y_pred))
    _known(p, "y_pred")
    if np.dtype(p.dtype).kind == "c":
        raise ValueError("Complex data not supported")
    if p.dtype not in _KEPT:
        p = p.astype(np.float64)
    if p.ndim not in (1, 2):
        raise ValueError(f"Found array with dim {p.ndim}, while dim <= 2 is required.")
    n = int(p.shape[0])
    if n == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={p.shape}) while a minimum of 1 is required."
        )
    if p.ndim == 2:
        if p.shape[1] > 2:
            raise ValueError(
                f"bcers's log_loss is for binary problems, but y_pred has {p.shape[1]} "
                "columns; use sklearn.metrics.log_loss for multiclass problems"
            )
        p = p[:, 0] if p.shape[1] == 1 else p.rechunk({1: -1})
    y = y_true if _is_dask(y_true) else np.asarray(y_true)
    _label_kind(y.dtype, "y_true")
    if y.ndim == 0:
        raise TypeError("y_true must have at least one dimension")
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise ValueError(
            f"bcers's log_loss is for binary problems: y_true must be a 1-D array of labels (or "
            f"a column vector), got one of shape {y.shape}"
        )
    lengths = [n, int(y.shape[0])]
    w = None
    if sample_weight is not None:
        w = sample_weight if _is_dask(sample_weight) else np.asarray(sample_weight)
        if np.dtype(w.dtype).kind not in "biuf":
            raise TypeError(f"sample_weight must be an array of real numbers, got dtype {w.dtype}")
        if w.ndim != 1:
            raise ValueError(
                f"Sample weights must be 1D array or scalar, got {w.ndim}D array. Expected "
                f"either a scalar value or a 1D array of length {n}."
            )
        lengths.append(int(w.shape[0]))
    if len(set(lengths)) > 1:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths}")
    # Every operand of the blocks has p's axes (a column for the labels and weights of a
    # two-column p, broadcast along its columns) and p's row chunks.
    rows = p.chunks[0]
    column = (n, 1) if p.ndim == 2 else (n,)
    chunks = (rows, (1,)) if p.ndim == 2 else (rows,)

    def fit(a: Any) -> Any:
        if _is_dask(a):
            return a.reshape(column).rechunk(chunks)
        return da.from_array(a.reshape(column), chunks=chunks)

    yd = fit(y)
    operands = [p, yd]
    if w is not None:
        operands.append(fit(w))
    kwargs: dict[str, Any] = {"weighted": w is not None, "labels": labels}
    if labels is not None:
        kwargs["classes"] = _declared(labels)
    else:
        found = da.unique(yd.reshape(-1) if yd.ndim == 2 else yd)
        operands.append(dask.delayed(_classes)(found))
    dtype = np.dtype(p.dtype)
    states = da.map_blocks(
        _log_loss_block,
        *operands,
        **kwargs,
        drop_axis=[1] if p.ndim == 2 else [],
        chunks=((1,) * len(rows),),
        dtype=_OBJECT,
        meta=_meta(1, _OBJECT),
    )
    return da.reduction(
        states,
        chunk=_merge_log_loss,
        combine=_merge_log_loss,
        aggregate=functools.partial(_log_loss_value, dtype=dtype, n=n, normalize=bool(normalize)),
        axis=0,
        keepdims=False,
        dtype=np.float64,
        meta=_meta(0, _F64),
        concatenate=True,
    )
