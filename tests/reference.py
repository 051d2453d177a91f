"""A float64 NumPy reference for bcers' losses and gradients, independent of bcers.

The formulas are torch's (see the reference notes on torch's semantics), evaluated in float64
on the operands *after* the cast bcers applies (every operand is cast to the input's compute
dtype: float32 for float16 and float32 inputs, float64 for float64 inputs). So the only
difference between bcers and this reference is bcers' own rounding, which
:func:`assert_matches` bounds from first principles.

Every function returns an :class:`Expected`: the exact value (to float64 precision) and a
bound on how far a correct implementation computing in the compute dtype may be from it.

The error model (``RTOL`` below) -- every operation bcers performs (a ``+``, ``*``, ``/``, a
``log``/``log1p``/``exp``) is accurate to within a few units in the last place (ulp) *of its
own result*; the kernels compose at most about ten of them per element. An error made in an
intermediate quantity is carried along in absolute terms, so the error of one element is
bounded by a few ulp of the *sum of the absolute values of the intermediate terms* (the
"magnitude", ``mag`` below), not of the result: ``(1 - y) * x + ...`` may cancel (targets outside
[0, 1], negative weights), and a relative tolerance on the result alone would then be wrong.
So: ``|computed - exact| <= RTOL * mag + ATOL``, with

* ``RTOL[float32] = 1e-5``: about 84 ulp of float32 (2**-23 = 1.19e-7); the composition of
  <= 10 operations at <= 2 ulp each is <= 20 ulp (2.4e-6), so there is a 4x margin, while a
  genuine bug (a wrong clamp, a missing term, a wrong EPS, an off-by-one in the mean's divisor
  at the sizes we test) shows up as a relative error of 1e-4 or (much) more.
* ``RTOL[float64] = 1e-12``: the same count against 2**-52 gives ~4.4e-15; 1e-12 (about 4500
  ulp) leaves room for the vectorised polynomial ``log``/``exp`` that are planned, and is still
  small enough to see float64 mistakes such as an EPS of 1e-12 instead of float32's 1e-12
  widened (relative difference 4e-9).
* ``ATOL``: a few times the smallest *normal* number of the compute dtype, times the
  coefficients an underflowed intermediate is multiplied by. Below the normal range an
  elementary function may lose all relative accuracy (gradual underflow, or flushing to zero
  in vector code): ``exp(-100)`` in float32 is a subnormal with 5 significant bits. Nothing
  above ~1e-37 (float32) or ~1e-307 (float64) is affected by this allowance.

Reductions: bcers adds the float32/float64 element values in float64. The bound of the sum is
the sum of the element bounds plus the worst-case float64 summation error of *any* order,
``(n + 1) * u64 * sum(|v_i|)`` (u64 = 2**-53); ``mean`` divides both by ``n``.

The final rounding to the result dtype (float32; float16 results are the float32 value rounded
again) is not part of the bound: :func:`assert_matches` rounds both ends of the interval
``[exact - bound, exact + bound]`` the way bcers rounds its result, which is exact for a
monotone rounding and also covers overflow to inf in float16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)

#: torch's ``EPSILON`` for the BCE input gradient: the float32 constant 1e-12, widened.
EPS = float(np.float32(1e-12))
#: torch's floor for the logarithms in BCE.
LOG_FLOOR = -100.0

RTOL = {F32: 1e-5, F64: 1e-12}
#: A few times the smallest normal number of each compute dtype (see the module docstring).
ATOL = {F32: 4 * float(np.finfo(np.float32).tiny), F64: 4 * float(np.finfo(np.float64).tiny)}
#: float64's unit roundoff, for the summation bound of the reductions.
U64 = 2.0**-53

REDUCTIONS = ("none", "mean", "sum")


def compute_dtype(dtype: Any) -> np.dtype:
    """The dtype bcers computes a ``dtype`` input in: float32 for float16."""
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype == F16:
        return F32
    if dtype in (F32, F64):
        return dtype
    raise TypeError(f"not a float input dtype: {dtype}")


def result_dtype(dtype: Any) -> np.dtype:
    """The dtype of bcers' result for an input of ``dtype`` (native byte order)."""
    return np.dtype(dtype).newbyteorder("=")


def cast(value: Any, dtype: np.dtype) -> np.ndarray:
    """``value`` as bcers sees it (cast to ``dtype``), then widened to float64 exactly."""
    with np.errstate(over="ignore"):  # float64 values beyond float16's range become inf
        return np.asarray(value).astype(dtype).astype(np.float64)


def broadcast(value: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """NumPy broadcasting of ``value`` to ``shape``, which it may never enlarge."""
    if value.ndim > len(shape):
        raise ValueError(f"{name} of shape {value.shape} has more dimensions than {shape}")
    return np.broadcast_to(value, shape)


@dataclass
class Expected:
    """What a correct implementation returns, with its error bound.

    ``value`` and ``error`` are float64 arrays (0-d for a reduction); ``dtype`` is the dtype of
    bcers' result and ``compute`` the dtype it computes in.
    """

    value: np.ndarray
    error: np.ndarray
    dtype: np.dtype
    compute: np.dtype
    reduced: bool


@dataclass
class Operands:
    """The operands of one call, cast like bcers casts them and widened to float64."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    pw: np.ndarray
    dtype: np.dtype
    compute: np.dtype

    @classmethod
    def of(
        cls,
        input: Any,
        target: Any,
        weight: Any | None = None,
        pos_weight: Any | None = None,
    ) -> Operands:
        raw = np.asarray(input)
        compute = compute_dtype(raw.dtype)
        # The other operands are cast to the input's dtype (float16 for a float16 input), then
        # computed in ``compute``: widening float16 to float32 is exact.
        dtype = result_dtype(raw.dtype)
        x = cast(raw, compute)
        y = cast(target, dtype)
        if y.shape != x.shape:
            raise ValueError(f"target shape {y.shape} differs from input shape {x.shape}")
        w = broadcast(cast(1.0 if weight is None else weight, dtype), x.shape, "weight")
        pw = broadcast(
            cast(1.0 if pos_weight is None else pos_weight, dtype), x.shape, "pos_weight"
        )
        return cls(x, y, w, pw, dtype, compute)


def _times(coef: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``coef * v``, but 0 where one factor is 0 and the other infinite (the limit of a loss term,
    or of a weighted loss, as the infinite factor grows without bound); NaN stays NaN."""
    inf_times_zero = ((coef == 0) & np.isinf(v)) | (np.isinf(coef) & (v == 0))
    return np.where(inf_times_zero, 0.0, coef * v)


def value_text(v: Any, compute: np.dtype) -> str:
    """A value as bcers' messages print it: the shortest digits that give the value back in the
    dtype the call computes in, laid out as Python lays out a float's repr (positional from 1e-4
    to below 1e16, else scientific with a signed exponent of two digits or more); ``NaN``.
    Where two shortest digit strings are equally close (a tie), bcers may print the other one:
    :func:`check_value_text` accepts either."""
    v = compute.type(v)
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    sci = np.format_float_scientific(v, unique=True, exp_digits=1)
    mantissa, exponent = sci.split("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    exp = int(exponent)
    if -4 <= exp < 16:
        if exp >= 0:
            whole = digits.ljust(exp + 1, "0")
            body = f"{whole[: exp + 1]}.{whole[exp + 1 :] or '0'}"
        else:
            body = "0." + "0" * (-exp - 1) + digits
    else:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        body += f"e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return sign + body


def check_value_text(text: str, v: Any, compute: np.dtype) -> None:
    """Asserts that ``text`` is :func:`value_text` of ``v``, or the same layout of the other
    shortest digits where two are equally close (the text gives back the same value)."""
    want = value_text(v, compute)
    if text == want:
        return
    assert len(text) == len(want), (text, want)
    assert compute.type(float(text)) == compute.type(v), (text, want)
    assert ("e" in text) == ("e" in want), (text, want)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) below."""
    ez = np.exp(np.minimum(z, 0.0))  # e^z where z < 0, 1 where z >= 0
    enz = np.exp(-np.maximum(z, 0.0))  # e^-z where z >= 0, 1 where z < 0
    return np.where(z >= 0, 1.0 / (1.0 + enz), ez / (1.0 + ez))


# ---------------------------------------------------------------------------------------------
# Per-element values and magnitudes (unweighted by grad_output).


def bce_elementwise(ops: Operands) -> tuple[np.ndarray, np.ndarray]:
    """BCE per element and its magnitude: ``-(y*max(log x,-100) + (1-y)*max(log1p(-x),-100))*w``."""
    x, y, w = ops.x, ops.y, ops.w
    with np.errstate(all="ignore"):
        log_x = np.maximum(np.log(x), LOG_FLOOR)
        log_1mx = np.maximum(np.log1p(-x), LOG_FLOOR)
        value = _times(w, -(y * log_x + (1.0 - y) * log_1mx))
        mag = _times(np.abs(w), np.abs(y * log_x) + np.abs((1.0 - y) * log_1mx))
        atol = ATOL[ops.compute] * (1.0 + _times(np.abs(w), np.abs(y) + np.abs(1.0 - y)))
    return value, RTOL[ops.compute] * mag + atol


def bce_grad_elementwise(ops: Operands) -> tuple[np.ndarray, np.ndarray]:
    """The BCE input gradient per element: ``(x - y) / max((1 - x) * x, EPS) * w``."""
    x, y, w = ops.x, ops.y, ops.w
    with np.errstate(all="ignore"):
        value = _times(w, (x - y) / np.maximum((1.0 - x) * x, EPS))
        atol = ATOL[ops.compute] * (1.0 + np.abs(w))
    return value, RTOL[ops.compute] * np.abs(value) + atol


def logits_elementwise(ops: Operands) -> tuple[np.ndarray, np.ndarray]:
    """BCE with logits per element, in its overflow-free form.

    ``(1-y)*max(x,0) + pw*y*max(-x,0) + (1+(pw-1)*y)*log1p(exp(-|x|))``, times ``w``; every
    product with a factor 0 is 0 (the mathematical limit when the other factor is infinite).
    """
    x, y, w, pw = ops.x, ops.y, ops.w, ops.pw
    with np.errstate(all="ignore"):
        softplus = np.log1p(np.exp(-np.abs(x)))
        c_pos, c_neg = 1.0 - y, _times(pw, y)
        log_weight = 1.0 + _times(pw - 1.0, y)
        t_pos = _times(c_pos, np.maximum(x, 0.0))
        t_neg = _times(c_neg, np.maximum(-x, 0.0))
        t_log = _times(log_weight, softplus)
        value = _times(w, t_pos + t_neg + t_log)
        # (pw - 1) * y is rounded before 1 is added: its size counts, not only the sum's.
        mag = _times(
            np.abs(w),
            np.abs(t_pos)
            + np.abs(t_neg)
            + _times(np.abs(log_weight) + np.abs(_times(pw - 1.0, y)), softplus),
        )
        coefs = np.abs(log_weight) + np.abs(_times(pw - 1.0, y)) + np.abs(c_pos) + np.abs(c_neg)
        atol = ATOL[ops.compute] * (1.0 + _times(np.abs(w), coefs))
    return value, RTOL[ops.compute] * mag + atol


def logits_grad_elementwise(ops: Operands) -> tuple[np.ndarray, np.ndarray]:
    """The logits input gradient per element: ``w * ((1-y)*sigmoid(x) - pw*y*sigmoid(-x))``."""
    x, y, w, pw = ops.x, ops.y, ops.w, ops.pw
    with np.errstate(all="ignore"):
        s_pos, s_neg = _sigmoid(x), _sigmoid(-x)
        a, b = _times(1.0 - y, s_pos), _times(_times(pw, y), s_neg)
        value = _times(w, a - b)
        mag = _times(np.abs(w), np.abs(a) + np.abs(b))
        atol = ATOL[ops.compute] * (
            1.0 + _times(np.abs(w), np.abs(1.0 - y) + np.abs(_times(pw, y)))
        )
    return value, RTOL[ops.compute] * mag + atol


# ---------------------------------------------------------------------------------------------
# Reductions and the public reference functions.


def _reduce(value: np.ndarray, error: np.ndarray, reduction: str, ops: Operands) -> Expected:
    if reduction == "none":
        return Expected(value, error, ops.dtype, ops.compute, reduced=False)
    n = value.size
    if n == 0:
        total, bound = (math.nan if reduction == "mean" else 0.0), 0.0
    else:
        flat = value.ravel()
        with np.errstate(all="ignore"):
            if np.all(np.isfinite(flat)):
                total = math.fsum(flat)
                bound = float(np.sum(error)) + (n + 1) * U64 * float(
                    np.sum(np.abs(flat) + error.ravel())
                )
            else:
                total, bound = float(np.sum(flat)), 0.0
        if reduction == "mean":
            total, bound = total / n, bound / n + U64 * abs(total / n)
    return Expected(np.array(total), np.array(bound), ops.dtype, ops.compute, reduced=True)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(reduction)


def bce(input: Any, target: Any, weight: Any = None, reduction: str = "mean") -> Expected:
    """The expected result of ``bcers.binary_cross_entropy``."""
    _check_reduction(reduction)
    ops = Operands.of(input, target, weight)
    return _reduce(*bce_elementwise(ops), reduction, ops)


def bce_with_logits(
    input: Any, target: Any, weight: Any = None, reduction: str = "mean", pos_weight: Any = None
) -> Expected:
    """The expected result of ``bcers.binary_cross_entropy_with_logits``."""
    _check_reduction(reduction)
    ops = Operands.of(input, target, weight, pos_weight)
    return _reduce(*logits_elementwise(ops), reduction, ops)


def _grad(
    value: np.ndarray, error: np.ndarray, grad_output: Any, reduction: str, ops: Operands
) -> Expected:
    """Applies grad_output (and the mean's 1/n) to a per-element gradient."""
    g = cast(1.0 if grad_output is None else grad_output, ops.dtype)
    if reduction == "none":
        g = broadcast(g, value.shape, "grad_output")
    elif g.ndim != 0:
        raise ValueError("grad_output must be a scalar for a reduced loss")
    scale = 1.0 / value.size if reduction == "mean" and value.size else 1.0
    with np.errstate(all="ignore"):
        value = value * g * scale
        # g*scale is rounded to the compute dtype once (covered by RTOL); ATOL as above.
        error = error * np.abs(g) * scale + ATOL[ops.compute]
    return Expected(value, error, ops.dtype, ops.compute, reduced=False)


def bce_backward(
    grad_output: Any, input: Any, target: Any, weight: Any = None, reduction: str = "mean"
) -> Expected:
    """The expected result of ``bcers.binary_cross_entropy_backward``."""
    _check_reduction(reduction)
    ops = Operands.of(input, target, weight)
    return _grad(*bce_grad_elementwise(ops), grad_output, reduction, ops)


def bce_with_logits_backward(
    grad_output: Any,
    input: Any,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> Expected:
    """The expected result of ``bcers.binary_cross_entropy_with_logits_backward``."""
    _check_reduction(reduction)
    ops = Operands.of(input, target, weight, pos_weight)
    return _grad(*logits_grad_elementwise(ops), grad_output, reduction, ops)


# ---------------------------------------------------------------------------------------------
# Comparing bcers' results with the reference.


def _rounded(v: np.ndarray, e: Expected) -> np.ndarray:
    """``v`` rounded as bcers rounds its result: to the compute dtype, then the result dtype."""
    with np.errstate(all="ignore"):
        return v.astype(e.compute).astype(e.dtype).astype(np.float64)


def mismatches(actual: Any, expected: Expected) -> np.ndarray:
    """A boolean array: where ``actual`` is outside what ``expected`` allows."""
    a = np.asarray(actual, dtype=np.float64)
    v, err = expected.value, expected.error
    with np.errstate(all="ignore"):
        lo = _rounded(v - err, expected)
        hi = _rounded(v + err, expected)
        in_interval = (lo <= a) & (a <= hi)
    ok = np.where(
        np.isnan(v),
        np.isnan(a),
        np.where(np.isinf(v), a == v, in_interval & np.isfinite(err)),
    )
    return ~ok


def assert_matches(actual: Any, expected: Expected, context: dict | None = None) -> None:
    """Asserts that bcers' ``actual`` result is what ``expected`` allows, type and shape too."""
    if expected.reduced:
        assert isinstance(actual, np.floating), f"expected a NumPy scalar, got {type(actual)}"
        assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    else:
        assert isinstance(actual, np.ndarray), f"expected an ndarray, got {type(actual)}"
        assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
        assert actual.shape == expected.value.shape, (actual.shape, expected.value.shape)
    bad = mismatches(actual, expected)
    if np.any(bad):
        where = np.argwhere(bad)[:5] if bad.ndim else [()]
        lines = []
        for idx in where:
            idx = tuple(idx)
            line = (
                f"at {idx}: got {np.asarray(actual)[idx]!r}, expected "
                f"{expected.value[idx]!r} +- {expected.error[idx]!r}"
            )
            for name, arr in (context or {}).items():
                if arr is not None and not expected.reduced:
                    a = np.broadcast_to(np.asarray(arr), expected.value.shape)
                    line += f", {name}={a[idx]!r}"
            lines.append(line)
        raise AssertionError(f"{int(np.sum(bad))} mismatches:\n" + "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Sigmoid focal loss (torchvision's ``sigmoid_focal_loss``), for targets in [0, 1].
#
# Per element, with ``q = 1 - p_t = y*sigmoid(-x) + (1-y)*sigmoid(x)``, ``ce`` = BCE with logits
# (pos_weight 1) and ``alpha_t = alpha*y + (1-alpha)*(1-y)`` (1 for a negative alpha)::
#
#     loss = w * alpha_t * ce * q**gamma
#     grad = w * alpha_t * q**gamma * (dce + gamma * ce * r),   r = dq/dx / q
#
# with ``dce = (1-y)*sigmoid(x) - y*sigmoid(-x)`` and ``dq/dx = (1-2y)*sigmoid(x)*sigmoid(-x)``,
# so ``r = (1-2y) / (y*(1+exp(-x)) + (1-y)*(1+exp(x)))``: finite where ``q`` is 0 (no
# ``q**(gamma-1)``). ``log q`` is the log-sum-exp of ``log(y) + logsigmoid(-x)`` and
# ``log(1-y) + logsigmoid(x)``, and ``q**gamma = exp(gamma*log q)``: nothing underflows before
# the result does (``q`` itself is ``exp(-1000)`` at ``x = -1000, y = 0``, and
# ``q**0.5 = exp(-500)`` is a normal float64). Every product with a factor 0 is 0 (the limits
# at infinite logits; ``0**0 = 1``); an infinite ``ce`` times a power of a positive ``q`` is
# infinite, even where the power is below float64's range (``y = 1e-300`` at ``x = -inf``).
#
# Error bounds, in the style above (each intermediate carries its error in absolute terms):
#
# * ``ce``, ``dce``: as :func:`logits_elementwise` / :func:`logits_grad_elementwise`.
# * ``alpha_t``: ``RTOL`` of ``|alpha*y| + |(1-alpha)*(1-y)|``, plus ``ATOL`` unless both
#   terms are 0 (then it is exactly 0).
# * ``q**gamma``: computed through ``gamma*log(q)`` (the only way to be finite and accurate at
#   any logit), whose absolute error becomes a relative error of the power: ``RTOL*(1+gamma)``
#   (a few ulp of ``q``, raised to ``gamma``) plus ``LOG_DOMAIN_ULPS`` units of the compute
#   dtype per unit of ``|gamma*log q|`` (the rounding of an argument of size ``|gamma*log q|``,
#   up to ~87 in float32 before the power underflows). For hard targets (0 or 1)
#   ``log q = -softplus(+-x)`` needs no exponential that underflows: nothing more. For soft
#   targets, ``q = c1 + c_e*exp(-|x|)`` (up to a factor in [1, 2]) is a sum whose small term
#   may be subnormal: ``q`` is known to ``2*ATOL`` only, and that is raised to ``gamma``
#   without linearising (the power of ``q +- 2*ATOL`` minus the power of ``q``: a large
#   relative error where ``q`` is itself tiny, as for ``y = 1e-40``).
# * ``r``: ``RTOL`` of ``(|1-y| + |y|) / denominator`` (``1 - 2y`` may cancel); where
#   ``exp(-|x|)`` is subnormal (|x| from ~87 to ~104 in float32), ``r`` is ``(1-2y)*e/c1``
#   with ``e`` known to the subnormal spacing only, which moves ``gamma*ce*r`` by at most
#   ``gamma*(|x| + 2)*ATOL`` (``ce ~ c1*|x|``); beyond, ``|x|*exp(-|x|)`` is far below that, so
#   ``|x|`` is capped.
# * products and sums: ``RTOL`` of their result, and first-order propagation of the factors'
#   errors; ``ATOL`` on each result that may be subnormal.

#: float32's and float64's unit roundoff, for the log-domain rounding of ``q**gamma``.
UNIT = {F32: 2.0**-24, F64: 2.0**-53}
#: Units of roundoff of ``|gamma*log q|`` allowed in the relative error of ``q**gamma``.
LOG_DOMAIN_ULPS = 8.0
#: ``|x|`` beyond this is no longer a factor of the underflow allowance of ``gamma*ce*r``.
UNDERFLOW_X_CAP = 1000.0


def focal_parameters(alpha: float, gamma: float, compute: np.dtype) -> tuple[float, float]:
    """``alpha`` and ``gamma`` as a call computes with them: rounded to the compute dtype."""
    return float(compute.type(alpha)), float(compute.type(gamma))


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    """``log(sigmoid(z)) = -softplus(-z)``, without overflow or underflow; -inf at -inf."""
    return -(np.maximum(-z, 0.0) + np.log1p(np.exp(-np.abs(z))))


@dataclass
class FocalTerms:
    """The factors of the focal loss of each element, with their absolute errors."""

    a: np.ndarray  # alpha_t (1 where alpha < 0)
    a_err: np.ndarray
    ce: np.ndarray  # BCE with logits
    ce_err: np.ndarray
    log_q: np.ndarray  # log(1 - p_t)
    mod: np.ndarray  # (1 - p_t) ** gamma
    mod_err: np.ndarray
    gamma: float


def _focal_terms(ops: Operands, alpha: float, gamma: float) -> FocalTerms:
    x, y = ops.x, ops.y
    with np.errstate(invalid="ignore"):
        outside = np.any((y < 0) | (y > 1))
    if outside:
        raise ValueError("the focal reference takes targets in [0, 1] only")
    alpha, gamma = focal_parameters(alpha, gamma, ops.compute)
    rtol, atol, unit = RTOL[ops.compute], ATOL[ops.compute], UNIT[ops.compute]
    plain = Operands(x, y, np.ones_like(x), np.ones_like(x), ops.dtype, ops.compute)
    ce, ce_err = logits_elementwise(plain)
    with np.errstate(all="ignore"):
        if alpha >= 0:
            a_pos, a_neg = alpha * y, (1.0 - alpha) * (1.0 - y)
            a = a_pos + a_neg
            # (exact where both terms are 0: alpha_t = 0 keeps an infinite ce's loss at 0)
            a_err = rtol * (np.abs(a_pos) + np.abs(a_neg)) + atol * ((a_pos != 0) | (a_neg != 0))
        else:
            a, a_err = np.ones_like(x), np.zeros_like(x)
        log_q = np.logaddexp(np.log(y) + _log_sigmoid(-x), np.log1p(-y) + _log_sigmoid(x))
        mod = np.exp(_times(np.full_like(x, gamma), log_q))
        # Soft targets: q known to 2*ATOL only, raised to gamma without linearising.
        q = np.exp(log_q)
        up = np.exp(gamma * np.log(q + 2.0 * atol)) - mod
        down = mod - np.maximum(q - 2.0 * atol, 0.0) ** gamma
        hard = (y == 0) | (y == 1)
        underflow = np.where(hard, 0.0, np.maximum(np.maximum(up, down), 0.0))
        rel = rtol * (1.0 + gamma) + LOG_DOMAIN_ULPS * unit * np.abs(
            _times(np.full_like(x, gamma), log_q)
        )
        mod_err = _times(mod, rel) + underflow + atol
    return FocalTerms(a, a_err, ce, ce_err, log_q, mod, mod_err, gamma)


def focal_factors(
    input: Any, target: Any, alpha: float = 0.25, gamma: float = 2.0
) -> dict[str, np.ndarray]:
    """The exact factors of the focal loss of each element (no weight), in float64:
    ``alpha_t``, ``ce``, ``q`` (``1 - p_t``), ``mod`` (``q**gamma``), ``dce`` and ``r``
    (``dq/dx / q``), so that ``loss = alpha_t * ce * mod`` and ``grad = alpha_t * mod * (dce +
    gamma * ce * r)`` (with products by 0 taken as 0)."""
    ops = Operands.of(input, target)
    t = _focal_terms(ops, alpha, gamma)
    plain = Operands(ops.x, ops.y, np.ones_like(ops.x), np.ones_like(ops.x), ops.dtype, ops.compute)
    dce, _ = logits_grad_elementwise(plain)
    with np.errstate(all="ignore"):
        r = (1.0 - 2.0 * ops.y) / _focal_r_denominator(ops.x, ops.y)
        q = np.exp(t.log_q)
    return {"alpha_t": t.a, "ce": t.ce, "q": q, "mod": t.mod, "dce": dce, "r": r}


def _focal_r_denominator(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``y*(1+exp(-x)) + (1-y)*(1+exp(x))``: ``r = (1-2y)`` over it (0 where it is infinite)."""
    return _times(y, 1.0 + np.exp(-x)) + _times(1.0 - y, 1.0 + np.exp(x))


def focal_elementwise(ops: Operands, alpha: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """The focal loss per element, ``w * alpha_t * ce * (1 - p_t)**gamma``, and its bound."""
    t = _focal_terms(ops, alpha, gamma)
    w = ops.w
    rtol, atol = RTOL[ops.compute], ATOL[ops.compute]
    with np.errstate(all="ignore"):
        # An infinite ce (an infinite logit) times a power of q that is positive but below
        # float64's range (q = y = 1e-300 at x = -inf) is still infinite: the limit.
        positive = np.isinf(t.ce) & (t.mod == 0) & (t.log_q > -np.inf)
        ce_mod = np.where(positive, t.ce, _times(t.ce, t.mod))
        value = _times(w, _times(t.a, ce_mod))
        a, ce, mod = np.abs(t.a), np.abs(t.ce), np.abs(t.mod)
        propagated = (
            _times(_times(a, mod), t.ce_err)
            + _times(_times(a, ce), t.mod_err)
            + _times(t.a_err, _times(ce, mod))
        )
        error = _times(np.abs(w), propagated) + rtol * np.abs(value) + atol * (1.0 + np.abs(w))
    return value, error


def focal_grad_elementwise(
    ops: Operands, alpha: float, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """The focal loss's input gradient per element, ``w * alpha_t * q**gamma * (dce + gamma *
    ce * r)``, and its bound."""
    t = _focal_terms(ops, alpha, gamma)
    x, y, w, g = ops.x, ops.y, ops.w, t.gamma
    rtol, atol = RTOL[ops.compute], ATOL[ops.compute]
    plain = Operands(x, y, np.ones_like(x), np.ones_like(x), ops.dtype, ops.compute)
    dce, dce_err = logits_grad_elementwise(plain)
    with np.errstate(all="ignore"):
        den = _focal_r_denominator(x, y)
        r = (1.0 - 2.0 * y) / den
        r_err = rtol * (np.abs(1.0 - y) + np.abs(y)) / den
        t2 = g * _times(t.ce, r)
        t2_err = (
            g * (_times(np.abs(t.ce), r_err) + _times(t.ce_err, np.abs(r)))
            + rtol * np.abs(t2)
            + g * atol * (2.0 + np.minimum(np.abs(x), UNDERFLOW_X_CAP))
        )
        inner = dce + t2
        inner_err = dce_err + t2_err + rtol * (np.abs(dce) + np.abs(t2))
        value = _times(w, _times(t.a, _times(t.mod, inner)))
        a, mod, absinner = np.abs(t.a), np.abs(t.mod), np.abs(inner)
        propagated = (
            _times(_times(a, mod), inner_err)
            + _times(_times(a, absinner), t.mod_err)
            + _times(t.a_err, _times(mod, absinner))
        )
        error = _times(np.abs(w), propagated) + rtol * np.abs(value) + atol * (1.0 + np.abs(w))
    return value, error


def focal(
    input: Any,
    target: Any,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    weight: Any = None,
) -> Expected:
    """The expected result of ``bcers.sigmoid_focal_loss`` (targets in [0, 1])."""
    _check_reduction(reduction)
    ops = Operands.of(input, target, weight)
    return _reduce(*focal_elementwise(ops, alpha, gamma), reduction, ops)


def focal_backward(
    grad_output: Any,
    input: Any,
    target: Any,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    weight: Any = None,
) -> Expected:
    """The expected result of ``bcers.sigmoid_focal_loss_backward`` (targets in [0, 1])."""
    _check_reduction(reduction)
    ops = Operands.of(input, target, weight)
    return _grad(*focal_grad_elementwise(ops, alpha, gamma), grad_output, reduction, ops)


# ---------------------------------------------------------------------------------------------
# Beyond torch: the target gradient and the second derivative of each loss, label smoothing,
# masks, the weighted mean and reductions over some axes (``Derivatives`` of bcers' calls).
#
# The per-element formulas below are derived here from the losses' definitions (the target
# gradient is the derivative of the loss with respect to the target, the second derivative
# that of the input gradient with respect to the input); the tests hold them against torch's
# autograd (``fixtures/torch_extra.json``) and against high-precision finite differences.
#
# BCE (the loss as computed, with torch's log floor; torch's autograd target gradient is the
# unclamped ``log(1-x) - log(x)``)::
#
#     grad_target = w * (max(log1p(-x), -100) - max(log(x), -100))
#     hess        = w * (y / max(x**2, EPS) + (1 - y) / max((1 - x)**2, EPS))
#
# BCE with logits, ``loss = (1-y)*x + (1+(pw-1)*y)*softplus(-x)``::
#
#     grad_target = w * (pw * softplus(-x) - softplus(x))
#     hess        = w * (1 + (pw - 1)*y) * sigmoid(x) * sigmoid(-x)
#
# The focal loss ``w * alpha_t * ce * q**gamma`` (``q = 1 - p_t``, ``p = sigmoid(x)``): with
# ``dq/dx = (1-2y) p (1-p)``, ``r = dq/dx / q`` (as above), ``dr/dx = r (1-2p) - r**2``,
# ``dce/dx = p - y``, ``d2ce/dx2 = p (1-p)``, ``dce/dy = -x``, ``dq/dy = 1 - 2p``,
# ``dalpha_t/dy = 2 alpha - 1`` (0 for a negative alpha)::
#
#     hess        = w * alpha_t * q**gamma * (p (1-p) + 2 gamma r dce
#                                            + gamma ce ((gamma - 1) r**2 + (1 - 2p) r))
#     grad_target = w * q**gamma * (dalpha_t * ce + alpha_t * (-x + gamma * ce * (1-2p) / q))
#
# ``1 - 2p = tanh(-x/2)``; ``ce / q`` is, for a hard target on the side of its class
# (``y = 1, x > 0`` or ``y = 0, x < 0``, where both underflow together), ``(1 + t) log1p(t) / t``
# with ``t = exp(-|x|)`` (1 at ``t = 0``). At infinite logits they give the limits.
#
# Error bounds: as above, ``RTOL`` of the sum of the absolute values of the terms, the factors'
# errors propagated to first order, ``ATOL`` for underflow. Label smoothing: bcers takes the
# constants ``1 - s`` and ``s / 2`` in the compute dtype (as every operand) and computes the
# target ``y (1 - s) + s / 2`` in it, within ``SMOOTHING_ULPS`` units of roundoff of
# ``|y| (1 - s) + s / 2`` (the product and the sum, with a margin of 2) plus the smallest
# subnormal step (below the normal range a rounding is absolute); that error
# ``dy`` is carried through each output by evaluating it at the smoothed target plus and minus
# ``dy`` in float64 (its change is the first-order error, with float64's own rounding, far
# below the tolerances, on top).

#: The outputs of a ``derivatives`` call, in the order of ``bcers.Derivatives``.
OUTPUTS = ("value", "grad", "grad_target", "hess")
#: Units of roundoff of ``|y| (1 - s) + s / 2`` in bcers' smoothed target.
SMOOTHING_ULPS = 4.0
#: The value a dropped (masked) element takes in the reference before its results are zeroed.
_SAFE = 0.5


def bce_grad_target_elementwise(ops: Operands) -> tuple[np.ndarray, np.ndarray]:
    """BCE's target gradient per element: ``w * (max(log1p(-x), -100) - max(log x, -100))``."""
    x, w = ops.x, ops.w
    with np.errstate(all="ignore"):
        log_x = np.maximum(np.log(x), LOG_FLOOR)
        log_1mx = np.maximum(np.log1p(-x), LOG_FLOOR)
        value = _times(w, log_1mx - log_x)
        mag = _times(np.abs(w), np.abs(log_x) + np.abs(log_1mx))
        atol = ATOL[ops.compute] * (1.0 + np.abs(w))
    return value, RTOL[ops.compute] * mag + atol


def bce_hess_elementwise(ops: Operands) -> tuple[np.ndarray, np.ndarray]:
    """BCE's second derivative per element: ``w * (y / max(x^2, EPS) + (1-y) / max((1-x)^2,
    EPS))``."""
    x, y, w = ops.x, ops.y, ops.w
    with np.errstate(all="ignore"):
        t1 = y / np.maximum(x * x, EPS)
        t2 = (1.0 - y) / np.maximum((1.0 - x) ** 2, EPS)
        value = _times(w, t1 + t2)
        mag = _times(np.abs(w), np.abs(t1) + np.abs(t2))
        atol = ATOL[ops.compute] * (1.0 + np.abs(w))
    return value, RTOL[ops.compute] * mag + atol


def _softplus(z: np.ndarray) -> np.ndarray:
    """``log(1 + exp(z))`` without overflow: ``max(z, 0) + log1p(exp(-|z|))``."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def logits_grad_target_elementwise(ops: Operands) -> tuple[np.ndarray, np.ndarray]:
    """BCE with logits' target gradient per element: ``w * (pw softplus(-x) - softplus(x))``."""
    x, w, pw = ops.x, ops.w, ops.pw
    with np.errstate(all="ignore"):
        a, b = _softplus(-x), _softplus(x)
        pa = _times(pw, a)
        value = _times(w, pa - b)
        mag = _times(np.abs(w), np.abs(pa) + b)
        atol = ATOL[ops.compute] * (1.0 + _times(np.abs(w), 1.0 + np.abs(pw)))
    return value, RTOL[ops.compute] * mag + atol


def logits_hess_elementwise(ops: Operands) -> tuple[np.ndarray, np.ndarray]:
    """BCE with logits' second derivative per element: ``w (1 + (pw-1) y) sigmoid(x)
    sigmoid(-x)``."""
    x, y, w, pw = ops.x, ops.y, ops.w, ops.pw
    with np.errstate(all="ignore"):
        s = _sigmoid(x) * _sigmoid(-x)
        spread = _times(pw - 1.0, y)
        value = _times(w, _times(1.0 + spread, s))
        coef = _times(np.abs(w), 1.0 + np.abs(spread))
        atol = ATOL[ops.compute] * (1.0 + coef)
    return value, RTOL[ops.compute] * _times(coef, s) + atol


def _focal_ce_over_q(x: np.ndarray, y: np.ndarray, ce: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``ce / q``, also where both underflow (a hard target on the side of its class)."""
    with np.errstate(all="ignore"):
        t = np.exp(-np.abs(x))
        log1p_over_t = np.where(t == 0, 1.0, np.log1p(t) / np.where(t == 0, 1.0, t))
        closed = (1.0 + t) * log1p_over_t
        right = ((y == 1) & (x > 0)) | ((y == 0) & (x < 0))
        return np.where(right, closed, ce / q)


def focal_grad_target_elementwise(
    ops: Operands, alpha: float, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """The focal loss's target gradient per element, ``w q^gamma (dalpha_t ce + alpha_t (-x +
    gamma ce (1-2p) / q))``, and its bound (finite logits)."""
    t = _focal_terms(ops, alpha, gamma)
    x, y, w, g = ops.x, ops.y, ops.w, t.gamma
    alpha = focal_parameters(alpha, gamma, ops.compute)[0]
    rtol, atol = RTOL[ops.compute], ATOL[ops.compute]
    with np.errstate(all="ignore"):
        dalpha = 2.0 * alpha - 1.0 if alpha >= 0 else 0.0
        q = np.exp(t.log_q)
        one_m_2p = np.tanh(-x / 2.0)
        ce_q = _focal_ce_over_q(x, y, t.ce, q)
        t_c = g * ce_q * one_m_2p
        inner = -x + t_c
        term_a = dalpha * t.ce * t.mod
        term_b = t.a * t.mod * inner
        value = _times(w, term_a + term_b)
        mag = np.abs(term_a) + t.a * t.mod * (np.abs(x) + np.abs(t_c))
        # ce/q carries ce's error and q's (relative RTOL, and 2 ATOL absolute where q's small
        # term is subnormal, as for q**gamma); q**gamma and alpha_t their own.
        q_rel = np.where((y == 0) | (y == 1), 0.0, 2.0 * atol / q)
        ce_q_err = np.abs(ce_q) * (t.ce_err / np.maximum(t.ce, atol) + rtol + q_rel) + atol
        propagated = (
            np.abs(dalpha) * (t.ce_err * t.mod + t.ce * t.mod_err)
            + t.a * t.mod * g * ce_q_err
            + (t.a * t.mod_err + t.a_err * t.mod) * np.abs(inner)
        )
        error = _times(np.abs(w), rtol * mag + propagated) + atol * (1.0 + np.abs(w))
        # At an infinite logit: the limit, |x| times m (dalpha_t c - s alpha_t (1 + gamma)),
        # s = sign(x), c = q's limit (1-y for x > 0, y below), the rest vanishing; where c = 0
        # (a hard target on the side of its class) q**gamma vanishes unless gamma = 0, and the
        # limit is -s alpha_t inf then.
        inf = np.isinf(x)
        s = np.sign(x)
        c = np.where(x > 0, 1.0 - y, y)
        coef = np.where(c > 0, dalpha * c - s * t.a * (1.0 + g), np.where(g == 0, -s * t.a, 0.0))
        limit = _times(w, _times(coef, np.full_like(x, np.inf)))
        value = np.where(inf, limit, value)
        error = np.where(inf, 0.0, error)
    return value, error


def focal_hess_elementwise(
    ops: Operands, alpha: float, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """The focal loss's second derivative per element, ``w alpha_t q^gamma (p(1-p) + 2 gamma r
    dce + gamma ce ((gamma-1) r^2 + (1-2p) r))``, and its bound (finite logits)."""
    t = _focal_terms(ops, alpha, gamma)
    x, y, w, g = ops.x, ops.y, ops.w, t.gamma
    rtol, atol = RTOL[ops.compute], ATOL[ops.compute]
    plain = Operands(x, y, np.ones_like(x), np.ones_like(x), ops.dtype, ops.compute)
    dce, dce_err = logits_grad_elementwise(plain)
    with np.errstate(all="ignore"):
        pp = _sigmoid(x) * _sigmoid(-x)
        one_m_2p = np.tanh(-x / 2.0)
        r = (1.0 - 2.0 * y) / _focal_r_denominator(x, y)
        r_err = rtol * (np.abs(1.0 - y) + np.abs(y)) / _focal_r_denominator(x, y)
        t2 = 2.0 * g * r * dce
        curv = (g - 1.0) * r * r + one_m_2p * r
        t3 = g * t.ce * curv
        inner = pp + t2 + t3
        mag = pp + np.abs(t2) + g * t.ce * (np.abs(g - 1.0) * r * r + np.abs(r))
        # where exp(-|x|) is subnormal r is known to about ATOL (as in the gradient), and is
        # multiplied by ce ~ |x| and by 2 gamma dce.
        underflow = g * atol * (2.0 + np.minimum(np.abs(x), UNDERFLOW_X_CAP)) * (2.0 + g)
        inner_err = (
            rtol * mag
            + 2.0 * g * (dce_err * np.abs(r) + r_err * np.abs(dce))
            + g * t.ce_err * np.abs(curv)
            + g * t.ce * r_err * (2.0 * np.abs(g - 1.0) * np.abs(r) + 1.0)
            + underflow
            + atol
        )
        value = _times(w, t.a * t.mod * inner)
        propagated = (
            t.a * t.mod * inner_err
            + t.a * t.mod_err * np.abs(inner)
            + t.a_err * t.mod * np.abs(inner)
        )
        error = _times(np.abs(w), propagated) + rtol * np.abs(value) + atol * (1.0 + np.abs(w))
        # At an infinite logit every term vanishes (r, or q**gamma, decays exponentially).
        inf = np.isinf(x)
        value = np.where(inf, _times(w, np.zeros_like(x)), value)
        error = np.where(inf, 0.0, error)
    return value, error


def elementwise(
    loss: str, ops: Operands, output: str, alpha: float = 0.25, gamma: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """One output of one loss (``"bce"``, ``"logits"`` or ``"focal"``) per element, weighted,
    with its bound."""
    if loss == "bce":
        return {
            "value": bce_elementwise,
            "grad": bce_grad_elementwise,
            "grad_target": bce_grad_target_elementwise,
            "hess": bce_hess_elementwise,
        }[output](ops)
    if loss == "logits":
        return {
            "value": logits_elementwise,
            "grad": logits_grad_elementwise,
            "grad_target": logits_grad_target_elementwise,
            "hess": logits_hess_elementwise,
        }[output](ops)
    if loss == "focal":
        return {
            "value": focal_elementwise,
            "grad": focal_grad_elementwise,
            "grad_target": focal_grad_target_elementwise,
            "hess": focal_hess_elementwise,
        }[output](ops, alpha, gamma)
    raise ValueError(loss)


def normalize_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    """NumPy's axes: all for None, negative ones from the end, increasing."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = sorted(int(a) + ndim if a < 0 else int(a) for a in axes)
    if any(not 0 <= a < ndim for a in out) or len(set(out)) != len(out):
        raise ValueError(f"bad axis {axis} for {ndim} dimensions")
    return tuple(out)


def _slot_sums(
    v: np.ndarray, e: np.ndarray, axes: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per slot (``keepdims``): the float64 sum of ``v`` and a bound on its error, which is the
    elements' bounds plus ``(n + 1) * U64 * sum(|v| + e)`` for bcers' order of summation, and
    as much again for NumPy's, which computes the reference (pairwise, within the same bound).
    A slot holding a non-finite value has NumPy's sum (inf or NaN) and a bound of 0."""
    n = int(np.prod([v.shape[a] for a in axes], dtype=np.int64)) if axes else 1
    with np.errstate(all="ignore"):
        total = np.sum(v, axis=axes, keepdims=True)
        bound = np.sum(e, axis=axes, keepdims=True) + 2 * (n + 1) * U64 * np.sum(
            np.abs(v) + e, axis=axes, keepdims=True
        )
        finite = np.all(np.isfinite(v), axis=axes, keepdims=True)
    return total, np.where(finite, bound, 0.0)


def expected_outputs(
    loss: str,
    input: Any,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    grad_output: Any = None,
    label_smoothing: float = 0.0,
    mask: Any = None,
    axis: Any = None,
    keepdims: bool = False,
    outputs: tuple[str, ...] = OUTPUTS,
) -> dict[str, Expected]:
    """The expected outputs of a bcers call of ``loss`` (``"bce"``, ``"logits"``, ``"focal"``)
    with the keywords beyond torch's: ``{name: Expected}`` for each of ``outputs``.

    ``mask`` (bool, broadcast to the input's shape) zeroes the dropped elements' results and
    leaves them out of the counts; ``weighted_mean`` divides by the sum of the kept weights;
    ``axis``/``keepdims`` reduce per slot (NumPy's shapes); the derivatives of a reduction are
    scaled per slot by ``grad_output`` (of the reduced shape; None means 1) over the slot's
    denominator, the target gradient also by ``1 - label_smoothing``.
    """
    reduction = {"mean_with_sample_weight": "weighted_mean"}.get(reduction, reduction)
    if reduction not in (*REDUCTIONS, "weighted_mean"):
        raise ValueError(reduction)
    ops = Operands.of(input, target, weight, pos_weight)
    shape = ops.x.shape
    keep = np.ones(shape, bool) if mask is None else broadcast(np.asarray(mask), shape, "mask")
    if keep.dtype != np.bool_:
        raise TypeError("mask must be bool")
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError("label_smoothing")
    with np.errstate(all="ignore"):
        x = np.where(keep, ops.x, _SAFE)
        y0 = np.where(keep, ops.y, _SAFE)
        # The smoothing's constants 1 - s and s / 2 in the compute dtype, as every operand (a
        # tiny s / 2 is 0 there: no smoothing).
        c = ops.compute.type
        a, b = float(c(1.0 - ls)), float(c(ls / 2.0))
        # The smoothed target as the CPU computes it: a product, then a sum, each rounded to
        # the compute dtype (no fused multiply-add); ``dy`` below covers other roundings.
        y = ((y0.astype(ops.compute) * c(a)).astype(ops.compute) + c(b)).astype(np.float64)
        dy = SMOOTHING_ULPS * UNIT[ops.compute] * (np.abs(y0) * a + b)
        # (below the normal range a rounding is absolute: a subnormal step at most)
        dy = dy + float(np.finfo(ops.compute).smallest_subnormal)
    dy = np.where(ls == 0.0, 0.0, dy)

    def at(yy: np.ndarray) -> Operands:
        if loss == "focal":
            yy = np.clip(yy, 0.0, 1.0)
        return Operands(x, yy, ops.w, ops.pw, ops.dtype, ops.compute)

    per_element: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in outputs:
        v, e = elementwise(loss, at(y), name, alpha, gamma)
        if ls != 0.0:
            with np.errstate(all="ignore"):
                up = elementwise(loss, at(y + dy), name, alpha, gamma)[0]
                down = elementwise(loss, at(y - dy), name, alpha, gamma)[0]
                change = np.maximum(np.abs(up - v), np.abs(down - v))
            e = e + np.where(np.isfinite(change), change, 0.0)
        if name == "grad_target":
            # The chain rule's factor, as autograd applies it (an infinite target gradient
            # times 0, at label smoothing 1, is NaN).
            with np.errstate(invalid="ignore"):
                v, e = v * (1.0 - ls), e * (1.0 - ls)
        per_element[name] = (np.where(keep, v, 0.0), np.where(keep, e, 0.0))

    result: dict[str, Expected] = {}
    if reduction == "none":
        if axis is not None:
            raise ValueError("axis with reduction='none'")
        g = np.ones(shape) if grad_output is None else cast(grad_output, ops.dtype)
        g = broadcast(g, shape, "grad_output")
        for name, (v, e) in per_element.items():
            if name == "value":
                result[name] = Expected(v, e, ops.dtype, ops.compute, reduced=False)
                continue
            with np.errstate(all="ignore"):
                scaled = np.where(keep, v * g, 0.0)
                err = np.where(keep, e * np.abs(g) + ATOL[ops.compute], 0.0)
            result[name] = Expected(scaled, err, ops.dtype, ops.compute, reduced=False)
        return result

    axes = normalize_axis(axis, len(shape))
    n = int(np.prod([shape[a] for a in axes], dtype=np.int64)) if axes else 1
    if reduction == "sum":
        den, den_err = np.ones_like(np.sum(keep, axis=axes, keepdims=True), dtype=float), 0.0
    elif reduction == "mean":
        den, den_err = np.sum(keep, axis=axes, keepdims=True).astype(float), 0.0
    else:
        kept_w = np.where(keep, ops.w, 0.0)
        den = np.sum(kept_w, axis=axes, keepdims=True)
        den_err = 2 * (n + 1) * U64 * np.sum(np.abs(kept_w), axis=axes, keepdims=True)
    out_shape = np.sum(np.zeros(shape), axis=axes, keepdims=keepdims).shape
    scalar = out_shape == ()  # NumPy's rule: every axis reduced, without keepdims

    for name, (v, e) in per_element.items():
        if name != "value":
            continue
        total, bound = _slot_sums(v, e, axes)
        with np.errstate(all="ignore"):
            value = total / den
            error = bound / np.abs(den) + np.abs(value) * (den_err / np.abs(den) + U64)
            error = np.where(np.isfinite(value), error, 0.0)
        value, error = value.reshape(out_shape), error.reshape(out_shape)
        result[name] = Expected(value, error, ops.dtype, ops.compute, reduced=scalar)

    if any(name != "value" for name in per_element):
        g = np.ones(out_shape) if grad_output is None else cast(grad_output, ops.dtype)
        if g.shape != out_shape and not (g.ndim == 0 and axis is None):
            raise ValueError(f"grad_output of shape {g.shape} for a result of {out_shape}")
        keep_shape = np.sum(np.zeros(shape), axis=axes, keepdims=True).shape
        with np.errstate(all="ignore"):
            factor = np.broadcast_to(np.reshape(g, keep_shape) / den, shape)
            rel_den = np.broadcast_to(den_err / np.abs(den), shape)
        for name, (v, e) in per_element.items():
            if name == "value":
                continue
            with np.errstate(all="ignore"):
                scaled = np.where(keep, v * factor, 0.0)
                err = e * np.abs(factor) + np.abs(scaled) * rel_den + ATOL[ops.compute]
                err = np.where(keep, err, 0.0)
            result[name] = Expected(scaled, err, ops.dtype, ops.compute, reduced=False)
    return {name: result[name] for name in outputs}
