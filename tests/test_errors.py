"""Every refused call, with its exact exception and message, and the edge cases around them.

The messages are torch's where torch has one (shapes printed as Python tuples instead of
``torch.Size([...])``), and bcers' own otherwise.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Callable

import numpy as np
import pytest
import reference as ref
from test_layouts import Calls, assert_identical

import bcers

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
REDUCTIONS = ("none", "mean", "sum")


def exact(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def entry_points(logits: bool, **kw: Any) -> dict[str, Callable[[Any, Any], Any]]:
    """Every way to call one loss on (input, target), in every reduction, by name."""
    calls: dict[str, Callable[[Any, Any], Any]] = {}
    if logits:
        fwd: Any = bcers.binary_cross_entropy_with_logits
        bwd: Any = bcers.binary_cross_entropy_with_logits_backward
        vag: Any = bcers.binary_cross_entropy_with_logits_value_and_grad
        cls: Any = bcers.BCEWithLogitsLoss
    else:
        fwd, bwd = bcers.binary_cross_entropy, bcers.binary_cross_entropy_backward
        vag, cls = bcers.binary_cross_entropy_value_and_grad, bcers.BCELoss
    for r in REDUCTIONS:
        calls[f"forward-{r}"] = lambda x, y, r=r: fwd(x, y, reduction=r, **kw)
        calls[f"backward-{r}"] = lambda x, y, r=r: bwd(None, x, y, reduction=r, **kw)
        calls[f"value_and_grad-{r}"] = lambda x, y, r=r: vag(x, y, reduction=r, **kw)
        calls[f"class-{r}"] = lambda x, y, r=r: cls(reduction=r, **kw)(x, y)
        calls[f"class.backward-{r}"] = lambda x, y, r=r: cls(reduction=r, **kw).backward(x, y)
        calls[f"class.value_and_grad-{r}"] = lambda x, y, r=r: cls(
            reduction=r, **kw
        ).value_and_grad(x, y)
    return calls


BCE_CALLS = entry_points(False)
LOGITS_CALLS = entry_points(True)
ALL_CALLS = [(False, name) for name in BCE_CALLS] + [(True, name) for name in LOGITS_CALLS]


def call(logits: bool, name: str, x: Any, y: Any) -> Any:
    return (LOGITS_CALLS if logits else BCE_CALLS)[name](x, y)


def focal_entry_points(**kw: Any) -> dict[str, Callable[[Any, Any], Any]]:
    """Every way to call the sigmoid focal loss on (input, target), in every reduction."""
    fwd, bwd = bcers.sigmoid_focal_loss, bcers.sigmoid_focal_loss_backward
    vag, cls = bcers.sigmoid_focal_loss_value_and_grad, bcers.SigmoidFocalLoss
    calls: dict[str, Callable[[Any, Any], Any]] = {}
    for r in REDUCTIONS:
        calls[f"forward-{r}"] = lambda x, y, r=r: fwd(x, y, reduction=r, **kw)
        calls[f"backward-{r}"] = lambda x, y, r=r: bwd(None, x, y, reduction=r, **kw)
        calls[f"value_and_grad-{r}"] = lambda x, y, r=r: vag(x, y, reduction=r, **kw)
        calls[f"class-{r}"] = lambda x, y, r=r: cls(reduction=r, **kw)(x, y)
        calls[f"class.backward-{r}"] = lambda x, y, r=r: cls(reduction=r, **kw).backward(x, y)
        calls[f"class.value_and_grad-{r}"] = lambda x, y, r=r: cls(
            reduction=r, **kw
        ).value_and_grad(x, y)
    return calls


FOCAL_CALLS = focal_entry_points()


# ---------------------------------------------------------------------------------------------
# Shapes.


@pytest.mark.parametrize(("logits", "name"), ALL_CALLS)
def test_target_shape_must_equal_input_shape(logits: bool, name: str) -> None:
    x = np.full(3, 0.5, np.float32)
    message = "Target size (3, 1) must be the same as input size (3,)"
    with pytest.raises(ValueError, match=exact(message)):
        call(logits, name, x, np.full((3, 1), 0.5, np.float32))


@pytest.mark.parametrize("name", list(FOCAL_CALLS))
def test_focal_target_shape_must_equal_input_shape(name: str) -> None:
    x = np.full(3, 0.5, np.float32)
    message = "Target size (3, 1) must be the same as input size (3,)"
    with pytest.raises(ValueError, match=exact(message)):
        FOCAL_CALLS[name](x, np.full((3, 1), 0.5, np.float32))


@pytest.mark.parametrize(
    ("target", "shapes"),
    [
        (np.full((), 0.5), ("()", "(2, 3)")),
        (np.full((3,), 0.5), ("(3,)", "(2, 3)")),
        (np.full((3, 2), 0.5), ("(3, 2)", "(2, 3)")),
        (np.full((1, 2, 3), 0.5), ("(1, 2, 3)", "(2, 3)")),
        (np.full((0, 3), 0.5), ("(0, 3)", "(2, 3)")),
    ],
    ids=str,
)
def test_focal_target_is_never_broadcast(target: Any, shapes: tuple[str, str]) -> None:
    t, i = shapes
    message = f"Target size {t} must be the same as input size {i}"
    for fn in FOCAL_CALLS.values():
        with pytest.raises(ValueError, match=exact(message)):
            fn(np.full((2, 3), 0.5), target)


@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
@pytest.mark.parametrize(
    ("target", "shapes"),
    [
        (np.full((), 0.5), ("()", "(2, 3)")),
        (np.full((3,), 0.5), ("(3,)", "(2, 3)")),
        (np.full((3, 2), 0.5), ("(3, 2)", "(2, 3)")),
        (np.full((1, 2, 3), 0.5), ("(1, 2, 3)", "(2, 3)")),
        (np.full((0, 3), 0.5), ("(0, 3)", "(2, 3)")),
    ],
    ids=str,
)
def test_target_is_never_broadcast(logits: bool, target: Any, shapes: tuple[str, str]) -> None:
    t, i = shapes
    # One message for both losses, with NumPy's shapes (torch's BCE calls the mismatch
    # "deprecated", though it is an error).
    message = f"Target size {t} must be the same as input size {i}"
    fn: Any = bcers.binary_cross_entropy_with_logits if logits else bcers.binary_cross_entropy
    with pytest.raises(ValueError, match=exact(message)):
        fn(np.full((2, 3), 0.5), target)


def broadcast_message(arg: str, shape: str, input_shape: str) -> str:
    return (
        f"{arg} of shape {shape} cannot be broadcast to the input's shape {input_shape} (it may "
        "have no more dimensions than the input, each of length 1 or equal to the input's)"
    )


BAD_WEIGHT_SHAPES = [(1, 2, 3), (2,), (3, 2), (2, 3, 1), (4, 3), (1, 1, 1), (0,), (2, 0)]


@pytest.mark.parametrize("shape", BAD_WEIGHT_SHAPES, ids=str)
@pytest.mark.parametrize(
    ("logits", "arg"), [(False, "weight"), (True, "weight"), (True, "pos_weight")]
)
def test_weights_must_broadcast_without_enlarging(
    logits: bool, arg: str, shape: tuple[int, ...]
) -> None:
    x = np.full((2, 3), 0.5, np.float32)
    message = broadcast_message(arg, str(shape), "(2, 3)")
    for name, fn in entry_points(logits, **{arg: np.ones(shape, np.float32)}).items():
        with pytest.raises(ValueError, match=exact(message)):
            fn(x, x)
        del name


@pytest.mark.parametrize("shape", BAD_WEIGHT_SHAPES, ids=str)
def test_focal_weight_must_broadcast_without_enlarging(shape: tuple[int, ...]) -> None:
    x = np.full((2, 3), 0.5, np.float32)
    message = broadcast_message("weight", str(shape), "(2, 3)")
    for fn in focal_entry_points(weight=np.ones(shape, np.float32)).values():
        with pytest.raises(ValueError, match=exact(message)):
            fn(x, x)


@pytest.mark.parametrize("shape", [(), (3,), (1, 3), (2, 1), (1, 1), (2, 3)], ids=str)
def test_focal_weights_that_broadcast_are_accepted(shape: tuple[int, ...]) -> None:
    x = np.full((2, 3), 0.5, np.float32)
    w = np.arange(1, 1 + int(np.prod(shape)), dtype=np.float32).reshape(shape)
    for fn in focal_entry_points(weight=w).values():
        fn(x, x)


@pytest.mark.parametrize("shape", [(), (3,), (1, 3), (2, 1), (1, 1), (2, 3)], ids=str)
def test_weights_that_broadcast_are_accepted(shape: tuple[int, ...]) -> None:
    x = np.full((2, 3), 0.5, np.float32)
    w = np.arange(1, 1 + int(np.prod(shape)), dtype=np.float32).reshape(shape)
    for fn in entry_points(True, weight=w, pos_weight=w).values():
        fn(x, x)
    for fn in entry_points(False, weight=w).values():
        fn(x, x)


# ---------------------------------------------------------------------------------------------
# The [0, 1] range check of BCE on probabilities.

OUTSIDE = [-0.5, -1e-30, 1.0000001, 2.0, np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("bad", OUTSIDE, ids=str)
@pytest.mark.parametrize("name", list(BCE_CALLS))
def test_bce_input_and_target_must_be_in_unit_interval(name: str, bad: float) -> None:
    ok = np.array([0.0, 0.5, 1.0, 0.25], np.float64)
    for dtype in (F16, F32, F64):
        bad_one = ok.copy()
        bad_one[2] = bad
        with np.errstate(under="ignore"):
            bad_one = bad_one.astype(dtype)
        good = ok.astype(dtype)
        if 0 <= bad_one[2] <= 1:
            # float16: -1e-30 becomes -0.0 and 1.0000001 becomes 1.0, both in range.
            assert dtype == F16
            BCE_CALLS[name](bad_one, good)
            continue
        # torch's message, then where: the index and the value (as computed: float16 in float32).
        text = ref.value_text(bad_one[2], ref.compute_dtype(dtype))
        for arg, call_args in (("input", (bad_one, good)), ("target", (good, bad_one))):
            message = f"all elements of {arg} should be between 0 and 1; {arg}[2] is {text}"
            with pytest.raises(ValueError, match=exact(message)):
                BCE_CALLS[name](*call_args)


def test_range_error_names_the_first_bad_element_in_c_order() -> None:
    """torch checks input then target, element by element, in logical (C) order."""
    x = np.array([[0.5, 0.5], [2.0, 0.5]])
    y = np.array([[0.5, -1.0], [0.5, 0.5]])
    bce = bcers.binary_cross_entropy
    with pytest.raises(ValueError, match=r"of target should .*; target\[0, 1\] is -1.0$"):
        bce(x, y)  # y[0, 1] comes before x[1, 0]
    with pytest.raises(ValueError, match=r"of input should .*; input\[0, 1\] is 2.0$"):
        bce(x.T, y.T)  # in the transposed arrays, x.T[0, 1] comes before y.T[1, 0]
    with pytest.raises(ValueError, match=r"of input should .*; input\[0, 1\] is 2.0$"):
        bce(np.asfortranarray(x.T), np.asfortranarray(y.T))  # whatever the memory order
    # The same element: input first.
    with pytest.raises(ValueError, match=r"of input should .*; input\[1\] is NaN$"):
        bce(np.array([0.5, np.nan]), np.array([0.5, np.nan]))
    # Large arrays, with the bad elements far apart (in different chunks and threads).
    x = np.full(200_000, 0.5)
    y = np.full(200_000, 0.5)
    x[150_000] = 1.5
    y[20] = -0.5
    with pytest.raises(ValueError, match=r"of target should .*; target\[20\] is -0.5$"):
        bce(x, y, reduction="sum")
    with pytest.raises(ValueError, match=r"of input should .*; input\[49999\] is 1.5$"):
        bce(x[::-1], y[::-1], reduction="sum")


def test_logits_targets_are_not_range_checked() -> None:
    x = np.array([3.0, 1.0, -1.0])
    y = np.array([2.0, -1.5, np.nan])
    out = bcers.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert out[0] == pytest.approx(-2.95141268, rel=1e-7)  # torch's (float32) value for (3, 2)
    assert np.isnan(out[2])


# ---------------------------------------------------------------------------------------------
# reduction and the legacy arguments.


def reduction_calls(reduction: Any) -> list[Callable[[], Any]]:
    x = np.full(3, 0.5, np.float32)
    return [
        lambda: bcers.binary_cross_entropy(x, x, reduction=reduction),
        lambda: bcers.binary_cross_entropy_with_logits(x, x, reduction=reduction),
        lambda: bcers.binary_cross_entropy_backward(None, x, x, reduction=reduction),
        lambda: bcers.binary_cross_entropy_with_logits_backward(None, x, x, reduction=reduction),
        lambda: bcers.binary_cross_entropy_value_and_grad(x, x, reduction=reduction),
        lambda: bcers.binary_cross_entropy_with_logits_value_and_grad(x, x, reduction=reduction),
        lambda: bcers.BCELoss(reduction=reduction)(x, x),
        lambda: bcers.BCEWithLogitsLoss(reduction=reduction)(x, x),
        lambda: bcers.BCELoss(reduction=reduction).backward(x, x),
        lambda: bcers.BCEWithLogitsLoss(reduction=reduction).value_and_grad(x, x),
        # The sigmoid focal loss.
        lambda: bcers.sigmoid_focal_loss(x, x, reduction=reduction),
        lambda: bcers.sigmoid_focal_loss_backward(None, x, x, reduction=reduction),
        lambda: bcers.sigmoid_focal_loss_value_and_grad(x, x, reduction=reduction),
        lambda: bcers.SigmoidFocalLoss(reduction=reduction)(x, x),
        lambda: bcers.SigmoidFocalLoss(reduction=reduction).backward(x, x),
        lambda: bcers.SigmoidFocalLoss(reduction=reduction).value_and_grad(x, x),
    ]


@pytest.mark.parametrize("reduction", ["avg", "Mean", "", "none ", "elementwise_sum"])
def test_unknown_reduction(reduction: str) -> None:
    for fn in reduction_calls(reduction):
        with pytest.raises(
            ValueError, match=exact(f"{reduction} is not a valid value for reduction")
        ):
            fn()


@pytest.mark.parametrize("reduction", [None, 1, 1.5, b"mean", ["mean"]], ids=repr)
def test_non_str_reduction(reduction: Any) -> None:
    """As torch (``_Reduction.get_enum``): a ValueError naming the value.

    The brief asked for a TypeError; bcers follows torch here (reported to the lead).
    """
    for fn in reduction_calls(reduction):
        with pytest.raises(
            ValueError, match=exact(f"{reduction} is not a valid value for reduction")
        ):
            fn()


@pytest.mark.parametrize("reduction", ["avg", None, 1.5, b"sum"], ids=repr)
def test_focal_class_checks_reduction_at_construction(reduction: Any) -> None:
    with pytest.raises(ValueError, match=exact(f"{reduction} is not a valid value for reduction")):
        bcers.SigmoidFocalLoss(reduction=reduction)


def test_focal_loss_has_no_legacy_arguments() -> None:
    x = np.full(3, 0.5, np.float32)
    for kw in ({"size_average": True}, {"reduce": False}):
        (name,) = kw
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
            bcers.sigmoid_focal_loss(x, x, **kw)
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
            bcers.SigmoidFocalLoss(**kw)


@pytest.mark.parametrize("kind", ["np.str_", "str-subclass"])
def test_str_subclass_reduction(kind: str) -> None:
    class Name(str):
        pass

    value = np.str_("sum") if kind == "np.str_" else Name("sum")
    x = np.array([0.2, 0.4, 0.6], np.float32)
    y = np.array([0.0, 1.0, 1.0], np.float32)
    assert bcers.binary_cross_entropy(x, y, reduction=value) == bcers.binary_cross_entropy(
        x, y, reduction="sum"
    )


def test_elementwise_mean_is_mean_with_a_warning() -> None:
    message = "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead."
    x = np.array([0.2, 0.4, 0.6], np.float32)
    y = np.array([0.0, 1.0, 1.0], np.float32)
    mean = bcers.binary_cross_entropy(x, y)
    for fn in reduction_calls("elementwise_mean"):
        with pytest.warns(UserWarning, match=exact(message)) as record:
            fn()
        assert len(record) == 1
        assert record[0].filename == __file__  # attributed to the caller
    with pytest.warns(UserWarning, match=exact(message)):
        assert bcers.binary_cross_entropy(x, y, reduction="elementwise_mean") == mean


LEGACY = [
    # size_average, reduce, the reduction they mean
    (None, True, "mean"),
    (True, None, "mean"),
    (True, True, "mean"),
    (False, None, "sum"),
    (False, True, "sum"),
    (None, False, "none"),
    (True, False, "none"),
    (False, False, "none"),
]


@pytest.mark.parametrize(("size_average", "reduce", "meaning"), LEGACY)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "avg"])
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
def test_legacy_arguments_override_reduction_with_a_warning(
    logits: bool, reduction: str, size_average: Any, reduce: Any, meaning: str
) -> None:
    message = (
        "size_average and reduce args will be deprecated, please use "
        f"reduction='{meaning}' instead."
    )
    x = np.array([0.2, 0.4, 0.6], np.float32)
    y = np.array([0.0, 1.0, 1.0], np.float32)
    fn: Any = bcers.binary_cross_entropy_with_logits if logits else bcers.binary_cross_entropy
    cls: Any = bcers.BCEWithLogitsLoss if logits else bcers.BCELoss
    expected = fn(x, y, reduction=meaning)
    with pytest.warns(UserWarning, match=exact(message)) as record:
        got = fn(x, y, size_average=size_average, reduce=reduce, reduction=reduction)
    assert len(record) == 1
    assert record[0].filename == __file__
    np.testing.assert_array_equal(got, expected)
    with pytest.warns(UserWarning, match=exact(message)) as record:
        loss_fn = cls(size_average=size_average, reduce=reduce, reduction=reduction)
    assert len(record) == 1
    assert record[0].filename == __file__
    assert loss_fn.reduction == meaning
    np.testing.assert_array_equal(loss_fn(x, y), expected)


def test_no_warning_without_legacy_arguments() -> None:
    x = np.array([0.2, 0.4], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for r in REDUCTIONS:
            bcers.binary_cross_entropy(x, x, reduction=r)
            bcers.binary_cross_entropy_with_logits(x, x, reduction=r)
            bcers.BCELoss(size_average=None, reduce=None, reduction=r)(x, x)


# ---------------------------------------------------------------------------------------------
# dtypes.

NOT_REAL = {
    "complex": np.array([0.5 + 0j, 0.5]),
    "str": np.array(["0.5", "0.5"]),
    "bytes": np.array([b"0.5", b"0.5"]),
    "object": np.array([0.5, None], dtype=object),
    "datetime": np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"),
    "timedelta": np.array([1, 2], dtype="timedelta64[s]"),
}


@pytest.mark.parametrize("kind", sorted(NOT_REAL))
def test_non_real_input_is_a_type_error(kind: str) -> None:
    bad = NOT_REAL[kind]
    message = f"input must be an array of float16, float32 or float64, got dtype {bad.dtype}"
    for fn in entry_points(False).values():
        with pytest.raises(TypeError, match=exact(message)):
            fn(bad, np.full(2, 0.5))
    for fn in entry_points(True).values():
        with pytest.raises(TypeError, match=exact(message)):
            fn(bad, np.full(2, 0.5))


@pytest.mark.parametrize("kind", sorted(NOT_REAL))
@pytest.mark.parametrize("arg", ["target", "weight", "pos_weight", "grad_output"])
def test_non_real_operand_is_a_type_error_naming_it(arg: str, kind: str) -> None:
    bad = NOT_REAL[kind]
    message = f"{arg} must be an array of real numbers or booleans, got dtype {bad.dtype}"
    x = np.full(2, 0.5, np.float32)
    logits = bcers.binary_cross_entropy_with_logits
    calls: list[Callable[[], Any]]
    if arg == "target":
        calls = [lambda: bcers.binary_cross_entropy(x, bad), lambda: logits(x, bad)]
    elif arg == "grad_output":
        calls = [
            lambda: bcers.binary_cross_entropy_backward(bad, x, x, reduction="none"),
            lambda: bcers.binary_cross_entropy_with_logits_backward(bad, x, x, reduction="none"),
        ]
    elif arg == "weight":
        calls = [
            lambda: bcers.binary_cross_entropy(x, x, weight=bad),
            lambda: logits(x, x, weight=bad),
            lambda: bcers.BCELoss(weight=bad)(x, x),
        ]
    else:
        calls = [
            lambda: logits(x, x, pos_weight=bad),
            lambda: bcers.BCEWithLogitsLoss(pos_weight=bad).value_and_grad(x, x),
        ]
    for fn in calls:
        with pytest.raises(TypeError, match=exact(message)):
            fn()


@pytest.mark.parametrize("kind", sorted(NOT_REAL))
def test_focal_non_real_arguments_are_type_errors(kind: str) -> None:
    bad = NOT_REAL[kind]
    x = np.full(2, 0.5, np.float32)
    message = f"input must be an array of float16, float32 or float64, got dtype {bad.dtype}"
    for fn in FOCAL_CALLS.values():
        with pytest.raises(TypeError, match=exact(message)):
            fn(bad, x)
    calls: dict[str, list[Callable[[], Any]]] = {
        "target": [
            lambda: bcers.sigmoid_focal_loss(x, bad),
            lambda: bcers.SigmoidFocalLoss().value_and_grad(x, bad),
        ],
        "weight": [
            lambda: bcers.sigmoid_focal_loss(x, x, weight=bad),
            lambda: bcers.SigmoidFocalLoss(weight=bad)(x, x),
        ],
        "grad_output": [lambda: bcers.sigmoid_focal_loss_backward(bad, x, x)],
    }
    for arg, fns in calls.items():
        message = f"{arg} must be an array of real numbers or booleans, got dtype {bad.dtype}"
        for fn in fns:
            with pytest.raises(TypeError, match=exact(message)):
                fn()


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64, bool, np.longdouble], ids=str
)
def test_focal_non_float_input_is_a_type_error(dtype: Any) -> None:
    bad = np.array([0, 1], dtype=dtype)
    message = f"input must be an array of float16, float32 or float64, got dtype {bad.dtype}"
    if bad.dtype in (F32, F64):
        pytest.skip("longdouble is float64 on this platform")
    for fn in FOCAL_CALLS.values():
        with pytest.raises(TypeError, match=exact(message)):
            fn(bad, np.array([0.0, 1.0]))


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64, bool, np.longdouble], ids=str
)
def test_non_float_input_is_a_type_error(dtype: Any) -> None:
    bad = np.array([0, 1], dtype=dtype)
    message = f"input must be an array of float16, float32 or float64, got dtype {bad.dtype}"
    if bad.dtype in (F32, F64):
        pytest.skip("longdouble is float64 on this platform")
    for fn in list(entry_points(False).values()) + list(entry_points(True).values()):
        with pytest.raises(TypeError, match=exact(message)):
            fn(bad, np.array([0.0, 1.0]))


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint16, bool, np.float16, np.float64])
def test_real_operands_are_cast_to_the_input_dtype(dtype: Any) -> None:
    x = np.array([0.25, 0.5, 0.75], np.float32)
    y = np.array([0, 1, 1], dtype=dtype)
    w = np.array([1, 0, 2], dtype=dtype) if dtype is not bool else np.array([1, 0, 1], bool)
    for logits, fn in (
        (False, bcers.binary_cross_entropy),
        (True, bcers.binary_cross_entropy_with_logits),
    ):
        got = fn(x, y, weight=w, reduction="none")
        want = fn(x, y.astype(np.float32), weight=w.astype(np.float32), reduction="none")
        assert got.dtype == F32
        np.testing.assert_array_equal(got, want)
        del logits


def test_ragged_nested_lists_are_refused() -> None:
    ragged = [[0.5], [0.5, 0.25]]
    for name in ("input", "target"):
        pattern = "^" + re.escape(f"{name} could not be converted to an array: ")
        args = (ragged, [0.5, 0.5]) if name == "input" else ([[0.5], [0.5]], ragged)
        with pytest.raises(ValueError, match=pattern):
            bcers.binary_cross_entropy(*args)
        with pytest.raises(ValueError, match=pattern):
            bcers.binary_cross_entropy_with_logits(*args)
    with pytest.raises(ValueError, match="^" + re.escape("weight could not be converted")):
        bcers.binary_cross_entropy([0.5, 0.5], [0.5, 0.5], weight=ragged)


def test_python_numbers_and_lists_are_float64_arrays() -> None:
    out = bcers.binary_cross_entropy([0.2, 0.4, 0.6], [0, 1, 1], weight=[1, 2, 3])
    assert isinstance(out, np.float64)
    assert out == pytest.approx(1.19606721, rel=1e-7)  # torch's (float32) value
    scalar = bcers.binary_cross_entropy_with_logits(0.5, 1.0, reduction="none")
    assert isinstance(scalar, np.ndarray)
    assert scalar.shape == ()
    assert scalar.dtype == F64


# ---------------------------------------------------------------------------------------------
# grad_output.


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(1,), (3,), (1, 1)], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
def test_grad_output_of_a_reduction_must_be_a_scalar(
    logits: bool, shape: tuple[int, ...], reduction: str
) -> None:
    x = np.full(3, 0.5, np.float32)
    message = f"grad_output must be a scalar for reduction='{reduction}', got shape {shape}"
    fn: Any = (
        bcers.binary_cross_entropy_with_logits_backward
        if logits
        else bcers.binary_cross_entropy_backward
    )
    with pytest.raises(ValueError, match=exact(message)):
        fn(np.ones(shape), x, x, reduction=reduction)
    with pytest.raises(ValueError, match=exact(message)):
        fn(np.ones(shape).tolist(), x, x, reduction=reduction)
    # Scalars of every kind are fine.
    for g in (None, 2, 2.0, np.float32(2), np.array(2.0), np.array(2, np.int8), True):
        fn(g, x, x, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(1,), (3,), (1, 1)], ids=str)
def test_focal_grad_output_of_a_reduction_must_be_a_scalar(
    shape: tuple[int, ...], reduction: str
) -> None:
    x = np.full(3, 0.5, np.float32)
    message = f"grad_output must be a scalar for reduction='{reduction}', got shape {shape}"
    cls = bcers.SigmoidFocalLoss(reduction=reduction)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=exact(message)):
        bcers.sigmoid_focal_loss_backward(np.ones(shape), x, x, reduction=reduction)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=exact(message)):
        cls.backward(x, x, np.ones(shape).tolist())
    for g in (None, 2, 2.0, np.float32(2), np.array(2.0), np.array(2, np.int8), True):
        bcers.sigmoid_focal_loss_backward(g, x, x, reduction=reduction)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(2,), (1, 2, 3), (3, 3), (2, 2, 3), (0,)], ids=str)
def test_focal_grad_output_without_reduction_must_broadcast(shape: tuple[int, ...]) -> None:
    x = np.full((2, 3), 0.5, np.float32)
    message = broadcast_message("grad_output", str(shape), "(2, 3)")
    with pytest.raises(ValueError, match=exact(message)):
        bcers.sigmoid_focal_loss_backward(np.ones(shape), x, x)
    with pytest.raises(ValueError, match=exact(message)):
        bcers.SigmoidFocalLoss(reduction="none").backward(x, x, np.ones(shape))
    for ok in [(), (3,), (1, 3), (2, 1), (2, 3)]:
        assert bcers.sigmoid_focal_loss_backward(np.ones(ok), x, x).shape == (2, 3)


@pytest.mark.parametrize("shape", [(2,), (1, 2, 3), (3, 3), (2, 2, 3), (0,)], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
def test_grad_output_without_reduction_must_broadcast(logits: bool, shape: tuple[int, ...]) -> None:
    x = np.full((2, 3), 0.5, np.float32)
    message = broadcast_message("grad_output", str(shape), "(2, 3)")
    if logits:
        fn: Any = bcers.binary_cross_entropy_with_logits_backward
        cls: Any = bcers.BCEWithLogitsLoss(reduction="none")
    else:
        fn, cls = bcers.binary_cross_entropy_backward, bcers.BCELoss(reduction="none")
    with pytest.raises(ValueError, match=exact(message)):
        fn(np.ones(shape), x, x, reduction="none")
    with pytest.raises(ValueError, match=exact(message)):
        cls.backward(x, x, np.ones(shape))
    for ok in [(), (3,), (1, 3), (2, 1), (2, 3)]:
        assert fn(np.ones(ok), x, x, reduction="none").shape == (2, 3)


# ---------------------------------------------------------------------------------------------
# Threads.


@pytest.mark.parametrize("n", [0, -1, -(2**40), 1025, 10**9, 2**63, 2**100])
def test_set_num_threads_refuses_counts_outside_its_range(n: int) -> None:
    before = bcers.get_num_threads()
    message = f"the number of threads must be from 1 to 1024, got {n}"
    with pytest.raises(ValueError, match=exact(message)):
        bcers.set_num_threads(n)
    assert bcers.get_num_threads() == before
    assert bcers.MAX_THREADS == 1024


@pytest.mark.parametrize(
    ("n", "kind"), [(1.5, "float"), ("2", "str"), (True, "bool"), (None, "NoneType")]
)
def test_set_num_threads_refuses_non_integers(n: Any, kind: str) -> None:
    message = f"set_num_threads() argument 'n' must be an int, not {kind}"
    with pytest.raises(TypeError, match=exact(message)):
        bcers.set_num_threads(n)


def test_set_num_threads_takes_integer_likes() -> None:
    before = bcers.get_num_threads()
    try:
        bcers.set_num_threads(np.int64(3))
        assert bcers.get_num_threads() == 3
    finally:
        bcers.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Empty and 0-d inputs.


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0, 2)], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
def test_empty_inputs(logits: bool, shape: tuple[int, ...], dtype: np.dtype) -> None:
    x = np.zeros(shape, dtype)
    w = np.ones(shape[-1:], np.float32)
    kw: dict[str, Any] = {"weight": w, "pos_weight": w} if logits else {"weight": w}
    if logits:
        fwd: Any = bcers.binary_cross_entropy_with_logits
        bwd: Any = bcers.binary_cross_entropy_with_logits_backward
        vag: Any = bcers.binary_cross_entropy_with_logits_value_and_grad
    else:
        fwd, bwd = bcers.binary_cross_entropy, bcers.binary_cross_entropy_backward
        vag = bcers.binary_cross_entropy_value_and_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" or division warning
        mean = fwd(x, x, reduction="mean", **kw)
        total = fwd(x, x, reduction="sum", **kw)
        none = fwd(x, x, reduction="none", **kw)
        assert isinstance(mean, np.floating)
        assert mean.dtype == dtype
        assert np.isnan(mean)
        assert isinstance(total, np.floating)
        assert total.dtype == dtype
        assert total == 0
        assert isinstance(none, np.ndarray)
        assert none.dtype == dtype
        assert none.shape == shape
        for r in REDUCTIONS:
            g = bwd(None, x, x, reduction=r, **kw)
            assert isinstance(g, np.ndarray)
            assert g.dtype == dtype
            assert g.shape == shape
            loss, g = vag(x, x, reduction=r, **kw)
            assert g.dtype == dtype
            assert g.shape == shape
            np.testing.assert_array_equal(loss, {"mean": mean, "sum": total, "none": none}[r])


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
def test_zero_dimensional_inputs(logits: bool, dtype: np.dtype) -> None:
    x, y = np.array(0.25, dtype), np.array(1.0, dtype)
    w = np.array(2.0, np.float32)
    if logits:
        fwd: Any = bcers.binary_cross_entropy_with_logits
        bwd: Any = bcers.binary_cross_entropy_with_logits_backward
        vag: Any = bcers.binary_cross_entropy_with_logits_value_and_grad
        expect: Any = ref.bce_with_logits
        expect_grad: Any = ref.bce_with_logits_backward
    else:
        fwd, bwd = bcers.binary_cross_entropy, bcers.binary_cross_entropy_backward
        vag = bcers.binary_cross_entropy_value_and_grad
        expect, expect_grad = ref.bce, ref.bce_backward
    for r in REDUCTIONS:
        out = fwd(x, y, weight=w, reduction=r)
        ref.assert_matches(out, expect(x, y, weight=w, reduction=r))
        if r == "none":
            assert isinstance(out, np.ndarray)
            assert out.shape == ()
        grad = bwd(np.array(3.0), x, y, weight=w, reduction=r)
        assert isinstance(grad, np.ndarray)
        assert grad.shape == ()
        ref.assert_matches(grad, expect_grad(np.array(3.0), x, y, weight=w, reduction=r))
        loss, grad = vag(x, y, weight=w, reduction=r)
        np.testing.assert_array_equal(loss, out)
        assert grad.shape == ()


# ---------------------------------------------------------------------------------------------
# Byte order and alignment: the right answer, not an error.


def _misaligned(a: np.ndarray) -> np.ndarray:
    buf = np.zeros(a.nbytes + 1, np.uint8)
    b = buf[1:].view(a.dtype).reshape(a.shape)
    b[...] = a
    assert not b.flags.aligned
    return b


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
@pytest.mark.parametrize("how", ["big-endian", "misaligned", "both"])
def test_big_endian_and_misaligned_arrays(how: str, logits: bool, dtype: np.dtype) -> None:
    rng = np.random.default_rng(7)
    shape = (5, 40)
    x = (rng.normal(0, 3, shape) if logits else rng.uniform(0, 1, shape)).astype(dtype)
    y = rng.uniform(0, 1, shape).astype(dtype)
    w = rng.uniform(0, 2, shape[-1:]).astype(dtype)
    g = rng.normal(0, 1, shape).astype(dtype)

    def odd(a: np.ndarray) -> np.ndarray:
        if how in ("big-endian", "both"):
            a = a.astype(a.dtype.newbyteorder(">"))
        if how in ("misaligned", "both"):
            a = _misaligned(a)
        return a

    native = {"input": x, "target": y, "weight": w, "grad_output": g}
    weird = {k: odd(v) for k, v in native.items()}
    for o in (native, weird):
        if logits:
            o["pos_weight"] = o["weight"]
    calls = Calls(logits)
    for r in REDUCTIONS:
        assert_identical(calls.forward(weird, r), calls.forward(native, r))
        for a, b in zip(calls.value_and_grad(weird, r), calls.value_and_grad(native, r)):
            assert_identical(a, b)
        gw = weird["grad_output"] if r == "none" else None
        gn = native["grad_output"] if r == "none" else None
        assert_identical(calls.backward(weird, gw, r), calls.backward(native, gn, r))
    # The result is native-endian.
    assert calls.forward(weird, "none").dtype == dtype


# ---------------------------------------------------------------------------------------------
# float16 results that overflow.


def test_float16_overflow_is_silent() -> None:
    x, y = np.zeros(3, np.float16), np.ones(3, np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # (0, 1): the gradient is -1e12 in float32, -inf in float16 (as torch's).
        grad = bcers.binary_cross_entropy_backward(None, x, y, reduction="none")
        assert np.all(grad == -np.inf)
        # 3000 elements of loss 100 sum to 3e5 > 65504.
        big = np.zeros(3000, np.float16)
        total = bcers.binary_cross_entropy(big, np.ones(3000, np.float16), reduction="sum")
        assert total == np.inf


def test_float16_results_are_computed_in_float32() -> None:
    x, y = np.zeros(2, np.float16), np.array([0.0, 1.0], np.float16)
    grad = bcers.binary_cross_entropy_backward(None, x, y, reduction="none")
    # torch, computing in float16, gives NaN at (0, 0): its EPS underflows to 0.
    assert grad.dtype == F16
    assert grad[0] == 0
    assert grad[1] == -np.inf
    mean = bcers.binary_cross_entropy_with_logits(
        np.zeros(200_000, np.float16), np.zeros(200_000, np.float16)
    )
    assert mean.dtype == F16
    assert mean == np.float16(np.log(2))


# ---------------------------------------------------------------------------------------------
# The classes.


def test_class_repr_and_attributes() -> None:
    assert repr(bcers.BCELoss()) == "BCELoss()"
    assert repr(bcers.BCEWithLogitsLoss()) == "BCEWithLogitsLoss()"
    assert repr(bcers.BCELoss(weight=[1.0, 2.0], reduction="sum")) == "BCELoss()"
    assert (
        repr(bcers.BCEWithLogitsLoss(pos_weight=[2.0], reduction="none")) == "BCEWithLogitsLoss()"
    )

    loss = bcers.BCELoss()
    assert loss.weight is None
    assert loss.reduction == "mean"
    assert not hasattr(loss, "pos_weight")
    loss = bcers.BCELoss(weight=[1.0, 2.0], reduction="sum")
    assert isinstance(loss.weight, np.ndarray)
    np.testing.assert_array_equal(loss.weight, [1.0, 2.0])
    assert loss.reduction == "sum"

    logits = bcers.BCEWithLogitsLoss()
    assert logits.weight is None
    assert logits.pos_weight is None
    assert logits.reduction == "mean"
    logits = bcers.BCEWithLogitsLoss(weight=[1.0], pos_weight=np.array([3.0]), reduction="none")
    np.testing.assert_array_equal(logits.weight, [1.0])
    np.testing.assert_array_equal(logits.pos_weight, [3.0])
    assert logits.reduction == "none"


def test_bce_loss_has_no_pos_weight() -> None:
    with pytest.raises(TypeError, match="pos_weight"):
        bcers.BCELoss(pos_weight=np.ones(2))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="pos_weight"):
        bcers.binary_cross_entropy(np.ones(2) / 2, np.ones(2) / 2, pos_weight=np.ones(2))  # type: ignore[call-arg]


def test_class_attributes_are_used_at_call_time() -> None:
    x = np.array([0.2, 0.4, 0.6])
    y = np.array([0.0, 1.0, 1.0])
    loss = bcers.BCELoss()
    loss.weight = np.array([1.0, 2.0, 3.0])
    assert loss(x, y) == pytest.approx(1.19606721, rel=1e-7)  # torch's (float32) value
    loss.reduction = "avg"  # type: ignore[assignment]
    with pytest.raises(ValueError, match=exact("avg is not a valid value for reduction")):
        loss(x, y)
