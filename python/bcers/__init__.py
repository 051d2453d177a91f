"""bcers: fast, exact, torch-compatible binary cross entropy for NumPy arrays, and its family
(sigmoid focal loss, with torchvision's names).

The functions and classes carry torch's names and arguments::

    import numpy as np
    import bcers

    loss = bcers.BCELoss()
    loss(np.array([0.4498, 0.9845], np.float32), np.array([0.2345, 0.5565], np.float32))
"""

from . import gbdt, gpu, metrics
from ._bcers import __version__, get_num_threads
from ._functional import (
    Derivatives,
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_derivatives,
    binary_cross_entropy_value_and_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_derivatives,
    binary_cross_entropy_with_logits_value_and_grad,
    sigmoid_focal_loss,
    sigmoid_focal_loss_backward,
    sigmoid_focal_loss_derivatives,
    sigmoid_focal_loss_value_and_grad,
)
from ._loss import BCELoss, BCEWithLogitsLoss, SigmoidFocalLoss
from ._threads import MAX_THREADS, _check_environment, set_num_threads

__all__ = [
    "MAX_THREADS",
    "BCELoss",
    "BCEWithLogitsLoss",
    "Derivatives",
    "SigmoidFocalLoss",
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_derivatives",
    "binary_cross_entropy_value_and_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_derivatives",
    "binary_cross_entropy_with_logits_value_and_grad",
    "gbdt",
    "get_num_threads",
    "gpu",
    "metrics",
    "set_num_threads",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_backward",
    "sigmoid_focal_loss_derivatives",
    "sigmoid_focal_loss_value_and_grad",
]

_check_environment()
