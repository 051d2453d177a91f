"""bcers against golden values that real torch computed (``fixtures/torch_golden.json``).

The fixture is written by ``fixtures/generate_torch_fixtures.py`` (run with an interpreter that
has torch); this module needs only NumPy. Every case is checked through every entry point:
the functions, the classes (``__call__``, ``forward``, ``backward``, ``value_and_grad``), the
backward functions and the value-and-grad functions.

Tolerances. float32: 2e-6 relative; float64: 1e-12 relative. The error allowed is that times
the larger of the expected value and the *magnitude scale* of the computation: the sum of the
absolute values of the terms torch adds up. For BCE on probabilities the terms never cancel, so
the scale is the value itself. For BCE with logits they do: torch computes the loss as
``(1 - y) * x - log_weight * logsigmoid(x)`` and the gradient as ``(pw * y + 1 - y) *
sigmoid(x) - pw * y``, both of which lose the low digits when the result is much smaller than
its terms (``sigmoid(12) - 1`` in float32 is right only to ~6e-8 absolute). bcers computes both
without the cancellation, so comparing it with torch there can only ask for torch's accuracy:
2e-6 of the terms' size. Below the smallest normal number the spacing of floats is constant,
so a few steps of the smallest subnormal are also allowed; torch's BCE gradient forms
``grad_output * (x - y)`` before dividing by ``max(x (1 - x), 1e-12)``, so where that product
is subnormal (x = 1e-40) those steps are scaled up by the division (bcers divides first and is
exact there; ``test_mathematical_values`` checks every case against the exact values, tightly).

Where bcers deliberately differs from torch (infinite logits: torch computes ``0 * inf =
NaN``; tiny logit gradients: torch's cancellation gives 0 for ``x = 20, y = 1``), the test is
against the mathematical value, computed here in extended precision (``np.longdouble``; on
platforms where that is float64 the reference is still within a few ulps).
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest
import reference as ref

import bcers

FIXTURE = Path(__file__).parent / "fixtures" / "torch_golden.json"
GOLDEN: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = GOLDEN["cases"]
LEGACY: list[dict[str, Any]] = GOLDEN["legacy"]
ERRORS: list[dict[str, Any]] = GOLDEN["errors"]

REDUCTIONS = ("none", "mean", "sum")
RTOL = {"float32": 2e-6, "float64": 1e-12}
# Steps of the smallest subnormal allowed on top of the relative tolerance.
SUBNORMAL_STEPS = 16

BCE = "binary_cross_entropy"
LOGITS = "binary_cross_entropy_with_logits"
FUNCTIONS: dict[str, Callable[..., Any]] = {
    BCE: bcers.binary_cross_entropy,
    LOGITS: bcers.binary_cross_entropy_with_logits,
}
BACKWARDS: dict[str, Callable[..., Any]] = {
    BCE: bcers.binary_cross_entropy_backward,
    LOGITS: bcers.binary_cross_entropy_with_logits_backward,
}
VALUE_AND_GRADS: dict[str, Callable[..., Any]] = {
    BCE: bcers.binary_cross_entropy_value_and_grad,
    LOGITS: bcers.binary_cross_entropy_with_logits_value_and_grad,
}
MODULES: dict[str, type[Any]] = {
    "BCELoss": bcers.BCELoss,
    "BCEWithLogitsLoss": bcers.BCEWithLogitsLoss,
}


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


def array(spec: dict[str, Any]) -> np.ndarray:
    """An argument of the fixture, with its exact values, dtype and shape."""
    a = np.array(spec["value"], dtype=spec["dtype"])
    return a.reshape(spec["shape"])


def operands(case: dict[str, Any]) -> dict[str, np.ndarray | None]:
    args = case["args"]
    return {
        "input": array(args["input"]),
        "target": array(args["target"]),
        "weight": array(args["weight"]) if "weight" in args else None,
        "pos_weight": array(args["pos_weight"]) if "pos_weight" in args else None,
    }


# ---------------------------------------------------------------------------------------------
# Comparison


class Tol(NamedTuple):
    """How precisely torch computed a value, beyond its own size.

    ``scale``: the magnitude of the terms the value is a sum of (None: no cancellation).
    ``floor``: an absolute error in units of the smallest subnormal (None: ``SUBNORMAL_STEPS``).
    """

    scale: np.ndarray | None = None
    floor: np.ndarray | None = None


RELATIVE = Tol()  # relative to the value itself


def check(actual: Any, expected: Any, dtype: str, what: str, tol: Tol = RELATIVE) -> None:
    """``actual`` has the dtype and shape of ``expected`` and its values, within tolerance.

    NaN must be NaN, an infinity the same infinity; a finite value within ``RTOL`` of
    ``max(|expected|, tol.scale)``, plus ``tol.floor`` (by default ``SUBNORMAL_STEPS``) steps
    of the smallest subnormal. The sign of a zero is not checked.
    """
    actual_arr = np.asarray(actual)
    expected_arr = np.asarray(expected, dtype=np.float64)
    assert actual_arr.dtype == np.dtype(dtype), f"{what}: dtype {actual_arr.dtype}"
    assert actual_arr.shape == expected_arr.shape, (
        f"{what}: shape {actual_arr.shape}, expected {expected_arr.shape}"
    )
    got = actual_arr.astype(np.float64)
    nan = np.isnan(expected_arr)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{what}: NaN positions")
    inf = np.isinf(expected_arr)
    np.testing.assert_array_equal(got[inf], expected_arr[inf], err_msg=f"{what}: infinities")
    finite = ~(nan | inf)
    magnitude = np.abs(expected_arr)
    if tol.scale is not None:
        magnitude = np.maximum(magnitude, np.broadcast_to(tol.scale, magnitude.shape))
    floor = SUBNORMAL_STEPS if tol.floor is None else tol.floor
    allowed = RTOL[dtype] * magnitude + floor * np.finfo(dtype).smallest_subnormal
    with np.errstate(invalid="ignore"):
        error = np.abs(got - expected_arr)
    bad = finite & ~(error <= allowed)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.size} values off; got {got[bad][:5]}, torch "
        f"{expected_arr[bad][:5]}, error/allowed {(error[bad] / allowed[bad])[:5]}"
    )


def check_loss(
    actual: Any,
    expected: Any,
    dtype: str,
    reduction: str,
    what: str,
    tol: Tol = RELATIVE,
) -> None:
    """A loss: a NumPy scalar of the input's dtype for mean and sum, else an array."""
    if reduction != "none":
        assert isinstance(actual, np.floating), f"{what}: {type(actual).__name__}"
    else:
        assert isinstance(actual, np.ndarray), f"{what}: {type(actual).__name__}"
    check(actual, expected, dtype, what, tol)


def check_grad(actual: Any, expected: Any, dtype: str, what: str, tol: Tol = RELATIVE) -> None:
    assert isinstance(actual, np.ndarray), f"{what}: {type(actual).__name__}"
    check(actual, expected, dtype, what, tol)


# ---------------------------------------------------------------------------------------------
# Magnitude scales of torch's computation, and the mathematical values


def _f64(ops: dict[str, np.ndarray | None], name: str, default: float) -> np.ndarray:
    shape = ops["input"].shape  # type: ignore[union-attr]
    value = ops[name]
    if value is None:
        return np.full(shape, default)
    return np.broadcast_to(value.astype(np.float64), shape)


def _reduce(per_element: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return per_element
    total = per_element.sum()
    if reduction == "sum":
        return total
    return total / per_element.size if per_element.size else np.array(np.nan)  # torch: NaN


def torch_tolerances(
    case: dict[str, Any], ops: dict[str, np.ndarray | None], reduction: str, g: Any = 1.0
) -> tuple[Tol, Tol]:
    """How precise torch's loss and input gradient are, from how it computes them."""
    x = _f64(ops, "input", 0.0)
    y = _f64(ops, "target", 0.0)
    w = np.abs(_f64(ops, "weight", 1.0))
    pw = _f64(ops, "pos_weight", 1.0)
    n = x.size if reduction == "mean" else 1
    if case["function"] == BCE:
        # No cancellation. But torch forms grad_output * (x - y) before dividing by
        # max(x * (1 - x), 1e-12): where that product is subnormal (x = 1e-40, y = 0 and a
        # grad_output below 1) its absolute precision is the subnormal step, which the division
        # scales up by as much as 1e12 (weight and 1 / numel multiply afterwards).
        denominator = np.maximum(x * (1 - x), float(np.float32(1e-12)))
        floor = SUBNORMAL_STEPS * np.maximum(1.0, w / denominator / n)
        return RELATIVE, Tol(floor=floor)
    with np.errstate(over="ignore", invalid="ignore"):
        sig = 1.0 / (1.0 + np.exp(-x))
        logsig = np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))
        loss_terms = (np.abs((1 - y) * x) + np.abs((1 + (pw - 1) * y) * logsig)) * w
        grad_terms = (np.abs(pw * y + 1 - y) * sig + np.abs(pw * y)) * w * np.abs(g) / n
    return Tol(scale=_reduce(loss_terms, reduction)), Tol(scale=grad_terms)


def logits_math(
    ops: dict[str, np.ndarray | None], reduction: str, g: Any = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The mathematical loss and input gradient of BCE with logits, in extended precision.

    ``(1 - y) max(x, 0) + pw y max(-x, 0) + (1 + (pw - 1) y) log1p(exp(-|x|))``, a term with a
    zero coefficient being 0 (the limit when ``x`` is infinite); the gradient
    ``(1 - y) sigmoid(x) - pw y sigmoid(-x)``.
    """
    ld = np.longdouble
    shape = ops["input"].shape  # type: ignore[union-attr]
    x = ops["input"].astype(ld)  # type: ignore[union-attr]
    y = ops["target"].astype(ld)  # type: ignore[union-attr]
    w = ld(1) if ops["weight"] is None else ops["weight"].astype(ld)
    pw = ld(1) if ops["pos_weight"] is None else ops["pos_weight"].astype(ld)
    w, pw = np.broadcast_to(w, shape), np.broadcast_to(pw, shape)
    e = np.exp(-np.abs(x))
    pos_coef, neg_coef = 1 - y, pw * y
    with np.errstate(invalid="ignore"):
        pos = np.where(pos_coef == 0, ld(0), pos_coef * np.maximum(x, ld(0)))
        neg = np.where(neg_coef == 0, ld(0), neg_coef * np.maximum(-x, ld(0)))
    loss = w * (pos + neg + (1 + (pw - 1) * y) * np.log1p(e))
    sig_pos = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    sig_neg = np.where(x >= 0, e / (1 + e), 1 / (1 + e))
    n = x.size if reduction == "mean" else 1
    grad = w * (pos_coef * sig_pos - neg_coef * sig_neg) * np.asarray(g, ld) / n
    return _reduce(loss, reduction).astype(np.float64), grad.astype(np.float64)


def bce_math(
    ops: dict[str, np.ndarray | None], reduction: str, g: Any = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """torch's definition of BCE on probabilities, in extended precision.

    ``-w (y max(log x, -100) + (1 - y) max(log1p(-x), -100))``; the gradient
    ``w (x - y) / max(x (1 - x), EPS)`` with EPS the float32 number nearest 1e-12.
    """
    ld = np.longdouble
    shape = ops["input"].shape  # type: ignore[union-attr]
    x = ops["input"].astype(ld)  # type: ignore[union-attr]
    y = ops["target"].astype(ld)  # type: ignore[union-attr]
    w = np.broadcast_to(ld(1) if ops["weight"] is None else ops["weight"].astype(ld), shape)
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(x), ld(-100))
        log_1mx = np.maximum(np.log1p(-x), ld(-100))
    loss = -w * (y * log_x + (1 - y) * log_1mx)
    eps = ld(float(np.float32(1e-12)))
    n = x.size if reduction == "mean" else 1
    grad = w * np.asarray(g, ld) * (x - y) / np.maximum(x * (1 - x), eps) / n
    return _reduce(loss, reduction).astype(np.float64), grad.astype(np.float64)


def bcers_grad_scale(
    case: dict[str, Any], ops: dict[str, np.ndarray | None], reduction: str, g: Any = 1.0
) -> np.ndarray | None:
    """The magnitude of the two terms of bcers's logits gradient (None for BCE: no terms)."""
    if case["function"] == BCE:
        return None
    x = _f64(ops, "input", 0.0)
    y = _f64(ops, "target", 0.0)
    w = np.abs(_f64(ops, "weight", 1.0))
    pw = _f64(ops, "pos_weight", 1.0)
    n = x.size if reduction == "mean" else 1
    with np.errstate(over="ignore"):
        sig = 1.0 / (1.0 + np.exp(-x))
        sig_neg = 1.0 / (1.0 + np.exp(x))
    return (np.abs(1 - y) * sig + np.abs(pw * y) * sig_neg) * w * np.abs(g) / n


def expected_loss(case: dict[str, Any], ops: dict[str, Any], reduction: str) -> tuple[Any, Tol]:
    """The loss to compare with, and how precise it is."""
    if "infinite" in case["tags"]:
        # torch computes 0 * inf = NaN for (inf, 1), (-inf, 0), (-inf, 1); bcers gives the
        # limit (0, 0, inf), deliberately: test against the mathematical value, tightly.
        return logits_math(ops, reduction)[0], RELATIVE
    return case["loss"][reduction], torch_tolerances(case, ops, reduction)[0]


def expected_grad(
    case: dict[str, Any], ops: dict[str, Any], reduction: str, g: Any = 1.0
) -> tuple[Any, Tol]:
    """The input gradient to compare with, and how precise it is."""
    if "tiny_grad" in case["tags"]:
        # torch's sigmoid(x) - y cancels: for x = 20, y = 1 it gives 0 in float32 (and an
        # inaccurate -2.06115369216775e-9 in float64); bcers keeps the exact -sigmoid(-20) =
        # -2.0611536e-9, deliberately: test against the mathematical value, tightly.
        return logits_math(ops, reduction, g)[1], RELATIVE
    return case["grad"][reduction], torch_tolerances(case, ops, reduction, g)[1]


def kwargs_of(case: dict[str, Any], ops: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"weight": ops["weight"]}
    if case["function"] == LOGITS:
        kwargs["pos_weight"] = ops["pos_weight"]
    return kwargs


# ---------------------------------------------------------------------------------------------
# Golden cases: every entry point


def test_fixture_is_from_torch() -> None:
    assert GOLDEN["torch_version"].startswith("2.")
    assert len(CASES) >= 100
    assert len({c["name"] for c in CASES + LEGACY + ERRORS}) == len(CASES + LEGACY + ERRORS)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_function_loss(case: dict[str, Any]) -> None:
    ops = operands(case)
    fn = FUNCTIONS[case["function"]]
    for reduction in REDUCTIONS:
        out = fn(ops["input"], ops["target"], reduction=reduction, **kwargs_of(case, ops))
        expected, tol = expected_loss(case, ops, reduction)
        check_loss(
            out,
            expected,
            case["dtype"],
            reduction,
            f"{case['function']}(reduction={reduction!r})",
            tol,
        )


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_module_loss(case: dict[str, Any]) -> None:
    ops = operands(case)
    for reduction in REDUCTIONS:
        module = MODULES[case["module"]](reduction=reduction, **kwargs_of(case, ops))
        expected, tol = expected_loss(case, ops, reduction)
        for how, out in [
            ("__call__", module(ops["input"], ops["target"])),
            ("forward", module.forward(ops["input"], ops["target"])),
        ]:
            check_loss(
                out,
                expected,
                case["dtype"],
                reduction,
                f"{case['module']}(reduction={reduction!r}).{how}",
                tol,
            )


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_backward_function(case: dict[str, Any]) -> None:
    ops = operands(case)
    dtype = case["dtype"]
    backward = BACKWARDS[case["function"]]
    kwargs = kwargs_of(case, ops)
    for reduction in ("mean", "sum"):
        expected, tol = expected_grad(case, ops, reduction)
        for g in (None, np.ones((), dtype), 1.0):
            grad = backward(g, ops["input"], ops["target"], reduction=reduction, **kwargs)
            check_grad(grad, expected, dtype, f"backward(grad_output={g!r}, {reduction!r})", tol)
    g = array(case["grad_output_none"])
    grad = backward(g, ops["input"], ops["target"], reduction="none", **kwargs)
    expected, tol = expected_grad(case, ops, "none", g)
    check_grad(grad, expected, dtype, "backward(grad_output, 'none')", tol)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_value_and_grad_function(case: dict[str, Any]) -> None:
    ops = operands(case)
    dtype = case["dtype"]
    value_and_grad = VALUE_AND_GRADS[case["function"]]
    for reduction in REDUCTIONS:
        loss, grad = value_and_grad(
            ops["input"], ops["target"], reduction=reduction, **kwargs_of(case, ops)
        )
        expected, tol = expected_loss(case, ops, reduction)
        check_loss(loss, expected, dtype, reduction, f"value_and_grad({reduction!r}) loss", tol)
        # With reduction 'none' the gradient is for grad_output = ones: the gradient of 'sum'.
        expected, tol = expected_grad(case, ops, "sum" if reduction == "none" else reduction)
        check_grad(grad, expected, dtype, f"value_and_grad({reduction!r}) grad", tol)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_module_backward_and_value_and_grad(case: dict[str, Any]) -> None:
    ops = operands(case)
    dtype = case["dtype"]
    x, y = ops["input"], ops["target"]
    for reduction in REDUCTIONS:
        module = MODULES[case["module"]](reduction=reduction, **kwargs_of(case, ops))
        name = f"{case['module']}(reduction={reduction!r})"
        if reduction == "none":
            g = array(case["grad_output_none"])
            grad = module.backward(x, y, g)
            expected, tol = expected_grad(case, ops, "none", g)
        else:
            grad = module.backward(x, y)
            expected, tol = expected_grad(case, ops, reduction)
        check_grad(grad, expected, dtype, f"{name}.backward", tol)
        loss, grad = module.value_and_grad(x, y)
        expected, tol = expected_loss(case, ops, reduction)
        check_loss(loss, expected, dtype, reduction, f"{name}.value_and_grad loss", tol)
        expected, tol = expected_grad(case, ops, "sum" if reduction == "none" else reduction)
        check_grad(grad, expected, dtype, f"{name}.value_and_grad grad", tol)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_mathematical_values(case: dict[str, Any]) -> None:
    """Independently of torch: bcers is within RTOL of the mathematical values (torch is not
    always: see the tolerance notes at the top).

    The loss within ``RTOL`` of its mathematical value (its terms never cancel for targets in
    [0, 1]); the logits gradient within ``RTOL`` of the size of its two terms, ``(1 - y)
    sigmoid(x)`` and ``pw y sigmoid(-x)``.
    """
    ops = operands(case)
    dtype = case["dtype"]
    math_of = bce_math if case["function"] == BCE else logits_math
    value_and_grad = VALUE_AND_GRADS[case["function"]]
    for reduction in REDUCTIONS:
        loss, grad = value_and_grad(
            ops["input"], ops["target"], reduction=reduction, **kwargs_of(case, ops)
        )
        g = 1.0 if reduction != "none" else np.ones(ops["input"].shape)  # type: ignore[union-attr]
        math_loss, math_grad = math_of(ops, reduction, g)
        check_loss(loss, math_loss, dtype, reduction, f"loss({reduction!r}) vs math")
        tol = Tol(scale=bcers_grad_scale(case, ops, reduction))
        check_grad(grad, math_grad, dtype, f"grad({reduction!r}) vs math", tol)
    g = array(case["grad_output_none"])
    grad = BACKWARDS[case["function"]](
        g, ops["input"], ops["target"], reduction="none", **kwargs_of(case, ops)
    )
    tol = Tol(scale=bcers_grad_scale(case, ops, "none", g))
    check_grad(grad, math_of(ops, "none", g)[1], dtype, "grad(grad_output, 'none') vs math", tol)


# ---------------------------------------------------------------------------------------------
# Where bcers deliberately differs from torch: what torch gives, and that bcers is exact


INFINITE = [c for c in CASES if "infinite" in c["tags"]]
TINY_GRAD = [c for c in CASES if "tiny_grad" in c["tags"]]


def test_deliberate_difference_cases_exist() -> None:
    assert {c["dtype"] for c in INFINITE} == {"float32", "float64"}
    assert {c["dtype"] for c in TINY_GRAD} == {"float32", "float64"}


@pytest.mark.parametrize("case", INFINITE, ids=ids(INFINITE))
def test_infinite_logits_give_the_limits(case: dict[str, Any]) -> None:
    ops = operands(case)
    x, y = ops["input"], ops["target"]
    torch_none = np.asarray(case["loss"]["none"])
    # torch: NaN wherever a zero coefficient meets an infinite term; inf for (inf, 0).
    assert np.isnan(torch_none[(x == np.inf) & (y == 1)]).all()
    assert np.isnan(torch_none[(x == -np.inf) & (y < 1)]).all()
    assert np.isnan(case["loss"]["mean"])
    assert np.isnan(case["loss"]["sum"])
    # The limits: 0 for (inf, 1) and (-inf, 0), inf for (inf, 0), (-inf, 1) and soft targets.
    limits = np.where(((x == np.inf) & (y == 1)) | ((x == -np.inf) & (y == 0)), 0.0, np.inf)
    math_none, _ = logits_math(ops, "none")
    np.testing.assert_array_equal(math_none, limits)
    loss = bcers.binary_cross_entropy_with_logits(x, y, reduction="none", **kwargs_of(case, ops))
    check(loss, limits, case["dtype"], "infinite logits, 'none'")
    for reduction in ("mean", "sum"):
        loss = bcers.binary_cross_entropy_with_logits(
            x, y, reduction=reduction, **kwargs_of(case, ops)
        )
        assert loss == np.inf
    # The gradients are finite and torch's are right: sigmoid(+-inf) is exactly 1 or 0.
    np.testing.assert_array_equal(logits_math(ops, "sum")[1], case["grad"]["sum"])


@pytest.mark.parametrize("case", TINY_GRAD, ids=ids(TINY_GRAD))
def test_tiny_logit_gradients_are_exact(case: dict[str, Any]) -> None:
    ops = operands(case)
    _, math_sum = logits_math(ops, "sum")
    # torch's gradient sigmoid(x) - y cancels where sigmoid(x) is close to y = 1: it is 0 (or
    # far off) although the exact value, -pw * sigmoid(-x), is representable.
    torch_sum = np.asarray(case["grad"]["sum"])
    lost = (math_sum != 0) & (np.abs(torch_sum - math_sum) > 1e-3 * np.abs(math_sum))
    assert lost.any(), "torch's gradient was expected to lose a tiny value here"
    # bcers keeps it: within RTOL of each value itself (not of the size of the terms).
    grad = bcers.binary_cross_entropy_with_logits_backward(
        None, ops["input"], ops["target"], reduction="sum", **kwargs_of(case, ops)
    )
    check_grad(grad, math_sum, case["dtype"], "tiny gradients")
    if case["name"] == "logits_float32_tiny_grad_x20_y1":
        assert case["grad"]["sum"][0] == 0.0  # torch, for x = 20, y = 1
        assert float(grad[0]) == pytest.approx(-2.0611536e-9, rel=2e-6)
        # The loss of x = -20, y = 0 cancels in torch's (1 - y) x - logsigmoid(x) too: 0.
        assert case["loss"]["none"][2] == 0.0
        loss = bcers.binary_cross_entropy_with_logits(ops["input"], ops["target"], reduction="none")
        assert float(loss[2]) == pytest.approx(2.0611536e-9, rel=2e-6)


# ---------------------------------------------------------------------------------------------
# Legacy arguments: the reduction torch maps them to, and its warning


@pytest.mark.parametrize("case", LEGACY, ids=ids(LEGACY))
def test_legacy_arguments(case: dict[str, Any]) -> None:
    ops = operands(case)
    dtype = case["dtype"]
    mapped = case["mapped_reduction"]
    message = case["warning"]["message"]
    fn = FUNCTIONS[case["function"]]
    x, y = ops["input"], ops["target"]
    with pytest.warns(UserWarning, match=f"^{re.escape(message)}$") as record:
        out = fn(x, y, **case["kwargs"])
    assert len(record) == 1
    assert record[0].filename == __file__, "the warning points at the caller"
    check_loss(out, case["loss"], dtype, mapped, f"{case['function']}(**{case['kwargs']})")

    cls = MODULES[case["module"]]
    warns_on = case["module_warns_on"]
    if warns_on["construction"]:
        assert warns_on["construction"] == [message]
        assert not warns_on["call"]
        with pytest.warns(UserWarning, match=f"^{re.escape(message)}$") as record:
            module = cls(**case["kwargs"])
        assert len(record) == 1
        out = module(x, y)  # no second warning (pytest turns warnings into errors)
    else:
        assert warns_on["call"] == [message]
        module = cls(**case["kwargs"])
        with pytest.warns(UserWarning, match=f"^{re.escape(message)}$") as record:
            out = module(x, y)
        assert len(record) == 1
    check_loss(out, case["loss"], dtype, mapped, f"{case['module']}(**{case['kwargs']})")


def test_legacy_cases_cover_every_mapping() -> None:
    assert {c["mapped_reduction"] for c in LEGACY} == set(REDUCTIONS)
    assert any(c["kwargs"].get("reduction") == "elementwise_mean" for c in LEGACY)


# ---------------------------------------------------------------------------------------------
# Errors: torch's messages, with NumPy's shape tuples


def numpy_shapes(message: str) -> str:
    """torch's ``torch.Size([3, 1])`` written as NumPy writes the shape: ``(3, 1)``."""

    def tuple_text(m: re.Match[str]) -> str:
        return str(tuple(int(n) for n in m.group(1).split(",") if n.strip()))

    return re.sub(r"torch\.Size\(\[([0-9, ]*)\]\)", tuple_text, message)


def first_out_of_range(case: dict[str, Any]) -> str:
    """Where the first element outside [0, 1] is, as bcers says it: the input before the target
    of the same element, in C order."""
    ops = operands(case)
    x, y = ops["input"], ops["target"]
    assert x is not None
    assert y is not None
    for index in np.ndindex(x.shape):
        for name, a in (("input", x), ("target", y)):
            v = a[index]
            if not 0 <= v <= 1:
                text = ref.value_text(v, ref.compute_dtype(x.dtype))
                return f"{name}[{', '.join(map(str, index))}] is {text}"
    raise AssertionError("no element out of range")


def bcers_message(case: dict[str, Any]) -> str:
    if case["error"] == "target_shape":
        # One message for both losses (torch's BCE calls the mismatch "deprecated", though it is
        # an error), with NumPy's shapes.
        shape = {k: tuple(case["args"][k]["shape"]) for k in ("input", "target")}
        return f"Target size {shape['target']} must be the same as input size {shape['input']}"
    if case["error"] == "range":
        # torch's message, then where.
        return f"{numpy_shapes(case['torch_message'])}; {first_out_of_range(case)}"
    if case["error"] != "broadcast":
        return numpy_shapes(case["torch_message"])
    # torch's message comes from its generic broadcasting machinery ("output with shape
    # [2, 3] doesn't match the broadcast shape [1, 2, 3]", "The size of tensor a (3) must
    # match the size of tensor b (4) ..."); bcers names the argument instead (src/error.rs).
    (arg,) = set(case["args"]) - {"input", "target"}
    shape = tuple(case["args"][arg]["shape"])
    input_shape = tuple(case["args"]["input"]["shape"])
    return (
        f"{arg} of shape {shape} cannot be broadcast to the input's shape {input_shape} (it "
        "may have no more dimensions than the input, each of length 1 or equal to the input's)"
    )


def test_numpy_shapes() -> None:
    assert numpy_shapes("a (torch.Size([3, 1])) b (torch.Size([]))") == "a ((3, 1)) b (())"
    assert numpy_shapes("torch.Size([3])") == "(3,)"


def error_calls(
    case: dict[str, Any], ops: dict[str, Any], reduction: str
) -> list[tuple[str, Callable[[], Any]]]:
    """Every entry point that takes these arguments, as calls without arguments."""
    function, cls = case["function"], MODULES[case["module"]]
    x, y = ops["input"], ops["target"]
    kwargs = {k: ops[k] for k in ("weight", "pos_weight") if ops[k] is not None}
    module = partial(cls, reduction=reduction, **kwargs)
    g = np.ones_like(x) if reduction == "none" else None
    return [
        ("function", partial(FUNCTIONS[function], x, y, reduction=reduction, **kwargs)),
        ("module", lambda: module()(x, y)),
        ("module.forward", lambda: module().forward(x, y)),
        ("backward", partial(BACKWARDS[function], g, x, y, reduction=reduction, **kwargs)),
        ("module.backward", lambda: module().backward(x, y, g)),
        ("value_and_grad", partial(VALUE_AND_GRADS[function], x, y, reduction=reduction, **kwargs)),
        ("module.value_and_grad", lambda: module().value_and_grad(x, y)),
    ]


@pytest.mark.parametrize("case", ERRORS, ids=ids(ERRORS))
def test_errors(case: dict[str, Any]) -> None:
    ops = operands(case)
    match = f"^{re.escape(bcers_message(case))}$"
    for reduction in case["reductions"]:
        for how, call in error_calls(case, ops, reduction):
            with pytest.raises(ValueError, match=match) as info:
                call()
            assert info.type is ValueError, f"{how}, reduction={reduction!r}"


def test_error_messages_match_torch_modulo_shapes() -> None:
    # The texts bcers keeps from torch (the reduction and range errors; the range error then
    # says where) are torch's, byte for byte, once torch.Size([...]) is written as a tuple.
    kept = [c for c in ERRORS if c["error"] in ("reduction", "range")]
    assert {c["error"] for c in ERRORS} == {"target_shape", "reduction", "range", "broadcast"}
    for case in kept:
        assert bcers_message(case).startswith(numpy_shapes(case["torch_message"]))
        assert "torch.Size" not in bcers_message(case)
        assert case["torch_exception"] in {"ValueError", "RuntimeError"}
