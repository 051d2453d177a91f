"""Type stubs of the native module ``bcers._bcers`` (argument conversion only)."""

from collections.abc import Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str
PARALLEL_MIN: int
MAX_THREADS: int
MAX_NDIM: int

# The array arguments are checked at run time (float32 or float64 ndarrays of one dtype, else
# TypeError), so any object type-checks here. The result: the loss (a float for a full
# reduction, an ndarray otherwise), the gradient, or both as a tuple, as `value` and `grad`
# ask; with `grad_target` or `hess`, the 4-tuple (value, grad, grad_target, hess).
def compute(
    loss: str,
    alpha: float,
    gamma: float,
    input: Any,
    target: Any,
    weight: Any,
    pos_weight: Any,
    grad_output: Any,
    reduction: str,
    value: bool,
    grad: bool,
    label_smoothing: float = 0.0,
    mask: Any = None,
    axis: list[int] | tuple[int, ...] | None = None,
    keepdims: bool = False,
    grad_target: bool = False,
    hess: bool = False,
    out: tuple[Any, Any, Any, Any] | None = None,
) -> Any: ...
def check_loss(loss: str, alpha: float, gamma: float, label_smoothing: float = 0.0) -> None: ...

# The exact sums of a loss over the kept elements, as LossSums bytes: one per slot of the
# reduction over `axis` (all axes: one), in C order of the reduced shape.
def sums(
    loss: str,
    alpha: float,
    gamma: float,
    input: Any,
    target: Any,
    weight: Any,
    pos_weight: Any,
    label_smoothing: float = 0.0,
    mask: Any = None,
    axis: list[int] | tuple[int, ...] | None = None,
) -> list[bytes]: ...
def sums_into(
    into: Sums,
    loss: str,
    alpha: float,
    gamma: float,
    input: Any,
    target: Any,
    weight: Any,
    pos_weight: Any,
    label_smoothing: float = 0.0,
    mask: Any = None,
) -> None: ...
def exact_sum(values: npt.NDArray[np.float64]) -> float: ...

@final
class Sums:
    def __init__(self) -> None: ...
    @staticmethod
    def from_bytes(data: bytes) -> Sums: ...
    def to_bytes(self) -> bytes: ...
    def merge(self, other: Sums) -> None: ...
    def finish(self) -> tuple[float, float, int]: ...

def sums_merge(states: Sequence[bytes]) -> bytes: ...
def sums_finish(state: bytes) -> tuple[float, float, int]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def _num_threads_env_problem() -> str | None: ...
def simd_level() -> str: ...
def available_simd_levels() -> list[str]: ...
def set_simd_level(level: str | None = None) -> None: ...

# The GPU part (Cargo feature "gpu"; bcers.gpu wraps it).
@final
class Array:
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> np.dtype[np.float32]: ...
    @property
    def size(self) -> int: ...
    @property
    def ndim(self) -> int: ...
    def numpy(self) -> npt.NDArray[np.float32]: ...
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> npt.NDArray[Any]: ...
    def __len__(self) -> int: ...

def _gpu_is_available() -> bool: ...
def _gpu_adapter_info() -> dict[str, Any]: ...
def _gpu_asarray(
    array: npt.NDArray[np.float32], shape: tuple[int, ...] | list[int] | None = None
) -> Array: ...
def _gpu_compute(
    loss: str,
    alpha: float,
    gamma: float,
    input: Array,
    target: Array,
    weight: Array | None,
    pos_weight: Array | None,
    grad_output: Array | None,
    reduction: str,
    value: bool,
    grad: bool,
    label_smoothing: float = 0.0,
    grad_target: bool = False,
    hess: bool = False,
    mask: Array | None = None,
    axis: list[int] | None = None,
    keepdims: bool = False,
) -> Any: ...
