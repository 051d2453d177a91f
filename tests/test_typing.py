"""The public API as a typed user sees it: this file is checked by mypy (strict) against the
package's annotations and stubs, and run by pytest."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

import bcers


def test_typed_usage() -> None:
    x: npt.NDArray[np.float32] = np.array([0.25, 0.75], dtype=np.float32)
    y: npt.NDArray[np.float32] = np.array([0.0, 1.0], dtype=np.float32)

    loss: Any = bcers.binary_cross_entropy(x, y)
    assert isinstance(loss, np.float32)

    elementwise = bcers.binary_cross_entropy(x, y, reduction="none")
    assert isinstance(elementwise, np.ndarray)

    value, grad = bcers.binary_cross_entropy_with_logits_value_and_grad(
        x, y, pos_weight=np.float32(2.0), reduction="sum"
    )
    assert isinstance(value, np.float32)
    assert grad.shape == x.shape

    g: npt.NDArray[np.floating[Any]] = bcers.binary_cross_entropy_backward(None, x, y)
    assert g.dtype == np.float32

    criterion = bcers.BCEWithLogitsLoss(weight=[1.0, 2.0], reduction="mean")
    assert criterion.reduction == "mean"
    assert criterion.weight is not None
    assert criterion.pos_weight is None
    grad2 = criterion.backward(x, y, grad_output=1.0)
    assert grad2.shape == (2,)

    threads: int = bcers.get_num_threads()
    assert threads >= 1
    version: str = bcers.__version__
    assert version.count(".") == 2
