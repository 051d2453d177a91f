"""Metrics: a streaming loss whose result does not depend on how the data was cut
(:class:`LossMetric`), and scikit-learn's ``log_loss`` for binary problems (:func:`log_loss`).

Both sum with bcers's exact accumulator: the sums are exact until they are rounded once, so
a metric fed in batches, in any order, merged in any tree, gives the same bits as one call
over all the data.
"""

from __future__ import annotations

import json
import struct
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from . import _bcers
from ._functional import (
    _F32,
    _F64,
    _MAX_NDIM,
    ArrayLike,
    _GpuArray,
    _mask,
    _OnGpu,
    _Options,
    _prepare,
    _result,
    _Squeeze,
    _unmask,
)
from ._log_loss import InvalidParameterError, log_loss
from ._loss import BCELoss, BCEWithLogitsLoss, SigmoidFocalLoss, _Loss

__all__ = ["InvalidParameterError", "LossMetric", "log_loss"]

_MAGIC = b"bclm"
_VERSION = 1
_KINDS: dict[str, type[_Loss]] = {
    "bce": BCELoss,
    "logits": BCEWithLogitsLoss,
    "focal": SigmoidFocalLoss,
}


def _canonical(dtype: Any) -> np.dtype[Any] | None:
    """NumPy's own instance of ``dtype`` (an unpickled one is a copy, which the identity
    checks of the result conversion would not recognise)."""
    return None if dtype is None else np.dtype(np.dtype(dtype).type)


def _same(a: Any, b: Any) -> bool:
    """Whether two optional parameter arrays are equal (both absent, or equal values and
    shapes)."""
    if a is None or b is None:
        return a is None and b is None
    return bool(np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b)))


def _params(loss: _Loss) -> tuple[str, float, float, Any]:
    """The loss's name, alpha, gamma and pos_weight."""
    alpha, gamma, pos_weight = loss._params()
    return loss._loss, alpha, gamma, pos_weight


def _weights(a: Any, b: Any) -> Any:
    """The product of two optional weights (either may be None)."""
    if a is None:
        return b
    if b is None:
        return a
    return np.multiply(a, b)


def _add_sums(
    into: _bcers.Sums,
    loss: _Loss,
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    mask: ArrayLike | None,
) -> np.dtype[Any]:
    """Adds the exact sums of ``loss`` over the kept elements to ``into`` (the loss's own
    weight times ``weight``), and returns the dtype of a result. Nothing is added when the
    batch raises."""
    name, alpha, gamma, pos_weight = _params(loss)
    options = _Options(loss.label_smoothing, _mask(mask), None, False)
    if isinstance(input, np.ma.MaskedArray) or isinstance(target, np.ma.MaskedArray):
        input, target, options = _unmask(input, target, options)
    try:
        if type(options.mask) is _GpuArray:
            raise _OnGpu
        x, y, w, pw, dtype = _prepare(input, target, loss.weight, pos_weight)
        if weight is not None:
            # Prepared against the input as given: a float16 batch's weight is rounded to
            # float16, as one call over the data rounds it.
            _, _, extra, _, _ = _prepare(input, target, weight, None)
            w = _weights(w, extra)
    except _OnGpu:
        raise TypeError(
            "LossMetric takes NumPy arrays; bring bcers.gpu arrays back with .numpy()"
        ) from None
    m = cast("npt.NDArray[np.bool_] | None", options.mask)  # not a bcers.gpu.Array: refused above
    if x.ndim > _MAX_NDIM:
        squeeze = _Squeeze(x, y)
        fit = squeeze.operand
        x, y, w, pw, m = (
            fit(x, "input"),
            fit(y, "target"),
            fit(w, "weight"),
            fit(pw, "pos_weight"),
            fit(m, "mask"),
        )
    _bcers.sums_into(into, name, alpha, gamma, x, y, w, pw, options.label_smoothing, m)
    return dtype


class LossMetric:
    """The loss over a stream of batches: :meth:`update` with each batch, :meth:`compute` at
    the end, :meth:`merge` with the metrics of other workers.

    ``loss`` is a bcers loss object (``BCELoss``, ``BCEWithLogitsLoss`` or
    ``SigmoidFocalLoss``): its parameters (``pos_weight``, ``alpha``, ``gamma``,
    ``label_smoothing``, and ``weight``, which must broadcast to each batch) are used, its
    ``reduction``, ``axis`` and ``keepdims`` are not.

    The metric holds the exact sum of the (weighted) per-element losses of the kept elements
    (:attr:`sum`), the exact sum of their weights (:attr:`weight_sum`; 1 each where no weight
    is given) and their number (:attr:`count`). :meth:`compute` is one rule: ``sum /
    weight_sum``, the weighted mean, which without any weight is the mean. It equals, bit for
    bit, ``loss`` called once on all the data with ``reduction="weighted_mean"`` (and the
    weights concatenated) however the data was split into batches, in whatever order, and
    however the metrics were merged: the sums are exact, and rounded once when read.

    The state is small (a few hundred bytes at most): :meth:`to_bytes` and :meth:`from_bytes`
    ship it between processes; a metric also pickles.

    >>> import numpy as np, bcers
    >>> from bcers.metrics import LossMetric
    >>> p = np.array([0.9, 0.2, 0.7, 0.4]); y = np.array([1.0, 0.0, 1.0, 1.0])
    >>> m = LossMetric(bcers.BCELoss())
    >>> m.update(p[:3], y[:3]); m.update(p[3:], y[3:])
    >>> bool(m.compute() == bcers.binary_cross_entropy(p, y))
    True
    >>> m.count
    4
    """

    def __init__(self, loss: _Loss) -> None:
        if not isinstance(loss, _Loss):
            raise TypeError(
                "LossMetric takes a bcers loss object (BCELoss, BCEWithLogitsLoss or "
                f"SigmoidFocalLoss), got {type(loss).__name__}"
            )
        self.loss = loss
        self._sums = _bcers.Sums()
        self._dtype: np.dtype[Any] | None = None

    def update(
        self,
        input: ArrayLike,
        target: ArrayLike,
        *,
        weight: ArrayLike | None = None,
        mask: ArrayLike | None = None,
    ) -> None:
        """Adds a batch: ``input`` and ``target`` as the loss takes them, an optional
        ``weight`` (broadcast to the batch, multiplied by the loss's own) and ``mask`` (bool,
        broadcast to the batch; False drops an element: it adds nothing, and is not
        range-checked). A ``numpy.ma.MaskedArray`` input or target drops its masked
        elements. A batch whose input is out of range raises, and adds nothing."""
        dtype = self._add_plain(input, target) if weight is None and mask is None else None
        if dtype is None:
            dtype = _add_sums(self._sums, self.loss, input, target, weight, mask)
        if dtype is not self._dtype:  # the common case (the same dtype again) costs nothing
            self._dtype = _canonical(
                dtype if self._dtype is None else np.result_type(self._dtype, dtype)
            )

    def _add_plain(self, input: Any, target: Any) -> np.dtype[Any] | None:
        """Adds the common batch (float32 or float64 ndarrays of one dtype, the loss without
        weight or pos_weight), handed to the native sums as it is, and returns its dtype: a
        stream of small batches pays little per batch. None for any other batch (nothing is
        added)."""
        loss = self.loss
        if type(input) is not np.ndarray or type(target) is not np.ndarray:
            return None
        dtype = input.dtype
        if (
            (dtype is not _F32 and dtype is not _F64)
            or target.dtype is not dtype
            or input.ndim > _MAX_NDIM
            or loss.weight is not None
        ):
            return None
        name, alpha, gamma, pos_weight = _params(loss)
        if pos_weight is not None:
            return None
        _bcers.sums_into(
            self._sums, name, alpha, gamma, input, target, None, None, loss.label_smoothing
        )
        return dtype

    def _check_like(self, other: LossMetric) -> None:
        if not isinstance(other, LossMetric):
            raise TypeError(f"merge takes LossMetric objects, got {type(other).__name__}")
        a, b = _params(self.loss), _params(other.loss)
        same = (
            type(self.loss) is type(other.loss)
            and a[:3] == b[:3]
            and self.loss.label_smoothing == other.loss.label_smoothing
            and _same(a[3], b[3])
            and _same(self.loss.weight, other.loss.weight)
        )
        if not same:
            raise ValueError(
                f"cannot merge metrics of different losses: {self.loss!r} and {other.loss!r}"
            )

    def merge(self, *others: LossMetric) -> LossMetric:
        """Adds the batches of ``others`` (metrics of the same loss) to this one, and returns
        it. The order of merges does not change any result."""
        for other in others:
            self._check_like(other)
        for other in others:
            self._sums.merge(other._sums)
        for other in others:
            if other._dtype is not None:
                self._dtype = _canonical(
                    other._dtype
                    if self._dtype is None
                    else np.result_type(self._dtype, other._dtype)
                )
        return self

    def reset(self) -> None:
        """Forgets every batch."""
        self._sums = _bcers.Sums()
        self._dtype = None

    @property
    def sum(self) -> float:
        """The sum of the (weighted) losses of the kept elements, correctly rounded."""
        return float(self._sums.finish()[0])

    @property
    def weight_sum(self) -> float:
        """The sum of the kept elements' weights (1 each without a weight), correctly
        rounded."""
        return float(self._sums.finish()[1])

    @property
    def count(self) -> int:
        """The number of kept elements."""
        return int(self._sums.finish()[2])

    def compute(self) -> Any:
        """``sum / weight_sum``, in the dtype of the batches (as the loss returns it): the
        weighted mean, the mean without weights. NaN before any element."""
        total, weights, _ = self._sums.finish()
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(np.float64(total) / np.float64(weights))
        return _result(value, self._dtype or np.dtype(np.float64))

    def to_bytes(self) -> bytes:
        """The state as bytes, for :meth:`from_bytes` in another process: the sums, the
        dtype, and the loss's name and scalar parameters."""
        name, alpha, gamma, pos_weight = _params(self.loss)
        header = json.dumps(
            {
                "loss": name,
                "alpha": alpha,
                "gamma": gamma,
                "label_smoothing": self.loss.label_smoothing,
                "arrays": self.loss.weight is not None or pos_weight is not None,
                "dtype": None if self._dtype is None else self._dtype.str,
            },
            sort_keys=True,
        ).encode()
        head = struct.pack("<4sBH", _MAGIC, _VERSION, len(header))
        return head + header + self._sums.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, loss: _Loss | None = None) -> LossMetric:
        """The metric :meth:`to_bytes` wrote. Without ``loss``, a loss of the recorded kind
        and parameters is made; a loss with a ``weight`` or ``pos_weight`` array must be
        given (its arrays are not in the bytes). ValueError for bytes that are not a
        metric's, or a ``loss`` unlike the recorded one."""
        data = bytes(data)
        size = struct.calcsize("<4sBH")
        if len(data) < size:
            raise ValueError("these bytes are not a LossMetric's state (too short)")
        magic, version, length = struct.unpack_from("<4sBH", data)
        if magic != _MAGIC:
            raise ValueError("these bytes are not a LossMetric's state")
        if version != _VERSION:
            raise ValueError(f"a LossMetric state of version {version}, expected {_VERSION}")
        try:
            header = json.loads(data[size : size + length])
            kind = _KINDS[header["loss"]]
        except (ValueError, KeyError, TypeError):
            raise ValueError("a malformed LossMetric state") from None
        sums = _bcers.Sums.from_bytes(data[size + length :])  # ValueError for bad sums
        if loss is None:
            if header["arrays"]:
                raise ValueError(
                    "this metric's loss has a weight or pos_weight array: pass it as loss="
                )
            kwargs: dict[str, Any] = {"label_smoothing": header["label_smoothing"]}
            if kind is SigmoidFocalLoss:
                kwargs.update(alpha=header["alpha"], gamma=header["gamma"])
            loss = kind(**kwargs)
        metric = cls(loss)
        name, alpha, gamma, _ = _params(loss)
        recorded = (header["loss"], header["alpha"], header["gamma"], header["label_smoothing"])
        if (name, alpha, gamma, loss.label_smoothing) != recorded:
            raise ValueError(f"{loss!r} is not the loss this state was computed with")
        metric._sums = sums
        metric._dtype = _canonical(header["dtype"])
        return metric

    def __getstate__(self) -> dict[str, Any]:
        return {"loss": self.loss, "state": self._sums.to_bytes(), "dtype": self._dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.loss = state["loss"]
        self._sums = _bcers.Sums.from_bytes(state["state"])
        self._dtype = _canonical(state["dtype"])

    def __repr__(self) -> str:
        return f"LossMetric({self.loss!r}, count={self.count})"
