"""The loss classes: torch's ``BCELoss`` and ``BCEWithLogitsLoss``, and ``SigmoidFocalLoss``."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt

from . import _bcers
from ._arrays import check_real, convert
from ._functional import (
    ArrayLike,
    Loss,
    ReductionName,
    _legacy_reduction,
    _validate_reduction,
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_value_and_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_value_and_grad,
    sigmoid_focal_loss,
    sigmoid_focal_loss_backward,
    sigmoid_focal_loss_value_and_grad,
)
from .gpu import Array


def _stored(value: ArrayLike | None, name: str) -> npt.NDArray[Any] | Array | None:
    """A constructor's array argument, converted and checked once (its shape is checked
    against each call's input)."""
    if value is None or type(value) is Array:
        return value
    a = convert(value, name)
    check_real(a, name)
    return a


class _Loss:
    """What both loss classes share: torch's constructor arguments, ``weight`` and ``reduction``."""

    weight: npt.NDArray[Any] | Array | None
    reduction: ReductionName

    def __init__(
        self,
        weight: ArrayLike | None,
        size_average: bool | None,
        reduce: bool | None,
        reduction: ReductionName,
    ) -> None:
        if size_average is not None or reduce is not None:
            # As torch: the legacy pair overrides reduction, with a warning, at construction.
            reduction = cast(ReductionName, _legacy_reduction(size_average, reduce))
        else:
            # Checked now, not at the first call (its deprecation warning still comes per call).
            _validate_reduction(reduction)
        self.weight = _stored(weight, "weight")
        self.reduction = reduction

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def forward(self, input: ArrayLike, target: ArrayLike) -> Loss:
        """The loss of ``input`` against ``target``."""
        raise NotImplementedError

    def __call__(self, input: ArrayLike, target: ArrayLike) -> Loss:
        """``self.forward(input, target)``: a subclass's ``forward`` is what a call runs, as in
        torch."""
        return self.forward(input, target)


class BCELoss(_Loss):
    """Binary cross entropy between probabilities, as ``torch.nn.BCELoss``.

    ``loss_fn(input, target)`` (or ``.forward``) computes the loss, ``.backward(input,
    target, grad_output=None)`` its gradient with respect to ``input``, and
    ``.value_and_grad(input, target)`` both in one pass. See
    :func:`bcers.binary_cross_entropy` for the arguments.
    """

    def __init__(
        self,
        weight: ArrayLike | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: ReductionName = "mean",
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)

    def forward(self, input: ArrayLike, target: ArrayLike) -> Loss:
        """The loss of ``input`` against ``target``."""
        return binary_cross_entropy(input, target, self.weight, reduction=self.reduction)

    def backward(
        self, input: ArrayLike, target: ArrayLike, grad_output: ArrayLike | None = None
    ) -> npt.NDArray[np.floating[Any]]:
        """The gradient of the loss with respect to ``input`` (``grad_output`` None means 1)."""
        return binary_cross_entropy_backward(
            grad_output, input, target, self.weight, reduction=self.reduction
        )

    def value_and_grad(
        self, input: ArrayLike, target: ArrayLike
    ) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
        """``(loss, grad_input)`` in one pass over the data."""
        return binary_cross_entropy_value_and_grad(
            input, target, self.weight, reduction=self.reduction
        )


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy on logits, as ``torch.nn.BCEWithLogitsLoss``.

    Callable like :class:`BCELoss`, with the extra ``pos_weight``. See
    :func:`bcers.binary_cross_entropy_with_logits` for the arguments.
    """

    pos_weight: npt.NDArray[Any] | Array | None

    def __init__(
        self,
        weight: ArrayLike | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: ReductionName = "mean",
        pos_weight: ArrayLike | None = None,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.pos_weight = _stored(pos_weight, "pos_weight")

    def forward(self, input: ArrayLike, target: ArrayLike) -> Loss:
        """The loss of ``input`` (logits) against ``target``."""
        return binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )

    def backward(
        self, input: ArrayLike, target: ArrayLike, grad_output: ArrayLike | None = None
    ) -> npt.NDArray[np.floating[Any]]:
        """The gradient of the loss with respect to ``input`` (``grad_output`` None means 1)."""
        return binary_cross_entropy_with_logits_backward(
            grad_output, input, target, self.weight, self.pos_weight, reduction=self.reduction
        )

    def value_and_grad(
        self, input: ArrayLike, target: ArrayLike
    ) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
        """``(loss, grad_input)`` in one pass over the data."""
        return binary_cross_entropy_with_logits_value_and_grad(
            input, target, self.weight, self.pos_weight, reduction=self.reduction
        )


class SigmoidFocalLoss(_Loss):
    """Sigmoid focal loss (Lin et al. 2017), callable like :class:`BCEWithLogitsLoss`.

    ``loss_fn(inputs, targets)`` (or ``.forward``), ``.backward(inputs, targets,
    grad_output=None)`` and ``.value_and_grad(inputs, targets)``, as the other classes; see
    :func:`bcers.sigmoid_focal_loss` for the arguments. The parameters are checked at
    construction (ValueError naming the bad one). The default reduction is ``"mean"``, as for
    torch's loss classes (the function's, like torchvision's, is ``"none"``).
    """

    alpha: float
    gamma: float

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        reduction: ReductionName = "mean",
        weight: ArrayLike | None = None,
    ) -> None:
        _bcers.check_loss("focal", alpha, gamma)
        super().__init__(weight, None, None, reduction)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(alpha={self.alpha!r}, gamma={self.gamma!r}, "
            f"reduction={self.reduction!r})"
        )

    def forward(self, input: ArrayLike, target: ArrayLike) -> Loss:
        """The loss of ``input`` (logits) against ``target``."""
        return sigmoid_focal_loss(
            input, target, self.alpha, self.gamma, reduction=self.reduction, weight=self.weight
        )

    def backward(
        self, input: ArrayLike, target: ArrayLike, grad_output: ArrayLike | None = None
    ) -> npt.NDArray[np.floating[Any]]:
        """The gradient of the loss with respect to ``input`` (``grad_output`` None means 1)."""
        return sigmoid_focal_loss_backward(
            grad_output,
            input,
            target,
            self.alpha,
            self.gamma,
            reduction=self.reduction,
            weight=self.weight,
        )

    def value_and_grad(
        self, input: ArrayLike, target: ArrayLike
    ) -> tuple[Loss, npt.NDArray[np.floating[Any]]]:
        """``(loss, grad_input)`` in one pass over the data."""
        return sigmoid_focal_loss_value_and_grad(
            input, target, self.alpha, self.gamma, reduction=self.reduction, weight=self.weight
        )
