"""bcers's ``log_loss`` against scikit-learn's: the values (within 1e-12 relative in float64),
the label handling, the checks with their exception types and messages, and the warnings."""

from __future__ import annotations

import warnings
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import log_loss as sk_log_loss

from bcers import _log_loss
from bcers._log_loss import _binary_labels
from bcers.metrics import InvalidParameterError, log_loss

RTOL = {np.float64: 1e-12, np.float32: 1e-6, np.float16: 2e-3}
EPS64 = float(np.finfo(np.float64).eps)


def assert_close(ours: float, theirs: float, rtol: float = 1e-12) -> None:
    assert type(ours) is float
    assert abs(ours - theirs) <= rtol * abs(theirs), (ours, theirs, abs(ours / theirs - 1))


def compare(*args: Any, rtol: float = 1e-12, **kwargs: Any) -> float:
    """Both log losses of the same call, asserted close; returns bcers's."""
    ours = log_loss(*args, **kwargs)
    assert_close(ours, sk_log_loss(*args, **kwargs), rtol)
    return ours


def labels01(n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """0/1 labels with both classes present."""
    y = (rng.random(n) < 0.5).astype(np.float64)
    y[:2] = [0.0, 1.0]
    return y


def probabilities(kind: str, y: npt.NDArray[Any], rng: np.random.Generator) -> Any:
    n = int(y.shape[0])
    if kind == "uniform":
        return rng.random(n)
    if kind == "extremes":  # exact 0 and 1, around eps and 1 - eps, subnormal, mixed in
        special = np.array(
            [0.0, 1.0, EPS64 / 4, EPS64 / 2, EPS64, 2 * EPS64, 1 - EPS64, 1 - EPS64 / 2, 5e-324]
        )
        return np.where(rng.random(n) < 0.6, rng.choice(special, n), rng.random(n))
    if kind == "skewed":  # many small probabilities
        return rng.random(n) ** 8
    if kind == "log-uniform":
        return np.minimum(10.0 ** rng.uniform(-20, 0, n), 1.0)
    # "near-perfect": a mean loss around 1e-10, where log(1 - p) must be scikit-learn's log of
    # the rounded 1 - p, not log1p(-p)
    assert kind == "near-perfect"
    r = rng.random(n) * 1e-9
    return np.where(y == 1, 1 - r, r)


KINDS = ("uniform", "extremes", "skewed", "log-uniform", "near-perfect")


def layout(p: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    if name == "(n,)":
        return p
    if name == "(n, 1)":
        return p[:, None]
    return np.stack([1 - p, p], axis=1)


def weights(name: str, n: int, rng: np.random.Generator) -> Any:
    if name == "none":
        return None
    if name == "with zeros":
        w = rng.random(n) * (rng.random(n) < 0.7)
        w[0] = 0.5
        return w
    return rng.integers(0, 4, n).tolist()  # a list of ints, zeros included


@pytest.mark.parametrize("n", [3, 1000])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", ["(n,)", "(n, 1)", "(n, 2)"])
@pytest.mark.parametrize("weight", ["none", "with zeros", "int list"])
def test_matches_sklearn_float64(n: int, kind: str, shape: str, weight: str) -> None:
    rng = np.random.default_rng([n, KINDS.index(kind), len(shape), len(weight)])
    y = labels01(n, rng)
    p = layout(probabilities(kind, y, rng), shape)
    w = weights(weight, n, rng)
    if w is not None and not np.any(w):
        w[0] = 1
    for normalize in (True, False):
        compare(y, p, normalize=normalize, sample_weight=w)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_sklearn_large(kind: str) -> None:
    """Past the kernel's chunk and thread boundaries."""
    rng = np.random.default_rng(KINDS.index(kind))
    y = labels01(70_001, rng)
    p = probabilities(kind, y, rng)
    w = rng.random(y.shape[0])
    compare(y, p)
    compare(y, p, sample_weight=w, normalize=False)
    compare(y.astype(bool), layout(p, "(n, 2)"), sample_weight=w)


def test_near_perfect_needs_the_true_class_probabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct computation (log1p(-p)) alone is 1e-10 off scikit-learn there: the recomputation
    from the true class's probability is what brings it within 1e-12."""
    rng = np.random.default_rng(7)
    y = labels01(10_000, rng)
    p = probabilities("near-perfect", y, rng)
    reference = sk_log_loss(y, p)
    assert_close(log_loss(y, p), reference)
    monkeypatch.setattr(_log_loss, "_GAP", {k: np.inf for k in _log_loss._GAP})
    assert abs(log_loss(y, p) / reference - 1) > 1e-12


def test_negative_weights() -> None:
    """scikit-learn takes weights of both signs (without cancellation the results agree)."""
    rng = np.random.default_rng(3)
    y = labels01(500, rng)
    p = rng.random(500)
    w = rng.random(500) - 0.2
    for normalize in (True, False):
        compare(y, p, sample_weight=w, normalize=normalize)


LABELLINGS: dict[str, Any] = {
    "float 0/1": lambda b: b.astype(np.float64),
    "float32 0/1": lambda b: b.astype(np.float32),
    "int 0/1": lambda b: b.astype(np.int64),
    "uint8 3/7": lambda b: np.where(b, 7, 3).astype(np.uint8),
    "bool": lambda b: b,
    "-1/1": lambda b: np.where(b, 1, -1),
    "float 0/2": lambda b: np.where(b, 2.0, 0.0),
    "spam/ham": lambda b: np.where(b, "spam", "ham"),
    "spam/ham objects": lambda b: np.where(b, "spam", "ham").astype(object),
    "list of str": lambda b: ["yes" if v else "no" for v in b],
    "list of int": lambda b: [int(v) for v in b],
    "list of bool": lambda b: [bool(v) for v in b],
    "column vector": lambda b: b.astype(np.int64)[:, None],
}


@pytest.mark.parametrize("labelling", list(LABELLINGS))
@pytest.mark.parametrize("shape", ["(n,)", "(n, 2)"])
def test_labels_of_every_kind(labelling: str, shape: str) -> None:
    rng = np.random.default_rng(len(labelling))
    b = labels01(300, rng).astype(bool)
    y = LABELLINGS[labelling](b)
    p = layout(rng.random(300), shape)
    compare(y, p)
    compare(y, p, sample_weight=rng.random(300), normalize=False)
    compare(y, p.tolist())


@pytest.mark.parametrize(
    ("y", "labels"),
    [
        ([1, 1, 1], [0, 1]),
        ([0, 0, 0], [0, 1]),
        (["spam"] * 3, ["ham", "spam"]),
        (["ham"] * 3, np.array(["ham", "spam"])),
        ([True] * 3, [False, True]),
        ([-1.0] * 3, [-1, 1]),
        ([[1], [1], [1]], [0, 1]),
    ],
)
def test_one_class_present_with_labels(y: Any, labels: Any) -> None:
    p = [0.9, 0.3, 1.0]
    compare(y, p, labels=labels)
    compare(y, layout(np.array(p), "(n, 2)"), labels=labels, normalize=False)


def test_labels_given_with_both_classes() -> None:
    rng = np.random.default_rng(11)
    y = np.where(labels01(100, rng) == 1, "b", "a")
    compare(y, rng.random(100), labels=["a", "b"])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("kind", ["uniform", "extremes", "skewed", "near-perfect"])
@pytest.mark.parametrize("shape", ["(n,)", "(n, 2)"])
def test_lower_precision(dtype: Any, kind: str, shape: str) -> None:
    """Clipped with the dtype's own eps, as scikit-learn; summed at higher precision."""
    rng = np.random.default_rng(KINDS.index(kind))
    y = labels01(1000, rng)
    p = layout(probabilities(kind, y, rng), shape).astype(dtype)
    w = rng.random(1000).astype(dtype)
    for normalize in (True, False):
        compare(y, p, normalize=normalize, rtol=RTOL[dtype])
        compare(y, p, normalize=normalize, sample_weight=w, rtol=RTOL[dtype])
        compare(y, p, sample_weight=w.astype(np.float64), rtol=RTOL[dtype])


@pytest.mark.parametrize(
    "y_pred",
    [
        [0, 1, 1, 0],
        [False, True, True, False],
        np.array([0.2, 0.7, 0.9, 0.4], dtype=">f8"),
        np.array([0.2, 0.7, 0.9, 0.4], dtype=np.longdouble),
        np.array([0.2, 0.7, 0.9, 0.4], dtype=object),
        (0.2, 0.7, 0.9, 0.4),
        np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])[::2],
    ],
    ids=["int", "bool", "big-endian", "longdouble", "object", "tuple", "strided"],
)
def test_y_pred_conversions(y_pred: Any) -> None:
    compare([0, 1, 1, 0], y_pred)


def test_inputs_not_modified() -> None:
    p = np.array([0.0, 1.0, 0.5, 1e-20])
    p2 = np.stack([1 - p, p], axis=1)
    y = np.array([0.0, 1.0, 1.0, 0.0])
    w = np.array([1.0, 2.0, 0.0, 3.0])
    before = [a.copy() for a in (p, p2, y, w)]
    for pred in (p, p2):
        log_loss(y, pred, sample_weight=w)
        log_loss(y, pred, sample_weight=w, normalize=False)
    for a, b in zip((p, p2, y, w), before):
        np.testing.assert_array_equal(a, b)


def test_clips_only_when_needed() -> None:
    y = np.array([0.0, 1.0, 1.0])
    inside = np.array([EPS64, 1 - EPS64, 0.5])
    reference = sk_log_loss(y, inside)
    with mock.patch.object(np, "clip", side_effect=AssertionError("clipped")):
        assert_close(log_loss(y, inside), reference)
        with pytest.raises(AssertionError, match="clipped"):
            log_loss(y, np.array([0.0, 1.0, 0.5]))


def test_binary_labels() -> None:
    y = np.array([0.0, 1.0, 1.0, 0.0])
    target, classes = _binary_labels(y)
    assert target is y  # already 0/1 float64: no copy
    np.testing.assert_array_equal(classes, [0.0, 1.0])
    target, classes = _binary_labels(y, dtype=np.float32)
    assert target.dtype == np.float32
    np.testing.assert_array_equal(target, y)
    target, classes = _binary_labels(["spam", "ham", "ham", "spam"])
    assert target.dtype == np.float64
    np.testing.assert_array_equal(target, [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(classes, ["ham", "spam"])
    target, classes = _binary_labels([-1, 1, 1, -1])
    np.testing.assert_array_equal(target, [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(classes, [-1, 1])
    target, classes = _binary_labels([[3], [3]], labels=[3, 5])
    np.testing.assert_array_equal(target, [0.0, 0.0])
    np.testing.assert_array_equal(classes, [3, 5])
    target, classes = _binary_labels(np.array([True, False]), labels=[False, True])
    np.testing.assert_array_equal(target, [1.0, 0.0])
    with pytest.raises(ValueError, match="only one label"):
        _binary_labels([1, 1])
    with pytest.raises(ValueError, match="binary problems"):
        _binary_labels([0, 1, 2])


# Bad inputs: scikit-learn and bcers raise the same kind of exception; bcers's message has these
# words (scikit-learn's own, except that its y_proba is bcers's y_pred).
NAN, INF = float("nan"), float("inf")
ERRORS = [
    pytest.param(
        ([0, 1, 1], [0.2, 0.3]), {}, "inconsistent numbers of samples: [2, 3]", id="length"
    ),
    pytest.param(([1, 1], [0.2, 0.3]), {}, "y_true contains only one label (1)", id="one-label"),
    pytest.param((["a", "a"], [0.2, 0.3]), {}, "only one label (a)", id="one-label-str"),
    pytest.param(([0, 1], [0.2, 1.3]), {}, "y_pred contains values greater than 1: 1.3", id=">1"),
    pytest.param(([0, 1], [-0.2, 0.3]), {}, "y_pred contains values lower than 0: -0.2", id="<0"),
    pytest.param(([0, 1], [NAN, 0.3]), {}, "Input contains NaN.", id="nan"),
    pytest.param(([0, 1], [INF, 0.3]), {}, "Input contains infinity", id="inf"),
    pytest.param(([0, 1], [[0.5, NAN], [0.5, 0.5]]), {}, "Input contains NaN", id="nan-2col"),
    pytest.param(([0.0, NAN, 1.0], [0.1, 0.2, 0.3]), {}, "Input y contains NaN", id="y-nan"),
    pytest.param(([0.0, INF], [0.1, 0.2]), {}, "Input y contains infinity", id="y-inf"),
    pytest.param(([0.2, 0.8], [0.1, 0.2]), {}, "Unknown label type", id="y-continuous"),
    pytest.param(([0, 0.5, 1], [0.1, 0.2, 0.3]), {}, "Unknown label type", id="y-continuous-3"),
    pytest.param(([], []), {}, "Found array with 0 sample(s) (shape=(0,))", id="empty"),
    pytest.param(([], np.zeros((0, 2))), {}, "0 sample(s) (shape=(0, 2))", id="empty-2col"),
    pytest.param(([0, 1], np.zeros((2, 0))), {}, "0 feature(s) (shape=(2, 0))", id="no-column"),
    pytest.param(([0, 1], np.zeros((2, 1, 1))), {}, "Found array with dim 3", id="3-d"),
    pytest.param(([0, 1], np.array([0.1, 0.2], complex)), {}, "Complex data", id="complex"),
    pytest.param(([0, 1], ["a", "b"]), {}, "could not convert string to float", id="str-y_pred"),
    pytest.param(([1], np.array(0.2)), {}, "at least 1 dimension", id="0-d-y_pred"),
    pytest.param((np.array(1), [0.2]), {}, "at least 1 dimension", id="0-d-y_true"),
    pytest.param((1, [0.2]), {}, "The 'y_true' parameter of log_loss", id="scalar-y_true"),
    pytest.param((None, [0.2]), {}, "The 'y_true' parameter of log_loss", id="None-y_true"),
    pytest.param(("ab", [0.2, 0.3]), {}, "The 'y_true' parameter", id="str-y_true"),
    pytest.param(([1], 0.2), {}, "The 'y_pred' parameter of log_loss", id="scalar-y_pred"),
    pytest.param(({0, 1}, [0.2, 0.3]), {}, "Expected array-like", id="set-y_true"),
    pytest.param(([0, "a"], [0.2, 0.3]), {}, "Mix of label input types", id="mixed-labels"),
    pytest.param(([b"a", b"b"], [0.2, 0.3]), {}, "represented as bytes", id="bytes-labels"),
    pytest.param(([{}, {}], [0.2, 0.3]), {}, "Unknown label type", id="dict-labels"),
    pytest.param((np.array([0, 1], object), [0.2, 0.3]), {}, "Unknown label type", id="objects"),
    pytest.param(([0, 1], [0.2, 0.3]), {"normalize": 1}, "'normalize' parameter", id="norm-int"),
    pytest.param(([0, 1], [0.2, 0.3]), {"normalize": "yes"}, "'normalize'", id="norm-str"),
    pytest.param(([0, 1], [0.2, 0.3]), {"sample_weight": 2.0}, "'sample_weight'", id="w-scalar"),
    pytest.param(([0, 1], [0.2, 0.3]), {"labels": 1}, "'labels' parameter", id="labels-scalar"),
    pytest.param(
        ([0, 1], [0.2, 0.3]), {"sample_weight": [1, 2, 3]}, "samples: [2, 2, 3]", id="w-length"
    ),
    pytest.param(
        ([0, 1], [0.2, 0.3]), {"sample_weight": [[1, 2]]}, "samples: [2, 2, 1]", id="w-row"
    ),
    pytest.param(
        ([0, 1], [0.2, 0.3]), {"sample_weight": np.ones((2, 1))}, "must be 1D", id="w-column"
    ),
    pytest.param(([0, 1], [0.2, 0.3]), {"sample_weight": np.ones((2, 1, 1))}, "dim 3", id="w-3-d"),
    pytest.param(
        ([0, 1], [0.2, 0.3]), {"sample_weight": np.array(2.0)}, "at least 1 dim", id="w-0-d"
    ),
    pytest.param(
        ([0, 1], [0.2, 0.3]), {"sample_weight": [0, 0]}, "at least one non-zero", id="w-zeros"
    ),
    pytest.param(
        ([0, 1], [0.2, 0.3]), {"sample_weight": [1, -1]}, "Weights sum to zero", id="w-sum-0"
    ),
    pytest.param(([0, 1], [0.2, 0.3]), {"sample_weight": [NAN, 1]}, "NaN", id="w-nan"),
    pytest.param(([0, 1], [0.2, 0.3]), {"sample_weight": [INF, 1]}, "infinity", id="w-inf"),
    pytest.param(
        ([0, 1], [0.2, 0.3]), {"sample_weight": np.array([1, 2], complex)}, "Complex", id="w-cx"
    ),
    pytest.param(([0, 1], [0.2, 0.3]), {"sample_weight": ["a", "b"]}, "real numbers", id="w-str"),
    pytest.param(([1, 1], [0.2, 0.3]), {"labels": [1]}, "at least two labels", id="labels-1"),
    pytest.param(
        ([1, 2], [0.2, 0.3]), {"labels": [0, 1]}, "values {2} not belonging", id="labels-missing"
    ),
    pytest.param(
        ([0, 1], [0.2, 0.3]), {"labels": ["a", "b"]}, "not belonging", id="labels-other-kind"
    ),
    pytest.param(([0, NAN], [0.2, 0.3]), {"labels": [0, 1]}, "not belonging", id="y-nan-labels"),
    pytest.param(([0, 1], [0.2, 0.3]), {"labels": [0, 1, 1]}, "repeat", id="labels-repeated"),
    pytest.param(([0, 1], [0.2, 0.3]), {"labels": [0.5, 0.7]}, "Unknown label", id="labels-cont"),
    pytest.param(([0, 1], [0.2, 0.3]), {"labels": []}, "at least two", id="labels-empty"),
    pytest.param(([0, 1], [0.2, 0.3]), {"labels": [0, NAN]}, "NaN", id="labels-nan"),
]


def kind(e: BaseException) -> tuple[bool, bool, bool]:
    return isinstance(e, ValueError), isinstance(e, TypeError), isinstance(e, ZeroDivisionError)


@pytest.mark.parametrize(("args", "kwargs", "words"), ERRORS)
def test_errors_as_sklearn(args: tuple[Any, Any], kwargs: dict[str, Any], words: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's RuntimeWarning casting NaN labels to int
        with pytest.raises(Exception) as theirs:  # noqa: PT011 (any class: compared below)
            sk_log_loss(*args, **kwargs)
    with pytest.raises(Exception) as ours:  # noqa: PT011
        log_loss(*args, **kwargs)
    assert kind(ours.value) == kind(theirs.value), (ours.value, theirs.value)
    assert words in str(ours.value)


def test_invalid_parameter_error() -> None:
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)
    with pytest.raises(InvalidParameterError, match="'y_true' parameter"):
        log_loss((v for v in [0, 1]), [0.2, 0.3])
    with pytest.raises(ValueError, match="'y_true' parameter"):
        sk_log_loss((v for v in [0, 1]), [0.2, 0.3])


@pytest.mark.parametrize(
    ("y", "p", "kwargs"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], {}),
        ([0, 1, 2], [[0.2, 0.3, 0.5]] * 3, {}),
        ([0, 1, 1], [[0.2, 0.3, 0.5]] * 3, {}),
        ([0, 1, 1], [0.1, 0.2, 0.3], {"labels": [0, 1, 2]}),
        (np.eye(2)[[0, 1, 1]], [0.1, 0.2, 0.3], {}),
        (np.eye(3)[[0, 1, 2]], [[0.2, 0.3, 0.5]] * 3, {}),
    ],
    ids=["3-classes", "3-classes-3-cols", "3-cols", "3-labels", "indicator", "indicator-3"],
)
def test_multiclass_refused(y: Any, p: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="bcers's log_loss is for binary problems"):
        log_loss(y, p, **kwargs)


def test_warns_rows_not_summing_to_one() -> None:
    y, p = [0, 1], [[0.5, 0.6], [0.2, 0.8]]
    with pytest.warns(UserWarning, match="values do not sum to one") as theirs:
        reference = sk_log_loss(y, p)
    with pytest.warns(UserWarning, match="values do not sum to one") as ours:
        assert_close(log_loss(y, p), reference)
    assert len(ours) == len(theirs) == 1
    assert ours[0].filename == __file__  # attributed to the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_loss(y, [[0.5, 0.5 + 1e-9], [0.2, 0.8]])  # within scikit-learn's tolerance


def test_warns_unsorted_labels() -> None:
    y, p = [1, 1], [0.2, 0.3]
    with pytest.warns(UserWarning, match="assumes labels are ordered lexicographically"):
        reference = sk_log_loss(y, p, labels=[1, 0])
    with pytest.warns(UserWarning, match=r"Pass the ordered labels=\[0, 1\]"):
        assert_close(log_loss(y, p, labels=[1, 0]), reference)


def test_docstring_examples() -> None:
    assert round(log_loss([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.35]), 6) == 0.216162
    spam = ["spam", "ham", "ham", "spam"]
    p = [[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]]
    assert round(log_loss(spam, p), 6) == round(sk_log_loss(spam, p), 6) == 0.216162
    assert round(log_loss([1, 1], [0.9, 0.6], labels=[0, 1], normalize=False), 6) == 0.616186


@given(
    data=st.data(),
    n=st.integers(1, 40),
    normalize=st.booleans(),
    weighted=st.booleans(),
)
def test_property_matches_sklearn(
    data: st.DataObject, n: int, normalize: bool, weighted: bool
) -> None:
    """Any probabilities in [0, 1] (subnormals, 0 and 1 included), any labels (one class or
    two, with ``labels``), non-negative weights: within 1e-12 of scikit-learn."""
    p = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    y = data.draw(hnp.arrays(np.bool_, n))
    w = None
    if weighted:
        w = data.draw(
            hnp.arrays(np.float64, n, elements=st.one_of(st.just(0.0), st.floats(1e-3, 1e3)))
        )
        if not w.any():
            w[0] = 1.0
    two_columns = data.draw(st.booleans())
    pred = layout(p, "(n, 2)") if two_columns else p
    compare(y, pred, normalize=normalize, sample_weight=w, labels=[False, True])
