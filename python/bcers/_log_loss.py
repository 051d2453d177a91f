"""scikit-learn's ``log_loss`` for binary problems, its loss computed by bcers's kernels."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _bcers
from ._functional import _warn, binary_cross_entropy

__all__ = ["InvalidParameterError", "log_loss"]

_FloatArray = npt.NDArray[np.floating[Any]]
_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
# The dtypes y_pred keeps (scikit-learn's ``supported_float_dtypes`` for NumPy); any other is
# converted to float64, as ``check_array`` does. float16 is clipped in float16 and computed in
# float32, as bcers computes it.
_KEPT = (_F64, _F32, _F16)
_COMPUTE: dict[np.dtype[Any], np.dtype[Any]] = {_F64: _F64, _F32: _F32, _F16: _F32}
# bcers computes log(1 - p) as log1p(-p), where scikit-learn takes the log of 1 - p rounded to
# y_pred's dtype: the two differ by at most the unit roundoff u (eps / 2) per sample, so the
# sums by at most u times the total absolute weight W. The direct computation stands when that
# is at most _GAP (by dtype) relative to the loss, that is when the mean loss is at least u /
# _GAP (0.011 in float64, 0.06 in float32); otherwise the loss is recomputed from
# scikit-learn's own probabilities of the true class, which costs a temporary array.
_GAP: dict[np.dtype[Any], float] = {_F64: 1e-14, _F32: 1e-6}
_BINARY_ONLY = "use sklearn.metrics.log_loss for multiclass problems"
_BYTES = (
    "Support for labels represented as bytes is not supported. Convert the labels to a string "
    "or integer format."
)


class InvalidParameterError(ValueError, TypeError):
    """An argument of the wrong type or value, as scikit-learn's ``InvalidParameterError``
    (a ``ValueError`` and a ``TypeError`` both)."""


def _is_array_like(value: Any) -> bool:
    """scikit-learn's "array-like" constraint: a sized or array object that is not a scalar."""
    array = hasattr(value, "__len__") or hasattr(value, "shape") or hasattr(value, "__array__")
    return array and not np.isscalar(value)


def _check_parameters(
    y_true: Any, y_pred: Any, normalize: Any, sample_weight: Any, labels: Any
) -> None:
    """The parameter constraints scikit-learn's ``validate_params`` checks, with its message."""

    def invalid(name: str, constraint: str, value: Any) -> InvalidParameterError:
        return InvalidParameterError(
            f"The {name!r} parameter of log_loss must be {constraint}. Got {value!r} instead."
        )

    if not _is_array_like(y_true):
        raise invalid("y_true", "an array-like", y_true)
    if not _is_array_like(y_pred):
        raise invalid("y_pred", "an array-like", y_pred)
    if not isinstance(normalize, (bool, np.bool_)):
        raise invalid(
            "normalize", "an instance of 'bool' or an instance of 'numpy.bool'", normalize
        )
    if sample_weight is not None and not _is_array_like(sample_weight):
        raise invalid("sample_weight", "an array-like or None", sample_weight)
    if labels is not None and not _is_array_like(labels):
        raise invalid("labels", "an array-like or None", labels)


def _num_samples(a: npt.NDArray[Any]) -> int:
    if a.ndim == 0:
        raise TypeError(
            "Input should have at least 1 dimension i.e. satisfy `len(x.shape) > 0`, got "
            f"scalar `{a!r}` instead."
        )
    return int(a.shape[0])


def _non_finite(low: Any, high: Any, dtype: np.dtype[Any], name: str) -> ValueError | None:
    """scikit-learn's error for NaN or infinity, given an array's min and max (NaN propagates
    into both)."""
    prefix = f"Input {name} " if name else "Input "
    if np.isnan(low) or np.isnan(high):
        return ValueError(f"{prefix}contains NaN.")
    if np.isinf(low) or np.isinf(high):
        return ValueError(f"{prefix}contains infinity or a value too large for {dtype!r}.")
    return None


def _check_array(a: npt.NDArray[Any]) -> None:
    """The checks of scikit-learn's ``check_array`` that come before the values: complex data,
    at most two dimensions."""
    if a.dtype.kind == "c":
        raise ValueError(f"Complex data not supported\n{a}\n")
    if a.ndim >= 3:
        raise ValueError(f"Found array with dim {a.ndim}, while dim <= 2 is required.")


def _probabilities(y_pred: Any) -> tuple[npt.NDArray[Any], Any, Any]:
    """y_pred validated as scikit-learn validates it: a float array of one or two dimensions,
    finite, with at least one sample (and one column), within [0, 1]; and its min and max."""
    p = np.asarray(y_pred)
    _check_array(p)
    if p.dtype not in _KEPT:
        p = p.astype(np.float64)
    if p.size == 0:
        _num_samples(p)
        if p.shape[0] == 0:
            raise ValueError(
                f"Found array with 0 sample(s) (shape={p.shape}) while a minimum of 1 is required."
            )
        raise ValueError(
            f"Found array with 0 feature(s) (shape={p.shape}) while a minimum of 1 is required."
        )
    low, high = p.min(), p.max()
    error = _non_finite(low, high, p.dtype, "")
    if error is not None:
        raise error
    _num_samples(p)
    if high > 1:
        raise ValueError(f"y_pred contains values greater than 1: {high}")
    if low < 0:
        raise ValueError(f"y_pred contains values lower than 0: {low}")
    return p, low, high


def _weights(sample_weight: Any) -> npt.NDArray[Any]:
    w = np.asarray(sample_weight)
    if w.dtype == object:
        w = w.astype(np.float64)
    return w


def _check_weights(w: npt.NDArray[Any], n: int) -> tuple[float, float]:
    """scikit-learn's checks of the sample weights (its ``_check_sample_weight``): real, finite,
    1-D, not all zero. Returns their sum and the sum of their absolute values."""
    _check_array(w)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be an array of real numbers, got dtype {w.dtype}")
    if w.size == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={w.shape}) while a minimum of 1 is required."
        )
    low, high = w.min(), w.max()
    if w.dtype.kind == "f":
        error = _non_finite(low, high, w.dtype, "sample_weight")
        if error is not None:
            raise error
    if w.ndim != 1:
        raise ValueError(
            f"Sample weights must be 1D array or scalar, got {w.ndim}D array. Expected either a "
            f"scalar value or a 1D array of length {n}."
        )
    if low == 0 and high == 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    # Exact sums, rounded once: the same bits however the weights are split (bcers.dask sums
    # them by chunks), within an ulp or so of NumPy's pairwise sum.
    w64 = w.astype(np.float64, copy=False)
    total = _bcers.exact_sum(w64)
    absolute = total if low >= 0 else _bcers.exact_sum(np.abs(w64))
    return total, absolute


def _label_array(y_true: Any) -> npt.NDArray[Any]:
    """y_true as a NumPy array of at least one dimension (its length is checked next)."""
    if isinstance(y_true, (set, frozenset)):
        raise ValueError(f"Expected array-like (array or non-string sequence), got {y_true!r}")
    y = np.asarray(y_true)
    _num_samples(y)
    return y


def _label_vector(y_true: Any, y: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
    """y_true (``y`` once converted) as a 1-D array (a column vector is taken as one), with
    scikit-learn's errors for what it refuses as labels."""
    if y is None:
        y = _label_array(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim != 1:
        raise ValueError(
            f"bcers's log_loss is for binary problems: y_true must be a 1-D array of labels (or "
            f"a column vector), got one of shape {y.shape}; {_BINARY_ONLY} or label indicator "
            "matrices"
        )
    _check_kind(y, y_true, "y_true")
    return y


def _check_kind(y: npt.NDArray[Any], original: Any, name: str) -> None:
    """TypeError for bytes, ValueError for a list mixing strings and numbers, as scikit-learn."""
    kind = y.dtype.kind
    if kind == "S":
        raise TypeError(_BYTES)
    listed = kind == "U" and not isinstance(original, np.ndarray)
    if listed and len({isinstance(v, str) for v in original}) > 1:
        raise ValueError(f"Mix of label input types (string and number); Got {y}.")
    if kind == "O" and y.size and not isinstance(y.flat[0], str):
        raise ValueError(f"Unknown label type: {name} is an object array of non-strings")
    if kind not in "biufUO":
        raise ValueError(f"Unknown label type: {name} has dtype {y.dtype}")


def _unknown_label_type(values: npt.NDArray[Any], name: str) -> ValueError:
    bad = values[values != np.floor(values)][:1]
    return ValueError(
        f"Unknown label type: 'continuous' ({name} holds non-integer values, as {bad[0]}); "
        "log_loss takes class labels"
    )


def _more_than_two(y: npt.NDArray[Any]) -> ValueError:
    classes = np.unique(y)
    return ValueError(
        f"bcers's log_loss is for binary problems, but y_true has {classes.size} classes: "
        f"{classes}; {_BINARY_ONLY}"
    )


def _numeric_pair(y: npt.NDArray[Any]) -> tuple[Any, Any]:
    """The smallest and largest of numeric labels, with scikit-learn's errors for NaN, infinity
    and non-integer floats."""
    low, high = y.min(), y.max()
    if y.dtype.kind == "f":
        error = _non_finite(low, high, y.dtype, "y")
        if error is not None:
            raise error
        if low != math.floor(low) or high != math.floor(high):
            raise _unknown_label_type(np.array([low, high]), "y_true")
    return low, high


def _positive(
    y: npt.NDArray[Any], low: Any, high: Any, mask: bool, dtype: np.dtype[Any]
) -> npt.NDArray[Any] | None:
    """Whether each label is ``high``, as a bool mask or as 0/1 in ``dtype``; None if some
    label is neither ``low`` nor ``high``. A 0/1 array of ``dtype`` is returned as it is."""
    n = y.shape[0]
    # ==, not np.equal: labels of another kind (strings and numbers) compare unequal.
    is_high: npt.NDArray[np.bool_] = y == high
    n_high = int(np.count_nonzero(is_high))
    if y.dtype.kind in "iuf" and low == 0:
        n_low = n - int(np.count_nonzero(y))
    else:
        n_low = int(np.count_nonzero(y == low))
    if n_high + n_low != n:
        return None
    if not mask and y.dtype == dtype and low == 0 and high == 1:
        return y
    return _target(is_high, mask, dtype)


def _target(is_high: npt.NDArray[np.bool_], mask: bool, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    return is_high if mask else is_high.astype(dtype)


def _inferred(
    y: npt.NDArray[Any], mask: bool, dtype: np.dtype[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The classes found in y_true (LabelBinarizer's: sorted, the greater one positive)."""
    n = y.shape[0]
    kind = y.dtype.kind
    if kind == "b":
        if int(np.count_nonzero(y)) in (0, n):
            raise _one_label(y[0])
        return _target(y, mask, dtype), np.array([False, True])
    if kind not in "iuf":
        # Strings: two passes, one per class (the first label's and another's).
        first = y[0]
        different: npt.NDArray[np.bool_] = y != first
        if not different.any():
            raise _one_label(first)
        other = y[int(np.argmax(different))]
        is_other: npt.NDArray[np.bool_] = y == other
        if n - int(np.count_nonzero(different)) + int(np.count_nonzero(is_other)) != n:
            raise _more_than_two(y)
        if other > first:
            return _target(is_other, mask, dtype), np.array([first, other], dtype=y.dtype)
        return _target(~different, mask, dtype), np.array([other, first], dtype=y.dtype)
    low, high = _numeric_pair(y)
    if low == high:
        raise _one_label(low)
    target = _positive(y, low, high, mask, dtype)
    if target is None:
        if kind == "f" and np.any(y != np.floor(y)):
            raise _unknown_label_type(y, "y_true")
        raise _more_than_two(y)
    return target, np.array([low, high], dtype=y.dtype)


def _one_label(label: Any) -> ValueError:
    return ValueError(
        f"y_true contains only one label ({label}). Please provide the list of all expected "
        "class labels explicitly through the labels argument."
    )


def _declared(
    y: npt.NDArray[Any], labels: Any, mask: bool, dtype: np.dtype[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The classes given by ``labels`` (sorted, the greater one positive), every label of
    y_true among them, as scikit-learn checks."""
    given = np.asarray(labels)
    if given.ndim != 1:
        raise ValueError(f"labels must be a 1-D array-like of class labels, got {labels!r}")
    if given.size == 0:
        raise ValueError("The labels array needs to contain at least two labels, got [].")
    _check_kind(given, labels, "labels")
    if given.dtype.kind == "f":
        error = _non_finite(given.min(), given.max(), given.dtype, "labels")
        if error is not None:
            raise error
        if np.any(given != np.floor(given)):
            raise _unknown_label_type(given, "labels")
    classes = np.unique(given)
    if classes.shape != given.shape:
        raise ValueError(f"labels must not repeat a label, got {labels}")
    if not np.array_equal(classes, given):
        _warn(
            f"Labels passed were {labels}. But this function assumes labels are ordered "
            f"lexicographically. Pass the ordered labels={classes.tolist()} and ensure that "
            "the columns of y_pred correspond to this ordering."
        )
    if classes.size == 2:
        target = _positive(y, classes[0], classes[1], mask, dtype)
        declared = target is not None
    else:
        target = None
        declared = bool(np.isin(y, classes).all())
    if not declared:
        undeclared = set(y[~np.isin(y, classes)].tolist()) - set(given.tolist())
        raise ValueError(
            f"y_true contains values {undeclared} not belonging to the passed labels {labels}."
        )
    if classes.size == 1:
        raise ValueError(f"The labels array needs to contain at least two labels, got {classes}.")
    if target is None:
        raise ValueError(
            f"bcers's log_loss is for binary problems, but labels has {classes.size} classes: "
            f"{classes}; {_BINARY_ONLY}"
        )
    return target, classes


def _encode(
    y_true: Any,
    labels: Any,
    mask: bool,
    dtype: np.dtype[Any],
    converted: npt.NDArray[Any] | None = None,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The targets (a bool mask, or 0/1 in ``dtype``) and the classes of y_true, ``converted``
    being y_true as an array if the caller has it."""
    y = _label_vector(y_true, converted)
    if labels is None:
        return _inferred(y, mask, dtype)
    return _declared(y, labels, mask, dtype)


def _binary_labels(
    y_true: Any, labels: Any = None, *, dtype: npt.DTypeLike = np.float64
) -> tuple[_FloatArray, npt.NDArray[Any]]:
    """The binary targets of ``y_true`` as scikit-learn's ``LabelBinarizer`` makes them.

    With the same checks, errors and warnings as :func:`log_loss`'s labels. For data in
    chunks, pass the classes found over all of it as ``labels``: every chunk's targets then
    agree, whichever classes the chunk holds.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, 1)
        The labels: numbers, booleans or strings, two classes.
    labels : array-like of shape (2,), default=None
        The classes, when y_true may hold only one of them; else they are those of y_true.
    dtype : float dtype, default=np.float64
        The dtype of the targets returned.

    Returns
    -------
    target : ndarray of shape (n_samples,)
        1.0 where the label is the positive class (the greater of the two classes), 0.0
        elsewhere. ``y_true`` itself (no copy; for a column vector, a view of it) when it is
        already an array of 0.0/1.0 of ``dtype`` and ``labels`` (if any) are 0 and 1.
    classes : ndarray of shape (2,)
        The two classes, sorted.

    Raises
    ------
    ValueError
        Fewer or more than two classes, a label outside ``labels``, NaN or non-integer float
        labels, as scikit-learn raises; more than two classes are refused since bcers's
        ``log_loss`` is for binary problems.
    TypeError
        Labels given as bytes, a 0-d array.
    """
    target, classes = _encode(y_true, labels, False, np.dtype(dtype))
    return target, classes


def _rows_sum_to_one(p: npt.NDArray[Any], eps: Any) -> bool:
    """scikit-learn's test, ``np.isclose(row_sums, 1, rtol=sqrt(eps))`` (atol 1e-8) for every
    row, computed as NumPy computes it (in p's dtype) with fewer temporary arrays."""
    one = np.asarray(1, dtype=p.dtype)
    deviation = p[:, 0] + p[:, 1]
    deviation -= one
    np.abs(deviation, out=deviation)
    return bool(deviation.max() <= 1e-08 + math.sqrt(eps) * np.abs(one))


def _sum_log(q: _FloatArray, weight: _FloatArray | None) -> float:
    """``-sum(weight * log(q))`` by bcers's kernel (the target 1 keeps only the log(q) term);
    q lies in [eps, 1 - eps], where the kernel's clamp of the log at -100 never acts."""
    ones = np.broadcast_to(q.dtype.type(1), q.shape)
    return float(binary_cross_entropy(q, ones, weight, reduction="sum"))


def _true_class(
    p: npt.NDArray[Any], positive: npt.NDArray[np.bool_], clip: bool, eps: Any
) -> _FloatArray:
    """The probability scikit-learn gives each sample's true class, clipped to [eps, 1 - eps]
    as it clips: column 1 or column 0 of a two-column y_pred; p or 1 - p of a 1-D one (where
    clipping 1 - p equals taking 1 minus the clipped p, which is what is computed)."""
    if p.ndim == 2:
        q: _FloatArray = np.where(positive, p[:, 1], p[:, 0])
        if clip:
            np.clip(q, eps, 1 - eps, out=q)
        return q
    if clip:
        p = np.clip(p, eps, 1 - eps)
    return np.where(positive, p, 1 - p)


def log_loss(
    y_true: Any,
    y_pred: Any,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
) -> float:
    """Log loss (logistic loss, binary cross entropy) of a binary classifier's probabilities,
    as ``sklearn.metrics.log_loss`` computes it, by bcers's kernels.

    For samples with labels :math:`y_i \\in \\{0, 1\\}` (1 for the positive class), predicted
    probabilities :math:`p_i` of the positive class and weights :math:`w_i` (1 without
    ``sample_weight``), the loss is
    :math:`-\\sum_i w_i (y_i \\log p_i + (1 - y_i) \\log(1 - p_i))`, divided by
    :math:`\\sum_i w_i` when ``normalize`` is true; every probability of a class is first
    clipped to :math:`[\\epsilon, 1 - \\epsilon]`, :math:`\\epsilon` the machine epsilon of
    y_pred's dtype.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, 1)
        The true labels: two classes of numbers (0/1, -1/1, ...), booleans or strings. As in
        scikit-learn (``LabelBinarizer``), the classes are sorted and the greater one is the
        positive class.
    y_pred : array-like of shape (n_samples,), (n_samples, 1) or (n_samples, 2)
        Predicted probabilities: of the positive class for one column, of the two sorted
        classes for two (as ``predict_proba`` returns them). float64, float32 and float16 are
        kept; anything else is converted to float64.
    normalize : bool, default=True
        True: the mean loss per sample (weighted by ``sample_weight``). False: the sum of the
        per-sample losses.
    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.
    labels : array-like of shape (2,), default=None
        The two classes, needed when y_true holds only one of them; inferred from y_true when
        None.

    Returns
    -------
    loss : float
        The log loss.

    Raises
    ------
    ValueError
        As scikit-learn raises it, with its message: inconsistent lengths, an empty y_pred or
        one of more than two dimensions, NaN or infinity, y_pred outside [0, 1], a single
        class in y_true without ``labels`` (or a single label in ``labels``), a label of y_true
        outside ``labels``, non-integer float labels, bad sample weights (NaN, infinity, all
        zero, not 1-D). Also, unlike scikit-learn, for any multiclass input: more than two
        classes in y_true or ``labels``, more than two columns in y_pred, or a 2-D y_true
        (label indicator matrix).
    InvalidParameterError
        An argument of the wrong kind (a scalar where an array is expected, a ``normalize``
        that is not a bool), as scikit-learn; it is both a ``ValueError`` and a ``TypeError``.
    TypeError
        Labels given as bytes, non-numeric sample weights, 0-d arrays.
    ZeroDivisionError
        ``normalize=True`` with sample weights that sum to zero.

    Warns
    -----
    UserWarning
        A two-column y_pred whose rows do not sum to one (within scikit-learn's tolerance),
        or ``labels`` not in sorted order, as scikit-learn warns.

    See Also
    --------
    bcers.binary_cross_entropy : The kernel, torch's BCE, which clamps the log at -100.

    Notes
    -----
    Matches scikit-learn (1.9) for binary problems: the same result within 1e-12 relative in
    float64 (measured: within a few units of 1e-16) for non-negative sample weights, the same
    label ordering, clipping, checks (in scikit-learn's order: y_pred, the lengths, the sample
    weights, the labels), warnings and exception types. The differences:

    - Multiclass input (see Raises) is refused; scikit-learn computes it.
    - Bit-for-bit equality is not promised, only agreement within rounding: the logs and
      sums are bcers's (its logs are within 1 ulp of NumPy's; its sums, of the losses and of
      the weights, are exact and rounded once, where NumPy's pairwise ones round as they go).
    - float32 and float16 y_pred are clipped with their own epsilon, as scikit-learn does, but
      the loss is summed at higher precision than scikit-learn's float32 (or float16)
      arithmetic; the results agree to about 1e-6 relative for float32 and to float16's
      precision (about 1e-3) for float16.
    - With sample weights of both signs the sum may cancel, and then the relative agreement
      can be poorer (both results are then dominated by rounding).
    - The second parameter is named ``y_pred`` (scikit-learn 1.9 renamed it ``y_proba``
      and deprecated ``y_pred``); positional calls are the same.

    Inputs are not copied when they need not be: a float64 (or float32) y_pred is clipped into
    a new array only when it holds values outside [eps, 1 - eps], a y_true of 0.0/1.0 in
    y_pred's dtype is used as it is, and so are float sample weights of y_pred's dtype.

    Examples
    --------
    >>> from bcers.metrics import log_loss
    >>> round(log_loss([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.35]), 6)
    0.216162
    >>> round(log_loss(["spam", "ham", "ham", "spam"],
    ...                [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 6)
    0.216162
    >>> round(log_loss([1, 1], [0.9, 0.6], labels=[0, 1], normalize=False), 6)
    0.616186
    """
    _check_parameters(y_true, y_pred, normalize, sample_weight, labels)
    p, low, high = _probabilities(y_pred)
    y = _label_array(y_true)
    w = None if sample_weight is None else _weights(sample_weight)
    lengths = [p.shape[0], y.shape[0]] + ([] if w is None else [_num_samples(w)])
    if len(set(lengths)) > 1:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths}")
    n = p.shape[0]
    if w is None:
        weight_sum = weight_abs = float(n)
    else:
        weight_sum, weight_abs = _check_weights(w, n)
    if p.ndim == 2:
        if p.shape[1] > 2:
            raise ValueError(
                f"bcers's log_loss is for binary problems, but y_pred has {p.shape[1]} columns; "
                f"{_BINARY_ONLY}"
            )
        if p.shape[1] == 1:
            p = p[:, 0]
    dtype = p.dtype
    compute = _COMPUTE[dtype]
    eps = np.finfo(dtype).eps
    clip = bool(low < eps or high > 1 - eps)
    direct = p.ndim == 1 and dtype != _F16
    target, _ = _encode(y_true, labels, not direct, compute, y)
    if p.ndim == 2 and not _rows_sum_to_one(p, eps):
        _warn("The y_pred values do not sum to one. Make sure to pass probabilities.")
    weight = None
    if w is not None:
        with np.errstate(over="ignore"):  # beyond float32's range is inf, silently
            weight = w if w.dtype == compute else w.astype(compute)
    if direct:
        pc = np.clip(p, eps, 1 - eps) if clip else p
        total = float(binary_cross_entropy(pc, target, weight, reduction="sum"))
        if abs(total) * _GAP[dtype] < 0.505 * float(eps) * weight_abs:
            q = np.where(target != 0, pc, 1 - pc)
            total = _sum_log(q, weight)
    else:
        q = _true_class(p, target, clip, eps)
        total = _sum_log(q if q.dtype == compute else q.astype(compute), weight)
    if not normalize:
        return total
    if weight_sum == 0:
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    return total / weight_sum
