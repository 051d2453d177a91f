"""Property tests: bcers against the float64 NumPy reference in ``reference.py``.

Each example draws a loss, a dtype, a shape (small ones, and sizes around the 16-element SIMD
lanes, the 256/1024-element kernel blocks, the 16384-element chunks and the 65536-element
threshold of the thread pool), a memory layout per operand, broadcast shapes for the weights
and values with their edge cases. Large arrays come from a NumPy generator seeded by
hypothesis, with hypothesis-drawn special values planted at hypothesis-drawn positions, so that
examples stay cheap to draw and still shrink.

The tolerances are derived in ``reference.py`` (module docstring): ``rtol`` 1e-5 (float32) /
1e-12 (float64) of the magnitude of the terms of each element, the final rounding to the
result dtype applied exactly, and the worst-case float64 summation error for the reductions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import reference as ref
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bcers

F16, F32, F64 = ref.F16, ref.F32, ref.F64
FLOAT_DTYPES = (F16, F32, F64)
REDUCTIONS = ref.REDUCTIONS

# Sizes where the implementation changes gear: 16 lanes of the sums, 256-element sub-blocks,
# 1024-element kernel blocks, 16384-element chunks (rows shorter or longer than a chunk),
# 65536 elements and up run on the thread pool.
BOUNDARY_SHAPES = [
    (15,),
    (16,),
    (17,),
    (255,),
    (257,),
    (1023,),
    (1024,),
    (1025,),
    (31, 33),
    (16383,),
    (16384,),
    (16385,),
    (2, 8193),
    (8193, 2),
    (3, 5462),
    (129, 130),
    (2, 3, 2731),
    (1, 16385, 1),
    (4, 3, 5, 275),
    (2, 2, 16390),
    (70001,),
    (3, 23339),
    (40, 1700),
]

LAYOUTS = (
    "C",
    "F",
    "strided",
    "reversed",
    "transposed",
    "broadcast",
    "readonly",
    "misaligned",
    "bigendian",
)

# ---------------------------------------------------------------------------------------------
# Values. Each role has families of bulk values (NumPy generator) and a hypothesis strategy of
# special values planted among them.


def _mixed(families: dict[str, Callable[[Any, int], np.ndarray]]):
    def mixed(rng: Any, n: int) -> np.ndarray:
        parts = np.stack([f(rng, n) for name, f in families.items() if name != "mixed"])
        return parts[rng.integers(0, len(parts), n), np.arange(n)]

    return mixed


def _families(**families: Callable[[Any, int], np.ndarray]):
    families["mixed"] = _mixed(families)
    return families


VALUES: dict[str, dict[str, Callable[[Any, int], np.ndarray]]] = {
    "bce_x": _families(
        uniform=lambda r, n: r.uniform(0.0, 1.0, n),
        tiny=lambda r, n: 10.0 ** r.uniform(-46.0, 0.0, n),
        near_one=lambda r, n: 1.0 - 10.0 ** r.uniform(-17.0, 0.0, n),
        exact=lambda r, n: r.choice([0.0, 1.0, 0.5, 0.25], n),
    ),
    "bce_y": _families(
        uniform=lambda r, n: r.uniform(0.0, 1.0, n),
        binary=lambda r, n: r.choice([0.0, 1.0], n),
    ),
    "logit_x": _families(
        normal=lambda r, n: r.normal(0.0, 3.0, n),
        wide=lambda r, n: r.normal(0.0, 40.0, n),
        huge=lambda r, n: r.uniform(-1e4, 1e4, n),
        special=lambda r, n: r.choice(
            [0.0, -0.0, np.inf, -np.inf, np.nan, 20.0, -20.0, 88.0, -88.0, 100.0, -1e-30], n
        ),
    ),
    "logit_y": _families(
        uniform=lambda r, n: r.uniform(0.0, 1.0, n),
        binary=lambda r, n: r.choice([0.0, 1.0], n),
        outside=lambda r, n: r.uniform(-2.0, 3.0, n),
    ),
    # The focal loss's targets: in [0, 1] (what it is defined for; not checked by bcers).
    "focal_y": _families(
        uniform=lambda r, n: r.uniform(0.0, 1.0, n),
        binary=lambda r, n: r.choice([0.0, 1.0], n),
        near_binary=lambda r, n: np.abs(
            r.choice([0.0, 1.0], n) - 10.0 ** r.uniform(-40.0, -1.0, n)
        ),
        exact=lambda r, n: r.choice([0.0, 1.0, 0.5, 0.25], n),
    ),
    "weight": _families(
        signed=lambda r, n: r.uniform(-3.0, 3.0, n),
        positive=lambda r, n: r.uniform(0.0, 3.0, n),
        ints=lambda r, n: r.integers(-2, 4, n).astype(np.float64),
    ),
    "pos_weight": _families(
        positive=lambda r, n: r.uniform(0.0, 5.0, n),
        signed=lambda r, n: r.uniform(-2.0, 5.0, n),
        ints=lambda r, n: r.integers(0, 5, n).astype(np.float64),
    ),
    "grad": _families(
        normal=lambda r, n: r.normal(0.0, 2.0, n),
        ints=lambda r, n: r.integers(-2, 4, n).astype(np.float64),
    ),
}

SPECIALS = {
    "bce_x": st.floats(0.0, 1.0)
    | st.sampled_from([0.0, 1.0, 1e-45, 1e-40, 3.7e-44, 1e-38, 1e-8, 1.0 - 2.0**-24]),
    "bce_y": st.floats(0.0, 1.0),
    "logit_x": st.floats(-1e6, 1e6)
    | st.sampled_from([np.inf, -np.inf, np.nan, 0.0, -0.0, 20.0, -20.0, 88.7, -104.0]),
    "logit_y": st.floats(-2.0, 3.0) | st.sampled_from([0.0, 1.0]),
    "focal_y": st.floats(0.0, 1.0)
    | st.sampled_from([0.0, 1.0, 0.5, 1e-30, 1e-40, 1e-300, 1.0 - 2.0**-24, 1.0 - 2.0**-53]),
    "weight": st.floats(-3.0, 3.0),
    "pos_weight": st.floats(-2.0, 5.0),
    "grad": st.floats(-4.0, 4.0),
}

# Which dtypes an operand may come in (besides the input's own): integer and bool operands
# only where the role's values are integers.
INTEGER_ROLES = {
    "bce_y": (0, 1),
    "logit_y": (-2, 3),
    "focal_y": (0, 1),
    "weight": (-2, 3),
    "pos_weight": (0, 4),
}

# The focal loss's parameters: alpha off (negative), at its ends and inside; gamma 0 (BCE with
# logits times alpha_t), below 1 (where torchvision's gradient is NaN at large logits), above.
FOCAL_ALPHAS = (-1.0, 0.0, 0.25, 0.5, 1.0)
FOCAL_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
FOCAL_PARAMETERS = st.tuples(st.sampled_from(FOCAL_ALPHAS), st.sampled_from(FOCAL_GAMMAS))


def _apply_layout(draw: Any, a: np.ndarray, layout: str) -> np.ndarray:
    """The same logical values as ``a`` in the memory layout ``layout``."""
    if a.ndim == 0 and layout in ("F", "strided", "reversed", "transposed"):
        return a.copy()  # a 0-d array has one layout
    if layout == "C":
        return np.array(a, order="C")
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        steps = [draw(st.integers(1, 3)) for _ in a.shape]
        big = np.zeros(tuple(n * k + 1 for n, k in zip(a.shape, steps)), a.dtype)
        view = big[tuple(slice(1, None, k) for k in steps)][tuple(slice(0, n) for n in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":
        flips = [draw(st.booleans()) for _ in a.shape]
        index = tuple(slice(None, None, -1) if f else slice(None) for f in flips)
        return np.array(a[index], order="C")[index]
    if layout == "transposed":
        perm = draw(st.permutations(range(a.ndim)))
        return np.array(a.transpose(perm), order="C").transpose(np.argsort(perm))
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "misaligned":
        if a.dtype.itemsize == 1:
            return a.copy()
        buf = np.zeros(a.nbytes + 1, np.uint8)
        b = buf[1:].view(a.dtype).reshape(a.shape)
        b[...] = a
        return b
    if layout == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    raise AssertionError(layout)


@dataclass
class Operand:
    """One drawn operand: the array and how it was made (for the falsifying example)."""

    array: Any
    layout: str
    family: str

    def __repr__(self) -> str:
        a = np.asarray(self.array)
        head = f"<{a.dtype} {a.shape} {self.layout} {self.family}"
        if a.size <= 24:
            return f"{head} {a.tolist()!r}>"
        return f"{head} strides={a.strides}>"


@st.composite
def operands(
    draw: Any,
    rng: Any,
    role: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    other_dtypes: bool = True,
    python: bool = False,
) -> Operand:
    """An operand of ``shape`` for ``role``: values, then a dtype, then a layout."""
    layout = draw(st.sampled_from(LAYOUTS))
    gen_shape = shape
    if layout == "broadcast":
        gen_shape = tuple(1 if draw(st.booleans()) else n for n in shape)
    n = math.prod(gen_shape)
    family = draw(st.sampled_from(sorted(VALUES[role])))
    values = VALUES[role][family](rng, n)
    if n:
        for _ in range(draw(st.integers(0, min(n, 6)))):
            values[draw(st.integers(0, n - 1))] = draw(SPECIALS[role])
    values = values.reshape(gen_shape)

    choices = [dtype]
    if other_dtypes:
        choices += [F64, F32, F16]
        if role in INTEGER_ROLES:
            choices += [np.dtype(np.int64), np.dtype(np.int8), np.dtype(np.uint8), np.dtype(bool)]
    op_dtype = draw(st.sampled_from(choices))
    if op_dtype.kind in "biu":
        lo, hi = INTEGER_ROLES[role]
        values = np.clip(np.nan_to_num(np.round(values)), lo, hi)
        if op_dtype.kind == "b":
            values = values != 0
        elif op_dtype.kind == "u":
            values = np.abs(values)
    with np.errstate(all="ignore"):
        a = np.asarray(values).astype(op_dtype)

    a = np.broadcast_to(a, shape) if layout == "broadcast" else _apply_layout(draw, a, layout)
    if python and 0 < a.size <= 8 and draw(st.integers(0, 9)) == 0:
        # A Python scalar or nested list (bcers converts it with np.asarray).
        return Operand(a.tolist(), "python", family)
    return Operand(a, layout, family)


@st.composite
def shapes(draw: Any) -> tuple[int, ...]:
    if draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(BOUNDARY_SHAPES))
    ndim = draw(st.integers(0, 4))
    # Mostly non-empty: 0 is drawn for about one axis in twelve.
    dim = st.integers(0, 11).map(lambda k: 0 if k == 0 else (k - 1) % 6 + 1)
    return tuple(draw(dim) for _ in range(ndim))


@st.composite
def broadcast_shapes(draw: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts to ``shape`` without enlarging it: (), (C,), (1, C), (N, 1)..."""
    drop = draw(st.integers(0, len(shape)))
    return tuple(1 if draw(st.booleans()) else n for n in shape[drop:])


@dataclass
class Case:
    logits: bool
    dtype: np.dtype
    reduction: str
    x: Operand
    y: Operand
    w: Operand | None
    pw: Operand | None
    g: Operand | None = field(default=None)
    # (alpha, gamma) of a sigmoid focal loss case (its input is logits: ``logits`` is True).
    focal: tuple[float, float] | None = field(default=None)

    @property
    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"weight": None if self.w is None else self.w.array}
        if self.logits and self.focal is None:
            kw["pos_weight"] = None if self.pw is None else self.pw.array
        return kw

    @property
    def focal_kwargs(self) -> dict[str, Any]:
        """The focal loss's keyword arguments (its weight and parameters)."""
        assert self.focal is not None
        alpha, gamma = self.focal
        return {"alpha": alpha, "gamma": gamma, "weight": self.kwargs["weight"]}

    @property
    def grad_output(self) -> Any:
        return None if self.g is None else self.g.array

    def context(self) -> dict[str, Any]:
        return {
            "x": self.x.array,
            "y": self.y.array,
            "w": None if self.w is None else self.w.array,
            "pw": None if self.pw is None else self.pw.array,
        }


@st.composite
def cases(
    draw: Any, logits: bool | None = None, grad: bool = False, focal: bool | None = None
) -> Case:
    """A case of one loss: drawn among BCE, BCE with logits and the sigmoid focal loss when
    neither ``logits`` nor ``focal`` is given; the focal loss when ``focal``; else BCE or BCE
    with logits as ``logits`` says."""
    params = None
    if focal is None and logits is None:
        focal = draw(st.integers(0, 2)) == 0
    if focal:
        logits = True
        params = draw(FOCAL_PARAMETERS)
    elif logits is None:
        logits = draw(st.booleans())
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    shape = draw(shapes())
    reduction = draw(st.sampled_from(REDUCTIONS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = "logit" if logits else "bce"
    # A Python float or list becomes float64.
    x = draw(operands(rng, f"{kind}_x", shape, dtype, other_dtypes=False, python=dtype == F64))
    y_role = "focal_y" if focal else f"{kind}_y"
    y = draw(operands(rng, y_role, shape, dtype, python=True))
    w = pw = g = None
    if draw(st.booleans()):
        w = draw(operands(rng, "weight", draw(broadcast_shapes(shape)), dtype, python=True))
    if logits and not focal and draw(st.booleans()):
        pw = draw(operands(rng, "pos_weight", draw(broadcast_shapes(shape)), dtype, python=True))
    if grad:
        if reduction == "none":
            if draw(st.integers(0, 4)):
                g = draw(operands(rng, "grad", draw(broadcast_shapes(shape)), dtype, python=True))
        else:
            form = draw(st.sampled_from(["none", "python", "numpy", "0d", "int"]))
            v = draw(SPECIALS["grad"])
            g = {
                "none": None,
                "python": Operand(v, "python", "scalar"),
                "numpy": Operand(np.float64(v), "numpy", "scalar"),
                "0d": Operand(np.array(v, dtype), "0d", "scalar"),
                "int": Operand(round(v), "python", "int"),
            }[form]
    return Case(logits, dtype, reduction, x, y, w, pw, g, focal=params)


# ---------------------------------------------------------------------------------------------
# The calls.


def forward(case: Case) -> Any:
    if case.focal is not None:
        return bcers.sigmoid_focal_loss(
            case.x.array, case.y.array, reduction=case.reduction, **case.focal_kwargs
        )
    fn = bcers.binary_cross_entropy_with_logits if case.logits else bcers.binary_cross_entropy
    return fn(case.x.array, case.y.array, reduction=case.reduction, **case.kwargs)


def backward(case: Case, grad_output: Any) -> Any:
    if case.focal is not None:
        return bcers.sigmoid_focal_loss_backward(
            grad_output, case.x.array, case.y.array, reduction=case.reduction, **case.focal_kwargs
        )
    if case.logits:
        return bcers.binary_cross_entropy_with_logits_backward(
            grad_output, case.x.array, case.y.array, reduction=case.reduction, **case.kwargs
        )
    return bcers.binary_cross_entropy_backward(
        grad_output, case.x.array, case.y.array, reduction=case.reduction, **case.kwargs
    )


def value_and_grad(case: Case) -> Any:
    if case.focal is not None:
        return bcers.sigmoid_focal_loss_value_and_grad(
            case.x.array, case.y.array, reduction=case.reduction, **case.focal_kwargs
        )
    if case.logits:
        fn = bcers.binary_cross_entropy_with_logits_value_and_grad
    else:
        fn = bcers.binary_cross_entropy_value_and_grad
    return fn(case.x.array, case.y.array, reduction=case.reduction, **case.kwargs)


def expected_forward(case: Case) -> ref.Expected:
    if case.focal is not None:
        return ref.focal(case.x.array, case.y.array, reduction=case.reduction, **case.focal_kwargs)
    if case.logits:
        return ref.bce_with_logits(
            case.x.array, case.y.array, reduction=case.reduction, **case.kwargs
        )
    return ref.bce(case.x.array, case.y.array, reduction=case.reduction, **case.kwargs)


def expected_backward(case: Case, grad_output: Any) -> ref.Expected:
    if case.focal is not None:
        return ref.focal_backward(
            grad_output, case.x.array, case.y.array, reduction=case.reduction, **case.focal_kwargs
        )
    if case.logits:
        return ref.bce_with_logits_backward(
            grad_output, case.x.array, case.y.array, reduction=case.reduction, **case.kwargs
        )
    return ref.bce_backward(
        grad_output, case.x.array, case.y.array, reduction=case.reduction, **case.kwargs
    )


def assert_identical(a: Any, b: Any) -> None:
    """The same type, dtype, shape and bits (NaNs included)."""
    assert type(a) is type(b), (type(a), type(b))
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert a.shape == b.shape, (a.shape, b.shape)
    unsigned = f"u{a.dtype.itemsize}"
    assert np.array_equal(a.view(unsigned), b.view(unsigned)), (a, b)


# ---------------------------------------------------------------------------------------------
# The properties.


@given(cases())
def test_forward_matches_reference(case: Case) -> None:
    expected = expected_forward(case)
    note(f"expected {expected.value!r} +- {expected.error!r}")
    actual = forward(case)
    ref.assert_matches(actual, expected, case.context())


@given(cases(grad=True))
def test_backward_matches_reference(case: Case) -> None:
    expected = expected_backward(case, case.grad_output)
    actual = backward(case, case.grad_output)
    ref.assert_matches(actual, expected, case.context())


@given(cases())
def test_value_and_grad_is_forward_and_backward(case: Case) -> None:
    loss, grad = value_and_grad(case)
    value, grad0, grad1 = forward(case), backward(case, None), backward(case, 1.0)
    ref.assert_matches(loss, expected_forward(case), case.context())
    ref.assert_matches(grad, expected_backward(case, None), case.context())
    # One pass computes the same numbers as the two separate calls, bit for bit.
    assert_identical(loss, value)
    assert_identical(grad, grad0)
    assert_identical(grad, grad1)


@given(cases(grad=True))
def test_classes_match_functions(case: Case) -> None:
    if case.focal is not None:
        alpha, gamma = case.focal
        loss_fn: Any = bcers.SigmoidFocalLoss(alpha, gamma, case.reduction, **case.kwargs)
        assert loss_fn.alpha == alpha
        assert loss_fn.gamma == gamma
        assert not hasattr(loss_fn, "pos_weight")
    elif case.logits:
        loss_fn = bcers.BCEWithLogitsLoss(reduction=case.reduction, **case.kwargs)
        if case.pw is None:
            assert loss_fn.pos_weight is None
        else:
            np.testing.assert_array_equal(loss_fn.pos_weight, np.asarray(case.pw.array))
    else:
        loss_fn = bcers.BCELoss(reduction=case.reduction, **case.kwargs)
        assert not hasattr(loss_fn, "pos_weight")
    assert loss_fn.reduction == case.reduction
    if case.w is None:
        assert loss_fn.weight is None
    else:
        np.testing.assert_array_equal(loss_fn.weight, np.asarray(case.w.array))
    x, y, g = case.x.array, case.y.array, case.grad_output
    value, grad, grad1 = forward(case), backward(case, g), backward(case, None)
    assert_identical(loss_fn(x, y), value)
    assert_identical(loss_fn.forward(x, y), value)
    assert_identical(loss_fn.backward(x, y, g), grad)
    assert_identical(loss_fn.backward(x, y, grad_output=g), grad)
    loss, grad2 = loss_fn.value_and_grad(x, y)
    ref.assert_matches(value, expected_forward(case), case.context())
    assert_identical(loss, value)
    assert_identical(grad2, grad1)


@given(cases(grad=True, focal=True))
def test_focal_matches_reference(case: Case) -> None:
    """The sigmoid focal loss in every example (the properties above draw it one time in
    three): forward, backward with the drawn grad_output and value_and_grad, against the
    reference; value_and_grad computes the bits of the separate calls."""
    expected = expected_forward(case)
    loss = forward(case)
    ref.assert_matches(loss, expected, case.context())
    grad = backward(case, case.grad_output)
    ref.assert_matches(grad, expected_backward(case, case.grad_output), case.context())
    value, grad1 = value_and_grad(case)
    ref.assert_matches(value, expected, case.context())
    ref.assert_matches(grad1, expected_backward(case, None), case.context())
    assert_identical(value, loss)
    assert_identical(grad1, backward(case, None))


# Small arrays with every element drawn by hypothesis: shrinks to the simplest failing values.

SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def small_cases(draw: Any) -> Case:
    focal = draw(st.integers(0, 2)) == 0
    params = draw(FOCAL_PARAMETERS) if focal else None
    logits = True if focal else draw(st.booleans())
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    shape = draw(SMALL_SHAPES)
    kind = "logit" if logits else "bce"

    def arr(role: str, shp: tuple[int, ...], dt: np.dtype) -> Operand:
        a = draw(hnp.arrays(F64, shp, elements=SPECIALS[role]))
        with np.errstate(all="ignore"):
            return Operand(a.astype(dt), "C", "hypothesis")

    x = arr(f"{kind}_x", shape, dtype)
    y = arr("focal_y" if focal else f"{kind}_y", shape, draw(st.sampled_from([dtype, F64])))
    w = arr("weight", draw(broadcast_shapes(shape)), F64) if draw(st.booleans()) else None
    pw = None
    if logits and not focal and draw(st.booleans()):
        pw = arr("pos_weight", draw(broadcast_shapes(shape)), F64)
    g = arr("grad", draw(broadcast_shapes(shape)), F64)
    return Case(logits, dtype, "none", x, y, w, pw, g, focal=params)


@given(small_cases(), st.sampled_from(REDUCTIONS))
def test_small_arrays_match_reference(case: Case, reduction: str) -> None:
    case.reduction = reduction
    g = case.grad_output if reduction == "none" else np.float64(0.75)
    value, grad = forward(case), backward(case, g)
    ref.assert_matches(value, expected_forward(case), case.context())
    ref.assert_matches(grad, expected_backward(case, g), case.context())


# The range check of BCE on probabilities: every reduction and every entry point refuses an
# input or target outside [0, 1] (NaN and inf included) and names the argument whose element
# fails first in C order, the input before the target of the same element, as torch does.


@st.composite
def out_of_range_cases(draw: Any) -> tuple[Case, str, Any]:
    case = draw(cases(logits=False, grad=True))
    x = np.array(case.x.array, copy=True)
    y = np.array(case.y.array, dtype=np.asarray(case.y.array).dtype, copy=True)
    assume(x.size > 0 and x.ndim > 0 and y.dtype.kind == "f")
    bad = st.sampled_from([-0.5, -1e-3, 1.5, 2.0, 1e30, np.nan, np.inf, -np.inf])
    for _ in range(draw(st.integers(1, 3))):
        which = draw(st.sampled_from(["x", "y"]))
        arr = x if which == "x" else y
        with np.errstate(all="ignore"):
            arr[np.unravel_index(draw(st.integers(0, x.size - 1)), x.shape)] = draw(bad)
    cx = x.astype(ref.compute_dtype(x.dtype)).ravel()
    with np.errstate(over="ignore"):  # a float64 1e30 target becomes inf in float16, as in bcers
        cy = y.astype(x.dtype).astype(ref.compute_dtype(x.dtype)).ravel()

    def outside(v: Any) -> bool:
        return not (0.0 <= v <= 1.0)

    culprit = None
    value = None
    for i, (a, b) in enumerate(zip(cx, cy)):
        for name, v in (("input", a), ("target", b)):
            if outside(v):
                index = ", ".join(map(str, np.unravel_index(i, x.shape)))
                culprit = f"{name} should be between 0 and 1; {name}[{index}] is "
                value = v
                break
        if culprit is not None:
            break
    assume(culprit is not None)
    case.x = Operand(x, "C", "bad")
    case.y = Operand(y, "C", "bad")
    return case, culprit, value


@given(out_of_range_cases())
def test_out_of_range_names_first_bad_argument(args: tuple[Case, str, Any]) -> None:
    # The argument, the index of its first bad element in C order and that element's value.
    case, culprit, value = args
    pattern = f"^{re.escape(f'all elements of {culprit}')}(.*)$"
    compute = ref.compute_dtype(case.x.array.dtype)
    for reduction in REDUCTIONS:
        case.reduction = reduction
        g = case.grad_output if reduction == "none" else None
        calls: list[Callable[[], Any]] = [
            lambda: forward(case),
            lambda: backward(case, g),  # noqa: B023 (called in this iteration)
            lambda: value_and_grad(case),
        ]
        for call in calls:
            with pytest.raises(ValueError, match=pattern) as info:
                call()
            text = re.fullmatch(pattern, str(info.value))
            assert text is not None
            ref.check_value_text(text.group(1), value, compute)
