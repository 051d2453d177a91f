"""The keywords beyond torch's, for the three losses and every entry point: label smoothing,
masks (and ``numpy.ma.MaskedArray`` operands), ``reduction="weighted_mean"``, reductions over
some axes (``axis``, ``keepdims``), and the ``derivatives`` functions and methods with the
target gradient and the second derivative.

What decides the expected values:

* ``reference.expected_outputs``, float64 NumPy written from the losses' definitions (the
  formulas are in ``reference.py``), with the error bound of a correct implementation
  computing in the compute dtype (``reference.py``'s error model: ``RTOL`` 1e-5 / 1e-12 of
  the magnitude of each element's terms, the summation bound for the reductions, the bound
  of the smoothed target carried through each output). The reference's target gradients and
  second derivatives are themselves checked against finite differences of the losses in
  100-digit decimal arithmetic (:func:`test_reference_is_the_derivative_of_the_loss`).
* Real torch (``fixtures/torch_extra.json``): autograd's target gradient and double backward,
  torch's two-class ``cross_entropy(label_smoothing=...)``, torchvision's focal loss. torch
  rounds differently from the exact value (cancellations: ``1 - sigmoid(x)``, ``1 - p_t``, a
  sum ``(1-y) x + ...`` that cancels): each torch value is held to the exact value within
  ``TORCH_ULPS`` units of roundoff of the magnitudes its own formula adds (and, for the focal
  loss, the conditioning of ``1 - p_t`` and of ``sigmoid``'s derivative); bcers is held to the
  exact value within its own, tighter, bound. Where torch's definition differs on purpose
  (BCE's target gradient of the clamped log, the second derivative's ``max(x^2, EPS)``
  against torch's ``(x + EPS)^2``), the difference is asserted instead.
* Properties (hypothesis, in the style of ``test_properties.py``, with its shapes, layouts and
  values): the new keywords against the reference; a mask equals dropping the elements; a
  reduction over axes equals NumPy's reduction of the unreduced loss; ``weighted_mean`` and
  ``mean`` equal ``sum`` over their denominators; every entry point (functions, classes,
  ``derivatives``) computes the same bits.
* The GPU (``bcers.gpu``, skipped without an adapter unless ``BCERS_REQUIRE_GPU=1``): label
  smoothing, ``weighted_mean``, the target gradient and the second derivative as on the CPU;
  a mask and axes refused by name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reference as ref
from hypothesis import given, note
from hypothesis import strategies as st
from test_properties import (
    FOCAL_PARAMETERS,
    Operand,
    _apply_layout,
    broadcast_shapes,
    operands,
    shapes,
)

import bcers
from bcers import gpu

F16, F32, F64 = ref.F16, ref.F32, ref.F64
FLOAT_DTYPES = (F16, F32, F64)
OUTPUTS = ref.OUTPUTS
REDUCTIONS = ("none", "mean", "sum", "weighted_mean")
KINDS = ("bce", "logits", "focal")

FIXTURE = Path(__file__).parent / "fixtures" / "torch_extra.json"
EXTRA: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
BCE_DERIVATIVES: list[dict[str, Any]] = EXTRA["bce_derivatives"]
LABEL_SMOOTHING: list[dict[str, Any]] = EXTRA["label_smoothing"]
FOCAL: list[dict[str, Any]] = EXTRA["focal"]

#: float32's and float64's unit roundoff (torch computes in the fixture's dtype).
UNIT = {"float32": 2.0**-24, "float64": 2.0**-53}
#: Units of roundoff of the magnitude of torch's terms allowed between torch and the exact
#: value. torch's formulas compose a handful of roundings each (the two-class cross entropy
#: with label smoothing the most: the smoothing, a log-softmax of two logits, their weighted
#: sum); the fixture needs at most about 3.6 (torchvision's second derivative; 2.8 elsewhere),
#: so 16 leaves a margin of 4, while a wrong formula (a missing term, a factor, a sign, another
#: EPS) is off by orders of magnitude more.
TORCH_ULPS = 16.0
#: On top: a few times the smallest normal number. Below it torch's results lose their
#: relative accuracy (``sigmoid(-100)`` in float32 is 0 in torch, a subnormal 3.7e-44
#: exactly), as ``reference.ATOL`` allows bcers; nothing above ~1e-37 (float32) or ~1e-307
#: (float64) is affected.
TORCH_FLOOR = {d: 4 * float(np.finfo(d).tiny) for d in UNIT}


# ---------------------------------------------------------------------------------------------
# One loss, every entry point.


@dataclass(frozen=True)
class Loss:
    """One loss of the family (``"bce"``, ``"logits"``, ``"focal"`` with alpha and gamma):
    its functions, class and reference, called alike."""

    kind: str
    alpha: float = 0.25
    gamma: float = 2.0

    def __str__(self) -> str:
        return self.kind if self.kind != "focal" else f"focal({self.alpha},{self.gamma})"

    def _kw(self, weight: Any, pos_weight: Any, reduction: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"weight": weight, "reduction": reduction}
        if self.kind == "logits":
            kw["pos_weight"] = pos_weight
        else:
            assert pos_weight is None
        if self.kind == "focal":
            kw.update(alpha=self.alpha, gamma=self.gamma)
        return kw

    def forward(
        self,
        x: Any,
        y: Any,
        weight: Any = None,
        pos_weight: Any = None,
        reduction: str = "mean",
        **options: Any,
    ) -> Any:
        fn = {
            "bce": bcers.binary_cross_entropy,
            "logits": bcers.binary_cross_entropy_with_logits,
            "focal": bcers.sigmoid_focal_loss,
        }[self.kind]
        return fn(x, y, **self._kw(weight, pos_weight, reduction), **options)

    def backward(
        self,
        g: Any,
        x: Any,
        y: Any,
        weight: Any = None,
        pos_weight: Any = None,
        reduction: str = "mean",
        **options: Any,
    ) -> Any:
        fn = {
            "bce": bcers.binary_cross_entropy_backward,
            "logits": bcers.binary_cross_entropy_with_logits_backward,
            "focal": bcers.sigmoid_focal_loss_backward,
        }[self.kind]
        return fn(g, x, y, **self._kw(weight, pos_weight, reduction), **options)

    def value_and_grad(
        self,
        x: Any,
        y: Any,
        weight: Any = None,
        pos_weight: Any = None,
        reduction: str = "mean",
        **options: Any,
    ) -> Any:
        fn = {
            "bce": bcers.binary_cross_entropy_value_and_grad,
            "logits": bcers.binary_cross_entropy_with_logits_value_and_grad,
            "focal": bcers.sigmoid_focal_loss_value_and_grad,
        }[self.kind]
        return fn(x, y, **self._kw(weight, pos_weight, reduction), **options)

    def derivatives(
        self,
        x: Any,
        y: Any,
        weight: Any = None,
        pos_weight: Any = None,
        reduction: str = "mean",
        **options: Any,
    ) -> bcers.Derivatives:
        fn = {
            "bce": bcers.binary_cross_entropy_derivatives,
            "logits": bcers.binary_cross_entropy_with_logits_derivatives,
            "focal": bcers.sigmoid_focal_loss_derivatives,
        }[self.kind]
        return fn(x, y, **self._kw(weight, pos_weight, reduction), **options)

    def make(
        self, weight: Any = None, pos_weight: Any = None, reduction: str = "mean", **options: Any
    ) -> Any:
        """The loss class, constructed with ``options`` (label_smoothing, axis, keepdims)."""
        if self.kind == "bce":
            assert pos_weight is None
            return bcers.BCELoss(weight, reduction=reduction, **options)
        if self.kind == "logits":
            return bcers.BCEWithLogitsLoss(
                weight, reduction=reduction, pos_weight=pos_weight, **options
            )
        assert pos_weight is None
        return bcers.SigmoidFocalLoss(self.alpha, self.gamma, reduction, weight, **options)

    def expected(
        self,
        x: Any,
        y: Any,
        weight: Any = None,
        pos_weight: Any = None,
        reduction: str = "mean",
        **options: Any,
    ) -> dict[str, ref.Expected]:
        return ref.expected_outputs(
            self.kind,
            x,
            y,
            weight,
            pos_weight,
            reduction,
            alpha=self.alpha,
            gamma=self.gamma,
            **options,
        )


LOSSES = [Loss("bce"), Loss("logits"), Loss("focal", 0.25, 2.0), Loss("focal", -1.0, 0.5)]
LOSS_IDS = [str(loss) for loss in LOSSES]


def sample(
    kind: str, shape: tuple[int, ...], dtype: Any, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """An input of ``dtype`` and a float64 target for ``kind``: probabilities with 0 and 1
    among them for BCE; logits with large ones among them, and targets (soft, hard, and
    outside [0, 1] for BCE with logits) for the others."""
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    if kind == "bce":
        x = rng.uniform(0.0, 1.0, n)
        y = np.where(rng.random(n) < 0.5, rng.uniform(0.0, 1.0, n), rng.integers(0, 2, n))
        x[rng.random(n) < 0.05] = 0.0
        x[rng.random(n) < 0.05] = 1.0
    else:
        x = rng.normal(0.0, 4.0, n)
        x[rng.random(n) < 0.05] = 30.0
        x[rng.random(n) < 0.05] = -30.0
        y = np.where(rng.random(n) < 0.5, rng.uniform(0.0, 1.0, n), rng.integers(0, 2, n))
        if kind == "logits":
            y[rng.random(n) < 0.1] = rng.uniform(-1.0, 2.0)
    return x.reshape(shape).astype(dtype), y.reshape(shape)


def check(actual: Any, expected: ref.Expected, what: str) -> None:
    """``reference.assert_matches``, naming what is compared."""
    try:
        ref.assert_matches(actual, expected)
    except AssertionError as e:
        raise AssertionError(f"{what}: {e}") from None


def assert_identical(a: Any, b: Any) -> None:
    """The same type, dtype, shape and bits; a NaN equals any NaN (its sign and payload depend
    on whether an element fell in a vector body or a scalar tail, which says nothing)."""
    assert type(a) is type(b), (type(a), type(b))
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert a.shape == b.shape, (a.shape, b.shape)
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b)), (a, b)
    u = f"u{a.dtype.itemsize}"
    assert np.array_equal(a[~nan].view(u), b[~nan].view(u)), (a, b)


def assert_sums_agree(a: Any, b: Any, terms: np.ndarray, den: float = 1.0) -> None:
    """Two float64 sums of the same ``terms`` in different orders, divided by ``den`` and
    rounded once to the result dtype: within the worst-case summation error of each, and one
    rounding step."""
    assert type(a) is type(b), (type(a), type(b))
    if not (np.isfinite(a) and np.isfinite(b)):
        assert_identical(a, b)
        return
    n = max(terms.size, 1)
    bound = 2 * (n + 1) * 2.0**-53 * float(np.sum(np.abs(terms.astype(np.float64)))) / abs(den)
    bound += float(np.spacing(np.abs(b)))
    assert abs(float(a) - float(b)) <= bound, (a, b, bound)


def check_all(d: bcers.Derivatives, expected: dict[str, ref.Expected], what: str) -> None:
    for name, e in expected.items():
        check(getattr(d, name), e, f"{what} {name}")


# ---------------------------------------------------------------------------------------------
# The reference's derivatives are the loss's: finite differences in 100-digit arithmetic.

PREC = 100
STEP = Decimal("1e-25")  # truncation ~STEP^2, rounding ~10^-PREC / STEP^2: both below 1e-40


def _decimal_loss(
    kind: str, x: Decimal, y: Decimal, w: Decimal, pw: Decimal, a: float, g: float
) -> Decimal:
    """The loss of one element, from its definition (no stable rewriting: the precision makes
    cancellation harmless)."""
    one = Decimal(1)
    if kind == "bce":
        floor = Decimal(ref.LOG_FLOOR)
        return -w * (y * max(x.ln(), floor) + (one - y) * max((one - x).ln(), floor))
    softplus_neg = (one + (-x).exp()).ln()  # log(1 + e^-x) = -logsigmoid(x)
    if kind == "logits":
        return w * ((one - y) * x + (one + (pw - one) * y) * softplus_neg)
    p = one / (one + (-x).exp())
    ce = -(y * p.ln() + (one - y) * (one - p).ln())
    q = one - (p * y + (one - p) * (one - y))
    alpha = Decimal(a)
    alpha_t = alpha * y + (one - alpha) * (one - y) if a >= 0 else one
    return w * alpha_t * ce * (Decimal(g) * q.ln()).exp()


def _decimal_outputs(
    kind: str, x: float, y: float, w: float, pw: float, a: float, g: float
) -> tuple[float, ...]:
    """The loss, and its derivatives by central differences: input, target, second input."""
    with localcontext() as ctx:
        ctx.prec = PREC
        X, Y, W, PW = (Decimal(v) for v in (x, y, w, pw))

        def f(dx: Decimal, dy: Decimal) -> Decimal:
            return _decimal_loss(kind, X + dx, Y + dy, W, PW, a, g)

        h, zero = STEP, Decimal(0)
        f0 = f(zero, zero)
        grad = (f(h, zero) - f(-h, zero)) / (2 * h)
        grad_target = (f(zero, h) - f(zero, -h)) / (2 * h)
        hess = (f(h, zero) - 2 * f0 + f(-h, zero)) / (h * h)
        return float(f0), float(grad), float(grad_target), float(hess)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_is_the_derivative_of_the_loss(kind: str) -> None:
    """The reference's closed forms (float64) against the derivatives of the loss as defined,
    within the reference's own bound (1e-12 of the terms: float64's rounding is ~1e-16, a
    wrong term is off by far more). BCE's second derivative is compared where ``max(x^2,
    EPS)`` does not act (there it is the derivative of the EPS-bounded gradient, by design).
    Includes negative focal second derivatives (checked to occur)."""
    if kind == "bce":
        xs = [1e-5, 0.02, 0.3, 0.5, 0.77, 0.999, 1 - 1e-5]
        ys = [0.0, 1.0, 0.5, 0.1, 0.9, 1e-3]
        params = [(0.25, 2.0)]
        pws = [1.0]
    else:
        xs = [-30.0, -12.0, -5.0, -1.5, -0.3, 0.0, 0.2, 1.0, 4.0, 12.0, 30.0]
        ys = [0.0, 1.0, 0.5, 0.1, 0.9, 1e-3] + ([-0.5, 1.7] if kind == "logits" else [])
        params = [(0.25, 2.0)]
        pws = [1.0, 3.0, 0.5] if kind == "logits" else [1.0]
        if kind == "focal":
            params = [(0.25, 2.0), (-1.0, 0.5), (1.0, 0.0), (0.0, 5.0), (0.5, 1.0), (0.75, 0.3)]
    negative_hess = 0
    for (alpha, gamma), pw in [(p, w) for p in params for w in pws]:
        grid_x, grid_y = np.meshgrid(np.array(xs), np.array(ys))
        x, y = grid_x.ravel(), grid_y.ravel()
        loss = Loss(kind, alpha, gamma)
        expected = loss.expected(x, y, 1.5, pw if kind == "logits" else None, "none")
        for i in range(x.size):
            exact = _decimal_outputs(kind, x[i], y[i], 1.5, pw, alpha, gamma)
            for name, v in zip(OUTPUTS, exact):
                e = expected[name]
                assert abs(e.value[i] - v) <= e.error[i], (str(loss), pw, x[i], y[i], name, v)
            negative_hess += exact[3] < 0
    assert (negative_hess > 0) == (kind == "focal")


# ---------------------------------------------------------------------------------------------
# Golden values from real torch.


def _array(spec: dict[str, Any]) -> np.ndarray:
    return np.array(spec["value"], dtype=spec["dtype"]).reshape(spec["shape"])


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def torch_magnitudes(
    kind: str, x: np.ndarray, y: np.ndarray, w: np.ndarray, pw: np.ndarray, ls: float
) -> dict[str, np.ndarray]:
    """Per element (weighted, before grad_output and the reduction): the sum of the absolute
    values of the terms torch's formula for each output adds, whose roundings (a few units
    each) make torch's error.

    BCE: ``-(y log x + (1-y) log(1-x))`` (each log within ~2u after ``1 - x`` is rounded), the
    gradient ``(x - y) / max(x (1-x), EPS)`` (``x - y`` cancels), the target gradient
    ``log(1-x) - log x``, double backward's ``(x^2 - 2xy + y) / ((x+EPS)^2 (1-x+EPS)^2)`` (its
    numerator cancels). BCE with logits (and the two-class cross entropy, the same function of
    the smoothed target ``ys``): ``(1-ys) x - (1 + (pw-1) ys) logsigmoid(x)``, the gradient
    ``sigmoid(x) (1 + (pw-1) ys) - pw ys``, the target gradient ``-x + (pw - 1) softplus(-x)``
    (or ``pw softplus(-x) - softplus(x)``), the second derivative ``sigmoid(x) (1 -
    sigmoid(x))`` (``1 - sigmoid`` cancels: absolute error ~u). The two-class cross entropy
    (``kind`` "ce2"): ``-((1-ys) l0 + ys l1)`` with the log-softmax ``l0 = -lse``, ``l1 = x -
    lse``, ``lse = max(x, 0) + log(1 + exp(-|x|))`` (the log of a sum in [1, 2]: within ~u of
    1, so each within ~u of ``|x| + lse + 1``), its gradient ``sigmoid(x) - ys``, its target
    gradient ``(1 - ls) (l0 - l1)``."""
    with np.errstate(all="ignore"):
        if kind == "ce2":
            ys = y * (1.0 - ls) + ls / 2.0
            lse = _softplus(x) + 1.0
            return {
                "value": np.abs(1.0 - ys) * lse + np.abs(ys) * (np.abs(x) + lse),
                "grad": _sigmoid(x) + np.abs(ys),
                "grad_target": (1.0 - ls) * (np.abs(x) + 2.0 * lse),
            }
        if kind == "bce":
            log_x = np.maximum(np.log(x), ref.LOG_FLOOR)
            log_1mx = np.maximum(np.log1p(-x), ref.LOG_FLOOR)
            logs = w * (np.abs(log_x) + np.abs(log_1mx) + 2.0)
            return {
                "value": logs,
                "grad": w * (np.abs(x) + np.abs(y)) / np.maximum(x * (1.0 - x), ref.EPS),
                "grad_target": logs,
                "hess": w * (x * x + 2.0 * x * np.abs(y) + np.abs(y)) / (x * (1.0 - x)) ** 2,
            }
        ys = y * (1.0 - ls) + ls / 2.0
        spread = np.abs((pw - 1.0) * ys)
        lw = np.abs(1.0 + (pw - 1.0) * ys)
        s = _sigmoid(x)
        return {
            "value": w * (np.abs(1.0 - ys) * np.abs(x) + (lw + spread) * _softplus(-x)),
            "grad": w * (s * (lw + spread) + np.abs(pw * ys)),
            "grad_target": w * (1.0 - ls) * (np.abs(x) + (np.abs(pw) + 1.0) * _softplus(np.abs(x))),
            "hess": w * lw * s * (1.0 + _sigmoid(-x)),
        }


@dataclass
class TorchCase:
    """One case of ``bce_derivatives`` or ``label_smoothing``, as the calls take it."""

    loss: Loss
    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None
    pos_weight: np.ndarray | None
    grad_output: np.ndarray
    label_smoothing: float
    dtype: str
    formula: str  # torch's: "bce", "logits" or "ce2" (the two-class cross entropy)

    @classmethod
    def of(cls, case: dict[str, Any]) -> TorchCase:
        a = case["args"]
        kind = "bce" if case["function"] == "binary_cross_entropy" else "logits"
        formula = "ce2" if "label_smoothing" in case.get("params", {}) else kind
        return cls(
            Loss(kind),
            _array(a["input"]),
            _array(a["target"]),
            _array(a["weight"]) if "weight" in a else None,
            _array(a["pos_weight"]) if "pos_weight" in a else None,
            _array(case["grad_output_none"]),
            case.get("params", {}).get("label_smoothing", 0.0),
            case["dtype"],
            formula,
        )

    def magnitudes(self) -> dict[str, np.ndarray]:
        shape = self.x.shape
        w = np.abs(np.broadcast_to(1.0 if self.weight is None else self.weight, shape))
        pw = np.broadcast_to(1.0 if self.pos_weight is None else self.pos_weight, shape)
        x, y = self.x.astype(np.float64), self.y.astype(np.float64)
        return torch_magnitudes(self.formula, x, y, w.astype(np.float64), pw, self.label_smoothing)


def torch_tolerance(
    tc: TorchCase, name: str, reduction: str, values: np.ndarray
) -> np.ndarray | float:
    """How far torch's ``name`` (reduced by ``reduction``) may be from the exact value:
    ``TORCH_ULPS`` units of its terms' magnitudes, through grad_output and the reduction; a
    reduced loss adds torch's summation in the dtype (``n u sum(|v|)``)."""
    u = UNIT[tc.dtype]
    m = tc.magnitudes()[name]
    n = tc.x.size
    if name == "value":
        if reduction == "none":
            return TORCH_ULPS * u * m
        total = float(np.sum(m)) + n * float(np.sum(np.abs(values)))
        return TORCH_ULPS * u * total / (n if reduction == "mean" else 1)
    if reduction == "none":
        return TORCH_ULPS * u * m * np.abs(tc.grad_output.astype(np.float64))
    return TORCH_ULPS * u * m / (n if reduction == "mean" else 1)


def assert_torch_close(
    torch_value: Any, exact: np.ndarray, tolerance: Any, where: Any, what: str, dtype: str
) -> None:
    """torch's value within ``tolerance`` (and ``TORCH_FLOOR``) of the exact one, where
    ``where`` is True."""
    t = np.asarray(torch_value, np.float64)
    with np.errstate(invalid="ignore"):
        ok = (t == exact) | (np.abs(t - exact) <= tolerance + TORCH_FLOOR[dtype])
    bad = np.broadcast_to(where, ok.shape) & ~ok
    assert not np.any(bad), (
        f"{what}: torch {t[bad][:4]} exact {np.broadcast_to(exact, ok.shape)[bad][:4]} "
        f"tolerance {np.broadcast_to(tolerance, ok.shape)[bad][:4]}"
    )


GOLDEN_REDUCTIONS = ("none", "mean", "sum")


def _torch_values(case: dict[str, Any], name: str, reduction: str) -> np.ndarray:
    key = {"value": "loss"}.get(name, name)
    return np.array(case[key][reduction], np.float64)


@pytest.mark.parametrize("case", BCE_DERIVATIVES, ids=[c["name"] for c in BCE_DERIVATIVES])
def test_bce_derivatives_golden(case: dict[str, Any]) -> None:
    """BCE and BCE with logits (weights, pos_weights, edge values): loss, input gradient,
    target gradient in every reduction and the second derivative, from one ``derivatives``
    call, against the exact values; torch's autograd against the same exact values."""
    tc = TorchCase.of(case)
    loss, x, y, w, pw = tc.loss, tc.x, tc.y, tc.weight, tc.pos_weight
    xf = x.astype(np.float64)
    finite = np.isfinite(xf)
    if loss.kind == "bce":
        # torch's target gradient is that of the unclamped log: the same where no log is
        # clamped. Its double backward adds EPS to x and 1 - x where bcers bounds their
        # squares below by EPS: the same, up to 2 EPS (1/x + 1/(1-x)) relative, where neither
        # bound acts.
        with np.errstate(divide="ignore"):
            unclamped = (np.log(xf) > ref.LOG_FLOOR) & (np.log1p(-xf) > ref.LOG_FLOOR)
            no_eps = (xf * xf > 1e4 * ref.EPS) & ((1 - xf) ** 2 > 1e4 * ref.EPS)
        comparable = {"value": True, "grad": True, "grad_target": unclamped, "hess": no_eps}
    else:
        comparable = dict.fromkeys(OUTPUTS, finite)  # torch's is NaN at infinite logits
    for reduction in GOLDEN_REDUCTIONS:
        g = tc.grad_output if reduction == "none" else None
        d = loss.derivatives(x, y, w, pw, reduction, grad_target=True, hess=True, grad_output=g)
        expected = loss.expected(x, y, w, pw, reduction, grad_output=g)
        check_all(d, expected, f"{reduction}")
        # The separate entry points give the same bits as the one derivatives call.
        assert_identical(loss.forward(x, y, w, pw, reduction), d.value)
        assert_identical(loss.backward(g, x, y, w, pw, reduction), d.grad)
        for name in ("value", "grad", "grad_target"):
            exact = expected[name].value
            where = comparable[name] if reduction == "none" else np.all(comparable[name])
            tol = torch_tolerance(
                tc, name, reduction, loss.expected(x, y, w, pw, "none")["value"].value
            )
            torch_value = _torch_values(case, name, reduction)
            assert_torch_close(torch_value, exact, tol, where, f"{reduction} {name}", tc.dtype)
    # The second derivative: the fixture's is for reduction "none" and grad_output 1; "mean"'s
    # is that over n, "sum"'s that.
    h = np.array(case["hess"], np.float64)
    for reduction in GOLDEN_REDUCTIONS:
        d = loss.derivatives(x, y, w, pw, reduction, value=False, grad=False, hess=True)
        assert (d.value, d.grad, d.grad_target) == (None, None, None)
        e = loss.expected(x, y, w, pw, reduction, outputs=("hess",))["hess"]
        check(d.hess, e, f"{reduction} hess")
        n = x.size if reduction == "mean" else 1
        tol = TORCH_ULPS * UNIT[tc.dtype] * tc.magnitudes()["hess"] / n
        if loss.kind == "bce":
            with np.errstate(divide="ignore"):
                tol = tol + np.abs(e.value) * 2.01 * ref.EPS * (1 / xf + 1 / (1 - xf))
        assert_torch_close(h / n, e.value, tol, comparable["hess"], f"{reduction} hess", tc.dtype)
    if loss.kind == "bce" and "edge" in case["tags"]:
        # Where a log is clamped, torch's target gradient is infinite, bcers' the clamped
        # loss's (finite); the comparison above skipped exactly those.
        gt = np.array(case["grad_target"]["sum"])
        assert np.all(np.isinf(gt[~unclamped]))
        d = loss.derivatives(x, y, w, pw, "sum", grad_target=True)
        assert np.all(np.isfinite(d.grad_target))


def test_golden_fixtures_hold_what_the_tests_need() -> None:
    assert len(BCE_DERIVATIVES) == 48
    assert len(LABEL_SMOOTHING) == 20
    assert len(FOCAL) == 104
    assert {c["params"]["label_smoothing"] for c in LABEL_SMOOTHING} == {0.0, 0.1, 0.2, 0.5, 1.0}
    for section in (BCE_DERIVATIVES, FOCAL):
        assert all("hess" in c and "grad_target" in c for c in section)
    assert sum("pos_weight" in c["args"] for c in BCE_DERIVATIVES) == 12
    assert sum("edge" in c["tags"] for c in BCE_DERIVATIVES) == 6


@pytest.mark.parametrize("case", LABEL_SMOOTHING, ids=[c["name"] for c in LABEL_SMOOTHING])
def test_label_smoothing_golden(case: dict[str, Any]) -> None:
    """torch's two-class cross entropy with label smoothing is BCE with logits against
    ``y (1 - ls) + ls / 2``: bcers' ``label_smoothing`` against the exact values, torch
    against the same; and BCE on ``sigmoid(x)`` against torch's smoothed target."""
    tc = TorchCase.of(case)
    loss, x, y, ls = tc.loss, tc.x, tc.y, tc.label_smoothing
    values = loss.expected(x, y, reduction="none", label_smoothing=ls)["value"].value
    for reduction in GOLDEN_REDUCTIONS:
        g = tc.grad_output if reduction == "none" else None
        d = loss.derivatives(
            x, y, None, None, reduction, grad_target=True, grad_output=g, label_smoothing=ls
        )
        expected = loss.expected(
            x,
            y,
            None,
            None,
            reduction,
            grad_output=g,
            label_smoothing=ls,
            outputs=("value", "grad", "grad_target"),
        )
        check_all(d, expected, reduction)
        for name in ("value", "grad", "grad_target"):
            tol = torch_tolerance(tc, name, reduction, values)
            assert_torch_close(
                _torch_values(case, name, reduction),
                expected[name].value,
                tol,
                True,
                f"{reduction} {name}",
                tc.dtype,
            )

    # BCE on probabilities, torch given the smoothed target (rounded in the dtype), bcers the
    # target and label_smoothing.
    on_p = case["bce_on_probabilities"]
    p = _array(on_p["input"])
    smoothed = _array(on_p["target"])
    bce = Loss("bce")
    ptc = TorchCase(bce, p, smoothed, None, None, tc.grad_output, 0.0, tc.dtype, "bce")
    p_values = bce.expected(p, y, reduction="none", label_smoothing=ls)["value"].value
    for reduction in GOLDEN_REDUCTIONS:
        g = tc.grad_output if reduction == "none" else None
        value = bce.forward(p, y, reduction=reduction, label_smoothing=ls)
        grad = bce.backward(g, p, y, reduction=reduction, label_smoothing=ls)
        e = bce.expected(
            p, y, reduction=reduction, grad_output=g, label_smoothing=ls, outputs=("value", "grad")
        )
        check(value, e["value"], f"bce {reduction} value")
        check(grad, e["grad"], f"bce {reduction} grad")
        for name in ("value", "grad"):
            # torch's smoothed target is itself rounded (~2u of it): its effect on the loss
            # and the gradient is within the magnitudes (|log x| + |log(1-x)|, 1/(x(1-x))).
            tol = torch_tolerance(ptc, name, reduction, p_values)
            torch_value = np.array(on_p[{"value": "loss"}.get(name, name)][reduction])
            assert_torch_close(
                torch_value, e[name].value, tol, True, f"bce {reduction} {name}", tc.dtype
            )


FOCAL_GOLDEN = [c for c in FOCAL if "edge" not in c["tags"]]
FOCAL_EDGE = [c for c in FOCAL if "edge" in c["tags"]]


def _focal_case(case: dict[str, Any]) -> tuple[Loss, np.ndarray, np.ndarray, Any, np.ndarray]:
    a = case["args"]
    p = case["params"]
    w = _array(a["weight"]) if "weight" in a else None
    return (
        Loss("focal", p["alpha"], p["gamma"]),
        _array(a["input"]),
        _array(a["target"]),
        w,
        _array(case["grad_output_none"]),
    )


def focal_torch_tolerances(
    loss: Loss, x: np.ndarray, y: np.ndarray, w: Any
) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's error in the target gradient and the second derivative, per element (no
    grad_output, no reduction), in units of roundoff: ``TORCH_ULPS`` of the magnitude of the
    terms, times the conditioning of what it computes by subtraction. ``1 - p_t`` has an
    absolute error of a few u, a relative one of u / q, raised to gamma and (in autograd) to
    gamma - 1 and gamma - 2: ``1 + (gamma + 2) / q``; the second derivative also goes through
    ``sigmoid``'s derivative ``p (1 - p)``, relative error ~u e^|x|."""
    f = ref.focal_factors(x, y, loss.alpha, loss.gamma)
    a_t, ce, q, m, dce, r = (f[k] for k in ("alpha_t", "ce", "q", "mod", "dce", "r"))
    g = loss.gamma
    dalpha = abs(2 * loss.alpha - 1) if loss.alpha >= 0 else 0.0
    xf = np.abs(x.astype(np.float64))
    wf = np.abs(np.broadcast_to(1.0 if w is None else w.astype(np.float64), x.shape))
    with np.errstate(all="ignore"):
        pp = _sigmoid(xf) * _sigmoid(-xf)
        gt_terms = wf * (dalpha * ce * m + a_t * m * (xf + g * ce / q))
        h_terms = (
            wf
            * a_t
            * m
            * (pp + 2 * g * np.abs(r * dce) + g * ce * (abs(g - 1) * r * r + np.abs(r)))
        )
        gt_tol = gt_terms * (1.0 + (g + 2.0) / q)
        h_tol = h_terms * (1.0 + (g + 2.0) / q + np.exp(xf))
    return gt_tol, h_tol


def test_focal_golden_target_gradient_and_second_derivative() -> None:
    """torchvision's target gradient (every reduction) and second derivative against the exact
    values, the focal loss's (loss and input gradient are ``test_focal.py``'s); bcers against
    the exact values tightly. torchvision is NaN where ``1 - p_t`` rounds to 0 with gamma < 2
    (only at |x| >= 12 here): those elements are skipped, and counted."""
    compared = skipped = 0
    for case in FOCAL_GOLDEN:
        loss, x, y, w, go = _focal_case(case)
        u = UNIT[case["dtype"]]
        gt_tol, h_tol = focal_torch_tolerances(loss, x, y, w)
        n = x.size
        for reduction in GOLDEN_REDUCTIONS:
            g = go if reduction == "none" else None
            d = loss.derivatives(
                x,
                y,
                w,
                None,
                reduction,
                value=False,
                grad=False,
                grad_target=True,
                hess=True,
                grad_output=g,
            )
            e = loss.expected(
                x, y, w, None, reduction, grad_output=g, outputs=("grad_target", "hess")
            )
            check_all(d, e, f"{case['name']} {reduction}")
            scale = (
                np.abs(go.astype(np.float64))
                if reduction == "none"
                else 1.0 / (n if reduction == "mean" else 1)
            )
            torch_gt = np.array(case["grad_target"][reduction])
            finite = np.isfinite(torch_gt)
            assert np.all(np.abs(x[~finite]) >= 12), case["name"]
            assert_torch_close(
                torch_gt,
                e["grad_target"].value,
                TORCH_ULPS * u * gt_tol * scale,
                finite,
                f"{case['name']} {reduction} grad_target",
                case["dtype"],
            )
            compared += int(finite.sum())
            skipped += int((~finite).sum())
        h = np.array(case["hess"])
        e = loss.expected(x, y, w, None, "none", outputs=("hess",))["hess"]
        finite = np.isfinite(h)
        assert np.all(np.abs(x[~finite]) >= 12), case["name"]
        assert_torch_close(
            h, e.value, TORCH_ULPS * u * h_tol, finite, f"{case['name']} hess", case["dtype"]
        )
    assert skipped <= 0.01 * compared, (skipped, compared)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.5])
def test_focal_target_gradient_at_infinite_logits_is_the_limit(label_smoothing: float) -> None:
    """At an infinite logit both terms of the focal target gradient are infinite; their sum is
    ``|x| (1-p_t)^gamma (dalpha c - s alpha_t (1 + gamma))`` to leading order (``c`` the limit
    of ``1 - p_t``, ``s`` the sign of x): its sign, not inf - inf = NaN (as it was at x = -inf,
    y = 1, alpha 0.25)."""
    x = np.array([-np.inf, -np.inf, np.inf, np.inf, -1e4, 1e4])
    y = np.array([1.0, 0.5, 0.0, 0.5, 1.0, 0.0])
    d = bcers.sigmoid_focal_loss_derivatives(
        x, y, 0.25, 2.0, grad_target=True, hess=True, label_smoothing=label_smoothing
    )
    ys = y * (1 - label_smoothing) + label_smoothing / 2
    c = np.where(x > 0, 1 - ys, ys)
    alpha_t = 0.25 * ys + 0.75 * (1 - ys)
    coef = (1 - label_smoothing) * c**2 * (-0.5 * c - np.sign(x) * alpha_t * 3.0)
    np.testing.assert_array_equal(d.grad_target[:4], np.sign(coef[:4]) * np.inf)
    # At |x| = 1e4 the same leading term (the rest is exponentially small).
    np.testing.assert_allclose(d.grad_target[4:], coef[4:] * np.abs(x[4:]), rtol=1e-12)
    np.testing.assert_array_equal(d.hess[:4], np.zeros(4))


@pytest.mark.parametrize("case", FOCAL_EDGE, ids=[c["name"] for c in FOCAL_EDGE])
def test_focal_edge_target_gradient_and_second_derivative(case: dict[str, Any]) -> None:
    """Logits of +-20 to +-1000 and +-inf: bcers' target gradient and second derivative are the
    exact values, the mathematical limits at infinite logits (never NaN)."""
    loss, x, y, w, go = _focal_case(case)
    for reduction in GOLDEN_REDUCTIONS:
        g = go if reduction == "none" else None
        d = loss.derivatives(x, y, w, None, reduction, grad_target=True, hess=True, grad_output=g)
        check_all(d, loss.expected(x, y, w, None, reduction, grad_output=g), reduction)
        assert not np.any(np.isnan(d.grad_target))
        assert np.all(np.isfinite(d.hess))


# ---------------------------------------------------------------------------------------------
# Label smoothing.

ENTRY_POINTS = ("forward", "backward", "value_and_grad", "derivatives", "class")


def run_entry(loss: Loss, entry: str, x: Any, y: Any, reduction: str = "mean", **kw: Any) -> Any:
    """One entry point of ``loss`` with the keywords beyond torch's (``mask`` goes to the call
    of a class, the rest to its constructor)."""
    if entry == "forward":
        return loss.forward(x, y, reduction=reduction, **kw)
    if entry == "backward":
        return loss.backward(None, x, y, reduction=reduction, **kw)
    if entry == "value_and_grad":
        return loss.value_and_grad(x, y, reduction=reduction, **kw)
    if entry == "derivatives":
        return loss.derivatives(x, y, reduction=reduction, grad_target=True, hess=True, **kw)
    mask = kw.pop("mask", None)
    return loss.make(reduction=reduction, **kw)(x, y, mask=mask)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_label_smoothing_outside_0_1_is_a_value_error(loss: Loss, entry: str) -> None:
    x, y = sample(loss.kind, (4,), np.float64, 0)
    for bad in (-0.1, 1.0 + 1e-9, np.inf, np.nan):
        with pytest.raises(ValueError, match=r"^label_smoothing must be in \[0, 1\], got "):
            run_entry(loss, entry, x, y, label_smoothing=bad)
    with pytest.raises(TypeError, match=r"^label_smoothing must be a real number"):
        run_entry(loss, entry, x, y, label_smoothing="0.1")
    for good in (0.0, 1e-300, 0.5, 1.0, np.float32(0.25), 0):
        run_entry(loss, entry, x, y, label_smoothing=good)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_label_smoothing_is_the_smoothed_target(loss: Loss, dtype: Any) -> None:
    """With targets whose smoothing is exact (multiples of 1/4, smoothing 0.5: ``y/2 + 1/4``),
    every output is bit for bit that of the smoothed target, the target gradient times ``1 -
    0.5`` (exact); and 0 is the default, bit for bit."""
    x, _ = sample(loss.kind, (3, 7), dtype, 1)
    y = np.random.default_rng(2).integers(0, 5, (3, 7)) / 4.0
    w = np.linspace(0.5, 2.0, 7)
    for reduction in REDUCTIONS:
        smoothed = loss.derivatives(
            x, y, w, None, reduction, grad_target=True, hess=True, label_smoothing=0.5
        )
        plain = loss.derivatives(x, y / 2 + 0.25, w, None, reduction, grad_target=True, hess=True)
        assert_identical(smoothed.value, plain.value)
        assert_identical(smoothed.grad, plain.grad)
        assert_identical(smoothed.hess, plain.hess)
        assert_identical(smoothed.grad_target, plain.grad_target * dtype.type(0.5))
        default = loss.derivatives(x, y, w, None, reduction, grad_target=True, hess=True)
        zero = loss.derivatives(
            x, y, w, None, reduction, grad_target=True, hess=True, label_smoothing=0.0
        )
        for a, b in zip(default, zero):
            assert_identical(a, b)


def test_bce_range_check_applies_to_the_target_as_given() -> None:
    """Smoothing 1 maps every target to 1/2, yet a target outside [0, 1] is refused, with the
    message of an unsmoothed call; targets 0 and 1 smoothed are fine, and an input still must
    lie in [0, 1]."""
    x = np.array([0.25, 0.5, 0.75])
    for bad in (1.5, -0.5, np.nan):
        y = np.array([0.0, bad, 1.0])
        for entry in ENTRY_POINTS:
            with pytest.raises(
                ValueError,
                match=r"^all elements of target should be between 0 "
                r"and 1; target\[1\] is ",
            ):
                run_entry(Loss("bce"), entry, x, y, label_smoothing=1.0)
    y = np.array([0.0, 1.0, 1.0])
    value = bcers.binary_cross_entropy(x, y, reduction="none", label_smoothing=1.0)
    np.testing.assert_allclose(value, -0.5 * (np.log(x) + np.log1p(-x)), rtol=1e-15)
    with pytest.raises(ValueError, match=r"input should be between 0 and 1; input\[2\] is 1.5"):
        bcers.binary_cross_entropy(np.array([0.1, 0.2, 1.5]), y, label_smoothing=0.2)


# ---------------------------------------------------------------------------------------------
# Masks.


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_dropped_elements_contribute_nothing(loss: Loss, dtype: Any) -> None:
    """Elements where the mask is False: loss and every derivative exactly 0, whatever their
    input and target (BCE: an input of 7, labels 255 and -1, NaN; the others: NaN and inf),
    left out of mean's count and weighted_mean's weights; and the rest as without them."""
    x, y = sample(loss.kind, (4, 6), dtype, 3)
    keep = np.random.default_rng(4).random((4, 6)) < 0.6
    keep[0, 0], keep[1, 1] = False, True
    junk_x, junk_y = (7.0, 255.0) if loss.kind == "bce" else (np.nan, np.nan)
    x[~keep] = junk_x
    y[~keep] = junk_y
    y[0, 0] = -1.0
    x[0, 0] = np.nan if loss.kind == "bce" else np.inf
    w = np.random.default_rng(5).uniform(0.5, 2.0, (4, 6))
    w[~keep] = np.nan  # a dropped element's weight is no part of anything either
    kept = (x[keep], y[keep], w[keep])
    for reduction in REDUCTIONS:
        g = np.linspace(-1, 2, 24).reshape(4, 6) if reduction == "none" else None
        d = loss.derivatives(
            x, y, w, None, reduction, grad_target=True, hess=True, grad_output=g, mask=keep
        )
        alone = loss.derivatives(
            *kept,
            None,
            reduction,
            grad_target=True,
            hess=True,
            grad_output=None if g is None else g[keep],
        )
        for name in OUTPUTS:
            got, want = getattr(d, name), getattr(alone, name)
            if name == "value" and reduction != "none":
                # The same elements, summed in float64 in another grouping (lanes, blocks).
                terms = loss.forward(*kept, reduction="none")
                den = {"sum": 1.0, "mean": keep.sum(), "weighted_mean": w[keep].sum()}
                assert_sums_agree(got, want, terms, float(den[reduction]))
                continue
            assert np.all(got[~keep] == 0), (reduction, name)
            assert_identical(got[keep], want)
        check_all(d, loss.expected(x, y, w, None, reduction, grad_output=g, mask=keep), reduction)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_mask_that_keeps_nothing(loss: Loss) -> None:
    """mean and weighted_mean of nothing are NaN (0/0), sum is 0; every derivative is 0 (no
    element is a variable of the loss)."""
    x, y = sample(loss.kind, (3, 4), np.float32, 6)
    none = np.zeros(4, bool)
    for reduction in ("mean", "weighted_mean", "sum"):
        d = loss.derivatives(
            x, y, np.ones(4, np.float32), None, reduction, grad_target=True, hess=True, mask=none
        )
        assert type(d.value) is np.float32
        if reduction == "sum":
            assert d.value == 0
        else:
            assert np.isnan(d.value)
        for name in ("grad", "grad_target", "hess"):
            np.testing.assert_array_equal(getattr(d, name), np.zeros((3, 4)))
        per_row = loss.forward(
            x, y, reduction=reduction, axis=1, mask=np.array([[True], [False], [True]])
        )
        assert np.isnan(per_row[1]) if reduction != "sum" else per_row[1] == 0
        assert np.all(np.isfinite(per_row[[0, 2]]))


def test_weighted_mean_of_zero_weights_is_nan() -> None:
    """0/0: the value is NaN (the kept elements' gradient then too: w dl / 0)."""
    x, y = sample("logits", (5,), np.float64, 7)
    value, grad = bcers.binary_cross_entropy_with_logits_value_and_grad(
        x, y, np.zeros(5), reduction="weighted_mean"
    )
    assert np.isnan(value)
    assert np.all(np.isnan(grad))


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_mask_broadcasts_like_weight_and_is_bool(loss: Loss) -> None:
    x, y = sample(loss.kind, (3, 4), np.float64, 8)
    full = loss.forward(x, y, reduction="none")
    for mask in (
        np.array([True, False, True, True]),
        np.array([[True], [False], [True]]),
        np.array(True),
        np.array([[[True]]])[0],
        [True, False, True, True],
    ):
        keep = np.broadcast_to(np.asarray(mask), x.shape)
        got = loss.forward(x, y, reduction="none", mask=mask)
        np.testing.assert_array_equal(got, np.where(keep, full, 0.0))
        m = loss.forward(x, y, reduction="mean", mask=mask)
        np.testing.assert_allclose(m, full[keep].mean(), rtol=1e-14)
    for mask in (np.ones((2, 3, 4), bool), np.ones(3, bool), np.ones((3, 1, 1), bool)):
        for entry in ENTRY_POINTS:
            with pytest.raises(
                ValueError,
                match=r"^mask of shape .* cannot be broadcast to "
                r"the input's shape \(3, 4\)",
            ):
                run_entry(loss, entry, x, y, mask=mask)
    for mask in (np.ones(4), np.ones(4, np.int8), np.ones(4, np.uint8), [1, 0, 1, 1]):
        for entry in ENTRY_POINTS:
            with pytest.raises(TypeError, match=r"^mask must be an array of booleans, got dtype"):
                run_entry(loss, entry, x, y, mask=mask)


def test_more_axes_than_the_native_module_takes() -> None:
    """An input of more than ``MAX_NDIM`` axes (its axes of length 1 dropped on the way): the
    mask, label smoothing and every output as for the same elements in two dimensions; axes
    there are refused."""
    x, y = sample("bce", (3, 4), np.float64, 33)
    many = (1,) * (bcers._bcers.MAX_NDIM + 2) + (3, 4)
    keep = np.array([True, False, True, True])
    x[:, 1] = 7.0  # dropped: not range-checked
    kw: dict[str, Any] = {"mask": keep, "label_smoothing": 0.1, "grad_target": True, "hess": True}
    for reduction in ("none", "mean", "weighted_mean"):
        d = bcers.binary_cross_entropy_derivatives(
            x.reshape(many), y.reshape(many), reduction=reduction, **kw
        )
        flat = bcers.binary_cross_entropy_derivatives(x, y, reduction=reduction, **kw)
        for a, b in zip(d, flat):
            assert np.shape(a) == (many if np.ndim(b) else ())
            assert_identical(np.reshape(a, np.shape(b)), b)
    with pytest.raises(ValueError, match=r"^axis and keepdims take inputs of at most"):
        bcers.binary_cross_entropy(x.reshape(many), y.reshape(many), axis=-1)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_masked_array_operands_drop_their_masked_elements(loss: Loss) -> None:
    """A ``numpy.ma.MaskedArray`` input or target: its masked elements dropped as by ``mask``
    (their data may be anything), combined with an explicit mask, in every entry point."""
    x, y = sample(loss.kind, (3, 5), np.float64, 9)
    rng = np.random.default_rng(10)
    hidden_x, hidden_y = rng.random((3, 5)) < 0.3, rng.random((3, 5)) < 0.3
    explicit = rng.random(5) < 0.8
    junk = 7.0 if loss.kind == "bce" else np.nan
    mx = np.ma.masked_array(np.where(hidden_x, junk, x), mask=hidden_x)
    my = np.ma.masked_array(np.where(hidden_y, junk, y), mask=hidden_y)
    keep = ~hidden_x & ~hidden_y & explicit
    for reduction in ("none", "mean", "weighted_mean"):
        got = loss.derivatives(
            mx, my, None, None, reduction, grad_target=True, hess=True, mask=explicit
        )
        want = loss.derivatives(x, y, None, None, reduction, grad_target=True, hess=True, mask=keep)
        for a, b in zip(got, want):
            assert_identical(a, b)
        assert_identical(
            loss.forward(mx, my, reduction=reduction),
            loss.forward(x, y, reduction=reduction, mask=~hidden_x & ~hidden_y),
        )
        assert_identical(
            loss.backward(None, mx, y, reduction=reduction),
            loss.backward(None, x, y, reduction=reduction, mask=~hidden_x),
        )
        v, g = loss.value_and_grad(x, my, reduction=reduction)
        assert_identical(v, loss.forward(x, y, reduction=reduction, mask=~hidden_y))
        assert_identical(g, loss.backward(None, x, y, reduction=reduction, mask=~hidden_y))
        cls = loss.make(reduction=reduction)
        assert_identical(cls(mx, my, mask=explicit), want.value)
        assert_identical(
            cls.derivatives(mx, my, mask=explicit, grad_target=True, hess=True).hess, want.hess
        )
    # A masked array without a mask (nomask) is its data.
    assert_identical(loss.forward(np.ma.masked_array(x), y), loss.forward(x, y))


# ---------------------------------------------------------------------------------------------
# weighted_mean.


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_weighted_mean(loss: Loss, dtype: Any) -> None:
    """``sum(w l) / sum(w)`` over the kept elements, ``w`` broadcast to the input's shape
    (pos_weight and alpha not in the denominator); Keras' name gives the same bits; without a
    weight it is ``mean``, bit for bit; its derivatives are those of the quotient with the
    weights held constant: the sum's derivatives over ``sum(w)``."""
    x, y = sample(loss.kind, (4, 6), dtype, 11)
    w = np.random.default_rng(12).uniform(0.0, 3.0, 6).astype(dtype)
    pw = np.random.default_rng(13).uniform(0.5, 4.0, 6) if loss.kind == "logits" else None
    keep = np.random.default_rng(14).random((4, 1)) < 0.7
    keep[0] = True
    kw: dict[str, Any] = {"grad_target": True, "hess": True, "mask": keep}
    d = loss.derivatives(x, y, w, pw, "weighted_mean", **kw)
    check_all(d, loss.expected(x, y, w, pw, "weighted_mean", mask=keep), "weighted_mean")
    alias = loss.derivatives(x, y, w, pw, "mean_with_sample_weight", **kw)
    for a, b in zip(d, alias):
        assert_identical(a, b)
    # The quotient, in float64 from the sum (whose own rounding to the dtype is the slack).
    total = loss.derivatives(x, y, w, pw, "sum", **kw)
    den = float(
        np.sum(np.broadcast_to(w.astype(np.float64), x.shape)[np.broadcast_to(keep, x.shape)])
    )
    u = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(float(d.value), float(total.value) / den, rtol=2 * u)
    for name in ("grad", "grad_target", "hess"):
        np.testing.assert_allclose(
            getattr(d, name).astype(np.float64),
            getattr(total, name).astype(np.float64) / den,
            rtol=4 * u,
            atol=float(np.finfo(dtype).tiny),
        )
    # Without a weight: mean, bit for bit (and so with a weight of ones the same values).
    plain = loss.derivatives(x, y, None, pw, "weighted_mean", **kw)
    mean = loss.derivatives(x, y, None, pw, "mean", **kw)
    for a, b in zip(plain, mean):
        assert_identical(a, b)


@pytest.mark.parametrize("axis", [None, 0, ()])
def test_weighted_mean_of_subnormal_weights_has_finite_derivatives(axis: Any) -> None:
    """A denominator below 1 / max of the dtype (the weights of subnormal size): grad_output
    over it overflows, so the derivatives are divided by it afterwards, as where it would be
    subnormal; they stay the finite quotient (it was -inf). Every slot of ``axis=()`` is one
    element, its own weight its denominator."""
    x = np.array([0.25, 0.5], np.float32)
    y = np.array([1.0, 1.0], np.float32)
    w = np.array([2.0835e-41, 0.0], np.float32)  # subnormal in float32
    value, grad = bcers.binary_cross_entropy_value_and_grad(
        x, y, w, reduction="weighted_mean", axis=axis
    )
    # d/dx (w l / w) = dl/dx = (x - 1) / (x (1 - x)) = -4 at x = 0.25; the product w dl/dx is
    # subnormal (about 14 significant bits), so -4 to ~1e-4; the value w l / w likewise.
    assert grad[0] == pytest.approx(-4.0, rel=1e-4)
    assert np.asarray(value).ravel()[0] == pytest.approx(-np.log(0.25), rel=1e-4)
    if axis == ():
        assert np.isnan(grad[1])  # its own weight is 0: 0/0
    else:
        assert grad[1] == 0
    # grad_output over the denominator subnormal, per slot (1e-40 / 1000): the derivatives
    # divided afterwards too, as in a full reduction, where folding it into a subnormal factor
    # (70 subnormal steps) would lose 1e-3 of a normal result (-1e6 * 1e-43).
    x2 = np.full((2, 1000), 1e-6, np.float32)
    g = np.array([1e-40, 1e-30], np.float32)
    got = bcers.binary_cross_entropy_backward(g, x2, np.ones_like(x2), axis=1)
    xf = np.float64(np.float32(1e-6))
    exact = (xf - 1) / (xf * (1 - xf)) * g.astype(np.float64) / 1000
    np.testing.assert_allclose(got[:, 0], exact, rtol=1e-5)
    full = bcers.binary_cross_entropy_backward(g[0], x2, np.ones_like(x2))
    np.testing.assert_allclose(full[0, 0], exact[0] / 2, rtol=1e-5)


def test_weighted_mean_leaves_pos_weight_and_alpha_out_of_the_denominator() -> None:
    x = np.array([-1.0, 0.5, 2.0])
    y = np.array([1.0, 0.0, 1.0])
    w = np.array([1.0, 2.0, 3.0])
    pw = np.array([4.0, 4.0, 4.0])
    sp = np.logaddexp(0.0, -x)  # -logsigmoid(x)
    per = w * ((1 - y) * x + (1 + (pw - 1) * y) * sp)
    got = bcers.binary_cross_entropy_with_logits(x, y, w, reduction="weighted_mean", pos_weight=pw)
    assert got == pytest.approx(per.sum() / w.sum(), rel=1e-15)
    focal = bcers.sigmoid_focal_loss(x, y, 0.25, 0.0, "weighted_mean", w)
    alpha_t = np.where(y == 1, 0.25, 0.75)
    assert focal == pytest.approx(
        (alpha_t * w * np.logaddexp(0.0, x) - alpha_t * w * x * y).sum() / w.sum(), rel=1e-14
    )


# ---------------------------------------------------------------------------------------------
# Reductions over some axes.

AXES = [0, 1, -1, -3, (0, 2), (2, -3), (1, 2), (0, 1, 2), (), (-1, 0)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_axis_reductions(loss: Loss, keepdims: bool) -> None:
    """mean, sum and weighted_mean over some axes: NumPy's result shapes, values per slot,
    derivatives of the input's shape scaled per slot by the backward's grad_output (of the
    reduced shape), with a mask and label smoothing; against the reference."""
    x, y = sample(loss.kind, (3, 4, 5), np.float32, 15)
    w = np.random.default_rng(16).uniform(0.25, 2.0, (4, 1)).astype(np.float32)
    keep = np.random.default_rng(17).random((3, 1, 5)) < 0.8
    for axis in AXES:
        shape = np.sum(np.zeros(x.shape), axis=axis, keepdims=keepdims).shape
        g = np.random.default_rng(18).normal(0.0, 2.0, shape).astype(np.float32)
        for reduction in ("mean", "sum", "weighted_mean"):
            kw: dict[str, Any] = {
                "axis": axis,
                "keepdims": keepdims,
                "mask": keep,
                "label_smoothing": 0.1,
            }
            d = loss.derivatives(
                x, y, w, None, reduction, grad_target=True, hess=True, grad_output=g, **kw
            )
            # An array, except for a reduction over every axis without keepdims (as NumPy).
            assert isinstance(d.value, np.ndarray if shape else np.float32)
            assert d.value.shape == shape
            assert d.value.dtype == np.float32
            for name in ("grad", "grad_target", "hess"):
                assert getattr(d, name).shape == x.shape
            check_all(
                d,
                loss.expected(x, y, w, None, reduction, grad_output=g, **kw),
                f"axis={axis} {reduction}",
            )
            assert_identical(loss.forward(x, y, w, None, reduction, **kw), d.value)
            assert_identical(loss.backward(g, x, y, w, None, reduction, **kw), d.grad)
            v, gr = loss.value_and_grad(x, y, w, None, reduction, **kw)
            assert_identical(v, d.value)
            assert_identical(gr, loss.backward(None, x, y, w, None, reduction, **kw))
            mask = kw.pop("mask")
            obj = loss.make(w, None, reduction, **kw)
            assert_identical(obj(x, y, mask=mask), d.value)
            assert_identical(obj.forward(x, y, mask=mask), d.value)
            assert_identical(obj.backward(x, y, g, mask=mask), d.grad)
            assert_identical(obj.value_and_grad(x, y, mask=mask)[0], d.value)
            od = obj.derivatives(x, y, grad_target=True, hess=True, grad_output=g, mask=mask)
            for a, b in zip(od, d):
                assert_identical(a, b)


def test_full_reduction_with_keepdims() -> None:
    """axis None with keepdims: an array of ones of the input's rank; its backward takes a
    scalar grad_output or one of that shape."""
    x, y = sample("logits", (2, 3), np.float64, 19)
    d = bcers.binary_cross_entropy_with_logits_derivatives(x, y, keepdims=True, hess=True)
    scalar = bcers.binary_cross_entropy_with_logits_derivatives(x, y, hess=True)
    assert d.value.shape == (1, 1)
    assert d.value[0, 0] == scalar.value
    assert_identical(d.grad, scalar.grad)
    for g in (2.0, np.array(2.0), np.full((1, 1), 2.0)):
        got = bcers.binary_cross_entropy_with_logits_backward(g, x, y, keepdims=True)
        assert_identical(got, bcers.binary_cross_entropy_with_logits_backward(2.0, x, y))


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_axis_errors(loss: Loss) -> None:
    """axis with reduction 'none' (functions and constructors), out of bounds, repeated, not an
    int; a backward's grad_output not of the reduced shape."""
    x, y = sample(loss.kind, (2, 3), np.float64, 20)
    for entry in ENTRY_POINTS:
        with pytest.raises(ValueError, match=r"^axis reduces over some axes; it needs"):
            run_entry(loss, entry, x, y, reduction="none", axis=0)
        with pytest.raises(ValueError, match=r"^axis 2 is out of bounds for array of dimension 2"):
            run_entry(loss, entry, x, y, axis=2)
        with pytest.raises(ValueError, match=r"^axis -3 is out of bounds"):
            run_entry(loss, entry, x, y, axis=(0, -3))
        with pytest.raises(ValueError, match=r"^duplicate value in 'axis'"):
            run_entry(loss, entry, x, y, axis=(1, -1))
        for bad in (1.0, "0", (0, 1.5)):
            with pytest.raises(TypeError, match=r"^axis must be an int or a tuple of ints"):
                run_entry(loss, entry, x, y, axis=bad)
    with pytest.raises(ValueError, match=r"^axis reduces over some axes"):
        loss.make(reduction="none", axis=1)
    assert loss.make(axis=np.int64(1)).axis == 1
    assert loss.make(axis=[0, -1]).axis == (0, -1)
    for g in (np.ones(2), np.ones((1, 3)), np.ones((2, 1)), 1.0):
        with pytest.raises(
            ValueError, match=r"^grad_output must have the reduced loss's shape \(3,\)"
        ):
            loss.backward(g, x, y, reduction="sum", axis=0)
        with pytest.raises(
            ValueError, match=r"^grad_output must have the reduced loss's shape \(3,\)"
        ):
            loss.derivatives(x, y, reduction="sum", axis=0, grad_output=g)


@pytest.fixture
def restore_threads() -> Any:
    saved = bcers.get_num_threads()
    yield
    bcers.set_num_threads(saved)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_new_keywords_are_deterministic_for_any_thread_count(
    loss: Loss, restore_threads: Any
) -> None:
    """Reductions over axes, masked and weighted means, with every output: the same bits for
    1 to 4 threads (inputs above the thread pool's threshold, slots longer and shorter than a
    chunk)."""
    x, y = sample(loss.kind, (3, 23339), np.float32, 21)
    xt, yt = sample(loss.kind, (70001, 2), np.float64, 22)
    runs = []
    for threads in (1, 2, 3, 4):
        bcers.set_num_threads(threads)
        assert bcers.get_num_threads() == threads
        out = []
        for xx, yy, axis in ((x, y, -1), (x, y, 0), (xt, yt, 0), (xt, yt, None)):
            w = np.random.default_rng(24).uniform(0.5, 2.0, xx.shape[-1:]).astype(xx.dtype)
            keep = np.random.default_rng(25).random(xx.shape) < 0.9
            for reduction in ("mean", "weighted_mean", "sum"):
                out.extend(
                    loss.derivatives(
                        xx,
                        yy,
                        w,
                        None,
                        reduction,
                        grad_target=True,
                        hess=True,
                        mask=keep,
                        axis=axis,
                        label_smoothing=0.05,
                    )
                )
        runs.append(out)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert_identical(a, b)


# ---------------------------------------------------------------------------------------------
# derivatives: the outputs asked for, from one call.


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_derivatives_computes_what_is_asked(loss: Loss, reduction: str) -> None:
    """Every combination of the four flags: a ``bcers.Derivatives`` with None exactly where
    not asked, and the bits of the full request elsewhere (what is asked does not change what
    is computed); the value that of the loss function, the gradient the backward's; the
    classes' method the same."""
    x, y = sample(loss.kind, (5, 7), np.float64, 26)
    w = np.linspace(0.5, 1.5, 7)
    g = np.linspace(-2.0, 2.0, 35).reshape(5, 7) if reduction == "none" else 0.5
    keep = np.arange(35).reshape(5, 7) % 4 != 0
    full = loss.derivatives(
        x, y, w, None, reduction, grad_target=True, hess=True, grad_output=g, mask=keep
    )
    assert isinstance(full, bcers.Derivatives)
    assert full._fields == OUTPUTS
    assert_identical(full.value, loss.forward(x, y, w, None, reduction, mask=keep))
    assert_identical(full.grad, loss.backward(g, x, y, w, None, reduction, mask=keep))
    obj = loss.make(w, None, reduction)
    for flags in np.ndindex(2, 2, 2, 2):
        asked = dict(zip(OUTPUTS, map(bool, flags)))
        d = loss.derivatives(x, y, w, None, reduction, grad_output=g, mask=keep, **asked)
        od = obj.derivatives(x, y, grad_output=g, mask=keep, **asked)
        for name in OUTPUTS:
            for got in (getattr(d, name), getattr(od, name)):
                if asked[name]:
                    assert_identical(got, getattr(full, name))
                else:
                    assert got is None
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match=r"^hess must be True or False"):
            loss.derivatives(x, y, hess=bad)
    assert loss.derivatives(x, y, hess=np.bool_(True)).hess is not None


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["F", "reversed", "strided", "broadcast", "transposed"])
def test_layouts_with_the_new_keywords(loss: Loss, dtype: Any, layout: str) -> None:
    """Non-contiguous, negative-stride, broadcast and transposed operands (the mask too), in
    every dtype: the reference's values; and the bits of C-contiguous copies for everything
    that does not depend on the order of a float64 sum (a layout may change that order: the
    reduced values, and weighted_mean's denominator)."""
    x, y = sample(loss.kind, (6, 9), dtype, 27)
    rng = np.random.default_rng(28)
    w = rng.uniform(0.25, 2.0, (6, 9)).astype(dtype)
    keep = rng.random((6, 9)) < 0.7
    g = rng.normal(0.0, 1.0, (9,)).astype(dtype)

    def laid(a: np.ndarray) -> np.ndarray:
        if layout == "F":
            return np.asfortranarray(a)
        if layout == "reversed":
            return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
        if layout == "strided":
            big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
            big[::2, ::3] = a
            return big[::2, ::3]
        if layout == "transposed":
            return np.ascontiguousarray(a.T).T
        return np.broadcast_to(a[:1], a.shape)  # every row the first one

    if layout == "broadcast":
        x, y, w, keep = (np.broadcast_to(a[:1], a.shape).copy() for a in (x, y, w, keep))
    for reduction, axis in (("none", None), ("mean", None), ("weighted_mean", 0), ("sum", 1)):
        gg = g if reduction == "none" else (g if axis == 0 else None)
        kw = {
            "mask": keep,
            "axis": axis,
            "label_smoothing": 0.2,
            "grad_output": gg,
            "grad_target": True,
            "hess": True,
        }
        plain = loss.derivatives(x, y, w, None, reduction, **kw)
        kw["mask"] = laid(keep)
        got = loss.derivatives(laid(x), laid(y), laid(w), None, reduction, **kw)
        for name, a, b in zip(OUTPUTS, got, plain):
            if isinstance(a, np.ndarray) and a.ndim == 2:
                assert a.flags.writeable
            if (name == "value" and reduction != "none") or reduction == "weighted_mean":
                continue
            assert_identical(a, b)
        kw["mask"] = keep
        del kw["grad_target"], kw["hess"]
        expected = loss.expected(x, y, w, None, reduction, **kw)
        check_all(plain, expected, f"{reduction} {axis}")
        check_all(got, expected, f"{layout} {reduction} {axis}")


# ---------------------------------------------------------------------------------------------
# Properties: the new keywords with test_properties.py's shapes, layouts and values.

ROLES = {
    "bce": ("bce_x", "bce_y"),
    "logits": ("logit_x", "logit_y"),
    "focal": ("logit_x", "focal_y"),
}
SMOOTHING = st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]) | st.floats(0.0, 1.0)
MASK_LAYOUTS = ("C", "F", "strided", "reversed", "transposed", "broadcast", "readonly")


@dataclass
class KeywordCase:
    """One drawn call: a loss, its operands and the keywords beyond torch's."""

    loss: Loss
    dtype: np.dtype
    reduction: str
    x: Operand
    y: Operand
    w: Operand | None
    pw: Operand | None
    mask: Operand | None
    label_smoothing: float
    axis: Any
    keepdims: bool
    grad_output: Any
    asked: dict[str, bool]

    @property
    def args(self) -> tuple[Any, Any, Any, Any]:
        w = None if self.w is None else self.w.array
        pw = None if self.pw is None else self.pw.array
        return self.x.array, self.y.array, w, pw

    @property
    def options(self) -> dict[str, Any]:
        return {
            "label_smoothing": self.label_smoothing,
            "mask": None if self.mask is None else self.mask.array,
            "axis": self.axis,
            "keepdims": self.keepdims,
        }

    @property
    def out_shape(self) -> tuple[int, ...]:
        shape = np.shape(self.x.array)
        if self.reduction == "none":
            return shape
        return np.sum(np.zeros(shape), axis=self.axis, keepdims=self.keepdims).shape


@st.composite
def keyword_cases(
    draw: Any,
    reductions: tuple[str, ...] = (*REDUCTIONS, "mean_with_sample_weight"),
    mask: bool | None = None,
    axes: bool = True,
) -> KeywordCase:
    kind = draw(st.sampled_from(KINDS))
    alpha, gamma = draw(FOCAL_PARAMETERS) if kind == "focal" else (0.25, 2.0)
    loss = Loss(kind, alpha, gamma)
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    shape = draw(shapes())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x_role, y_role = ROLES[kind]
    x = draw(operands(rng, x_role, shape, dtype, other_dtypes=False))
    y = draw(operands(rng, y_role, shape, dtype))
    reduction = draw(st.sampled_from(reductions))
    w = pw = m = None
    if draw(st.booleans()):
        w = draw(operands(rng, "weight", draw(broadcast_shapes(shape)), dtype))
        if reduction in ("weighted_mean", "mean_with_sample_weight"):
            # Sample weights: nonnegative (a signed sum of weights can cancel to nothing).
            w = Operand(np.abs(np.asarray(w.array)), w.layout + "|abs", w.family)
    if kind == "logits" and draw(st.booleans()):
        pw = draw(operands(rng, "pos_weight", draw(broadcast_shapes(shape)), dtype))
    if mask if mask is not None else draw(st.booleans()):
        m_shape = draw(broadcast_shapes(shape))
        p = draw(st.sampled_from([0.0, 0.3, 0.7, 0.95, 1.0]))
        layout = draw(st.sampled_from(MASK_LAYOUTS))
        values = np.asarray(rng.random(m_shape) < p)
        if layout == "broadcast":
            # every row the first (a stride 0)
            laid = np.broadcast_to(values[:1], m_shape) if values.ndim else values
        else:
            laid = _apply_layout(draw, values, layout)
        m = Operand(laid, layout, f"p={p}")
    ls = draw(SMOOTHING)
    axis, keepdims = None, False
    if reduction != "none" and axes:
        ndim = len(shape)
        if ndim and draw(st.booleans()):
            chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
            chosen = [a - ndim if draw(st.booleans()) else a for a in chosen]
            axis = chosen[0] if len(chosen) == 1 and draw(st.booleans()) else tuple(chosen)
        keepdims = draw(st.booleans())
    case = KeywordCase(loss, dtype, reduction, x, y, w, pw, m, ls, axis, keepdims, None, {})
    out = case.out_shape
    if reduction == "none":
        if draw(st.booleans()):
            case.grad_output = draw(
                operands(rng, "grad", draw(broadcast_shapes(shape)), dtype)
            ).array
    elif draw(st.booleans()):
        g = rng.normal(0.0, 2.0, out).astype(dtype)
        case.grad_output = float(g) if out == () and draw(st.booleans()) else g
    flags = [draw(st.booleans()) for _ in OUTPUTS]
    if not any(flags):
        flags[0] = True
    case.asked = dict(zip(OUTPUTS, flags))
    return case


@given(keyword_cases())
def test_keywords_match_reference_in_every_entry_point(case: KeywordCase) -> None:
    """``derivatives`` with drawn outputs and keywords against the reference; the loss
    function, backward, value_and_grad and the class (constructed with the keywords, called
    with the mask) give the same bits."""
    loss, reduction, options = case.loss, case.reduction, case.options
    x, y, w, pw = case.args
    g = case.grad_output
    note(f"{loss} {reduction} options={ {k: v for k, v in options.items() if k != 'mask'} }")
    d = loss.derivatives(x, y, w, pw, reduction, grad_output=g, **case.asked, **options)
    asked = tuple(name for name in OUTPUTS if case.asked[name])
    expected = loss.expected(x, y, w, pw, reduction, grad_output=g, outputs=asked, **options)
    for name in OUTPUTS:
        if case.asked[name]:
            check(getattr(d, name), expected[name], name)
        else:
            assert getattr(d, name) is None
    mask = options.pop("mask")
    obj = loss.make(w, pw, reduction, **options)
    if d.value is not None:
        assert_identical(loss.forward(x, y, w, pw, reduction, mask=mask, **options), d.value)
        assert_identical(obj(x, y, mask=mask), d.value)
        value, grad = obj.value_and_grad(x, y, mask=mask)
        assert_identical(value, d.value)
        assert_identical(grad, loss.backward(None, x, y, w, pw, reduction, mask=mask, **options))
    if d.grad is not None:
        assert_identical(loss.backward(g, x, y, w, pw, reduction, mask=mask, **options), d.grad)
        assert_identical(obj.backward(x, y, g, mask=mask), d.grad)
    od = obj.derivatives(x, y, grad_output=g, mask=mask, **case.asked)
    for a, b in zip(od, d):
        if b is None:
            assert a is None
        else:
            assert_identical(a, b)


def _compressed(a: Any, shape: tuple[int, ...], keep: np.ndarray) -> Any:
    return None if a is None else np.broadcast_to(np.asarray(a), shape)[keep]


@given(keyword_cases(mask=True, axes=False))
def test_mask_is_dropping_the_elements(case: KeywordCase) -> None:
    """A mask gives what the kept elements alone give (with junk written over the dropped
    ones' input and target), and 0 at the dropped ones: the elementwise outputs bit for bit
    (for weighted_mean within the rounding of its denominator, a float64 sum in another order),
    the reduced value within the bound of a float64 sum in another order."""
    loss, reduction = case.loss, case.reduction
    x, y, w, pw = case.args
    shape = np.shape(x)
    keep = np.broadcast_to(case.mask.array, shape)
    x, y = np.array(x), np.array(y)
    if x.ndim:
        x[~keep] = 7.0 if loss.kind == "bce" else np.nan
        if y.dtype.kind == "f":
            y[~keep] = 255.0 if loss.kind == "bce" else np.inf
    g = case.grad_output
    ls = case.label_smoothing
    d = loss.derivatives(
        x,
        y,
        w,
        pw,
        reduction,
        grad_target=True,
        hess=True,
        grad_output=g,
        mask=case.mask.array,
        label_smoothing=ls,
    )
    alone = loss.derivatives(
        x[keep],
        y[keep],
        _compressed(w, shape, keep),
        _compressed(pw, shape, keep),
        reduction,
        grad_target=True,
        hess=True,
        label_smoothing=ls,
        grad_output=_compressed(g, shape, keep) if reduction == "none" else g,
    )
    weighted = reduction in ("weighted_mean", "mean_with_sample_weight")
    compute = ref.compute_dtype(case.dtype)
    for name in OUTPUTS:
        got, want = getattr(d, name), getattr(alone, name)
        if name == "value" and reduction != "none":
            terms = loss.forward(
                x[keep],
                y[keep],
                _compressed(w, shape, keep),
                _compressed(pw, shape, keep),
                "none",
                label_smoothing=ls,
            )
            ww = np.broadcast_to(1.0 if w is None else np.asarray(w, np.float64), shape)[keep]
            den = {"sum": 1.0, "mean": max(keep.sum(), 1)}.get(reduction, float(np.sum(ww)))
            assert_sums_agree(got, want, terms, den or 1.0)
            continue
        assert np.all(got[~keep] == 0), name
        if weighted:
            # Two float64 sums of the (nonnegative) weights, each within (n + 1) u64 relative,
            # then grad_output over it rounded to the compute dtype (and the result again).
            a, b = got[keep].astype(np.float64), want.astype(np.float64)
            rel = 4 * float(np.finfo(compute).eps) + 4 * (keep.size + 1) * 2.0**-53
            tol = rel * np.abs(b) + float(np.finfo(compute).tiny)
            with np.errstate(invalid="ignore"):
                ok = (a == b) | (np.abs(a - b) <= tol) | (np.isnan(a) & np.isnan(b))
            assert np.all(ok), (name, a[~ok][:4], b[~ok][:4])
        else:
            assert_identical(got[keep], want)


@given(keyword_cases(reductions=("mean", "sum", "weighted_mean")))
def test_reductions_are_numpy_reductions_of_the_unreduced_loss(case: KeywordCase) -> None:
    """Over the drawn axes (or all): ``sum`` is NumPy's sum of the ``"none"`` loss, ``mean``
    that over the kept count, ``weighted_mean`` that over the kept weights' sum, within the
    bound of float64 sums in different orders; the derivatives are the unreduced ones times
    the slot's grad_output over its denominator (bit for bit for ``sum``). For a float16
    input the unreduced values come from the same operands cast to float16 and computed in
    float32, as bcers computes float16 (its "none" results are rounded to float16; its
    reductions sum unrounded values)."""
    loss, reduction, options = case.loss, case.reduction, case.options
    x, y, w, pw = case.args
    shape = np.shape(x)
    mask = options["mask"]
    keep = np.broadcast_to(True if mask is None else mask, shape)
    axes = ref.normalize_axis(case.axis, len(shape))
    kw: dict[str, Any] = {
        "grad_target": True,
        "hess": True,
        "label_smoothing": case.label_smoothing,
    }
    g = case.grad_output
    d = loss.derivatives(x, y, w, pw, reduction, grad_output=g, **{**kw, **options})

    def widened(a: Any) -> Any:
        if a is None or case.dtype != F16:
            return a
        with np.errstate(over="ignore"):
            return np.asarray(a).astype(F16).astype(F32)

    xs, ys, ws, pws = (widened(a) for a in (x, y, w, pw))
    none = loss.derivatives(xs, ys, ws, pws, "none", mask=mask, **kw)
    # The weights as bcers sums them: cast to the input's dtype, the dropped ones left out.
    w_cast = 1.0 if w is None else np.asarray(w).astype(case.dtype).astype(np.float64)
    ww = np.where(keep, np.broadcast_to(w_cast, shape), 0.0)
    den = {
        "sum": np.ones_like(np.sum(ww, axis=axes, keepdims=True)),
        "mean": np.sum(keep, axis=axes, keepdims=True).astype(np.float64),
        "weighted_mean": np.sum(ww, axis=axes, keepdims=True),
    }[reduction]
    n = math.prod(shape[a] for a in axes)
    compute = ref.compute_dtype(case.dtype)
    terms = np.asarray(none.value, np.float64)
    with np.errstate(all="ignore"):
        want = np.sum(terms, axis=axes, keepdims=True) / den
        bound = np.sum(np.abs(terms), axis=axes, keepdims=True) * 2 * (n + 1) * 2.0**-53
        bound = bound / np.abs(den) + np.abs(want) * 2 * (n + 1) * 2.0**-53  # (denominator)
        bound = np.where(np.isfinite(bound), bound, 0.0)  # (a slot with inf or NaN: exact)
    # Both ends of the interval rounded as bcers rounds its result (float16 may overflow).
    got = np.asarray(d.value).reshape(want.shape)
    bad = ref.mismatches(got, ref.Expected(want, bound, case.dtype, compute, reduced=False))
    assert not np.any(bad), (got[bad][:4], want[bad][:4], bound[bad][:4])

    # The derivatives: the unreduced ones times the slot's grad_output over its denominator.
    if g is None:
        g_slot = np.ones(den.shape, case.dtype)
    else:
        g_slot = np.reshape(np.asarray(g).astype(case.dtype), den.shape)
    if reduction == "sum" and case.dtype != F16:
        scaled = loss.derivatives(
            x, y, w, pw, "none", mask=mask, grad_output=np.broadcast_to(g_slot, shape), **kw
        )
        for name in ("grad", "grad_target", "hess"):
            assert_identical(getattr(d, name), getattr(scaled, name))
        return
    eps, tiny = float(np.finfo(compute).eps), float(np.finfo(compute).tiny)
    with np.errstate(all="ignore"):
        factor = np.broadcast_to(g_slot.astype(np.float64) / den, shape)
    for name in ("grad", "grad_target", "hess"):
        with np.errstate(all="ignore"):
            # (0 where dropped: no element there is a variable of the loss)
            want_d = np.where(keep, getattr(none, name).astype(np.float64) * factor, 0.0)
            # bcers rounds grad_output over the denominator to the compute dtype, then the
            # product: two roundings of the compute dtype, and one of the result dtype; a sum
            # of weights is a float64 sum in another order than NumPy's.
            rel = 4 * eps + (4 * (n + 1) * 2.0**-53 if reduction == "weighted_mean" else 0.0)
            tol = np.where(np.isfinite(want_d), rel * np.abs(want_d) + 4 * tiny, 0.0)
        e = ref.Expected(want_d, tol, case.dtype, compute, reduced=False)
        bad = ref.mismatches(getattr(d, name), e)
        assert not np.any(bad), (name, getattr(d, name)[bad][:4], want_d[bad][:4])


# ---------------------------------------------------------------------------------------------
# The GPU: label smoothing, weighted_mean and every derivative as on the CPU; masks and axes
# refused by name.


def _host(value: Any) -> Any:
    return value.numpy() if type(value) is gpu.Array else value


def assert_gpu_matches(dev: Any, cpu: Any, what: str) -> None:
    """The GPU's result: the CPU's kind (np.float32 scalar, or an Array), within 2e-5 relative
    (bcers.gpu's documented agreement: float32 per-workgroup sums)."""
    if isinstance(cpu, np.ndarray):
        assert type(dev) is gpu.Array, what
        np.testing.assert_allclose(dev.numpy(), cpu, rtol=2e-5, atol=1e-6, err_msg=what)
    else:
        assert type(dev) is np.float32, (what, type(dev))
        np.testing.assert_allclose(dev, cpu, rtol=2e-5, atol=0, err_msg=what)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_gpu_label_smoothing_and_weighted_mean(device: dict[str, Any], loss: Loss) -> None:
    x, y = sample(loss.kind, (37, 29), np.float32, 30)
    w = np.random.default_rng(31).uniform(0.0, 2.0, 29).astype(np.float32)
    pw = np.float32(2.5) * np.ones(29, np.float32) if loss.kind == "logits" else None
    dx, dw = gpu.asarray(x), gpu.asarray(w)
    dpw = None if pw is None else gpu.asarray(pw)
    for reduction, ls in (
        ("weighted_mean", 0.0),
        ("weighted_mean", 0.2),
        ("mean_with_sample_weight", 1.0),
        ("mean", 0.1),
        ("sum", 0.3),
        ("none", 0.15),
    ):
        label = f"{loss} {reduction} ls={ls}"
        cpu = loss.value_and_grad(x, y, w, pw, reduction, label_smoothing=ls)
        dev = loss.value_and_grad(dx, y, dw, dpw, reduction, label_smoothing=ls)
        assert_gpu_matches(dev[0], cpu[0], label + " value")
        assert_gpu_matches(dev[1], cpu[1], label + " grad")
        g = (
            np.float32(0.5)
            if reduction != "none"
            else np.linspace(-1, 1, 37 * 29, dtype=np.float32).reshape(37, 29)
        )
        assert_gpu_matches(
            loss.backward(g, dx, y, dw, dpw, reduction, label_smoothing=ls),
            loss.backward(g, x, y, w, pw, reduction, label_smoothing=ls),
            label + " backward",
        )
        assert_gpu_matches(
            loss.forward(dx, y, dw, dpw, reduction, label_smoothing=ls), cpu[0], label
        )
        obj, dobj = (
            loss.make(w, pw, reduction, label_smoothing=ls),
            loss.make(dw, dpw, reduction, label_smoothing=ls),
        )
        assert_gpu_matches(dobj(dx, y), obj(x, y), label + " class")
        dd = dobj.derivatives(dx, y)
        assert dd.grad_target is None
        assert dd.hess is None
        assert_gpu_matches(dd.value, cpu[0], label + " derivatives")
        assert_gpu_matches(dd.grad, cpu[1], label + " derivatives")
        # Every derivative in one call, with a grad_output: the target gradient carries label
        # smoothing's chain-rule factor, as on the CPU.
        for kw in (
            {"grad_target": True, "hess": True},
            {"value": False, "grad": False, "hess": True},
            {"value": False, "grad_target": True},
        ):
            want = obj.derivatives(x, y, grad_output=g, **kw)
            have = dobj.derivatives(dx, y, grad_output=g, **kw)
            for field in ("value", "grad", "grad_target", "hess"):
                w_f, h_f = getattr(want, field), getattr(have, field)
                if w_f is None:
                    assert h_f is None, (label, kw, field)
                    continue
                if field in ("grad_target", "hess") and isinstance(w_f, np.ndarray):
                    # A difference of logarithms (BCE's target gradient) or of focal terms may
                    # cancel: a few ulp of the terms, not of the result.
                    assert type(h_f) is gpu.Array, (label, field)
                    scale = float(np.max(np.abs(w_f))) or 1.0
                    np.testing.assert_allclose(
                        h_f.numpy(), w_f, rtol=2e-5, atol=2e-5 * scale, err_msg=f"{label} {field}"
                    )
                else:
                    assert_gpu_matches(h_f, w_f, f"{label} {kw} {field}")
    with pytest.raises(ValueError, match=r"^label_smoothing must be in \[0, 1\]"):
        loss.forward(dx, y, label_smoothing=1.5)
    if loss.kind == "bce":
        # The range check applies to the target as given, as on the CPU.
        bad = np.where(np.arange(x.size).reshape(x.shape) == 3, 1.5, y).astype(np.float32)
        with pytest.raises(
            ValueError, match=r"^all elements of target should be .* target\[0, 3\] is 1.5"
        ):
            loss.forward(dx, bad, label_smoothing=1.0)


def assert_gpu_derivative(dev: Any, cpu: Any, what: str) -> None:
    """A GPU derivative against the CPU's: within a few ulp of the largest one (a target
    gradient is a difference of logarithms, a focal derivative a sum of terms of both signs)."""
    assert type(dev) is gpu.Array, what
    scale = float(np.max(np.abs(cpu), initial=0.0)) or 1.0
    np.testing.assert_allclose(dev.numpy(), cpu, rtol=2e-5, atol=2e-5 * scale, err_msg=what)


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_gpu_masks_and_axes_as_on_the_cpu(device: dict[str, Any], loss: Loss) -> None:
    x, y = sample(loss.kind, (6, 5, 4), np.float32, 32)
    rng = np.random.default_rng(33)
    w = rng.uniform(0.5, 2.0, (5, 1)).astype(np.float32)
    mask = rng.random((6, 1, 4)) < 0.7
    mask[:, :, 1] = False  # nothing kept there: NaN means, zero derivatives
    everywhere = np.broadcast_to(mask, x.shape)
    if loss.kind == "bce":
        # Out of range where nothing is kept: not checked, on the GPU as on the CPU.
        x = np.where(everywhere, x, np.float32(7.0))
        y = np.where(everywhere, y, 255.0)
    dx, dy, dw = gpu.asarray(x), gpu.asarray(y.astype(np.float32)), gpu.asarray(w)
    for reduction in ("mean", "sum", "weighted_mean"):
        for axis, keepdims in (
            (None, False),
            (None, True),
            (0, False),
            (-1, True),
            ((0, 2), False),
            ((2, 0, 1), True),
        ):
            label = f"{loss} {reduction} axis={axis} keepdims={keepdims}"
            kw: dict[str, Any] = {"mask": mask, "axis": axis, "keepdims": keepdims}
            cpu = loss.value_and_grad(x, y, w, None, reduction, **kw)
            dev = loss.value_and_grad(dx, dy, dw, None, reduction, **kw)
            assert_gpu_matches(dev[0], cpu[0], label + " value")
            assert_gpu_matches(dev[1], cpu[1], label + " grad")
            assert not np.any(dev[1].numpy()[~everywhere]), label
            # A grad_output of the reduced result's shape, given as NumPy or on the device.
            shape = np.shape(cpu[0])
            g = np.linspace(-1.0, 1.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)
            want = loss.backward(g, x, y, w, None, reduction, **kw)
            assert_gpu_matches(loss.backward(g, dx, dy, dw, None, reduction, **kw), want, label)
            dg = gpu.asarray(g) if shape else g
            assert_gpu_matches(loss.backward(dg, dx, dy, dw, None, reduction, **kw), want, label)
            # Every derivative in one call, through the class, with the mask on the device.
            obj = loss.make(w, None, reduction, axis=axis, keepdims=keepdims)
            dobj = loss.make(dw, None, reduction, axis=axis, keepdims=keepdims)
            want_d = obj.derivatives(x, y, mask=mask, grad_target=True, hess=True, grad_output=g)
            have_d = dobj.derivatives(
                dx, dy, mask=gpu.asarray(mask), grad_target=True, hess=True, grad_output=g
            )
            assert_gpu_matches(have_d.value, want_d.value, label + " derivatives")
            for field in ("grad", "grad_target", "hess"):
                assert_gpu_derivative(
                    getattr(have_d, field), getattr(want_d, field), f"{label} {field}"
                )
    # A masked array with a GPU operand: its mask is a mask there too.
    masked = np.ma.masked_array(x, mask=~everywhere)
    assert_gpu_matches(
        loss.forward(masked, dy, reduction="sum"),
        loss.forward(x, y, reduction="sum", mask=mask),
        "masked array",
    )
    # The CPU's errors: a mask that does not broadcast, a non-bool mask, a grad_output of
    # another shape than the reduced result's.
    with pytest.raises(
        ValueError,
        match=r"^mask of shape \(3,\) cannot be broadcast to the input.s shape \(6, 5, 4\)",
    ):
        loss.forward(dx, dy, mask=np.ones(3, bool))
    with pytest.raises(TypeError, match=r"^mask must be an array of booleans"):
        loss.forward(dx, dy, mask=np.ones(4))
    with pytest.raises(ValueError, match=r"grad_output"):
        loss.backward(np.ones(3, np.float32), dx, dy, reduction="sum", axis=0)
