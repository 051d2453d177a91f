"""The thread count: ``set_num_threads``, its ceiling, and the check of ``BCERS_NUM_THREADS``."""

from __future__ import annotations

import operator
import warnings

from . import _bcers

#: The most threads bcers uses: :func:`set_num_threads` refuses more, and a larger
#: ``BCERS_NUM_THREADS`` is ignored.
MAX_THREADS: int = _bcers.MAX_THREADS


def set_num_threads(n: int) -> None:
    """Sets the number of threads large calls use, from 1 to :data:`MAX_THREADS` (as
    ``torch.set_num_threads``). The default is ``BCERS_NUM_THREADS`` if set, else the number of
    processors available to the process.

    Raises:
        TypeError: ``n`` is not an integer.
        ValueError: ``n`` is below 1 or above :data:`MAX_THREADS`.
    """
    if isinstance(n, bool):
        raise TypeError("set_num_threads() argument 'n' must be an int, not bool")
    try:
        count = operator.index(n)
    except TypeError:
        raise TypeError(
            f"set_num_threads() argument 'n' must be an int, not {type(n).__name__}"
        ) from None
    if not 1 <= count <= MAX_THREADS:
        raise ValueError(f"the number of threads must be from 1 to {MAX_THREADS}, got {count}")
    _bcers.set_num_threads(count)


def _check_environment() -> None:
    """Warns, once at import, when ``BCERS_NUM_THREADS`` is set to a value bcers ignores."""
    value = _bcers._num_threads_env_problem()
    if value is not None:
        warnings.warn(
            f"BCERS_NUM_THREADS={value!r} is not a whole number from 1 to {MAX_THREADS}: it is "
            f"ignored, and bcers uses {_bcers.get_num_threads()} threads (the processors "
            "available)",
            RuntimeWarning,
            stacklevel=3,
        )
