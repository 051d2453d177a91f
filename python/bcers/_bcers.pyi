"""Type stubs of the native module ``bcers._bcers`` (argument conversion only)."""

from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str
PARALLEL_MIN: int

def forward(
    input: npt.NDArray[np.floating[Any]],
    target: npt.NDArray[np.floating[Any]],
    weight: npt.NDArray[np.floating[Any]] | None,
    pos_weight: npt.NDArray[np.floating[Any]] | None,
    reduction: str,
    logits: bool,
) -> Any: ...
def backward(
    grad_output: npt.NDArray[np.floating[Any]],
    input: npt.NDArray[np.floating[Any]],
    target: npt.NDArray[np.floating[Any]],
    weight: npt.NDArray[np.floating[Any]] | None,
    pos_weight: npt.NDArray[np.floating[Any]] | None,
    reduction: str,
    logits: bool,
) -> npt.NDArray[np.floating[Any]]: ...
def value_and_grad(
    input: npt.NDArray[np.floating[Any]],
    target: npt.NDArray[np.floating[Any]],
    weight: npt.NDArray[np.floating[Any]] | None,
    pos_weight: npt.NDArray[np.floating[Any]] | None,
    reduction: str,
    logits: bool,
) -> tuple[Any, npt.NDArray[np.floating[Any]]]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def simd_level() -> str: ...
def available_simd_levels() -> list[str]: ...
def set_simd_level(level: str | None = None) -> None: ...
def _stream_read(x: npt.NDArray[np.floating[Any]], y: npt.NDArray[np.floating[Any]]) -> float: ...
