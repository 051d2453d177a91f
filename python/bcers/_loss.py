"""The loss classes: torch's ``BCELoss`` and ``BCEWithLogitsLoss``, and ``SigmoidFocalLoss``."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt

from . import _bcers
from ._arrays import check_real, convert
from ._functional import (
    ArrayLike,
    Axis,
    Derivatives,
    Loss,
    ReductionName,
    _axis,
    _backward,
    _derivatives,
    _forward,
    _label_smoothing,
    _legacy_reduction,
    _Options,
    _options,
    _validate_reduction,
    _value_and_grad,
)
from .gpu import Array


def _stored(value: ArrayLike | None, name: str) -> npt.NDArray[Any] | Array | None:
    """A constructor's array argument, converted and checked once (its shape is checked
    against each call's input)."""
    if value is None or type(value) is Array:
        return value
    if hasattr(value, "__dask_graph__"):
        return value  # type: ignore[return-value]  # a Dask array: bcers.dask takes it
    a = convert(value, name)
    check_real(a, name)
    return a


class _Loss:
    """What the loss classes share: torch's constructor arguments, ``weight`` and
    ``reduction``, and the keywords beyond torch's, ``label_smoothing``, ``axis`` and
    ``keepdims``, checked at construction."""

    weight: npt.NDArray[Any] | Array | None
    reduction: ReductionName
    label_smoothing: float
    axis: int | tuple[int, ...] | None
    keepdims: bool
    # The functions of the loss: forward, backward, value_and_grad; and its name for
    # ``derivatives``.
    _loss: str = ""

    def __init__(
        self,
        weight: ArrayLike | None,
        size_average: bool | None,
        reduce: bool | None,
        reduction: ReductionName,
        label_smoothing: float,
        axis: Axis,
        keepdims: bool,
    ) -> None:
        if size_average is not None or reduce is not None:
            # As torch: the legacy pair overrides reduction, with a warning, at construction.
            reduction = cast(ReductionName, _legacy_reduction(size_average, reduce))
        else:
            # Checked now, not at the first call (its deprecation warning still comes per call).
            _validate_reduction(reduction)
        self.weight = _stored(weight, "weight")
        self.reduction = reduction
        self.label_smoothing = _label_smoothing(label_smoothing)
        _bcers.check_loss("bce", 0.0, 0.0, self.label_smoothing)
        checked = _axis(axis)
        if checked is not None and reduction == "none":
            raise ValueError(
                "axis reduces over some axes; it needs reduction='mean', 'sum' or "
                "'weighted_mean', not 'none'"
            )
        self.axis = checked
        if checked is not None and len(checked) == 1 and not hasattr(axis, "__len__"):
            self.axis = checked[0]  # an int stays an int
        self.keepdims = bool(keepdims)

    def _extra(self) -> str:
        """The keywords beyond torch's that differ from their defaults, for the repr."""
        parts = []
        if self.label_smoothing != 0.0:
            parts.append(f"label_smoothing={self.label_smoothing!r}")
        if self.axis is not None:
            parts.append(f"axis={self.axis!r}")
        if self.keepdims:
            parts.append("keepdims=True")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra()})"

    def _options(self, mask: ArrayLike | None) -> _Options:
        """The keywords beyond torch's of a call: this object's, and the call's mask."""
        return _options(self.label_smoothing, mask, self.axis, self.keepdims)

    def _params(self) -> tuple[float, float, Any]:
        """The loss's parameters for ``_derivatives``: alpha, gamma, pos_weight."""
        return 0.0, 0.0, None

    def forward(
        self, input: ArrayLike, target: ArrayLike, *, mask: ArrayLike | None = None
    ) -> Loss:
        """The loss of ``input`` against ``target``."""
        alpha, gamma, pos_weight = self._params()
        return _forward(
            self._loss,
            alpha,
            gamma,
            input,
            target,
            self.weight,
            pos_weight,
            self.reduction,
            self.label_smoothing,
            mask,
            self.axis,
            self.keepdims,
        )

    def backward(
        self,
        input: ArrayLike,
        target: ArrayLike,
        grad_output: ArrayLike | None = None,
        *,
        mask: ArrayLike | None = None,
    ) -> npt.NDArray[np.floating[Any]]:
        """The gradient of the loss with respect to ``input`` (``grad_output`` None means 1)."""
        alpha, gamma, pos_weight = self._params()
        return _backward(
            self._loss,
            alpha,
            gamma,
            grad_output,
            input,
            target,
            self.weight,
            pos_weight,
            self.reduction,
            self._options(mask),
        )

    def value_and_grad(
        self, input: ArrayLike, target: ArrayLike, *, mask: ArrayLike | None = None
    ) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
        """``(loss, grad_input)`` in one pass over the data."""
        alpha, gamma, pos_weight = self._params()
        return _value_and_grad(
            self._loss,
            alpha,
            gamma,
            input,
            target,
            self.weight,
            pos_weight,
            self.reduction,
            self.label_smoothing,
            mask,
            self.axis,
            self.keepdims,
        )

    def __call__(
        self, input: ArrayLike, target: ArrayLike, *, mask: ArrayLike | None = None
    ) -> Loss:
        """``self.forward(input, target)``: a subclass's ``forward`` is what a call runs, as in
        torch (``mask`` is passed on only when given)."""
        if mask is None:
            return self.forward(input, target)
        return self.forward(input, target, mask=mask)

    def derivatives(
        self,
        input: ArrayLike,
        target: ArrayLike,
        *,
        value: bool = True,
        grad: bool = True,
        grad_target: bool = False,
        hess: bool = False,
        grad_output: ArrayLike | None = None,
        mask: ArrayLike | None = None,
        out: Derivatives | None = None,
    ) -> Derivatives:
        """The loss and its derivatives asked for, from one pass over the data.

        ``grad`` is the derivative with respect to ``input``, ``grad_target`` with respect to
        ``target``, ``hess`` the second derivative with respect to ``input`` (elementwise: the
        diagonal of the Hessian). Every derivative is of the loss as this object reduces it
        (weight, mask and the reduction's scaling applied), times ``grad_output`` (None means
        1; as in ``backward``). What is not asked for is not computed.

        ``out``, a :class:`bcers.Derivatives` of arrays or None, gives arrays to write the
        elementwise outputs into (the derivatives; the value without a reduction): each of the
        result's dtype and shape, writeable, overlapping no operand; they are returned. For a
        loop over batches of one shape, this saves allocating fresh memory each call (in
        NumPy's arrays at every call, the kernel zeroes the new pages, which for large
        outputs costs about as much as computing them).

        Returns:
            :class:`bcers.Derivatives` ``(value, grad, grad_target, hess)``, None where not
            asked.
        """
        alpha, gamma, pos_weight = self._params()
        options = self._options(mask)
        return _derivatives(
            self._loss,
            alpha,
            gamma,
            input,
            target,
            self.weight,
            pos_weight,
            self.reduction,
            (value, grad, grad_target, hess),
            grad_output,
            options,
            out,
        )


class BCELoss(_Loss):
    """Binary cross entropy between probabilities, as ``torch.nn.BCELoss``.

    ``loss_fn(input, target)`` (or ``.forward``) computes the loss, ``.backward(input,
    target, grad_output=None)`` its gradient with respect to ``input``,
    ``.value_and_grad(input, target)`` both in one pass, and ``.derivatives(...)`` any of the
    loss and its first and second derivatives. Each takes ``mask=`` as a keyword. See
    :func:`bcers.binary_cross_entropy` for the arguments.
    """

    _loss = "bce"

    def __init__(
        self,
        weight: ArrayLike | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: ReductionName = "mean",
        *,
        label_smoothing: float = 0.0,
        axis: Axis = None,
        keepdims: bool = False,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction, label_smoothing, axis, keepdims)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy on logits, as ``torch.nn.BCEWithLogitsLoss``.

    Callable like :class:`BCELoss`, with the extra ``pos_weight``. See
    :func:`bcers.binary_cross_entropy_with_logits` for the arguments.
    """

    pos_weight: npt.NDArray[Any] | Array | None
    _loss = "logits"

    def __init__(
        self,
        weight: ArrayLike | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: ReductionName = "mean",
        pos_weight: ArrayLike | None = None,
        *,
        label_smoothing: float = 0.0,
        axis: Axis = None,
        keepdims: bool = False,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction, label_smoothing, axis, keepdims)
        self.pos_weight = _stored(pos_weight, "pos_weight")

    def _params(self) -> tuple[float, float, Any]:
        return 0.0, 0.0, self.pos_weight


class SigmoidFocalLoss(_Loss):
    """Sigmoid focal loss (Lin et al. 2017), callable like :class:`BCEWithLogitsLoss`.

    ``loss_fn(inputs, targets)`` (or ``.forward``), ``.backward(inputs, targets,
    grad_output=None)``, ``.value_and_grad(inputs, targets)`` and ``.derivatives(...)``, as
    the other classes; see :func:`bcers.sigmoid_focal_loss` for the arguments. The parameters
    are checked at construction (ValueError naming the bad one). The default reduction is
    ``"mean"``, as for torch's loss classes (the function's, like torchvision's, is
    ``"none"``).
    """

    alpha: float
    gamma: float
    _loss = "focal"

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        reduction: ReductionName = "mean",
        weight: ArrayLike | None = None,
        *,
        label_smoothing: float = 0.0,
        axis: Axis = None,
        keepdims: bool = False,
    ) -> None:
        _bcers.check_loss("focal", alpha, gamma)
        super().__init__(weight, None, None, reduction, label_smoothing, axis, keepdims)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def _params(self) -> tuple[float, float, Any]:
        return self.alpha, self.gamma, None

    def __repr__(self) -> str:
        extra = self._extra()
        return (
            f"{type(self).__name__}(alpha={self.alpha!r}, gamma={self.gamma!r}, "
            f"reduction={self.reduction!r}{', ' + extra if extra else ''})"
        )
