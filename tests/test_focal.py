"""The sigmoid focal loss: ``bcers.sigmoid_focal_loss``, its ``_backward`` and
``_value_and_grad``, and ``bcers.SigmoidFocalLoss``.

Golden values. ``fixtures/torch_extra.json`` (section ``focal``) holds what real torchvision
computed (``generate_torch_extra_fixtures.py``). torchvision is not always accurate: (a) its
BCE with logits cancels for ``y = 0`` and very negative logits (1.3% off at ``x = -30`` in
float64); (b) it forms ``1 - p_t`` by a subtraction, which loses ``u / (1 - p_t)`` relative
(``u`` the unit roundoff) where ``p_t`` is near 1, raised to ``gamma``; its autograd gradient
also forms ``sigmoid(x) - y`` and ``p (1 - p)``; (c) its gradient is NaN where ``1 - p_t``
rounds to 0 and ``gamma < 1``; (d) it is NaN at infinite logits. bcers computes all of these
without cancellation. So each value is compared with both torchvision and an independent
exact value, the float64 stable formulas of ``reference.py`` (:func:`reference.focal`,
accurate to ~1e-14 relative, far below the tolerances):

* where torchvision is within the tolerance of the exact value (``RTOL`` times the larger of
  the value and the size of the terms a gradient is the sum of, plus a few subnormal steps),
  bcers must be within the tolerance of torchvision;
* elsewhere ("torchvision off") bcers must be within the tolerance of the exact value, and
  :func:`test_torchvision_is_off_only_where_it_is_known_to_be` checks that every such element
  is one of (a)-(c) (its deviation within :func:`torch_error`'s estimate of torchvision's
  rounding error, or a NaN where ``1 - p_t`` rounds to 0 with ``gamma < 1``), that they are
  few, and that the large ones are all at ``|x| >= 12``: the test cannot silently compare
  everything with the reference only.

Cases tagged ``edge`` (logits of +-20 to +-1000 and +-inf, where torchvision is mostly NaN or
inaccurate) are checked for finiteness, the exact value and the limits at infinite logits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple

import numpy as np
import pytest
import reference as ref
from test_layouts import assert_identical, assert_sums_agree

import bcers

FIXTURE = Path(__file__).parent / "fixtures" / "torch_extra.json"
FOCAL: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))["focal"]
GOLDEN = [case for case in FOCAL if "edge" not in case["tags"]]
EDGE = [case for case in FOCAL if "edge" in case["tags"]]

F16, F32, F64 = ref.F16, ref.F32, ref.F64
Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[Reduction, ...] = ("none", "mean", "sum")
RTOL = {"float32": 1e-5, "float64": 1e-12}
#: Steps of the smallest subnormal allowed on top of the relative tolerance.
SUBNORMAL_STEPS = 16
FLOOR = {d: SUBNORMAL_STEPS * float(np.finfo(d).smallest_subnormal) for d in RTOL}
UNIT = {"float32": 2.0**-24, "float64": 2.0**-53}
#: Units of roundoff per unit of condition number in :func:`torch_error`'s estimate.
TORCH_ULPS = 8.0
#: torchvision off by more than this (relative to the size of the terms), or NaN: "large".
LARGE = 1e-3


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


def array(spec: dict[str, Any]) -> np.ndarray:
    """An array of the fixture, with its exact values, dtype and shape."""
    return np.array(spec["value"], dtype=spec["dtype"]).reshape(spec["shape"])


class Args(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None
    alpha: float
    gamma: float
    grad_output: np.ndarray  # the fixture's grad_output of reduction "none"
    dtype: str


def args_of(case: dict[str, Any]) -> Args:
    a = case["args"]
    w = array(a["weight"]) if "weight" in a else None
    p = case["params"]
    return Args(
        array(a["input"]),
        array(a["target"]),
        w,
        p["alpha"],
        p["gamma"],
        array(case["grad_output_none"]),
        case["dtype"],
    )


# ---------------------------------------------------------------------------------------------
# What torchvision computed, the exact values, and how precise torchvision is.


def torch_error(a: Args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An estimate of torchvision's rounding error, per element (no weight, grad_output 1):
    for the loss, for the input gradient, and where its gradient is NaN by (c).

    ``TORCH_ULPS`` units of roundoff times the condition numbers of what torchvision computes:
    ``1 - p_t`` by a subtraction (absolute error ~u, relative ``u / q``, ``gamma`` times that
    after the power, ``gamma + 1`` in the gradient's ``q**(gamma-1)``); BCE with logits as
    ``(1-y) x - logsigmoid(x)`` (absolute error ~``u (|x| + 1)``); the gradients
    ``sigmoid(x) - y`` (absolute error ~``u (p + y)``) and ``p (1 - p)`` (relative
    ``u / (p (1 - p))``).
    """
    f = ref.focal_factors(a.x, a.y, a.alpha, a.gamma)
    x = a.x.astype(np.float64)
    y = a.y.astype(np.float64)
    g, u = a.gamma, UNIT[a.dtype]
    with np.errstate(all="ignore"):
        at, ce, q, mod, dce, r = (np.abs(f[k]) for k in ("alpha_t", "ce", "q", "mod", "dce", "r"))
        p = 1.0 / (1.0 + np.exp(-x))
        e = np.exp(-np.abs(x))
        pq = e / (1.0 + e) ** 2  # p (1 - p), without cancellation
        loss = TORCH_ULPS * u * at * mod * (ce * (2.0 + g / q) + np.abs(x) + 1.0)
        grad = (
            TORCH_ULPS
            * u
            * at
            * mod
            * (
                p
                + y
                + dce * (1.0 + g / q)
                + g * ce * r * (2.0 + (g + 1.0) / q + 1.0 / pq)
                + g * r * (np.abs(x) + 1.0)
            )
        )
        # (c): 1 - p_t as torchvision rounds it, in the case's dtype.
        xd, yd = a.x, a.y
        pd = (1 / (1 + np.exp(-xd))).astype(xd.dtype)
        q_torch = 1 - (pd * yd + (1 - pd) * (1 - yd))
    nan_known = (g < 1) & (q_torch == 0)
    return loss, grad, nan_known


class Golden(NamedTuple):
    """One result (a loss or a gradient, in one reduction) of one case."""

    torch: np.ndarray  # torchvision's, float64
    exact: np.ndarray  # the reference's, float64
    scale: np.ndarray  # the size of the terms of the exact value (>= |exact|)
    torch_err: np.ndarray  # torch_error's estimate, scaled like the result
    nan_known: np.ndarray  # where a NaN of torchvision's is known (c)
    x: np.ndarray  # the logits (per element; the largest |x| of the case for a reduced loss)
    dtype: str


def golden(case: dict[str, Any], reduction: Reduction) -> tuple[Golden, Golden]:
    """The loss and the input gradient of ``case`` in ``reduction``, as the fixture has them:
    ``none`` backpropagates the fixture's ``grad_output_none``, ``mean``/``sum`` 1."""
    a = args_of(case)
    go = a.grad_output if reduction == "none" else None
    loss = ref.focal(a.x, a.y, a.alpha, a.gamma, reduction, a.weight).value
    grad = ref.focal_backward(go, a.x, a.y, a.alpha, a.gamma, reduction, a.weight).value
    f = ref.focal_factors(a.x, a.y, a.alpha, a.gamma)
    w = np.abs(np.broadcast_to(1.0 if a.weight is None else a.weight.astype(np.float64), a.x.shape))
    gscale = np.abs(a.grad_output.astype(np.float64)) if reduction == "none" else 1.0
    n = a.x.size if reduction == "mean" else 1
    loss_err, grad_err, nan_known = torch_error(a)
    with np.errstate(all="ignore"):
        # ce * r -> 0 at infinite logits (ce infinite, r = 0).
        ce_r = np.where(f["r"] == 0, 0.0, f["ce"] * f["r"])
        terms = np.abs(f["alpha_t"] * f["mod"]) * (np.abs(f["dce"]) + np.abs(a.gamma * ce_r))
    grad_scale = np.maximum(np.abs(grad), w * terms * gscale / n)
    grad_gold = Golden(
        np.array(case["grad"][reduction], np.float64),
        grad,
        grad_scale,
        w * grad_err * gscale / n,
        nan_known,
        a.x.astype(np.float64),
        a.dtype,
    )
    values = w * np.abs(ref.focal(a.x, a.y, a.alpha, a.gamma, "none", a.weight).value)
    if reduction == "none":
        loss_scale, loss_err_all, xs = np.abs(loss), w * loss_err, a.x.astype(np.float64)
    else:
        # Every term is >= 0: no cancellation; torchvision's float sum adds ~n u of it.
        total = float(np.sum(values)) / n
        err = float(np.sum(w * loss_err)) / n + TORCH_ULPS * a.x.size * UNIT[a.dtype] * total
        loss_scale, loss_err_all = np.array(total), np.array(err)
        xs = np.array(float(np.max(np.abs(a.x.astype(np.float64)))))
    loss_gold = Golden(
        np.array(case["loss"][reduction], np.float64),
        loss,
        loss_scale,
        loss_err_all,
        np.zeros(loss.shape, bool),
        xs,
        a.dtype,
    )
    return loss_gold, grad_gold


def tolerance(gold: Golden) -> np.ndarray:
    return RTOL[gold.dtype] * gold.scale + FLOOR[gold.dtype]


def torch_ok(gold: Golden) -> np.ndarray:
    """Where torchvision's value is within the tolerance of the exact value."""
    with np.errstate(invalid="ignore"):
        return np.abs(gold.torch - gold.exact) <= tolerance(gold)


def check(actual: Any, gold: Golden, what: str, reduced: bool) -> None:
    """bcers' ``actual``: the type, dtype and shape of the result, finite, within the tolerance
    of torchvision's value where that is right, else of the exact value."""
    if reduced:
        assert isinstance(actual, np.floating), f"{what}: {type(actual).__name__}"
    else:
        assert isinstance(actual, np.ndarray), f"{what}: {type(actual).__name__}"
    assert actual.dtype == np.dtype(gold.dtype), f"{what}: dtype {actual.dtype}"
    assert actual.shape == gold.exact.shape, f"{what}: shape {actual.shape}"
    got = np.asarray(actual, np.float64)
    assert np.all(np.isfinite(got)), f"{what}: not finite: {got}"
    ok = torch_ok(gold)
    want = np.where(ok, gold.torch, gold.exact)
    error = np.abs(got - want)
    allowed = tolerance(gold)
    bad = ~(error <= allowed)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.size} off: got {got[bad][:5]}, want {want[bad][:5]} "
        f"(torchvision's: {ok[bad][:5]}), error/allowed {(error[bad] / allowed[bad])[:5]}"
    )


@pytest.mark.parametrize("case", GOLDEN, ids=ids(GOLDEN))
def test_golden(case: dict[str, Any]) -> None:
    """Every entry point, every reduction, against torchvision (or the exact value)."""
    a = args_of(case)
    x, y, w = a.x, a.y, a.weight
    params = {"alpha": a.alpha, "gamma": a.gamma}
    for reduction in REDUCTIONS:
        loss_gold, grad_gold = golden(case, reduction)
        reduced = reduction != "none"
        go = None if reduced else a.grad_output
        loss_fn = bcers.SigmoidFocalLoss(reduction=reduction, weight=w, **params)
        kw: dict[str, Any] = {"reduction": reduction, "weight": w, **params}
        losses = {
            "sigmoid_focal_loss": bcers.sigmoid_focal_loss(x, y, **kw),
            "positional": bcers.sigmoid_focal_loss(x, y, a.alpha, a.gamma, reduction, w),
            "SigmoidFocalLoss()": loss_fn(x, y),
            "SigmoidFocalLoss.forward": loss_fn.forward(x, y),
        }
        value, grad1 = bcers.sigmoid_focal_loss_value_and_grad(x, y, **kw)
        class_value, class_grad1 = loss_fn.value_and_grad(x, y)
        losses["value_and_grad"] = value
        losses["SigmoidFocalLoss.value_and_grad"] = class_value
        for name, out in losses.items():
            check(out, loss_gold, f"{case['name']} {name}(reduction={reduction!r}) loss", reduced)
        grads = {
            "sigmoid_focal_loss_backward": bcers.sigmoid_focal_loss_backward(go, x, y, **kw),
            "SigmoidFocalLoss.backward": loss_fn.backward(x, y, go),
            "SigmoidFocalLoss.backward(grad_output=)": loss_fn.backward(x, y, grad_output=go),
        }
        for name, out in grads.items():
            check(out, grad_gold, f"{case['name']} {name}(reduction={reduction!r}) grad", False)
        # value_and_grad's gradient is for grad_output 1: the backward's with None, bit for bit,
        # and times the fixture's grad_output, torchvision's (one more rounding: ~1 ulp).
        plain = bcers.sigmoid_focal_loss_backward(None, x, y, **kw)
        assert_identical(grad1, plain)
        assert_identical(class_grad1, plain)
        assert_identical(value, losses["sigmoid_focal_loss"])
        scaled = (grad1.astype(np.float64) * (1.0 if go is None else go)).astype(a.dtype)
        check(scaled, grad_gold, f"{case['name']} value_and_grad({reduction!r}) grad", False)


def test_torchvision_is_off_only_where_it_is_known_to_be() -> None:
    """The elements where bcers is held to the exact value instead of torchvision's are
    torchvision's known inaccuracies only, few, and the large ones at |x| >= 12."""
    counts: dict[str, list[int]] = {"float32": [0, 0, 0], "float64": [0, 0, 0]}  # off, nan, all
    for case in GOLDEN:
        for reduction in REDUCTIONS:
            for what, gold in zip(("loss", "grad"), golden(case, reduction)):
                label = f"{case['name']} {what} {reduction}"
                ok = torch_ok(gold)
                off = ~ok
                nan = np.isnan(gold.torch)
                with np.errstate(invalid="ignore"):
                    deviation = np.abs(gold.torch - gold.exact)
                    explained = deviation <= gold.torch_err + tolerance(gold)
                    large = nan | (deviation > LARGE * gold.scale)
                explained |= nan & gold.nan_known
                assert np.all(explained | ok), (
                    f"{label}: torchvision off beyond its known inaccuracies: torch "
                    f"{gold.torch[~(explained | ok)]}, exact {gold.exact[~(explained | ok)]}, "
                    f"x {np.broadcast_to(gold.x, gold.exact.shape)[~(explained | ok)]}"
                )
                at = np.abs(np.broadcast_to(gold.x, gold.exact.shape))
                assert np.all(at[off & large] >= 12), (label, at[off & large])
                c = counts[gold.dtype]
                c[0] += int(off.sum())
                c[1] += int(nan.sum())
                c[2] += off.size
    for dtype, (off, nan, total) in counts.items():
        # Few: the specials +-12 and +-30 of the hard-target cases, mostly. And some: the
        # comparison with torchvision is not vacuous, and the fixture does hold (a)-(c).
        assert 0 < off <= 0.08 * total, (dtype, off, total)
        if dtype == "float32":
            assert nan > 0


def test_golden_fixture() -> None:
    assert len(FOCAL) == 104
    assert len(EDGE) == 12
    assert sum("weighted" in case["tags"] for case in GOLDEN) == 12
    assert len({case["name"] for case in FOCAL}) == len(FOCAL)
    # Every random case has targets in [0, 1] (what the reference takes).
    for case in FOCAL:
        y = array(case["args"]["target"])
        assert np.all((y >= 0) & (y <= 1)), case["name"]


# ---------------------------------------------------------------------------------------------
# Edge cases: huge and infinite logits.


@pytest.mark.parametrize("case", EDGE, ids=ids(EDGE))
def test_edge_values_are_finite_and_exact(case: dict[str, Any]) -> None:
    a = args_of(case)
    x, y = a.x, a.y
    finite = np.isfinite(x)
    params = {"alpha": a.alpha, "gamma": a.gamma}
    for reduction in REDUCTIONS:
        loss_gold, grad_gold = golden(case, reduction)
        go = a.grad_output if reduction == "none" else None
        kw: dict[str, Any] = {"reduction": reduction, **params}
        loss = bcers.sigmoid_focal_loss(x, y, **kw)
        grad = bcers.sigmoid_focal_loss_backward(go, x, y, **kw)
        value, grad1 = bcers.sigmoid_focal_loss_value_and_grad(x, y, **kw)
        loss_fn = bcers.SigmoidFocalLoss(reduction=reduction, **params)
        assert_identical(value, loss)
        assert_identical(loss_fn(x, y), loss)
        assert_identical(loss_fn.backward(x, y, go), grad)
        assert_identical(grad1, bcers.sigmoid_focal_loss_backward(None, x, y, **kw))
        # Never NaN; finite gradients everywhere; finite losses at finite logits.
        assert not np.isnan(loss).any()
        assert np.all(np.isfinite(grad)), grad
        if reduction == "none":
            assert np.all(np.isfinite(loss[finite])), loss
        # The exact values (the limits at infinite logits), tightly.
        exact = ref.focal(x, y, reduction=reduction, **params)
        exact_grad = ref.focal_backward(go, x, y, reduction=reduction, **params)
        ref.assert_matches(loss, exact)
        ref.assert_matches(grad, exact_grad)
        for what, got, gold in (("loss", loss, loss_gold), ("grad", grad, grad_gold)):
            g = np.asarray(got, np.float64)
            inf = np.isinf(gold.exact)
            assert np.array_equal(g[inf], gold.exact[inf]), what
            with np.errstate(invalid="ignore"):
                assert np.all((np.abs(g - gold.exact) <= tolerance(gold))[~inf]), (what, g)


def alpha_t(alpha: float, y: float) -> float:
    return alpha * y + (1 - alpha) * (1 - y) if alpha >= 0 else 1.0


def limits(x: float, y: float, alpha: float, gamma: float) -> tuple[float, float]:
    """The loss and its derivative as ``x`` tends to +-inf, from the formula.

    ``ce ~ (1-y) max(x, 0) + y max(-x, 0)``, ``q -> 1 - y (x -> +inf), y (x -> -inf)``, and
    ``ce * r ~ |x| e^-|x| -> 0``: the loss is ``alpha_t * ce * q**gamma`` (0 where a factor is
    0, since the loss is then 0 for every large |x|), the gradient ``alpha_t * q**gamma * dce``
    with ``dce -> 1 - y (x -> +inf), -y (x -> -inf)``.
    """
    a = alpha_t(alpha, y)
    q = 1.0 - y if x > 0 else y
    dce = 1.0 - y if x > 0 else -y
    ce_coef = 1.0 - y if x > 0 else y
    mod = q**gamma  # 0**0 = 1
    loss = 0.0 if a * ce_coef * mod == 0 else np.inf
    return loss, a * mod * dce


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [0.25, 0.0, 1.0, -1.0])
def test_infinite_logits_give_the_limits(alpha: float, gamma: float, dtype: np.dtype) -> None:
    xs = [np.inf, -np.inf]
    ys = [0.0, 1.0, 0.5]
    pairs = [(x, y) for x in xs for y in ys]
    x = np.array([p[0] for p in pairs], dtype)
    y = np.array([p[1] for p in pairs], dtype)
    loss, grad = bcers.sigmoid_focal_loss_value_and_grad(x, y, alpha, gamma)
    assert loss.dtype == dtype
    assert grad.dtype == dtype
    for i, (xi, yi) in enumerate(pairs):
        want_loss, want_grad = limits(xi, yi, alpha, gamma)
        assert loss[i] == want_loss, (xi, yi, loss[i], want_loss)
        np.testing.assert_allclose(grad[i], want_grad, rtol=2e-6 if dtype != F16 else 1e-3)
        assert not np.signbit(loss[i])
    # A weight of 0 gives 0 (the limit), a weight of 3 three times the limits.
    w0 = bcers.sigmoid_focal_loss(x, y, alpha, gamma, weight=np.zeros(1, dtype))
    np.testing.assert_array_equal(w0, np.zeros(len(pairs)))
    w3, g3 = bcers.sigmoid_focal_loss_value_and_grad(x, y, alpha, gamma, weight=np.full(1, 3.0))
    np.testing.assert_array_equal(w3, loss * 3)
    np.testing.assert_allclose(g3, grad.astype(np.float64) * 3, rtol=1e-6 if dtype != F16 else 1e-3)


@pytest.mark.parametrize(
    ("dtype", "y"),
    [(F32, 1e-20), (F32, 1e-30), (F32, 1e-40), (F64, 1e-100), (F64, 1e-200), (F64, 1e-300)],
    ids=str,
)
@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_infinite_logits_with_tiny_soft_targets(dtype: np.dtype, y: float, gamma: float) -> None:
    """At x = -inf, ce = y * |x| is infinite and 1 - p_t tends to y > 0: the loss tends to
    +inf, however small y ** gamma is (even where it is below the dtype's range); the gradient
    to -alpha_t * y ** (gamma + 1), 0 in the dtype here."""
    x = np.array([-np.inf, -np.inf], dtype)
    t = np.array([y, 2 * y], dtype)
    for alpha in (-1.0, 0.25):
        for reduction in REDUCTIONS:
            loss = bcers.sigmoid_focal_loss(x, t, alpha, gamma, reduction)
            assert np.all(loss == np.inf), (reduction, loss)
            ref.assert_matches(loss, ref.focal(x, t, alpha, gamma, reduction))
        grad = bcers.sigmoid_focal_loss_backward(None, x, t, alpha, gamma)
        ref.assert_matches(grad, ref.focal_backward(None, x, t, alpha, gamma))


EXTREME_LOGITS = [
    0.0,
    -0.0,
    1e-30,
    0.5,
    3.0,
    12.0,
    20.0,
    30.0,
    50.0,
    87.5,
    88.7,
    95.0,
    103.0,
    104.5,
    200.0,
    709.0,
    710.0,
    745.0,
    746.0,
    1e4,
    1e30,
    1e300,
]
EXTREME_TARGETS = [0.0, 1.0, 0.5, 0.25, 1e-30, 1e-7, 1 - 2.0**-24, 1e-300]


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [0.25, -1.0, 0.0, 1.0, 0.9])
def test_every_finite_logit_gives_finite_exact_results(
    alpha: float, gamma: float, dtype: np.dtype
) -> None:
    """Huge, moderate and tiny logits of both signs against every kind of target: finite
    losses and gradients (torchvision's gradient is NaN where 1 - p_t rounds to 0 with
    gamma < 1), within the reference's bounds, every reduction."""
    info = np.finfo(dtype)
    logits = [v for v in EXTREME_LOGITS if v < float(info.max)] + [float(info.max)]
    logits += [-v for v in logits]
    with np.errstate(over="ignore", under="ignore"):
        xs = np.array(logits, dtype)
        ys = np.array(EXTREME_TARGETS, np.float64).astype(dtype)
    x, y = (v.ravel() for v in np.meshgrid(xs, ys))
    go = np.linspace(-2.0, 2.0, x.size).astype(dtype)
    loss = bcers.sigmoid_focal_loss(x, y, alpha, gamma)
    grad = bcers.sigmoid_focal_loss_backward(go, x, y, alpha, gamma)
    assert np.all(np.isfinite(loss)), x[~np.isfinite(loss)]
    assert np.all(np.isfinite(grad)), x[~np.isfinite(grad)]
    ref.assert_matches(loss, ref.focal(x, y, alpha, gamma), {"x": x, "y": y})
    ref.assert_matches(grad, ref.focal_backward(go, x, y, alpha, gamma), {"x": x, "y": y})
    # The reductions (without the largest logits, whose sum overflows the reference's fsum).
    keep = np.abs(x.astype(np.float64)) <= 1e30
    reductions: tuple[Reduction, ...] = ("mean", "sum")
    for reduction in reductions:
        ref.assert_matches(
            bcers.sigmoid_focal_loss(x[keep], y[keep], alpha, gamma, reduction),
            ref.focal(x[keep], y[keep], alpha, gamma, reduction),
        )
        ref.assert_matches(
            bcers.sigmoid_focal_loss_backward(-1.5, x[keep], y[keep], alpha, gamma, reduction),
            ref.focal_backward(-1.5, x[keep], y[keep], alpha, gamma, reduction),
        )


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_hard_targets_at_large_logits_are_accurate(dtype: np.dtype) -> None:
    """Where torchvision loses everything (1 - p_t rounds to 0; BCE with logits cancels),
    bcers keeps full relative precision: tiny values, not 0, not NaN."""
    x = np.array([30.0, -30.0, 50.0, -50.0, 80.0, -80.0], dtype)
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], dtype)
    for gamma in (0.0, 0.25, 0.5, 2.0):
        loss, grad = bcers.sigmoid_focal_loss_value_and_grad(x, y, 0.25, gamma)
        exact = ref.focal(x, y, 0.25, gamma).value
        exact_grad = ref.focal_backward(None, x, y, 0.25, gamma).value
        # Relatively, wherever the exact value is a normal number of the dtype (in float32,
        # exp(-80 * 1.25) is not); nonzero wherever it does not round to 0.
        normal = np.abs(exact) >= np.finfo(dtype).tiny
        np.testing.assert_allclose(loss[normal], exact[normal], rtol=RTOL[str(dtype)] * 4)
        if gamma <= 0.5:
            assert normal[:4].all()  # +-30, +-50: e^-75 at most, normal in both dtypes
        normal = np.abs(exact_grad) >= np.finfo(dtype).tiny
        np.testing.assert_allclose(grad[normal], exact_grad[normal], rtol=RTOL[str(dtype)] * 4)
        representable = np.abs(exact) >= np.finfo(dtype).smallest_subnormal
        assert np.all(loss[representable] > 0)
        assert np.all(loss >= 0)
        # The gradient's sign: it pushes the logit further the right way.
        assert np.all(np.sign(grad[grad != 0]) == -np.sign(x.astype(np.float64))[grad != 0])


# ---------------------------------------------------------------------------------------------
# gamma = 0 is BCE with logits (times alpha_t).

GAMMA0_ALPHAS = [0.0, 0.25, 0.5, 1.0]  # alpha * y is exact: the FMA alpha_t is mul + add


def _gamma0_data(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.normal(0.0, 6.0, 500), [0.0, -0.0, 20, -20, 88, -88, 1e4, -1e4, np.inf, -np.inf]]
    )
    y = rng.choice([0.0, 1.0, 0.5, 0.3], x.size)
    y[:200] = rng.random(200)
    with np.errstate(over="ignore"):
        return x.astype(dtype).reshape(10, 51), y.astype(dtype).reshape(10, 51)


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
@pytest.mark.parametrize("alpha", GAMMA0_ALPHAS)
def test_gamma_zero_is_alpha_t_times_bce_with_logits(alpha: float, dtype: np.dtype) -> None:
    x, y = _gamma0_data(dtype)
    compute = ref.compute_dtype(dtype)
    yc = y.astype(compute)
    at = (compute.type(alpha) * yc + (compute.type(1) - compute.type(alpha)) * (1 - yc)).astype(
        compute
    )
    bce = bcers.binary_cross_entropy_with_logits(x.astype(compute), yc, reduction="none")
    with np.errstate(invalid="ignore"):
        want = np.where((at == 0) & np.isinf(bce), compute.type(0), at * bce).astype(dtype)
    got = bcers.sigmoid_focal_loss(x, y, alpha, 0.0)
    assert got.dtype == dtype
    assert_identical(got, want)
    if dtype != F16:  # (a float16 weight would be rounded to float16)
        # The same as a weight of alpha_t, every reduction, and the gradients too.
        for reduction in REDUCTIONS:
            assert_identical(
                bcers.sigmoid_focal_loss(x, y, alpha, 0.0, reduction),
                bcers.binary_cross_entropy_with_logits(x, y, at, reduction=reduction),
            )
            assert_identical(
                bcers.sigmoid_focal_loss_backward(0.75, x, y, alpha, 0.0, reduction)
                if reduction != "none"
                else bcers.sigmoid_focal_loss_backward(None, x, y, alpha, 0.0, reduction),
                bcers.binary_cross_entropy_with_logits_backward(
                    0.75 if reduction != "none" else None, x, y, at, reduction=reduction
                ),
            )


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
@pytest.mark.parametrize("alpha", [-1.0, -0.25, -1e-30, -np.inf])
def test_negative_alpha_and_gamma_zero_is_bce_with_logits(alpha: float, dtype: np.dtype) -> None:
    x, y = _gamma0_data(dtype)
    w = np.linspace(0.5, 2.0, 51).astype(dtype)
    for reduction in REDUCTIONS:
        assert_identical(
            bcers.sigmoid_focal_loss(x, y, alpha, 0.0, reduction, w),
            bcers.binary_cross_entropy_with_logits(x, y, w, reduction=reduction),
        )
        g = None if reduction == "none" else 2.0
        assert_identical(
            bcers.sigmoid_focal_loss_backward(g, x, y, alpha, 0.0, reduction, w),
            bcers.binary_cross_entropy_with_logits_backward(g, x, y, w, reduction=reduction),
        )
        fl = bcers.sigmoid_focal_loss_value_and_grad(x, y, alpha, 0.0, reduction, w)
        bl = bcers.binary_cross_entropy_with_logits_value_and_grad(x, y, w, reduction=reduction)
        assert_identical(fl[0], bl[0])
        assert_identical(fl[1], bl[1])


def test_negative_alpha_turns_alpha_t_off() -> None:
    """alpha = -1 is the unweighted focal loss, whatever gamma: alpha = 0.5 halves it."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 4, 300)
    y = rng.random(300)
    for gamma in (0.5, 2.0):
        off = bcers.sigmoid_focal_loss(x, y, -1.0, gamma)
        half = bcers.sigmoid_focal_loss(x, y, 0.5, gamma)
        np.testing.assert_array_equal(off * 0.5, half)  # alpha_t = 0.5 exactly
        assert_identical(off, bcers.sigmoid_focal_loss(x, y, -7.5, gamma))
        ref.assert_matches(off, ref.focal(x, y, -1.0, gamma))


# ---------------------------------------------------------------------------------------------
# The parameters.


def _calls(alpha: Any, gamma: Any) -> dict[str, Callable[[], Any]]:
    x = np.array([0.5, -1.0, 2.0], np.float32)
    y = np.array([1.0, 0.0, 1.0], np.float32)
    return {
        "function": lambda: bcers.sigmoid_focal_loss(x, y, alpha, gamma),
        "keywords": lambda: bcers.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma),
        "mean": lambda: bcers.sigmoid_focal_loss(x, y, alpha, gamma, "mean"),
        "backward": lambda: bcers.sigmoid_focal_loss_backward(None, x, y, alpha, gamma),
        "value_and_grad": lambda: bcers.sigmoid_focal_loss_value_and_grad(x, y, alpha, gamma),
        "class": lambda: bcers.SigmoidFocalLoss(alpha, gamma),
        "class(keywords)": lambda: bcers.SigmoidFocalLoss(alpha=alpha, gamma=gamma),
    }


BAD_GAMMAS = [np.nan, np.inf, -np.inf, -1.0, -1e-300, -0.5, 1e400]
BAD_ALPHAS = [np.nan, 1.0000001, 1.5, 2.0, np.inf, 1e300]


def exact(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize("gamma", BAD_GAMMAS, ids=repr)
def test_bad_gamma(gamma: float) -> None:
    # The value as bcers prints values: Python's repr of the float, NaN spelled "NaN".
    text = ref.value_text(gamma, F64)
    message = f"gamma must be a finite number >= 0, got {text}"
    for name, call in _calls(0.25, gamma).items():
        with pytest.raises(ValueError, match=exact(message)):
            call()
        assert name


@pytest.mark.parametrize("alpha", BAD_ALPHAS, ids=repr)
def test_bad_alpha(alpha: float) -> None:
    text = ref.value_text(alpha, F64)
    message = f"alpha must be at most 1 (negative turns the weighting off), got {text}"
    for name, call in _calls(alpha, 2.0).items():
        with pytest.raises(ValueError, match=exact(message)):
            call()
        assert name


def test_parameter_messages_print_like_python() -> None:
    assert ref.value_text(1.5, F64) == repr(1.5)
    with pytest.raises(ValueError, match=exact("gamma must be a finite number >= 0, got -1.0")):
        bcers.sigmoid_focal_loss([0.0], [1.0], gamma=-1)
    with pytest.raises(ValueError, match=exact("gamma must be a finite number >= 0, got NaN")):
        bcers.SigmoidFocalLoss(gamma=float("nan"))
    message = "alpha must be at most 1 (negative turns the weighting off), got 1.0000001"
    with pytest.raises(ValueError, match=exact(message)):
        bcers.SigmoidFocalLoss(alpha=1.0000001)


@pytest.mark.parametrize(
    ("alpha", "gamma"),
    [
        (1.0, 2.0),
        (-5.0, 2.0),
        (-np.inf, 0.0),
        (0.0, 0.0),
        (1, 3),
        (0.25, 1e3),
        (np.float32(0.5), 1),
    ],
    ids=repr,
)
def test_good_parameters(alpha: float, gamma: float) -> None:
    for call in _calls(alpha, gamma).values():
        call()
    loss_fn = bcers.SigmoidFocalLoss(alpha, gamma)
    assert loss_fn.alpha == float(alpha)
    assert loss_fn.gamma == float(gamma)
    assert type(loss_fn.alpha) is float
    assert type(loss_fn.gamma) is float


def test_pos_weight_is_not_an_argument() -> None:
    x = np.zeros(2, np.float32)
    calls: list[Callable[[], Any]] = [
        lambda: bcers.sigmoid_focal_loss(x, x, pos_weight=x),  # type: ignore[call-arg]
        lambda: bcers.sigmoid_focal_loss_backward(None, x, x, pos_weight=x),  # type: ignore[call-arg]
        lambda: bcers.sigmoid_focal_loss_value_and_grad(x, x, pos_weight=x),  # type: ignore[call-arg]
        lambda: bcers.SigmoidFocalLoss(pos_weight=x),  # type: ignore[call-arg]
    ]
    for call in calls:
        with pytest.raises(TypeError, match="unexpected keyword argument 'pos_weight'"):
            call()
    assert not hasattr(bcers.SigmoidFocalLoss(), "pos_weight")


def test_class_attributes_repr_and_defaults() -> None:
    loss_fn = bcers.SigmoidFocalLoss()
    assert repr(loss_fn) == "SigmoidFocalLoss(alpha=0.25, gamma=2.0, reduction='mean')"
    assert loss_fn.alpha == 0.25
    assert loss_fn.gamma == 2.0
    assert loss_fn.reduction == "mean"
    assert loss_fn.weight is None
    other = bcers.SigmoidFocalLoss(alpha=-1, gamma=0, reduction="none", weight=[1.0, 2.0])
    assert repr(other) == "SigmoidFocalLoss(alpha=-1.0, gamma=0.0, reduction='none')"
    assert isinstance(other.weight, np.ndarray)
    np.testing.assert_array_equal(other.weight, [1.0, 2.0])
    x = np.array([0.5, -2.0], np.float32)
    y = np.array([1.0, 0.0], np.float32)
    # The function's default reduction is torchvision's "none"; the class's torch's "mean".
    assert isinstance(bcers.sigmoid_focal_loss(x, y), np.ndarray)
    assert isinstance(bcers.sigmoid_focal_loss_backward(None, x, y), np.ndarray)
    mean = loss_fn(x, y)
    assert isinstance(mean, np.float32)
    assert_identical(mean, bcers.sigmoid_focal_loss(x, y, 0.25, 2.0, "mean"))
    assert_identical(other(x, y), bcers.sigmoid_focal_loss(x, y, -1, 0, weight=[1.0, 2.0]))
    with pytest.raises(ValueError, match=exact("avg is not a valid value for reduction")):
        bcers.SigmoidFocalLoss(reduction="avg")  # type: ignore[arg-type]


def test_class_attributes_are_used_at_call_time() -> None:
    x = np.array([0.5, -2.0, 3.0])
    y = np.array([1.0, 0.0, 0.0])
    loss_fn = bcers.SigmoidFocalLoss(reduction="sum")
    loss_fn.gamma = 0.0
    loss_fn.alpha = -1.0
    assert_identical(loss_fn(x, y), bcers.binary_cross_entropy_with_logits(x, y, reduction="sum"))
    loss_fn.weight = np.array([1.0, 2.0, 3.0])
    assert_identical(
        loss_fn.backward(x, y, 2.0),
        bcers.binary_cross_entropy_with_logits_backward(
            2.0, x, y, np.array([1.0, 2.0, 3.0]), reduction="sum"
        ),
    )
    loss_fn.gamma = float("nan")  # checked again by the call
    with pytest.raises(ValueError, match=exact("gamma must be a finite number >= 0, got NaN")):
        loss_fn(x, y)


# ---------------------------------------------------------------------------------------------
# dtypes, operands, layouts, threads.


def _data(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 4.0, shape)
    y = rng.random(shape)
    y.flat[::3] = np.round(y.flat[::3])
    return x, y


@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (-1.0, 0.5), (0.75, 1.5)])
def test_float16_is_computed_in_float32(alpha: float, gamma: float) -> None:
    x64, y64 = _data((7, 33))
    x = x64.astype(np.float16)
    y = y64.astype(np.float16)
    w = np.linspace(0.25, 2.0, 33).astype(np.float16)
    g = np.linspace(-2.0, 2.0, 7 * 33).reshape(7, 33).astype(np.float16)
    x32, y32, w32, g32 = (a.astype(np.float32) for a in (x, y, w, g))
    for reduction in REDUCTIONS:
        got = bcers.sigmoid_focal_loss(x, y, alpha, gamma, reduction, w)
        want = bcers.sigmoid_focal_loss(x32, y32, alpha, gamma, reduction, w32)
        assert got.dtype == F16
        assert_identical(got, np.asarray(want).astype(np.float16)[()])
        ref.assert_matches(got, ref.focal(x, y, alpha, gamma, reduction, w))
        go, go32 = (g, g32) if reduction == "none" else (np.float16(1.5), np.float32(1.5))
        grad = bcers.sigmoid_focal_loss_backward(go, x, y, alpha, gamma, reduction, w)
        assert grad.dtype == F16
        assert_identical(
            grad,
            bcers.sigmoid_focal_loss_backward(go32, x32, y32, alpha, gamma, reduction, w32).astype(
                np.float16
            ),
        )
        ref.assert_matches(grad, ref.focal_backward(go, x, y, alpha, gamma, reduction, w))
        loss, grad1 = bcers.sigmoid_focal_loss_value_and_grad(x, y, alpha, gamma, reduction, w)
        assert_identical(loss, got)
        assert grad1.dtype == F16


@pytest.mark.parametrize("dtype", [F32, F64, F16], ids=str)
@pytest.mark.parametrize(
    "target_dtype", [np.int8, np.int64, np.uint8, np.uint64, bool, np.float16, np.float64], ids=str
)
def test_targets_of_any_real_dtype_are_cast(target_dtype: Any, dtype: np.dtype) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 3.0, (4, 9)).astype(dtype)
    labels = rng.integers(0, 2, (4, 9))
    y = labels.astype(target_dtype)
    y_as_input = labels.astype(dtype)
    for reduction in REDUCTIONS:
        assert_identical(
            bcers.sigmoid_focal_loss(x, y, reduction=reduction),
            bcers.sigmoid_focal_loss(x, y_as_input, reduction=reduction),
        )
        assert_identical(
            bcers.sigmoid_focal_loss_backward(None, x, y, reduction=reduction),
            bcers.sigmoid_focal_loss_backward(None, x, y_as_input, reduction=reduction),
        )
    # Python lists and scalars: float64 arrays.
    out = bcers.sigmoid_focal_loss([0.5, -1.0], [1, 0])
    assert out.dtype == F64
    ref.assert_matches(out, ref.focal([0.5, -1.0], [1.0, 0.0]))
    scalar = bcers.sigmoid_focal_loss(0.5, 1.0)
    assert isinstance(scalar, np.ndarray)
    assert scalar.shape == ()


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize(
    "wshape", [(), (1,), (5,), (1, 5), (3, 1), (3, 5), (4, 1, 5), (1, 3, 1), (4, 3, 5)], ids=str
)
def test_weight_broadcasts_like_bce(wshape: tuple[int, ...], dtype: np.dtype) -> None:
    shape = (4, 3, 5)
    x, y = _data(shape, 9)
    x, y = x.astype(dtype), y.astype(dtype)
    w = np.random.default_rng(2).uniform(-1.0, 2.0, wshape).astype(dtype)
    full = np.ascontiguousarray(np.broadcast_to(w, shape))
    g = np.random.default_rng(3).normal(0.0, 1.0, shape[1:]).astype(dtype)
    for reduction in REDUCTIONS:
        got = bcers.sigmoid_focal_loss(x, y, 0.25, 2.0, reduction, w)
        with_full = bcers.sigmoid_focal_loss(x, y, 0.25, 2.0, reduction, full)
        if reduction == "none":
            assert_identical(got, with_full)
        else:  # the float64 sum may follow another order
            elements = bcers.sigmoid_focal_loss(x, y, 0.25, 2.0, "none", full)
            assert_sums_agree(got, with_full, elements, reduction == "mean")
        ref.assert_matches(got, ref.focal(x, y, 0.25, 2.0, reduction, w))
        go = g if reduction == "none" else 0.5
        grad = bcers.sigmoid_focal_loss_backward(go, x, y, 0.25, 2.0, reduction, w)
        assert_identical(
            grad, bcers.sigmoid_focal_loss_backward(go, x, y, 0.25, 2.0, reduction, full)
        )
        ref.assert_matches(grad, ref.focal_backward(go, x, y, 0.25, 2.0, reduction, w))
        loss_fn = bcers.SigmoidFocalLoss(0.25, 2.0, reduction, w)
        assert_identical(loss_fn(x, y), got)
        assert_identical(loss_fn.backward(x, y, go), grad)
    # (C,) over (N, C): column j scaled by w[j] (a weight of 2 doubles exactly).
    w2 = np.array([1.0, 2.0, 0.0, 4.0, 0.5], dtype)
    base = bcers.sigmoid_focal_loss(x, y)
    np.testing.assert_array_equal(bcers.sigmoid_focal_loss(x, y, weight=w2), base * w2)


def _layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
    strided = big[::2, ::3]
    strided[...] = a
    return {
        "strided": strided,
        "transposed": np.ascontiguousarray(a.T).T,
        "F": np.asfortranarray(a),
        "reversed": np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1],
    }


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
def test_layouts_give_the_results_of_contiguous_copies(dtype: np.dtype) -> None:
    x, y = _data((37, 70), 11)
    x, y = x.astype(dtype), y.astype(dtype)
    w = np.linspace(0.5, 1.5, 70).astype(dtype)
    g = np.random.default_rng(4).normal(0.0, 1.0, (37, 70)).astype(dtype)
    lx, ly, lg = _layouts(x), _layouts(y), _layouts(g)
    elements = bcers.sigmoid_focal_loss(x, y, weight=w)
    for name in lx:
        for xv, yv, gv in [(lx[name], ly[name], lg[name]), (lx[name], y, g), (x, ly[name], g)]:
            for reduction in REDUCTIONS:
                got = bcers.sigmoid_focal_loss(xv, yv, reduction=reduction, weight=w)
                want = bcers.sigmoid_focal_loss(x, y, reduction=reduction, weight=w)
                if reduction == "none":
                    assert_identical(got, want)
                else:
                    assert_sums_agree(got, want, elements, reduction == "mean")
                go, go_c = (gv, g) if reduction == "none" else (2.0, 2.0)
                assert_identical(
                    bcers.sigmoid_focal_loss_backward(go, xv, yv, reduction=reduction, weight=w),
                    bcers.sigmoid_focal_loss_backward(go_c, x, y, reduction=reduction, weight=w),
                )
                loss, grad = bcers.sigmoid_focal_loss_value_and_grad(
                    xv, yv, reduction=reduction, weight=w
                )
                assert_identical(loss, got)
                assert grad.flags.c_contiguous or grad.flags.f_contiguous


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_broadcast_inputs_give_the_results_of_copies(dtype: np.dtype) -> None:
    x, y = _data((1, 64), 12)
    xb = np.broadcast_to(x.astype(dtype), (50, 64))
    yb = np.broadcast_to(y.astype(dtype), (50, 64))
    y_full = np.random.default_rng(1).random((50, 64)).astype(dtype)
    for xv, yv in [(xb, yb), (xb, y_full), (np.ascontiguousarray(xb), yb)]:
        xc, yc = np.ascontiguousarray(xv), np.ascontiguousarray(yv)
        elements = bcers.sigmoid_focal_loss(xc, yc)
        for reduction in REDUCTIONS:
            got = bcers.sigmoid_focal_loss(xv, yv, reduction=reduction)
            want = bcers.sigmoid_focal_loss(xc, yc, reduction=reduction)
            if reduction == "none":
                assert_identical(got, want)
                assert got.flags.writeable
                assert not np.shares_memory(got, xv)
            else:
                assert_sums_agree(got, want, elements, reduction == "mean")
            assert_identical(
                bcers.sigmoid_focal_loss_backward(None, xv, yv, reduction=reduction),
                bcers.sigmoid_focal_loss_backward(None, xc, yc, reduction=reduction),
            )


@pytest.mark.parametrize("dtype", [F32, F64, F16], ids=str)
def test_large_arrays_are_identical_for_one_and_two_threads(dtype: np.dtype) -> None:
    """> 65536 elements run on the thread pool: the reductions are the same bits."""
    x, y = _data((3, 23_339), 13)  # rows longer than a 16384-element chunk
    x, y = x.astype(dtype), y.astype(dtype)
    w = np.linspace(0.5, 1.5, 23_339).astype(dtype)
    saved = bcers.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            bcers.set_num_threads(threads)
            assert bcers.get_num_threads() == threads
            results.append(
                [
                    bcers.sigmoid_focal_loss(x, y, reduction="mean", weight=w),
                    bcers.sigmoid_focal_loss(x, y, reduction="sum", weight=w),
                    bcers.sigmoid_focal_loss(x.T, y.T, 0.5, 0.5, reduction="sum"),
                    *bcers.sigmoid_focal_loss_value_and_grad(x, y, reduction="mean", weight=w),
                    bcers.sigmoid_focal_loss(x, y, reduction="none", weight=w),
                    bcers.SigmoidFocalLoss(reduction="sum")(x[::-1], y[::-1]),
                ]
            )
    finally:
        bcers.set_num_threads(saved)
    assert bcers.get_num_threads() == saved
    for a, b in zip(*results):
        assert_identical(a, b)
    ref.assert_matches(results[0][0], ref.focal(x, y, reduction="mean", weight=w))
    ref.assert_matches(results[0][1], ref.focal(x, y, reduction="sum", weight=w))


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0, 2)], ids=str)
def test_empty_inputs(shape: tuple[int, ...], dtype: np.dtype) -> None:
    x = np.zeros(shape, dtype)
    w = np.ones(shape[-1:], np.float32)
    mean = bcers.sigmoid_focal_loss(x, x, reduction="mean", weight=w)
    total = bcers.sigmoid_focal_loss(x, x, reduction="sum", weight=w)
    none = bcers.sigmoid_focal_loss(x, x, weight=w)
    assert isinstance(mean, np.floating)
    assert mean.dtype == dtype
    assert np.isnan(mean)
    assert isinstance(total, np.floating)
    assert total == 0
    assert none.shape == shape
    assert none.dtype == dtype
    for r in REDUCTIONS:
        g = bcers.sigmoid_focal_loss_backward(None, x, x, reduction=r, weight=w)
        assert g.shape == shape
        assert g.dtype == dtype
        loss, g = bcers.sigmoid_focal_loss_value_and_grad(x, x, reduction=r, weight=w)
        assert g.shape == shape
        np.testing.assert_array_equal(loss, {"mean": mean, "sum": total, "none": none}[r])


@pytest.mark.parametrize("dtype", [F16, F32, F64], ids=str)
def test_zero_dimensional_inputs(dtype: np.dtype) -> None:
    x, y, w = np.array(-1.5, dtype), np.array(1.0, dtype), np.array(2.0, np.float32)
    for r in REDUCTIONS:
        out = bcers.sigmoid_focal_loss(x, y, 0.25, 2.0, r, w)
        ref.assert_matches(out, ref.focal(x, y, 0.25, 2.0, r, w))
        grad = bcers.sigmoid_focal_loss_backward(np.array(3.0), x, y, 0.25, 2.0, r, w)
        assert grad.shape == ()
        ref.assert_matches(grad, ref.focal_backward(np.array(3.0), x, y, 0.25, 2.0, r, w))
