"""Turning the arguments into NumPy arrays, with the errors bcers promises."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_REAL_KINDS = frozenset("biuf")


def convert(value: Any, name: str) -> npt.NDArray[Any]:
    """``np.asarray(value)``, keeping the TypeError/ValueError contract whatever the conversion
    raises (an exception of another class, or with another constructor, is chained to ours).
    A masked array is refused rather than have its mask dropped (the input's and target's
    masks are taken before: they become the ``mask`` argument)."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a numpy.ma.MaskedArray, whose mask bcers would ignore: pass "
            f"np.ma.getdata({name}) to use every element, or drop elements with the mask "
            "argument (a masked input or target is honoured)"
        )
    try:
        return np.asarray(value)
    except MemoryError:
        raise
    except Exception as e:
        kind = ValueError if isinstance(e, ValueError) else TypeError
        raise kind(f"{name} could not be converted to an array: {e}") from e


def check_real(a: npt.NDArray[Any], name: str) -> None:
    """TypeError unless ``a`` holds real numbers or booleans."""
    if a.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{name} must be an array of real numbers or booleans, got dtype {a.dtype}")
